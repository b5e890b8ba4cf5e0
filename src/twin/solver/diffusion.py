"""The diffusion half of the splitting: M dV/dt = -(1/(χ Cm)) K V, zero-flux boundary.

θ-scheme (θ = 1/2 Crank–Nicolson, θ = 1 backward Euler)::

    (M + θ dt K') V⁺ = (M − (1−θ) dt K') V,      K' = K / (χ Cm)

solved by Jacobi-PCG started from V plus the change extrapolated from the last three
steps (linear plus a damped quadratic term, see :data:`EXTRAPOLATION`); or explicit forward
Euler with lumped mass, which is refused when dt exceeds the stability limit
2 / λ_max(M_L⁻¹ K').
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numba import prange

from ..errors import SolverError
from ..jit import PARALLEL, njit
from .sell import extrapolate, partials, pcg_from, sell_from_csr, sell_matvec, theta_residual

logger = logging.getLogger(__name__)


def _shared_pattern(*mats: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """CSR matrices of one shape on their common sparsity pattern: ``(indptr, indices, [data...])``.

    A = M + θ dt K' and D = A − B = dt K' have the same pattern, so one copy of the
    indices serves both (4 bytes per non-zero saved).
    """
    if len(mats) == 2:
        # a complex sum keeps every entry where either is non-zero (scipy drops exact zeros)
        both = (mats[0].astype(np.complex128) + 1j * mats[1]).tocsr()
        both.sort_indices()
        datas = [both.data.real.copy(), both.data.imag.copy()]
        pattern = both
    else:
        pattern = mats[0].tocsr()
        pattern.sort_indices()
        datas = [np.array(pattern.data, dtype=np.float64, copy=True)]
    return pattern.indptr, pattern.indices, datas


@njit(**PARALLEL)
def _accept(v, x, newest):  # pragma: no cover - JIT
    """Take the solution ``x`` into ``v``, keeping the change: ``newest = x − v``, ``v = x``."""
    for i in prange(v.shape[0]):
        newest[i] = x[i] - v[i]
        v[i] = x[i]


#: damping of the quadratic term of the PCG start (see EXTRAPOLATION)
DAMPING = 0.75


def _weights(kappa: float) -> tuple[tuple[float, float, float], ...]:
    """Weights of the last k = 0..3 changes of V (newest first) in the start of the next solve.

    With three changes: the linear extrapolation plus ``kappa`` times the second difference,
    ``d₁ + (d₁ − d₂) + κ (d₁ − 2 d₂ + d₃)``.  Why damped: where the PCG corrections do not reach
    (far ahead of a front, below the tolerance) the stored change *is* the start, so the start
    obeys ``d_n = Σ w_k d_(n−k)``, whose characteristic polynomial is ``(z − 1)² (z − κ)``: a
    double root at 1 (errors grow like n, as with the linear start) and one decaying root.  The
    undamped quadratic (κ = 1, a triple root) lets them grow like n², the cubic like n³.
    """
    return ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (2.0, -1.0, 0.0),
            (2.0 + kappa, -(1.0 + 2.0 * kappa), kappa))


#: extrapolation weights of the last k changes of V (newest first), one step ahead. Measured PCG
#: iterations per step over the 45 ms Niederer wave at dx 0.2: 5.64 linear, 4.83 (κ 0.7),
#: 4.74 (κ 0.75, the choice), 4.67 (κ 0.8), 4.51 undamped quadratic, activation times within
#: 2e-5 ms of each other. Ahead of a Fisher-KPP front (u = 0 unstable, tests/test_verify_waves.py,
#: h 0.4, tolerance 1e-10) κ <= 0.8 leave the tail where the linear start leaves it (4.1e-12,
#: final u within 7e-6 everywhere), κ 0.9 moves it by 40 %, κ 1 makes it negative (-8e-4) and a
#: cubic start blows the run up after 37 ms. κ/(1 − κ) is the gain from a second difference of noise to a lasting
#: slope: 3 at 0.75.
EXTRAPOLATION = _weights(DAMPING)
HISTORY = 3


def stability_limit(stiffness: sp.csr_matrix, lumped: np.ndarray) -> float:
    """Largest stable forward-Euler dt [ms] for M_L dV/dt = -K' V: 2/λ_max(M_L⁻¹ K')."""
    d = 1.0 / np.sqrt(lumped)
    sym = sp.diags(d) @ stiffness @ sp.diags(d)
    if sym.shape[0] < 3:
        lam = float(np.linalg.eigvalsh(sym.toarray()).max())
    else:
        try:
            lam = float(spla.eigsh(sym, k=1, which="LA", tol=1e-4, return_eigenvectors=False,
                                   maxiter=5000)[0])
        except spla.ArpackNoConvergence:
            # Gershgorin's bound is safe (never below λ_max), just conservative
            lam = float(np.abs(sym).sum(axis=1).max())
    return 2.0 / lam if lam > 0 else np.inf


class DiffusionStepper:
    """Advances the diffusing state by one time step, in place.

    Parameters
    ----------
    stiffness
        K [mS] from :func:`twin.fem.stiffness_matrix`.
    mass
        Consistent mass matrix (sparse) or lumped mass (1-D array) [mm³].
    chi, cm
        Surface-to-volume ratio [1/mm] and membrane capacitance [µF/mm²].
    dt
        Time step of the diffusion solve [ms].
    theta
        Implicitness (0.5 Crank–Nicolson, 1 backward Euler); ignored for explicit.
    method
        ``"implicit"`` or ``"explicit"``.
    tol, max_iter
        PCG relative residual tolerance and iteration cap.
    """

    def __init__(self, stiffness: sp.csr_matrix, mass: sp.csr_matrix | np.ndarray, chi: float, cm: float,
                 dt: float, theta: float = 0.5, method: str = "implicit", tol: float = 1e-8,
                 max_iter: int = 1000) -> None:
        n = stiffness.shape[0]
        self.n = n
        self.dt = dt
        self.method = method
        self.tol = tol
        self.max_iter = max_iter
        k_scaled = (stiffness / (chi * cm)).tocsr()
        lumped = isinstance(mass, np.ndarray)
        m_mat = sp.diags(mass).tocsr() if lumped else mass.tocsr()
        self.iterations_total = 0
        self.solves = 0
        self._have_delta = 0
        if method == "explicit":
            if not lumped:
                raise SolverError("explicit diffusion needs a lumped mass matrix")
            self.dt_limit = stability_limit(k_scaled, mass)
            if dt > self.dt_limit:
                raise SolverError(
                    f"explicit diffusion is unstable with dt = {dt:g} ms: the limit for this mesh "
                    f"and conductivity is {self.dt_limit:.4g} ms; reduce solver.dt or use "
                    "solver.diffusion: implicit")
            # V⁺ = V − dt M_L⁻¹ K' V  as one matrix  B = I − dt M_L⁻¹ K'
            b_mat = (sp.identity(n, format="csr") - dt * sp.diags(1.0 / mass) @ k_scaled).tocsr()
            indptr, indices, (b_data,) = _shared_pattern(b_mat)
            self._sell = sell_from_csr(indptr, indices, b_data)
            implicit = False
        elif method == "implicit":
            self.dt_limit = np.inf
            a_mat = (m_mat + theta * dt * k_scaled).tocsr()
            d_mat = (dt * k_scaled).tocsr()          # A − B
            # the residual pass relies on D annihilating constants (zero-flux stiffness)
            row_sum = np.abs(np.asarray(d_mat.sum(axis=1)).ravel())
            if np.any(row_sum > 1e-9 * (np.asarray(abs(d_mat).sum(axis=1)).ravel() + 1e-300)):
                raise SolverError("the stiffness matrix does not annihilate constants (its rows do not sum "
                                  "to zero): the mesh or conductivities are inconsistent")
            indptr, indices, (a_data, d_data) = _shared_pattern(a_mat, d_mat)
            # float32 values: the solve streams 8 bytes per non-zero instead of 12 (12 instead of
            # 20 for the first pass): 49 -> 37 ns per node-step of diffusion at 10^6 nodes,
            # measured. The system is then A's entries rounded to 6e-8 (far below the
            # discretisation error); a constant V stays exactly constant (sell.theta_residual)
            self._sell = sell_from_csr(indptr, indices, a_data, d_data, dtype=np.float32)
            diag = a_mat.diagonal()
            if np.any(diag <= 0):
                raise SolverError("the diffusion system has a non-positive diagonal entry; "
                                  "check the mesh and conductivities")
            # zero in the padding rows: they stay zero through the iterations
            self._diag_inv = np.zeros(self._sell.n_pad)
            self._diag_inv[:n] = 1.0 / diag
            implicit = True
        else:
            raise SolverError(f"unknown diffusion method '{method}'")
        self.implicit = implicit
        n_pad = self._sell.n_pad
        # explicit: B V lands in _rhs; implicit: the solve iterates on _x with four work vectors
        self._rhs = np.zeros(0 if implicit else n_pad)
        self._work = [np.zeros(n_pad if implicit else 0) for _ in range(4)]
        self._x = np.zeros(n_pad if implicit else 0)
        self._v = np.zeros(n_pad if implicit else 0)     # V, padded
        # the previous steps' changes of V give the start of the next solve, extrapolated
        # (a front moves a small fraction of an element per step, so the change varies
        # smoothly from step to step; see HISTORY): a ring of the last changes, _newest its head
        self._changes = np.zeros((HISTORY, n) if implicit else (0, 0))
        self._newest = HISTORY - 1
        self._have_delta = 0
        self._partial = partials()

    def step(self, v: np.ndarray) -> int:
        """Advance ``v`` (length n, contiguous) by one step in place.

        Returns
        -------
        int
            PCG iterations, or ``-2`` when ``v`` holds values so large that the
            solve overflows (``v`` is then undefined and the run must stop).
        """
        sm = self._sell
        if not self.implicit:
            sell_matvec(sm.offset, sm.width, sm.col, sm.values[0], v, self._rhs)
            v[:] = self._rhs[:self.n]
            return 0
        r, z, p, q = self._work
        x = self._x
        a, d = sm.values[0], sm.values[1]
        # the extrapolated start x, then b = B v and the first residual in one pass over A and D
        h = self._ordered_changes()
        w = EXTRAPOLATION[self._have_delta]
        extrapolate(v, h[0], h[1], h[2], w[0], w[1], w[2], x, self._v)
        rr, rz, bb = theta_residual(sm.offset, sm.width, sm.col, a, d, self._v, x, r, z, p, self._diag_inv,
                                    self._partial)
        its = pcg_from(sm.offset, sm.width, sm.col, a, self._diag_inv, x, self.tol, self.max_iter, r, z, p, q,
                       self._partial, rr, rz, bb)
        if its == -2:
            return -2  # overflow in the input: the caller reports it as divergence
        if its < 0:
            raise SolverError(f"the diffusion solve did not converge in {self.max_iter} PCG iterations "
                              f"(tolerance {self.tol:g}); raise solver.max_iterations or check the mesh")
        self._newest = (self._newest + 1) % HISTORY
        _accept(v, x, self._changes[self._newest])
        self._have_delta = min(HISTORY, self._have_delta + 1)
        self.iterations_total += its
        self.solves += 1
        return its

    @property
    def nnz(self) -> int:
        """Non-zeros per system matrix (before the SELL padding)."""
        return self._sell.nnz

    def _ordered_changes(self) -> list[np.ndarray]:
        """The kept changes of V, newest first (views into the ring)."""
        return [self._changes[(self._newest - k) % HISTORY] for k in range(HISTORY)]

    def checkpoint_arrays(self) -> dict[str, np.ndarray]:
        """What a resumed run needs to continue bit for bit: the last steps' changes of V."""
        if not self.implicit or not self._have_delta:
            return {}
        return {"diffusion_changes": np.stack(self._ordered_changes()[:self._have_delta]),
                "diffusion_history": np.array(self._have_delta)}

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Take back :meth:`checkpoint_arrays` (a checkpoint without them starts cold; one of an
        older twin, with the last two changes as ``diffusion_delta``/``diffusion_delta2``,
        continues from those)."""
        self._have_delta = 0
        self._newest = HISTORY - 1
        self._changes[:] = 0.0
        if not self.implicit or "diffusion_history" not in arrays:
            return
        if "diffusion_changes" in arrays:
            changes = np.asarray(arrays["diffusion_changes"])
        else:
            changes = np.stack([arrays["diffusion_delta"], arrays["diffusion_delta2"]])
        k = min(int(arrays["diffusion_history"]), changes.shape[0], HISTORY)
        for j in range(k):               # newest at the head, older ones behind it
            self._changes[(self._newest - j) % HISTORY] = changes[j]
        self._have_delta = k

    def warm_up(self) -> None:
        """Compile the kernels on a copy of a tiny problem's data (so compile time is measured apart)."""
        self.step(np.zeros(self.n))
        self.iterations_total = 0
        self.solves = 0
        self._have_delta = 0
