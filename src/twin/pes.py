"""Programmed electrical stimulation (PES): is a substrate inducible, and from how many sites?

The clinical VT-stimulation protocol as in silico studies (Arevalo et al. 2016) run it: from
each pacing site an S1 train at a fixed cycle length, then extrastimuli S2 (S3, S4) at
shortening coupling intervals. An extrastimulus that no longer captures (the tissue around the
site is still refractory) ends the search for that extrastimulus: the shortest captured
coupling is kept and the next extrastimulus is added. The site induces VT when activity
outlasts the last stimulus by ``observe`` ms (the reentry detector).

The S1 train is the same for every trial of a site, so it runs once; each trial continues
from the state at the start of the last S1 pulse.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np

from .case import Case, case_from_data

logger = logging.getLogger(__name__)


def _strength_raw(spec: Any) -> str:
    unit = {"current_density": "uA/mm^3", "current_per_area": "uA/mm^2", "current_per_capacitance": "A/F"}
    return f"{spec.strength.value!r} {unit[spec.strength.kind]}"


def _trial_case(case: Case, site: list[float], pulses: list[float], end_time: float, *,
                reentry_for: float | None) -> Case:
    """The arm's case paced at ``site`` with pulses at ``pulses`` [ms], run to ``end_time``."""
    spec = case.spec.inducibility
    assert spec is not None
    data = copy.deepcopy(case.raw)
    data.pop("inducibility", None)
    data.pop("arms", None)
    data["stimuli"] = [{"name": f"S{k + 1}" if k else "S1", "region": {"sphere": {"center": list(site),
                                                                                  "radius": spec.radius}},
                        "strength": _strength_raw(spec), "start": float(t), "duration": spec.duration}
                       for k, t in enumerate(pulses)]
    dt = case.spec.solver.dt
    solver = dict(data.get("solver") or {})
    solver["end_time"] = float(np.ceil(end_time / dt - 1e-9) * dt)
    data["solver"] = solver
    outputs = dict(data.get("outputs") or {})
    outputs.update(interval=0, maps=["activation"], checkpoint_interval=0)
    outputs.pop("ecg", None)
    outputs.pop("probes", None)
    if reentry_for is not None:
        outputs["reentry"] = {"min_duration": reentry_for}
    else:
        outputs.pop("reentry", None)
    data["outputs"] = outputs
    return case_from_data(data, {}, source=f"{case.source} (PES)", base_dir=case.base_dir)


def _captured(problem: Any, result: Any, site: list[float], radius: float, pulse_end: float,
              window: float = 80.0) -> bool:
    """Did the last pulse capture? Most live nodes in a shell 2–4 stimulus radii around the site
    activate within ``window`` ms after it. Only the nodes near the site are asked: waves of
    earlier beats still travelling elsewhere must not count as capture."""
    d = np.linalg.norm(problem.mesh.points - np.asarray(site, dtype=float), axis=1)
    live = problem.excitable if problem.excitable is not None else np.ones(problem.n_nodes, bool)
    shell = live & (d > 2.0 * radius) & (d < 4.0 * radius)
    if not shell.any():
        shell = live & (d < 4.0 * radius)
    late = result.late_activation[shell]
    hit = np.isfinite(late) & (late <= pulse_end + window)
    return bool(hit.mean() >= 0.5) if shell.any() else False


def _run(case: Case, initial: np.ndarray) -> Any:
    from .solver.setup import build_problem
    from .solver.simulation import Simulation

    problem = build_problem(case)
    return problem, Simulation(problem, initial_states=initial).run()


def site_inducibility(case: Case, name: str, site: list[float], initial: np.ndarray) -> dict[str, Any]:
    """Run the PES protocol from one site; return what it found (see module docstring)."""
    spec = case.spec.inducibility
    assert spec is not None
    t0 = time.perf_counter()
    s1 = spec.s1
    # the S1 train up to the start of its last pulse, once
    train_pulses = [k * s1.bcl for k in range(s1.count - 1)]
    state = initial
    if train_pulses:
        _, res = _run(_trial_case(case, site, train_pulses, (s1.count - 1) * s1.bcl, reentry_for=None), initial)
        state = res.states
    couplings: list[float] = []
    trials = []
    result: dict[str, Any] = {"site": name, "xyz_mm": list(site), "inducible": False, "couplings_ms": None,
                              "cycle_length_ms": None, "exit_site": None}
    for _k in range(spec.extrastimuli):
        c = spec.coupling.start
        shortest = None
        while c >= spec.coupling.min - 1e-9:
            pulses = [0.0]
            for prev in couplings + [c]:
                pulses.append(pulses[-1] + prev)
            end = pulses[-1] + spec.duration + spec.observe + 50.0
            problem, res = _run(_trial_case(case, site, pulses, end, reentry_for=spec.observe), state)
            summary = res.reentry or {}
            captured = _captured(problem, res, site, spec.radius, pulses[-1] + spec.duration)
            trials.append({"couplings_ms": couplings + [c], "captured": bool(captured),
                           "sustained": bool(summary.get("sustained"))})
            logger.info("PES site %s: couplings %s ms: %s", name, couplings + [c],
                        "reentry" if summary.get("sustained") else ("captured" if captured else "no capture"))
            if summary.get("sustained"):
                result.update(inducible=True, couplings_ms=couplings + [c],
                              cycle_length_ms=summary.get("cycle_length_ms"), exit_site=summary.get("exit_site"))
                result.update(trials=trials, wall_time_s=time.perf_counter() - t0)
                return result
            if not captured:
                break
            shortest = c
            c -= spec.coupling.step
        if shortest is None:
            break  # this extrastimulus never captured: adding another cannot either
        couplings.append(shortest)
    result.update(trials=trials, wall_time_s=time.perf_counter() - t0)
    return result


def inducibility(case: Case, initial: np.ndarray) -> dict[str, Any]:
    """PES from every site of ``case.inducibility``; ``inducible`` if any site induces sustained activity."""
    spec = case.spec.inducibility
    assert spec is not None
    sites = [site_inducibility(case, name, list(xyz), initial) for name, xyz in spec.sites.items()]
    hits = [s for s in sites if s["inducible"]]
    cls = [s["cycle_length_ms"] for s in hits if s["cycle_length_ms"] is not None]
    return {"inducible": bool(hits), "inducible_sites": len(hits), "sites_tested": len(sites),
            "summary": f"inducible from {len(hits)} of {len(sites)} sites",
            "vt_cycle_length_ms": float(np.median(cls)) if cls else None,
            "exit_site": hits[0]["exit_site"] if hits else None, "sites": sites}
