"""Reaction kernels alone: node-steps per second on 10^5 nodes, and compile time.

``bench_reaction[model-way-threads]``
    The generated tissue kernel on :data:`_common.REACTION_NODES` nodes, dt 0.01 ms, no
    stimulus, stepped the four ways a run can: ``lookup`` (the default of tissue runs:
    voltage-only rates read from the model's tables by the SIMD kernel ``step_simd``, see
    :mod:`twin.models.lookup`), ``scalar`` (the same tables, node at a time), ``exact`` (every
    rate evaluated, vectorised over nodes: ``model.kernel_simd``, the default of models without
    tables) and ``exact_scalar`` (``model.kernel``, node at a time); the ``*scalar`` rows report
    ``simd_speedup``.  The nodes start
    from states sampled evenly over one paced beat (1000 ms), so the mix of resting,
    upstroke, plateau and repolarising nodes (and the model's voltage branches) is
    that of tissue over a cycle, not of a resting cell only.  Reported:
    ``node_steps_per_s`` (best round), ``ns_per_node_step``, ``node_steps_per_s_per_triad_GBs``
    (the CI ratio: node-steps per byte of triad bandwidth at the same thread count) and,
    for 2 threads, ``parallel_efficiency`` = rate(2) / (2 rate(1)).

``bench_compile_time[model]``
    Two fresh interpreters with an empty ``TWIN_CACHE_DIR`` and ``NUMBA_CACHE_DIR``
    (a temporary folder): the first compiles everything (``cold_*``), the second finds
    the kernels cached (``cached_*``).  ``*_model_ready_s`` is get_model (Myokit parse and
    analysis, code generation or cache look-up) + the reaction warm-up of a tissue run (Numba
    compile or cache load of the kernels it uses): the target is ``cached_model_ready_s`` < 2 s.  ``*_process_s`` is the
    subprocess's wall time including interpreter start and imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import _common as C

STEPS_PER_ROUND = {"mitchell_schaeffer": 40, "tentusscher_2006": 10, "ohara_rudy_2011": 5}
DT = 0.01

_rates: dict[tuple[str, int], float] = {}


def beat_states(model, n: int) -> np.ndarray:
    """``(n_states, n)`` states sampled evenly over one paced beat of ``model`` (dt 0.01 ms, bcl 1000 ms)."""
    bcl = 1000.0
    n_steps = int(round(bcl / DT))
    params = model.parameter_row({})
    s = model.initial_states(1)
    out = np.empty((model.n_states, n_steps + 1))
    out[:, 0] = s[:, 0]
    amp = model.cell_stimulus if model.cell_stimulus is not None else 40.0
    dur = model.cell_stimulus_duration or 1.0
    bad = model.cell_kernel(s, params, float(amp), 0.0, float(dur), bcl, DT, n_steps, 1, 1, out)
    assert bad < 0, f"{model.name} diverged while preparing the states"
    cols = np.linspace(0, n_steps, n).astype(np.int64)
    return np.ascontiguousarray(out[:, cols])


@pytest.fixture(scope="module", params=[pytest.param(m, marks=pytest.mark.ci) if m != "ohara_rudy_2011" else m
                                        for m in C.REACTION_MODELS])
def reaction_setup(request):
    from twin.models import get_model

    model = get_model(request.param)
    n = C.REACTION_NODES
    start = beat_states(model, n)
    params = model.param_defaults[None, :].copy()
    region = np.zeros(n, np.int32)
    stim = np.zeros(n)
    return model, start, params, region, stim


@pytest.mark.parametrize("threads", [1, 2], ids=lambda t: f"{t}thr")
@pytest.mark.parametrize("way", ["lookup", "scalar", "exact", "exact_scalar"])
def bench_reaction(measure, reaction_setup, way, threads, request):
    from twin.models.lookup import LookupSettings, ReactionStepper

    model, start, params, region, stim = reaction_setup
    if threads > C.max_threads():
        pytest.skip(f"only {C.max_threads()} Numba threads here")
    tables = way in ("lookup", "scalar")
    if tables and model.lookup is None:
        pytest.skip(f"{model.name} has no lookup table")
    react = ReactionStepper(model, params, region, 1,
                            LookupSettings(enabled=tables, simd=way in ("lookup", "exact")))
    react.warm_up(DT)  # tables built and the kernel compiled (or loaded) before timing
    k = STEPS_PER_ROUND.get(model.name, 10)
    n = start.shape[1]
    states = start.copy()

    def steps():
        for _ in range(k):
            react(states, stim, DT)

    with C.numba_threads(threads):
        best, median = measure.run(steps, rounds=5, warmup=1)
    assert np.isfinite(states).all()
    rate = n * k / best
    cpu_rate = n * k / (measure.cpu_seconds() / threads)
    _rates[(model.name, way, threads)] = rate
    info = {"model": model.name, "way": way, "n_states": model.n_states, "nodes": n, "steps_per_round": k,
            "node_steps_per_s": rate, "node_steps_per_s_median": n * k / median,
            "node_steps_per_s_cpu_norm": cpu_rate,
            "ns_per_node_step": 1e9 / rate,
            "state_bytes_per_s": rate * 16 * model.n_states / 1e9,   # GB/s of state read+write
            "summary_keys": ["ns_per_node_step", "node_steps_per_s_cpu_norm", "cpu_use"]}
    if threads > 1 and (model.name, way, 1) in _rates:
        info["parallel_efficiency"] = rate / (threads * _rates[(model.name, way, 1)])
        info["summary_keys"].append("parallel_efficiency")
    simd_way = {"scalar": "lookup", "exact_scalar": "exact"}.get(way)
    if simd_way and (model.name, simd_way, threads) in _rates:
        info["simd_speedup"] = _rates[(model.name, simd_way, threads)] / rate
        info["summary_keys"].append("simd_speedup")
    if way == "exact" and (model.name, "lookup", threads) in _rates:
        info["lookup_speedup"] = _rates[(model.name, "lookup", threads)] / rate
        info["summary_keys"].append("lookup_speedup")
    measure.report(threads, ratio_to_triad={"node_steps_per_s": rate}, **info)


# --------------------------------------------------------------------------- compile time
def _probe(model: str, cache: str) -> dict:
    env = dict(os.environ, TWIN_CACHE_DIR=cache, NUMBA_CACHE_DIR=os.path.join(cache, "numba"))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, os.path.join(C.HERE, "_probe.py"), "compile", model],
                         env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"compile probe failed for {model}:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = wall
    return res


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.ci) if m == "tentusscher_2006" else m
                                   for m in C.REACTION_MODELS])
def bench_compile_time(measure, model, tmp_path):
    cache = str(tmp_path / "cache")
    box: dict = {}

    def both():
        box["cold"] = _probe(model, cache)
        box["cached"] = _probe(model, cache)

    measure.once(both)
    info = {"model": model, "seconds": box["cached"]["model_ready_s"]}
    for phase in ("cold", "cached"):
        r = box[phase]
        for key in ("import_s", "model_load_s", "kernel_first_call_s", "model_ready_s", "solver_kernels_s",
                    "process_s"):
            info[f"{phase}_{key}"] = r[key]
    info["summary_keys"] = ["cold_model_ready_s", "cached_model_ready_s", "cached_model_load_s",
                            "cached_kernel_first_call_s", "cold_solver_kernels_s", "cached_process_s"]
    measure.report(1, **info)  # compiling is serial
