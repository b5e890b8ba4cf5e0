"""Repolarisation times and action-potential durations per node, over several beats.

Each node runs a two-state machine, advanced once per time step:

* **diastole** — the lowest V seen since the last repolarisation is tracked; an
  upward crossing of the activation threshold starts a beat at the linearly
  interpolated crossing time, and freezes that lowest V as the beat's *rest*
  level (the maximum diastolic potential; for a quiescent cell, its resting
  potential);
* **beat** — the peak V is tracked; the first downward crossing of the
  repolarisation level ends the beat, again interpolated linearly in time.  The
  completed (activation, repolarisation) pair replaces the node's previous one,
  so after several beats the arrays hold the *last complete* beat, and
  ``APD = repolarisation − activation``.

Two repolarisation levels:

* fixed threshold (default): "APD at threshold", e.g. −70 mV, close to APD90 for
  TP06/ORd (rest ≈ −86 mV, peak ≈ +30 mV → APD90 level ≈ −74 mV);
* ``apd_percent = p``: the per-node, per-beat level ``peak − (p/100)(peak − rest)``
  (APD90 for p = 90).  The peak is the largest sampled V, so the level is as
  accurate as the time step resolves the upstroke.

A node that never crosses back keeps NaN.  A beat still in progress when the run
ends is not reported.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numba import prange

from ..jit import PARALLEL, njit
from ..errors import ObserverError


@njit(**PARALLEL)
def update_repolarisation(v_old, v_new, t_old, dt, threshold, act_threshold, use_apd, apd_fraction,
                          act, rep, apd, beat_act, vmin, vpeak, rest):  # pragma: no cover - JIT
    """Advance every node's beat state machine over the step ``t_old → t_old + dt`` [ms].

    Upward crossing (node in diastole, ``beat_act`` NaN)::

        v_old < act_threshold <= v_new  →  beat_act = t_old + dt (act_threshold − v_old)/(v_new − v_old)

    Downward crossing (node in a beat) of the level ``L`` (``threshold``, or
    ``vpeak − apd_fraction (vpeak − rest)`` when ``use_apd``)::

        v_old > L >= v_new  →  rep = t_old + dt (v_old − L)/(v_old − v_new),  act = beat_act,
                                apd = rep − act, beat_act = NaN

    Parameters
    ----------
    v_old, v_new
        ``(n,)`` potentials at the start and end of the step [mV].
    t_old, dt
        Step start and length [ms].
    threshold
        Fixed repolarisation level [mV] (unused when ``use_apd``).
    act_threshold
        Upstroke detection level [mV].
    use_apd, apd_fraction
        Per-node level from peak and rest, and its fraction (0.9 for APD90).
    act, rep, apd
        ``(n,)`` last complete beat: activation [ms], repolarisation [ms], duration [ms]; written.
    beat_act
        ``(n,)`` activation of the beat in progress [ms], NaN in diastole; written.
    vmin, vpeak, rest
        ``(n,)`` lowest V in diastole, peak V of the beat, rest level of the beat [mV]; written.
    """
    for i in prange(v_new.shape[0]):
        a = v_old[i]
        b = v_new[i]
        if np.isnan(beat_act[i]):
            if a < vmin[i]:
                vmin[i] = a
            if a < act_threshold and b >= act_threshold:
                beat_act[i] = t_old + dt * (act_threshold - a) / (b - a)
                rest[i] = vmin[i]
                vpeak[i] = b
            elif b < vmin[i]:
                vmin[i] = b
        else:
            if b > vpeak[i]:
                vpeak[i] = b
            level = threshold
            if use_apd:
                level = vpeak[i] - apd_fraction * (vpeak[i] - rest[i])
            if a > level and b <= level:
                tr = t_old + dt * (a - level) / (a - b)
                act[i] = beat_act[i]
                rep[i] = tr
                apd[i] = tr - beat_act[i]
                beat_act[i] = np.nan
                vmin[i] = b


class RepolarisationMap:
    """Per-node activation, repolarisation and APD of the last complete beat.

    Parameters
    ----------
    n_nodes
        Number of nodes.
    threshold
        Crossing level [mV]: the repolarisation level ("APD at threshold") and,
        unless ``activation_threshold`` is given, the upstroke level too.  With
        ``apd_percent`` it is the upstroke level only.
    apd_percent
        When given (e.g. 90), repolarisation is at ``peak − (p/100)(peak − rest)``
        per node and beat (true APD90), instead of the fixed threshold.
    activation_threshold
        Upstroke detection level [mV], when it should differ from ``threshold``.

    Attributes
    ----------
    activation, repolarisation, apd : numpy.ndarray
        ``(n_nodes,)`` times and durations [ms] of the last complete beat, NaN where none.
    rest, peak : numpy.ndarray
        ``(n_nodes,)`` rest level and peak [mV] of the beat in progress or last started.
    """

    def __init__(self, n_nodes: int, threshold: float, *, apd_percent: float | None = None,
                 activation_threshold: float | None = None) -> None:
        if not np.isfinite(threshold):
            raise ObserverError(f"repolarisation threshold must be a finite potential [mV], got {threshold!r}")
        if apd_percent is not None and not 0.0 < float(apd_percent) < 100.0:
            raise ObserverError(f"apd_percent must lie in (0, 100), got {apd_percent!r}")
        self.threshold = float(threshold)
        self.activation_threshold = float(threshold if activation_threshold is None else activation_threshold)
        self.apd_percent = None if apd_percent is None else float(apd_percent)
        self._use_apd = apd_percent is not None
        self._fraction = 0.0 if apd_percent is None else float(apd_percent) / 100.0
        self.activation = np.full(n_nodes, np.nan)
        self.repolarisation = np.full(n_nodes, np.nan)
        self.apd = np.full(n_nodes, np.nan)
        self._beat = np.full(n_nodes, np.nan)
        self._vmin = np.full(n_nodes, np.inf)
        self.peak = np.full(n_nodes, np.nan)
        self.rest = np.full(n_nodes, np.nan)

    def update(self, v_old: np.ndarray, v_new: np.ndarray, t_old: float, dt: float) -> None:
        """Advance over the step ``t_old → t_old + dt`` [ms] with V before and after [mV]."""
        # float() so an int time does not compile a second specialisation
        update_repolarisation(v_old, v_new, float(t_old), float(dt), self.threshold, self.activation_threshold,
                              self._use_apd, self._fraction, self.activation, self.repolarisation, self.apd,
                              self._beat, self._vmin, self.peak, self.rest)

    def reset(self, discard_in_progress: bool = True) -> None:
        """Forget the completed beats, e.g. just before the beat a protocol measures.

        Parameters
        ----------
        discard_in_progress
            Also forget beats under way, so that a node must show a fresh upstroke
            after the reset to be reported (a node still repolarising from the
            previous beat is not counted).  ``False`` lets beats in progress finish
            and be reported.
        """
        self.activation.fill(np.nan)
        self.repolarisation.fill(np.nan)
        self.apd.fill(np.nan)
        if discard_in_progress:
            self._beat.fill(np.nan)
            self._vmin.fill(np.inf)

    def stats(self) -> dict[str, float | int | None]:
        """Summary over the nodes that completed a beat [ms].

        Dispersion of repolarisation is ``max − min`` repolarisation time, and APD
        dispersion ``max − min`` APD, over those nodes.
        """
        done = np.isfinite(self.repolarisation)
        out: dict[str, float | int | None] = {
            "level": f"APD{self.apd_percent:g}" if self._use_apd else f"{self.threshold:g} mV",
            "repolarised_nodes": int(done.sum())}
        keys = ("apd_mean_ms", "apd_min_ms", "apd_max_ms", "apd_dispersion_ms", "repolarisation_first_ms",
                "repolarisation_last_ms", "repolarisation_dispersion_ms")
        if not done.any():
            return {**out, **dict.fromkeys(keys)}
        apd = self.apd[done]
        rep = self.repolarisation[done]
        values = (apd.mean(), apd.min(), apd.max(), apd.max() - apd.min(), rep.min(), rep.max(),
                  rep.max() - rep.min())
        return {**out, **{k: float(v) for k, v in zip(keys, values)}}

    def checkpoint_arrays(self) -> dict[str, np.ndarray]:
        """Every per-node array needed to resume (names prefixed ``repol_``)."""
        return {"repol_activation": self.activation, "repol_repolarisation": self.repolarisation,
                "repol_apd": self.apd, "repol_beat": self._beat, "repol_vmin": self._vmin,
                "repol_peak": self.peak, "repol_rest": self.rest}

    def restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Reload the state written by :meth:`checkpoint_arrays`."""
        for key, dest in self.checkpoint_arrays().items():
            dest[:] = arrays[key]
