"""Lookup tables of voltage-dependent rates: what is tabulated, how exact it is, and how runs use it.

The single-cell comparison of every tabulated model with Myokit's CVODE is in
``test_model_library.py`` (``test_kernel_matches_cvode[...-lookup]``).
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
import pytest

from twin.case import case_from_text
from twin.errors import CaseError, ModelError
from twin.models import get_model
from twin.models.library import load_model_file
from twin.models.lookup import LookupSettings, LookupTables, ReactionStepper, row_runs
from twin.models.vecmath import unpack_pairs
from twin.solver.setup import build_problem
from twin.solver.simulation import Simulation

DT = 0.01


def beat_states(model, n: int) -> np.ndarray:
    """``n`` nodes holding states sampled evenly over one paced beat (every V branch is met)."""
    steps = 40_000
    s = model.initial_states(1)
    out = np.empty((model.n_states, steps + 1))
    out[:, 0] = s[:, 0]
    assert model.cell_kernel(s, model.param_defaults.copy(), float(model.cell_stimulus), 1.0, 1.0, 1000.0,
                             DT, steps, 1, 1, out) < 0
    return np.ascontiguousarray(out[:, np.linspace(0, steps, n).astype(int)])


def test_tp06_plan_tabulates_the_gates_and_the_voltage_factors():
    m = get_model("tentusscher_2006")
    cols = m.lookup.columns
    gates = {c.split(":", 1)[1] for c in cols if c.startswith("inf:")}
    # every Hodgkin-Huxley gate of TP06 has V-only rates; fCass depends on Ca_ss and is not one
    assert gates == {"ina.m", "ina.h", "ina.j", "ikr.xr1", "ikr.xr2", "iks.xs", "ito.r", "ito.s",
                     "ical.d", "ical.f", "ical.f2"}
    assert all(f"rl:{g}" in cols for g in gates)
    # I_K1 depends on V - E_K (E_K follows K_i): not in the V table, but in the table the model
    # file keys on ik1.V_EK, as one column holding the whole current
    assert not any("E_K" in c or "IK1" in c for c in cols)
    [key] = m.lookup.keys
    assert key.name == "ik1.V_EK" and key.columns == ("ik1.IK1",)
    assert sorted(m.param_names[j] for j in key.parameters) == ["G_K1", "K_o"]
    names = [m.param_names[j] for j in m.lookup.parameters]
    assert "celltype" in names and "G_Kr" not in names and "G_CaL" not in names


def test_generic_and_cheap_models_have_no_table():
    assert get_model("fisher_kpp").lookup is None       # generic: its 'V' is not in mV
    assert get_model("aliev_panfilov").lookup is None   # no transcendental call to save
    assert get_model("mitchell_schaeffer").lookup is None  # one exponential: measured no faster


@pytest.mark.parametrize("name", ["tentusscher_2006", "ohara_rudy_2011", "courtemanche_1998"])
def test_tissue_step_with_tables_matches_exact_step(name):
    m = get_model(name)
    n = 400
    states = beat_states(m, n)
    # a few nodes far off the table (a strong stimulus): they must take the exact branch
    vm = m.vm_index
    states[vm, :3] = [150.0, -190.0, 95.0]
    if m.lookup.keys:
        # on the V table but off the key's: TP06's V - E_K below -150 mV (K_i = 0.5 mM: E_K = +63 mV)
        states[vm, 3] = -100.0
        states[m.state_names.index("K_i"), 3] = 0.5
    params = m.param_defaults[None, :].copy()
    region = np.zeros(n, np.int32)
    stim = np.zeros(n)
    exact = states.copy()
    m.kernel(exact, params, region, stim, DT, 1)
    stepper = ReactionStepper(m, params, region, 1, LookupSettings())
    lut = states.copy()
    stepper(lut, stim, DT)
    assert stepper.uses_tables
    np.testing.assert_array_equal(lut[:, :3], exact[:, :3])
    scale = np.abs(exact).max(axis=1, keepdims=True) + 1e-12
    assert np.abs(lut - exact).max() > 0.0                 # the tables were used...
    assert (np.abs(lut - exact) / scale).max() < 1e-6      # ...and cost < 1e-6 of each state's range


def test_key_off_its_table_is_evaluated_exactly():
    m = get_model("tentusscher_2006")
    states = beat_states(m, 4)
    states[m.vm_index] = -100.0
    states[m.state_names.index("K_i")] = [136.0, 0.5, 0.4, 136.0]   # V - E_K in, off, off, in the table
    params = m.param_defaults[None, :].copy()
    exact, lut = states.copy(), states.copy()
    m.kernel(exact, params, np.zeros(4, np.int32), np.zeros(4), DT, 1)
    ReactionStepper(m, params, np.zeros(4, np.int32), 1, LookupSettings())(lut, np.zeros(4), DT)
    vm, ki = m.vm_index, m.state_names.index("K_i")
    rel = np.abs(lut - exact) / np.abs(exact)
    assert rel[[vm, ki]].max() < 1e-8
    # where the key is off its table, I_K1 is exact: only the V table's interpolation is left
    assert rel[vm, 1:3].max() < 0.1 * rel[vm, [0, 3]].min()


@pytest.mark.parametrize("line,match", [
    ("twin_lookup_keys: membrane.nothing -10 10", "not a variable"),
    ("twin_lookup_keys: gate.inf 10 -10", "LO < HI"),
    ("twin_lookup_keys: gate.inf -10", "LO < HI"),
    ("twin_lookup_keys: membrane.V -10 10", "state-dependent intermediate"),
    ("twin_lookup_keys: gate.inf -10 10", "depends on V alone"),
])
def test_bad_lookup_keys_are_model_errors(tmp_path, line, match):
    path = _model_file(tmp_path, "1 / (1 + exp(-(membrane.V + 30 [mV]) / 5 [mV]))")
    text = path.read_text().replace("name: steep\n", f"name: steep\n{line}\n")
    path.write_text(text)
    with pytest.raises(ModelError, match=match):
        load_model_file(path)


def test_interpolation_error_is_second_order_in_dv():
    m = get_model("tentusscher_2006")
    params = m.param_defaults[None, :].copy()
    errs = []
    for dv in (0.08, 0.04, 0.02):
        t = LookupTables(m, params, DT, LookupSettings(True, -100.0, 60.0, dv))
        e = t.midpoint_error()
        # the piecewise rates of I_Na switch branch at V = -40 mV: those columns jump there and
        # are first order in dv; every smooth column must be second order
        smooth = [c for c in e if "ina.h" not in c and "ina.j" not in c]
        errs.append(max(e[c] for c in smooth))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(orders - 2.0) < 0.15), orders
    assert errs[-1] < 1e-5


def test_region_rows_share_tables_unless_the_table_depends_on_them():
    m = get_model("tentusscher_2006")
    base = m.param_defaults
    rows = np.array([base, m.parameter_row({"G_Kr": "x0.5"}), m.parameter_row({"celltype": "endo"})])
    t = LookupTables(m, rows, DT, LookupSettings())
    assert t.tables.shape[0] == 2
    assert list(t.table_of_row) == [0, 0, 1]


def _model_file(tmp_path: Path, inf: str) -> Path:
    path = tmp_path / "steep.mmt"
    path.write_text(textwrap.dedent(f"""\
        [[model]]
        name: steep
        membrane.V = -80
        gate.x = 0.1
        gate.y = 0.9

        [engine]
        time = 0 [ms]
            in [ms]
            bind time
        pace = 0
            bind pace

        [stimulus]
        i_stim = engine.pace * -40 [A/F]
            in [A/F]
            label stimulus_current

        [membrane]
        dot(V) = -(gate.x * gate.y * (V + 80 [mV]) / 1 [ms] + stimulus.i_stim)
            in [mV]
            label membrane_potential

        [gate]
        dot(x) = (inf - x) / tau
            in [1]
        inf = {inf}
            in [1]
        tau = 1 [ms] + 2 [ms] * exp(-(membrane.V + 40 [mV])^2 / 300 [mV^2])
            in [ms]
        dot(y) = (1 / (1 + exp((membrane.V + 20 [mV]) / 5 [mV])) - y) / (3 [ms] + 1 [ms] * exp(-membrane.V / 50 [mV]))
            in [1]

        [[protocol]]
        1.0      1       1        1000     0
        """), encoding="utf-8")
    return path


def test_a_table_that_overflows_falls_back_to_exact_stepping(tmp_path, caplog):
    m = load_model_file(_model_file(tmp_path, "exp(membrane.V / 5 [mV])"))
    assert m.lookup is not None
    with pytest.raises(ModelError, match="not finite"):
        LookupTables(m, m.param_defaults[None, :].copy(), DT, LookupSettings(True, -120.0, 4000.0, 0.5))
    stepper = ReactionStepper(m, m.param_defaults[None, :].copy(), np.zeros(2, np.int32), 1,
                              LookupSettings(True, -120.0, 4000.0, 0.5))
    with caplog.at_level(logging.WARNING):
        stepper(m.initial_states(2), np.zeros(2), DT)
    assert not stepper.uses_tables
    assert "stepping the reaction exactly" in caplog.text


CASE = """
name: lut
mesh: {{generator: box, size: [4 mm, 1 mm, 1 mm], spacing: 0.5 mm}}
tissue: {{sigma_l: 0.17 S/m, sigma_t: 0.019 S/m, chi: 140 1/mm, cm: 1 uF/cm^2,
         fibres: {{source: uniform, direction: [1, 0, 0]}}}}
