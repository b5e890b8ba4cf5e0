"""Measurements that need a fresh interpreter; run by the suites as a subprocess.

    python benchmarks/_probe.py compile MODEL        # env TWIN_CACHE_DIR / NUMBA_CACHE_DIR chosen by the caller
    python benchmarks/_probe.py memory CASE [--tracemalloc] [--end-time MS]

Each prints one JSON object on its last line of stdout.

compile
    Times, in this new process: ``import twin``; ``get_model`` (Myokit parse, analysis,
    kernel source generation or cache look-up, module import); the kernel's first call
    on 2 nodes (Numba compile, or load from Numba's on-disk cache); and the solver
    kernels' first calls (CSR mat-vec, PCG, activation map).  ``model_ready_s`` =
    get_model + first reaction step as tissue runs take it (lookup tables built, then the
    kernel that reads them): what a user waits for before the first step.

memory
    CASE is ``niederer`` (the slab at dx 0.2) or ``box:SIDE`` (a TP06 cube, spacing 0.2).
    All kernels are compiled first, so JIT code is not counted.  Then the problem is
    built, a :class:`Simulation` made and run for a few steps.  Reported:

    * ``rss_peak_delta``: peak resident set (VmHWM, reset through /proc/self/clear_refs
      before the build; ``ru_maxrss`` where that is impossible) minus the resident set
      before the build: the most memory the build + run needed at once;
    * ``rss_retained_delta``: resident set after the run minus before (allocator slack
      included);
    * with ``--tracemalloc``: ``traced_peak`` and ``traced_retained`` (numpy and Python
      allocations only, exact);
    * ``arrays``: nbytes of every array the problem, the diffusion stepper and the result
      hold (shared buffers counted once), by owner.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time

T_START = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _status(field: str) -> int:
    """A VmRSS/VmHWM line of /proc/self/status in bytes (0 where unavailable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def compile_probe(model_name: str) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    import twin  # noqa: F401
    from twin.models import get_model
    from twin.models.codegen import kernel_cache_dir
    t_import = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = get_model(model_name)
    t_load = time.perf_counter() - t0
    from twin.models.lookup import LookupSettings, ReactionStepper

    t0 = time.perf_counter()
    # what a tissue run calls before its loop: the lookup tables (built) and the kernels that
    # read them (the SIMD kernel and its off-table follow-up), through the same warm-up
    stepper = ReactionStepper(model, model.param_defaults[None, :].copy(), np.zeros(2, np.int32), 1,
                              LookupSettings())
    stepper.warm_up(0.01)
    t_kernel = time.perf_counter() - t0

    import scipy.sparse as sp

    from twin.observers.activation import ActivationMap
    from twin.solver.diffusion import DiffusionStepper
    t0 = time.perf_counter()
    k = sp.csr_matrix(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    m = sp.csr_matrix(np.array([[2.0, 1.0], [1.0, 2.0]]) / 6.0)
    DiffusionStepper(k, m, 140.0, 0.01, 0.01).warm_up()      # the SELL mat-vec and PCG kernels
    ActivationMap(2, 0.0).update(np.zeros(2), np.ones(2), 0.0, 0.01)
    t_solver = time.perf_counter() - t0
    return {"model": model_name, "import_s": t_import, "model_load_s": t_load, "kernel_first_call_s": t_kernel,
            "model_ready_s": t_load + t_kernel, "solver_kernels_s": t_solver,
            "in_process_total_s": time.perf_counter() - T_START, "kernel_cache": str(kernel_cache_dir())}


def _arrays(obj, prefix: str, seen: set, out: dict, depth: int = 0) -> None:
    """nbytes of the numpy arrays and sparse matrices reachable from ``obj`` (depth ≤ 3)."""
    import numpy as np
    import scipy.sparse as sp

    if isinstance(obj, np.ndarray):
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        if id(base) not in seen and obj.nbytes:
            seen.add(id(base))
            out[prefix] = out.get(prefix, 0) + base.nbytes
        return
    if sp.issparse(obj):
        for part in ("data", "indices", "indptr", "row", "col"):
            if hasattr(obj, part):
                _arrays(getattr(obj, part), prefix, seen, out, depth + 1)
        return
    if depth >= 3:
        return
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif hasattr(obj, "__dict__"):
        items = vars(obj).items()
    else:
        return
    for k, v in items:
        if isinstance(v, (str, bytes, int, float)) or v is None or callable(v) and not hasattr(v, "__dict__"):
            continue
        _arrays(v, f"{prefix}.{k}", seen, out, depth + 1)


def memory_probe(case: str, end_time: float, traced: bool) -> dict:
    import _common as C
    from twin.models import get_model
    from twin.solver.simulation import Simulation

    # compile everything on a tiny problem first (JIT code and caches are not per-node memory)
    tiny = C.build(C.box_case_text(0.6, 0.02, spacing=0.2))
    Simulation(tiny).run()
    get_model("tentusscher_2006")
    del tiny
    gc.collect()
    if case == "niederer":
        text = C.niederer_case_text(end_time)
    elif case.startswith("box:"):
        text = C.box_case_text(float(case[4:]), end_time)
    else:
        raise SystemExit(f"unknown case {case!r}: niederer or box:SIDE")

    rss0 = _status("VmRSS")
    exact_peak = _reset_peak()
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if traced:
        import tracemalloc

        tracemalloc.start()
    t0 = time.perf_counter()
    problem = C.build(text)
    t_build = time.perf_counter() - t0
    sim = Simulation(problem)
    result = sim.run()
    gc.collect()
    traced_now = traced_peak = None
    if traced:
        import tracemalloc

        traced_now, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss1 = _status("VmRSS")
    hwm = _status("VmHWM") if exact_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if not exact_peak:
        hwm = max(hwm, maxrss0)
    n = problem.n_nodes
    arrays: dict[str, int] = {}
    seen: set = set()
    _arrays(result, "result", seen, arrays)
    _arrays(sim.diffusion, "diffusion", seen, arrays)
    _arrays(problem, "problem", seen, arrays)
    total_arrays = sum(arrays.values())
    out = {"case": case, "nodes": n, "tetrahedra": int(problem.mesh.n_tets),
           "system_nnz": problem.diffusion.nnz, "build_s": t_build,
           "peak_method": "VmHWM after clear_refs" if exact_peak else "ru_maxrss",
           "rss_before": rss0, "rss_peak_delta": hwm - rss0, "rss_retained_delta": rss1 - rss0,
           "arrays_total": total_arrays,
           "arrays": dict(sorted(((k, v) for k, v in arrays.items() if v >= 0.01 * total_arrays),
                                 key=lambda kv: -kv[1]))}
    if traced:
        out.update(traced_peak=traced_peak, traced_retained=traced_now)
    for key in ("rss_peak_delta", "rss_retained_delta", "arrays_total", "traced_peak", "traced_retained"):
        if out.get(key) is not None:
            out[key + "_per_node"] = out[key] / n
    out["arrays_per_node"] = {k: round(v / n, 1) for k, v in out["arrays"].items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("compile")
    c.add_argument("model")
    m = sub.add_parser("memory")
    m.add_argument("case")
    m.add_argument("--end-time", type=float, default=0.05)
    m.add_argument("--tracemalloc", action="store_true")
    args = ap.parse_args(argv)
    if args.what == "compile":
        out = compile_probe(args.model)
    else:
        out = memory_probe(args.case, args.end_time, args.tracemalloc)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
