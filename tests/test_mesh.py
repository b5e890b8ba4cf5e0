"""Meshes: generator, checks, readers/writers (meshio formats and CARP), region selection."""

from __future__ import annotations

import logging

import meshio
import numpy as np
import pytest

from twin.errors import MeshError
from twin.mesh import TetMesh, box_mesh, mesh_hash, read_mesh, write_carp, write_mesh
from twin.mesh.regions import select_nodes


def faces(tets: np.ndarray) -> np.ndarray:
    f = tets[:, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]].reshape(-1, 3)
    return np.sort(f, axis=1)


def test_box_counts_volume_orientation_and_conformity():
    m = box_mesh((2.0, 1.5, 1.0), 0.5)
    nx, ny, nz = 4, 3, 2
    assert m.n_points == (nx + 1) * (ny + 1) * (nz + 1)
    assert m.n_tets == 6 * nx * ny * nz
    vol = m.volumes()
    assert np.all(vol > 0)
    assert vol.sum() == pytest.approx(3.0)
    _, counts = np.unique(faces(m.tets), axis=0, return_counts=True)
    assert set(counts) <= {1, 2}                           # conforming: a face has one or two tets
    f, c = np.unique(faces(m.tets), axis=0, return_counts=True)
    bf = f[c == 1]
    p = m.points[bf]
    area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum()
    assert area == pytest.approx(2 * (2 * 1.5 + 2 * 1 + 1.5 * 1))  # boundary faces tile the box surface
    assert np.allclose(m.fibres, [1, 0, 0])


def test_box_rejects_bad_sizes():
    with pytest.raises(MeshError, match="size"):
        box_mesh((1.0, -1.0, 1.0), 0.1)
    with pytest.raises(MeshError, match="spacing"):
        box_mesh((1.0, 1.0, 1.0), 0.0)


def tiny() -> TetMesh:
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], float)
    tets = np.array([[0, 1, 2, 3], [1, 2, 3, 4]])
    return TetMesh(pts, tets, fibres=np.array([[2.0, 0, 0], [0, 3.0, 0]]), regions=np.array([1, 2]))


def test_check_reorients_inverted_elements(caplog):
    m = tiny()
    m.tets[1] = m.tets[1][[0, 2, 1, 3]] if m.volumes()[1] > 0 else m.tets[1]
    assert (m.volumes() < 0).sum() == 1
    with caplog.at_level(logging.WARNING, logger="twin"):
        c = m.check(source="t.vtu")
    assert np.all(c.volumes() > 0)
    assert "re-oriented 1 inverted element(s) (first: element 1)" in caplog.text
    assert np.allclose(np.linalg.norm(c.fibres, axis=1), 1.0)


def test_check_rejects_degenerate_and_nan():
    m = tiny()
    m.points[4] = [1.0 / 3, 1.0 / 3, 1.0 / 3]                  # coplanar with face 1-2-3
    with pytest.raises(MeshError, match=r"t.vtu: 1 degenerate element\(s\).*first: element 1"):
        m.check(source="t.vtu")
    m = tiny()
    m.points[2, 1] = np.nan
    with pytest.raises(MeshError, match=r"1 node\(s\) have NaN .*first: node 2"):
        m.check(source="t.vtu")
    m = tiny()
    m.fibres[1] = 0.0
    with pytest.raises(MeshError, match=r"zero-length or NaN fibres \(first: element 1\)"):
        m.check()


def test_unreferenced_nodes_are_removed(caplog):
    m = tiny()
    m = TetMesh(np.vstack([m.points, [[5, 5, 5]]]), m.tets, regions=m.regions)
    with caplog.at_level(logging.WARNING, logger="twin"):
        c = m.check()
    assert c.n_points == 5 and "removed 1 node(s)" in caplog.text


def test_shape_errors():
    with pytest.raises(MeshError, match=r"shape \(m, 4\)"):
        TetMesh(np.zeros((4, 3)), np.zeros((1, 3), int))
    with pytest.raises(MeshError, match="reference node"):
        TetMesh(np.zeros((4, 3)), np.array([[0, 1, 2, 7]]))


def test_node_regions_majority_with_ties_to_smallest():
    m = tiny()
    tags, idx = m.node_regions()
    assert tags.tolist() == [1, 2]
    # node 0 only in tet 0 (tag 1); node 4 only in tet 1 (tag 2); shared nodes tie -> tag 1
    assert tags[idx].tolist() == [1, 1, 1, 1, 2]
    m3 = TetMesh(m.points, np.array([[0, 1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4]]), regions=[1, 2, 2])
    assert tags[m3.node_regions()[1]].tolist()[1] == 2


def test_vtu_round_trip_with_fibres_and_tags(tmp_path):
    m = box_mesh((1.0, 1.0, 1.0), 0.5, fibre=(0, 1, 0), region=3)
    write_mesh(m, tmp_path / "m.vtu")
    r = read_mesh(tmp_path / "m.vtu")
    assert np.allclose(r.points, m.points) and np.array_equal(r.tets, m.tets)
    assert np.allclose(r.fibres, [0, 1, 0]) and set(r.regions) == {3}
    assert r.n_tets == m.n_tets


