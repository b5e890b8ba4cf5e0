"""Sparse linear algebra kernels: CSR mat-vec and Jacobi-preconditioned CG.

Every ``prange`` loop owns its writes (one row, or one block of a reduction),
so results do not depend on scheduling.  Dot products are summed in a fixed
number of blocks (:data:`N_BLOCKS`) and the partial sums are added serially,
which makes them bitwise identical for any thread count: the same case gives
the same numbers on 1 or 2 threads.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..jit import NJIT, PARALLEL, njit

#: number of blocks for deterministic reductions (independent of the thread count)
N_BLOCKS = 64


@njit(**PARALLEL)
def csr_matvec(indptr, indices, data, x, out):  # pragma: no cover - JIT
    """``out = A @ x`` for a CSR matrix, one row per iteration (row-owned writes)."""
    n = indptr.shape[0] - 1
    for i in prange(n):
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * x[indices[k]]
        out[i] = s


@njit(**PARALLEL)
def blocked_dot(a, b, partial):  # pragma: no cover - JIT
    """Deterministic ``a · b``: fixed blocks summed in parallel, then serially."""
    n = a.shape[0]
    nb = partial.shape[0]
    chunk = (n + nb - 1) // nb
    for k in prange(nb):
        s = 0.0
        for i in range(k * chunk, min(n, (k + 1) * chunk)):
            s += a[i] * b[i]
        partial[k] = s
    total = 0.0
    for k in range(nb):
        total += partial[k]
    return total


@njit(**PARALLEL)
def _precond_residual(r, diag_inv, z):  # pragma: no cover - JIT
    for i in prange(r.shape[0]):
        z[i] = diag_inv[i] * r[i]


@njit(**PARALLEL)
def _update_xr(x, r, p, q, alpha):  # pragma: no cover - JIT
    for i in prange(x.shape[0]):
        x[i] += alpha * p[i]
        r[i] -= alpha * q[i]


@njit(**PARALLEL)
def _update_p(p, z, beta):  # pragma: no cover - JIT
    for i in prange(p.shape[0]):
        p[i] = z[i] + beta * p[i]


@njit(**PARALLEL)
def _residual(b, ax, r):  # pragma: no cover - JIT
    for i in prange(b.shape[0]):
        r[i] = b[i] - ax[i]


@njit(**NJIT)
def pcg(indptr, indices, data, diag_inv, b, x, tol, max_iter, r, z, p, q, partial):  # pragma: no cover
    """Solve ``A x = b`` (A symmetric positive definite, CSR) by Jacobi-PCG.

    ``x`` holds the initial guess on entry (warm start) and the solution on
    exit.  Stops when ``‖r‖₂ ≤ tol ‖b‖₂``.  ``r, z, p, q`` are work vectors of
    length n and ``partial`` has :data:`N_BLOCKS` entries: nothing is allocated.

    Returns
    -------
    int
        Iterations used, ``-1`` if ``max_iter`` was reached, ``-2`` when a
        non-finite value appeared (a NaN in ``b`` or a breakdown).
    """
    csr_matvec(indptr, indices, data, x, q)
    _residual(b, q, r)
    b_norm2 = blocked_dot(b, b, partial)
    if not np.isfinite(b_norm2):
        return -2
    if b_norm2 == 0.0:
        b_norm2 = 1.0
    stop2 = tol * tol * b_norm2
    rr = blocked_dot(r, r, partial)
    if rr <= stop2:
        return 0
    _precond_residual(r, diag_inv, z)
    for i in range(p.shape[0]):
        p[i] = z[i]
    rz = blocked_dot(r, z, partial)
    for it in range(1, max_iter + 1):
        csr_matvec(indptr, indices, data, p, q)
        pq = blocked_dot(p, q, partial)
        alpha = rz / pq
        _update_xr(x, r, p, q, alpha)
        rr = blocked_dot(r, r, partial)
        if rr <= stop2:
            return it
        if not np.isfinite(rr):
            return -2
        _precond_residual(r, diag_inv, z)
        rz_new = blocked_dot(r, z, partial)
        _update_p(p, z, rz_new / rz)
        rz = rz_new
    return -1
