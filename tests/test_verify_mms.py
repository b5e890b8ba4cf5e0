"""``twin verify mms``: the Pathmanathan & Gray 2014 manufactured solution and its helpers."""

from __future__ import annotations

import json
import math

import numba
import numpy as np
import pytest

from twin.cli import main
from twin.errors import TwinError
from twin.models import get_model
from twin.verify.mms import (CHI, CM, END_TIME, MODEL, SIGMA, ExactSolution, beta, error_norms, mesh_for,
                             observed_order, steps_for, tet_quadrature)


@pytest.fixture
def keep_threads():
    """The CLI's --threads sets Numba's thread count for the process: put it back afterwards."""
    n = numba.get_num_threads()
    yield
    numba.set_num_threads(n)


def _reaction_rates(states: np.ndarray, dim: int) -> np.ndarray:
    """d(states)/dt of the compiled cell model (one forward-Euler step of the real kernel)."""
    model = get_model(MODEL)
    params = model.parameter_row({"beta": beta(dim), "chi": CHI, "Cm": CM})[None, :]
    n = states.shape[1]
    work = np.ascontiguousarray(states.copy())
    dt = 1e-7
    model.kernel(work, params, np.zeros(n, np.int32), np.zeros(n), dt, 1)
    return (work - states) / dt


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_exact_solution_solves_the_model_problem(dim):
    """Finite-difference residuals of the PDE and of the cell model (as compiled from the .mmt) vanish."""
    rng = np.random.default_rng(dim)
    x = rng.uniform(0.05, 0.95, size=(40, 3))
    t = 0.37
    ex = ExactSolution(dim)
    eps_t, eps_x = 1e-5, 1e-4
    dstates_dt = (ex.states(x, t + eps_t) - ex.states(x, t - eps_t)) / (2 * eps_t)
    div = np.zeros(len(x))
    for i in range(3):
        e = np.zeros(3)
        e[i] = eps_x
        div += SIGMA[i] * (ex.V(x + e, t) - 2 * ex.V(x, t) + ex.V(x - e, t)) / eps_x ** 2
    rates = _reaction_rates(ex.states(x, t), dim)
    # monodomain: dV/dt = div(σ∇V)/(χ Cm) − I_ion/Cm; the kernel's V rate is −I_ion/Cm
    residual_v = dstates_dt[0] - (div / (CHI * CM) + rates[0])
    scale = np.abs(dstates_dt[0]).max() + np.abs(div).max()
    assert np.abs(residual_v).max() < 1e-5 * scale
    # the cell model's own equations
    assert np.allclose(dstates_dt[1:], rates[1:], rtol=1e-6, atol=1e-6)


def test_exact_gradient_matches_finite_differences():
    ex = ExactSolution(3)
    x = np.random.default_rng(0).uniform(0, 1, size=(20, 3))
    v, g = ex.V_and_grad(x, 0.5)
    assert np.allclose(v, ex.V(x, 0.5))
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1e-6
        assert np.allclose(g[:, i], (ex.V(x + e, 0.5) - ex.V(x - e, 0.5)) / 2e-6, atol=1e-6)


def test_beta_and_initial_values():
    assert beta(1) == pytest.approx(-1.1)
    assert beta(2) == pytest.approx(-5.9)
    assert beta(3) == pytest.approx(-8.6)
    s = ExactSolution(3).states(np.zeros((1, 3)), 0.0)[:, 0]
    # the model file's own defaults are the exact values at x = 0 (3D)
    assert np.allclose(s, get_model(MODEL).initial_state)
    with pytest.raises(TwinError):
        ExactSolution(4)


def test_quadrature_integrates_degree_5_exactly():
    bary, w = tet_quadrature(3)
    assert w.sum() == pytest.approx(1.0)
    x, y, z = bary[:, 1], bary[:, 2], bary[:, 3]
    for a, b, c in [(0, 0, 0), (1, 2, 0), (2, 1, 2), (5, 0, 0), (1, 1, 3), (0, 4, 1)]:
        exact = math.factorial(a) * math.factorial(b) * math.factorial(c) / math.factorial(a + b + c + 3)
        # weights are fractions of the reference volume 1/6
        assert (w * x ** a * y ** b * z ** c).sum() / 6 == pytest.approx(exact, rel=1e-12)


def test_error_norms_of_known_fields():
    mesh = mesh_for(3, 4)
    const = np.ones(mesh.n_points)
    l2, h1 = error_norms(mesh.points, mesh.tets, const, None)
    assert l2 == pytest.approx(1.0) and h1 == pytest.approx(0.0, abs=1e-12)
    lin = mesh.points @ np.array([1.0, 2.0, 3.0])
    l2, h1 = error_norms(mesh.points, mesh.tets, lin,
                         lambda x: (x @ np.array([1.0, 2.0, 3.0]), np.broadcast_to([1.0, 2.0, 3.0], x.shape)))
    assert l2 < 1e-12 and h1 < 1e-12  # P1 reproduces linear fields exactly
    # interpolation error of cos: second order in L2, first in the H1 seminorm
    ex = ExactSolution(1)
    hs, l2s, h1s = [], [], []
    for n in (8, 16, 32):
        m = mesh_for(1, n)
        l2, h1 = error_norms(m.points, m.tets, ex.V(m.points, 0.0), lambda x: ex.V_and_grad(x, 0.0))
        hs.append(1 / n)
        l2s.append(l2 * n)  # divide the 1/n × 1/n cross-section out
        h1s.append(h1 * n)
    assert observed_order(hs, l2s) == pytest.approx(2.0, abs=0.05)
    assert observed_order(hs, h1s) == pytest.approx(1.0, abs=0.05)


def test_observed_order_and_steps():
    assert observed_order([1, 0.5, 0.25], [4, 1, 0.25]) == pytest.approx(2.0)
    assert math.isnan(observed_order([1], [1]))
    assert steps_for(16, 8.0) == 32 and END_TIME / steps_for(16, 8.0) <= 8.0 / 16 ** 2


def test_verify_mms_passes_in_1d_2d_3d(tmp_path, keep_threads):
    out = tmp_path / "mms"
    code = main(["verify", "mms", "--n", "8", "16", "32", "--n3d", "16", "32", "--time-n", "8",
                 "--time-steps", "8", "16", "32", "--time-reference", "512", "--threads", "1",
                 "-o", str(out), "-q"])
    report = json.loads((out / "report.json").read_text())
    failed = [c for c in report["checks"] if not c["passed"]]
    assert code == 0, failed
    names = [c["name"] for c in report["checks"]]
    assert sum("order in space" in n for n in names) == 6
    assert sum("order in time" in n for n in names) == 3
    for f in ("mms_space.png", "mms_time.png", "mms_3d_n32.vtu", "report.md"):
        assert (out / f).exists()
    rows = report["tables"]["Spatial convergence (errors at t = T)"]
    assert rows[-1]["dim"] == 3 and rows[-1]["L2 error"] < 0.03


def test_verify_mms_missed_tolerance_exits_3_and_bad_options_exit_2(tmp_path, keep_threads):
    common = ["verify", "mms", "--dims", "1", "--n", "8", "16", "--no-time", "--threads", "1", "-q"]
    assert main(common + ["--order-tolerance", "1e-6", "-o", str(tmp_path / "a")]) == 3
    assert main(common + ["--n", "0", "-o", str(tmp_path / "b")]) == 2
