"""SELL-16 sparse kernels of the diffusion solve: against scipy, padding, NaN containment, threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from twin.solver.sell import SELL_C, extrapolate, partials, pcg_from, sell_from_csr, sell_matvec, theta_residual


def _spd(n: int, seed: int) -> sp.csr_matrix:
    """A symmetric positive definite matrix with rows of very different lengths (and n % 8 != 0)."""
    a = sp.random(n, n, density=0.04, random_state=seed)
    a = (a @ a.T + n * sp.identity(n)).tocsr()
    a.sort_indices()
    return a


def test_matvec_matches_scipy_with_padding_rows_zero():
    a = _spd(203, 1)
    sm = sell_from_csr(a.indptr, a.indices, a.data)
    assert sm.n == 203 and sm.n_pad == 208 and sm.nnz == a.nnz
    assert sm.col.shape[0] >= a.nnz and sm.col.max() < 203
    x = np.random.default_rng(2).normal(size=203)
    y = np.full(sm.n_pad, 7.0)
    sell_matvec(sm.offset, sm.width, sm.col, sm.values[0], x, y)
    np.testing.assert_allclose(y[:203], a @ x, rtol=1e-13, atol=1e-13)
    assert (y[203:] == 0.0).all()


def test_two_matrices_share_the_pattern():
    a = _spd(50, 3)
    b = a.copy()
    b.data = -0.5 * b.data
    sm = sell_from_csr(a.indptr, a.indices, a.data, b.data)
    x = np.arange(50.0)
    ya, yb = np.zeros(sm.n_pad), np.zeros(sm.n_pad)
    sell_matvec(sm.offset, sm.width, sm.col, sm.values[0], x, ya)
    sell_matvec(sm.offset, sm.width, sm.col, sm.values[1], x, yb)
    np.testing.assert_allclose(yb[:50], -0.5 * ya[:50], rtol=1e-15)


def _solve(sm, diag_inv, v, start, tol=1e-12):
    """x with A x = (A − D) v, by PCG from ``start`` (``sm`` holds A and D)."""
    n_pad = sm.n_pad
    x = np.zeros(n_pad)
    zero = np.zeros_like(v)
    vp = np.zeros(n_pad)
    extrapolate(v, start - v, zero, zero, 1.0, 0.0, 0.0, x, vp)
    r, z, p, q = (np.zeros(n_pad) for _ in range(4))
    partial = partials()
    rr, rz, bb = theta_residual(sm.offset, sm.width, sm.col, sm.values[0], sm.values[1], vp, x, r, z, p, diag_inv,
                                partial)
    its = pcg_from(sm.offset, sm.width, sm.col, sm.values[0], diag_inv, x, tol, 500, r, z, p, q, partial, rr, rz,
                   bb)
    return x, its


def _system(n: int, seed: int, dtype: type = np.float64):
    """A θ-scheme system as the diffusion stepper builds it: D = a graph Laplacian (rows sum to
    zero, like dt K'), A = a mass-like diagonal + D/2, B = A − D, stored as A and D."""
    lap = _spd(n, seed)
    lap = (lap - sp.diags(np.asarray(lap.sum(axis=1)).ravel())).tocsr()
    a = (sp.diags(np.full(n, 50.0)) + 0.1 * abs(lap) + 0.5 * lap).tocsr()
    pattern = (a.astype(complex) + 1j * lap).tocsr()
    pattern.sort_indices()
    sm = sell_from_csr(pattern.indptr, pattern.indices, pattern.data.real, pattern.data.imag, dtype=dtype)
    diag_inv = np.zeros(sm.n_pad)
    diag_inv[:n] = 1.0 / a.diagonal()
    return a, (a - lap).tocsr(), sm, diag_inv


def test_theta_residual_and_pcg_solve_a_x_equals_b_v():
    a, b, sm, diag_inv = _system(203, 4)
    v = np.random.default_rng(5).normal(size=203)
    x, its = _solve(sm, diag_inv, v, v + 0.1)
    assert its > 0
    np.testing.assert_allclose(x[:203], spla.spsolve(a.tocsc(), b @ v), rtol=1e-9, atol=1e-10)
    assert (x[203:] == 0.0).all()


def test_float32_values_solve_the_rounded_system_and_keep_a_constant_state():
    """The diffusion stepper stores A and D = A − B in float32: the solution moves by the
    rounding of the entries (~1e-7 relative) and a resting state (D v = 0) stays exactly put."""
    n = 203
    out = {}
    v = np.random.default_rng(10).normal(size=n)
    rest = np.full(n, -85.0)
    for dtype in (np.float64, np.float32):
        _, _, sm, diag_inv = _system(n, 9, dtype)
        assert sm.values.dtype == dtype
        out[dtype] = _solve(sm, diag_inv, v, v)[0][:n]
        x, its = _solve(sm, diag_inv, rest, rest)
        assert its == 0 and (x[:n] == -85.0).all()
    assert np.abs(out[np.float32] - out[np.float64]).max() < 1e-5 * np.abs(out[np.float64]).max()


def test_a_nan_only_reaches_the_rows_that_couple_to_it():
    a = _spd(100, 6)
    sm = sell_from_csr(a.indptr, a.indices, a.data)
    x = np.ones(100)
    x[37] = np.nan
    y = np.zeros(sm.n_pad)
    sell_matvec(sm.offset, sm.width, sm.col, sm.values[0], x, y)
    coupled = np.zeros(100, bool)
    coupled[a[:, 37].nonzero()[0]] = True
    assert np.isnan(y[:100][coupled]).all()
    assert np.isfinite(y[:100][~coupled]).all()


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
def test_same_solution_bits_on_one_and_two_threads():
    _, _, sm, diag_inv = _system(4001, 7)
    v = np.random.default_rng(8).normal(size=4001)
    out = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            out.append(_solve(sm, diag_inv, v, v, tol=1e-10))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert out[0][1] == out[1][1]
    assert np.array_equal(out[0][0], out[1][0])
    assert SELL_C == 16