def test_point_fibres_and_gmsh(tmp_path):
    m = box_mesh((1.0, 1.0, 1.0), 0.5)
    pf = np.tile([0.0, 0.0, 2.0], (m.n_points, 1))
    meshio.write(tmp_path / "p.vtu", meshio.Mesh(m.points, [("tetra", m.tets)], point_data={"fiber": pf}))
    r = read_mesh(tmp_path / "p.vtu")
    assert np.allclose(r.fibres, [0, 0, 1])
    meshio.write(tmp_path / "g.msh", meshio.Mesh(m.points, [("tetra", m.tets)],
                                                cell_data={"gmsh:physical": [np.full(m.n_tets, 7)],
                                                           "gmsh:geometrical": [np.full(m.n_tets, 1)]}),
                 file_format="gmsh22", binary=False)
    g = read_mesh(tmp_path / "g.msh")
    assert g.n_tets == m.n_tets and set(g.regions) == {7} and g.fibres is None


def test_carp_round_trip_um_to_mm(tmp_path):
    m = box_mesh((2.0, 1.0, 1.0), 0.5, fibre=(1, 1, 0), region=2)
    m.sheets = np.tile([0.0, 0.0, 1.0], (m.n_tets, 1))
    write_carp(m, tmp_path / "heart")
    first = (tmp_path / "heart.pts").read_text().splitlines()[1].split()
    assert float(first[0]) == 0.0 and (tmp_path / "heart.lon").read_text().startswith("2\n")
    r = read_mesh(tmp_path / "heart.elem")                # unit auto -> µm for CARP
    assert np.allclose(r.points, m.points)
    assert np.array_equal(r.tets, m.tets) and set(r.regions) == {2}
    assert np.allclose(r.fibres, m.fibres) and np.allclose(r.sheets, m.sheets)
    r_mm = read_mesh(tmp_path / "heart.pts", unit="mm")
    assert np.allclose(r_mm.points, m.points * 1000.0)


def test_carp_lon_without_header_and_bad_elements(tmp_path):
    m = box_mesh((1.0, 1.0, 1.0), 1.0)
    write_carp(m, tmp_path / "a")
    body = (tmp_path / "a.lon").read_text().splitlines()[1:]
    (tmp_path / "a.lon").write_text("\n".join(body) + "\n")
    assert np.allclose(read_mesh(tmp_path / "a").fibres, [1, 0, 0])
    (tmp_path / "a.elem").write_text("1\nTr 0 1 2 0\n")
    with pytest.raises(MeshError, match="only tetrahedra"):
        read_mesh(tmp_path / "a.elem")


def test_read_errors_are_clear(tmp_path):
    with pytest.raises(MeshError, match="mesh file not found"):
        read_mesh(tmp_path / "nothing.vtu")
    m = box_mesh((1.0, 1.0, 1.0), 0.5)
    write_mesh(m, tmp_path / "m.vtu")
    with pytest.raises(MeshError, match="no fibre array named 'f_x'; arrays in the file: fibres, region"):
        read_mesh(tmp_path / "m.vtu", fibres="f_x")
    tri = meshio.Mesh(np.eye(3), [("triangle", np.array([[0, 1, 2]]))])
    meshio.write(tmp_path / "tri.vtu", tri)
    with pytest.raises(MeshError, match="no tetrahedra in the file \\(cell types found: triangle\\)"):
        read_mesh(tmp_path / "tri.vtu")
    (tmp_path / "bad.vtu").write_text("this is not xml")
    with pytest.raises(MeshError, match="cannot read mesh"):
        read_mesh(tmp_path / "bad.vtu")


def test_mesh_hash_is_stable_and_sensitive():
    a, b = box_mesh((1.0, 1.0, 1.0), 0.5), box_mesh((1.0, 1.0, 1.0), 0.5)
    assert mesh_hash(a) == mesh_hash(b)
    b.points[3, 0] += 1e-9
    assert mesh_hash(a) != mesh_hash(b)


def test_region_selectors():
    from twin.case import RegionSpec

    m = box_mesh((2.0, 1.0, 1.0), 0.5, region=4)

    def nodes(**kw):
        return select_nodes(m.points, m.tets, m.regions, RegionSpec(**kw))

    assert len(nodes(box={"min": (0, 0, 0), "max": (0.5, 1, 1)})) == 2 * 3 * 3
    s = nodes(sphere={"center": (1.0, 0.5, 0.5), "radius": 0.5})
    assert np.all(np.linalg.norm(m.points[s] - [1.0, 0.5, 0.5], axis=1) <= 0.5 + 1e-9)
    assert len(nodes(tag=4)) == m.n_points
    assert len(nodes(tag=[9])) == 0
    with pytest.raises(MeshError, match="out of range"):
        nodes(nodes=[10_000])
