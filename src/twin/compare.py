"""``twin compare``: run every arm of a case from one shared start and put the results side by side.

1. The case's arms are expanded (:mod:`twin.arms`); the base problem is built once and, with
   ``prepace.beats``, pre-paced; that state is written to ``initial_state.h5`` (HDF5) and every
   arm starts from it (its SHA-256 is recorded per arm, so the test can check they are equal).
2. The arms are independent tasks run in separate processes (``--jobs``), each with its own
   Numba thread count (``--threads``): the same function can later be sent to a cluster.
   Each arm writes an ordinary run folder ``arms/<name>/``.
3. Metrics per arm (activation, repolarisation, ECG, inducibility when configured) go to
   ``comparison.json`` and ``comparison.csv`` with differences from the base; Δ-maps
   (ΔLAT, ΔAPD) per arm to ``delta_<arm>.vtu``; and ``report.html`` shows it all.

An interrupted comparison resumes with ``--resume``: arms whose folder holds a finished run of
the same case (same fingerprint) are not run again.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import multiprocessing
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError, TwinError

logger = logging.getLogger(__name__)

INITIAL_STATE = "initial_state.h5"
COMPARISON_JSON = "comparison.json"
COMPARISON_CSV = "comparison.csv"
REPORT = "report.html"
OWN = (INITIAL_STATE, COMPARISON_JSON, COMPARISON_CSV, REPORT, "arms", "figures")


@dataclass
class ArmTask:
    """Everything a worker process needs to run one arm (picklable)."""

    case_file: str
    overrides: list[str]
    arm: str
    folder: str
    threads: int | None
    initial_state: str
    resume: bool


def state_digest(states: np.ndarray) -> str:
    """SHA-256 of a state array (to show that arms start from the same state)."""
    a = np.ascontiguousarray(states, dtype=np.float64)
    return hashlib.sha256(a.tobytes()).hexdigest()


def _arm_by_name(case_file: str, overrides: list[str], name: str):
    from .arms import expand_arms
    from .case import load_case

    for arm in expand_arms(load_case(case_file, overrides)):
        if arm.name == name:
            return arm
    raise TwinError(f"no arm named '{name}'")


def run_arm(task: ArmTask) -> dict[str, Any]:
    """Run one arm in this process; return its metrics (also written to ``metrics.json``)."""
    import numba

    from .io.atomic import write_json
    from .io.checkpoint import load_checkpoint
    from .io.output import RunFolder
    from .observers.metrics import run_metrics
    from .solver.setup import build_problem
    from .solver.simulation import Simulation, case_fingerprint

    if task.threads:
        numba.set_num_threads(task.threads)
    arm = _arm_by_name(task.case_file, task.overrides, task.arm)
    folder = Path(task.folder)
    problem = build_problem(arm.case)
    fingerprint = case_fingerprint(problem)
    done = folder / "metrics.json"
    if task.resume and done.exists():
        previous = json.loads(done.read_text())
        if previous.get("fingerprint") == fingerprint:
            logger.info("arm %s: finished run found, not run again", arm.name)
            return previous
    arrays, _ = load_checkpoint(task.initial_state)
    initial = arrays["states"]
    if initial.shape != (problem.model.n_states, problem.n_nodes):
        raise TwinError(f"arm '{arm.name}' cannot start from the shared state: it has "
                        f"{problem.model.n_states} states x {problem.n_nodes} nodes, the shared state "
                        f"{initial.shape[0]} x {initial.shape[1]} (arms must keep the mesh and the model)")
    t0 = time.perf_counter()
    result = Simulation(problem, RunFolder(folder, overwrite=True), initial_states=initial).run()
    metrics = run_metrics(problem, result)
    if arm.case.spec.inducibility is not None:
        from .pes import inducibility

        pes = inducibility(arm.case, initial)
        metrics.update(inducible=pes["inducible"], inducible_sites=pes["inducible_sites"],
                       sites_tested=pes["sites_tested"], inducibility=pes["summary"],
                       vt_cycle_length_ms=pes["vt_cycle_length_ms"], exit_site=pes["exit_site"],
                       pes=pes["sites"])
    metrics.update(arm=arm.name, description=arm.description, fingerprint=fingerprint,
                   initial_state_sha256=state_digest(initial), wall_time_s=time.perf_counter() - t0,
                   drug_factors=arm.drug_factors, lesions=arm.lesions, changes=arm.changes)
    np.save(folder / "activation.npy", result.activation)
    if result.repolarisation is not None:
        np.save(folder / "apd.npy", result.apd)
    write_json(done, metrics)
    return metrics


def compare(case_file: str | Path, out: str | Path, *, overrides: list[str] | None = None, jobs: int = 1,
            threads: int | None = None, overwrite: bool = False, resume: bool = False,
            only: list[str] | None = None, report: bool = True) -> dict[str, Any]:
    """Run all arms of ``case_file`` into ``out``; return the comparison (also written as JSON/CSV).

    Parameters
    ----------
    case_file
        The case with an ``arms:`` section.
    out
        Output folder.
    overrides
        ``--set`` strings applied to the case (and so to every arm).
    jobs
        Arms run at once (processes).
    threads
        Numba threads per arm.
    overwrite, resume
        Replace an earlier comparison, or continue it (finished arms are kept).
    only
        Arm names to run (the base always runs).
    report
        Write ``report.html`` (with rendered figures).
    """
    from .arms import expand_arms
    from .case import load_case
    from .io.checkpoint import save_checkpoint
    from .solver.prepace import prepace_states
    from .solver.setup import build_problem

    overrides = list(overrides or [])
    case = load_case(case_file, overrides)
    arms = expand_arms(case)  # every arm is validated before anything runs
    names = [a.name for a in arms]
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise TwinError(f"no arm named '{unknown[0]}'; arms: {', '.join(names)}")
        arms = [a for a in arms if a.name == "base" or a.name in only]
    out = Path(out)
    _prepare(out, overwrite=overwrite, resume=resume)
    t0 = time.perf_counter()
    base_problem = build_problem(arms[0].case)
    initial_path = out / INITIAL_STATE
    prepace = case.spec.prepace
    if not (resume and initial_path.exists()):
        states = prepace_states(base_problem, prepace.beats, prepace.bcl)
        save_checkpoint(initial_path, {"states": states},
                        {"prepace_beats": prepace.beats, "prepace_bcl_ms": prepace.bcl,
                         "sha256": state_digest(states)})
    setup_time = time.perf_counter() - t0
    tasks = [ArmTask(str(case_file), overrides, a.name, str(out / "arms" / a.name), threads, str(initial_path),
                     resume) for a in arms]
    t0 = time.perf_counter()
    results = _run_all(tasks, jobs)
    run_time = time.perf_counter() - t0
    comparison = _tabulate(results, case.spec.name)
    comparison.update(case=str(case_file), overrides=overrides, jobs=jobs, threads=threads,
                      timings_s={"setup_and_prepace": setup_time, "arms": run_time})
    _write_tables(out, comparison)
    _write_delta_maps(out, base_problem, [a.name for a in arms])
    if report:
        from .report.html import write_report

        write_report(out, comparison)
    return comparison


def _prepare(out: Path, *, overwrite: bool, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a folder")
    previous = [n for n in OWN if (out / n).exists()]
    if previous and not (overwrite or resume):
        raise OutputError(f"{out} already holds a comparison ({', '.join(previous)}); pass --overwrite to "
                          "replace it, --resume to continue it, or -o to choose another folder")
    if overwrite:
        for n in previous:
            p = out / n
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _run_all(tasks: list[ArmTask], jobs: int) -> list[dict[str, Any]]:
    if jobs <= 1 or len(tasks) == 1:
        return [run_arm(t) for t in tasks]
    # spawn, not fork: a forked Numba/OpenMP runtime can deadlock in the child
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = [pool.submit(run_arm, t) for t in tasks]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


#: metrics compared between arms: key -> (label, unit)
METRICS = {
    "fraction_activated": ("activated fraction", ""),
    "total_activation_time_ms": ("total activation time", "ms"),
    "mean_activation_time_ms": ("mean activation time", "ms"),
    "conduction_velocity_m_per_s": ("conduction velocity (median)", "m/s"),
    "apd90_mean_ms": ("mean APD90", "ms"),
    "repolarisation_dispersion_ms": ("dispersion of repolarisation", "ms"),
    "qrs_ms": ("QRS duration", "ms"),
    "qt_ms": ("QT interval", "ms"),
    "inducible": ("inducible", ""),
    "inducible_sites": ("inducible sites", ""),
    "vt_cycle_length_ms": ("VT cycle length", "ms"),
}


def _tabulate(results: list[dict[str, Any]], name: str) -> dict[str, Any]:
    base = results[0]
    rows = []
    for r in results:
        row: dict[str, Any] = {"arm": r["arm"], "description": r.get("description", "")}
        for key in METRICS:
            value = r.get(key)
            row[key] = value
            b = base.get(key)
            if r is not base and isinstance(value, (int, float)) and isinstance(b, (int, float)) \
                    and not isinstance(value, bool):
                row[f"delta_{key}"] = value - b
        rows.append(row)
    return {"name": name, "arms": results, "table": rows,
            "metrics": {k: {"label": v[0], "unit": v[1]} for k, v in METRICS.items()}}


def _write_tables(out: Path, comparison: dict[str, Any]) -> None:
    import csv
    import io

    from .io.atomic import write_json, write_text

    write_json(out / COMPARISON_JSON, comparison)
    keys: list[str] = []
    for row in comparison["table"]:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in comparison["table"]:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in keys})
    write_text(out / COMPARISON_CSV, buf.getvalue())


def _write_delta_maps(out: Path, base_problem: Any, names: list[str]) -> None:
    """``delta_<arm>.vtu``: the arm's activation (and APD) minus the base's, per node [ms]."""
    from .io.vtk import write_vtu

    mesh = base_problem.mesh
    base = out / "arms" / "base"
    lat0 = np.load(base / "activation.npy")
    apd0 = np.load(base / "apd.npy") if (base / "apd.npy").exists() else None
    for name in names[1:]:
        folder = out / "arms" / name
        point_data = {"delta_LAT": np.load(folder / "activation.npy") - lat0}
        if apd0 is not None and (folder / "apd.npy").exists():
            point_data["delta_APD"] = np.load(folder / "apd.npy") - apd0
        write_vtu(out / f"delta_{name}.vtu", mesh.points, mesh.tets, point_data=point_data,
                  cell_data={"region": mesh.regions})
