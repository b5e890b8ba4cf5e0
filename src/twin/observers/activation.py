"""Activation times: first upward crossing of a threshold, linearly interpolated in time."""

from __future__ import annotations

import numpy as np
from numba import prange

from ..jit import PARALLEL, njit


@njit(**PARALLEL)
def update_activation(v_old, v_new, t_old, dt, threshold, act):  # pragma: no cover - JIT
    """Record, for nodes not yet activated (``act`` NaN), the crossing time [ms].

    A node activates in the step from ``t_old`` to ``t_old + dt`` when
    ``v_old < threshold <= v_new``; the time is interpolated linearly::

        t* = t_old + dt (threshold - v_old) / (v_new - v_old)
    """
    for i in prange(v_new.shape[0]):
        if np.isnan(act[i]):
            a = v_old[i]
            b = v_new[i]
            if a < threshold and b >= threshold:
                act[i] = t_old + dt * (threshold - a) / (b - a)


class ActivationMap:
    """Running first-activation-time map over all nodes.

    Parameters
    ----------
    n_nodes
        Number of nodes.
    threshold
        Crossing threshold [mV].
    """

    def __init__(self, n_nodes: int, threshold: float) -> None:
        self.threshold = float(threshold)
        self.times = np.full(n_nodes, np.nan)

    def update(self, v_old: np.ndarray, v_new: np.ndarray, t_old: float, dt: float) -> None:
        update_activation(v_old, v_new, t_old, dt, self.threshold, self.times)

    def stats(self) -> dict[str, float | int]:
        """Count of activated nodes, first and last activation time [ms]."""
        done = np.isfinite(self.times)
        if not done.any():
            return {"activated_nodes": 0, "first_ms": None, "last_ms": None}
        return {"activated_nodes": int(done.sum()), "first_ms": float(np.nanmin(self.times)),
                "last_ms": float(np.nanmax(self.times))}
