"""``log`` and ``exp`` that LLVM can vectorise, for the generated SIMD reaction kernels, and the
readers of their packed lookup tables (:func:`pair_lo`, :func:`pair_hi`).

A call to libm's ``log``/``exp`` stops LLVM's loop vectoriser (Numba's PyPI build has no
vector math library), so a loop over nodes that takes a logarithm runs one node at a time.
These versions are written with arithmetic, comparisons and bit casts only, so a loop over
nodes that calls them becomes AVX2/AVX-512 code.

Accuracy (``tests/test_vecmath.py``): at most 1 ulp from glibc over the whole double range,
same special values (``log(0) = -inf``, ``log(x < 0) = nan``, ``exp(710) = inf``,
``exp(-746) = 0``, nan in → nan out), subnormal arguments and results included.

The algorithms are the classic ones of Cody & Waite / fdlibm: reduce to ``[√2/2, √2)`` (log)
or ``|r| ≤ ln2/2`` (exp) and evaluate the published minimax polynomials of the reduced
argument.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
_TWO54 = 18014398509481984.0
_MIN_NORMAL = 2.2250738585072014e-308


@intrinsic
def _as_int(typingctx, x):  # pragma: no cover - compiled
    """The bits of a float64 as an int64 (a register move, not a conversion)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _as_float(typingctx, x):  # pragma: no cover - compiled
    """The float64 with the bits of an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def vlog(x: float) -> float:  # pragma: no cover - compiled
    """Natural logarithm, ≤ 1 ulp, libm's special values; branch-free."""
    sub = x < _MIN_NORMAL
    xs = x * _TWO54 if sub else x               # subnormals scaled into the normal range
    ix = _as_int(xs) + (0x3ff0000000000000 - 0x3fe6a09e667f3bcd)
    k = (ix >> 52) - 0x3ff - (54 if sub else 0)
    m = _as_float((ix & 0x000fffffffffffff) + 0x3fe6a09e667f3bcd)   # m in [sqrt(2)/2, sqrt(2))
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01))
    t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01
                                              + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)))
    hfsq = 0.5 * f * f
    dk = float(k)
    r = s * (hfsq + t1 + t2) + dk * _LN2_LO - hfsq + f + dk * _LN2_HI
    # special values as libm: log(0) = -inf, log(<0) = nan, log(inf) = inf, nan -> nan
    r = -math.inf if x == 0.0 else r
    r = math.nan if x < 0.0 else r
    r = x if (x == math.inf or x != x) else r
    return r


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def vexp(x: float) -> float:  # pragma: no cover - compiled
    """Exponential, ≤ 1 ulp, libm's special values; branch-free."""
    xc = min(max(x, -746.0), 710.0)              # beyond these the result is 0 or inf anyway
    kf = np.floor(xc * _INV_LN2 + 0.5)
    hi = xc - kf * _LN2_HI
    lo = kf * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (1.66666666666666019037e-01 + t * (-2.77777777770155933842e-03 + t * (
        6.61375632143793436117e-05 + t * (-1.65339022054652515390e-06 + t * 4.13813679705723846039e-08))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)     # exp(r), r in [-ln2/2, ln2/2]
    k = int(kf)
    # 2^k in two factors so that k down to -1075 (subnormal results) and up to 1024 stay exact
    k1 = k >> 1
    k2 = k - k1
    s1 = _as_float((k1 + 0x3ff) << 52)
    s2 = _as_float((k2 + 0x3ff) << 52)
    out = y * s1 * s2
    out = math.inf if x > 709.782712893384 else out
    out = 0.0 if x < -745.1332191019412 else out
    out = x if x != x else out
    return out


@intrinsic
def _lo_f32(typingctx, x):  # pragma: no cover - compiled
    """The float32 in the low 32 bits of a uint64, widened to float64."""
    def codegen(context, builder, signature, args):
        f = builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())
        return builder.fpext(f, ir.DoubleType())
    return types.float64(types.uint64), codegen


@intrinsic
def _hi_f32(typingctx, x):  # pragma: no cover - compiled
    """The float32 in the high 32 bits of a uint64, widened to float64."""
    def codegen(context, builder, signature, args):
        h = builder.trunc(builder.lshr(args[0], ir.Constant(ir.IntType(64), 32)), ir.IntType(32))
        return builder.fpext(builder.bitcast(h, ir.FloatType()), ir.DoubleType())
    return types.float64(types.uint64), codegen


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def pair_lo(packed: int) -> float:  # pragma: no cover - compiled
    """First float32 of a pair packed by :func:`pack_pairs` (as float64)."""
    return _lo_f32(packed)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def pair_hi(packed: int) -> float:  # pragma: no cover - compiled
    """Second float32 of a pair packed by :func:`pack_pairs` (as float64)."""
    return _hi_f32(packed)


def pack_pairs(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Two arrays rounded to float32 and packed into one uint64 per element (``first`` in the low
    half): one 8-byte load (one gather in a SIMD loop) reads both."""
    lo = np.ascontiguousarray(first, dtype=np.float32).view(np.uint32).astype(np.uint64)
    hi = np.ascontiguousarray(second, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return lo | (hi << np.uint64(32))


def unpack_pairs(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two arrays :func:`pack_pairs` packed, as float64 (what the kernels read)."""
    first = (packed & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32).astype(np.float64)
    second = (packed >> np.uint64(32)).astype(np.uint32).view(np.float32).astype(np.float64)
    return first, second
