"""Command line: ``twin simulate | validate | info | models | cell | verify``.

This is the only module that prints results, sets thread counts and turns
errors into exit codes: 0 success, 2 user error (one line on stderr, never a
traceback), 1 internal error (a bug: traceback with ``-v``), 3 a verification
benchmark missed a tolerance, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from . import __version__
from .errors import TwinError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130
EXIT_CHECK_FAILED = 3  # a verification ran but missed a tolerance


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` keeps control of exit codes."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise TwinError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="twin", description="Digital-twin simulation engine for cardiac EP and neuro models.")
    p.add_argument("--version", action="version", version=f"twin {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def case_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("case", help="case file (YAML)")
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a case key, e.g. --set solver.dt=0.01 (repeatable)")
        sp.add_argument("-q", "--quiet", action="store_true", help="only errors and warnings")
        sp.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    s = sub.add_parser("simulate", help="run a case")
    case_args(s)
    s.add_argument("-o", "--output", metavar="OUTDIR", help="output folder (default: outputs.folder "
                   "of the case, else out/<case name>)")
    s.add_argument("--threads", type=int, metavar="N", help="number of threads (default: all cores)")
    s.add_argument("--overwrite", action="store_true", help="replace a previous run in the output folder")
    s.add_argument("--resume", action="store_true", help="continue from the output folder's checkpoint")

    cp = sub.add_parser("compare", help="run every treatment arm of a case and compare them")
    case_args(cp)
    cp.add_argument("-o", "--output", metavar="OUTDIR", help="output folder (default: out/<case name>-compare)")
    cp.add_argument("--jobs", type=int, default=1, metavar="N", help="arms run at once, in processes (1)")
    cp.add_argument("--threads", type=int, metavar="N", help="Numba threads per arm (default: all cores / jobs)")
    cp.add_argument("--arms", nargs="+", metavar="NAME", help="run only these arms (and the base)")
    cp.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in OUTDIR")
    cp.add_argument("--resume", action="store_true", help="continue an interrupted comparison")
    cp.add_argument("--no-report", action="store_true", help="skip report.html")

    v = sub.add_parser("validate", help="check a case (and its mesh) without running it")
    case_args(v)

    i = sub.add_parser("info", help="version, cores and threading")
    i.add_argument("--threads", type=int, metavar="N", help="threads to report for")

    m = sub.add_parser("models", help="list, describe and import reaction models")
    msub = m.add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    msub.add_parser("list", help="all models on the search path")
    ms = msub.add_parser("show", help="states, parameters (units, defaults) and provenance of a model")
    ms.add_argument("name")
    mi = msub.add_parser("import", help="import a CellML/SBML file into the user model folder")
    mi.add_argument("file", help="model file (.cellml, .xml, .sbml)")
    mi.add_argument("--name", help="model name (default: the file name)")
    mi.add_argument("--overwrite", action="store_true", help="replace a user model of the same name")
    for sp in (m, *msub.choices.values()):
        sp.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    c = sub.add_parser("cell", help="pace a single cell and report its action potential")
    c.add_argument("name", help="model name (see 'twin models list')")
    c.add_argument("--bcl", type=float, default=1000.0, help="basic cycle length [ms] (1000)")
    c.add_argument("--beats", type=int, default=5, help="number of beats (5)")
    c.add_argument("--dt", type=float, default=0.01, help="time step [ms] (0.01)")
    c.add_argument("--amplitude", type=float, help="stimulus [A/F], positive (default: the model's)")
    c.add_argument("--duration", type=float, help="stimulus length [ms] (default: the model's)")
    c.add_argument("--substeps", type=int, default=1, help="reaction sub-steps per time step (1)")
    c.add_argument("--lookup-table", action="store_true", help="step with the voltage lookup tables tissue "
                   "runs use (default: every rate exactly)")
    c.add_argument("--set", dest="parameters", action="append", default=[], metavar="PARAM=VALUE",
                   help="parameter override, e.g. --set g_Kr=x0.5 (repeatable)")
    c.add_argument("-o", "--output", metavar="OUTDIR", help="folder for trace.csv and trace.png "
                   "(default: out/cell/<name>)")
    c.add_argument("--overwrite", action="store_true", help="replace an earlier trace in OUTDIR")
    c.add_argument("-q", "--quiet", action="store_true", help="only errors and warnings")
    c.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    me = sub.add_parser("mesh", help="inspect, convert and generate meshes")
    mesub = me.add_subparsers(dest="mesh_command", required=True, parser_class=_Parser)
    mi_ = mesub.add_parser("info", help="counts, quality, regions, surfaces, fibres and a unit guess")
    mi_.add_argument("file")
    mi_.add_argument("--unit", default="auto", choices=["auto", "um", "mm", "cm", "m"],
                     help="unit the file is in (auto: µm for CARP, mm otherwise)")
    mi_.add_argument("--fibres", help="name of the fibre array")
    mi_.add_argument("--regions", help="name of the region-tag array")
    mi_.add_argument("--json", action="store_true", help="print the report as JSON")
    mc = mesub.add_parser("convert", help="convert between meshio formats and CARP (.pts/.elem/.lon)")
    mc.add_argument("input")
    mc.add_argument("output", help="output file; .pts/.elem/.lon or no suffix writes CARP")
    mc.add_argument("--unit", default="auto", choices=["auto", "um", "mm", "cm", "m"], help="unit of the input")
    mc.add_argument("--out-unit", default=None, choices=["um", "mm", "cm", "m"],
                    help="unit of the output (default: µm for CARP, mm otherwise)")
    mc.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    mg = mesub.add_parser("generate", help="generate test anatomy: lv, biv (gmsh) or slab, with fibres")
    mg.add_argument("kind", choices=["lv", "biv", "slab"])
    mg.add_argument("output", help="output file (.vtu, .msh...; .pts or no suffix for CARP)")
    mg.add_argument("--resolution", type=float, default=1.0, help="element size [mm] for lv/biv (1.0)")
    mg.add_argument("--geometry", action="append", default=[], metavar="KEY=VALUE",
                    help="lv/biv geometry, e.g. --geometry r_short_epi=11 (radii [mm]; see the docs)")
    mg.add_argument("--size", type=float, nargs=3, default=[10.0, 10.0, 2.0], metavar=("X", "Y", "Z"),
                    help="slab size [mm]")
    mg.add_argument("--spacing", type=float, default=0.5, help="slab spacing [mm]")
    mg.add_argument("--fibres", choices=["ldrb", "none"], default="ldrb",
                    help="rule-based fibres for lv/biv (slab fibres run along x)")
    mg.add_argument("--alpha-endo", type=float, default=60.0, help="helix angle at the endocardium [deg]")
    mg.add_argument("--alpha-epi", type=float, default=-60.0, help="helix angle at the epicardium [deg]")
    mg.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    for sp in (me, *mesub.choices.values()):
        sp.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    from .verify import BENCHMARKS, benchmark_module

    vf = sub.add_parser("verify", help="run a verification benchmark (exit 3 when a tolerance is missed)")
    vsub = vf.add_subparsers(dest="benchmark", required=True, parser_class=_Parser)
    for name in BENCHMARKS:
        if importlib.util.find_spec(BENCHMARKS[name]) is None:
            continue
        mod = benchmark_module(name)
        bp = vsub.add_parser(name, help=(mod.__doc__ or name).strip().splitlines()[0])
        mod.add_arguments(bp)
        bp.add_argument("-o", "--output", metavar="OUTDIR", help=f"output folder (default: out/verify/{name})")
        bp.add_argument("--overwrite", action="store_true", help="replace an earlier report in OUTDIR")
        bp.add_argument("--threads", type=int, metavar="N", help="number of threads (default: all cores)")
        bp.add_argument("-q", "--quiet", action="store_true", help="only errors and warnings")
        bp.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _configure_logging(quiet: bool, verbose: bool, stream: TextIO) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger("twin")
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("twin: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def _set_threads(n: int | None) -> int:
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    if n is None:
        return numba.get_num_threads()
    if not 1 <= n <= limit:
        raise TwinError(f"--threads must be between 1 and {limit} (Numba's maximum on this machine), got {n}")
    numba.set_num_threads(n)
    return n


class _ProgressBar:
    """A one-line progress bar on a terminal; silent when not attached to one."""

    def __init__(self, stream: TextIO, total_ms: float) -> None:
        self.stream = stream
        self.total = total_ms
        self.t0 = time.perf_counter()

    def __call__(self, fraction: float, t_ms: float) -> None:
        width = 30
        filled = int(width * fraction)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {100 * fraction:5.1f}%  "
                          f"t = {t_ms:8.2f} / {self.total:g} ms  eta {eta:5.0f} s")
        if fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()


def _cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    from .case import load_case
    from .solver.setup import build_problem

    case = load_case(args.case, args.overrides)
    problem = build_problem(case)
    spec = case.spec
    out.write(f"{args.case}: valid — {problem.mesh.n_points} nodes, {problem.mesh.n_tets} tetrahedra, "
              f"model {spec.model.name}, {len(spec.stimuli)} stimulus protocol(s), "
              f"{round(spec.solver.end_time / spec.solver.dt)} steps of {spec.solver.dt:g} ms\n")
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .case import load_case
    from .io.output import RunFolder
    from .solver.setup import build_problem
    from .solver.simulation import Simulation

    threads = _set_threads(args.threads)
    case = load_case(args.case, args.overrides)
    spec = case.spec
    folder = Path(args.output or spec.outputs.folder or Path("out") / spec.name)
    run_folder = RunFolder(folder, overwrite=args.overwrite, resume=args.resume)
    problem = build_problem(case)
    show_bar = not args.quiet and hasattr(err, "isatty") and err.isatty()
    progress = _ProgressBar(err, spec.solver.end_time) if show_bar else None
    initial = None
    if spec.prepace.beats and not args.resume:
        from .solver.prepace import prepace_states

        initial = prepace_states(problem, spec.prepace.beats, spec.prepace.bcl)
    sim = Simulation(problem, run_folder, progress=progress, initial_states=initial)
    result = sim.run()
    s = result.summary
    t = s["timings_s"]
    act = s["activation"]
    if not args.quiet:
        out.write(f"{spec.name}: {s['mesh']['nodes']} nodes, {s['run']['steps']} steps on {threads} "
                  f"thread(s); compile {t['compile']:.2f} s, solve {t['solve']:.2f} s, "
                  f"{s['throughput_node_steps_per_s']:.3g} node-steps/s\n")
        if act["activated_nodes"]:
            out.write(f"activation: {100 * act['fraction_activated']:.1f}% of nodes, "
                      f"{act['first_ms']:.2f} to {act['last_ms']:.2f} ms\n")
        else:
            out.write("activation: no node crossed the threshold "
                      f"({act['threshold_mV']:g} mV)\n")
        out.write(f"results in {folder}/ (open {folder}/series.pvd in ParaView)\n")
    return EXIT_OK


def _cmd_info(args: argparse.Namespace, out: TextIO) -> int:
    import numba

    from .jit import threading_layer
    from .solver.linalg import blocked_dot
    from .solver.simulation import versions

    threads = _set_threads(args.threads)
    import numpy as np

    blocked_dot(np.ones(4), np.ones(4), np.zeros(64))  # start the threading layer so it can be named
    for k, v in versions().items():
        out.write(f"{k:16s} {v}\n")
    out.write(f"{'cores':16s} {os.cpu_count()}\n")
    out.write(f"{'numba threads':16s} {threads} (max {numba.config.NUMBA_NUM_THREADS})\n")
    out.write(f"{'threading layer':16s} {threading_layer()}\n")
    return EXIT_OK


def _cmd_models(args: argparse.Namespace, out: TextIO) -> int:
    from .models import available_models, get_model
    from .models.library import model_files

    if args.models_command == "list":
        files = model_files()
        out.write(f"{'name':24s} {'kind':8s} {'states':>6s} {'params':>6s}  description\n")
        for name in available_models():
            try:
                model = get_model(name)
            except TwinError as exc:  # one broken user model must not hide the others
                out.write(f"{name:24s} {'?':8s} {'-':>6s} {'-':>6s}  cannot be loaded: {exc}  [{files[name].parent}]\n")
                continue
            out.write(f"{name:24s} {model.kind:8s} {model.n_states:6d} {model.n_params:6d}  {model.description}"
                      f"  [{files[name].parent}]\n")
        return EXIT_OK
    if args.models_command == "show":
        model = get_model(args.name)
        out.write(f"{model.name}: {model.description}\nfile: {model.source}\ncode: {model.code_key}\n")
        if model.cell_stimulus is not None:
            out.write(f"own stimulus: {model.cell_stimulus:g} A/F for {model.cell_stimulus_duration or 1:g} ms"
                      + (f" every {model.cell_bcl:g} ms" if model.cell_bcl else "") + "\n")
        out.write(f"activation threshold: {model.activation_threshold:g} mV\n")
        lut = model.lookup
        if lut is None:
            out.write("lookup table: none (every rate evaluated exactly)\n")
        else:
            gates = sum(c.startswith("inf:") for c in lut.columns)
            out.write(f"lookup table: {len(lut.columns)} columns against V ({gates} gates, "
                      f"{len(lut.columns) - 2 * gates} voltage factors)"
                      + "".join(f"; {len(k.columns)} against {k.name} in [{k.lo:g}, {k.hi:g}]" for k in lut.keys)
                      + "\n")
        if model.currents:
            out.write("currents (for drug block): " + ", ".join(f"{c} -> {p}" for c, p in model.currents.items())
                      + "\n")
        out.write(f"\nstates ({model.n_states}):\n")
        for n, u, v in zip(model.state_names, model.state_units, model.initial_state):
            out.write(f"  {n:28s} {v:14.6g} {u}\n")
        out.write(f"\nparameters ({model.n_params}; set them in a case as model.parameters.NAME, "
                  "absolute or as a factor \"x0.5\"):\n")
        for n, u, v in zip(model.param_names, model.param_units, model.param_defaults):
            choices = model.param_choices.get(n)
            extra = ("  one of " + ", ".join(f"{k} = {c:g}" for k, c in choices.items())) if choices else ""
            out.write(f"  {n:28s} {v:14.6g} {u}{extra}\n")
        if model.provenance:
            out.write(f"\nprovenance:\n{model.provenance}\n")
        return EXIT_OK
    from .models.importer import import_model

    target = import_model(args.file, name=args.name, overwrite=args.overwrite)
    model = get_model(target.stem)
    out.write(f"imported {args.file} as '{model.name}' ({model.n_states} states, {model.n_params} "
              f"parameters) into {target}\n")
    return EXIT_OK


def _cmd_cell(args: argparse.Namespace, out: TextIO) -> int:
    import json

    from .cell import last_beat_metrics, plot_trace, run_cell, write_trace_csv
    from .io.atomic import write_json
    from .models import get_model
    from .models.lookup import LookupSettings

    params: dict[str, str] = {}
    for item in args.parameters:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TwinError(f"--set expects PARAM=VALUE, got {item!r}")
        params[key.strip()] = value.strip()
    model = get_model(args.name)
    model.parameter_row(params)  # unknown names fail before any output folder exists
    folder = Path(args.output or Path("out") / "cell" / model.name)
    if (folder / "trace.csv").exists() and not args.overwrite:
        raise TwinError(f"{folder} already holds a trace; pass --overwrite or choose another -o")
    t0 = time.perf_counter()
    trace = run_cell(model, bcl=args.bcl, beats=args.beats, dt=args.dt, amplitude=args.amplitude,
                     duration=args.duration, parameters=params, n_sub=args.substeps,
                     lookup=LookupSettings() if args.lookup_table else None)
    run_time = time.perf_counter() - t0
    metrics = last_beat_metrics(trace)
    folder.mkdir(parents=True, exist_ok=True)
    write_trace_csv(trace, folder / "trace.csv")
    plot_trace(trace, folder / "trace.png", metrics)
    write_json(folder / "metrics.json", {"model": model.name, "parameters": params, "bcl_ms": args.bcl,
                                         "beats": args.beats, "dt_ms": args.dt, "last_beat": metrics,
                                         "lookup_table": bool(args.lookup_table and model.lookup is not None),
                                         "run_time_s": run_time})
    if not args.quiet:
        out.write(f"{model.name}, {args.beats} beats at {args.bcl:g} ms, dt {args.dt:g} ms"
                  + (f", {json.dumps(params)}" if params else "") + f" ({run_time:.2f} s)\n")
        out.write(f"  resting potential {metrics['rest_mV']:8.2f} mV\n"
                  f"  peak              {metrics['peak_mV']:8.2f} mV\n"
                  f"  dV/dt max         {metrics['dvdt_max_V_per_s']:8.1f} V/s\n"
                  f"  APD90             {metrics['apd90_ms']:8.1f} ms   (APD50 {metrics['apd50_ms']:.1f} ms)\n"
                  f"trace in {folder}/trace.csv, plot in {folder}/trace.png\n")
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace, out: TextIO) -> int:
    from .case import load_case
    from .compare import compare

    if args.jobs < 1:
        raise TwinError(f"--jobs must be at least 1, got {args.jobs}")
    import numba

    threads = args.threads or max(1, numba.config.NUMBA_NUM_THREADS // args.jobs)
    _set_threads(threads)
    spec = load_case(args.case, args.overrides).spec
    if not spec.arms:
        raise TwinError(f"{args.case} has no 'arms:' section: nothing to compare (use 'twin simulate')")
    folder = Path(args.output or Path("out") / f"{spec.name}-compare")
    result = compare(args.case, folder, overrides=args.overrides, jobs=args.jobs, threads=threads,
                     overwrite=args.overwrite, resume=args.resume, only=args.arms, report=not args.no_report)
    if not args.quiet:
        labels = result["metrics"]
        cols = [k for k in labels if any(r.get(k) is not None for r in result["table"])]
        out.write(f"{'arm':20s}" + "".join(f"{labels[k]['label'][:22]:>24s}" for k in cols) + "\n")
        for row in result["table"]:
            cells = []
            for k in cols:
                v = row.get(k)
                cells.append(f"{'-' if v is None else (str(v) if isinstance(v, bool) else f'{v:.4g}'):>24s}")
            out.write(f"{row['arm']:20s}" + "".join(cells) + "\n")
        out.write(f"comparison in {folder}/ (comparison.csv, report.html, delta_<arm>.vtu)\n")
    return EXIT_OK


def _cmd_mesh(args: argparse.Namespace, out: TextIO) -> int:
    import json

    from .mesh import read_mesh
    from .mesh.io import default_unit

    if args.mesh_command == "info":
        from .mesh.quality import mesh_report

        read_as = args.unit if args.unit != "auto" else default_unit(args.file)
        raw = read_mesh(args.file, unit=read_as, fibres=args.fibres, regions=args.regions, check=False)
        mesh = raw.check(source=Path(args.file).name)
        rep = mesh_report(raw, mesh, declared_unit=args.unit, read_unit=read_as)
        if args.json:
            out.write(json.dumps(rep, indent=2) + "\n")
            return EXIT_OK
        _print_mesh_report(rep, args.file, out)
        return EXIT_OK
    if args.mesh_command == "generate":
        return _mesh_generate(args, out)
    from .mesh.convert import convert_mesh

    target = convert_mesh(args.input, args.output, unit=args.unit, out_unit=args.out_unit,
                          overwrite=args.overwrite)
    out.write(f"wrote {target}\n")
    return EXIT_OK


def _mesh_generate(args: argparse.Namespace, out: TextIO) -> int:
    import yaml

    from .mesh.convert import write_any
    from .solver.setup import generate_mesh

    geometry = {}
    for item in args.geometry:
        key, sep, value = item.partition("=")
        if not sep:
            raise TwinError(f"--geometry expects KEY=VALUE, got {item!r}")
        geometry[key.strip()] = yaml.safe_load(value)
    if args.kind == "slab":
        mesh = generate_mesh("box", size=args.size, spacing=args.spacing)
        mesh.regions[:] = 1
    else:
        from .mesh.anatomy import geometry_keys

        allowed = geometry_keys(args.kind)
        for key in geometry:
            if key not in allowed:
                raise TwinError(f"--geometry: unknown key '{key}' for {args.kind}; expected one of "
                                f"{', '.join(allowed)}")
        mesh = generate_mesh(args.kind, resolution=args.resolution, geometry=geometry)
        if args.fibres == "ldrb":
            from .mesh.fibres import with_ldrb_fibres

            mesh = with_ldrb_fibres(mesh, alpha_endo=args.alpha_endo, alpha_epi=args.alpha_epi)
    target = write_any(mesh, args.output, overwrite=args.overwrite)
    out.write(f"wrote {target}: {mesh.n_points} nodes, {mesh.n_tets} tetrahedra"
              + (f", surfaces {', '.join(k[8:] for k in mesh.point_data if k.startswith('surface_'))}"
                 if any(k.startswith("surface_") for k in mesh.point_data) else "") + "\n")
    return EXIT_OK


def _print_mesh_report(rep: dict, name: str, out: TextIO) -> None:
    lo, hi = rep["bounds_mm"]
    e, q = rep["edge_mm"], rep["quality"]
    out.write(f"{name}: {rep['nodes']} nodes, {rep['elements']} tetrahedra, volume {rep['volume_mm3']:.6g} mm³\n")
    out.write("bounds      " + " × ".join(f"[{a:.4g}, {b:.4g}]" for a, b in zip(lo, hi)) + " mm\n")
    out.write(f"edges       min {e['min']:.4g}, median {e['median']:.4g}, max {e['max']:.4g} mm\n")
    out.write(f"quality     radius ratio min {q['radius_ratio_min']:.3f}, median {q['radius_ratio_median']:.3f}; "
              f"{q['slivers_below_0.1']} sliver(s) below 0.1; worst: "
              + ", ".join(f"#{w['element']} ({w['radius_ratio']:.3f})" for w in q["worst"][:3]) + "\n")
    if rep["inverted_elements"]:
        out.write(f"inverted    {rep['inverted_elements']} element(s), first #{rep['first_inverted']} "
                  "(twin re-orients them when it reads the mesh)\n")
    if rep["unreferenced_nodes"]:
        out.write(f"unused      {rep['unreferenced_nodes']} node(s) in no element (dropped on reading)\n")
    out.write("regions     " + ", ".join(f"{t}: {r['elements']} el, {r['volume_mm3']:.4g} mm³"
                                      for t, r in rep["regions"].items()) + "\n")
    if rep["surfaces"]:
        out.write("surfaces    " + ", ".join(f"{k} ({v} nodes)" for k, v in rep["surfaces"].items()) + "\n")
    extra = [n for n in rep["point_data"] if not n.startswith("surface_")] + rep["cell_data"]
    if extra:
        out.write("arrays      " + ", ".join(extra) + "\n")
    fib = rep.get("fibres")
    if fib:
        line = f"fibres      |f| - 1 up to {fib['max_length_error']:.2g}"
        if "max_sheet_angle_error_deg" in fib:
            line += f"; sheet ⟂ fibre within {fib['max_sheet_angle_error_deg']:.2g}°"
        if "jump_median_deg" in fib:
            line += (f"; jump between neighbours median {fib['jump_median_deg']:.3g}°, 99th percentile "
                     f"{fib['jump_p99_deg']:.3g}°, {fib['jumps_over_45_deg']} over 45°")
        out.write(line + "\n")
    else:
        out.write("fibres      none in the file\n")
    u = rep["unit"]
    out.write(f"unit        read as {u['read_as']}; the coordinates look like {u['guess']}\n")
    if u["guess"] != u["read_as"]:
        logging.getLogger("twin").warning(
            "%s: read in %s, but the extent and edge lengths fit %s far better: check the unit "
            "(twin mesh info --unit %s, or mesh.unit: %s in the case)", name, u["read_as"], u["guess"],
            u["guess"], u["guess"])


def _cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    from .verify import benchmark_module

    _set_threads(args.threads)
    folder = Path(args.output or Path("out") / "verify" / args.benchmark)
    if (folder / "report.json").exists() and not args.overwrite:
        raise TwinError(f"{folder} already holds a verification report; pass --overwrite or choose another -o")
    report = benchmark_module(args.benchmark).run(args, folder)
    report.write()
    if not args.quiet:
        for c in report.checks:
            out.write(f"{'pass' if c.passed else 'FAIL'}  {c.describe()}\n")
        out.write(f"{args.benchmark}: {'PASSED' if report.passed else 'FAILED'}; report in {folder}/report.md\n")
    return EXIT_OK if report.passed else EXIT_CHECK_FAILED


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run the CLI; return the exit status instead of exiting.

    Parameters
    ----------
    argv
        Arguments without the program name (default ``sys.argv[1:]``).
    stdout, stderr
        Streams for results and for errors/logging (default the process's).
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        _configure_logging(getattr(args, "quiet", False), getattr(args, "verbose", False), err)
        if args.command == "simulate":
            return _cmd_simulate(args, out, err)
        handlers = {"validate": _cmd_validate, "models": _cmd_models, "cell": _cmd_cell, "verify": _cmd_verify,
                    "mesh": _cmd_mesh, "compare": _cmd_compare, "info": _cmd_info}
        return handlers[args.command](args, out)
    except TwinError as exc:
        err.write(f"twin: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("\ntwin: interrupted; finished frames are kept (with checkpoints enabled, "
                  "rerun with --resume to continue)\n")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    except OSError as exc:  # disk full, permission denied...: the environment, not a bug
        err.write(f"twin: error: {exc}\n")
        return EXIT_USAGE
    except Exception as exc:  # a bug in twin, not the user's fault: say so, keep it short
        logging.getLogger("twin").debug("internal error", exc_info=True)
        err.write(f"twin: internal error: {type(exc).__name__}: {exc} (rerun with -v for the traceback; "
                  "please report it)\n")
        return EXIT_INTERNAL


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
