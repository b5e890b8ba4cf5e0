"""Generated kernels against independent references: equations re-typed here from the papers and
integrated with SciPy's Radau, and the same model file in Myokit's CVODE."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from twin.errors import ModelError
from twin.models import available_models, get_model


def ms_rhs(t, y, p, stim):
    tau_in, tau_out, tau_open, tau_close, v_gate, v_min, v_max = (
        p[k] for k in ("tau_in", "tau_out", "tau_open", "tau_close", "v_gate", "V_min", "V_max"))
    v, h = y
    amp = v_max - v_min
    u = (v - v_min) / amp
    dv = amp * (h * u * u * (1 - u) / tau_in - u / tau_out) + stim(t)
    dh = (1 - h) / tau_open if u < v_gate else -h / tau_close
    return [dv, dh]


def ap_rhs(t, y, p, stim):
    k, a, eps, mu1, mu2, t_norm, v_rest, v_amp = (
        p[k] for k in ("k", "a", "epsilon", "mu1", "mu2", "t_norm", "V_rest", "V_amp"))
    v, w = y
    u = (v - v_rest) / v_amp
    du = (k * u * (1 - u) * (u - a) - u * w) / t_norm
    dw = (eps + mu1 * w / (u + mu2)) * (-w - k * u * (u - a - 1)) / t_norm
    return [v_amp * du + stim(t), dw]


def run_kernel(model, dt, t_end, stim_amp, stim_dur, bcl):
    n_steps = int(round(t_end / dt))
    states = model.initial_states(1)
    params = model.param_defaults[None, :].copy()
    region = np.zeros(1, np.int32)
    i_stim = np.zeros(1)
    trace = np.empty(n_steps + 1)
    trace[0] = states[0, 0]
    for k in range(n_steps):
        t_mid = (k + 0.5) * dt
        i_stim[0] = stim_amp if (t_mid % bcl) < stim_dur else 0.0
        model.kernel(states, params, region, i_stim, dt, 1)
        trace[k + 1] = states[0, 0]
    return np.arange(n_steps + 1) * dt, trace


def reference(rhs, model, t_grid, stim_amp, stim_dur, bcl):
    """Radau, integrated pulse by pulse so the discontinuous stimulus is resolved exactly."""
    p = dict(zip(model.param_names, model.param_defaults))
    y = model.initial_state.astype(float)
    out = np.empty_like(t_grid)
    edges = sorted({0.0, t_grid[-1]} | {b + s for b in np.arange(0, t_grid[-1], bcl)
                                        for s in (0.0, stim_dur) if b + s < t_grid[-1]})
    for a, b in zip(edges[:-1], edges[1:]):
        on = ((a + 1e-9) % bcl) < stim_dur
        mask = (t_grid >= a) & (t_grid <= b)
        sol = solve_ivp(rhs, (a, b), y, method="Radau", t_eval=t_grid[mask], rtol=1e-8, atol=1e-8,
                        args=(p, lambda t: stim_amp if on else 0.0), max_step=0.5)
        out[mask] = sol.y[0]
        y = sol.y[:, -1] if sol.t[-1] == b else solve_ivp(
            rhs, (a, b), y, method="Radau", rtol=1e-8, atol=1e-8,
            args=(p, lambda t: stim_amp if on else 0.0)).y[:, -1]
    return out


def mrms(test, ref):
    """Marsh et al. (2012) mean root-mean-square error, normalised by the reference range."""
    return float(np.sqrt(np.mean(((test - ref) / (ref.max() - ref.min())) ** 2)))


def apd90(t, v, start):
    sel = t >= start
    t, v = t[sel], v[sel]
    rest, peak = v[0], v.max()
    level = peak - 0.9 * (peak - rest)
    up = np.flatnonzero(v >= level)[0]
    down = up + np.flatnonzero(v[up:] < level)[0]
    frac = (v[down - 1] - level) / (v[down - 1] - v[down])
    return (t[down - 1] + frac * (t[down] - t[down - 1])) - t[up]


@pytest.mark.parametrize("name,rhs,bcl", [("mitchell_schaeffer", ms_rhs, 500.0),
                                          ("aliev_panfilov", ap_rhs, 500.0)])
def test_kernel_matches_radau(name, rhs, bcl):
    model = get_model(name)
    t, v = run_kernel(model, 0.01, 2 * bcl, 40.0, 1.0, bcl)
    ref = reference(rhs, model, t, 40.0, 1.0, bcl)
    assert v.max() > model.initial_state[0] + 80.0  # it fired
    assert mrms(v, ref) < 0.02
    assert abs(apd90(t, v, bcl) - apd90(t, ref, bcl)) < 1.0


def test_registry_and_parameters():
    assert {"mitchell_schaeffer", "aliev_panfilov"} <= set(available_models())
    with pytest.raises(ModelError, match="did you mean 'aliev_panfilov'"):
        get_model("aliev_panfilof")
    ms = get_model("mitchell_schaeffer")
    row = ms.parameter_row({"tau_close": "x0.5", "tau_in": 0.2})
    assert row[ms.param_names.index("tau_close")] == 75.0
    assert row[ms.param_names.index("tau_in")] == 0.2
    table = ms.parameter_table({"tau_close": 100}, {2: {"tau_close": "x2"}}, np.array([0, 2]))
    assert table[:, ms.param_names.index("tau_close")].tolist() == [100.0, 200.0]
    with pytest.raises(ModelError, match="no parameter"):
        ms.parameter_row({"g_Kr": 1})


def test_kernels_compile_to_one_signature():
    for name in available_models():
        model = get_model(name)
        states = model.initial_states(3)
        model.kernel(states, model.param_defaults[None, :].copy(), np.zeros(3, np.int32), np.zeros(3), 0.01, 1)
        model.kernel(states, model.param_defaults[None, :].copy(), np.zeros(3, np.int32), np.ones(3), 0.02, 2)
        assert len(model.kernel.signatures) == 1, model.kernel.signatures
