"""Monodomain solver: linear algebra, diffusion, splitting, conduction velocity convergence."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from twin.case import case_from_text
from twin.errors import DivergenceError, SolverError
from twin.fem import lumped_mass, mass_matrix, stiffness_matrix
from twin.mesh import box_mesh
from twin.solver.diffusion import HISTORY, DiffusionStepper
from twin.solver.linalg import N_BLOCKS, blocked_dot, csr_matvec
from twin.solver.setup import build_problem
from twin.solver.simulation import Simulation
from twin.solver.stimulus import StimulusProtocol


def test_csr_matvec_against_scipy():
    rng = np.random.default_rng(1)
    a = sp.random(200, 200, density=0.05, random_state=2)
    a = (a @ a.T + 200 * sp.identity(200)).tocsr()
    x = rng.normal(size=200)
    out = np.zeros(200)
    csr_matvec(a.indptr.astype(np.int64), a.indices.astype(np.int32), a.data, x, out)
    assert np.allclose(out, a @ x)


def test_blocked_dot_is_exact_enough_and_deterministic():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=10007), rng.normal(size=10007)
    partial = np.zeros(N_BLOCKS)
    d1 = blocked_dot(a, b, partial)
    assert d1 == pytest.approx(a @ b, rel=1e-12)
    assert blocked_dot(a, b, partial) == d1


def heat_mode_decay(method: str, theta: float, dt: float, mass: str) -> float:
    """Relative error of the decay of the first Neumann cosine mode after 10 ms."""
    mesh = box_mesh((8.0, 0.25, 0.25), (0.05, 0.25, 0.25))
    k = stiffness_matrix(mesh.points, mesh.tets, np.ones(mesh.n_tets))
    m = lumped_mass(mesh.points, mesh.tets) if mass == "lumped" else mass_matrix(mesh.points, mesh.tets)
    stepper = DiffusionStepper(k, m, chi=1.0, cm=1.0, dt=dt, theta=theta, method=method, tol=1e-12)
    v = np.cos(np.pi * mesh.points[:, 0] / 8.0)
    v0 = v.copy()
    for _ in range(int(round(10.0 / dt))):
        stepper.step(v)
    exact = np.exp(-(np.pi / 8.0) ** 2 * 10.0)
    return abs(v @ v0 / (v0 @ v0) - exact) / exact


def test_diffusion_matches_heat_equation_and_time_orders():
    e_cn = [heat_mode_decay("implicit", 0.5, dt, "consistent") for dt in (2.0, 1.0)]
    e_be = [heat_mode_decay("implicit", 1.0, dt, "consistent") for dt in (1.0, 0.5)]
    assert e_cn[1] < 5e-3
    # spatial error (h = 0.05) is far below these time errors, so the orders show
    assert np.log2(e_be[0] / e_be[1]) == pytest.approx(1.0, abs=0.15)
    assert np.log2(e_cn[0] / e_cn[1]) == pytest.approx(2.0, abs=0.3)
    assert heat_mode_decay("explicit", 0.0, 0.0005, "lumped") < 2e-3


def test_explicit_refuses_unstable_dt():
    mesh = box_mesh((1.0, 1.0, 1.0), 0.1)
    k = stiffness_matrix(mesh.points, mesh.tets, np.ones(mesh.n_tets))
    ml = lumped_mass(mesh.points, mesh.tets)
    with pytest.raises(SolverError, match="unstable with dt = 0.1 ms: the limit"):
        DiffusionStepper(k, ml, chi=1.0, cm=1.0, dt=0.1, method="explicit")
    stepper = DiffusionStepper(k, ml, chi=1.0, cm=1.0, dt=0.001, method="explicit")
    assert 0.001 < stepper.dt_limit < 0.1


def test_stimulus_protocol_timing():
    p = StimulusProtocol("s", np.array([0]), 10.0, start=5.0, duration=2.0, period=100.0, count=3)
    active = [t for t in np.arange(0, 400, 0.5) + 0.25 if p.is_active(t)]
    assert len(active) == 3 * 4
    assert min(active) > 5 and max(active) < 207


PLANAR = """
name: planar
mesh: {{generator: box, size: [{length}, {width}, {width}], spacing: {h}}}
tissue:
  sigma_l: {sl}
  sigma_t: {st}
  fibres: {{source: uniform, direction: {fibre}}}
model: {{name: {model}}}
stimuli:
  - region: {{box: {{min: [0, 0, 0], max: [{stim_x}, {width}, {width}]}}}}
    strength: 60 A/F
    duration: 1
