"""Pathmanathan & Gray 2014 manufactured solution: monodomain convergence orders in 1D, 2D, 3D.

The model problem of P. Pathmanathan and R.A. Gray, "Verification of computational models of
cardiac electro-physiology", Int. J. Numer. Meth. Biomed. Eng. 30:525-544 (2014),
doi:10.1002/cnm.2615 (monodomain problem; the equations and values below are those of the
paper's literate Chaste code, ``TestEpAgainstExactSolutionsLiteratePaper`` with
``ModelProblemCellModel`` and ``ModelProblemExactSolutionClasses``)::

    χ (Cm ∂V/∂t + I_ion(V, u)) = ∇·(σ ∇V)   on Ω = [0, 1]^d,  n·σ∇V = 0 on ∂Ω,  0 < t ≤ T = 1
    du1/dt = w² u2² + w u2² (V − u3)/2,   du2/dt = −w u2³,   du3/dt = 0,   w = u1 + u3 − V
    I_ion  = −Cm w u2² (V − u3)/2 + β (V − u3)/χ

with σ = diag(1.1, 1.2, 0.3)/π², χ = 3, Cm = 2, β = −π² Σ σ_i m_i² and m = (1, 2, 3).  The
exact solution is

    V = √(1+t) F(x),   u1 = V + (1+t) G(x),   u2 = 1 / ((1+t) √G(x)),   u3 = 0,
    F = Π_{i<d} cos(m_i π x_i),   G = 1 + x (1D), 1 + x y² (2D), 1 + x y² z³ (3D).

The cell model is autonomous (x enters only through the initial values), so it is an ordinary
model file, ``models/pathmanathan_gray.mmt``, compiled by twin's code generator; the tissue is
an ordinary case (mesh file with fibres along x and sheets along y, so σ is orthotropic) run by
twin's :class:`~twin.solver.simulation.Simulation` from the exact per-node initial state.

The d-dimensional problems are solved on tetrahedral box meshes [0,1]^d × [0,h]^(3−d) (one
element across the thin directions, zero flux there, the exact solution constant across them);
norms are divided by the thin cross-section so they are the d-dimensional norms.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TwinError
from .report import VerifyReport, save_figure

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- the model problem
#: conductivities along x, y, z [S/m] (dimensionless in the paper, read in twin's canonical units)
SIGMA: tuple[float, float, float] = (1.1 / math.pi ** 2, 1.2 / math.pi ** 2, 0.3 / math.pi ** 2)
#: wave numbers m_i of F = Π cos(m_i π x_i)
MODES: tuple[int, int, int] = (1, 2, 3)
CHI = 3.0       # surface-to-volume ratio [1/mm]
CM = 2.0        # membrane capacitance [µF/mm²]
END_TIME = 1.0  # T [ms]
MODEL = "pathmanathan_gray"


def beta(dim: int) -> float:
    """The cell-model constant β = −π² Σ_{i<d} σ_i m_i² of the d-dimensional problem."""
    return -math.pi ** 2 * sum(SIGMA[i] * MODES[i] ** 2 for i in range(dim))


@dataclass(frozen=True)
class ExactSolution:
    """The exact solution of the d-dimensional model problem (points in 3-D, extra axes ignored).

    Attributes
    ----------
    dim
        1, 2 or 3: the number of axes the solution varies along.
    """

    dim: int

    def __post_init__(self) -> None:
        if self.dim not in (1, 2, 3):
            raise TwinError(f"the model problem exists in 1, 2 or 3 dimensions, got {self.dim}")

    def F_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F(x) = Π_{i<d} cos(m_i π x_i) and ∇F [1/mm] for points ``(..., 3)`` [mm]."""
        k = [MODES[i] * math.pi for i in range(self.dim)]
        cos = [np.cos(k[i] * x[..., i]) for i in range(self.dim)]
        sin = [np.sin(k[i] * x[..., i]) for i in range(self.dim)]
        f = cos[0].copy()
        for i in range(1, self.dim):
            f *= cos[i]
        grad = np.zeros(x.shape)
        for i in range(self.dim):
            g = -k[i] * sin[i]
            for j in range(self.dim):
                if j != i:
                    g *= cos[j]
            grad[..., i] = g
        return f, grad

    def F(self, x: np.ndarray) -> np.ndarray:
        """F(x) = Π_{i<d} cos(m_i π x_i) for points ``(..., 3)`` [mm]."""
        out = np.ones(x.shape[:-1])
        for i in range(self.dim):
            out = out * np.cos(MODES[i] * math.pi * x[..., i])
        return out

    def grad_F(self, x: np.ndarray) -> np.ndarray:
        """∇F ``(..., 3)`` [1/mm]."""
        return self.F_and_grad(x)[1]

    def G(self, x: np.ndarray) -> np.ndarray:
        """G(x) = 1 + x (1D), 1 + x y² (2D), 1 + x y² z³ (3D)."""
        g = x[..., 0].copy()
        if self.dim > 1:
            g = g * x[..., 1] ** 2
        if self.dim > 2:
            g = g * x[..., 2] ** 3
        return 1.0 + g

    def V(self, x: np.ndarray, t: float) -> np.ndarray:
        """Membrane potential √(1+t) F(x) [mV]."""
        return math.sqrt(1.0 + t) * self.F(x)

    def grad_V(self, x: np.ndarray, t: float) -> np.ndarray:
        """∇V [mV/mm]."""
        return math.sqrt(1.0 + t) * self.grad_F(x)

    def V_and_grad(self, x: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """V [mV] and ∇V [mV/mm] together (one evaluation of the trigonometric factors)."""
        f, g = self.F_and_grad(x)
        s = math.sqrt(1.0 + t)
        return s * f, s * g

    def states(self, x: np.ndarray, t: float) -> np.ndarray:
        """``(4, n)`` exact (V, u1, u2, u3) at points ``x`` ``(n, 3)``, in the model's state order."""
        v = self.V(x, t)
        g = self.G(x)
        return np.ascontiguousarray(np.stack([v, v + (1.0 + t) * g, 1.0 / ((1.0 + t) * np.sqrt(g)),
                                              np.zeros_like(v)]))


# --------------------------------------------------------------------------- errors by quadrature
def tet_quadrature(order: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Collapsed Gauss–Jacobi rule on the reference tetrahedron (exact to degree 2·order − 1).

    Returns
    -------
    bary
        ``(q, 4)`` barycentric coordinates of the points.
    weights
        ``(q,)`` weights summing to 1 (multiply by the element volume).
    """
    from scipy.special import roots_jacobi

    # Duffy map x = a, y = (1−a) b, z = (1−a)(1−b) c has Jacobian (1−a)²(1−b): Gauss–Jacobi
    # points absorb it exactly, so the rule stays exact for polynomials of the stated degree
    sa, wa = roots_jacobi(order, 2.0, 0.0)
    sb, wb = roots_jacobi(order, 1.0, 0.0)
    sc, wc = roots_jacobi(order, 0.0, 0.0)
    a, b, c = (sa + 1) / 2, (sb + 1) / 2, (sc + 1) / 2
    wa, wb, wc = wa / 8, wb / 4, wc / 2
    A, B, C = np.meshgrid(a, b, c, indexing="ij")
    W = np.einsum("i,j,k->ijk", wa, wb, wc).ravel() * 6.0  # reference volume 1/6
    x = A.ravel()
    y = ((1 - A) * B).ravel()
    z = ((1 - A) * (1 - B) * C).ravel()
    return np.column_stack([1 - x - y - z, x, y, z]), W


def error_norms(points: np.ndarray, tets: np.ndarray, values: np.ndarray,
                exact: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None, *, order: int = 3,
                chunk: int = 100_000) -> tuple[float, float]:
    """L2 and H1-seminorm of (P1 field − exact function), by quadrature on every element.

    The exact function is sampled at quadrature points, not interpolated at the nodes: the
    gradient of the nodal interpolant is superconvergent on structured meshes and would hide
    the first-order H1 error.

    Parameters
    ----------
    points, tets
        The mesh [mm].
    values
        ``(n,)`` nodal values of the P1 field.
    exact
        The exact function and its gradient at points ``(..., 3)``, as ``(values, gradients)``;
        ``None`` for zero (norms of the P1 field itself).
    order
        Points per direction of :func:`tet_quadrature`.
    chunk
        Elements per vectorised batch (bounds the memory).

    Returns
    -------
    (l2, h1_semi)
        ``‖e‖_L2`` and ``‖∇e‖_L2`` over the mesh.
    """
    from ..fem import p1_gradients

    bary, w = tet_quadrature(order)
    l2 = h1 = 0.0
    for s in range(0, len(tets), chunk):
        t = tets[s:s + chunk]
        grads, vol = p1_gradients(points, t)
        vt = values[t]
        e = vt @ bary.T                                                   # (m, q) P1 field
        ge = np.repeat((vt[:, None, :] @ grads), len(w), axis=1)          # (m, q, 3) its gradient
        if exact is not None:
            pt = points[t]
            # Σ_k λ_k(q) P_k, written out: broadcasting matmul of tiny matrices is slow
            xq = sum(bary[None, :, k, None] * pt[:, None, k, :] for k in range(4))  # (m, q, 3)
            u, gu = exact(xq)
            e -= u
            ge -= gu
        l2 += float(np.sum(vol * (e ** 2 @ w)))
        h1 += float(np.sum(vol * (np.sum(ge ** 2, axis=2) @ w)))
    return math.sqrt(l2), math.sqrt(h1)


def observed_order(h: Sequence[float], err: Sequence[float]) -> float:
    """Slope of ``log err`` against ``log h`` (least squares); NaN with fewer than two points."""
    h_a, e_a = np.asarray(h, dtype=float), np.asarray(err, dtype=float)
    ok = (h_a > 0) & (e_a > 0) & np.isfinite(e_a)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(h_a[ok]), np.log(e_a[ok]), 1)[0])


# --------------------------------------------------------------------------- one run
@dataclass
class MmsRun:
    """One solve of the model problem and its errors at the final time."""

    dim: int
    n: int
    steps: int
    splitting: str
    theta: float
    nodes: int
    l2: float
    h1: float
    wall_time: float
    solution: np.ndarray = field(repr=False)
    points: np.ndarray = field(repr=False)
    tets: np.ndarray = field(repr=False)
    summary: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def h(self) -> float:
        return 1.0 / self.n

    @property
    def dt(self) -> float:
        return END_TIME / self.steps


def mesh_for(dim: int, n: int) -> Any:
    """Box mesh [0,1]^d × [0,1/n]^(3−d) with n cells per unit length, fibres x, sheets y."""
    from ..mesh import box_mesh

    h = 1.0 / n
    size = [1.0 if i < dim else h for i in range(3)]
    mesh = box_mesh(size, h, fibre=(1.0, 0.0, 0.0))
    # sheets along y make σ = diag(σ_x, σ_y, σ_z) with σn along f × s = z
    mesh.sheets = np.ascontiguousarray(np.tile([0.0, 1.0, 0.0], (mesh.n_tets, 1)))
    return mesh


def case_text(dim: int, mesh_file: str | Path, steps: int, splitting: str, theta: float,
              tolerance: float, substeps: int = 1) -> str:
    """The YAML case of the d-dimensional model problem on a mesh file (fibres and sheets inside)."""
    dt = END_TIME / steps
    return f"""\
name: mms_{dim}d
description: Pathmanathan & Gray 2014 monodomain model problem ({dim}D)
mesh: {{file: "{mesh_file}", unit: mm}}
tissue:
  sigma_l: {SIGMA[0]!r}
  sigma_t: {SIGMA[1]!r}
  sigma_n: {SIGMA[2]!r}
  chi: {CHI!r}
  cm: {CM!r}
  fibres: {{source: mesh}}
model:
  name: {MODEL}
  parameters: {{beta: {beta(dim)!r}, chi: {CHI!r}, Cm: {CM!r}}}
stimuli:   # the model problem has none; a case needs one, so it is zero
  - region: {{nodes: [0]}}
    strength: 0
    duration: {END_TIME!r}
solver: {{dt: {dt!r}, end_time: {END_TIME!r}, splitting: {splitting}, theta: {theta!r}, tolerance: {tolerance!r},
         reaction_substeps: {substeps}}}
outputs: {{interval: 0, maps: []}}
"""


def solve(dim: int, n: int, steps: int, *, splitting: str = "godunov", theta: float = 0.5,
          substeps: int = 1, tolerance: float = 1e-10, workdir: Path | None = None) -> MmsRun:
    """Solve the d-dimensional model problem with n cells per unit length and ``steps`` time steps.

    Parameters
    ----------
    dim
        1, 2 or 3.
    n
        Cells per unit length (h = 1/n [mm]).
    steps
        Number of time steps to T = 1 ms.
    splitting, theta, substeps
        ``solver.splitting``, ``solver.theta`` and ``solver.reaction_substeps`` of the case.
    tolerance
        PCG relative tolerance (tight: the finest errors are ~1e-5).
    workdir
        Where the mesh file goes (a temporary folder by default).
    """
    from ..case import case_from_text
    from ..mesh import write_mesh
    from ..solver.setup import build_problem
    from ..solver.simulation import Simulation

    exact = ExactSolution(dim)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        mesh_file = Path(tmp) / f"mms_{dim}d_n{n}.vtu"
        write_mesh(mesh_for(dim, n), mesh_file)
        case = case_from_text(case_text(dim, mesh_file, steps, splitting, theta, tolerance, substeps),
                              source=f"<mms {dim}D n={n} steps={steps}>")
        problem = build_problem(case)
    mesh = problem.mesh
    result = Simulation(problem, folder=None, initial_states=exact.states(mesh.points, 0.0)).run()
    v = result.states[problem.model.vm_index]
    l2, h1 = error_norms(mesh.points, mesh.tets, v, lambda x: exact.V_and_grad(x, END_TIME))
    # the thin directions are 1/n wide: divide them out to get the d-dimensional norms
    scale = math.sqrt(n ** (3 - dim))
    wall = time.perf_counter() - t0
    return MmsRun(dim=dim, n=n, steps=steps, splitting=splitting, theta=theta, nodes=mesh.n_points,
                  l2=l2 * scale, h1=h1 * scale, wall_time=wall, solution=result.states.copy(),
                  points=mesh.points, tets=mesh.tets, summary=result.summary)


def steps_for(n: int, dt_scale: float) -> int:
    """Time steps to T with dt = T/steps ≤ dt_scale · h² (h = 1/n): dt ∝ h²."""
    return max(1, math.ceil(END_TIME * n * n / dt_scale - 1e-9))


# --------------------------------------------------------------------------- command line
SCHEMES: dict[str, tuple[str, float, int, float | None]] = {
    # name: (splitting, theta, reaction sub-steps, expected temporal order or None: not checked)
    "godunov-be": ("godunov", 1.0, 1, 1.0),
    "godunov-cn": ("godunov", 0.5, 1, 1.0),
    # Strang is second order only when both sub-solvers are; twin's reaction step is forward
    # Euler (first order), so the composition is first order (see the report notes)
    "strang-cn": ("strang", 0.5, 1, 1.0),
    # shown, not checked: with the reaction error cut 64-fold the second-order splitting error
    # dominates at large dt (local order → 2) until the O(dt/64) reaction error takes over
    "strang-cn-sub64": ("strang", 0.5, 64, None),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``twin verify mms``."""
    parser.add_argument("--dims", type=int, nargs="+", choices=(1, 2, 3), default=[1, 2, 3], metavar="D",
                        help="dimensions to run (default: 1 2 3)")
    parser.add_argument("--n", type=int, nargs="+", default=[8, 16, 32, 64], metavar="N",
                        help="cells per unit length for 1D and 2D, h = 1/N mm (default: 8 16 32 64)")
    parser.add_argument("--n3d", type=int, nargs="+", default=[16, 32], metavar="N",
                        help="cells per unit length for 3D (default: 16 32; coarser 3D meshes are not yet "
                             "asymptotic: cos(3πz) has 2.7 cells per half-wave at N = 8)")
    parser.add_argument("--dt-scale", type=float, default=8.0, metavar="K",
                        help="time step dt = T/ceil(T/(K h²)) ≤ K h² [ms/mm²] for the spatial study "
                             "(default: 8; the paper's code uses 10)")
    parser.add_argument("--splitting", choices=("godunov", "strang"), default="godunov",
                        help="splitting of the spatial study (default: godunov)")
    parser.add_argument("--theta", type=float, default=0.5,
                        help="θ of the spatial study (default: 0.5, Crank–Nicolson)")
    parser.add_argument("--time-dim", type=int, choices=(1, 2, 3), default=2,
                        help="dimension of the temporal study (default: 2)")
    parser.add_argument("--time-n", type=int, default=16, metavar="N",
                        help="mesh of the temporal study, h = 1/N (default: 16)")
    parser.add_argument("--time-steps", type=int, nargs="+", default=[8, 16, 32, 64], metavar="S",
                        help="time steps to T = 1 in the temporal study (default: 8 16 32 64)")
    parser.add_argument("--time-reference", type=int, default=2048, metavar="S",
                        help="time steps of the reference solution on the same mesh (default: 2048)")
    parser.add_argument("--schemes", nargs="+", choices=sorted(SCHEMES), default=sorted(SCHEMES),
                        help="schemes of the temporal study (default: all)")
    parser.add_argument("--no-time", action="store_true", help="skip the temporal study")
    parser.add_argument("--order-tolerance", type=float, default=0.15, metavar="TOL",
                        help="allowed |observed − expected| order (default: 0.15)")
    parser.add_argument("--pcg-tolerance", type=float, default=1e-10, metavar="TOL",
                        help="PCG relative tolerance (default: 1e-10; the finest errors are ~1e-4)")


def _validate(args: argparse.Namespace) -> None:
    for name in ("n", "n3d", "time_steps"):
        values = getattr(args, name)
        if any(v < 1 for v in values):
            raise TwinError(f"--{name.replace('_', '-')} values must be positive integers, got {values}")
    if args.time_n < 1 or args.time_reference < 1:
        raise TwinError("--time-n and --time-reference must be positive integers")
    if not args.no_time and args.time_reference <= max(args.time_steps):
        raise TwinError(f"--time-reference ({args.time_reference}) must exceed the largest --time-steps "
                        f"({max(args.time_steps)})")
    if not 0.0 <= args.theta <= 1.0:
        raise TwinError(f"--theta must lie in [0, 1], got {args.theta}")
    if not args.dt_scale > 0:
        raise TwinError(f"--dt-scale must be positive, got {args.dt_scale}")
    if not args.order_tolerance > 0:
        raise TwinError(f"--order-tolerance must be positive, got {args.order_tolerance}")


def run(args: argparse.Namespace, folder: Path) -> VerifyReport:
    """Spatial study (dt ∝ h²) in each dimension, temporal study on one mesh; write and check.

    Parameters
    ----------
    args
        Parsed options (see :func:`add_arguments`).
    folder
        Output folder (created).
    """
    import numba

    _validate(args)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    report = VerifyReport(
        name="mms", folder=folder,
        settings={"dims": sorted(set(args.dims)), "n": sorted(set(args.n)), "n3d": sorted(set(args.n3d)),
                  "dt_scale_ms_per_mm2": args.dt_scale, "splitting": args.splitting, "theta": args.theta,
                  "time_study": None if args.no_time else
                  {"dim": args.time_dim, "n": args.time_n, "steps": sorted(set(args.time_steps)),
                   "reference_steps": args.time_reference, "schemes": sorted(set(args.schemes))},
                  "order_tolerance": args.order_tolerance, "pcg_tolerance": args.pcg_tolerance,
                  "sigma_S_per_m": list(SIGMA), "chi_per_mm": CHI, "cm_uF_per_mm2": CM,
                  "end_time_ms": END_TIME, "model": MODEL, "threads": numba.get_num_threads()},
        notes=_notes(args))
    tol = args.order_tolerance

    space: dict[int, list[MmsRun]] = {}
    for dim in sorted(set(args.dims)):
        ns = sorted(set(args.n3d if dim == 3 else args.n))
        runs = []
        for n in ns:
            r = solve(dim, n, steps_for(n, args.dt_scale), splitting=args.splitting, theta=args.theta,
                      tolerance=args.pcg_tolerance, workdir=folder)
            logger.info("mms %dD: h = 1/%d, %d steps, %d nodes: L2 %.3e, H1 %.3e (%.1f s)", dim, n,
                        r.steps, r.nodes, r.l2, r.h1, r.wall_time)
            runs.append(r)
        space[dim] = runs
        hs = [r.h for r in runs]
        report.check(f"{dim}D: L2 order in space (dt ∝ h²)", observed_order(hs, [r.l2 for r in runs]),
                     2.0, tol)
        report.check(f"{dim}D: H1-seminorm order in space (dt ∝ h²)",
                     observed_order(hs, [r.h1 for r in runs]), 1.0, tol)
    report.tables["Spatial convergence (errors at t = T)"] = [_space_row(r) for runs in space.values()
                                                                for r in runs]
    report.tables["Observed orders in space"] = [
        {"dim": d, "h [mm]": " ".join(f"1/{r.n}" for r in runs),
         "L2 order": observed_order([r.h for r in runs], [r.l2 for r in runs]),
         "H1 order": observed_order([r.h for r in runs], [r.h1 for r in runs]),
         "pairwise L2 orders": " ".join(f"{o:.3f}" for o in _pairwise([r.h for r in runs], [r.l2 for r in runs])),
         "pairwise H1 orders": " ".join(f"{o:.3f}" for o in _pairwise([r.h for r in runs], [r.h1 for r in runs]))}
        for d, runs in space.items()]

    time_rows: list[dict[str, Any]] = []
    time_study: dict[str, tuple[list[int], list[float]]] = {}
    if not args.no_time:
        steps = sorted(set(args.time_steps))
        for name in sorted(set(args.schemes)):
            splitting, theta, substeps, expected = SCHEMES[name]
            ref = solve(args.time_dim, args.time_n, args.time_reference, splitting=splitting, theta=theta,
                        substeps=substeps, tolerance=args.pcg_tolerance, workdir=folder)
            errs = []
            for s in steps:
                r = solve(args.time_dim, args.time_n, s, splitting=splitting, theta=theta,
                          substeps=substeps, tolerance=args.pcg_tolerance, workdir=folder)
                # the difference to a fine-dt solution on the same mesh: the spatial error cancels
                e2, _ = error_norms(r.points, r.tets, r.solution[0] - ref.solution[0], None)
                e2 *= math.sqrt(args.time_n ** (3 - args.time_dim))
                errs.append(e2)
                time_rows.append({"scheme": name, "splitting": splitting, "theta": theta,
                                  "reaction substeps": substeps, "steps": s,
                                  "dt [ms]": r.dt, "L2 difference to reference": e2,
                                  "L2 error to exact": r.l2, "wall [s]": round(r.wall_time, 2)})
                logger.info("mms time %s: %d steps: L2 difference %.3e", name, s, e2)
            time_study[name] = (steps, errs)
            if expected is not None:
                report.check(f"{name}: L2 order in time ({args.time_dim}D, h = 1/{args.time_n})",
                             observed_order([END_TIME / s for s in steps], errs), expected, tol)
        report.tables["Temporal convergence (L2 difference to a reference with "
                      f"{args.time_reference} steps, same mesh)"] = time_rows
        report.tables["Observed orders in time"] = [
            {"scheme": name, "expected": SCHEMES[name][3],
             "order": observed_order([END_TIME / s for s in st], er),
             "pairwise orders": " ".join(f"{o:.3f}" for o in _pairwise([END_TIME / s for s in st], er))}
            for name, (st, er) in time_study.items()]

    report.tables["Timings"] = [{"dim": r.dim, "h [mm]": f"1/{r.n}", "steps": r.steps, "nodes": r.nodes,
                                 "wall [s]": round(r.wall_time, 2),
                                 "solve [s]": round(r.summary.get("timings_s", {}).get("solve", float("nan")), 2),
                                 "PCG its/step": round(r.summary.get("run", {}).get("pcg_iterations_mean",
                                                                                    float("nan")), 1)}
                                for runs in space.values() for r in runs]
    if space:
        report.files.append(_plot_space(folder / "mms_space.png", space))
        finest = space[max(space)][-1]
        name = f"mms_{finest.dim}d_n{finest.n}.vtu"
        _write_vtu(folder / name, finest)
        report.files.append(name)
    if time_study:
        report.files.append(_plot_time(folder / "mms_time.png", time_study, args))
    return report


def _pairwise(h: Sequence[float], err: Sequence[float]) -> list[float]:
    return [math.log(err[i] / err[i + 1]) / math.log(h[i] / h[i + 1])
            for i in range(len(h) - 1) if err[i] > 0 and err[i + 1] > 0]


def _space_row(r: MmsRun) -> dict[str, Any]:
    return {"dim": r.dim, "h [mm]": f"1/{r.n}", "dt [ms]": r.dt, "steps": r.steps, "nodes": r.nodes,
            "L2 error": r.l2, "H1-semi error": r.h1, "wall [s]": round(r.wall_time, 2)}


def _write_vtu(path: Path, r: MmsRun) -> None:
    from ..io.vtk import write_vtu

    exact = ExactSolution(r.dim).states(r.points, END_TIME)
    names = ("V", "u1", "u2", "u3")
    data = {f"{k}": r.solution[i] for i, k in enumerate(names)}
    data.update({f"{k}_exact": exact[i] for i, k in enumerate(names)})
    data["V_error"] = r.solution[0] - exact[0]
    write_vtu(path, r.points, r.tets, point_data=data)


def _plot_space(path: Path, space: dict[int, list[MmsRun]]) -> str:
    # the object-oriented API renders with Agg and leaves pyplot's global state alone
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for dim, runs in space.items():
        h = np.array([r.h for r in runs])
        (l2,) = ax.loglog(h, [r.l2 for r in runs], "o-", label=f"{dim}D L2")
        ax.loglog(h, [r.h1 for r in runs], "s--", color=l2.get_color(), label=f"{dim}D H1-semi")
    h_all = np.array(sorted({r.h for runs in space.values() for r in runs}))
    if len(h_all) > 1:
        ref = max(r.l2 for runs in space.values() for r in runs)
        ax.loglog(h_all, ref * (h_all / h_all[-1]) ** 2, "k:", lw=1, label="slope 2")
        ax.loglog(h_all, ref * (h_all / h_all[-1]), "k-.", lw=1, label="slope 1")
    ax.set_xlabel("h [mm]")
    ax.set_ylabel("error at t = T")
    ax.set_title("Pathmanathan & Gray 2014 monodomain problem, dt ∝ h²")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _plot_time(path: Path, study: dict[str, tuple[list[int], list[float]]], args: argparse.Namespace) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for name, (steps, errs) in study.items():
        ax.loglog([END_TIME / s for s in steps], errs, "o-", label=name)
    dts = np.array([END_TIME / s for s in sorted(set(args.time_steps))])
    if len(dts) > 1 and study:
        e0 = max(max(e) for _, e in study.values())
        ax.loglog(dts, e0 * dts / dts[0], "k-.", lw=1, label="slope 1")
        ax.loglog(dts, e0 * (dts / dts[0]) ** 2, "k:", lw=1, label="slope 2")
    ax.set_xlabel("dt [ms]")
    ax.set_ylabel(f"L2 difference to {args.time_reference}-step reference")
    ax.set_title(f"Temporal convergence, {args.time_dim}D, h = 1/{args.time_n}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _notes(args: argparse.Namespace) -> str:
    return f"""\
Manufactured-solution benchmark of P. Pathmanathan and R.A. Gray, "Verification of computational
models of cardiac electro-physiology", Int. J. Numer. Meth. Biomed. Eng. 30:525-544 (2014),
doi:10.1002/cnm.2615: the monodomain model problem, with the equations and values of the
paper's literate Chaste code (TestEpAgainstExactSolutionsLiteratePaper, ModelProblemCellModel).

χ(Cm ∂V/∂t + I_ion) = ∇·(σ∇V) on [0,1]^d, zero flux, T = 1; σ = diag(1.1, 1.2, 0.3)/π², χ = 3,
Cm = 2; cell model du1/dt = w²u2² + w u2²(V−u3)/2, du2/dt = −w u2³, du3/dt = 0, w = u1+u3−V,
I_ion = −Cm w u2²(V−u3)/2 + β(V−u3)/χ, β = −π² Σ σ_i m_i², m = (1, 2, 3). Exact solution
V = √(1+t) F, u1 = V + (1+t) G, u2 = 1/((1+t)√G), u3 = 0, F = Π cos(m_i π x_i), G = 1 + x, 1 + xy²,
1 + xy²z³. The paper's quantities are dimensionless; here lengths are mm, time ms, V mV, σ S/m.

What runs: the cell model is `models/{MODEL}.mmt` compiled by twin's code generator (all four
states by forward Euler); each problem is an ordinary case (mesh file with fibres along x and
sheets along y, orthotropic σ, zero stimulus) built by `build_problem` and run by `Simulation`
(splitting loop, θ-scheme diffusion with Jacobi-PCG) from the exact per-node initial state
(`Simulation(..., initial_states=...)`). d-dimensional problems are solved on [0,1]^d × [0,h]^(3−d) tetrahedral boxes
(one element across the thin axes, zero flux there) and their norms divided by the thin
cross-section. Errors are ‖V_h − V‖ at t = T by a degree-5 quadrature on every element (not by
nodal interpolation, whose gradient superconverges on these structured meshes).

Spatial study: dt = T/ceil(T/(K h²)) with K = {args.dt_scale:g} ms/mm² (dt ∝ h², so the first-order
splitting error is O(h²) too): expected orders 2 (L2) and 1 (H1-seminorm) ± {args.order_tolerance:g}.
Temporal study: the L2 difference to a {args.time_reference}-step solution on the same mesh (the
spatial error cancels). Expected order 1 for every scheme: Godunov splitting is first order, and
Strang splitting with Crank–Nicolson is second order only if the reaction solve is, while twin's
reaction step is forward Euler (Rush–Larsen for gates), first order; so Strang + CN converges at
order 1. strang-cn-sub64 (64 reaction sub-steps, not checked) shows the rest of the scheme is
second order: local orders near 2 at large dt, falling towards 1 as the O(dt/64) reaction error
takes over. A second-order reaction integrator (Heun, or RL2) would make Strang + CN order 2.
"""
