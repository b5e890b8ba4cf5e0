"""Named regions in case files: selectors, conductivity/parameter changes, dense scar, fibrosis."""

from __future__ import annotations

import numpy as np
import pytest

from twin.case import RegionSpec, case_from_text, load_case
from twin.errors import CaseError, MeshError
from twin.mesh import box_mesh
from twin.mesh.regions import select, transmural_depth
from twin.solver.setup import build_problem
from twin.solver.simulation import Simulation


def _mesh_with_surfaces():
    """A 4 x 1 x 1 mm box whose x = 0 face is 'endo' and x = 4 face 'epi', with a scalar field."""
    m = box_mesh((4.0, 1.0, 1.0), 0.25)
    m.point_data["surface_endo"] = (m.points[:, 0] == 0.0).astype(np.int8)
    m.point_data["surface_epi"] = (m.points[:, 0] == 4.0).astype(np.int8)
    m.point_data["lge"] = m.points[:, 0] * 10.0
    return m


def _sel(mesh, **kw):
    return select(mesh.points, mesh.tets, mesh.regions, RegionSpec(**kw), mesh.point_data, mesh.cell_data)


def test_selectors():
    m = _mesh_with_surfaces()
    x = m.points[:, 0]
    c = m.points[m.tets].mean(axis=1)
    cyl = _sel(m, cylinder={"start": (1, 0.5, 0.5), "end": (3, 0.5, 0.5), "radius": 0.3})
    r = np.linalg.norm(m.points[:, 1:] - 0.5, axis=1)
    assert np.array_equal(cyl.nodes, (x >= 1) & (x <= 3) & (r <= 0.3 + 1e-9))
    near = _sel(m, surface={"name": "endo", "max": 1.0})
    assert np.array_equal(near.nodes, x <= 1.0 + 1e-9)
    assert np.array_equal(near.elements, c[:, 0] <= 1.0)
    depth = transmural_depth(m.points, m.point_data)
    np.testing.assert_allclose(depth, x / 4.0)
    mid = _sel(m, transmural={"min": 0.25, "max": 0.5})
    assert np.array_equal(mid.nodes, (x >= 1 - 1e-9) & (x <= 2 + 1e-9))
    hot = _sel(m, field={"name": "lge", "min": 30.0})
    assert np.array_equal(hot.nodes, x >= 3.0)
    assert np.array_equal(hot.elements, c[:, 0] * 10 >= 30.0)
    with pytest.raises(MeshError, match="no surface 'base'; surfaces: endo, epi"):
        _sel(m, surface={"name": "base", "max": 1.0})
    with pytest.raises(MeshError, match="no field 'thickness'"):
        _sel(m, field={"name": "thickness", "max": 1.0})


SLAB = """
name: scar
mesh: {generator: box, size: [10, 6, 0.5], spacing: 0.25}
tissue: {sigma_l: 0.17, sigma_t: 0.17, fibres: {source: uniform, direction: [1, 0, 0]}}
model: {name: mitchell_schaeffer}
regions:
  - name: scar
    where: {box: {min: [4, 0, 0], max: [6, 6, 0.5]}}
    dense_scar: true
  - name: isthmus
    where: {box: {min: [3.9, 2.5, 0], max: [6.1, 3.5, 0.5]}}
    tissue: {sigma_l: x0.5, sigma_t: x0.5}
    parameters: {tau_close: x1.2}
stimuli:
  - region: {box: {min: [0, 0, 0], max: [0.5, 6, 0.5]}}
    strength: 50000 uA/cm^3
    duration: 2 ms
solver: {dt: 0.04, end_time: 60}
outputs: {interval: 0}
"""


def _run(text: str):
    problem = build_problem(case_from_text(text))
    return problem, Simulation(problem).run()


def test_dense_scar_blocks_and_isthmus_conducts():
    problem, result = _run(SLAB)
    p = problem.mesh.points
    act = result.activation
    inside_scar = (p[:, 0] > 4.01) & (p[:, 0] < 5.99) & ((p[:, 1] < 2.49) | (p[:, 1] > 3.51))
    assert inside_scar.sum() > 100
    assert np.all(np.isnan(act[inside_scar])), "dense scar must not activate"
    assert not problem.excitable[inside_scar].any()
    isthmus = (p[:, 0] > 4.2) & (p[:, 0] < 5.8) & (np.abs(p[:, 1] - 3.0) < 0.4)
    assert np.all(np.isfinite(act[isthmus])), "the isthmus conducts"
    beyond = p[:, 0] > 6.5
    assert np.all(np.isfinite(act[beyond])), "the wave exits the isthmus"
    # the far corners are reached only around through the isthmus: later than straight across
    corner = np.flatnonzero((p[:, 0] == 10) & (p[:, 1] == 0))[0]
    _, open_result = _run(SLAB.replace("dense_scar: true", "tissue: {sigma_l: x1.0}"))
    assert act[corner] > open_result.activation[corner] + 2.0
    # parameters changed only in the isthmus nodes; conductivity shown per element
    j = problem.model.param_names.index("tau_close")
    rows = problem.params[problem.node_region, j]
    assert np.all(rows[isthmus] == pytest.approx(180.0)) and np.all(rows[p[:, 0] < 3] == 150.0)
    assert set(problem.cell_fields) >= {"named_region", "sigma_l", "dense_scar", "region"}


def test_closed_scar_blocks_everything():
    text = SLAB.replace("min: [3.9, 2.5, 0], max: [6.1, 3.5, 0.5]", "min: [0, 0, 0], max: [1, 1, 0.5]")
    problem, result = _run(text)
    assert np.all(np.isnan(result.activation[problem.mesh.points[:, 0] > 6.01]))


def test_fibrosis_is_reproducible():
    text = SLAB.replace("""    dense_scar: true
""", """    fibrosis: {density: 0.3, seed: 4}
""")
    a = build_problem(case_from_text(text))
    b = build_problem(case_from_text(text))
    assert np.array_equal(a.cell_fields["sigma_l"], b.cell_fields["sigma_l"])
    region = a.cell_fields["named_region"] == 1
    zero = a.cell_fields["sigma_l"][region] == 0.0
    assert 0.25 < zero.mean() < 0.35
    c = build_problem(case_from_text(text.replace("seed: 4", "seed: 5")))
    assert not np.array_equal(a.cell_fields["sigma_l"], c.cell_fields["sigma_l"])


def test_region_errors(write_case):
    bad = {
        "empty": (SLAB.replace("min: [4, 0, 0], max: [6, 6, 0.5]", "min: [40, 0, 0], max: [60, 6, 0.5]"),
                  "regions[0].where: region 'scar' contains no element"),
        "param": (SLAB.replace("tau_close: x1.2", "tau_closed: x1.2"),
                  "regions[1].parameters.tau_closed: unknown parameter"),
        "twice": (SLAB.replace("name: isthmus", "name: scar"), "regions[1].name: region name 'scar' is used twice"),
        "nothing": (SLAB.replace("    dense_scar: true\n", ""), "a region must change something"),
        "surface": (SLAB.replace("{box: {min: [4, 0, 0], max: [6, 6, 0.5]}}", "{surface: {name: endo, max: 2}}"),
                    "no surface 'endo'"),
        "factor": (SLAB.replace("sigma_l: x0.5", "sigma_l: y0.5"), "regions[1].tissue.sigma_l"),
    }
    for name, (text, expected) in bad.items():
        path = write_case(text, f"{name}.yaml")
        with pytest.raises(CaseError) as info:
            build_problem(load_case(path))
        assert expected in str(info.value), (name, str(info.value))
