"""Exact travelling-wave speeds: Nagumo (bistable) and Fisher–KPP (pulled) fronts on tetrahedra.

Two scalar reaction–diffusion equations whose front speeds are known in closed form, run as
ordinary twin cases (model files ``models/nagumo.mmt`` and ``models/fisher_kpp.mmt``) on long,
thin tetrahedral slabs with the front travelling along x:

* **Nagumo** ``u_t = D Δu + k u (1 − u)(u − a)``: the front ``u = 1/(1 + exp((x − x0 − c t)/w))``,
  ``w = √(2D/k)``, is an exact solution with speed ``c = √(2Dk)(½ − a)`` (McKean 1970).  The run
  starts from that profile, so the measured speed converges to ``c`` at the order of the spatial
  discretisation (2 for P1 elements) as h → 0.
* **Fisher–KPP** ``u_t = D Δu + r u (1 − u)``: a front grown from a step is *pulled* and reaches
  the minimal speed ``c* = 2√(Dr)`` only slowly, ``X(t) = c* t − 3/(2λ) ln t + const + O(t^-½)``
  with ``λ = √(r/D)`` (Bramson 1983).  The mean speed between two crossing times t1 < t2 is
  compared with ``c_B = c* − 3/(2λ) ln(t2/t1)/(t2 − t1)``, not with ``c*``.

The speed is measured from the crossing times of ``u = ½`` (twin's activation map, linear in
time) at two node planes x1 < x2 far from the ends of the slab: ``(x2 − x1)/(t2 − t1)``.
The monodomain scaling χ Cm ∂V/∂t = ∇·(σ∇V) + … makes ``D = σ/(χ Cm)``; with χ = 1 /mm and
Cm = 1 µF/mm² the diffusivity [mm²/ms] equals σ [S/m] numerically.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TwinError
from .report import VerifyReport, save_figure

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the two problems
@dataclass(frozen=True)
class FrontProblem:
    """One travelling-front problem on a slab [0, length] × [0, h] × [0, h].

    Attributes
    ----------
    model
        Model file name in ``models/``.
    parameters
        Model parameters set in the case (rates [1/ms], thresholds dimensionless).
    diffusivity
        D [mm²/ms] (σ [S/m] with χ = 1 /mm, Cm = 1 µF/mm²).
    length
        Slab length [mm].
    x0
        Initial front position [mm].
    stations
        x1 < x2 [mm] where the crossing times are measured.
    end_time
        Simulated time [ms] (the front passes x2 before it).
    """

    model: str
    parameters: dict[str, float]
    diffusivity: float
    length: float
    x0: float
    stations: tuple[float, float]
    end_time: float


#: k = 1/ms, a = 0.1: c = 0.4√2 = 0.566 mm/ms, front width w = √2 mm; the slab is 30 mm so the
#: second station (20 mm) stays 7 widths from the far end
NAGUMO = FrontProblem(model="nagumo", parameters={"k": 1.0, "a": 0.1}, diffusivity=1.0, length=30.0,
                      x0=5.0, stations=(8.0, 20.0), end_time=28.0)
#: r = 1/ms: c* = 2 mm/ms, λ = 1 /mm. The front crosses 30 and 70 mm at t ≈ 15.7 and 36.3 ms; the
#: far end stays 30 mm (≫ the leading edge's diffusion length √(4Dt) ≈ 12 mm) ahead of x2
FISHER = FrontProblem(model="fisher_kpp", parameters={"r": 1.0}, diffusivity=1.0, length=100.0,
                      x0=5.0, stations=(30.0, 70.0), end_time=38.0)
PROBLEMS = {"nagumo": NAGUMO, "fisher": FISHER}


def nagumo_speed(diffusivity: float, k: float, a: float) -> float:
    """Exact Nagumo front speed c = √(2Dk)(½ − a) [mm/ms] (D [mm²/ms], k [1/ms])."""
    return math.sqrt(2.0 * diffusivity * k) * (0.5 - a)


def nagumo_front(x: np.ndarray, t: float, diffusivity: float, k: float, a: float, x0: float) -> np.ndarray:
    """Exact travelling front u(x, t) = 1/(1 + exp((x − x0 − c t)/w)), w = √(2D/k), on the line."""
    c = nagumo_speed(diffusivity, k, a)
    w = math.sqrt(2.0 * diffusivity / k)
    return 0.5 * (1.0 - np.tanh((np.asarray(x) - x0 - c * t) / (2.0 * w)))  # = logistic, no overflow


def fisher_min_speed(diffusivity: float, r: float) -> float:
    """Minimal (pulled) Fisher–KPP speed c* = 2√(Dr) [mm/ms]."""
    return 2.0 * math.sqrt(diffusivity * r)


def bramson_mean_speed(diffusivity: float, r: float, t1: float, t2: float) -> float:
    """Mean speed between t1 and t2 [ms] of a pulled front from a steep initial condition.

    ``X(t) = c* t − 3/(2λ) ln t + const + O(t^-½)``, λ = √(r/D), so
    ``(X(t2) − X(t1))/(t2 − t1) = c* − 3/(2λ) ln(t2/t1)/(t2 − t1)`` up to the neglected terms.
    """
    if not 0 < t1 < t2:
        raise TwinError(f"crossing times must satisfy 0 < t1 < t2, got {t1}, {t2}")
    lam = math.sqrt(r / diffusivity)
    return fisher_min_speed(diffusivity, r) - 1.5 / lam * math.log(t2 / t1) / (t2 - t1)


@dataclass(frozen=True)
class Crossing:
    """Front passage between two node planes: positions [mm], mean crossing times [ms], speed [mm/ms]."""

    x1: float
    x2: float
    t1: float
    t2: float

    @property
    def speed(self) -> float:
        return (self.x2 - self.x1) / (self.t2 - self.t1)


def _plane(x: np.ndarray, target: float) -> tuple[float, np.ndarray]:
    levels = np.unique(np.round(x, 9))
    level = float(levels[np.argmin(np.abs(levels - target))])
    return level, np.abs(x - level) <= 1e-9 * max(1.0, abs(level))


def front_speed(x: np.ndarray, times: np.ndarray, x1: float, x2: float) -> Crossing:
    """Speed of a planar front along x from per-node crossing times.

    Parameters
    ----------
    x
        ``(n,)`` node x-coordinates [mm].
    times
        ``(n,)`` crossing times [ms] (NaN where the front never arrived).
    x1, x2
        Requested stations [mm]; the nearest node planes are used.

    Raises
    ------
    TwinError
        When the front did not cross a station plane at every node of it.
    """
    out = []
    for target in (x1, x2):
        level, sel = _plane(x, target)
        t = times[sel]
        if not np.all(np.isfinite(t)):
            raise TwinError(f"the front did not reach the station x = {level:g} mm before the end of the run")
        out.append((level, float(t.mean())))
    (p1, t1), (p2, t2) = out
    if not (p2 > p1 and t2 > t1):
        raise TwinError(f"stations must be crossed in order: x = {p1:g} at {t1:g} ms, x = {p2:g} at {t2:g} ms")
    return Crossing(p1, p2, t1, t2)


# --------------------------------------------------------------------------- one run
@dataclass
class WaveRun:
    """One front simulation and its measured speed."""

    which: str
    h: float
    dt: float
    nodes: int
    crossing: Crossing
    reference: float          # exact c (Nagumo) or Bramson-corrected c_B (Fisher) [mm/ms]
    asymptotic: float         # c (Nagumo) or c* (Fisher) [mm/ms]
    wall_time: float
    u: np.ndarray = field(repr=False)
    activation: np.ndarray = field(repr=False)
    points: np.ndarray = field(repr=False)
    tets: np.ndarray = field(repr=False)
    summary: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def speed(self) -> float:
        return self.crossing.speed

    @property
    def error(self) -> float:
        """Relative speed error against the reference [%]."""
        return 100.0 * (self.speed - self.reference) / self.reference


def case_text(problem: FrontProblem, h: float, dt: float, *, splitting: str, theta: float, mass: str,
              substeps: int, tolerance: float) -> str:
    """The YAML case of a front problem on a slab one element thick."""
    params = ", ".join(f"{k}: {v!r}" for k, v in problem.parameters.items())
    return f"""\
