"""One exception hierarchy for everything twin raises on purpose.

Every error a user can provoke derives from :class:`TwinError`; the CLI turns
these into one line on stderr and exit status 2.  Anything else escaping the
library is a bug.
"""

from __future__ import annotations


class TwinError(Exception):
    """Base class of all errors raised deliberately by twin."""


class CaseError(TwinError, ValueError):
    """A case file (or a ``--set`` override) is invalid.

    Parameters
    ----------
    message
        What is wrong and what was expected.
    source
        The file name (or ``"--set"``) the offending value came from.
    line
        1-based line number in ``source``, when known.
    key
        Dotted path of the offending key, e.g. ``"solver.dt"``.
    """

    def __init__(self, message: str, source: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.key = key
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Return ``file:line: key: message`` with the known parts only."""
        where = ""
        if self.source:
            where = self.source + (f":{self.line}" if self.line else "")
        parts = [p for p in (where, self.key) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class MeshError(TwinError):
    """A mesh cannot be read or fails the checks (degenerate, NaN, wrong cells...)."""


class ModelError(TwinError):
    """A reaction model is unknown or its parameters are invalid."""


class SolverError(TwinError):
    """The numerical solver cannot proceed (unstable dt, no convergence...)."""


class DivergenceError(SolverError):
    """A NaN or Inf appeared in the solution.

    Attributes
    ----------
    time : float
        Simulated time [ms] at which the non-finite value was detected.
    step : int
        Time-step index.
    node : int
        Index of the first offending node.
    """

    def __init__(self, time: float, step: int, node: int, what: str = "Vm") -> None:
        self.time = time
        self.step = step
        self.node = node
        super().__init__(
            f"the solution diverged: non-finite {what} at t = {time:g} ms (step {step}, node {node}); "
            "reduce solver.dt or check the model parameters and stimulus strength"
        )


class ObserverError(TwinError, ValueError):
    """An observer (ECG, repolarisation, reentry) is set up with invalid arguments or cannot
    compute a metric."""


class OutputError(TwinError):
    """Output cannot be written (folder not writable, existing run in the way...)."""