solver: {{dt: {dt}, end_time: {end}, splitting: {splitting}, mass: {mass}}}
outputs: {{interval: 0}}
"""


def planar_cv(h: float, *, sl=0.17, st=0.019, fibre="[1, 0, 0]", model="mitchell_schaeffer", dt=0.01,
              end=30.0, splitting="godunov", mass="consistent", length=8.0, width=None) -> float:
    """Conduction velocity [mm/ms] of a planar wave along x, from activation times at x = 3 and 6 mm."""
    width = width or 2 * h
    case = case_from_text(PLANAR.format(length=length, width=width, h=h, sl=sl, st=st, fibre=fibre,
                                        model=model, stim_x=0.5, dt=dt, end=end, splitting=splitting,
                                        mass=mass))
    problem = build_problem(case)
    result = Simulation(problem).run()
    x = problem.mesh.points[:, 0]
    act = result.activation
    assert np.isfinite(act).all(), "the wave did not reach the end of the slab"
    t3 = act[np.isclose(x, 3.0)].mean()
    t6 = act[np.isclose(x, 6.0)].mean()
    return 3.0 / (t6 - t3)


def test_cv_converges_under_mesh_refinement_with_measured_order():
    hs = (0.2, 0.1, 0.05)
    cvs = [planar_cv(h, dt=0.005) for h in hs]
    d1, d2 = cvs[0] - cvs[1], cvs[1] - cvs[2]
    order = np.log2(abs(d1) / abs(d2))
    assert d1 * d2 > 0, f"CV not monotone under refinement: {cvs}"
    assert order > 1.0, f"observed CV order {order:.2f} for {cvs}"
    assert abs(d2) / cvs[2] < 0.05


def test_cv_ratio_follows_conductivity_ratio():
    """Along/across fibres: CV_l / CV_t = sqrt(σl/σt) (monodomain scaling), on a fine mesh."""
    cv_l = planar_cv(0.025, fibre="[1, 0, 0]", dt=0.005, end=30.0, width=0.05)
    cv_t = planar_cv(0.025, fibre="[0, 1, 0]", dt=0.005, end=70.0, width=0.05)
    expected = np.sqrt(0.17 / 0.019)
    assert cv_l / cv_t == pytest.approx(expected, rel=0.01)


def test_strang_and_godunov_agree_and_threads_reproduce():
    cv_g = planar_cv(0.1, splitting="godunov")
    cv_s = planar_cv(0.1, splitting="strang")
    assert cv_s == pytest.approx(cv_g, rel=0.02)


def test_divergence_is_reported_with_time_step_and_node():
    case = case_from_text(PLANAR.format(length=2.0, width=0.5, h=0.25, sl=0.17, st=0.019, fibre="[1, 0, 0]",
                                        model="aliev_panfilov", stim_x=0.5, dt=1.0, end=50.0,
                                        splitting="godunov", mass="lumped").replace("60 A/F", "1e6 A/F"))
    with pytest.raises(DivergenceError, match=r"non-finite Vm at t = \d+(\.\d+)? ms \(step \d+, node \d+\)"):
        Simulation(build_problem(case)).run()


def test_extrapolated_start_cuts_pcg_iterations_on_a_travelling_front():
    """A front moving a fraction of an element per step: the start extrapolated from the last
    steps' changes needs fewer iterations than starting from V, and reaches the same solution."""
    mesh = box_mesh((10.0, 0.5, 0.5), 0.1)
    k = stiffness_matrix(mesh.points, mesh.tets, np.full(mesh.n_tets, 0.1))
    m = mass_matrix(mesh.points, mesh.tets)
    x = mesh.points[:, 0]

    def front(t: float) -> np.ndarray:   # a sigmoid front at 0.5 mm/ms, steeper than the mesh
        return -85.0 + 105.0 / (1.0 + np.exp((x - 2.0 - 0.5 * t) / 0.3))

    def run(extrapolate: bool) -> tuple[list[int], np.ndarray]:
        stepper = DiffusionStepper(k, m, chi=140.0, cm=0.01, dt=0.01, tol=1e-8)
        its, out = [], None
        for n in range(40):
            v = front(0.01 * n)          # the state the reaction step would hand over
            if not extrapolate:
                stepper.restore({})      # forget the history: start from V
            its.append(stepper.step(v))
            out = v
        return its, out

    with_history, v1 = run(True)
    cold, v0 = run(False)
    assert sum(with_history[5:]) < 0.7 * sum(cold[5:]), (with_history, cold)
    # both stop at ||r|| <= 1e-8 ||b||, with b dominated by the -85 mV offset: ~1e-5 mV apart
    assert np.abs(v1 - v0).max() < 1e-4
    # a checkpoint carries the history: a restored stepper continues exactly
    stepper = DiffusionStepper(k, m, chi=140.0, cm=0.01, dt=0.01, tol=1e-8)
    for n in range(4):
        stepper.step(front(0.01 * n))
    saved = {key: np.array(val, copy=True) for key, val in stepper.checkpoint_arrays().items()}
    assert set(saved) == {"diffusion_changes", "diffusion_history"}
    assert saved["diffusion_changes"].shape == (HISTORY, v1.shape[0])
    a = front(0.04)
    stepper.step(a)
    other = DiffusionStepper(k, m, chi=140.0, cm=0.01, dt=0.01, tol=1e-8)
    other.restore(saved)
    b = front(0.04)
    other.step(b)
    np.testing.assert_array_equal(a, b)
    # a checkpoint of an older twin (the last two changes as diffusion_delta/delta2) continues
    # as a stepper that has seen two steps
    two = DiffusionStepper(k, m, chi=140.0, cm=0.01, dt=0.01, tol=1e-8)
    for n in range(2):
        two.step(front(0.01 * n))
    recent = two.checkpoint_arrays()["diffusion_changes"]
    old_style = {"diffusion_delta": recent[0], "diffusion_delta2": recent[1], "diffusion_history": np.array(2)}
    a = front(0.02)
    two.step(a)
    c = front(0.02)
    resumed = DiffusionStepper(k, m, chi=140.0, cm=0.01, dt=0.01, tol=1e-8)
    resumed.restore(old_style)
    resumed.step(c)
    np.testing.assert_array_equal(c, a)