name: {problem.model}_front
mesh: {{generator: box, size: [{problem.length!r}, {h!r}, {h!r}], spacing: {h!r}}}
tissue: {{sigma_l: {problem.diffusivity!r}, sigma_t: {problem.diffusivity!r}, chi: 1, cm: 1}}
model: {{name: {problem.model}, parameters: {{{params}}}}}
stimuli:   # the front starts from its initial condition; a case needs a stimulus, so it is zero
  - region: {{nodes: [0]}}
    strength: 0
    duration: {dt!r}
solver: {{dt: {dt!r}, end_time: {problem.end_time!r}, splitting: {splitting}, theta: {theta!r},
         mass: {mass}, reaction_substeps: {substeps}, tolerance: {tolerance!r}}}
outputs: {{interval: 0, activation: {{threshold: 0.5}}}}
"""


def initial_u(which: str, x: np.ndarray) -> np.ndarray:
    """Initial u: the exact Nagumo front at x0, or a unit step at x0 for Fisher–KPP."""
    p = PROBLEMS[which]
    if which == "nagumo":
        return nagumo_front(x, 0.0, p.diffusivity, p.parameters["k"], p.parameters["a"], p.x0)
    # a step (½ on the node at x0): "steep" initial data, the case Bramson's correction is for
    return np.where(np.abs(x - p.x0) < 1e-9, 0.5, (x < p.x0).astype(float))


def run_front(which: str, h: float, dt: float, *, splitting: str = "strang", theta: float = 0.5,
              mass: str = "consistent", substeps: int = 8, tolerance: float = 1e-10) -> WaveRun:
    """Build and run one front problem, return its measured speed (results in memory only).

    Parameters
    ----------
    which
        ``"nagumo"`` or ``"fisher"``.
    h
        Mesh spacing [mm].
    dt
        Time step [ms].
    splitting, theta, mass, substeps, tolerance
        The case's solver settings.
    """
    from ..case import case_from_text
    from ..solver.setup import build_problem
    from ..solver.simulation import Simulation

    p = PROBLEMS[which]
    t0 = time.perf_counter()
    case = case_from_text(case_text(p, h, dt, splitting=splitting, theta=theta, mass=mass, substeps=substeps,
                                    tolerance=tolerance), source=f"<waves {which} h={h:g} dt={dt:g}>")
    problem = build_problem(case)
    x = problem.mesh.points[:, 0]
    states = problem.model.initial_states(problem.n_nodes)
    states[problem.model.vm_index] = initial_u(which, x)
    result = Simulation(problem, folder=None, initial_states=states).run()
    crossing = front_speed(x, result.activation, *p.stations)
    if which == "nagumo":
        ref = asym = nagumo_speed(p.diffusivity, p.parameters["k"], p.parameters["a"])
    else:
        ref = bramson_mean_speed(p.diffusivity, p.parameters["r"], crossing.t1, crossing.t2)
        asym = fisher_min_speed(p.diffusivity, p.parameters["r"])
    return WaveRun(which=which, h=problem.mesh.points[1, 0] - problem.mesh.points[0, 0], dt=dt,
                   nodes=problem.n_nodes, crossing=crossing, reference=ref, asymptotic=asym,
                   wall_time=time.perf_counter() - t0, u=result.states[problem.model.vm_index].copy(),
                   activation=result.activation, points=problem.mesh.points, tets=problem.mesh.tets,
                   summary=result.summary)


def observed_order(h: list[float], err: list[float]) -> float:
    """Slope of log|err| against log h (least squares), NaN with fewer than two points."""
    from .mms import observed_order as fit

    return fit(h, [abs(e) for e in err])


# --------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``twin verify waves``."""
    parser.add_argument("--which", nargs="+", choices=sorted(PROBLEMS), default=["nagumo", "fisher"],
                        help="fronts to run (default: nagumo fisher)")
    parser.add_argument("--h", type=float, nargs="+", default=[0.4, 0.2, 0.1], metavar="MM",
                        help="mesh spacings [mm] (default: 0.4 0.2 0.1); they must divide the slab "
                             f"lengths ({NAGUMO.length:g} and {FISHER.length:g} mm)")
    parser.add_argument("--dt", type=float, default=0.005, metavar="MS", help="time step [ms] (default: 0.005)")
    parser.add_argument("--splitting", choices=("godunov", "strang"), default="strang",
                        help="operator splitting (default: strang)")
    parser.add_argument("--substeps", type=int, default=8, metavar="N",
                        help="forward-Euler reaction sub-steps per step (default: 8): with Strang "
                             "splitting they make the time error negligible next to the spatial one")
    parser.add_argument("--theta", type=float, default=0.5, help="θ of the diffusion step (default: 0.5)")
    parser.add_argument("--mass", choices=("consistent", "lumped"), default="consistent",
                        help="mass matrix (default: consistent)")
    parser.add_argument("--pcg-tolerance", type=float, default=1e-10, metavar="TOL",
                        help="PCG relative tolerance (default: 1e-10)")
    parser.add_argument("--tolerance", type=float, default=1.0, metavar="PCT",
                        help="allowed |Nagumo speed error| on the finest mesh [%%] (default: 1)")
    parser.add_argument("--fisher-tolerance", type=float, default=1.0, metavar="PCT",
                        help="allowed |Fisher–KPP speed − Bramson-corrected speed| on the finest mesh "
                             "[%%] (default: 1)")
    parser.add_argument("--min-order", type=float, default=1.5, metavar="P",
                        help="smallest accepted observed order of the Nagumo speed error (default: 1.5)")


