"""The splitting loop: stimulus → reaction → diffusion → observers → output.

Godunov splitting advances reaction then diffusion by a full ``dt``; Strang
splitting does half a reaction step, a diffusion step and another half
reaction step (second order in time with θ = 1/2).  Everything the loop
touches is allocated before it starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from ..errors import DivergenceError, OutputError, SolverError, TwinError
from ..io.checkpoint import load_checkpoint, save_checkpoint
from ..io.output import RunFolder
from ..jit import threading_layer
from ..models.lookup import LookupSettings, ReactionStepper
from ..observers.activation import ActivationMap
from ..observers.probes import ProbeRecorder
from .setup import Problem
from .stimulus import StimulusSet

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, float], None]


@dataclass
class Result:
    """What a run produced.

    Attributes
    ----------
    activation
        ``(n,)`` first activation time per node [ms], NaN where never activated.
    states
        ``(n_states, n)`` final state.
    time
        Final simulated time [ms].
    probe_header, probe_rows
        Probe traces (time [ms] first).
    repolarisation, apd
        ``(n,)`` last repolarisation time and APD per node [ms] (with ``repolarisation`` in
        ``outputs.maps``), NaN where a node did not repolarise.
    ecg
        ``time`` [ms] and one pseudo-ECG trace per lead [mV] (with ``outputs.ecg``).
    reentry
        The reentry detector's findings (with ``outputs.reentry``).
    late_activation
        ``(n,)`` earliest activation after the last stimulus ended that the reentry detector
        still holds [ms], NaN where none (with ``outputs.reentry``).
    summary
        Provenance, timings and metrics (also written as ``summary.json``).
    """

    activation: np.ndarray
    states: np.ndarray
    time: float
    probe_header: list[str]
    probe_rows: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)
    repolarisation: np.ndarray | None = None
    apd: np.ndarray | None = None
    ecg: dict[str, np.ndarray] | None = None
    reentry: dict[str, Any] | None = None
    late_activation: np.ndarray | None = None


def versions() -> dict[str, str]:
    """Versions of twin and of the libraries that change results."""
    import meshio
    import numba
    import scipy

    return {"twin": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "numba": numba.__version__, "meshio": meshio.__version__}


def case_fingerprint(problem: Problem) -> str:
    """Hash of everything that determines the solution up to a given time.

    Outputs and the end time are left out, so a run can be resumed with more
    output or extended to a later end time.
    """
    resolved = problem.case.resolved()
    resolved.pop("outputs", None)
    resolved.pop("name", None)
    resolved.pop("description", None)
    resolved["solver"].pop("end_time", None)
    text = json.dumps(resolved, sort_keys=True) + problem.mesh_hash
    return hashlib.sha256(text.encode()).hexdigest()


def _or_none(measure: Callable[[], float]) -> float | None:
    """A measurement that may not exist (no QRS in a run without activation...): None then."""
    try:
        value = float(measure())
    except (ValueError, IndexError, TwinError):
        return None
    return value if np.isfinite(value) else None


def _check_finite(v: np.ndarray, t: float, step: int) -> None:
    """Raise :class:`DivergenceError` naming the first non-finite node (one O(n) sum when all is well)."""
    if not np.isfinite(v.sum()):
        bad = int(np.flatnonzero(~np.isfinite(v))[0])
        raise DivergenceError(t, step, bad)


class Simulation:
    """Runs a :class:`Problem` with the case's solver settings.

    Parameters
    ----------
    problem
        Built by :func:`twin.solver.setup.build_problem`.
    folder
        Where outputs go, or ``None`` to keep results in memory only.
    progress
        Called as ``progress(fraction_done, simulated_time_ms)`` about 100 times a run.
    initial_states
        ``(n_states, n_nodes)`` state at t = 0 (e.g. pre-paced, or an arm's shared start);
        default: the model's initial values everywhere.
    """

    def __init__(self, problem: Problem, folder: RunFolder | None = None,
                 progress: ProgressCallback | None = None, initial_states: np.ndarray | None = None) -> None:
        self.problem = problem
        if initial_states is not None and initial_states.shape != (problem.model.n_states, problem.n_nodes):
            raise SolverError(f"initial states have shape {initial_states.shape}, expected "
                              f"{(problem.model.n_states, problem.n_nodes)} (states, nodes)")
        self.initial_states = initial_states
        self.folder = folder
        self.progress = progress
        solver = problem.case.spec.solver
        self.dt = solver.dt
        self.n_steps = int(round(solver.end_time / solver.dt))
        t0 = time.perf_counter()
        self.diffusion = problem.diffusion  # built with the problem; its state is reset by run()
        lut = solver.lookup_table
        self.reaction = ReactionStepper(problem.model, problem.params, problem.node_region, solver.reaction_substeps,
                                        LookupSettings(lut.enabled, lut.v_min, lut.v_max, lut.dv, lut.simd))
        # the step the kernel is called with: half of dt twice per step under Strang splitting
        self.reaction_dt = 0.5 * self.dt if solver.splitting == "strang" else self.dt
        self.setup_time = time.perf_counter() - t0

    # ------------------------------------------------------------------ helpers
    def _compile(self) -> float:
        """Compile every kernel on tiny inputs of the real types; return seconds spent."""
        p = self.problem
        t0 = time.perf_counter()
        self.reaction.warm_up(self.reaction_dt)
        self.diffusion.warm_up()
        ActivationMap(2, 0.0).update(np.zeros(2), np.zeros(2), 0.0, self.dt)
        out = p.case.spec.outputs
        if "repolarisation" in out.maps:
            from ..observers.repolarisation import RepolarisationMap

            RepolarisationMap(2, 0.0, apd_percent=90.0).update(np.zeros(2), np.zeros(2), 0.0, self.dt)
        if out.reentry is not None:
            from ..observers.reentry import ReentryDetector

            ReentryDetector(2, 0.0, 0.0, 1.0).update(np.zeros(2), np.zeros(2), 0.0, self.dt)
        return time.perf_counter() - t0

    def _every(self, interval: float) -> int:
        return int(round(interval / self.dt)) if interval > 0 else 0

    # ------------------------------------------------------------------ the loop
    def run(self) -> Result:
        """Run to ``solver.end_time`` (from the checkpoint when the folder resumes)."""
        p = self.problem
        spec = p.case.spec
        n = p.n_nodes
        model = p.model
        vm_row = model.vm_index
        strang = spec.solver.splitting == "strang"
        dt = self.dt
        compile_time = self._compile()

        states = (np.ascontiguousarray(self.initial_states, dtype=np.float64).copy()
                  if self.initial_states is not None else model.initial_states(n))
        v = states[vm_row]                       # zero-copy view: diffusion updates it in place
        v_prev = v.copy()
        activation = ActivationMap(n, p.activation_threshold)
        probes = ProbeRecorder(p.probe_names, p.probe_nodes, p.probe_weights, self.n_steps + 1)
        repol, ecg, reentry = self._make_observers()
        updaters = [o for o in (repol, reentry) if o is not None]
        self._extra = [o for o in (repol, ecg, reentry) if o is not None]
        stimuli = StimulusSet(p.stimuli, n)
        react = self.reaction
        rdt = self.reaction_dt
        out_every = self._every(spec.outputs.interval) if self.folder else 0
        ckpt_every = self._every(spec.outputs.checkpoint_interval) if self.folder else 0
        field_rows = {name: (vm_row if name == "Vm" else model.state_names.index(name))
                      for name in spec.outputs.fields}
        fingerprint = case_fingerprint(p)

        start_step = 0
        if self.folder is not None:
            self.folder.prepare()
        if self.folder is not None and self.folder.resume:
            start_step = self._restore(states, v_prev, activation, probes, fingerprint)
            v = states[vm_row]
        elif self.folder is not None and out_every:
            self._write_frame(0, 0.0, states, field_rows)
        probes.record(start_step, start_step * dt, v)
        if ecg is not None:
            ecg.record(start_step, start_step * dt, v)

        timers = {"reaction": 0.0, "diffusion": 0.0, "observers": 0.0, "output": 0.0}
        report_every = max(1, self.n_steps // 100)
        clock = time.perf_counter
        t_solve = clock()
        finished = False
        try:
            for step in range(start_step, self.n_steps):
                t = step * dt
                c0 = clock()
                react(states, stimuli.at(t + 0.25 * dt) if strang else stimuli.at(t + 0.5 * dt), rdt)
                # a NaN from the reaction step is caught here, before diffusion smears it over the mesh
                _check_finite(v, t + dt, step + 1)
                c1 = clock()
                if self.diffusion.step(v) == -2:
                    raise DivergenceError(t + dt, step + 1, int(np.argmax(np.abs(v_prev))))
                c2 = clock()
                if strang:
                    react(states, stimuli.at(t + 0.75 * dt), rdt)
                    _check_finite(v, t + dt, step + 1)
                c3 = clock()
                activation.update(v_prev, v, t, dt)
                for obs in updaters:
                    obs.update(v_prev, v, t, dt)
                if ecg is not None:
                    ecg.record(step + 1, t + dt, v)
                v_prev[:] = v
                probes.record(step + 1, t + dt, v)
                c4 = clock()
                if out_every and (step + 1) % out_every == 0:
                    self._write_frame(step + 1, t + dt, states, field_rows)
                if ckpt_every and (step + 1) % ckpt_every == 0 and step + 1 < self.n_steps:
                    self._checkpoint(step + 1, states, v_prev, activation, probes, fingerprint)
                c5 = clock()
                timers["reaction"] += (c1 - c0) + (c3 - c2)
                timers["diffusion"] += c2 - c1
                timers["observers"] += c4 - c3
                timers["output"] += c5 - c4
                if self.progress is not None and ((step + 1) % report_every == 0 or step + 1 == self.n_steps):
                    self.progress((step + 1) / self.n_steps, t + dt)
            finished = True
        finally:
            if self.folder is not None:
                # frames still in the writer thread: on disk before the run reports (or fails)
                c0 = clock()
                self.folder.wait_frames(raise_errors=finished, close=True)
                timers["output"] += clock() - c0
        solve_time = clock() - t_solve

        t_out = clock()
        end_time = self.n_steps * dt
        header, rows = probes.table()
        summary = self._summary(compile_time, solve_time, timers, activation, self.n_steps - start_step,
                                end_time)
        extra = self._finish_observers(summary, repol, ecg, reentry)
        if self.folder is not None:
            cells = dict(p.cell_fields)
            maps = {"activation_time": activation.times}
            if repol is not None:
                maps.update(repolarisation_time=repol.repolarisation, apd=repol.apd)
            files = {"series": str(self.folder.series.path.name) if out_every else None,
                     "activation": self.folder.write_activation(p.mesh.points, p.mesh.tets,
                                                                maps, cells).name}
            if ecg is not None:
                header, table = ecg.table()
                files["ecg"] = self.folder.write_table("ecg.csv", header, table).name
            if header[1:]:
                files["probes"] = self.folder.write_probes(header, rows).name
            summary["timings_s"]["final_output"] = clock() - t_out
            summary["files"] = files
            self.folder.write_summary(summary)
            if ckpt_every:
                # a final checkpoint lets a later run extend this one to a longer end_time
                self._checkpoint(self.n_steps, states, v_prev, activation, probes, fingerprint)
        return Result(activation=activation.times, states=states, time=end_time, probe_header=header,
                      probe_rows=rows, summary=summary, **extra)

    # ------------------------------------------------------------------ observers
    def _make_observers(self) -> tuple[Any, Any, Any]:
        """The optional observers the case asks for: repolarisation map, pseudo-ECG, reentry detector."""
        p = self.problem
        out = p.case.spec.outputs
        n = p.n_nodes
        repol = ecg = reentry = None
        if "repolarisation" in out.maps:
            from ..observers.repolarisation import RepolarisationMap

            level = out.repolarisation.threshold
            repol = RepolarisationMap(n, p.activation_threshold if level is None else level,
                                      apd_percent=None if level is not None else out.repolarisation.apd_percent,
                                      activation_threshold=p.activation_threshold)
        if out.ecg is not None:
            from ..observers.ecg import PseudoECG, standard_12_lead_positions

            electrodes = (standard_12_lead_positions(p.mesh.points) if out.ecg.electrodes == "standard"
                          else {k: list(v) for k, v in out.ecg.electrodes.items()})
            assert p.sigma is not None
            ecg = PseudoECG(p.mesh.points, p.mesh.tets, p.sigma, electrodes, out.ecg.sigma_bath,
                            n_samples=self.n_steps + 1)
            if out.ecg.lead is not None:
                leads = list(ecg.leads())  # the names only: nothing is recorded yet
                if out.ecg.lead not in leads:  # say so now, not after the run
                    raise p.case.error("outputs.ecg.lead", f"no lead '{out.ecg.lead}'; leads: {', '.join(leads)}")
        if out.reentry is not None:
            from ..observers.reentry import ReentryDetector

            last = max((s.start + (s.count - 1) * s.period + s.duration for s in p.stimuli), default=0.0)
            reentry = ReentryDetector(n, p.activation_threshold, last, out.reentry.min_duration,
                                      points=p.mesh.points, monitor=p.excitable)
        return repol, ecg, reentry

    def _finish_observers(self, summary: dict[str, Any], repol: Any, ecg: Any, reentry: Any) -> dict[str, Any]:
        """Add the observers' results to ``summary``; return the extra :class:`Result` fields."""
        extra: dict[str, Any] = {}
        if repol is not None:
            summary["repolarisation"] = repol.stats()
            extra.update(repolarisation=repol.repolarisation, apd=repol.apd)
        if ecg is not None:
            from ..observers.ecg import qrs_duration, qt_interval

            leads = ecg.leads()
            wanted = self.problem.case.spec.outputs.ecg.lead
            lead = wanted or ("II" if "II" in leads else next(iter(leads)))
            if lead not in leads:
                raise OutputError(f"outputs.ecg.lead: no lead '{lead}'; leads: {', '.join(leads)}")
            t, _ = ecg.recorded()
            qrs = _or_none(lambda: qrs_duration(t, leads[lead]))
            qt = _or_none(lambda: qt_interval(t, leads[lead]))
            summary["ecg"] = {"lead": lead, "qrs_ms": qrs, "qt_ms": qt, "electrodes": ecg.names}
            extra["ecg"] = {"time": t, **leads}
        if reentry is not None:
            summary["reentry"] = reentry.summary()
            extra["reentry"] = summary["reentry"]
            ring = reentry.ring
            has = np.isfinite(ring).any(axis=1)
            extra["late_activation"] = np.where(has, np.nanmin(np.where(has[:, None], ring, 0.0), axis=1), np.nan)
        return extra

    # ------------------------------------------------------------------ output
    def _write_frame(self, step: int, t: float, states: np.ndarray, field_rows: dict[str, int]) -> None:
        assert self.folder is not None
        mesh = self.problem.mesh
        self.folder.write_frame(step, t, mesh.points, mesh.tets,
                                {name: states[row] for name, row in field_rows.items()})

    def _checkpoint(self, step: int, states: np.ndarray, v_prev: np.ndarray, activation: ActivationMap,
                    probes: ProbeRecorder, fingerprint: str) -> None:
        assert self.folder is not None
        self.folder.wait_frames()  # a resumed run keeps the frames up to its checkpoint: they must exist
        save_checkpoint(self.folder.checkpoint_path,
                        {"states": states, "v_prev": v_prev, "activation": activation.times,
                         "probe_times": probes.times[: step + 1], "probe_values": probes.values[: step + 1],
                         **self.diffusion.checkpoint_arrays(),
                         **{k: v for o in self._extra for k, v in o.checkpoint_arrays().items()}},
                        {"step": step, "time": step * self.dt, "dt": self.dt, "fingerprint": fingerprint,
                         "mesh_hash": self.problem.mesh_hash})
        logger.info("checkpoint at t = %g ms", step * self.dt)

    def _restore(self, states: np.ndarray, v_prev: np.ndarray, activation: ActivationMap,
                 probes: ProbeRecorder, fingerprint: str) -> int:
        assert self.folder is not None
        arrays, attrs = load_checkpoint(self.folder.checkpoint_path)
        if attrs.get("fingerprint") != fingerprint:
            raise OutputError(f"cannot resume from {self.folder.checkpoint_path}: it was written for a "
                              "different case or mesh (only outputs and solver.end_time may change)")
        step = int(attrs["step"])
        if step > self.n_steps:
            raise OutputError(f"cannot resume: the checkpoint is at t = {attrs['time']} ms, after "
                              f"solver.end_time = {self.n_steps * self.dt} ms")
        states[:] = arrays["states"]
        v_prev[:] = arrays["v_prev"]
        self.diffusion.restore(arrays)
        activation.times[:] = arrays["activation"]
        k = len(arrays["probe_times"])
        probes.times[:k] = arrays["probe_times"]
        probes.values[:k] = arrays["probe_values"]
        for obs in self._extra:
            own = obs.checkpoint_arrays()
            missing = [key for key in own if key not in arrays]
            if missing:
                raise OutputError(f"cannot resume: the checkpoint has no {missing[0]} (outputs.maps, ecg or "
                                  "reentry were added after it was written; rerun with --overwrite)")
            # a run extended to a later end_time has longer records: copy what was recorded
            obs.restore({key: arrays[key][: len(own[key])] if arrays[key].ndim else arrays[key] for key in own})
        self.folder.truncate_series(step * self.dt)
        logger.info("resuming from the checkpoint at t = %g ms (step %d)", step * self.dt, step)
        return step

    def _summary(self, compile_time: float, solve_time: float, timers: dict[str, float],
                 activation: ActivationMap, steps: int, end_time: float) -> dict[str, Any]:
        import numba

        p = self.problem
        node_steps = p.n_nodes * steps
        return {
            "case": {"file": p.case.source, "resolved": p.case.resolved()},
            "mesh": {"hash": p.mesh_hash, "nodes": p.mesh.n_points, "tetrahedra": p.mesh.n_tets,
                     "regions": [int(t) for t in p.tags]},
            "model": {"name": p.model.name, "provenance": p.model.provenance,
                      "parameter_rows": [dict(zip(p.model.param_names, map(float, row))) for row in p.params],
                      "nodes_per_row": np.bincount(p.node_region, minlength=len(p.params)).tolist()},
            "versions": versions(),
            "machine": {"platform": platform.platform(), "threads": numba.get_num_threads(),
                        "threading_layer": threading_layer()},
            "run": {"end_time_ms": end_time, "dt_ms": self.dt, "steps": steps, "reaction": self.reaction.info(),
                    "pcg_iterations_mean": (self.diffusion.iterations_total / self.diffusion.solves
                                            if self.diffusion.solves else 0.0),
                    "explicit_dt_limit_ms": (None if not np.isfinite(self.diffusion.dt_limit)
                                             else self.diffusion.dt_limit)},
            "timings_s": {**{f"setup_{k}": v for k, v in p.timings.items()},
                          "setup_solver": self.setup_time, "compile": compile_time, "solve": solve_time,
                          **{f"solve_{k}": v for k, v in timers.items()}},
            "throughput_node_steps_per_s": node_steps / solve_time if solve_time > 0 else None,
            "activation": {"threshold_mV": p.activation_threshold, **activation.stats(),
                           "fraction_activated": float(np.isfinite(activation.times).mean())},
        }
