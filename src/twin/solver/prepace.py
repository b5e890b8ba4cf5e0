"""Pre-pacing: bring every parameter set of a problem to a paced steady state before the tissue run.

Detailed ionic models start far from their paced limit cycle (slow concentrations drift for
hundreds of beats); tissue runs from the published initial values would measure a transient.
As openCARP's limit-cycle initial states do, each distinct parameter row is paced as a single
cell (the same generated kernel as the tissue) and every node starts from its row's state.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..cell import run_cell
from .setup import Problem

logger = logging.getLogger(__name__)


def prepace_states(problem: Problem, beats: int, bcl: float, dt: float | None = None) -> np.ndarray:
    """``(n_states, n_nodes)`` states after ``beats`` single-cell beats at ``bcl`` [ms] per parameter row.

    Parameters
    ----------
    problem
        The problem whose model, parameter table and node→row index are used.
    beats, bcl
        Number of beats and cycle length [ms]; the state returned is the one at the end of
        the last cycle (just before the next stimulus would come).
    dt
        Time step [ms] (default: the case's solver dt).
    """
    model = problem.model
    dt = dt or problem.case.spec.solver.dt
    states = model.initial_states(problem.n_nodes)
    if beats <= 0:
        return states
    t0 = time.perf_counter()
    rows = np.unique(problem.node_region)
    n_steps = int(round(beats * bcl / dt))
    for r in rows:
        params = dict(zip(model.param_names, problem.params[r]))
        trace = run_cell(model, bcl=bcl, beats=beats, dt=dt, parameters=params, sample_every=n_steps)
        states[:, problem.node_region == r] = trace.states[:, -1:]
    logger.info("pre-paced %d parameter set(s) for %d beats at %g ms in %.1f s", len(rows), beats, bcl,
                time.perf_counter() - t0)
    return np.ascontiguousarray(states)