def _validate(args: argparse.Namespace) -> list[float]:
    hs = sorted(set(args.h), reverse=True)
    if any(not h > 0 for h in hs):
        raise TwinError(f"--h values must be positive, got {args.h}")
    for which in set(args.which):
        p = PROBLEMS[which]
        for h in hs:
            cells = p.length / h
            if abs(cells - round(cells)) > 1e-6 * cells:
                raise TwinError(f"--h {h:g} mm does not divide the {which} slab ({p.length:g} mm)")
            if h > (p.stations[1] - p.stations[0]) / 4:
                raise TwinError(f"--h {h:g} mm is too coarse for the {which} stations {p.stations}")
        k = p.end_time / args.dt
        if not args.dt > 0 or abs(k - round(k)) > 1e-6 * k:
            raise TwinError(f"--dt {args.dt:g} ms must divide the {which} run length {p.end_time:g} ms")
    if args.substeps < 1:
        raise TwinError(f"--substeps must be at least 1, got {args.substeps}")
    if not 0 <= args.theta <= 1:
        raise TwinError(f"--theta must lie in [0, 1], got {args.theta}")
    return hs


def run(args: argparse.Namespace, folder: Path) -> VerifyReport:
    """Run every front on every mesh, write tables, plots and a VTU, and check the speeds.

    Parameters
    ----------
    args
        Parsed options (see :func:`add_arguments`).
    folder
        Output folder (created).
    """
    import numba

    hs = _validate(args)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    which = [w for w in ("nagumo", "fisher") if w in set(args.which)]
    report = VerifyReport(
        name="waves", folder=folder,
        settings={"which": which, "h_mm": hs, "dt_ms": args.dt, "splitting": args.splitting,
                  "reaction_substeps": args.substeps, "theta": args.theta, "mass": args.mass,
                  "pcg_tolerance": args.pcg_tolerance, "tolerance_pct": args.tolerance,
                  "fisher_tolerance_pct": args.fisher_tolerance, "min_order": args.min_order,
                  "problems": {w: {"model": PROBLEMS[w].model, "parameters": PROBLEMS[w].parameters,
                                   "D_mm2_per_ms": PROBLEMS[w].diffusivity, "length_mm": PROBLEMS[w].length,
                                   "x0_mm": PROBLEMS[w].x0, "stations_mm": list(PROBLEMS[w].stations),
                                   "end_time_ms": PROBLEMS[w].end_time} for w in which},
                  "threads": numba.get_num_threads()},
        notes=_notes(args))

    runs: dict[str, list[WaveRun]] = {}
    for w in which:
        runs[w] = []
        for h in hs:
            r = run_front(w, h, args.dt, splitting=args.splitting, theta=args.theta, mass=args.mass,
                          substeps=args.substeps, tolerance=args.pcg_tolerance)
            logger.info("waves %s: h = %g mm: speed %.6f mm/ms, reference %.6f (%+.4f %%), %.1f s", w, h,
                        r.speed, r.reference, r.error, r.wall_time)
            runs[w].append(r)
        report.tables[f"{w} speeds"] = [_row(r) for r in runs[w]]

    if "nagumo" in runs:
        _nagumo_checks(report, runs["nagumo"], args)
    if "fisher" in runs:
        _fisher_checks(report, runs["fisher"], args)
    report.tables["Observed orders"] = [_order_row(w, rs) for w, rs in runs.items()]
    report.tables["Timings"] = [_timing_row(r) for rs in runs.values() for r in rs]
    report.files.append(_plot_errors(folder / "waves_speed_error.png", runs))
    report.files.append(_plot_profiles(folder / "waves_profiles.png", runs))
    shown = runs.get("nagumo") or runs["fisher"]
    name = f"{shown[-1].which}_h{shown[-1].h:g}.vtu"
    _write_vtu(folder / name, shown[-1])
    report.files.append(name)
    return report


