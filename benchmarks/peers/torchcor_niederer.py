"""twin next to TorchCor on the Niederer et al. 2011 slab: throughput and activation times.

    .venv/bin/python benchmarks/peers/torchcor_niederer.py [--dx 0.2] [--dt 0.01] [--end-time 45]
        [--threads 2] [--repeats 3] [--peer-python /tmp/bench/peer-venv/bin/python] [--workdir DIR]
        [--json OUT]

TorchCor (PyPI ``torchcor``, PyTorch) must live in its own environment, e.g.::

    python3 -m venv /tmp/bench/peer-venv
    /tmp/bench/peer-venv/bin/pip install torch==2.13.0 torchcor

and is found through ``--peer-python``, ``$TWIN_PEER_PYTHON``, or this interpreter when it
can import torchcor.  Without it the script prints why it skipped and exits 0.

The identical problem on both sides: the same mesh (twin's box mesh of the slab written
as CARP .pts/.elem/.lon in µm and read by TorchCor with ``unit_conversion=1000``), fibres
along x, the same monodomain conductivities (harmonic means of Niederer's σi, σe, given
to TorchCor as ``il``/``it``), χ = 140 /mm, Cm = 0.01 µF/mm² (TorchCor's built-in values),
ten Tusscher–Panfilov 2006 epicardial cells, the same stimulated nodes (written as a
.vtx) with 50 µA/mm³ = 35.714 A/F for 2 ms, consistent mass, Crank–Nicolson (θ = 1/2),
dt, end time and thread count, and PCG to a relative tolerance of 1e-8.  Activation
time on both sides: first upward crossing of 0 mV, linearly interpolated within the step,
tracked every step (TorchCor is driven step by step through its public
``Monodomain.assemble()`` / ``cg.initialize()`` / ``step()``, exactly as its ``solve()``
does, so no Vm snapshots need to be stored).

Timing: the two codes run in turn, twin then TorchCor, ``--repeats`` times; the table shows
each code's fastest run (noise on a shared machine only ever slows a run down; seen here:
the same twin code at 1.39e7 and 1.85e7 node-steps/s five minutes apart) and every pair's
ratio below it.  twin's repeats must give bit-identical activation maps (same case, same
thread count).

What cannot be made identical (TorchCor has no switch for it), and so moves the
activation times a little:

* the cell model's implementation: TorchCor's ``TenTusscherPanfilov`` is openCARP's
  tenTusscherPanfilov (lookup tables in V, Ca_ss and V−E_K with linear interpolation,
  openCARP's initial state, e.g. V = −86.2 mV); twin's is generated from the published
  equations (models/tentusscher_2006.mmt) with its own initial state;
* the time stepping: TorchCor couples a forward-Euler reaction update of V into the
  Crank–Nicolson system (one IMEX solve per step, PCG warm-started by linear
  extrapolation, stopping on the Jacobi-preconditioned residual); twin uses Godunov
  splitting (reaction, then diffusion) with PCG warm-started from the current V,
  stopping on the true residual;
* TorchCor applies a stimulus at the end time of each step while it lies in
  [start, start + duration] (both ends included); twin at the step's midpoint in
  [start, start + duration).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
THRESHOLD = 0.0   # mV, as the benchmark
STIM_DENSITY = 50.0  # µA/mm³ (50 000 µA/cm³)
CHI, CM = 140.0, 0.01
POINTS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9")


# --------------------------------------------------------------------------- TorchCor side (peer venv)
def worker(workdir: Path) -> int:
    """Run TorchCor on the problem in ``workdir`` (run.json, mesh/); write torchcor.json + .npy."""
    import numpy as np
    import torch

    cfg = json.loads((workdir / "run.json").read_text())
    torch.set_num_threads(int(cfg["threads"]))
    import warnings

    warnings.filterwarnings("ignore")
    import torchcor
    from torchcor.ionic import TenTusscherPanfilov
    from torchcor.simulator import Monodomain

    dt, end = float(cfg["dt"]), float(cfg["end_time"])
    dev = torch.device("cpu")
    t_setup = time.perf_counter()
    ionic = TenTusscherPanfilov(dt=dt, cell_type="EPI", device=dev, dtype=torch.float64)
    sim = Monodomain([ionic], T=end, dt=dt, device=dev, dtype=torch.float64)
    sim.load_mesh(str(workdir / "mesh"), unit_conversion=1000)
    sim.add_conductivity(None, il=cfg["sigma_l"], it=cfg["sigma_t"])
    sim.add_stimulus(str(workdir / "stim.vtx"), start=0.0, duration=cfg["stim_duration"],
                     intensity=cfg["stim_A_per_F"])
    sim.assemble()
    # the body of Monodomain.solve(), without the snapshots, with activation times tracked
    u = torch.zeros(sim.n_nodes, dtype=torch.float64)
    for im in sim.ionic_models:
        u[im.node_indices] = im.initialize(im.node_indices.shape[0]).clone()
    sim.cg.initialize(x=u, linear_guess=True)
    setup_s = time.perf_counter() - t_setup
    act = torch.full((sim.n_nodes,), float("nan"), dtype=torch.float64)
    thr = THRESHOLD
    t = 0.0
    steps = sim.nt
    step_times = np.empty(steps)
    ionic_s = electric_s = observers_s = 0.0
    its = 0
    t_loop = time.perf_counter()
    for n in range(1, steps + 1):
        c0 = time.perf_counter()
        t_old = t
        t += dt
        u_old = u.clone()          # step() returns the CG's own x buffer, overwritten by the next solve
        u, k, ion, ele = sim.step(u, t, 1e-300, cfg["tol"], 10000, True)
        its += int(k)
        c1 = time.perf_counter()
        hit = torch.isnan(act) & (u_old < thr) & (u >= thr)
        if bool(hit.any()):
            a, b = u_old[hit], u[hit]
            act[hit] = t_old + dt * (thr - a) / (b - a)
        c2 = time.perf_counter()
        ionic_s += ion
        electric_s += ele
        observers_s += c2 - c1
        step_times[n - 1] = c2 - c0
        if not bool(torch.isfinite(u).all()):
            raise SystemExit(f"TorchCor diverged at t = {t:g} ms")
    loop_s = time.perf_counter() - t_loop
    np.save(workdir / "torchcor_activation.npy", act.numpy())
    out = {"torchcor_version": getattr(torchcor, "__version__", "?"), "torch_version": torch.__version__,
           "threads": torch.get_num_threads(), "nodes": int(sim.n_nodes), "steps": steps, "setup_s": setup_s,
           "loop_s": loop_s, "ionic_s": ionic_s, "electric_s": electric_s, "observers_s": observers_s,
           "median_step_s": float(np.median(step_times)), "cg_iterations_mean": its / steps,
           "loadavg": os.getloadavg()}
    (workdir / "torchcor.json").write_text(json.dumps(out))
    return 0


# --------------------------------------------------------------------------- twin side (project venv)
def _peer_python(explicit: str | None) -> tuple[str | None, str]:
    """An interpreter that imports torchcor, or (None, why not)."""
    candidates = [c for c in (explicit, os.environ.get("TWIN_PEER_PYTHON"), sys.executable) if c]
    tried = []
    for py in candidates:
        if not Path(py).exists():
            tried.append(f"{py}: not found")
            continue
        r = subprocess.run([py, "-c", "import torchcor, torch; print(torch.__version__)"], capture_output=True,
                           text=True, check=False)
        if r.returncode == 0:
            return py, r.stdout.strip()
        tried.append(f"{py}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'import failed'}")
    return None, "; ".join(tried)


def _twin_run(problem, threads: int) -> dict:
    import numba
    import numpy as np

    from twin.solver.simulation import Simulation

    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        result = Simulation(problem).run()
        wall = time.perf_counter() - t0
    finally:
        numba.set_num_threads(old)
    s = result.summary
    t = s["timings_s"]
    return {"activation": result.activation, "summary": s, "loop_s": t["solve"], "ionic_s": t["solve_reaction"],
            "electric_s": t["solve_diffusion"], "observers_s": t["solve_observers"], "wall_s": wall,
            "setup_s": sum(v for k, v in t.items() if k.startswith("setup_")) + t["compile"],
            "iterations_mean": s["run"]["pcg_iterations_mean"], "nodes": problem.n_nodes,
            "steps": s["run"]["steps"], "finite": bool(np.isfinite(result.states).all())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dx", type=float, default=0.2, help="mesh spacing [mm] (default 0.2)")
    ap.add_argument("--dt", type=float, default=0.01, help="time step [ms] (default 0.01)")
    ap.add_argument("--end-time", type=float, default=45.0,
                    help="simulated time [ms] (default 45: the whole slab activates by ~39 ms at dx 0.2)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both codes (default 2)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs of each code, alternating; the fastest of each is compared (default 3)")
    ap.add_argument("--peer-python", help="python of the environment with torchcor")
    ap.add_argument("--workdir", help="folder for the mesh and results (default: a temporary folder)")
    ap.add_argument("--json", help="write the comparison here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(Path(args.worker))
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    peer, why = _peer_python(args.peer_python)
    if peer is None:
        print("SKIPPED: TorchCor is not available, so there is nothing to compare with.\n"
              f"  (tried: {why})\n"
              "  Install it into a separate environment and point this script at it:\n"
              "    python3 -m venv /tmp/bench/peer-venv && /tmp/bench/peer-venv/bin/pip install torch==2.13.0 torchcor\n"
              "    .venv/bin/python benchmarks/peers/torchcor_niederer.py --peer-python /tmp/bench/peer-venv/bin/python")
        return 0

    sys.path.insert(0, str(HERE.parent))
    import numpy as np

    import _common as C
    from twin.mesh.io import write_carp
    from twin.verify.niederer import benchmark_points, interpolate, monodomain_conductivities

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="twin-peer-"))
    (work / "mesh").mkdir(parents=True, exist_ok=True)
    problem = C.build(C.niederer_case_text(args.end_time, dx=args.dx, dt=args.dt), source="<peer niederer>")
    write_carp(problem.mesh, work / "mesh" / "slab", unit="um")
    stim = problem.stimuli[0]
    (work / "stim.vtx").write_text(f"{stim.nodes.size}\nextra\n" + "\n".join(map(str, stim.nodes)) + "\n")
    sl, st = monodomain_conductivities()
    cfg = {"dx": args.dx, "dt": args.dt, "end_time": args.end_time, "threads": args.threads,
           "sigma_l": sl, "sigma_t": st, "stim_duration": stim.duration, "tol": problem.case.spec.solver.tolerance,
           "stim_A_per_F": STIM_DENSITY / (CHI * CM)}
    assert abs(cfg["stim_A_per_F"] - stim.amplitude) < 1e-9, (cfg["stim_A_per_F"], stim.amplitude)
    (work / "run.json").write_text(json.dumps(cfg))
    print(f"problem: Niederer slab, dx {args.dx:g} mm, dt {args.dt:g} ms, {args.end_time:g} ms, "
          f"{problem.n_nodes} nodes, {problem.mesh.n_tets} tets, {args.threads} threads; workdir {work}", flush=True)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    pairs = []   # (twin run, twin load, TorchCor run, TorchCor activation, TorchCor load)
    for k in range(args.repeats):
        watch = C.MachineWatch()
        tw = _twin_run(problem, args.threads)
        twin_load = watch.stop()
        print(f"run {k + 1}/{args.repeats}: twin {tw['loop_s']:.1f} s "
              f"({C.load_note(twin_load) or 'machine quiet'})", flush=True)
        watch = C.MachineWatch()
        r = subprocess.run([peer, str(Path(__file__).resolve()), "--worker", str(work)], env=env, check=False,
                           capture_output=True, text=True)
        peer_load = watch.stop()
        if r.returncode != 0:
            print("TorchCor FAILED on the identical problem:\n" + r.stderr[-4000:])
            return 1
        tc = json.loads((work / "torchcor.json").read_text())
        tc_act = np.load(work / "torchcor_activation.npy")
        print(f"run {k + 1}/{args.repeats}: TorchCor {tc['loop_s']:.1f} s "
              f"({C.load_note(peer_load) or 'machine quiet'}); ratio {tc['loop_s'] / tw['loop_s']:.2f}", flush=True)
        pairs.append((tw, twin_load, tc, tc_act, peer_load))
    # same case, same thread count: the same numbers
    reproducible = all(np.array_equal(p[0]["activation"], pairs[0][0]["activation"], equal_nan=True) for p in pairs)
    if not reproducible:
        print("twin's repeats gave different activation maps: not reproducible")
        return 1
    tw, twin_load = min(((p[0], p[1]) for p in pairs), key=lambda x: x[0]["loop_s"])
    tc, tc_act, peer_load = min(((p[2], p[3], p[4]) for p in pairs), key=lambda x: x[0]["loop_s"])
    pair_ratios = [p[2]["loop_s"] / p[0]["loop_s"] for p in pairs]

    n, steps = problem.n_nodes, tw["steps"]
    assert tc["nodes"] == n and tc["steps"] == steps, (tc["nodes"], n, tc["steps"], steps)
    ns = n * steps
    pts = benchmark_points()
    coords = np.array(list(pts.values()))
    mesh = problem.mesh
    at_twin = interpolate(mesh.points, mesh.tets, tw["activation"], coords)
    at_tc = interpolate(mesh.points, mesh.tets, tc_act, coords)
    both = np.isfinite(tw["activation"]) & np.isfinite(tc_act)
    diff = tw["activation"][both] - tc_act[both]

    def rate(sec: float) -> float:
        return ns / sec if sec > 0 else float("nan")

    rows = [("whole time loop", tw["loop_s"], tc["loop_s"]),
            ("reaction / ionic", tw["ionic_s"], tc["ionic_s"]),
            ("diffusion / electric (PCG)", tw["electric_s"], tc["electric_s"]),
            ("activation tracking", tw["observers_s"], tc["observers_s"])]
    print()
    print(f"throughput [node-steps/s], {n} nodes x {steps} steps, {args.threads} threads, "
          f"fastest of {args.repeats} runs each")
    print(f"  {'part':<28} {'twin':>12} {'TorchCor':>12} {'twin/TorchCor':>14}")
    for name, a, b in rows:
        print(f"  {name:<28} {rate(a):12.4g} {rate(b):12.4g} {b / a if a > 0 else float('nan'):14.3g}")
    print(f"  {'median step (TorchCor)':<28} {'':>12} {n / tc['median_step_s']:12.4g}")
    print(f"  set-up + compile [s]: twin {tw['setup_s']:.2f}, TorchCor {tc['setup_s']:.2f}; "
          f"linear iterations per step: twin {tw['iterations_mean']:.2f}, TorchCor {tc['cg_iterations_mean']:.2f}")
    print(f"  load while running: twin {twin_load['others_cpu_share']:.0%} of CPUs used by others "
          f"(loadavg {twin_load['loadavg_before'][0]}), TorchCor {peer_load['others_cpu_share']:.0%} "
          f"(loadavg {peer_load['loadavg_before'][0]})")
    print(f"  whole-loop ratio of each pair (twin run, then TorchCor run): "
          + ", ".join(f"{x:.2f}" for x in pair_ratios)
          + f"; twin's {args.repeats} activation maps bit-identical")
    print()
    print(f"activation time [ms] (first upward crossing of {THRESHOLD:g} mV)")
    print(f"  {'point':<6} {'twin':>9} {'TorchCor':>9} {'twin-TC':>9}")
    for name, a, b in zip(pts, at_twin, at_tc):
        print(f"  {name:<6} {a:9.3f} {b:9.3f} {a - b:9.3f}")
    print(f"  all nodes: activated twin {np.isfinite(tw['activation']).mean():.1%}, TorchCor "
          f"{np.isfinite(tc_act).mean():.1%}; over nodes activated in both: mean(twin-TC) "
          f"{diff.mean() if diff.size else float('nan'):.3f} ms, max |twin-TC| "
          f"{np.abs(diff).max() if diff.size else float('nan'):.3f} ms, P8 ratio twin/TC "
          f"{at_twin[7] / at_tc[7]:.4f}")
    out = {"problem": cfg, "nodes": n, "steps": steps,
           "twin": {k: v for k, v in tw.items() if k not in ("activation", "summary")},
           "torchcor": tc, "twin_load": twin_load, "torchcor_load": peer_load,
           "throughput_ratio_twin_over_torchcor": tc["loop_s"] / tw["loop_s"],
           "repeats": args.repeats, "pair_ratios": pair_ratios,
           "loop_s_all": {"twin": [p[0]["loop_s"] for p in pairs], "torchcor": [p[2]["loop_s"] for p in pairs]},
           "activation_ms": {p: {"twin": float(a), "torchcor": float(b)} for p, a, b in zip(pts, at_twin, at_tc)},
           "activation_diff_ms": {"mean": float(diff.mean()) if diff.size else None,
                                  "max_abs": float(np.abs(diff).max()) if diff.size else None}}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
