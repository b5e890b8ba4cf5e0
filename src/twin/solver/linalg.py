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


@njit(inline="always", **NJIT)
def row_dot(indptr, indices, data, x, i):  # pragma: no cover - JIT
    """Row ``i`` of a CSR matrix times ``x``, summed in four interleaved partial sums.

    One running sum is a chain of dependent additions (a P1 row has ~15 entries): four
    chains keep the floating-point units busy (1.2x the mat-vec rate in cache, measured).
    The order is fixed by the code, so results do not depend on the thread count.
    """
    k = indptr[i]
    end = indptr[i + 1]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    while k + 3 < end:
        s0 += data[k] * x[indices[k]]
        s1 += data[k + 1] * x[indices[k + 1]]
        s2 += data[k + 2] * x[indices[k + 2]]
        s3 += data[k + 3] * x[indices[k + 3]]
        k += 4
    while k < end:
        s0 += data[k] * x[indices[k]]
        k += 1
    return (s0 + s1) + (s2 + s3)


@njit(**PARALLEL)
def csr_matvec(indptr, indices, data, x, out):  # pragma: no cover - JIT
    """``out = A @ x`` for a CSR matrix, one row per iteration (row-owned writes)."""
    n = indptr.shape[0] - 1
    for i in prange(n):
        out[i] = row_dot(indptr, indices, data, x, i)


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


@njit(inline="always", **NJIT)
def _sum3(partial, nb):  # pragma: no cover - JIT
    """The three block sums ``partial[:nb]``, ``partial[nb:2nb]``, ``partial[2nb:3nb]``, added serially."""
    a = 0.0
    b = 0.0
    c = 0.0
    for k in range(nb):
        a += partial[k]
        b += partial[nb + k]
        c += partial[2 * nb + k]
    return a, b, c


@njit(**PARALLEL)
def _residual_and_precond(b, x_in, indptr, indices, data, r, z, diag_inv, partial):  # pragma: no cover - JIT
    """``r = b − A x``, ``z = D⁻¹ r``; returns (r·r, r·z, b·b) summed in fixed row blocks."""
    n = b.shape[0]
    nb = partial.shape[0] // 3
    chunk = (n + nb - 1) // nb
    for k in prange(nb):
        rr = 0.0
        rz = 0.0
        bb = 0.0
        for i in range(k * chunk, min(n, (k + 1) * chunk)):
            ri = b[i] - row_dot(indptr, indices, data, x_in, i)
            r[i] = ri
            zi = diag_inv[i] * ri
            z[i] = zi
            rr += ri * ri
            rz += ri * zi
            bb += b[i] * b[i]
        partial[k] = rr
        partial[nb + k] = rz
        partial[2 * nb + k] = bb
    return _sum3(partial, nb)


@njit(**PARALLEL)
def _direction(indptr, indices, data, z, p, q, beta, first, partial):  # pragma: no cover - JIT
    """New search direction and its image in one pass: ``p = z + βp`` and ``q = A z + βq``
    (= A p, as A p_old = q_old), returning ``p·q``; ``first`` sets ``p = z``, ``q = A z``.

    Recurring ``q`` instead of computing ``A p`` after ``p`` lets the mat-vec read ``z``,
    which is complete before the pass starts: one pass and one barrier fewer per iteration.
    """
    n = z.shape[0]
    nb = partial.shape[0] // 3
    chunk = (n + nb - 1) // nb
    for k in prange(nb):
        acc = 0.0
        for i in range(k * chunk, min(n, (k + 1) * chunk)):
            s = row_dot(indptr, indices, data, z, i)
            if first:
                pi = z[i]
                qi = s
            else:
                pi = z[i] + beta * p[i]
                qi = s + beta * q[i]
            p[i] = pi
            q[i] = qi
            acc += pi * qi
        partial[k] = acc
    total = 0.0
    for k in range(nb):
        total += partial[k]
    return total


@njit(**PARALLEL)
def _update_precond(x, r, z, p, q, diag_inv, alpha, partial):  # pragma: no cover - JIT
    """``x += αp``, ``r −= αq``, ``z = D⁻¹ r``; returns (r·r, r·z) over fixed row blocks."""
    n = x.shape[0]
    nb = partial.shape[0] // 3
    chunk = (n + nb - 1) // nb
    for k in prange(nb):
        rr = 0.0
        rz = 0.0
        for i in range(k * chunk, min(n, (k + 1) * chunk)):
            x[i] += alpha * p[i]
            ri = r[i] - alpha * q[i]
            r[i] = ri
            zi = diag_inv[i] * ri
            z[i] = zi
            rr += ri * ri
            rz += ri * zi
        partial[k] = rr
        partial[nb + k] = rz
    rr = 0.0
    rz = 0.0
    for k in range(nb):
        rr += partial[k]
        rz += partial[nb + k]
    return rr, rz


