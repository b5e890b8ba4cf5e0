"""Observers: pseudo-ECG lead fields and metrics, repolarisation/APD maps, reentry detector."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from twin.errors import TwinError
from twin.fem import conductivity_tensors
from twin.mesh import box_mesh
from twin.observers.ecg import (STANDARD_LEADS, ObserverError, PseudoECG, form_leads, lead_field,
                                qrs_duration, qrs_onset_offset, qt_interval, standard_12_lead_positions,
                                t_wave_end)
from twin.observers.reentry import ReentryDetector
from twin.observers.repolarisation import RepolarisationMap

FIBRE = np.array([1.0, 1.0, 0.3]) / np.linalg.norm([1.0, 1.0, 0.3])


def _sigma(mesh, fibre=FIBRE):
    return conductivity_tensors(np.tile(fibre, (len(mesh.tets), 1)), 0.17, 0.02)


# ============================================================================ pseudo-ECG

@pytest.fixture(scope="module")
def slab():
    return box_mesh((10.0, 2.0, 1.0), 0.5)


def _front(points, x_front, width=0.5):
    """Planar front moving +x: depolarised (+25 mV) behind, resting (−85 mV) ahead."""
    return -85.0 + 110.0 / (1.0 + np.exp((points[:, 0] - x_front) / width))


def test_lead_field_sums_to_zero_constant_v_gives_no_signal(slab):
    ecg = PseudoECG(slab.points, slab.tets, _sigma(slab), {"a": (20.0, 3.0, -4.0), "b": (-7.0, 1.0, 9.0)})
    assert ecg.matrix.shape == (2, slab.n_points) and ecg.matrix.flags.c_contiguous
    scale = np.abs(ecg.matrix).sum(axis=1)
    assert np.all(np.abs(ecg.matrix.sum(axis=1)) < 1e-13 * scale)
    assert np.all(np.abs(ecg.potentials(np.full(slab.n_points, -85.0))) < 1e-11 * 85 * scale)


def test_dipole_sign_flips_between_ahead_and_behind(slab):
    """A front moving +x points its dipole at the electrode ahead: positive there, negative behind."""
    sigma = conductivity_tensors(np.tile([1.0, 0.0, 0.0], (len(slab.tets), 1)), 0.17, 0.02)
    ecg = PseudoECG(slab.points, slab.tets, sigma, {"ahead": (25.0, 1.0, 0.5), "behind": (-15.0, 1.0, 0.5),
                                                     "side": (5.0, 20.0, 0.5)})
    for x_front in (3.0, 5.0, 7.0):
        phi = ecg.potentials(_front(slab.points, x_front))
        assert phi[0] > 0 and phi[1] < 0
        # broadside to the dipole the potential is much smaller than on its axis
        assert abs(phi[2]) < 0.2 * min(abs(phi[0]), abs(phi[1]))
    # the deflection ahead grows as the front approaches the electrode
    amp = [ecg.potentials(_front(slab.points, x))[0] for x in (3.0, 5.0, 7.0)]
    assert amp[0] < amp[1] < amp[2]


def test_lead_field_matches_quadrature_of_the_integral():
    """L·V for a smooth V converges (2nd order) to −1/(4πσb) ∫ σ∇V·∇(1/r) by Gauss–Legendre."""
    xe = np.array([4.0, 3.0, 2.5])
    sb = 0.2
    s_tensor = 0.02 * np.eye(3) + 0.15 * np.outer(FIBRE, FIBRE)

    def v(p):
        return 40 * np.sin(0.8 * p[:, 0]) * np.cos(0.5 * p[:, 1]) + 30 * p[:, 2] ** 2

    def grad_v(p):
        return np.column_stack([32 * np.cos(0.8 * p[:, 0]) * np.cos(0.5 * p[:, 1]),
                                -20 * np.sin(0.8 * p[:, 0]) * np.sin(0.5 * p[:, 1]), 60 * p[:, 2]])

    g, w = np.polynomial.legendre.leggauss(16)
    axes = [(0.5 * b * (g + 1), 0.5 * b * w) for b in (2.0, 1.0, 1.0)]
    pts = np.stack(np.meshgrid(*[a[0] for a in axes], indexing="ij"), -1).reshape(-1, 3)
    wts = np.einsum("i,j,k->ijk", *[a[1] for a in axes]).ravel()
    d = pts - xe
    grad_inv_r = -d / np.linalg.norm(d, axis=1)[:, None] ** 3
    ref = -np.sum(wts * np.einsum("ij,nj,ni->n", s_tensor, grad_v(pts), grad_inv_r)) / (4 * np.pi * sb)

    errors = []
    for h in (0.5, 0.25):
        mesh = box_mesh((2.0, 1.0, 1.0), h)
        weights = lead_field(mesh.points, mesh.tets, _sigma(mesh), xe, sb)
        errors.append(abs(weights @ v(mesh.points) - ref) / abs(ref))
    assert errors[1] < 5e-4
    assert np.log2(errors[0] / errors[1]) > 1.8
    # isotropic (m,) conductivities give the same as σ I tensors
    mesh = box_mesh((2.0, 1.0, 1.0), 0.5)
    iso = lead_field(mesh.points, mesh.tets, np.full(len(mesh.tets), 0.1), xe, sb)
    ten = lead_field(mesh.points, mesh.tets, np.tile(0.1 * np.eye(3), (len(mesh.tets), 1, 1)), xe, sb)
    assert np.allclose(iso, ten, rtol=1e-13, atol=0)


def test_record_writes_rows_without_allocating(slab):
    ecg = PseudoECG(slab.points, slab.tets, _sigma(slab), standard_12_lead_positions(slab.points), n_samples=3)
    v = _front(slab.points, 4.0)
    ecg.record(0, 0.0, v)           # warm-up
    tracemalloc.start()
    ecg.record(1, 0.5, v)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1024
    times, values = ecg.recorded()
    assert np.array_equal(times, [0.0, 0.5]) and values.shape == (2, 9)
    assert np.allclose(values[1], ecg.potentials(v))
    header, rows = ecg.table()
    assert header[:2] == ["time_ms", "phi_RA"] and header[-1] == "V6" and rows.shape == (2, 1 + 9 + 12)
    assert np.allclose(ecg.leads()["II"], values[:, 2] - values[:, 0])


def test_standard_leads_formulas():
    rng = np.random.default_rng(1)
    phi = {k: rng.normal(size=5) for k in ("RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6")}
    leads = form_leads(phi)
    assert list(leads) == list(STANDARD_LEADS)
    assert np.allclose(leads["II"], leads["I"] + leads["III"])                 # Einthoven
    assert np.allclose(leads["aVR"] + leads["aVL"] + leads["aVF"], 0.0)       # Goldberger
    wct = (phi["RA"] + phi["LA"] + phi["LL"]) / 3
    assert np.allclose(leads["V3"], phi["V3"] - wct)
    assert np.allclose(leads["aVF"], phi["LL"] - 0.5 * (phi["RA"] + phi["LA"]))
    assert list(form_leads({"RA": 1.0, "LA": 2.0, "LL": 4.0})) == ["I", "II", "III", "aVR", "aVL", "aVF"]
    assert form_leads(phi, {"bip": {"V1": 1, "V2": -1}})["bip"] == pytest.approx(phi["V1"] - phi["V2"])
    with pytest.raises(ObserverError, match="unknown standard lead"):
        form_leads(phi, ["V7"])
    with pytest.raises(ObserverError, match="needs electrode"):
        form_leads({"RA": 1.0}, ["I"])
    assert issubclass(ObserverError, TwinError)


def test_standard_positions_surround_the_mesh(slab):
    pos = standard_12_lead_positions(slab.points)
    assert list(pos) == ["RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6"]
    radius = 0.5 * np.linalg.norm(np.ptp(slab.points, axis=0))
    for xe in pos.values():
        assert np.linalg.norm(slab.points - xe, axis=1).min() >= radius * 0.999
    centre = slab.points.min(axis=0) + 0.5 * np.ptp(slab.points, axis=0)
    assert pos["RA"][0] > centre[0] > pos["LA"][0] and pos["LL"][2] < centre[2]     # right = +x, feet = −z
    assert all(abs(pos[f"V{i}"][2] - centre[2]) < 1e-12 for i in range(1, 7))       # transverse plane
    assert pos["V2"][1] > centre[1] and pos["V6"][0] < centre[0]                    # V2 anterior, V6 left
    lead2 = pos["LL"] - pos["RA"]
    assert np.degrees(np.arctan2(-lead2[2], -lead2[0])) == pytest.approx(60.0)      # hexaxial +60°


def _qrs_t_signal(dt=0.1, t_on=50.0, t_mu=300.0, t_sd=20.0, t_amp=0.2):
    """Piecewise-linear QRS (Q, R, S, return) from t_on, Gaussian T wave at t_mu."""
    knots_t = t_on + np.array([0.0, 5.0, 20.0, 35.0, 45.0])
    knots_v = np.array([0.0, -0.1, 1.0, -0.3, 0.0])
    t = np.arange(0.0, 500.0 + dt / 2, dt)
    s = np.interp(t, knots_t, knots_v) + t_amp * np.exp(-0.5 * ((t - t_mu) / t_sd) ** 2)
    return t, s, (knots_t[0], knots_t[-1]), t_mu + 2 * t_sd


@pytest.mark.parametrize("dt", [0.1, 0.5])
def test_qrs_and_qt_on_a_synthetic_beat(dt):
    t, s, (on, off), t_end = _qrs_t_signal(dt=dt, t_on=50.3)
    onset, offset = qrs_onset_offset(t, s)
    assert abs(onset - on) <= dt / 2 and abs(offset - off) <= dt / 2
    assert qrs_duration(t, s) == pytest.approx(off - on, abs=dt)
    # tangent at the Gaussian's inflection point μ+σ meets the baseline at μ+2σ
    assert t_wave_end(t, s) == pytest.approx(t_end, abs=0.05)
    assert qt_interval(t, s) == pytest.approx(t_end - on, abs=dt / 2 + 0.05)
    # an inverted T wave and an inverted, offset signal give the same intervals
    t2, s2, _, _ = _qrs_t_signal(dt=dt, t_on=50.3, t_amp=-0.2)
    assert t_wave_end(t2, s2) == pytest.approx(t_end, abs=0.05)
    assert qt_interval(t, 3.0 - s) == pytest.approx(qt_interval(t, s), abs=1e-9)


def test_planar_wave_in_a_slab_qrs_spans_the_activation():
    """A planar wave gives a square QRS pulse (the dipole appears at the paced face and vanishes at
    the far one): its duration is the total activation time plus the upstroke; the T wave is
    concordant when the last-activated end repolarises first."""
    mesh = box_mesh((12.0, 4.0, 2.0), 0.5)
    sigma = conductivity_tensors(mesh.fibres, 0.17, 0.019)
    ecg = PseudoECG(mesh.points, mesh.tets, sigma, {"ahead": (30.0, 2.0, 1.0), "behind": (-18.0, 2.0, 1.0)},
                    n_samples=801)
    x = mesh.points[:, 0]
    act, apd, upstroke = x / 0.6, 300.0 - 3.0 * x, 1.5
    t = np.arange(0.0, 400.0 + 1e-9, 0.5)
    for k, tk in enumerate(t):
        u = tk - act
        ecg.record(k, tk, -85.0 + 115.0 * np.clip(u / upstroke, 0, 1) / (1.0 + np.exp((u - apd) / 8.0)))
    ahead, behind = ecg.electrode("ahead"), ecg.electrode("behind")
    assert list(ecg.leads()) == ["ahead", "behind"]                 # no limb electrodes: unipolar leads
    assert ecg.table()[0] == ["time_ms", "phi_ahead", "phi_behind"]
    for sig in (ahead, behind):
        assert qrs_duration(t, sig) == pytest.approx(12.0 / 0.6 + upstroke, abs=1.0)
        assert 300.0 < qt_interval(t, sig) < 340.0
    assert ahead[t == 10.0] > 0 > behind[t == 10.0]
    t_wave = ahead[t > 100.0]
    assert t_wave[np.argmax(np.abs(t_wave))] > 0                                   # upright T ahead


def test_ecg_metric_errors():
    t = np.linspace(0, 10, 11)
    with pytest.raises(ObserverError, match="flat"):
        qrs_duration(t, np.zeros(11))
    with pytest.raises(ObserverError, match="increase"):
        qrs_duration(t[::-1], t)
    with pytest.raises(ObserverError):
        qt_interval(t, np.r_[np.zeros(5), 1.0, np.ones(5)])   # no T wave


def test_ecg_constructor_errors(slab):
    with pytest.raises(ObserverError, match="at least one electrode"):
        PseudoECG(slab.points, slab.tets, _sigma(slab), {})
    with pytest.raises(ObserverError, match="sigma_tensors"):
        PseudoECG(slab.points, slab.tets, np.ones((3, 3, 3)), {"a": (30, 0, 0)})
    with pytest.raises(ObserverError, match="sigma_bath"):
        PseudoECG(slab.points, slab.tets, _sigma(slab), {"a": (30, 0, 0)}, sigma_bath=0.0)
    centroid = slab.points[slab.tets[0]].mean(axis=0)
    with pytest.raises(ObserverError, match="centroid"):
        PseudoECG(slab.points, slab.tets, _sigma(slab), {"a": centroid})


# ============================================================================ repolarisation

def _ap(t, start, up=2.0, peak_hold=5.0, plateau=(30.0, 10.0, 100.0), down=100.0, rest=-85.0):
    """Piecewise-linear action potential(s) starting at each time in ``start``."""
    v = np.full_like(t, rest)
    for s in np.atleast_1d(start):
        hi, lo, dur = plateau
        kt = s + np.cumsum([0.0, up, peak_hold, dur, down])
        kv = [rest, hi, hi, lo, rest]
        inside = (t >= kt[0]) & (t <= kt[-1])
        v[inside] = np.interp(t[inside], kt, kv)
    return v


def _crossing(start, level, up=2.0, peak_hold=5.0, plateau=(30.0, 10.0, 100.0), down=100.0, rest=-85.0):
    """Exact (activation at `level` up, repolarisation at `level` down) of one _ap beat."""
    hi, lo, dur = plateau
    act = start + up * (level - rest) / (hi - rest)
    rep = start + up + peak_hold + dur + down * (lo - level) / (lo - rest)
    return act, rep


def _run(obs, traces, t):
    for k in range(len(t) - 1):
        obs.update(traces[:, k], traces[:, k + 1], t[k], t[k + 1] - t[k])


@pytest.fixture(scope="module")
def time_axis():
    return np.arange(0.0, 700.0 + 1e-9, 0.1)


def test_repolarisation_at_threshold_exact(time_axis):
    t = time_axis
    starts = np.array([10.03, 12.71, 20.0, 33.33])
    traces = np.stack([_ap(t, s) for s in starts] + [np.full_like(t, -85.0)])   # last node never activates
    rmap = RepolarisationMap(len(traces), -70.0)
    _run(rmap, np.ascontiguousarray(traces), t)
    expect = np.array([_crossing(s, -70.0) for s in starts])
    assert np.allclose(rmap.activation[:4], expect[:, 0], atol=1e-9)
    assert np.allclose(rmap.repolarisation[:4], expect[:, 1], atol=1e-9)
    assert np.allclose(rmap.apd[:4], expect[:, 1] - expect[:, 0], atol=1e-9)
    assert np.isnan(rmap.activation[4]) and np.isnan(rmap.repolarisation[4]) and np.isnan(rmap.apd[4])
    st = rmap.stats()
    assert st["repolarised_nodes"] == 4
    assert st["repolarisation_dispersion_ms"] == pytest.approx(np.ptp(expect[:, 1]), abs=1e-9)
    assert st["apd_dispersion_ms"] == pytest.approx(np.ptp(expect[:, 1] - expect[:, 0]), abs=1e-9)
    assert st["apd_mean_ms"] == pytest.approx(np.mean(expect[:, 1] - expect[:, 0]), abs=1e-9)


def test_true_apd90_uses_each_node_s_rest_and_peak(time_axis):
    t = time_axis
    # different rests and peaks per node: level = peak − 0.9 (peak − rest)
    shapes = [dict(rest=-85.0, plateau=(30.0, 10.0, 100.0)), dict(rest=-80.0, plateau=(40.0, 0.0, 150.0)),
              dict(rest=-90.0, plateau=(20.0, 15.0, 80.0), down=60.0)]
    starts = [10.05, 11.37, 14.91]
    traces = np.ascontiguousarray(np.stack([_ap(t, s, **kw) for s, kw in zip(starts, shapes)]))
    rmap = RepolarisationMap(3, -60.0, apd_percent=90)
    _run(rmap, traces, t)
    for i, (s, kw) in enumerate(zip(starts, shapes)):
        hi, rest = kw["plateau"][0], kw["rest"]
        level = hi - 0.9 * (hi - rest)
        act, _ = _crossing(s, -60.0, **kw)
        _, rep = _crossing(s, level, **kw)
        assert rmap.activation[i] == pytest.approx(act, abs=1e-9)
        assert rmap.repolarisation[i] == pytest.approx(rep, abs=1e-9)
        assert rmap.rest[i] == rest and rmap.peak[i] == hi
    assert rmap.stats()["level"] == "APD90"


def test_two_beats_keep_the_last_and_reset(time_axis):
    t = time_axis
    beats = np.array([10.0, 350.37])
    traces = np.ascontiguousarray(np.stack([_ap(t, beats), _ap(t, beats[:1]), _ap(t, [600.0])]))
    for kw in ({}, {"apd_percent": 90.0}):
        rmap = RepolarisationMap(3, -70.0, **kw)
        _run(rmap, traces, t)
        level = -70.0 if kw == {} else 30.0 - 0.9 * 115.0
        act2 = _crossing(beats[1], -70.0)[0]
        rep2 = _crossing(beats[1], level)[1]
        assert rmap.activation[0] == pytest.approx(act2, abs=1e-9)      # last beat replaces the first
        assert rmap.repolarisation[0] == pytest.approx(rep2, abs=1e-9)
        assert rmap.repolarisation[1] == pytest.approx(_crossing(beats[0], level)[1], abs=1e-9)
        assert np.isnan(rmap.repolarisation[2])                          # beat still in progress at the end
        assert np.isnan(rmap.apd[2]) and np.isnan(rmap.activation[2])

    # reset between the beats: only the second beat is measured
    rmap = RepolarisationMap(3, -70.0)
    half = np.searchsorted(t, 300.0)
    _run(rmap, traces[:, : half + 1], t[: half + 1])
    rmap.reset()
    _run(rmap, np.ascontiguousarray(traces[:, half:]), t[half:])
    assert rmap.activation[0] == pytest.approx(_crossing(beats[1], -70.0)[0], abs=1e-9)
    assert np.isnan(rmap.activation[1])

    # reset in the middle of a beat: that beat is discarded unless asked to keep it
    mid = np.searchsorted(t, 100.0)
    for discard, expect_nan in ((True, True), (False, False)):
        rmap = RepolarisationMap(3, -70.0)
        _run(rmap, traces[:, : mid + 1], t[: mid + 1])
        rmap.reset(discard_in_progress=discard)
        _run(rmap, np.ascontiguousarray(traces[:, mid:half]), t[mid:half])
        assert np.isnan(rmap.repolarisation[1]) == expect_nan


def test_never_repolarising_node_and_stats_when_empty(time_axis):
    t = time_axis[:2000]
    stuck = np.where(t > 20.0, 20.0, -85.0)
    rmap = RepolarisationMap(2, -70.0)
    _run(rmap, np.ascontiguousarray(np.stack([stuck, np.full_like(t, -85.0)])), t)
    # an incomplete beat is not reported: activation, repolarisation and APD stay NaN
    assert np.isnan(rmap.activation).all()
    assert np.isnan(rmap.repolarisation).all() and np.isnan(rmap.apd).all()
    st = rmap.stats()
    assert st["repolarised_nodes"] == 0 and st["apd_mean_ms"] is None


def test_repolarisation_checkpoint_round_trip(time_axis):
    t = time_axis
    traces = np.ascontiguousarray(np.stack([_ap(t, 10.0), _ap(t, 12.0)]))
    full = RepolarisationMap(2, -70.0, apd_percent=90)
    _run(full, traces, t)
    first = RepolarisationMap(2, -70.0, apd_percent=90)
    k = 1500
    _run(first, traces[:, : k + 1], t[: k + 1])
    saved = {key: a.copy() for key, a in first.checkpoint_arrays().items()}
    resumed = RepolarisationMap(2, -70.0, apd_percent=90)
    resumed.restore(saved)
    _run(resumed, np.ascontiguousarray(traces[:, k:]), t[k:])
    assert np.array_equal(resumed.repolarisation, full.repolarisation)


def test_repolarisation_errors():
    with pytest.raises(ObserverError, match="apd_percent"):
        RepolarisationMap(3, -70.0, apd_percent=100)
    with pytest.raises(ObserverError, match="finite"):
        RepolarisationMap(3, np.nan)


# ============================================================================ reentry

def _rotating(t, n, period, start, duration=100.0, up=2.0, down=10.0, phase_span=None):
    """Node i activates at start + i·span/n + k·period: a wave circling a ring of n nodes."""
    span = period if phase_span is None else phase_span
    phase = start + span * np.arange(n) / n
    u = np.mod(t[None, :] - phase[:, None], period)
    began = t[None, :] >= phase[:, None]
    kt = [0.0, up, duration, duration + down]
    v = np.interp(u, kt, [-80.0, 20.0, 20.0, -80.0])
    return np.ascontiguousarray(np.where(began, v, -80.0)), phase


def test_rotating_wave_cycle_length_is_exact():
    t = np.arange(0.0, 1200.0 + 1e-9, 0.1)
    period = 173.3
    traces, phase = _rotating(t, 24, period, start=3.0)
    det = ReentryDetector(24, 0.0, last_stimulus_end=5.0, min_duration=500.0, history=3)
    _run(det, traces, t)
    assert det.sustained
    assert det.cycle_length == pytest.approx(period, abs=1e-9)
    assert np.allclose(det.intervals(), period, atol=1e-9)
    # node 0 crossed at 3 + 1.6 < 5 ms (during the stimulus), so it has one late activation less
    first_cross = phase + 1.6
    n_late = [int(np.sum(f + period * np.arange(20) >= 5.0) - np.sum(f + period * np.arange(20) > 1200.0))
              for f in first_cross]
    assert det.count.tolist() == n_late
    assert det.cycles == int(np.median(np.array(n_late) - 1))
    s = det.summary()
    assert s["sustained"] and s["exit_sites"] == [] and s["max_activations_per_node"] == max(n_late)
    assert s["last_activation_ms"] == pytest.approx(max(f + period * ((1200.0 - f) // period) for f in first_cross))


def test_exit_sites_after_quiescence_of_monitored_nodes():
    """A circuit whose slow part (first 12 nodes) is not monitored: the healthy part falls quiet
    every cycle and the first healthy node to activate is the exit site."""
    t = np.arange(0.0, 800.0 + 1e-9, 0.1)
    period, n = 200.0, 24
    traces, phase = _rotating(t, n, period, start=50.0, phase_span=period * 0.9)
    monitor = np.arange(n) >= 12
    points = np.column_stack([np.arange(n), np.zeros(n), np.zeros(n)]).astype(float)
    det = ReentryDetector(n, 0.0, last_stimulus_end=5.0, min_duration=300.0, monitor=monitor, points=points,
                          quiescent_gap=20.0)
    _run(det, traces, t)
    exits = det.exit_sites()
    cross12 = phase[12] + 1.6
    expected = [cross12 + k * period for k in range(4) if cross12 + k * period <= 800.0]
    assert [e["node"] for e in exits] == [12] * len(expected)
    assert [e["time_ms"] for e in exits] == pytest.approx(expected, abs=1e-9)
    assert exits[0]["xyz_mm"] == [12.0, 0.0, 0.0]
    assert det.summary()["exit_site"] == exits[0] and det.summary()["exit_cycles"] == len(expected)


def test_paced_wave_lagging_a_short_stimulus_is_not_an_exit():
    """Upstrokes that cross the threshold just after the last stimulus ends belong to the paced wave."""
    t = np.arange(0.0, 400.0 + 1e-9, 0.1)
    starts = 0.5 + 0.7 * np.arange(10)           # first crossing at 0.5 + 1.6 > stimulus end 1 ms
    traces = np.ascontiguousarray(np.stack([_ap(t, s) for s in starts]))
    det = ReentryDetector(10, 0.0, last_stimulus_end=1.0, min_duration=200.0, quiescent_gap=5.0)
    _run(det, traces, t)
    assert det.exit_sites() == [] and det.count.tolist() == [1] * 10


def test_single_beat_after_stimulus_is_not_sustained():
    t = np.arange(0.0, 600.0 + 1e-9, 0.1)
    n = 30
    starts = 2.0 + 0.7 * np.arange(n)            # one planar wave, launched by a stimulus ending at 2 ms
    traces = np.ascontiguousarray(np.stack([_ap(t, s) for s in starts]))
    det = ReentryDetector(n, -40.0, last_stimulus_end=2.0, min_duration=200.0)
    _run(det, traces, t)
    assert not det.sustained
    assert det.cycle_length is None and det.cycles == 0
    assert det.count.tolist() == [1] * n
    assert det.summary()["last_activation_ms"] == pytest.approx(_crossing(starts[-1], -40.0)[0], abs=1e-9)


def test_reentry_checkpoint_and_errors():
    t = np.arange(0.0, 600.0 + 1e-9, 0.1)
    traces, _ = _rotating(t, 6, 150.0, start=1.0)
    full = ReentryDetector(6, 0.0, 5.0, 200.0)
    _run(full, traces, t)
    part = ReentryDetector(6, 0.0, 5.0, 200.0)
    _run(part, traces[:, :3001], t[:3001])
    resumed = ReentryDetector(6, 0.0, 5.0, 200.0)
    resumed.restore({k: a.copy() for k, a in part.checkpoint_arrays().items()})
    _run(resumed, np.ascontiguousarray(traces[:, 3000:]), t[3000:])
    assert resumed.summary() == full.summary()
    with pytest.raises(ObserverError, match="history"):
        ReentryDetector(6, 0.0, 5.0, 200.0, history=1)
    with pytest.raises(ObserverError, match="min_duration"):
        ReentryDetector(6, 0.0, 5.0, -1.0)
    with pytest.raises(ObserverError, match="monitor"):
        ReentryDetector(6, 0.0, 5.0, 10.0, monitor=np.ones(5, bool))
