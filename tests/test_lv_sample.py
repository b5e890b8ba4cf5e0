"""The sample LV with an infarct: dense scar blocks, the isthmus conducts, conduction is anisotropic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin.case import load_case
from twin.mesh import read_mesh
from twin.solver.setup import build_problem
from twin.solver.simulation import Simulation

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "lv_apex_pacing.yaml"


@pytest.fixture(scope="module")
def lv_run():
    case = load_case(CASE, ["model.name=mitchell_schaeffer", "model.parameters={}", "regions.0.parameters={}",
                            "solver.dt=0.05", "solver.end_time=100", "outputs.interval=0"])
    problem = build_problem(case)
    return problem, Simulation(problem).run()


def test_sample_mesh_is_complete():
    mesh = read_mesh(ROOT / "meshes" / "lv_scar_isthmus.vtu")
    assert set(np.unique(mesh.regions)) == {1, 2, 3, 4}
    assert mesh.fibres is not None and mesh.sheets is not None
    assert {"surface_endo", "surface_epi", "surface_base", "lge"} <= set(mesh.point_data)
    np.testing.assert_allclose(np.linalg.norm(mesh.fibres, axis=1), 1.0, atol=1e-6)


def test_scar_blocks_and_isthmus_conducts(lv_run):
    problem, result = lv_run
    mesh, act = problem.mesh, result.activation
    scar_nodes = ~problem.excitable
    assert scar_nodes.sum() > 20
    assert np.all(np.isnan(act[scar_nodes])), "dense scar must never activate"
    isthmus = np.zeros(mesh.n_points, bool)
    isthmus[mesh.tets[mesh.regions == 4].ravel()] = True
    inner = isthmus & problem.excitable
    assert inner.sum() > 10 and np.all(np.isfinite(act[inner])), "the isthmus conducts"
    live = act[problem.excitable]
    assert np.isfinite(live).mean() > 0.99


def test_conduction_is_anisotropic(lv_run):
    """Around a point on the epicardium, activation runs faster along the fibres than across them."""
    problem, _ = lv_run
    case = load_case(CASE, ["model.name=mitchell_schaeffer", "model.parameters={}", "regions=[]",
                            "stimuli.0.region.sphere.center=[0, -9.4, -6]", "stimuli.0.region.sphere.radius=1.5",
                            "solver.dt=0.05", "solver.end_time=40", "outputs.interval=0"])
    problem = build_problem(case)
    act = Simulation(problem).run().activation
    mesh = problem.mesh
    p0 = np.array([0.0, -9.4, -6.0])
    epi = mesh.point_data["surface_epi"] != 0
    centroids = mesh.points[mesh.tets].mean(axis=1)
    f = mesh.fibres[np.argmin(np.linalg.norm(centroids - p0, axis=1))]
    normal = np.array([0.0, -1.0, 0.0])
    f = f - normal * (f @ normal)
    f /= np.linalg.norm(f)
    across = np.cross(normal, f)
    d = mesh.points - p0
    ring = epi & (np.linalg.norm(d, axis=1) > 3.0) & (np.linalg.norm(d, axis=1) < 5.0)
    along_sel = ring & (np.abs(d @ f) > 0.9 * np.linalg.norm(d, axis=1))
    across_sel = ring & (np.abs(d @ across) > 0.9 * np.linalg.norm(d, axis=1))
    assert along_sel.sum() >= 2 and across_sel.sum() >= 2
    speed_along = np.mean(np.linalg.norm(d[along_sel], axis=1) / act[along_sel])
    speed_across = np.mean(np.linalg.norm(d[across_sel], axis=1) / act[across_sel])
    assert speed_along > 1.5 * speed_across, (speed_along, speed_across)