def _nagumo_checks(report: VerifyReport, runs: list[WaveRun], args: argparse.Namespace) -> None:
    fine = runs[-1]
    report.check(f"Nagumo: size of the speed error at h = {fine.h:g} mm", abs(fine.error), 0.0, args.tolerance,
                 kind="max", unit="%")
    if len(runs) >= 2:
        errs = [abs(r.error) for r in runs]
        report.check("Nagumo: largest ratio of successive speed error sizes (finer/coarser)",
                     max(b / a for a, b in zip(errs, errs[1:])), None, 1.0, kind="max")
        report.check("Nagumo: observed order of the speed error", observed_order([r.h for r in runs], errs),
                     None, args.min_order, kind="min")


def _fisher_checks(report: VerifyReport, runs: list[WaveRun], args: argparse.Namespace) -> None:
    fine = runs[-1]
    report.check(f"Fisher–KPP: size of the deviation from the Bramson-corrected speed at h = {fine.h:g} mm", abs(fine.error), 0.0,
                 args.fisher_tolerance, kind="max", unit="%")
    if len(runs) >= 3:
        speeds = [r.speed for r in runs]
        diffs = [abs(b - a) for a, b in zip(speeds, speeds[1:])]
        report.check("Fisher–KPP: largest ratio of successive speed changes under refinement",
                     max(b / a for a, b in zip(diffs, diffs[1:])), None, 1.0, kind="max")


