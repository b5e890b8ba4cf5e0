"""Numba compilation flags, chosen in one place.

``cache=True`` so a kernel compiles once per machine; ``parallel=True`` only for
kernels whose ``prange`` loops partition the writes (no races, no atomics);
``fastmath`` stays off because it lets LLVM delete the NaN checks that catch
divergence.  Thread counts are set by the caller (the CLI), never here.
"""

from __future__ import annotations

import numba

#: serial kernels
NJIT = dict(cache=True, nogil=True, fastmath=False, boundscheck=False)
#: kernels with ``prange`` loops over nodes or rows
PARALLEL = dict(cache=True, nogil=True, fastmath=False, boundscheck=False, parallel=True)

njit = numba.njit


def threading_layer() -> str:
    """Name of Numba's threading layer (``'omp'``, ``'tbb'``, ``'workqueue'``), after first use."""
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return "not initialised"
