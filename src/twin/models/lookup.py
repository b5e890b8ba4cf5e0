"""Lookup tables of voltage-dependent rates: build them, and step the reaction with them.

openCARP's LIMPET evaluates the exponentials of gating rates once, on a grid of
V, and interpolates linearly at run time; most of a ten Tusscher–Panfilov step
is such exponentials.  :func:`twin.models.codegen.plan_lookup` decides which
values of a model are functions of V alone (per parameter row) and generates
``build_table``/``step_lut``; this module builds the tables for the parameter
rows of a run and picks the kernel each step.

Accuracy: linear interpolation errs by at most ``dv²/8 · max|f''|`` per column;
with the default ``dv = 0.02 mV`` the single-cell action potentials stay within
the CVODE reference tolerances (``tests/test_model_library.py`` checks every
tabulated model both ways).  A V off the table (beyond ``v_min``/``v_max``)
takes the exact branch, so a strong stimulus is never clipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numba.core.errors import NumbaError

from ..errors import ModelError
from .base import ReactionModel
from .vecmath import pack_pairs, unpack_pairs

logger = logging.getLogger(__name__)

#: the grid starts this fraction of ``dv`` above ``v_min`` so that no grid point falls on a round
#: voltage, where models have removable singularities such as (V - 15)/(exp(c (V - 15)) - 1)
GRID_OFFSET = 0.3090169943749474


@dataclass(frozen=True)
class LookupSettings:
    """Range and spacing of the tables [mV]; ``enabled=False`` evaluates every rate exactly;
    ``simd=False`` keeps the node-at-a-time tissue kernel."""

    enabled: bool = True
    v_min: float = -120.0
    v_max: float = 80.0
    dv: float = 0.02
    #: step tissue with the vectorised kernel (``step_simd``) when the model has one
    simd: bool = True

    @property
    def rows(self) -> int:
        return table_rows(self.v_min, self.v_max, self.dv)


def table_rows(lo: float, hi: float, dv: float) -> int:
    """Grid points of a table from ``lo`` to ``hi`` at spacing ``dv``."""
    return int(np.floor((hi - lo) / dv)) + 1


def pack_table(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The form of ``(n_tables, rows, cols)`` tables the SIMD kernel reads: ``(mid, packed)``.

    ``packed[t, i, c]`` (flat, uint64) holds ``T[i, c] − mid[t, c]`` and the step
    ``T[i + 1, c] − T[i, c]`` as two float32 (the last row's step is 0), so that
    ``mid + (value + w · step)`` interpolates with one load.  ``mid`` is 0, so each entry keeps
    float32's relative precision (2⁻²⁴; an exponential such as exp(V F/RT) spans orders of
    magnitude over the table), except for a column of one sign whose range is below its
    smallest magnitude (a Rush–Larsen factor exp(−dt/τ) stays within 1e-4 of 1): it is stored
    about its midrange, so its rounding stays below 2⁻²⁵ of the range, not of the value.  Either
    way the rounding is far below the interpolation error itself
    (:meth:`LookupTables.midpoint_error` with ``packed=True`` measures both together).
    """
    lo, hi = tables.min(axis=1), tables.max(axis=1)
    narrow = ((lo > 0) & (hi - lo < lo)) | ((hi < 0) & (hi - lo < -hi))
    mid = np.where(narrow, 0.5 * (lo + hi), 0.0)
    step = np.zeros_like(tables)
    step[:, :-1] = tables[:, 1:] - tables[:, :-1]
    packed = pack_pairs(tables - mid[:, None, :], step).reshape(-1)
    return np.ascontiguousarray(mid.reshape(-1)), packed


