"""The generic reaction-model interface the tissue solver talks to.

A reaction model is *n* states per node, a parameter table with one row per
region, and one Numba kernel that advances every node by one time step::

    kernel(states, params, region, i_stim, dt, n_sub) -> None

``states`` is ``(n_states, n_nodes)`` float64 C-contiguous (so the diffusing
state is a zero-copy row), ``params`` is ``(n_regions, n_params)``, ``region``
maps each node to a row of ``params`` and ``i_stim`` is the applied current per
capacitance [mV/ms] (already divided by χ·Cm).  The kernel updates ``states``
in place, includes ``i_stim`` in the diffusing state's derivative and
allocates nothing.  Nothing here is cardiac-specific: neuro models use the
same contract.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ModelError


@dataclass(frozen=True)
class LookupKey:
    """A further lookup table indexed by a model variable other than V (``twin_lookup_keys``).

    ``build(p, lo, dv, out)`` fills ``out[i, :]`` with the columns at key = lo + i dv.
    """

    name: str
    build: Any = field(repr=False)
    lo: float = 0.0
    hi: float = 0.0
    columns: tuple[str, ...] = ()
    parameters: tuple[int, ...] = ()


@dataclass(frozen=True)
class LookupKernels:
    """A model's lookup-table kernels (see :mod:`twin.models.lookup`).

    ``build_table(p, h_dt, v_lo, dv, out)`` fills ``out[i, :]`` with the columns at
    V = v_lo + i dv; ``step`` is the tissue kernel with two more arguments per table
    (``tables, table_of_row, v_lo, inv_dv``); ``pace`` the single-cell loop with
    ``table, v_lo, inv_dv``.  ``columns`` names the columns and ``parameters`` are the
    indices of the parameters the table depends on.  ``keys`` are further tables indexed by
    other variables; ``step`` and ``pace`` then take ``tables, table_of_row, lo, inv_dv``
    (tissue) or ``table, lo, inv_dv`` (single cell) once more per key.

    ``step_simd`` and ``step_flagged`` are the vectorised tissue kernel and its exact
    follow-up for nodes off a table (see :class:`twin.models.lookup.ReactionStepper`);
    ``None`` for kernels without them.
    """

    build_table: Any = field(repr=False)
    step: Any = field(repr=False)
    pace: Any = field(repr=False)
    columns: tuple[str, ...] = ()
    parameters: tuple[int, ...] = ()
    keys: tuple[LookupKey, ...] = ()
    step_simd: Any = field(default=None, repr=False)
    step_flagged: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class ReactionModel:
    """A reaction model bound to the tissue solver.

    Attributes
    ----------
    name
        Registry name (``mitchell_schaeffer``).
    description, provenance
        What it is and where equations and parameter values come from.
    state_names, state_units
        One entry per state; ``state_names[vm_index]`` is the diffusing state.
    initial_state
        ``(n_states,)`` resting state.
    param_names, param_units, param_defaults
        The parameter table's columns and default row.
    vm_index
        Row of ``states`` that diffuses (the membrane potential [mV]).
    activation_threshold
        Default threshold [mV] for activation times.
    kernel
        The Numba step kernel described in the module docstring.
    kernel_simd
        The same step vectorised over nodes, one sub-step per call:
        ``kernel_simd(*states_rows, params, run_start, run_end, run_row, i_stim, h_dt)``
        (see :class:`twin.models.lookup.ReactionStepper`); ``None`` when not generated.
    cell_kernel
        Serial single-cell pacing loop ``pace(states, p, amplitude, start, duration, bcl, dt,
        n_steps, n_sub, sample_every, out) -> int`` (same per-node arithmetic as ``kernel``).
    source, code_key
        Model file and the hash of model source + generator version (provenance).
    cell_stimulus
        The model's own stimulus amplitude [A/F] (positive = depolarising), used
        as the default by single-cell runs.
    cell_stimulus_duration, cell_bcl
        Pulse length and period [ms] of the model file's own pacing protocol
        (defaults of single-cell runs), when it has one.
    currents
        Standard current names (``IKr``, ``ICaL``...) -> the parameter that scales that
        current's conductance (from the model file's ``twin_currents``), for drug block.
    lookup
        Lookup-table kernels (:class:`LookupKernels`), or ``None`` when the model has no
        voltage-dependent work worth tabulating (or is ``generic``).
    kind
        ``"cardiac"`` (an excitable membrane model: paced, APD, CVODE-checked) or
        ``"generic"`` (a reaction term for verification or neuro use), from the model
        file's ``twin_kind``.
    param_choices
        Parameters that take one of a few coded values (``celltype``): name ->
        {label: value}; other values are refused and the labels may be used
        instead of the numbers (``celltype: epi``).
    """

    name: str
    description: str
    provenance: str
    state_names: tuple[str, ...]
    state_units: tuple[str, ...]
    initial_state: np.ndarray
    param_names: tuple[str, ...]
    param_units: tuple[str, ...]
    param_defaults: np.ndarray
    vm_index: int
    activation_threshold: float
    kernel: Any = field(repr=False)
    cell_kernel: Any = field(default=None, repr=False)
    kernel_simd: Any = field(default=None, repr=False)
    source: str = ""
    code_key: str = ""
    cell_stimulus: float | None = None
    cell_stimulus_duration: float | None = None
    cell_bcl: float | None = None
    param_choices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    kind: str = "cardiac"
    currents: Mapping[str, str] = field(default_factory=dict)
    lookup: LookupKernels | None = field(default=None, repr=False)

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def initial_states(self, n_nodes: int) -> np.ndarray:
        """Return ``(n_states, n_nodes)`` states at rest, C-contiguous."""
        return np.ascontiguousarray(np.repeat(self.initial_state[:, None], n_nodes, axis=1))

    def parameter_row(self, overrides: Mapping[str, float | str], base: np.ndarray | None = None
                      ) -> np.ndarray:
        """Apply named overrides (numbers or factors ``"x0.5"``) to ``base`` (default row)."""
        from ..case import parse_parameter

        row = np.array(self.param_defaults if base is None else base, dtype=np.float64)
        for name, value in overrides.items():
            if name not in self.param_names:
                close = difflib.get_close_matches(name, self.param_names, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ModelError(f"model '{self.name}' has no parameter '{name}'; {hint}"
                                 f"parameters: {', '.join(self.param_names)}")
            j = self.param_names.index(name)
            choices = self.param_choices.get(name)
            if choices is not None:
                row[j] = self._choice(name, value, choices)
                continue
            try:
                row[j] = parse_parameter(value, row[j])
            except ValueError as exc:
                raise ModelError(f"parameter '{name}': {exc}") from None
        return row

    def _choice(self, name: str, value: float | str, choices: Mapping[str, float]) -> float:
        """A coded parameter: one of its labels or values, nothing in between."""
        listing = ", ".join(f"{label} ({code:g})" for label, code in choices.items())
        if isinstance(value, str) and value.strip() in choices:
            return float(choices[value.strip()])
        try:
            number = float(value) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is not None and number in choices.values():
            return number
        raise ModelError(f"parameter '{name}' of model '{self.name}' must be one of {listing}; got {value!r}")

    def parameter_table(self, overrides: Mapping[str, float | str],
                        region_overrides: Mapping[int, Mapping[str, float | str]],
                        tags: np.ndarray) -> np.ndarray:
        """Build the ``(len(tags), n_params)`` table: base overrides, then per-tag overrides.

        Region factors (``"x0.5"``) scale the case's base value, not the model default.
        """
        base = self.parameter_row(overrides)
        table = np.repeat(base[None, :], len(tags), axis=0)
        for tag, ov in region_overrides.items():
            hits = np.flatnonzero(tags == tag)
            for i in hits:
                table[i] = self.parameter_row(ov, base)
        return np.ascontiguousarray(table)

    def info(self) -> dict[str, Any]:
        """Plain description (for ``summary.json`` and ``twin models show``)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "currents": dict(self.currents),
            "lookup_table": (None if self.lookup is None else
                             {"columns": list(self.lookup.columns),
                              "keys": {k.name: {"range": [k.lo, k.hi], "columns": list(k.columns)}
                                       for k in self.lookup.keys}}),
            "description": self.description,
            "provenance": self.provenance,
            "source": self.source,
            "code_key": self.code_key,
            "states": [{"name": n, "unit": u, "initial": float(v)}
                       for n, u, v in zip(self.state_names, self.state_units, self.initial_state)],
            "parameters": [{"name": n, "unit": u, "default": float(v),
                            **({"choices": dict(self.param_choices[n])} if n in self.param_choices else {})}
                           for n, u, v in zip(self.param_names, self.param_units, self.param_defaults)],
        }
