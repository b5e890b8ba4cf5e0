"""Reentry detection: activity that outlives the last stimulus.

Every upward crossing of the threshold (linearly interpolated in time) at or
after ``last_stimulus_end`` is a *late activation*.  Note that the wave launched
by the last stimulus itself produces late activations while it spreads; it is
``min_duration`` that separates it from reentry.  What is computed:

* **late activations per node**: a count, and the last ``history`` times in a
  ring buffer (bounded memory, nothing allocated per step);
* **sustained**: a late activation occurred at ``t ≥ last_stimulus_end + min_duration``
  (choose ``min_duration`` longer than the paced beat takes to activate the tissue);
* **cycle length**: the median of all intervals between successive late
  activations kept in the ring buffers (nodes that activated at least twice).
  With more rotations than ``history`` only the most recent ones count, so the
  coupling interval from the paced wave to the first reentrant one soon drops out;
* **cycles**: the median, over nodes activated at least twice, of the number of
  intervals (late activations − 1) — the rotations a typical node went through
  after the paced wave;
* **exit sites**: a late activation that follows a *quiescent gap* — no
  activation at any monitored node, and no stimulus, during the preceding
  ``quiescent_gap`` ms — starts a new late cycle, and its node (the earliest one
  of that step) is the cycle's exit site.  This finds where activity re-emerges after a silent
  interval: focal or triggered activity, or reentry through a channel whose nodes
  are left out of ``monitor`` (e.g. monitor healthy myocardium only, so the
  slow isthmus activity does not count as activity and the exit into healthy
  tissue opens each cycle).  A circuit that keeps some monitored node active at
  all times (a rotor in homogeneous tissue) has no gap and so no exit sites: it
  is still reported as sustained, with its cycle length.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numba import prange

from ..jit import PARALLEL, njit
from ..errors import ObserverError


@njit(**PARALLEL)
def update_reentry(v_old, v_new, t_old, dt, threshold, t_after, quiescent_gap, monitor,
                   ring, count, last, exit_time, exit_node, n_exits):  # pragma: no cover - JIT
    """Record the upward crossings of one step and update the late-cycle bookkeeping.

    A crossing ``v_old < threshold <= v_new`` happens at
    ``t* = t_old + dt (threshold − v_old)/(v_new − v_old)``.  Per node (parallel,
    each thread owns its node): when ``t* ≥ t_after`` it goes to
    ``ring[i, count[i] % K]`` and ``count[i] += 1``.

    Then (serial, O(1) unless a cycle starts): with ``t_min`` the earliest
    crossing of the step at a monitored node, if
    ``t_min − max(last[0], t_after) ≥ quiescent_gap`` a late cycle starts; its
    time and node go to ``exit_time``/``exit_node`` (while there is room) and ``n_exits[0] += 1``.
    ``last[0]`` is the latest crossing at a monitored node (any time), ``last[1]``
    the latest late crossing at any node.
    """
    n = v_new.shape[0]
    k_hist = ring.shape[1]
    t_min = np.inf
    t_max = -np.inf
    t_late = -np.inf
    for i in prange(n):
        a = v_old[i]
        b = v_new[i]
        if a < threshold and b >= threshold:
            ts = t_old + dt * (threshold - a) / (b - a)
            if ts >= t_after:
                ring[i, count[i] % k_hist] = ts
                count[i] += 1
                t_late = max(t_late, ts)
            if monitor[i]:
                t_min = min(t_min, ts)
                t_max = max(t_max, ts)
    if t_late > last[1]:
        last[1] = t_late
    if t_min < np.inf:
        # The stimulus counts as activity until it ends, so that the paced wave
        # (its upstrokes may lag the end of a short pulse) is never an exit.
        if t_min - max(last[0], t_after) >= quiescent_gap:
            # The exit node is the monitored node with the step's earliest crossing.
            # It is found by a serial rescan (same arithmetic, so the same t*) only on
            # the rare steps that open a cycle, rather than storing every node's t*
            # every step.
            j = n_exits[0]
            if j < exit_time.shape[0]:
                for i in range(n):
                    a = v_old[i]
                    b = v_new[i]
                    if monitor[i] and a < threshold and b >= threshold:
                        if t_old + dt * (threshold - a) / (b - a) == t_min:
                            exit_time[j] = t_min
                            exit_node[j] = i
                            break
            n_exits[0] = j + 1
        if t_max > last[0]:
            last[0] = t_max


class ReentryDetector:
    """Detects activity that persists after the last stimulus (see the module docstring).

    Parameters
    ----------
    n_nodes
        Number of nodes.
    threshold
        Activation (upward crossing) level [mV].
    last_stimulus_end
        End of the last stimulus [ms]; crossings from then on are late activations.
    min_duration
        Late activity must last this long [ms] to count as sustained.
    points
        ``(n_nodes, 3)`` coordinates [mm], to report exit-site positions.
    history
        Late activation times kept per node (ring buffer length K ≥ 2).
    quiescent_gap
        Silence [ms] at all monitored nodes that makes the next activation an exit site.
    monitor
        ``(n_nodes,)`` bool: nodes whose activations define quiescence and exit
        sites (default all).
    max_exits
        Exit sites stored (later ones are counted only).

    Attributes
    ----------
    count : numpy.ndarray
        ``(n_nodes,)`` int64 late activations per node.
    ring : numpy.ndarray
        ``(n_nodes, history)`` last late activation times [ms] (ring order; NaN = empty).
    """

    def __init__(self, n_nodes: int, threshold: float, last_stimulus_end: float, min_duration: float, *,
                 points: np.ndarray | None = None, history: int = 8, quiescent_gap: float = 10.0,
                 monitor: np.ndarray | None = None, max_exits: int = 256) -> None:
        if history < 2:
            raise ObserverError(f"reentry history must keep at least 2 activations per node, got {history}")
        if not (np.isfinite(min_duration) and min_duration > 0):
            raise ObserverError(f"reentry min_duration must be a positive time [ms], got {min_duration!r}")
        if not (np.isfinite(quiescent_gap) and quiescent_gap > 0):
            raise ObserverError(f"reentry quiescent_gap must be a positive time [ms], got {quiescent_gap!r}")
        if points is not None and np.shape(points) != (n_nodes, 3):
            raise ObserverError(f"points must have shape ({n_nodes}, 3), got {np.shape(points)}")
        self.threshold = float(threshold)
        self.last_stimulus_end = float(last_stimulus_end)
        self.min_duration = float(min_duration)
        self.quiescent_gap = float(quiescent_gap)
        self.points = None if points is None else np.asarray(points, dtype=np.float64)
        if monitor is None:
            self.monitor = np.ones(n_nodes, dtype=np.bool_)
        else:
            self.monitor = np.ascontiguousarray(monitor, dtype=np.bool_)
            if self.monitor.shape != (n_nodes,):
                raise ObserverError(f"monitor mask must have shape ({n_nodes},), got {self.monitor.shape}")
        self.ring = np.full((n_nodes, int(history)), np.nan)
        self.count = np.zeros(n_nodes, dtype=np.int64)
        # last[0]: latest crossing at a monitored node; last[1]: latest late crossing anywhere [ms]
        self._last = np.full(2, -np.inf)
        self.exit_time = np.full(int(max_exits), np.nan)
        self.exit_node = np.full(int(max_exits), -1, dtype=np.int64)
        self._n_exits = np.zeros(1, dtype=np.int64)

    def update(self, v_old: np.ndarray, v_new: np.ndarray, t_old: float, dt: float) -> None:
        """Advance over the step ``t_old → t_old + dt`` [ms] with V before and after [mV]."""
        # float() so an int time does not compile a second specialisation
        update_reentry(v_old, v_new, float(t_old), float(dt), self.threshold, self.last_stimulus_end,
                       self.quiescent_gap, self.monitor, self.ring, self.count, self._last, self.exit_time,
                       self.exit_node, self._n_exits)

    # ----------------------------------------------------------------- results

    @property
    def last_activation(self) -> float | None:
        """Latest late activation [ms], or None."""
        return float(self._last[1]) if np.isfinite(self._last[1]) else None

    @property
    def sustained(self) -> bool:
        """Whether late activations still occurred at ``t ≥ last_stimulus_end + min_duration``."""
        return bool(self._last[1] >= self.last_stimulus_end + self.min_duration)

    def intervals(self) -> np.ndarray:
        """All intervals [ms] between successive late activations kept in the ring buffers."""
        rows = self.ring[self.count >= 2]
        times = np.sort(rows, axis=1)               # ring order → chronological, NaN last
        gaps = np.diff(times, axis=1)
        return gaps[np.isfinite(gaps)]

    @property
    def cycle_length(self) -> float | None:
        """Median interval [ms] between successive late activations, or None."""
        gaps = self.intervals()
        return float(np.median(gaps)) if gaps.size else None

    @property
    def cycles(self) -> int:
        """Median number of late intervals over nodes activated at least twice (0 if none)."""
        c = self.count[self.count >= 2]
        return int(np.median(c - 1)) if c.size else 0

    def exit_sites(self) -> list[dict[str, object]]:
        """Late cycles opened after a quiescent gap: ``{"time_ms", "node"[, "xyz_mm"]}`` each."""
        k = min(int(self._n_exits[0]), len(self.exit_time))
        out: list[dict[str, object]] = []
        for j in range(k):
            site: dict[str, object] = {"time_ms": float(self.exit_time[j]), "node": int(self.exit_node[j])}
            if self.points is not None:
                site["xyz_mm"] = self.points[self.exit_node[j]].tolist()
            out.append(site)
        return out

    def summary(self) -> dict[str, object]:
        """Everything above as plain Python values, for metrics.json.

        ``exit_site`` is the first of ``exit_sites`` (None when there is none).
        """
        active = int(np.count_nonzero(self.count))
        sites = self.exit_sites()
        return {"sustained": self.sustained, "last_stimulus_end_ms": self.last_stimulus_end,
                "min_duration_ms": self.min_duration, "last_activation_ms": self.last_activation,
                "cycle_length_ms": self.cycle_length, "cycles": self.cycles,
                "late_activations": int(self.count.sum()), "nodes_active_late": active,
                "max_activations_per_node": int(self.count.max()) if self.count.size else 0,
                "exit_cycles": int(self._n_exits[0]), "exit_sites": sites,
                "exit_site": sites[0] if sites else None}

    def checkpoint_arrays(self) -> dict[str, np.ndarray]:
        """Every array needed to resume (names prefixed ``reentry_``)."""
        return {"reentry_ring": self.ring, "reentry_count": self.count, "reentry_last": self._last,
                "reentry_exit_time": self.exit_time, "reentry_exit_node": self.exit_node,
                "reentry_n_exits": self._n_exits}

    def restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Reload the state written by :meth:`checkpoint_arrays`."""
        for key, dest in self.checkpoint_arrays().items():
            dest[:] = arrays[key]
