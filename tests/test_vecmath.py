"""The vectorisable log/exp of the SIMD reaction kernels: accuracy, special values, SIMD."""

import math
import re

import numpy as np
import pytest
from numba import njit

from twin.models.vecmath import vexp, vlog


@njit(error_model="numpy")   # as in a prange body: no ZeroDivisionError branch
def _apply_log(x, out):  # pragma: no cover - compiled
    for i in range(np.uint64(x.shape[0])):   # unsigned: no negative-index wrap-around
        out[i] = vlog(x[i])


@njit(error_model="numpy")   # as in a prange body: no ZeroDivisionError branch
def _apply_exp(x, out):  # pragma: no cover - compiled
    for i in range(np.uint64(x.shape[0])):
        out[i] = vexp(x[i])


def _ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    finite = np.isfinite(ref)
    return np.abs(got[finite] - ref[finite]) / np.spacing(np.abs(ref[finite]))


def test_vlog_within_one_ulp_over_the_double_range():
    rng = np.random.default_rng(7)
    x = np.concatenate([np.exp(rng.uniform(-744, 709, 400_000)),          # whole range incl. subnormals
                        rng.uniform(0.5, 2.0, 200_000),                    # around 1 (cancellation)
                        1.0 + rng.normal(0, 1e-9, 50_000),
                        [1.0, 2.0, 0.5, 5e-324, 1e-310, 2.2250738585072014e-308, 1.7976931348623157e308]])
    out = np.empty_like(x)
    _apply_log(x, out)
    assert _ulps(out, np.log(x)).max() <= 1.0
    assert out[x == 1.0].max() == 0.0


def test_vexp_within_one_ulp_over_the_double_range():
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.uniform(-745, 709.7, 400_000), rng.uniform(-1, 1, 200_000),
                        rng.normal(0, 1e-8, 10_000), [0.0, -0.0, 1.0, -1.0, 709.78, -708.5, -744.0, -745.1]])
    out = np.empty_like(x)
    _apply_exp(x, out)
    assert _ulps(out, np.exp(x)).max() <= 1.0


@pytest.mark.parametrize("fn,ref", [(_apply_log, math.log), (_apply_exp, math.exp)])
def test_special_values_as_libm(fn, ref):
    x = np.array([0.0, -0.0, -1.0, math.inf, -math.inf, math.nan, 800.0, -800.0, 710.0, -746.0])
    out = np.empty_like(x)
    fn(x, out)
    for xi, got in zip(x, out):
        try:
            want = ref(xi)
        except (ValueError, OverflowError):
            want = {0.0: -math.inf}.get(xi, math.inf if (fn is _apply_exp and xi > 0) else math.nan)
        if xi == math.inf and fn is _apply_exp:
            want = math.inf
        if xi == -math.inf and fn is _apply_exp:
            want = 0.0
        assert (math.isnan(got) and math.isnan(want)) or got == want, (fn, xi, got, want)


@pytest.mark.parametrize("fn", [_apply_log, _apply_exp])
def test_a_loop_calling_them_is_vectorised(fn):
    """The point of the module: no call left in the loop, so LLVM emits vector code."""
    x = np.linspace(0.5, 2.0, 64)
    fn(x, np.empty_like(x))
    ir = "\n".join(fn.inspect_llvm().values())
    assert re.search(r"<(2|4|8) x double>", ir), "the loop was not vectorised"
    assert not re.search(r"call [^\n]*@(log|exp)\b", ir)