model: {{name: tentusscher_2006}}
stimuli:
  - {{name: s, region: {{box: {{min: [0, 0, 0], max: [0.5, 1, 1]}}}}, strength: 50000 uA/cm^3,
     start: 0 ms, duration: 2 ms}}
solver: {{dt: 0.02 ms, end_time: 30 ms{extra}}}
"""


def test_runs_use_tables_by_default_and_can_turn_them_off():
    on = Simulation(build_problem(case_from_text(CASE.format(extra="")))).run()
    off = Simulation(build_problem(case_from_text(CASE.format(extra=", lookup_table: false")))).run()
    assert on.summary["run"]["reaction"]["lookup_table"] is True
    assert on.summary["run"]["reaction"]["columns"] == len(get_model("tentusscher_2006").lookup.columns)
    # the accuracy the tables cost is on record: the worst column is a rate that switches branch at -40 mV
    worst = on.summary["run"]["reaction"]["worst_midpoint_error"]
    assert worst["column"].endswith(("ina.h", "ina.j")) and 0 < worst["relative_to_range"] < 1e-3
    assert off.summary["run"]["reaction"] == {"lookup_table": False, "simd": True}
    assert np.isfinite(on.activation).all()
    assert np.abs(on.activation - off.activation).max() < 1e-3   # [ms]
    assert np.abs(on.states[0] - off.states[0]).max() < 1e-2     # [mV]
    scalar = Simulation(build_problem(case_from_text(CASE.format(extra=", lookup_table: {simd: false}")))).run()
    assert on.summary["run"]["reaction"]["simd"] is True and scalar.summary["run"]["reaction"]["simd"] is False
    # the kernels differ by vecmath's <= 1-ulp log/exp; an upstroke amplifies that a little
    assert np.abs(on.states - scalar.states).max() < 1e-4
    assert np.abs(on.activation - scalar.activation).max() < 1e-6   # [ms]


@pytest.mark.parametrize("bad,match", [
    (", lookup_table: {v_min: 50 mV, v_max: -50 mV}", "v_max"),
    (", lookup_table: {dv: 0 mV}", "dv"),
    (", lookup_table: {spacing: 0.1}", "spacing"),
])
def test_bad_table_settings_are_case_errors(bad, match):
    with pytest.raises(CaseError, match=match):
        case_from_text(CASE.format(extra=bad))


@pytest.mark.parametrize("name", ["tentusscher_2006", "ohara_rudy_2011", "courtemanche_1998"])
def test_simd_kernel_matches_the_node_at_a_time_kernel(name):
    """Same tables, same steps: the vectorised kernel reads them as float32 pairs (pack_table)
    and takes vecmath's ≤ 1-ulp log/exp; after 100 sub-steps the states agree to 1e-6 of their
    range (the rounding of the pairs, 2⁻²⁴ per value, compounded; the tables' own interpolation
    error is ~1e-6 per step).

    Three parameter rows (two tables) in short interleaved runs, two sub-steps, nodes off the
    table (stepped by the exact follow-up kernel) and one non-finite node (stays non-finite).
    """
    m = get_model(name)
    n = 700
    states = beat_states(m, n)
    vm = m.vm_index
    states[vm, [5, 300, 301]] = [150.0, -190.0, 95.0]
    states[:, 17] = np.nan
    base = m.param_defaults
    other_table = base.copy()
    other_table[[j for j in m.lookup.parameters if base[j] != 0][0]] *= 1.1
    other_row = base.copy()
    other_row[[j for j in range(base.size) if j not in m.lookup.parameters and base[j] != 0][0]] *= 0.9
    params = np.array([base, other_table, other_row])
    region = (np.arange(n) // 37 % 3).astype(np.int32)
    stim = np.where(np.arange(n) % 50 == 0, -30.0, 0.0)
    simd = ReactionStepper(m, params, region, 2, LookupSettings())
    scalar = ReactionStepper(m, params, region, 2, LookupSettings(simd=False))
    assert simd.simd and not scalar.simd
    a, b = states.copy(), states.copy()
    for _ in range(50):
        simd(a, stim, DT)
        scalar(b, stim, DT)
    assert simd.prepare(DT).tables.shape[0] == 2
    assert np.isnan(a[:, 17]).all() and np.isnan(b[:, 17]).all()
    ok = np.ones(n, bool)
    ok[17] = False
    scale = np.abs(b[:, ok]).max(axis=1, keepdims=True) + 1e-12
    assert (np.abs(a[:, ok] - b[:, ok]) / scale).max() < 1e-6
    assert simd.info()["simd"] is True


def test_packed_tables_keep_float32_relative_precision():
    """pack_table: every value (and step) to 2⁻²⁴ of itself (absolute below float32's normal
    range, ~1e-38); a narrow column of one sign (a
    Rush–Larsen factor near 1) about its midrange, to 2⁻²⁵ of its range; interpolating the
    pairs costs no more than the float64 table beyond that rounding."""
    m = get_model("tentusscher_2006")
    t = LookupTables(m, m.param_defaults[None, :].copy(), DT, LookupSettings())
    tab = t.tables
    value, step = unpack_pairs(t.packed.reshape(tab.shape))
    mid = t.mid.reshape(tab.shape[0], 1, tab.shape[2])
    got = mid + value
    err = np.abs(got - tab)
    tiny = np.finfo(np.float32).tiny       # below float32's normal range: absolute rounding
    assert np.all(err <= 2.0 ** -24 * np.abs(tab - mid) + tiny)
    true_step = tab[:, 1:] - tab[:, :-1]
    assert np.all(np.abs(step[:, :-1] - true_step) <= 2.0 ** -24 * np.abs(true_step) + tiny)
    assert np.all(step[:, -1] == 0.0)
    centred = mid[0, 0] != 0.0
    assert centred.any() and not centred.all()       # TP06 has both kinds of column
    span = np.ptp(tab[0], axis=0)
    assert np.all(err[0][:, centred] <= 2.0 ** -25 * span[centred] * (1 + 1e-12))
    exact = t.midpoint_error()
    packed = t.midpoint_error(packed=True)
    assert max(packed[c] - exact[c] for c in exact) < 1e-7


def test_row_runs_cover_every_node_once_on_one_row():
    region = np.array([0, 0, 0, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0], np.int32)
    starts, ends, rows = row_runs(region, 3)
    covered = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)])
    np.testing.assert_array_equal(covered, np.arange(region.size))
    assert (ends - starts).max() <= 3
    for a, b, r in zip(starts, ends, rows):
        assert (region[a:b] == r).all()
    assert [len(x) for x in row_runs(np.zeros(0, np.int32), 3)] == [0, 0, 0]


def test_a_simd_kernel_that_does_not_compile_falls_back_to_node_at_a_time(caplog):
    from dataclasses import replace

    from numba.core.errors import TypingError

    m = get_model("tentusscher_2006")

    def broken(*args):
        raise TypingError("Failed in nopython mode pipeline: a construct the generator did not foresee")

    bad = replace(m, lookup=replace(m.lookup, step_simd=broken))
    states = beat_states(m, 64)
    params = m.param_defaults[None, :].copy()
    region = np.zeros(64, np.int32)
    stepper = ReactionStepper(bad, params, region, 1, LookupSettings())
    ref = ReactionStepper(m, params, region, 1, LookupSettings(simd=False))
    a, b = states.copy(), states.copy()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            stepper(a, np.zeros(64), DT)
            ref(b, np.zeros(64), DT)
    assert "does not compile" in caplog.text and not stepper.simd
    np.testing.assert_array_equal(a, b)


def test_warm_up_compiles_the_off_table_follow_up_too():
    from dataclasses import replace

    m = get_model("tentusscher_2006")
    calls = []

    def recording(*args):
        calls.append(int(args[-1].sum()))          # flagged nodes
        return m.lookup.step_flagged(*args)

    spy = replace(m, lookup=replace(m.lookup, step_flagged=recording))
    stepper = ReactionStepper(spy, m.param_defaults[None, :].copy(), np.zeros(8, np.int32), 1, LookupSettings())
    stepper.warm_up(DT)
    assert stepper.simd and calls == [1]   # called (so compiled) before the run, not at a first overshoot


@pytest.mark.parametrize("name", ["mitchell_schaeffer", "aliev_panfilov", "fitzhugh_nagumo", "tentusscher_2006"])
def test_exact_simd_kernel_matches_the_exact_node_at_a_time_kernel(name):
    """Without tables (none in the model, or turned off) the exact kernel runs vectorised: same
    arithmetic but vecmath's log/exp, three parameter rows in interleaved runs, two sub-steps."""
    m = get_model(name)
    n = 301
    states = m.initial_states(n)
    states[m.vm_index] += np.linspace(0.0, 1.0, n) * (40.0 if m.kind == "cardiac" else 0.8)   # resting to excited
    base = m.param_defaults
    other = base.copy()
    j = int(np.flatnonzero(base != 0)[0])
    other[j] *= 1.05
    params = np.array([base, other, base * 1.0])
    region = (np.arange(n) // 13 % 3).astype(np.int32)
    stim = np.where(np.arange(n) % 40 == 0, 5.0 if m.kind == "cardiac" else 0.1, 0.0)
    off = LookupSettings(enabled=False)
    simd = ReactionStepper(m, params, region, 2, off)
    scalar = ReactionStepper(m, params, region, 2, LookupSettings(enabled=False, simd=False))
    assert simd.simd_exact and not scalar.simd_exact and m.kernel_simd is not None
    a, b = states.copy(), states.copy()
    for _ in range(50):
        simd(a, stim, DT)
        scalar(b, stim, DT)
    assert np.isfinite(a).all()
    scale = np.abs(b).max(axis=1, keepdims=True) + 1e-12
    assert (np.abs(a - b) / scale).max() < 1e-10
    assert simd.info() == {"lookup_table": False, "simd": True}
