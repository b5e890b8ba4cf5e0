"""Hand-written kernels of two phenomenological models, in mV and ms.

They serve the foundation until models are generated from files in
``models/``.  Both are written in physical units so that activation
thresholds, outputs and stimulus strengths mean the same as for detailed
models: the dimensionless variable is ``u = (Vm - V_rest) / V_amp``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..jit import PARALLEL, njit
from .base import ReactionModel

# --------------------------------------------------------------------------- Mitchell–Schaeffer
MS_PARAMS = ("tau_in", "tau_out", "tau_open", "tau_close", "v_gate", "V_min", "V_max")
MS_UNITS = ("ms", "ms", "ms", "ms", "1", "mV", "mV")
MS_DEFAULTS = np.array([0.3, 6.0, 120.0, 150.0, 0.13, -86.2, 40.0])


@njit(**PARALLEL)
def mitchell_schaeffer_step(states, params, region, i_stim, dt, n_sub):  # pragma: no cover - JIT
    """Advance Mitchell–Schaeffer (2003) by ``dt`` [ms] in ``n_sub`` sub-steps.

    With ``u = (V - V_min)/(V_max - V_min)``::

        du/dt = h u² (1 - u) / tau_in - u / tau_out + i_stim / (V_max - V_min)
        dh/dt = (1 - h)/tau_open  if u < v_gate  else  -h / tau_close

    ``h`` is integrated exactly over the sub-step (Rush–Larsen, exact for this
    linear gate), ``V`` by forward Euler.
    """
    n = states.shape[1]
    h_dt = dt / n_sub
    for i in prange(n):
        p = params[region[i]]
        tau_in = p[0]
        tau_out = p[1]
        tau_open = p[2]
        tau_close = p[3]
        v_gate = p[4]
        v_min = p[5]
        v_amp = p[6] - p[5]
        v = states[0, i]
        h = states[1, i]
        stim = i_stim[i]
        for _ in range(n_sub):
            u = (v - v_min) / v_amp
            dv = v_amp * (h * u * u * (1.0 - u) / tau_in - u / tau_out) + stim
            if u < v_gate:
                h = 1.0 + (h - 1.0) * math.exp(-h_dt / tau_open)
            else:
                h = h * math.exp(-h_dt / tau_close)
            v += h_dt * dv
        states[0, i] = v
        states[1, i] = h


MITCHELL_SCHAEFFER = ReactionModel(
    name="mitchell_schaeffer",
    description="Mitchell–Schaeffer two-current ventricular model, Vm in mV",
    provenance=("C.C. Mitchell, D.G. Schaeffer, Bull. Math. Biol. 65:767-793 (2003), "
                "doi:10.1016/S0092-8240(03)00041-7; time constants from Table 1 of the paper; "
                "mV scaling V = V_min + (V_max - V_min) u as in openCARP's MitchellSchaeffer"),
    state_names=("Vm", "h"),
    state_units=("mV", "1"),
    initial_state=np.array([-86.2, 1.0]),
    param_names=MS_PARAMS,
    param_units=MS_UNITS,
    param_defaults=MS_DEFAULTS,
    vm_index=0,
    activation_threshold=-40.0,
    kernel=mitchell_schaeffer_step,
)

# --------------------------------------------------------------------------- Aliev–Panfilov
AP_PARAMS = ("k", "a", "epsilon", "mu1", "mu2", "t_norm", "V_rest", "V_amp")
AP_UNITS = ("1", "1", "1", "1", "1", "ms", "mV", "mV")
AP_DEFAULTS = np.array([8.0, 0.15, 0.002, 0.2, 0.3, 12.9, -80.0, 100.0])


@njit(**PARALLEL)
def aliev_panfilov_step(states, params, region, i_stim, dt, n_sub):  # pragma: no cover - JIT
    """Advance Aliev–Panfilov (1996) by ``dt`` [ms] in ``n_sub`` forward-Euler sub-steps.

    With ``u = (V - V_rest)/V_amp`` and dimensionless time ``t/t_norm``::

        du/dt = [k u (1 - u)(u - a) - u v] / t_norm + i_stim / V_amp
        dv/dt = (epsilon + mu1 v / (u + mu2)) (-v - k u (u - a - 1)) / t_norm
    """
    n = states.shape[1]
    h_dt = dt / n_sub
    for i in prange(n):
        p = params[region[i]]
        k = p[0]
        a = p[1]
        eps = p[2]
        mu1 = p[3]
        mu2 = p[4]
        t_norm = p[5]
        v_rest = p[6]
        v_amp = p[7]
        vm = states[0, i]
        w = states[1, i]
        stim = i_stim[i]
        for _ in range(n_sub):
            u = (vm - v_rest) / v_amp
            du = (k * u * (1.0 - u) * (u - a) - u * w) / t_norm
            dw = (eps + mu1 * w / (u + mu2)) * (-w - k * u * (u - a - 1.0)) / t_norm
            vm += h_dt * (v_amp * du + stim)
            w += h_dt * dw
        states[0, i] = vm
        states[1, i] = w


ALIEV_PANFILOV = ReactionModel(
    name="aliev_panfilov",
    description="Aliev–Panfilov two-variable model, Vm in mV, time in ms",
    provenance=("R.R. Aliev, A.V. Panfilov, Chaos Solitons Fractals 7:293-301 (1996), "
                "doi:10.1016/0960-0779(95)00089-5; k, a, epsilon, mu1, mu2 from the paper; "
                "scaling t_norm = 12.9 ms, V = -80 + 100 u as in openCARP's AlievPanfilov"),
    state_names=("Vm", "v"),
    state_units=("mV", "1"),
    initial_state=np.array([-80.0, 0.0]),
    param_names=AP_PARAMS,
    param_units=AP_UNITS,
    param_defaults=AP_DEFAULTS,
    vm_index=0,
    activation_threshold=-40.0,
    kernel=aliev_panfilov_step,
)
