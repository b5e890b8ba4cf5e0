"""Sparse linear algebra shared by the solver: deterministic reductions and the CSR mat-vec.

The diffusion solve itself runs on the SELL-16 kernels of :mod:`twin.solver.sell`; the
CSR mat-vec here is the reference the benchmarks and tests compare them with.

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
