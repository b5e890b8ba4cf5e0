"""Helpers shared by the benchmark suites, the subprocess probe and the peer script.

Nothing here is part of twin: it measures twin.  Every number a suite reports is a
throughput (node-steps/s, GB/s) or a ratio, with the machine's state next to it:
thread count, ``os.getloadavg()`` and the share of the CPUs that *other* processes
used while the measurement ran (from ``/proc/stat`` minus this process's own CPU time).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numba import njit, prange

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# --------------------------------------------------------------------------- problem sizes
#: the Niederer et al. 2011 slab [mm], TP06 epi, at the resolution of the throughput target
NIEDERER_DX = 0.2
NIEDERER_DT = 0.01
#: short full run on the slab [ms] (override with BENCH_RUN_MS)
RUN_MS = float(os.environ.get("BENCH_RUN_MS", "2.0"))
#: nodes of the reaction-only benchmark
REACTION_NODES = 100_000
#: models of the reaction benchmark
REACTION_MODELS = ("mitchell_schaeffer", "tentusscher_2006", "ohara_rudy_2011")
#: box cubes [mm] at spacing 0.2 mm for the cost-per-node-step scaling: 22³, 47³, 101³ nodes
SCALING_SIDES = {"1e4": 4.2, "1e5": 9.2, "1e6": 20.0}
#: STREAM triad length: 3 × 64 MiB, well past the 32 MiB L3 of the reference machine
TRIAD_N = 1 << 23


# --------------------------------------------------------------------------- machine state
def ncpu() -> int:
    return os.cpu_count() or 1


def _proc_stat() -> tuple[float, float]:
    """(busy, steal) jiffies of all CPUs from /proc/stat (0, 0 where it does not exist)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            parts = f.readline().split()
    except OSError:
        return 0.0, 0.0
    vals = [float(x) for x in parts[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)
    steal = vals[7] if len(vals) > 7 else 0.0
    guest = sum(vals[8:10]) if len(vals) > 9 else 0.0   # already counted in user/nice
    busy = sum(vals[:8]) - idle - steal - guest
    return busy, steal


def _own_cpu() -> float:
    """CPU seconds of this process and its waited-for children."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class MachineWatch:
    """Load of the machine while a measurement runs.

    ``others_cpu`` is the share of all CPUs (0 = none, 1 = every core busy) used by
    processes other than this one (and its children) during the interval; ``steal``
    the share the hypervisor took.  Above ~0.2 the numbers beside it are not clean.
    """

    def __init__(self) -> None:
        self.load_before = os.getloadavg()
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._busy0, self._steal0 = _proc_stat()
        self._own0 = _own_cpu()
        self._t0 = time.perf_counter()
        self.result: dict[str, Any] = {}

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._t0
        busy1, steal1 = _proc_stat()
        own = _own_cpu() - self._own0
        cap = max(wall, 1e-9) * ncpu()
        others = max(0.0, (busy1 - self._busy0) / self._hz - own) / cap
        steal = max(0.0, (steal1 - self._steal0) / self._hz) / cap
        la = os.getloadavg()
        self.result = {"loadavg_before": [round(x, 2) for x in self.load_before],
                       "loadavg_after": [round(x, 2) for x in la],
                       "others_cpu_share": round(min(others, 1.0), 3), "steal_share": round(steal, 3),
                       "ncpu": ncpu()}
        return self.result


def load_note(watch: dict[str, Any]) -> str:
    """A short warning when other processes competed for the CPUs during a measurement.

    With ``cpu_use`` (CPU time got ÷ CPU time asked for, see conftest.Measure) the verdict is
    about this measurement's own threads: below 0.8 they were starved.  Without it, the
    share of the CPUs that other processes used decides.
    """
    share = watch.get("others_cpu_share", 0.0)
    use = watch.get("cpu_use")
    if isinstance(use, (int, float)):
        if use < 0.8:
            return f"STARVED: got {use:.0%} of the CPU time asked for (others used {share:.0%} of the CPUs)"
        return f"others used {share:.0%} of the CPUs (this measurement still had its cores)" if share >= 0.15 else ""
    if share >= 0.5:
        return f"HEAVY LOAD: other processes used {share:.0%} of the CPUs"
    if share >= 0.15:
        return f"loaded: other processes used {share:.0%} of the CPUs"
    return ""


@contextlib.contextmanager
def numba_threads(n: int | None) -> Iterator[int]:
    """Run a block with ``n`` Numba threads (None: leave as is); restore afterwards."""
    import numba

    old = numba.get_num_threads()
    if n is not None:
        numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield numba.get_num_threads()
    finally:
        numba.set_num_threads(old)


def max_threads() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


# --------------------------------------------------------------------------- STREAM triad
@njit(parallel=True, cache=False, fastmath=False, boundscheck=False)
def _triad(a, b, c, s):  # pragma: no cover - JIT
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


@njit(parallel=True, cache=False, boundscheck=False)
def _first_touch(a, value):  # pragma: no cover - JIT
    for i in prange(a.shape[0]):
        a[i] = value


def triad_arrays(n: int = TRIAD_N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b, c = np.empty(n), np.empty(n), np.empty(n)
    # pages are placed by the threads that use them (first touch), as STREAM does
    _first_touch(a, 0.0)
    _first_touch(b, 1.0)
    _first_touch(c, 2.0)
    return a, b, c


def triad_once(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    _triad(a, b, c, 3.0)


def triad_bytes(n: int) -> int:
    """STREAM's count: read b and c, write a (24 B per element; write-allocate not counted)."""
    return 24 * n


def measure_triad(threads: int, n: int = TRIAD_N, reps: int = 12) -> dict[str, Any]:
    """Best-of-``reps`` triad bandwidth [GB/s, 1e9 B/s] at ``threads`` Numba threads."""
    with numba_threads(threads) as used:
        a, b, c = triad_arrays(n)
        triad_once(a, b, c)                       # compile + warm
        watch = MachineWatch()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            triad_once(a, b, c)
            times.append(time.perf_counter() - t0)
        w = watch.stop()
    best = min(times)
    return {"threads": used, "n": n, "bytes": triad_bytes(n), "best_s": best,
            "median_s": float(np.median(times)), "GBs": triad_bytes(n) / best / 1e9,
            "GBs_median": triad_bytes(n) / float(np.median(times)) / 1e9, **w}


# --------------------------------------------------------------------------- sparse byte models
def matvec_bytes(n: int, nnz: int) -> dict[str, int]:
    """Memory traffic of one CSR ``y = A x`` (float64 data, int32 indices, int64 indptr).

    ``compulsory``: data 8·nnz + indices 4·nnz + indptr 8·(n+1) + x read once 8·n
    (perfect reuse of the gathered x entries in cache) + y written 8·n. This is the
    model the GB/s and the ratio to the triad use.  ``no_reuse`` counts a separate
    8-byte x gather per nonzero instead (an upper bound on the traffic).
    """
    base = 12 * nnz + 8 * (n + 1) + 8 * n
    return {"compulsory": base + 8 * n, "no_reuse": base + 8 * nnz}


def sell_matvec_bytes(n: int, entries: int, chunks: int, value_bytes: int, rows_per_chunk: int) -> int:
    """Compulsory traffic of one SELL ``y = A x`` (twin.solver.sell.sell_matvec): a value
    (``value_bytes``) and a column (4) per stored entry (padding included), offset + width 16 per
    chunk, x read once, y written (8 per padded row)."""
    return (value_bytes + 4) * entries + 16 * chunks + 8 * n + 8 * rows_per_chunk * chunks


#: bytes per unknown moved by the vector operations of one iteration of the fused
#: twin.solver.sell.pcg_from, besides its mat-vec (whose pass also forms p·q from registers):
#: the update pass reads x, p, r, q, D⁻¹ and writes x, r, z (64), p = z + βp reads 2, writes 1 (24)
PCG_VECTOR_BYTES_PER_ITER = 88
#: set-up of one solve: the residual pass (with its mat-vec) reads b, D⁻¹ and writes r, z (32), p = z (16)
PCG_VECTOR_BYTES_SETUP = 48


def pcg_bytes(n: int, nnz: int, iterations: int, mv: int | None = None) -> int:
    """Traffic of one PCG solve: ``mv`` bytes per mat-vec (default: the CSR model)."""
    mv = matvec_bytes(n, nnz)["compulsory"] if mv is None else mv
    return (iterations + 1) * mv + iterations * PCG_VECTOR_BYTES_PER_ITER * n + PCG_VECTOR_BYTES_SETUP * n


# --------------------------------------------------------------------------- cases
def niederer_case_text(end_time: float, dx: float = NIEDERER_DX, dt: float = NIEDERER_DT) -> str:
    """The Niederer slab exactly as ``twin verify niederer`` runs it (TP06 epi, CN, Godunov)."""
    from twin.verify.niederer import case_text

    return case_text(dx, dt, end_time)


def box_case_text(side: float, end_time: float, spacing: float = NIEDERER_DX, dt: float = NIEDERER_DT,
                  model: str = "tentusscher_2006") -> str:
    """A TP06 cube of side ``side`` [mm] with the Niederer tissue and corner stimulus."""
    from twin.verify.niederer import monodomain_conductivities

    sl, st = monodomain_conductivities()
    s = min(1.5, side / 2)
    return f"""\
name: bench_box_{side:g}
mesh: {{generator: box, size: [{side!r}, {side!r}, {side!r}], spacing: {spacing!r}}}
tissue: {{sigma_l: {sl!r}, sigma_t: {st!r}, chi: 140.0, cm: 0.01, fibres: {{source: uniform, direction: [1, 0, 0]}}}}
model: {{name: {model}}}
stimuli:
  - name: corner
    region: {{box: {{min: [0, 0, 0], max: [{s!r}, {s!r}, {s!r}]}}}}
    strength: 50000 uA/cm^3
    start: 0
    duration: 2.0
solver: {{dt: {dt!r}, end_time: {end_time!r}, theta: 0.5, splitting: godunov, diffusion: implicit}}
outputs: {{interval: 0, maps: [activation], activation: {{threshold: 0.0}}}}
"""


def build(case_text: str, source: str = "<benchmark>") -> Any:
    from twin.case import case_from_text
    from twin.solver.setup import build_problem

    return build_problem(case_from_text(case_text, source=source))


def run_summary(problem: Any) -> dict[str, Any]:
    """Run a problem in memory; return its summary (timings, throughput)."""
    from twin.solver.simulation import Simulation

    return Simulation(problem, folder=None).run().summary


def split_rates(summary: dict[str, Any]) -> dict[str, Any]:
    """Node-steps/s of the whole solve and of each part, from a run summary.

    A part's rate is node-steps ÷ seconds spent in that part (so the whole is the
    harmonic combination of the parts); ``share_*`` is the part's share of the solve.
    """
    nodes = summary["mesh"]["nodes"]
    steps = summary["run"]["steps"]
    t = summary["timings_s"]
    ns = nodes * steps
    out: dict[str, Any] = {"nodes": nodes, "steps": steps, "node_steps": ns,
                           "node_steps_per_s": ns / t["solve"],
                           "ns_per_node_step": 1e9 * t["solve"] / ns,
                           "pcg_iterations_mean": summary["run"]["pcg_iterations_mean"],
                           "compile_s": t["compile"]}
    for part in ("reaction", "diffusion", "observers", "output"):
        sec = t.get(f"solve_{part}", 0.0)
        out[f"{part}_s"] = sec
        out[f"{part}_node_steps_per_s"] = ns / sec if sec > 0 else None
        out[f"share_{part}"] = sec / t["solve"]
    return out


def best_of(fn: Callable[[], Any], reps: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), times