def _order_row(which: str, runs: list[WaveRun]) -> dict[str, Any]:
    """Observed orders of the speed error and of the speed changes, and the Richardson-extrapolated speed.

    For Fisher–KPP the error against c_B tends to the neglected asymptotic terms, not to zero, so
    its order is not the discretisation's; that of the changes c_h − c_2h is.
    """
    hs = [r.h for r in runs]
    speeds = [r.speed for r in runs]
    changes = [b - a for a, b in zip(speeds, speeds[1:])]
    order = observed_order(hs[1:], changes)
    extrapolated = float("nan")
    if changes and order == order and order > 0:
        extrapolated = speeds[-1] + changes[-1] / ((hs[-2] / hs[-1]) ** order - 1.0)
    ref = runs[-1].reference
    return {"front": which, "h [mm]": " ".join(f"{h:g}" for h in hs),
            "order of c_h − reference": observed_order(hs, [r.error for r in runs]),
            "order of c_h − c_2h": order, "extrapolated speed [mm/ms]": extrapolated,
            "reference [mm/ms]": ref, "extrapolated vs reference [%]": 100 * (extrapolated - ref) / ref}


def _row(r: WaveRun) -> dict[str, Any]:
    c = r.crossing
    return {"h [mm]": r.h, "dt [ms]": r.dt, "nodes": r.nodes, "x1 [mm]": c.x1, "t1 [ms]": c.t1,
            "x2 [mm]": c.x2, "t2 [ms]": c.t2, "speed [mm/ms]": r.speed,
            ("exact c [mm/ms]" if r.which == "nagumo" else "c_B [mm/ms]"): r.reference,
            "error [%]": r.error,
            **({} if r.which == "nagumo" else {"c* [mm/ms]": r.asymptotic,
                                               "vs c* [%]": 100 * (r.speed - r.asymptotic) / r.asymptotic}),
            "wall [s]": round(r.wall_time, 2)}


