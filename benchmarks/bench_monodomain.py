"""The whole monodomain solver: one step, a short run, assembly, memory, and scaling.

Problem: the Niederer et al. 2011 slab (20 × 7 × 3 mm, fibres along x, TP06 epi,
dx 0.2 mm → 101 × 36 × 16 = 58 176 nodes, 315 000 tetrahedra, dt 0.01 ms, Crank–Nicolson,
Godunov splitting, corner stimulus), exactly as ``twin verify niederer`` builds it.

``bench_assembly``
    ``build_problem`` (mesh generation, tissue, P1 stiffness and consistent mass, the
    diffusion stepper's system matrices A = M + θ dt K', B = M − (1−θ) dt K' on one
    pattern, model table, stimulus). Seconds, split by stage, and µs per node.

``bench_monodomain_step[threads]``
    One full time step, as the time loop does it (stimulus, reaction with lookup tables, NaN check,
    B mat-vec + PCG, activation map, v_prev copy), from a propagating-wave state: the
    slab's nodes hold the states of one paced TP06 beat, delayed by their distance from
    a front at x = 5 mm moving at 0.6 mm/ms (so PCG meets a real front).  Successive
    rounds continue the wave.  ``node_steps_per_s`` and its split.

``bench_niederer_run[threads]``
    ``Simulation(problem, folder).run()`` for ``BENCH_RUN_MS`` (default 2 ms, 200 steps)
    from rest with the stimulus on, writing Vm every 1 ms to a VTU series in a
    temporary folder.  Reports the summary's node-steps/s for the whole solve and per part
    (reaction, diffusion, observers, output), and at 2 threads the parallel efficiency
    rate(2) / (2 rate(1)) of each part.  The target: >= 1e7 node-steps/s at 2 threads.

``bench_lv_run`` (``slow``)
    The same full run on the Land et al. 2015 LV ellipsoid meshed by gmsh at 0.135 mm
    (``BENCH_LV_RESOLUTION``; about 10^6 nodes) with LDRB fibres, TP06 epi, paced at the
    apex, 2 ms with Vm every 1 ms (as the slab run); also the seconds of gmsh, LDRB and ``build_problem``.

``bench_memory_per_node``
    ``_probe.py memory niederer`` in a subprocess (see its docstring): peak resident-set
    increase (VmHWM) over building the problem and running 5 steps, the memory retained
    by numpy/Python allocations afterwards (tracemalloc, exact), and the nbytes of every
    array by owner, all per node.  Target: < 1 KB/node retained.

``bench_scaling[size]``
    Cost per node-step (ns) of TP06 runs on box cubes at spacing 0.2 mm and dt 0.01 ms
    with ~10^4, ~10^5 and (``slow``) ~10^6 nodes; flat within ±30 % is the target.
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

THREADS = [1, 2]
_run_rates: dict[int, dict] = {}


def _threads_or_skip(threads: int) -> None:
    if threads > C.max_threads():
        pytest.skip(f"only {C.max_threads()} Numba threads here")


# --------------------------------------------------------------------------- assembly
@pytest.mark.ci
def bench_assembly(measure):
    box: dict = {}

    def build():
        t0 = time.perf_counter()
        p = C.build(C.niederer_case_text(C.RUN_MS))
        box.update(problem=p, build_s=time.perf_counter() - t0)

    best, _ = measure.run(build, rounds=2, warmup=0)
    p = box["problem"]
    n = p.n_nodes
    info = {"nodes": n, "tetrahedra": int(p.mesh.n_tets), "system_nnz": p.diffusion.nnz, "seconds": best,
            "us_per_node": 1e6 * best / n, "build_problem_s": box["build_s"],
            **{f"setup_{k}_s": v for k, v in p.timings.items()}}
    info["summary_keys"] = ["us_per_node"] + [f"setup_{k}_s" for k in p.timings]
    measure.report(1, **info)  # numpy/scipy assembly is serial


# --------------------------------------------------------------------------- one step
def wave_states(problem, front_x: float = 5.0, cv: float = 0.6) -> np.ndarray:
    """TP06 states of a plane wave along x: node at x has been active for (front_x - x)/cv ms."""
    model = problem.model
    dt = C.NIEDERER_DT
    n_steps = int(round(500.0 / dt))
    params = problem.params[0].copy()
    s = model.initial_states(1)
    out = np.empty((model.n_states, n_steps + 1))
    out[:, 0] = s[:, 0]
    start = 1.0
    bad = model.cell_kernel(s, params, float(model.cell_stimulus), start, 1.0, 1000.0, dt, n_steps, 1, 1, out)
    assert bad < 0
    since = (front_x - problem.mesh.points[:, 0]) / cv                 # ms since activation (< 0: not yet)
    col = np.where(since > 0, np.clip(np.round((start + since) / dt), 0, n_steps), 0).astype(np.int64)
    return np.ascontiguousarray(out[:, col])


@pytest.fixture(scope="module")
def niederer_problem():
    return C.build(C.niederer_case_text(C.RUN_MS))


@pytest.mark.ci
@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thr")
def bench_monodomain_step(measure, niederer_problem, threads):
    from twin.observers.activation import ActivationMap
    from twin.solver.simulation import Simulation, _check_finite
    from twin.solver.stimulus import StimulusSet

    _threads_or_skip(threads)
    p = niederer_problem
    sim = Simulation(p)
    n = p.n_nodes
    dt = sim.dt
    states = wave_states(p)
    v = states[p.model.vm_index]
    v_prev = v.copy()
    act = ActivationMap(n, p.activation_threshold)
    stimuli = StimulusSet(p.stimuli, n)
    react = sim.reaction  # lookup tables on, as in a run
    clock = time.perf_counter
    parts = {"reaction": 0.0, "diffusion": 0.0, "observers": 0.0}
    its: list[int] = []
    step_no = [0]

    def step():
        t = 5.0 + step_no[0] * dt                            # after the stimulus: the wave runs freely
        c0 = clock()
        react(states, stimuli.at(t + 0.5 * dt), dt)
        _check_finite(v, t + dt, step_no[0])
        c1 = clock()
        its.append(sim.diffusion.step(v))
        c2 = clock()
        act.update(v_prev, v, t, dt)
        v_prev[:] = v
        c3 = clock()
        parts["reaction"] += c1 - c0
        parts["diffusion"] += c2 - c1
        parts["observers"] += c3 - c2
        step_no[0] += 1

    with C.numba_threads(threads):
        sim._compile()
        best, median = measure.run(step, rounds=20, warmup=2)
    total = sum(parts.values())
    rate = n / best
    measure.report(threads, ratio_to_triad={"node_steps_per_s": rate}, nodes=n, node_steps_per_s=rate,
                   node_steps_per_s_median=n / median, ms_per_step=1e3 * best,
                   pcg_iterations_mean=float(np.mean(its)),
                   node_steps_per_s_cpu_norm=n / (measure.cpu_seconds() / threads),
                   **{f"share_{k}": v / total for k, v in parts.items()},
                   summary_keys=["ms_per_step", "pcg_iterations_mean", "share_reaction", "share_diffusion",
                                 "node_steps_per_s_cpu_norm", "cpu_use"])


# --------------------------------------------------------------------------- short full run
@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}")
def bench_niederer_run(measure, threads, tmp_path):
    from twin.io.output import RunFolder
    from twin.solver.simulation import Simulation

    _threads_or_skip(threads)
    # the same problem with Vm written every 1 ms (the slab's case writes no series)
    case_text = C.niederer_case_text(C.RUN_MS).replace("interval: 0,", "interval: 1.0,")
    problem = C.build(case_text)
    with C.numba_threads(threads):
        summary = measure.once(lambda: Simulation(problem, RunFolder(tmp_path / "out", overwrite=True)).run().summary)
    rates = C.split_rates(summary)
    cpu_use = measure.cpu_seconds() / (measure.times[0] * threads)
    # the wall-clock rate scaled by the share of its CPUs the run got: the rate on a quiet machine
    # if the starvation was uniform (a lower bound when waiting threads spin)
    rates["node_steps_per_s_cpu_norm"] = rates["node_steps_per_s"] / min(1.0, cpu_use)
    _run_rates[threads] = rates
    info = {**rates, "run_ms": C.RUN_MS, "activated_nodes": summary["activation"]["activated_nodes"],
            "summary_keys": ["ns_per_node_step", "reaction_node_steps_per_s", "diffusion_node_steps_per_s",
                             "observers_node_steps_per_s", "output_node_steps_per_s", "share_reaction",
                             "share_diffusion", "pcg_iterations_mean", "node_steps_per_s_cpu_norm", "cpu_use"]}
    if threads > 1 and 1 in _run_rates:
        one = _run_rates[1]
        for part in ("", "reaction_", "diffusion_"):
            a, b = rates[f"{part}node_steps_per_s"], one[f"{part}node_steps_per_s"]
            info[f"{part}parallel_efficiency"] = a / (threads * b) if a and b else None
        info["summary_keys"] += ["parallel_efficiency", "reaction_parallel_efficiency",
                                 "diffusion_parallel_efficiency"]
    measure.report(threads, ratio_to_triad={"node_steps_per_s": rates["node_steps_per_s"]}, **info)


# --------------------------------------------------------------------------- LV of ~10^6 nodes
#: gmsh edge length [mm] of the Land et al. LV ellipsoid giving about 10^6 nodes (override: BENCH_LV_RESOLUTION)
LV_RESOLUTION = float(os.environ.get("BENCH_LV_RESOLUTION", "0.135"))
LV_RUN_MS = 2.0


def lv_case_text(mesh_file: str, end_time: float = LV_RUN_MS) -> str:
    """TP06 (epi) on an LV mesh with rule-based fibres, paced at the apex, CN, dt 0.01 ms, Vm every 1 ms."""
    from twin.verify.niederer import monodomain_conductivities

    sl, st = monodomain_conductivities()
    return f"""\
