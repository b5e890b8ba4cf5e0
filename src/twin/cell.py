"""Single-cell runs: pace one cell with the tissue kernel and measure its action potentials."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .io.atomic import atomic_write
from .models import ReactionModel
from .models.lookup import LookupSettings, LookupTables


@dataclass
class CellTrace:
    """A paced single-cell simulation.

    Attributes
    ----------
    time
        ``(k,)`` sample times [ms].
    states
        ``(n_states, k)`` sampled states (row ``vm_index`` is Vm [mV]).
    bcl, beats, dt, start
        Protocol period [ms], beat count, time step [ms] and first pulse time [ms].
    """

    model: ReactionModel
    time: np.ndarray
    states: np.ndarray
    bcl: float
    beats: int
    dt: float
    start: float = 0.0

    @property
    def vm(self) -> np.ndarray:
        return self.states[self.model.vm_index]


def run_cell(model: ReactionModel, *, bcl: float = 1000.0, beats: int = 5, dt: float = 0.01,
             amplitude: float | None = None, duration: float | None = None, start: float = 0.0,
             parameters: Mapping[str, Any] | None = None, n_sub: int = 1,
             sample_every: int = 1, lookup: LookupSettings | None = None) -> CellTrace:
    """Pace one cell ``beats`` times every ``bcl`` ms with the same kernel the tissue solver uses.

    Parameters
    ----------
    model
        The reaction model.
    bcl, beats
        Basic cycle length [ms] and number of beats.
    dt
        Time step [ms].
    amplitude
        Stimulus [A/F], positive depolarising; default: the model's own stimulus.
    duration, start
        Pulse length (default: the model file's protocol, else 1 ms) and first pulse time [ms].
    parameters
        Named overrides (numbers or factors ``"x0.5"``).
    n_sub
        Reaction sub-steps per step.
    sample_every
        Keep every k-th step.
    lookup
        Step with the model's lookup tables (as tissue runs do by default); ``None`` or a
        model without tables: every rate exactly.
    """
    if duration is None:
        duration = model.cell_stimulus_duration or 1.0
    if bcl <= 0 or beats < 1 or dt <= 0 or duration <= 0:
        raise ModelError(f"need bcl > 0, beats >= 1, dt > 0 and duration > 0 "
                         f"(got bcl={bcl}, beats={beats}, dt={dt}, duration={duration})")
    if amplitude is None:
        if model.cell_stimulus is None:
            raise ModelError(f"model '{model.name}' has no stimulus of its own; give an amplitude [A/F]")
        amplitude = model.cell_stimulus
    if n_sub < 1 or sample_every < 1:
        raise ModelError(f"need n_sub >= 1 and sample_every >= 1 (got {n_sub}, {sample_every})")
    n_steps = int(round((start + beats * bcl) / dt))
    params = model.parameter_row(parameters or {})
    states = model.initial_states(1)
    keep = np.arange(0, n_steps + 1, sample_every)
    out = np.empty((model.n_states, len(keep)))
    out[:, 0] = states[:, 0]
    args = (states, params, float(amplitude), float(start), float(duration), float(bcl), float(dt), n_steps,
            int(n_sub), int(sample_every), out)
    if lookup is not None and lookup.enabled and model.lookup is not None:
        tables = LookupTables(model, params[None, :], dt / n_sub, lookup)
        bad = model.lookup.pace(*args, tables.tables[0], tables.v_lo, tables.inv_dv, *tables.cell_key_args())
    else:
        bad = model.cell_kernel(*args)
    if bad >= 0:
        raise ModelError(f"model '{model.name}' diverged at t = {(bad + 1) * dt:g} ms; reduce dt")
    return CellTrace(model=model, time=keep * dt, states=out, bcl=bcl, beats=beats, dt=dt,
                     start=start)


def apd(time: np.ndarray, vm: np.ndarray, fraction: float = 0.9) -> float:
    """Action potential duration at ``fraction`` repolarisation [ms] of one beat's trace.

    From the upstroke crossing to the downstroke crossing of
    ``peak - fraction (peak - rest)``, both interpolated linearly; ``rest`` is
    the potential at the start of the trace.  NaN if the beat does not repolarise.
    """
    rest, i_peak = vm[0], int(np.argmax(vm))
    level = vm[i_peak] - fraction * (vm[i_peak] - rest)
    up = np.flatnonzero(vm[: i_peak + 1] >= level)
    down = np.flatnonzero(vm[i_peak:] < level)
    if up.size == 0 or down.size == 0:
        return float("nan")
    i, j = up[0], i_peak + down[0]
    t_up = time[i] if i == 0 else time[i - 1] + (level - vm[i - 1]) / (vm[i] - vm[i - 1]) * (time[i] - time[i - 1])
    t_down = time[j - 1] + (vm[j - 1] - level) / (vm[j - 1] - vm[j]) * (time[j] - time[j - 1])
    return float(t_down - t_up)


def last_beat_metrics(trace: CellTrace) -> dict[str, float]:
    """Resting potential, peak, dV/dt max and APD90 of the last beat.

    Returns
    -------
    dict
        ``rest_mV`` (just before the last stimulus), ``peak_mV``, ``dvdt_max_V_per_s``
        (= mV/ms), ``apd90_ms`` and ``apd50_ms``.
    """
    t0 = trace.start + (trace.beats - 1) * trace.bcl
    sel = trace.time >= t0 - 1e-9
    t, v = trace.time[sel], trace.vm[sel]
    dvdt = np.diff(v) / np.diff(t)
    return {"rest_mV": float(v[0]), "peak_mV": float(v.max()), "dvdt_max_V_per_s": float(dvdt.max()),
            "apd90_ms": apd(t, v, 0.9), "apd50_ms": apd(t, v, 0.5)}


def write_trace_csv(trace: CellTrace, path: str | Path) -> None:
    """Write ``time_ms`` and every state (named with its unit) as CSV, atomically."""
    names = [f"{n} [{u}]" if u else n for n, u in zip(trace.model.state_names, trace.model.state_units)]

    def write(tmp: Path) -> None:
        data = np.vstack([trace.time[None, :], trace.states]).T
        np.savetxt(tmp, data, delimiter=",", header=",".join(["time [ms]"] + names), comments="",
                   fmt="%.9g")

    atomic_write(path, write)


def plot_trace(trace: CellTrace, path: str | Path, metrics: Mapping[str, float] | None = None) -> None:
    """Plot Vm against time (all beats, and the last beat with its APD90 marked) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display here; never open a window from the library
    import matplotlib.pyplot as plt

    fig, (ax_all, ax_last) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    ax_all.plot(trace.time, trace.vm, lw=0.8)
    ax_all.set(xlabel="time [ms]", ylabel="Vm [mV]",
               title=f"{trace.model.description}: {trace.beats} beats at {trace.bcl:g} ms")
    t0 = trace.start + (trace.beats - 1) * trace.bcl
    sel = trace.time >= t0 - 1e-9
    ax_last.plot(trace.time[sel] - t0, trace.vm[sel], lw=1.0)
    title = "last beat"
    if metrics and np.isfinite(metrics.get("apd90_ms", np.nan)):
        title += f": APD90 = {metrics['apd90_ms']:.1f} ms"
    ax_last.set(xlabel="time in last beat [ms]", title=title)
    for ax in (ax_all, ax_last):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
