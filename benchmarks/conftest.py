"""pytest-benchmark fixtures for twin's benchmark suites.

Every benchmark reports throughput through ``benchmark.extra_info`` (it lands in
``--benchmark-json``), together with the thread count, the STREAM-triad bandwidth
measured in the same session at the same thread count, ``os.getloadavg()`` and the
share of the CPUs other processes used meanwhile.  At the end of the session a table
of the headline numbers and a check of the performance targets are printed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest

import _common as C

#: name -> extra_info of every benchmark that ran (for the summary and the targets)
RESULTS: dict[str, dict[str, Any]] = {}


def pytest_configure(config: pytest.Config) -> None:
    out = getattr(config.option, "benchmark_json", None)
    if out:  # pytest-benchmark opens the file itself and does not create its folder
        os.makedirs(os.path.dirname(os.path.abspath(str(out))), exist_ok=True)
    config.addinivalue_line("markers", "ci: the short subset CI runs and check_baseline.py checks")
    config.addinivalue_line("markers", "slow: long benchmarks (10^6 nodes); deselect with -m 'not slow'")


# --------------------------------------------------------------------------- triad in the same run
class Triad:
    """STREAM triad bandwidth per thread count, measured once per session on first use."""

    def __init__(self) -> None:
        self.results: dict[int, dict[str, Any]] = {}

    def __call__(self, threads: int) -> dict[str, Any]:
        if threads not in self.results:
            self.results[threads] = C.measure_triad(threads)
        return self.results[threads]

    def gbs(self, threads: int) -> float:
        return float(self(threads)["GBs"])


@pytest.fixture(scope="session")
def triad() -> Triad:
    return Triad()


# --------------------------------------------------------------------------- measuring
class Measure:
    """Time ``fn`` with pytest-benchmark and attach throughput and machine state.

    ``run(fn, rounds, warmup)`` returns the best and median seconds of one call
    (measured here, so the numbers exist with ``--benchmark-disable`` too);
    ``report(**info)`` stores the metrics in ``benchmark.extra_info``.
    """

    def __init__(self, benchmark: Any, request: pytest.FixtureRequest, triad: Triad) -> None:
        self.benchmark = benchmark
        self.name = request.node.name
        self.triad = triad
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.watch: dict[str, Any] = {}

    def run(self, fn: Callable[[], Any], rounds: int = 5, warmup: int = 1) -> tuple[float, float]:
        def timed() -> Any:
            c0 = C._own_cpu()
            t0 = time.perf_counter()
            out = fn()
            self.times.append(time.perf_counter() - t0)
            self.cpu.append(C._own_cpu() - c0)
            return out

        for _ in range(warmup):
            fn()
        watch = C.MachineWatch()
        self.benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=0)
        self.watch = watch.stop()
        ts = sorted(self.times)
        return ts[0], ts[len(ts) // 2]

    def once(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` a single time under the benchmark (for long runs); return its result."""
        box: list[Any] = []

        def timed() -> None:
            c0 = C._own_cpu()
            t0 = time.perf_counter()
            box.append(fn())
            self.times.append(time.perf_counter() - t0)
            self.cpu.append(C._own_cpu() - c0)

        watch = C.MachineWatch()
        self.benchmark.pedantic(timed, rounds=1, iterations=1, warmup_rounds=0)
        self.watch = watch.stop()
        return box[0]

    def cpu_seconds(self) -> float | None:
        """Fewest CPU seconds (all threads of this process and its subprocesses) one round took: with ``threads``
        this estimates the wall time on a quiet machine as ``cpu / threads`` (an upper bound when
        waiting threads spin)."""
        return min(self.cpu) if self.cpu else None

    def report(self, threads: int | None = None, *, ratio_to_triad: dict[str, float] | None = None,
               **info: Any) -> dict[str, Any]:
        """Store ``info`` plus machine state; ``ratio_to_triad`` maps a name to a throughput
        that is divided by the triad GB/s at ``threads`` (stored as ``<name>_per_triad_GBs``)."""
        import numba

        threads = numba.get_num_threads() if threads is None else threads
        extra: dict[str, Any] = {"threads": threads, **info}
        if self.cpu and self.times:
            i = min(range(len(self.times)), key=self.times.__getitem__)
            # how much of the CPUs it asked for the best round got (1 = all; low = starved by neighbours)
            extra["cpu_use"] = self.cpu[i] / (self.times[i] * threads) if self.times[i] > 0 else None
        if ratio_to_triad is not None:
            t = self.triad(threads)
            extra["triad_GBs"] = round(t["GBs"], 3)
            extra["triad_others_cpu_share"] = t["others_cpu_share"]
            for key, value in ratio_to_triad.items():
                extra[f"{key}_per_triad_GBs"] = (value / t["GBs"]) if value is not None else None
        extra.update(self.watch or C.MachineWatch().stop())
        note = C.load_note(extra)
        if note:
            extra["load_note"] = note
        for k, v in extra.items():
            self.benchmark.extra_info[k] = _plain(v)
        RESULTS[self.name] = extra
        return extra