name: bench_lv
mesh: {{file: {mesh_file}, unit: mm}}
tissue: {{sigma_l: {sl!r}, sigma_t: {st!r}, chi: 140.0, cm: 0.01, fibres: {{source: mesh}}}}
model: {{name: tentusscher_2006}}
stimuli:
  - {{name: apex, region: {{sphere: {{center: [0, 0, -19], radius: 2.0}}}}, strength: 50000 uA/cm^3, start: 0,
     duration: 2.0}}
solver: {{dt: {C.NIEDERER_DT!r}, end_time: {end_time!r}, theta: 0.5, splitting: godunov, diffusion: implicit}}
outputs: {{interval: 1.0, maps: [activation], activation: {{threshold: 0.0}}}}
"""


@pytest.mark.slow
def bench_lv_run(measure, tmp_path):
    """``Simulation.run()`` on the Land et al. 2015 LV ellipsoid meshed by gmsh at ``LV_RESOLUTION``
    (about 10^6 nodes) with LDRB fibres: node-steps/s, split by part, next to the set-up cost."""
    from twin.io.output import RunFolder
    from twin.mesh.anatomy import lv_ellipsoid
    from twin.mesh.fibres import with_ldrb_fibres
    from twin.mesh.io import write_mesh
    from twin.solver.simulation import Simulation

    t0 = time.perf_counter()
    mesh = lv_ellipsoid(LV_RESOLUTION, max_tets=20_000_000)
    t1 = time.perf_counter()
    mesh = with_ldrb_fibres(mesh)
    t2 = time.perf_counter()
    path = tmp_path / "lv.vtu"
    write_mesh(mesh, path)
    del mesh
    t3 = time.perf_counter()
    problem = C.build(lv_case_text(str(path)))
    t4 = time.perf_counter()
    threads = C.max_threads()
    summary = measure.once(lambda: Simulation(problem, RunFolder(tmp_path / "out", overwrite=True)).run().summary)
    rates = C.split_rates(summary)
    cpu_use = measure.cpu_seconds() / (measure.times[0] * threads)
    rates["node_steps_per_s_cpu_norm"] = rates["node_steps_per_s"] / min(1.0, cpu_use)
    measure.report(threads, ratio_to_triad={"node_steps_per_s": rates["node_steps_per_s"]}, **rates,
                   resolution_mm=LV_RESOLUTION, tetrahedra=int(problem.mesh.n_tets), run_ms=LV_RUN_MS,
                   gmsh_s=t1 - t0, ldrb_s=t2 - t1, write_s=t3 - t2, build_problem_s=t4 - t3,
                   summary_keys=["nodes", "ns_per_node_step", "share_reaction", "share_diffusion",
                                 "share_output", "pcg_iterations_mean", "gmsh_s", "ldrb_s", "build_problem_s",
                                 "cpu_use"])


# --------------------------------------------------------------------------- memory
def _memory_probe(traced: bool) -> dict:
    cmd = [sys.executable, os.path.join(C.HERE, "_probe.py"), "memory", "niederer"] + (["--tracemalloc"] if traced
                                                                                      else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_memory_per_node(measure):
    box: dict = {}

    def both():
        box["rss"] = _memory_probe(False)
        box["traced"] = _memory_probe(True)

    measure.once(both)
    rss, tr = box["rss"], box["traced"]
    measure.report(1, nodes=rss["nodes"], method=("retained = tracemalloc current after build + 5 steps (numpy and "
                                               "Python allocations); peak = VmHWM - VmRSS before the build, in a "
                                               "process without tracemalloc (" + rss["peak_method"] + ")"),
                   retained_bytes_per_node=tr["traced_retained_per_node"],
                   peak_bytes_per_node=rss["rss_peak_delta_per_node"],
                   traced_peak_bytes_per_node=tr["traced_peak_per_node"],
                   rss_retained_bytes_per_node=rss["rss_retained_delta_per_node"],
                   arrays_bytes_per_node=tr["arrays_total_per_node"], arrays_per_node=tr["arrays_per_node"],
                   summary_keys=["peak_bytes_per_node", "rss_retained_bytes_per_node", "arrays_per_node"])


# --------------------------------------------------------------------------- scaling
#: simulated time per size [ms]: about 1-5 M node-steps each, all inside the 2 ms stimulus
SCALING_END = {"1e4": 1.0, "1e5": 0.3, "1e6": 0.1}


@pytest.mark.parametrize("threads", [1, 2], ids=lambda t: f"{t}thr")
@pytest.mark.parametrize("size", ["1e4", "1e5", pytest.param("1e6", marks=pytest.mark.slow)])
def bench_scaling(measure, size, threads):
    if threads > C.max_threads():
        pytest.skip(f"only {C.max_threads()} Numba threads here")
    problem = C.build(C.box_case_text(C.SCALING_SIDES[size], SCALING_END[size]))
    summaries: list = []
    with C.numba_threads(threads):
        # best of three runs (after one that compiles): a single short run is at the mercy of
        # one descheduled thread
        measure.run(lambda: summaries.append(C.run_summary(problem)), rounds=3, warmup=1)
    summary = max(summaries[1:], key=lambda s: C.split_rates(s)["node_steps_per_s"])
    rates = C.split_rates(summary)
    cpu_use = measure.cpu_seconds() / (min(measure.times) * threads)
    rates["node_steps_per_s_cpu_norm"] = rates["node_steps_per_s"] / min(1.0, cpu_use)
    rates["ns_per_node_step_cpu_norm"] = 1e9 / rates["node_steps_per_s_cpu_norm"]
    measure.report(threads, ratio_to_triad={"node_steps_per_s": rates["node_steps_per_s"]}, size=size,
                   side_mm=C.SCALING_SIDES[size], end_ms=SCALING_END[size], **rates,
                   summary_keys=["nodes", "ns_per_node_step", "ns_per_node_step_cpu_norm", "share_reaction",
                                 "share_diffusion", "pcg_iterations_mean", "cpu_use"])
