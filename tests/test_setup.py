"""From case to problem: mesh files, fibres, regions, per-region parameters and conductivities."""

from __future__ import annotations

import numpy as np
import pytest

from twin.case import load_case
from twin.errors import CaseError
from twin.mesh import box_mesh, write_carp, write_mesh
from twin.solver.setup import build_problem
from twin.solver.simulation import Simulation

CASE = """
mesh: {{file: {mesh}, unit: {unit}}}
tissue:
  regions: {{2: {{sigma_l: 0.05}}}}
model:
  name: mitchell_schaeffer
  parameters: {{tau_close: 140}}
  regions: {{2: {{parameters: {{tau_close: "x0.5"}}}}}}
stimuli:
  - region: {{tag: 1}}
    strength: 40 A/F
    duration: 1
solver: {{dt: 0.05, end_time: 5}}
outputs: {{interval: 0}}
"""


@pytest.fixture
def two_region_mesh(tmp_path):
    m = box_mesh((2.0, 1.0, 1.0), 0.25, fibre=(0, 0, 1))
    centroids = m.points[m.tets].mean(axis=1)
    m.regions = np.where(centroids[:, 0] < 1.0, 1, 2).astype(np.int32)
    write_mesh(m, tmp_path / "heart.vtu")
    write_carp(m, tmp_path / "heart_carp")
    return tmp_path


def test_mesh_file_regions_and_overrides(two_region_mesh, write_case):
    case = load_case(write_case(CASE.format(mesh="heart.vtu", unit="auto")))
    p = build_problem(case)
    assert p.tags.tolist() == [1, 2]
    col = p.model.param_names.index("tau_close")
    assert p.params[:, col].tolist() == [140.0, 70.0]
    assert np.allclose(p.mesh.fibres, [0, 0, 1])
    # the stimulus is the nodes of region 1 (x <= 1)
    assert p.mesh.points[p.stimuli[0].nodes, 0].max() == pytest.approx(1.0)
    r = Simulation(p).run()
    assert np.isfinite(r.states).all()


def test_carp_mesh_in_micrometres(two_region_mesh, write_case):
    case = load_case(write_case(CASE.format(mesh="heart_carp.pts", unit="auto")))
    p = build_problem(case)
    assert p.mesh.points.max(axis=0) == pytest.approx([2.0, 1.0, 1.0])


def test_unknown_region_tag_and_missing_fibres(two_region_mesh, write_case):
    text = CASE.format(mesh="heart.vtu", unit="auto").replace("{2: {sigma_l: 0.05}}", "{5: {sigma_l: 0.05}}")
    with pytest.raises(CaseError, match=r"tissue.regions\[5\]: no element has region tag 5; tags in the mesh: 1, 2"):
        build_problem(load_case(write_case(text)))
    m = box_mesh((1.0, 1.0, 1.0), 0.5, fibre=None)
    write_mesh(m, two_region_mesh / "nofib.vtu")
    text = CASE.format(mesh="nofib.vtu", unit="auto").replace("regions: {2: {sigma_l: 0.05}}", "regions: {}") \
        .replace("  regions: {2: {parameters: {tau_close: \"x0.5\"}}}\n", "").replace("tag: 1", "tag: 0")
    with pytest.raises(CaseError, match="tissue.fibres.source: the mesh nofib.vtu has no fibre field"):
        build_problem(load_case(write_case(text)))
    ok = load_case(write_case(text), ["tissue.fibres.source=uniform"])
    assert np.allclose(build_problem(ok).mesh.fibres, [1, 0, 0])


def test_problem_keeps_what_the_run_needs_only(write_case):
    """The system matrices replace K and M; element conductivity tensors stay only for a pseudo-ECG."""
    from .conftest import SMALL_CASE

    plain = build_problem(load_case(write_case(SMALL_CASE, "plain.yaml")))
    assert plain.sigma is None and not hasattr(plain, "stiffness")
    assert plain.diffusion.nnz > plain.n_nodes
    with_ecg = build_problem(load_case(write_case(SMALL_CASE.replace(
        "outputs:\n", "outputs:\n  ecg: {electrodes: {far: [20, 0.5, 0.25]}}\n"), "ecg.yaml")))
    assert with_ecg.sigma is not None and with_ecg.sigma.shape == (with_ecg.mesh.n_tets, 3, 3)