@njit(**PARALLEL)
def theta_residual(indptr, indices, a_data, b_data, v, d1, d2, w1, w2, x, r, z, diag_inv,
                   partial):  # pragma: no cover - JIT
    """The start of a θ-scheme solve in one pass over A and B (same sparsity pattern).

    ``x = v + w1 d1 + w2 d2`` (the extrapolated start), ``r = B v − A x`` and ``z = D⁻¹ r``;
    returns (r·r, r·z, b·b) with ``b = B v``, summed in fixed row blocks.  ``x`` must not be
    ``v``: every row reads its neighbours' old ``v``.
    """
    n = v.shape[0]
    nb = partial.shape[0] // 3
    chunk = (n + nb - 1) // nb
    for k in prange(nb):
        rr = 0.0
        rz = 0.0
        bb = 0.0
        for i in range(k * chunk, min(n, (k + 1) * chunk)):
            bv = 0.0
            ax = 0.0
            for j in range(indptr[i], indptr[i + 1]):
                c = indices[j]
                vc = v[c]
                bv += b_data[j] * vc
                ax += a_data[j] * (vc + w1 * d1[c] + w2 * d2[c])
            x[i] = v[i] + w1 * d1[i] + w2 * d2[i]
            ri = bv - ax
            r[i] = ri
            zi = diag_inv[i] * ri
            z[i] = zi
            rr += ri * ri
            rz += ri * zi
            bb += bv * bv
        partial[k] = rr
        partial[nb + k] = rz
        partial[2 * nb + k] = bb
    return _sum3(partial, nb)


@njit(**NJIT)
def pcg_from(indptr, indices, data, diag_inv, x, tol, max_iter, r, z, p, q, partial, rr, rz,
             b_norm2):  # pragma: no cover
    """Jacobi-PCG iterations from a residual already computed (``r``, ``z = D⁻¹ r``, ``r·r``,
    ``r·z`` and ``‖b‖²``); same stopping test and return values as :func:`pcg`."""
    if not np.isfinite(b_norm2) or not np.isfinite(rr):
        return -2
    if b_norm2 == 0.0:
        b_norm2 = 1.0
    stop2 = tol * tol * b_norm2
    if rr <= stop2:
        return 0
    pq = _direction(indptr, indices, data, z, p, q, 0.0, True, partial)
    for it in range(1, max_iter + 1):
        alpha = rz / pq
        rr, rz_new = _update_precond(x, r, z, p, q, diag_inv, alpha, partial)
        if rr <= stop2:
            return it
        if not np.isfinite(rr):
            return -2
        pq = _direction(indptr, indices, data, z, p, q, rz_new / rz, False, partial)
        rz = rz_new
    return -1


@njit(**NJIT)
def pcg(indptr, indices, data, diag_inv, b, x, tol, max_iter, r, z, p, q, partial):  # pragma: no cover
    """Solve ``A x = b`` (A symmetric positive definite, CSR) by Jacobi-PCG.

    ``x`` holds the initial guess on entry (warm start) and the solution on
    exit.  Stops when ``‖r‖₂ ≤ tol ‖b‖₂``.  ``r, z, p, q`` are work vectors of
    length n and ``partial`` has ``3 * N_BLOCKS`` entries: nothing is allocated.

    Returns
    -------
    int
        Iterations used, ``-1`` if ``max_iter`` was reached, ``-2`` when a
        non-finite value appeared (a NaN in ``b`` or a breakdown).
    """
    # two parallel passes per iteration (new direction with its mat-vec and p·q; update with r·r
    # and r·z): each pass ends in a barrier, and on a busy machine every barrier costs a
    # descheduled thread
    rr, rz, b_norm2 = _residual_and_precond(b, x, indptr, indices, data, r, z, diag_inv, partial)
    return pcg_from(indptr, indices, data, diag_inv, x, tol, max_iter, r, z, p, q, partial, rr, rz, b_norm2)