def _timing_row(r: WaveRun) -> dict[str, Any]:
    t = r.summary.get("timings_s", {})
    rate = r.summary.get("throughput_node_steps_per_s")
    return {"front": r.which, "h [mm]": r.h, "nodes": r.nodes, "steps": r.summary.get("run", {}).get("steps"),
            "wall [s]": round(r.wall_time, 2), "reaction [s]": round(t.get("solve_reaction", float("nan")), 2),
            "diffusion [s]": round(t.get("solve_diffusion", float("nan")), 2),
            "PCG its/step": round(r.summary.get("run", {}).get("pcg_iterations_mean", float("nan")), 1),
            "node-steps/s": f"{rate:.3g}" if rate else None}


def _write_vtu(path: Path, r: WaveRun) -> None:
    from ..io.vtk import write_vtu

    data = {"u": r.u, "crossing_time": r.activation}
    if r.which == "nagumo":
        p = NAGUMO
        data["u_exact"] = nagumo_front(r.points[:, 0], p.end_time, p.diffusivity, p.parameters["k"],
                                       p.parameters["a"], p.x0)
    write_vtu(path, r.points, r.tets, point_data=data)


def _plot_errors(path: Path, runs: dict[str, list[WaveRun]]) -> str:
    # the object-oriented API renders with Agg and leaves pyplot's global state alone
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    label = {"nagumo": "Nagumo: |c_h − c| / c", "fisher": "Fisher–KPP: |c_h − c_B| / c_B"}
    for w, rs in runs.items():
        ax.loglog([r.h for r in rs], [max(abs(r.error), 1e-12) for r in rs], "o-", label=label[w])
    h = np.array(sorted({r.h for rs in runs.values() for r in rs}))
    if len(h) > 1 and "nagumo" in runs:
        e = abs(runs["nagumo"][0].error)
        ax.loglog(h, e * (h / runs["nagumo"][0].h) ** 2, "k:", lw=1, label="slope 2")
    ax.set_xlabel("h [mm]")
    ax.set_ylabel("relative speed error [%]")
    ax.set_title("Front speed on tetrahedral slabs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _plot_profiles(path: Path, runs: dict[str, list[WaveRun]]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    axes = fig.subplots(len(runs), 1, squeeze=False)[:, 0]
    for ax, (w, rs) in zip(axes, runs.items()):
        p = PROBLEMS[w]
        for r in rs:
            line = (np.abs(r.points[:, 1]) < 1e-12) & (np.abs(r.points[:, 2]) < 1e-12)
            order = np.argsort(r.points[line, 0])
            ax.plot(r.points[line, 0][order], r.u[line][order], lw=1, label=f"h = {r.h:g} mm")
        if w == "nagumo":
            x = np.linspace(0.0, p.length, 600)
            ax.plot(x, nagumo_front(x, p.end_time, p.diffusivity, p.parameters["k"], p.parameters["a"], p.x0),
                    "k:", lw=1.5, label="exact")
        for s in p.stations:
            ax.axvline(s, color="grey", lw=0.5)
        ax.set_title(f"{w}: u at t = {p.end_time:g} ms (grey: stations)", fontsize=9)
        ax.set_ylabel("u")
        ax.legend(fontsize=7)
    axes[-1].set_xlabel("x [mm]")
    return save_figure(fig, path)


def _notes(args: argparse.Namespace) -> str:
    n, f = NAGUMO, FISHER
    c = nagumo_speed(n.diffusivity, n.parameters["k"], n.parameters["a"])
    return f"""\
Exact front speeds of two scalar reaction–diffusion equations, run as ordinary twin cases
(models/nagumo.mmt, models/fisher_kpp.mmt; box mesh one element thick; χ = 1 /mm, Cm = 1 µF/mm²,
σ = D) with the front along x; u is represented as V = u · 1 mV. The runs start from the
per-node initial u below (`Simulation(..., initial_states=...)`). Speeds come from the mean crossing times of u = ½ (twin's activation
map, linear interpolation in time) on the node planes nearest the two stations.

Nagumo u_t = D u_xx + k u(1−u)(u−a), D = {n.diffusivity:g} mm²/ms, k = {n.parameters['k']:g} /ms,
a = {n.parameters['a']:g}: exact speed c = √(2Dk)(½−a) = {c:.6f} mm/ms (H.P. McKean, Adv. Math. 4:209
(1970)). Starts from the exact front at x0 = {n.x0:g} mm on a {n.length:g} mm slab; stations
{n.stations[0]:g} and {n.stations[1]:g} mm. Checks: |error| on the finest mesh ≤ {args.tolerance:g} %, errors
decrease under refinement, observed order ≥ {args.min_order:g} (P1 elements: 2).

Fisher–KPP u_t = D u_xx + r u(1−u), D = {f.diffusivity:g} mm²/ms, r = {f.parameters['r']:g} /ms: minimal
speed c* = 2√(Dr) = {fisher_min_speed(f.diffusivity, f.parameters['r']):g} mm/ms, reached only as t → ∞ from a steep
(step) initial condition at x0 = {f.x0:g} mm on a {f.length:g} mm slab. Front position
X(t) = c* t − 3/(2λ) ln t + const + O(t^-½), λ = √(r/D) (M. Bramson, Mem. AMS 44 (1983); U. Ebert
and W. van Saarloos, Physica D 146:1 (2000)), so the mean speed between the crossing times
t1, t2 at {f.stations[0]:g} and {f.stations[1]:g} mm is compared with c_B = c* − 3/(2λ) ln(t2/t1)/(t2−t1) (≈ 3 %
below c*). The terms this neglects (the universal +(3√π/2)(λ²√D)⁻¹ t^-3/2 of Ebert–van
Saarloos and non-universal O(t⁻²) terms of the opposite sign) largely cancel in this window: an
independent converged finite-difference solution of the same 1-D problem (h = 0.025 mm,
explicit, same step at 5 mm) gives a mean speed 0.16 % below c_B, so |c_h − c_B| tends to about
0.16 %, not to zero, and its observed order means nothing; the speed changes |c_h − c_2h| do
converge at the discretisation's order (table "Observed orders", with the Richardson-extrapolated
speed). Check: |c_h − c_B| / c_B ≤ {args.fisher_tolerance:g} % on the finest mesh (and, with three meshes or
more, the speed changes shrink).

Time stepping: dt = {args.dt:g} ms, {args.splitting} splitting, {args.substeps} forward-Euler reaction sub-steps,
θ = {args.theta:g}, {args.mass} mass. With Strang splitting and sub-steps the time error of the speed is
≲ 0.001 % (measured by halving dt), well below the spatial error, so the observed order is the
spatial one.
"""