class LookupTables:
    """The tables of one model for the rows of a parameter table and one sub-step ``h_dt``.

    Region rows that agree on every parameter the table depends on share a table.

    Parameters
    ----------
    model
        A model with a lookup plan (``model.lookup is not None``).
    params
        ``(n_rows, n_params)`` parameter table of the run.
    h_dt
        Reaction sub-step [ms] the Rush–Larsen factors are built for.
    settings
        Range and spacing.

    Raises
    ------
    ModelError
        When a tabulated value is not finite on the grid (e.g. a time constant crossing zero in
        the range): the caller then steps exactly.
    """

    def __init__(self, model: ReactionModel, params: np.ndarray, h_dt: float, settings: LookupSettings) -> None:
        if model.lookup is None:
            raise ModelError(f"model '{model.name}' has no lookup table")
        if settings.dv <= 0 or settings.v_max <= settings.v_min:
            raise ModelError(f"lookup table range [{settings.v_min}, {settings.v_max}] mV with dv = "
                             f"{settings.dv} mV is empty")
        self.h_dt = float(h_dt)
        self.v_lo = settings.v_min + GRID_OFFSET * settings.dv
        self.dv = settings.dv
        self.inv_dv = 1.0 / settings.dv
        cols = model.lookup.columns
        self.tables, self.table_of_row = self._build(
            params, model.lookup.parameters, settings.rows, len(cols),
            lambda p, out: model.lookup.build_table(p, self.h_dt, self.v_lo, self.dv, out), model.name, cols, "V",
            self.v_lo)
        # further keys (e.g. V - E_K for I_K1): same spacing, the model file's range
        self.keys = []
        for key in model.lookup.keys:
            lo = key.lo + GRID_OFFSET * settings.dv
            rows = table_rows(key.lo, key.hi, settings.dv)
            tables, of_row = self._build(params, key.parameters, rows, len(key.columns),
                                         lambda p, out, key=key, lo=lo: key.build(p, lo, settings.dv, out),
                                         model.name, key.columns, key.name, lo)
            self.keys.append((key, tables, of_row, lo))
        # the tissue kernels' further arguments, built once: the time loop passes them every step
        self.tissue_key_args = tuple(x for _, t, r, k_lo in self.keys for x in (t, r, k_lo, self.inv_dv))
        self.simd_key_args = tuple(x for _, t, r, k_lo in self.keys
                                   for x in (t.reshape(-1), t.shape[1], r, k_lo, self.inv_dv))
        self.mid, self.packed = pack_table(self.tables)
        self.columns = cols
        self.model = model
        self._params = params

    def _build(self, params: np.ndarray, depends: tuple[int, ...], rows: int, n_cols: int, fill, model: str,
               cols: tuple[str, ...], key: str, lo: float) -> tuple[np.ndarray, np.ndarray]:
        """One table per distinct value of the parameters ``depends`` over the rows of ``params``."""
        groups: dict[tuple[float, ...], int] = {}
        of_row = np.empty(len(params), dtype=np.int32)
        for r, row in enumerate(params):
            of_row[r] = groups.setdefault(tuple(float(x) for x in row[list(depends)]), len(groups))
        tables = np.empty((len(groups), rows, n_cols))
        first_row = {t: r for r, t in reversed(list(enumerate(of_row)))}
        for t in range(len(groups)):
            fill(np.ascontiguousarray(params[first_row[t]], dtype=np.float64), tables[t])
        bad = ~np.isfinite(tables)
        if bad.any():
            t, i, c = (int(x[0]) for x in np.nonzero(bad))
            raise ModelError(f"model '{model}': lookup column {cols[c]!r} is not finite at "
                             f"{key} = {lo + i * self.dv:.4f}")
        return tables, of_row

    def cell_key_args(self, row: int = 0) -> tuple:
        """The further keys' arguments of the single-cell loop for parameter row ``row``."""
        return tuple(x for _, tables, of_row, lo in self.keys for x in (tables[of_row[row]], lo, self.inv_dv))

    @property
    def nbytes(self) -> int:
        """Bytes of every table, the packed copy the SIMD kernel reads included."""
        return int(self.tables.nbytes + self.packed.nbytes + self.mid.nbytes
                   + sum(t.nbytes for _, t, _, _ in self.keys))

    def midpoint_error(self, packed: bool = False) -> dict[str, float]:
        """Largest |interpolated - exact| halfway between grid points, per column, over all tables.

        Relative to the column's range on the grid (0 for a constant column): what the table
        costs in accuracy, recorded in the run summary.  ``packed``: as the SIMD kernel
        interpolates (:func:`pack_table`'s float32 pairs) instead of from the float64 table.
        """
        rows, n_cols = self.tables.shape[1], len(self.columns)
        worst = np.zeros(n_cols)
        if packed:
            value, step = unpack_pairs(self.packed.reshape(self.tables.shape))
            mid = self.mid.reshape(self.tables.shape[0], 1, n_cols)
            halfway = (mid + (value + 0.5 * step))[:, :-1]
        else:
            halfway = 0.5 * (self.tables[:, :-1] + self.tables[:, 1:])
        for t in range(self.tables.shape[0]):
            r = int(np.flatnonzero(self.table_of_row == t)[0])
            exact = np.empty((rows - 1, n_cols))
            self.model.lookup.build_table(np.ascontiguousarray(self._params[r], dtype=np.float64), self.h_dt,
                                          self.v_lo + 0.5 * self.dv, self.dv, exact)
            err = np.abs(halfway[t] - exact).max(axis=0)
            span = np.ptp(self.tables[t], axis=0)
            worst = np.maximum(worst, np.divide(err, span, out=np.zeros(n_cols), where=span > 0))
        return dict(zip(self.columns, map(float, worst)))


