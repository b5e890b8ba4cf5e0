"""``twin verify waves``: exact Nagumo and Fisher–KPP front speeds, and their helpers."""

from __future__ import annotations

import json
import math

import numba
import numpy as np
import pytest

from twin.cli import main
from twin.errors import TwinError
from twin.models import get_model
from twin.verify.waves import (FISHER, NAGUMO, Crossing, bramson_mean_speed, fisher_min_speed, front_speed,
                               initial_u, nagumo_front, nagumo_speed)


@pytest.fixture
def keep_threads():
    """The CLI's --threads sets Numba's thread count for the process: put it back afterwards."""
    n = numba.get_num_threads()
    yield
    numba.set_num_threads(n)


def _rate(model: str, u: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """du/dt of the compiled model at u (one forward-Euler step of the real kernel)."""
    m = get_model(model)
    states = np.ascontiguousarray(np.tile(m.initial_state[:, None], (1, len(u))))
    states[m.vm_index] = u
    before = states.copy()
    dt = 1e-7
    m.kernel(states, m.parameter_row(params)[None, :], np.zeros(len(u), np.int32), np.zeros(len(u)), dt, 1)
    return (states[m.vm_index] - before[m.vm_index]) / dt


def test_models_are_the_stated_reactions():
    u = np.linspace(-0.2, 1.2, 15)
    k, a, r = 1.3, 0.2, 0.7
    assert np.allclose(_rate("nagumo", u, {"k": k, "a": a}), k * u * (1 - u) * (u - a), atol=1e-6)
    assert np.allclose(_rate("fisher_kpp", u, {"r": r}), r * u * (1 - u), atol=1e-6)
    assert get_model("nagumo").activation_threshold == 0.5


def test_nagumo_front_is_an_exact_travelling_wave():
    D, k, a = 0.7, 1.3, 0.15
    x = np.linspace(-5, 5, 41)
    t, ex, et = 0.8, 1e-4, 1e-5
    u = nagumo_front(x, t, D, k, a, 0.3)
    u_t = (nagumo_front(x, t + et, D, k, a, 0.3) - nagumo_front(x, t - et, D, k, a, 0.3)) / (2 * et)
    u_xx = (nagumo_front(x + ex, t, D, k, a, 0.3) - 2 * u + nagumo_front(x - ex, t, D, k, a, 0.3)) / ex ** 2
    assert np.abs(u_t - (D * u_xx + k * u * (1 - u) * (u - a))).max() < 1e-5
    assert nagumo_speed(D, k, a) == pytest.approx(math.sqrt(2 * D * k) * (0.5 - a))
    assert nagumo_front(np.array([0.3]), 0.0, D, k, a, 0.3)[0] == pytest.approx(0.5)


def test_fisher_speeds():
    assert fisher_min_speed(1.0, 1.0) == 2.0
    assert fisher_min_speed(0.25, 4.0) == pytest.approx(2.0)
    # the Bramson-corrected mean speed is the slope of X(t) = c* t − 3/(2λ) ln t between t1 and t2
    D, r, t1, t2 = 2.0, 0.5, 12.0, 30.0
    lam = math.sqrt(r / D)
    X = lambda t: fisher_min_speed(D, r) * t - 1.5 / lam * math.log(t)  # noqa: E731
    assert bramson_mean_speed(D, r, t1, t2) == pytest.approx((X(t2) - X(t1)) / (t2 - t1))
    assert bramson_mean_speed(D, r, 1e6, 2e6) == pytest.approx(fisher_min_speed(D, r), rel=1e-5)
    with pytest.raises(TwinError):
        bramson_mean_speed(D, r, 5.0, 5.0)


def test_front_speed_of_a_synthetic_front():
    x = np.repeat(np.linspace(0, 20, 101), 4)          # node planes 0.2 mm apart, 4 nodes each
    times = 3.0 + x / 0.75
    c = front_speed(x, times, 5.0, 15.13)                # 15.13 -> nearest plane 15.2
    assert isinstance(c, Crossing)
    assert c.x1 == pytest.approx(5.0) and c.x2 == pytest.approx(15.2)
    assert c.speed == pytest.approx(0.75)
    late = times.copy()
    late[x > 14] = np.nan                                 # the front never reached the second station
    with pytest.raises(TwinError, match="did not reach"):
        front_speed(x, late, 5.0, 15.0)


def test_initial_conditions():
    x = np.linspace(0, 10, 11)
    u = initial_u("fisher", x)
    assert u[x < FISHER.x0].min() == 1 and u[x > FISHER.x0].max() == 0 and u[x == FISHER.x0][0] == 0.5
    assert initial_u("nagumo", np.array([NAGUMO.x0]))[0] == pytest.approx(0.5)


def test_verify_waves_nagumo_within_one_percent_and_fisher(tmp_path, keep_threads):
    out = tmp_path / "waves"
    code = main(["verify", "waves", "--h", "0.4", "0.2", "--dt", "0.01", "--threads", "1", "-o", str(out), "-q"])
    report = json.loads((out / "report.json").read_text())
    assert code == 0, [c for c in report["checks"] if not c["passed"]]
    checks = {c["name"]: c for c in report["checks"]}
    nagumo = checks["Nagumo: size of the speed error at h = 0.2 mm"]
    assert nagumo["passed"] and nagumo["value"] < 1.0 and nagumo["tolerance"] == 1.0
    assert checks["Nagumo: largest ratio of successive speed error sizes (finer/coarser)"]["value"] < 1.0
    assert checks["Nagumo: observed order of the speed error"]["value"] > 1.5
    assert any(n.startswith("Fisher–KPP") for n in checks)
    for f in ("waves_speed_error.png", "waves_profiles.png", "nagumo_h0.2.vtu", "report.md"):
        assert (out / f).exists()


def test_verify_waves_missed_tolerance_exits_3_and_bad_h_exits_2(tmp_path, keep_threads):
    common = ["verify", "waves", "--which", "nagumo", "--dt", "0.02", "--threads", "1", "-q"]
    assert main(common + ["--h", "0.4", "--tolerance", "1e-4", "-o", str(tmp_path / "a")]) == 3
    assert main(common + ["--h", "0.7", "-o", str(tmp_path / "b")]) == 2
