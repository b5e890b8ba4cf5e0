"""SELL-16 sparse matrices: the mat-vec and PCG kernels of the diffusion solve, vectorised.

A CSR row product is a chain of dependent additions that LLVM may not reorder (no
fast-math), so it runs one non-zero at a time.  SELL-C (Kreutzer et al. 2014, "A unified
sparse matrix data format for efficient general sparse matrix-vector multiplication on
modern processors with wide SIMD units") stores rows in chunks of ``C`` consecutive rows,
each chunk padded to its longest row and laid out column by column: entry ``j`` of the
``C`` rows of a chunk are adjacent, so one SIMD instruction advances ``C`` row sums (a
gather of ``x``) while each row is still summed in its own fixed order — results do not
depend on the thread count.  P1 rows of one chunk have nearly equal lengths: the padding
is below 1 % on the Niederer slab.

Padding entries hold 0 and point at their own row (at row ``n − 1`` beyond the last
row), so they never read past ``x`` and only turn a row into NaN when that row's own
value already is.  Vectors handed to the kernels have ``n_pad = 16 ⌈n/16⌉`` entries
(zero in the padding rows).

Reductions (dot products) are summed in 16 lanes (row mod 16) over each of
:data:`twin.solver.linalg.N_BLOCKS` fixed blocks of chunks, then serially: the lanes let
LLVM vectorise the loops that form them, the fixed blocks make them bitwise identical for
any thread count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from ..jit import NJIT, PARALLEL, njit
from .linalg import N_BLOCKS

#: rows per chunk: 16 float64 = two AVX-512 registers, so two independent gathers are in flight
#: per step (measured against 8: slab diffusion 49.6 -> 41.2 ns per node-step at 1 thread, the
#: 7.8 M-nnz mat-vec from DRAM 17 -> 20 GB/s at 1 thread)
SELL_C = 16
_C = np.uint64(SELL_C)

#: the parallel kernels: prange bodies never raise (a division by zero gives inf/NaN, caught
#: by the solver as divergence), which lets LLVM vectorise them
_SIMD = dict(PARALLEL, error_model="numpy")


def partials() -> np.ndarray:
    """Work array for the reductions of :func:`theta_residual` and :func:`pcg_from`."""
    return np.zeros(3 * N_BLOCKS * SELL_C)


@njit(inline="always", **NJIT)
def _lanes(partial, nb, which):  # pragma: no cover - JIT
    """Sum of reduction ``which`` (0, 1, 2): its lanes of every block, in a fixed order."""
    total = 0.0
    start = which * nb * SELL_C
    for k in range(nb * SELL_C):
        total += partial[start + k]
    return total


@dataclass(frozen=True)
class SellMatrix:
    """Matrices of one sparsity pattern in SELL-16 form.

    Attributes
    ----------
    n, n_pad
        Rows, and rows padded to a multiple of :data:`SELL_C`.
    offset
        ``(n_pad / 8 + 1,)`` start of each chunk's entries.
    width
        ``(n_pad / 8,)`` entries per row in each chunk (its longest row).
    col
        Column of every entry (uint32).
    values
        ``(k, entries)``: the values of the ``k`` matrices.
    nnz
        Non-zeros of the pattern before padding.
    """

    n: int
    n_pad: int
    offset: np.ndarray
    width: np.ndarray
    col: np.ndarray
    values: np.ndarray
    nnz: int


@njit(**NJIT)
def _fill(indptr, indices, data, offset, col, values):  # pragma: no cover - JIT
    n = indptr.shape[0] - 1
    n_pad = (offset.shape[0] - 1) * SELL_C
    for i in range(n_pad):
        c = i // SELL_C
        r = i - c * SELL_C
        start = offset[c] + r
        width = (offset[c + 1] - offset[c]) // SELL_C
        own = min(i, n - 1)
        k = 0
        if i < n:
            k = indptr[i + 1] - indptr[i]
            for j in range(k):
                col[start + j * SELL_C] = indices[indptr[i] + j]
                for m in range(data.shape[0]):
                    values[m, start + j * SELL_C] = data[m, indptr[i] + j]
        for j in range(k, width):
            col[start + j * SELL_C] = own
            for m in range(data.shape[0]):
                values[m, start + j * SELL_C] = 0.0


def sell_from_csr(indptr: np.ndarray, indices: np.ndarray, *datas: np.ndarray,
                  dtype: type = np.float64) -> SellMatrix:
    """SELL-16 form of CSR matrices sharing ``indptr``/``indices`` (one ``data`` each), their
    values stored as ``dtype`` (the kernels compute in float64 either way)."""
    n = indptr.shape[0] - 1
    if n >= 2 ** 32:
        raise ValueError(f"{n} rows: more than 32-bit column indices can address")
    n_chunks = (n + SELL_C - 1) // SELL_C
    lengths = np.zeros(n_chunks * SELL_C, dtype=np.int64)
    lengths[:n] = np.diff(indptr)
    width = lengths.reshape(n_chunks, SELL_C).max(axis=1) if n_chunks else np.zeros(0, np.int64)
    offset = np.zeros(n_chunks + 1, dtype=np.int64)
    np.cumsum(width * SELL_C, out=offset[1:])
    col = np.zeros(int(offset[-1]), dtype=np.uint32)
    values = np.zeros((len(datas), int(offset[-1])), dtype=dtype)
    data = np.ascontiguousarray(np.stack([np.asarray(d, dtype=np.float64) for d in datas]))
    _fill(np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64), data, offset, col, values)
    return SellMatrix(n=n, n_pad=n_chunks * SELL_C, offset=offset, width=width, col=col, values=values,
                      nnz=int(indptr[-1]))


@njit(**_SIMD)
def sell_matvec(offset, width, col, val, x, out):  # pragma: no cover - JIT
    """``out = A x`` (``out`` of length n_pad), chunk by chunk."""
    for c in prange(width.shape[0]):
        o = np.uint64(offset[c])
        base = np.uint64(c) * _C
        for r in range(_C):
            out[base + r] = 0.0
        for j in range(np.uint64(width[c])):
            e = o + np.uint64(j) * _C
            for r in range(_C):
                out[base + r] += np.float64(val[e + r]) * x[col[e + r]]


@njit(**_SIMD)
def extrapolate(v, d1, d2, d3, w1, w2, w3, x, vp):  # pragma: no cover - JIT
    """``x = v + w1 d1 + w2 d2 + w3 d3`` and ``vp = v`` over the ``n`` rows of ``v`` (``x`` and
    ``vp`` have n_pad entries; their padding is left as it is, zero)."""
    for i in prange(v.shape[0]):
        vi = v[i]
        vp[i] = vi
        x[i] = vi + (w1 * d1[i] + w2 * d2[i] + w3 * d3[i])


@njit(**_SIMD)
def theta_residual(offset, width, col, a, d, v, x, r, z, p, diag_inv, partial):  # pragma: no cover - JIT
    """The start of a θ-scheme solve ``A x = B v`` with ``B = A − D``: ``b = A v − D v``,
    ``r = b − A x``, ``z = D⁻¹ r`` (Jacobi); returns (r·r, r·z, b·b).

    ``x`` is the start and ``v`` the state, both of length n_pad.  ``z``, ``r`` and ``p`` first
    collect A v, A x and D v.  ``D = A − B = dt K'`` annihilates constants (zero-flux
    stiffness: its rows sum to zero), so D v is formed as ``Σⱼ Dᵢⱼ (vⱼ − vᵢ)``: a constant V
    gives exactly 0 whatever the rounding of the stored values, and with ``A x = A v`` for
    ``x = v`` a resting tissue stays exactly at rest with float32 values.  Padding rows end
    with r = z = 0 (their D⁻¹ is 0).
    """
    n_chunks = width.shape[0]
    nb = partial.shape[0] // (3 * SELL_C)
    per = (n_chunks + nb - 1) // nb
    for k in prange(nb):
        l1 = np.uint64(k) * _C
        l2 = np.uint64(nb + k) * _C
        l3 = np.uint64(2 * nb + k) * _C
        for m in range(_C):
            partial[l1 + m] = 0.0
            partial[l2 + m] = 0.0
            partial[l3 + m] = 0.0
        for c in range(k * per, min(n_chunks, (k + 1) * per)):
            o = np.uint64(offset[c])
            base = np.uint64(c) * _C
            for m in range(_C):
                z[base + m] = 0.0
                r[base + m] = 0.0
                p[base + m] = 0.0
            for j in range(np.uint64(width[c])):
                e = o + np.uint64(j) * _C
                for m in range(_C):
                    ae = np.float64(a[e + m])
                    vc = v[col[e + m]]
                    z[base + m] += ae * vc
                    r[base + m] += ae * x[col[e + m]]
                    p[base + m] += np.float64(d[e + m]) * (vc - v[base + m])
            for m in range(_C):
                i = base + m
                bv = z[i] - p[i]
                ri = bv - r[i]
                zi = diag_inv[i] * ri
                r[i] = ri
                z[i] = zi
                partial[l1 + m] += ri * ri
                partial[l2 + m] += ri * zi
                partial[l3 + m] += bv * bv
    return _lanes(partial, nb, 0), _lanes(partial, nb, 1), _lanes(partial, nb, 2)


@njit(**_SIMD)
def _direction(offset, width, col, a, z, p, q, beta, first, partial):  # pragma: no cover - JIT
    """``p = z + βp`` and ``q = A z + βq`` (= A p) in one pass, returning ``p·q``; ``first``
    sets ``p = z``, ``q = A z``.

    Recurring ``q`` instead of computing ``A p`` after ``p`` lets the mat-vec read ``z``,
    which is complete before the pass starts: one pass and one barrier fewer per iteration.
    """
    n_chunks = width.shape[0]
    nb = partial.shape[0] // (3 * SELL_C)
    per = (n_chunks + nb - 1) // nb
    for k in prange(nb):
        lane = np.uint64(k) * _C
        for m in range(_C):
            partial[lane + m] = 0.0
        for c in range(k * per, min(n_chunks, (k + 1) * per)):
            o = np.uint64(offset[c])
            base = np.uint64(c) * _C
            for m in range(_C):
                q[base + m] = 0.0 if first else beta * q[base + m]
                p[base + m] = z[base + m] if first else z[base + m] + beta * p[base + m]
            for j in range(np.uint64(width[c])):
                e = o + np.uint64(j) * _C
                for m in range(_C):
                    q[base + m] += np.float64(a[e + m]) * z[col[e + m]]
            for m in range(_C):
                partial[lane + m] += p[base + m] * q[base + m]
    return _lanes(partial, nb, 0)


@njit(**_SIMD)
def _update(x, r, z, p, q, diag_inv, alpha, partial):  # pragma: no cover - JIT
    """``x += αp``, ``r −= αq``, ``z = D⁻¹ r``; returns (r·r, r·z)."""
    n_chunks = x.shape[0] // SELL_C
    nb = partial.shape[0] // (3 * SELL_C)
    per = (n_chunks + nb - 1) // nb
    for k in prange(nb):
        l1 = np.uint64(k) * _C
        l2 = np.uint64(nb + k) * _C
        for m in range(_C):
            partial[l1 + m] = 0.0
            partial[l2 + m] = 0.0
        for c in range(k * per, min(n_chunks, (k + 1) * per)):
            base = np.uint64(c) * _C
            for m in range(_C):
                i = base + m
                x[i] += alpha * p[i]
                ri = r[i] - alpha * q[i]
                zi = diag_inv[i] * ri
                r[i] = ri
                z[i] = zi
                partial[l1 + m] += ri * ri
                partial[l2 + m] += ri * zi
    return _lanes(partial, nb, 0), _lanes(partial, nb, 1)


@njit(**NJIT)
def pcg_from(offset, width, col, a, diag_inv, x, tol, max_iter, r, z, p, q, partial, rr, rz,
             b_norm2):  # pragma: no cover
    """Jacobi-PCG iterations on SELL-16 ``A`` from a residual already computed (``r``,
    ``z = D⁻¹ r``, ``r·r``, ``r·z`` and ``‖b‖²``).  Stops when ``‖r‖ ≤ tol ‖b‖``.

    Returns the iterations used, ``-1`` if ``max_iter`` was reached, ``-2`` when a
    non-finite value appeared.  Vectors have n_pad entries, zero in the padding rows
    (``diag_inv`` too, so they stay zero); ``partial`` comes from :func:`partials`.
    """
    if not np.isfinite(b_norm2) or not np.isfinite(rr):
        return -2
    if b_norm2 == 0.0:
        b_norm2 = 1.0
    stop2 = tol * tol * b_norm2
    if rr <= stop2:
        return 0
    pq = _direction(offset, width, col, a, z, p, q, 0.0, True, partial)
    for it in range(1, max_iter + 1):
        alpha = rz / pq
        rr, rz_new = _update(x, r, z, p, q, diag_inv, alpha, partial)
        if rr <= stop2:
            return it
        if not np.isfinite(rr):
            return -2
        pq = _direction(offset, width, col, a, z, p, q, rz_new / rz, False, partial)
        rz = rz_new
    return -1