def test_damped_start_beats_the_linear_one_and_keeps_uncorrected_errors_linear(monkeypatch):
    """The start's quadratic term is damped (κ < 1) so that where PCG corrects nothing the stored
    changes grow at most linearly (roots 1, 1, κ): a second difference ε of noise becomes a slope
    of ε / (1 − κ), where the undamped quadratic start (a triple root) grows like n²; and on a
    smoothly moving front the damped start still needs fewer iterations than the linear one."""
    import twin.solver.diffusion as diffusion

    mesh = box_mesh((4.0, 0.5, 0.5), 0.25)
    k = stiffness_matrix(mesh.points, mesh.tets, np.full(mesh.n_tets, 0.1))
    m = mass_matrix(mesh.points, mesh.tets)
    n = mesh.points.shape[0]
    eps = 1e-9
    seed = {"diffusion_changes": np.stack([np.full(n, eps), np.zeros(n), np.zeros(n)]),
            "diffusion_history": np.array(3)}

    def uncorrected_growth(weights) -> float:
        monkeypatch.setattr(diffusion, "EXTRAPOLATION", weights)
        # a tolerance PCG meets at the start: every step keeps the extrapolated start as it is
        stepper = DiffusionStepper(k, m, chi=140.0, cm=0.01, dt=0.01, tol=1e3)
        stepper.restore(seed)
        v = np.full(n, -85.0)
        for _ in range(200):
            assert stepper.step(v) == 0
        return float(np.abs(v + 85.0).max())

    kappa = diffusion.DAMPING
    assert 0.0 < kappa < 1.0
    damped = uncorrected_growth(diffusion._weights(kappa))
    # V sums 200 changes that grow with slope ε/(1 − κ): about 200²/2 · ε/(1 − κ); the undamped
    # start's changes grow like n²/2 · ε, V like n³/6 · ε
    assert damped < 200 ** 2 * eps / (1.0 - kappa)
    undamped = uncorrected_growth(diffusion._weights(1.0))
    assert undamped > 200 ** 3 / 12 * eps

    x = mesh.points[:, 0]

    def iterations(weights) -> int:
        monkeypatch.setattr(diffusion, "EXTRAPOLATION", weights)
        stepper = DiffusionStepper(k, m, chi=140.0, cm=0.01, dt=0.01, tol=1e-10)
        total = 0
        for step in range(60):
            v = -85.0 + 105.0 / (1.0 + np.exp((x - 1.0 - 0.5 * 0.01 * step) / 0.3))
            total += stepper.step(v)
        return total

    # κ = 0 is the linear start
    assert iterations(diffusion._weights(kappa)) < iterations(diffusion._weights(0.0))