def _plain(v: Any) -> Any:
    """JSON-friendly values (numpy scalars -> Python)."""
    if hasattr(v, "item") and not isinstance(v, (list, dict)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            return v
    if isinstance(v, float):
        return float(f"{v:.6g}")
    return v


@pytest.fixture
def measure(benchmark: Any, request: pytest.FixtureRequest, triad: Triad) -> Measure:
    return Measure(benchmark, request, triad)


# --------------------------------------------------------------------------- end-of-session report
#: (title, extra_info key, format) of the headline columns, first one present wins per row
HEADLINES = [
    ("node-steps/s", "node_steps_per_s", "{:.3g}"),
    ("GB/s", "GBs", "{:.2f}"),
    ("s", "seconds", "{:.3g}"),
    ("B/node", "retained_bytes_per_node", "{:.0f}"),
]


def _row(name: str, r: dict[str, Any]) -> str:
    head = ""
    for title, key, fmt in HEADLINES:
        if r.get(key) is not None:
            head = f"{fmt.format(r[key])} {title}"
            break
    ratios = ", ".join(f"{k}={r[k]:.3g}" for k in sorted(r) if k.endswith("per_triad_GBs") and r[k] is not None)
    extras = ", ".join(f"{k}={_fmt(r[k])}" for k in r.get("summary_keys", []) if k in r)
    load = f"load {r.get('loadavg_before', ['?'])[0]}, others {r.get('others_cpu_share', 0):.0%}"
    parts = [p for p in (head, ratios, extras) if p]
    note = f"  <-- {r['load_note']}" if r.get("load_note") else ""
    return f"  {name:<48} {'; '.join(parts)}  [{r.get('threads')} thr, {load}]{note}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def target_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """PASS/MISS/-- for the performance targets, from whatever ran."""
    out = []

    def line(ok: bool | None, text: str, *involved: dict[str, Any] | None) -> None:
        starved = [r for r in involved if r is not None and (r.get("cpu_use") or 1.0) < 0.8]
        note = ("  <-- measured while starved of CPU (cpu_use " + ", ".join(f"{r['cpu_use']:.2f}" for r in starved)
                + "): not a verdict") if starved else ""
        out.append(f"  [{'--  ' if ok is None else ('PASS' if ok else 'MISS')}] {text}{note}")

    run2 = results.get("bench_niederer_run[2]")
    line(None if run2 is None else run2["node_steps_per_s"] >= 1e7,
         "full TP06 run, Niederer slab dx 0.2, 2 threads >= 1e7 node-steps/s: "
         + ("not run" if run2 is None else f"{run2['node_steps_per_s']:.3g}"), run2)
    spmv = {k: v for k, v in results.items() if k.startswith("bench_matvec[")}
    for key, mv in spmv.items():
        line(mv["GBs_per_triad_GBs"] >= 0.6,
             f"SpMV >= 60 % of triad at the same thread count ({key[13:-1]}, {mv['nnz']:.3g} nnz): "
             f"{100 * mv['GBs_per_triad_GBs']:.0f} % ({mv['GBs']:.1f} of {mv['triad_GBs']:.1f} GB/s)", mv)
    if not spmv:
        line(None, "SpMV >= 60 % of triad: not run")
    scaling = {k: v for k, v in results.items() if k.startswith("bench_scaling[")}
    for threads in sorted({v["threads"] for v in scaling.values()}):
        costs = {v["size"]: v["ns_per_node_step"] for v in scaling.values() if v["threads"] == threads}
        if len(costs) < 2:
            continue
        ref = sorted(costs.values())[len(costs) // 2]    # the middle size
        dev = max(abs(c / ref - 1) for c in costs.values())
        line(dev <= 0.3, f"cost per node-step flat within +-30 % ({threads} thr): " + ", ".join(
            f"{k}: {c:.0f} ns" for k, c in costs.items()) + f" (max deviation {100 * dev:.0f} %)",
             *[v for v in scaling.values() if v["threads"] == threads])
    if not any(sum(v["threads"] == t for v in scaling.values()) >= 2 for t in (1, 2)):
        line(None, "cost per node-step flat within +-30 %: needs >= 2 sizes")
    mem = results.get("bench_memory_per_node")
    line(None if mem is None else mem["retained_bytes_per_node"] < 1024,
         "< 1 KB/node for TP06 with matrices: " + ("not run" if mem is None else
                                                    f"{mem['retained_bytes_per_node']:.0f} B/node retained, "
                                                    f"{mem['peak_bytes_per_node']:.0f} B/node peak"))
    comp = [v for k, v in results.items() if k.startswith("bench_compile_time[")]
    if comp:
        worst = max(comp, key=lambda r: r["cached_model_ready_s"])
        line(worst["cached_model_ready_s"] < 2.0,
             "cached compile < 2 s (model file -> kernel ready, worst model): "
             + ", ".join(f"{r['model']}: {r['cached_model_ready_s']:.2f} s" for r in comp), *comp)
    else:
        line(None, "cached compile < 2 s: not run")
    return out


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("twin throughput (extra_info; ratios are per triad GB/s at the same thread count)")
    for name, r in RESULTS.items():
        tr.write_line(_row(name, r))
    tr.section("twin performance targets")
    for text in target_lines(RESULTS):
        tr.write_line(text)