#: longest run of nodes the SIMD kernel takes as one task (threads share runs out statically)
RUN_NODES = 512


def row_runs(region: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split nodes ``0..n`` into runs of consecutive nodes on one parameter row.

    Returns ``(starts, ends, rows)``: run ``k`` is ``starts[k]:ends[k]`` on row ``rows[k]``;
    no run is longer than ``max_len``.
    """
    n = region.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(region)) + 1, [n]])
    starts = np.concatenate([np.arange(a, b, max_len) for a, b in zip(bounds[:-1], bounds[1:])]).astype(np.int64)
    ends = np.append(starts[1:], n)
    return starts, ends, np.ascontiguousarray(region[starts], dtype=np.int32)


class ReactionStepper:
    """Advances every node's reaction by ``dt``: through the lookup tables when the model has
    them and they are enabled, else exactly.

    Parameters
    ----------
    model, params, region
        The model, the ``(n_rows, n_params)`` table and each node's row.
    n_sub
        Reaction sub-steps per call.
    settings
        Lookup-table settings (``None`` or ``enabled=False``: exact).  Either way the nodes are
        stepped by a kernel vectorised over nodes (``step_simd`` with tables,
        ``model.kernel_simd`` without) unless ``settings.simd`` is False.
    """

    def __init__(self, model: ReactionModel, params: np.ndarray, region: np.ndarray, n_sub: int,
                 settings: LookupSettings | None = None) -> None:
        self.model = model
        self.params = params
        self.region = region
        self.n_sub = n_sub
        self.settings = settings if settings is not None and settings.enabled and model.lookup else None
        want_simd = settings is None or settings.simd
        self.simd = (want_simd and self.settings is not None and model.lookup is not None
                     and model.lookup.step_simd is not None)
        # without tables (none in the model, or turned off): the exact kernel vectorised
        self.simd_exact = want_simd and model.kernel_simd is not None
        self._tables: dict[float, LookupTables | None] = {}
        self._runs: tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._flag = np.zeros(0, dtype=np.uint8)

    def prepare(self, dt: float) -> LookupTables | None:
        """Build (once) the tables for steps of ``dt`` [ms]; ``None`` when stepping exactly."""
        if self.settings is None:
            return None
        if dt not in self._tables:
            try:
                self._tables[dt] = LookupTables(self.model, self.params, dt / self.n_sub, self.settings)
            except ModelError as exc:
                logger.warning("%s; stepping the reaction exactly", exc)
                self._tables[dt] = None
        return self._tables[dt]

    def warm_up(self, dt: float) -> None:
        """Build the tables for ``dt`` and compile the kernels it will use, on two spare nodes.

        The second node starts above the table, so the SIMD kernel's follow-up for off-table
        nodes compiles here too, not in the middle of a run when a stimulus first overshoots.
        """
        region = self.region
        states = self.model.initial_states(2)
        if self.settings is not None:
            states[self.model.vm_index, 1] = self.settings.v_max + 10.0
        try:
            self.region = np.zeros(2, dtype=region.dtype)
            self(states, np.zeros(2), dt)
        finally:
            self.region = region

    @property
    def uses_tables(self) -> bool:
        return any(t is not None for t in self._tables.values())

    def __call__(self, states: np.ndarray, i_stim: np.ndarray, dt: float) -> None:
        tables = self.prepare(dt)
        if tables is None:
            if not (self.simd_exact and states.flags.c_contiguous and self._step_simd_exact(states, i_stim, dt)):
                self.model.kernel(states, self.params, self.region, i_stim, dt, self.n_sub)
        elif self.simd and states.flags.c_contiguous and self._step_simd(states, i_stim, dt, tables):
            pass
        else:
            self.model.lookup.step(states, self.params, self.region, i_stim, dt, self.n_sub, tables.tables,
                                   tables.table_of_row, tables.v_lo, tables.inv_dv, *tables.tissue_key_args)

    def _step_simd(self, states: np.ndarray, i_stim: np.ndarray, dt: float, tables: LookupTables) -> bool:
        """The vectorised table kernel over runs of nodes, then the exact kernel on the nodes it
        left (off a table: V beyond ``v_min``/``v_max``, a further key beyond its range, or NaN).
        False, states untouched, when it does not compile (see :meth:`_substeps`)."""
        n = states.shape[1]
        if self._flag.shape[0] != n:
            self._flag = np.zeros(n, dtype=np.uint8)
        tail = (tables.packed, tables.tables.shape[1], tables.table_of_row, tables.mid, tables.v_lo, tables.inv_dv,
                *tables.simd_key_args, self._flag)
        self.simd = self._substeps(self.model.lookup.step_simd, states, i_stim, dt, tail, self._flag)
        return self.simd

    def _step_simd_exact(self, states: np.ndarray, i_stim: np.ndarray, dt: float) -> bool:
        """The exact kernel vectorised over runs of nodes; False as :meth:`_step_simd`."""
        self.simd_exact = self._substeps(self.model.kernel_simd, states, i_stim, dt, (), None)
        return self.simd_exact

    def _substeps(self, kernel, states: np.ndarray, i_stim: np.ndarray, dt: float, tail: tuple,
                  flag: np.ndarray | None) -> bool:
        """``n_sub`` calls of a SIMD kernel (states as one row per argument, runs of nodes per
        parameter row, then ``tail``); after each, the nodes it flagged are stepped exactly.

        Returns False, with the states untouched, when the kernel does not compile (a model file
        with a construct its generator did not foresee): the caller then steps node at a time.
        """
        starts, ends, rows = self._row_runs(self.region)
        h_dt = dt / self.n_sub
        for sub in range(self.n_sub):
            try:
                kernel(*states, self.params, starts, ends, rows, i_stim, h_dt, *tail)
            except NumbaError as exc:
                if sub:      # compiled for the first sub-step: cannot fail for the next ones
                    raise
                logger.warning("model '%s': the SIMD reaction kernel does not compile (%s); stepping node at a "
                               "time", self.model.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                return False
            if flag is not None and flag.any():
                self.model.lookup.step_flagged(states, self.params, self.region, i_stim, h_dt, flag)
        return True

    def _row_runs(self, region: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Runs of consecutive nodes on one parameter row, at most :data:`RUN_NODES` long (cached)."""
        if self._runs is None or self._runs[0] is not region:
            self._runs = (region, row_runs(region, RUN_NODES))
        return self._runs[1]

    def info(self) -> dict:
        """What the run used (for ``summary.json``)."""
        if not self.uses_tables:
            return {"lookup_table": False, "simd": self.simd_exact}
        t = next(t for t in self._tables.values() if t is not None)
        column, error = max(t.midpoint_error(packed=self.simd).items(), key=lambda kv: kv[1])
        return {"lookup_table": True, "simd": self.simd, "v_min_mV": self.settings.v_min,
                "v_max_mV": self.settings.v_max,
                "dv_mV": self.settings.dv, "columns": len(t.columns), "tables": int(t.tables.shape[0]),
                "keys": {key.name: {"range": [key.lo, key.hi], "columns": len(key.columns)}
                         for key, *_ in t.keys},
                "bytes": sum(x.nbytes for x in self._tables.values() if x is not None),
                "worst_midpoint_error": {"column": column, "relative_to_range": error}}
