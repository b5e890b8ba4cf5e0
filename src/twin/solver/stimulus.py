"""Stimulus protocols: which nodes receive how much current, when."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StimulusProtocol:
    """A train of ``count`` rectangular pulses.

    Attributes
    ----------
    name
        Label for logs and provenance.
    nodes
        Node indices receiving the current.
    amplitude
        Current per capacitance [mV/ms] (= A/F).
    start, duration, period
        Timing [ms]; ``period`` 0 means a single pulse.
    count
        Number of pulses.
    """

    name: str
    nodes: np.ndarray
    amplitude: float
    start: float
    duration: float
    period: float
    count: int

    def is_active(self, t: float) -> bool:
        """True when time ``t`` [ms] lies inside one of the pulses ``[start_k, start_k + duration)``."""
        if t < self.start:
            return False
        k = int(math.floor((t - self.start) / self.period)) if self.period > 0 else 0
        if k >= self.count:
            return False
        return t - (self.start + k * self.period) < self.duration


class StimulusSet:
    """The summed applied current per node, refreshed only when a pulse starts or ends.

    The solver asks with the midpoint of each reaction step, so a pulse of
    duration D covers exactly D/dt steps however the floating-point times round.
    """

    def __init__(self, protocols: Sequence[StimulusProtocol], n_nodes: int) -> None:
        self.protocols = tuple(protocols)
        self.current = np.zeros(n_nodes)
        self._state: tuple[bool, ...] = tuple(False for _ in self.protocols)

    def at(self, t_mid: float) -> np.ndarray:
        """Applied current per capacitance [mV/ms] for a step whose midpoint is ``t_mid`` [ms]."""
        state = tuple(p.is_active(t_mid) for p in self.protocols)
        if state != self._state:
            self.current[:] = 0.0
            for on, p in zip(state, self.protocols):
                if on:
                    self.current[p.nodes] += p.amplitude
            self._state = state
        return self.current
