"""Idealised LV and biventricular anatomy meshed with gmsh (twin.mesh.anatomy)."""

from __future__ import annotations

import gmsh
import numpy as np
import pytest

from twin.errors import MeshError
from twin.mesh.anatomy import biv_ellipsoids, lv_ellipsoid, truncated_ellipsoid_volume


@pytest.fixture(scope="module")
def lv():
    return lv_ellipsoid(2.0)


@pytest.fixture(scope="module")
def biv():
    return biv_ellipsoids(2.0)


def boundary_faces(tets: np.ndarray) -> np.ndarray:
    f = np.sort(tets[:, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]].reshape(-1, 3), axis=1)
    uniq, counts = np.unique(f, axis=0, return_counts=True)
    assert set(counts) <= {1, 2}  # conforming
    return uniq[counts == 1]


def level(x: np.ndarray, centre, radii) -> np.ndarray:
    return np.sum(((x - np.asarray(centre, float)) / np.asarray(radii, float)) ** 2, axis=1)


def assert_surfaces_tile_boundary(mesh, names):
    """Every boundary triangle lies in exactly one named surface (all three nodes in its mask)."""
    faces = boundary_faces(mesh.tets)
    inside = np.stack([np.all(mesh.point_data[f"surface_{n}"][faces] == 1, axis=1) for n in names], axis=1)
    assert np.all(inside.sum(axis=1) == 1)


def test_lv_is_a_valid_mesh_with_named_surfaces(lv):
    assert lv.n_tets > 1000 and lv.tets.dtype == np.int32
    assert np.all(lv.volumes() > 0)
    again = lv.check(source="test")  # already checked: nothing to change
    assert np.array_equal(again.tets, lv.tets) and again.n_points == lv.n_points
    masks = {k: lv.point_data[f"surface_{k}"] for k in ("endo", "epi", "base")}
    for name, mask in masks.items():
        assert mask.dtype == np.int8 and mask.shape == (lv.n_points,) and mask.sum() > 10, name
    endo, epi, base = (masks[k] == 1 for k in ("endo", "epi", "base"))
    assert not np.any(endo & epi)
    # the rims belong to the base and to their wall
    assert np.any(base & endo) and np.any(base & epi)
    x = lv.points
    assert np.allclose(level(x[endo], (0, 0, 0), (7, 7, 17)), 1.0, atol=1e-6)
    assert np.allclose(level(x[epi], (0, 0, 0), (10, 10, 20)), 1.0, atol=1e-6)
    assert np.allclose(x[base, 2], 5.0, atol=1e-6)
    assert_surfaces_tile_boundary(lv, ("endo", "epi", "base"))
    # apex down, base plane at the top
    lo, hi = lv.bounding_box()
    assert lo[2] == pytest.approx(-20.0, abs=1e-6) and hi[2] == pytest.approx(5.0, abs=1e-6)
    assert hi[0] == pytest.approx(10.0, abs=0.1)


def test_lv_volume_matches_the_truncated_ellipsoid_shell(lv):
    exact = truncated_ellipsoid_volume(10, 20, 5) - truncated_ellipsoid_volume(7, 17, 5)
    assert exact == pytest.approx(3234.73, abs=0.01)
    # chords cut the curved surfaces: the discrete shell is slightly smaller
    assert lv.volumes().sum() == pytest.approx(exact, rel=0.01)
    assert lv.volumes().sum() < exact


def test_truncated_ellipsoid_volume_limits():
    assert truncated_ellipsoid_volume(3, 5, 5) == pytest.approx(4 / 3 * np.pi * 9 * 5)
    assert truncated_ellipsoid_volume(3, 5, 0) == pytest.approx(2 / 3 * np.pi * 9 * 5)
    assert truncated_ellipsoid_volume(3, 5, -5) == pytest.approx(0.0)


def test_lv_parameters_and_determinism():
    kw = dict(r_short_endo=5.0, r_short_epi=8.0, r_long_endo=12.0, r_long_epi=15.0, base_z=0.0)
    a = lv_ellipsoid(3.0, **kw)
    b = lv_ellipsoid(3.0, **kw)
    assert np.array_equal(a.points, b.points) and np.array_equal(a.tets, b.tets)
    for key in a.point_data:
        assert np.array_equal(a.point_data[key], b.point_data[key])
    lo, hi = a.bounding_box()
    assert lo[2] == pytest.approx(-15.0, abs=1e-6) and hi[2] == pytest.approx(0.0, abs=1e-6)
    exact = truncated_ellipsoid_volume(8, 15, 0) - truncated_ellipsoid_volume(5, 12, 0)
    assert a.volumes().sum() == pytest.approx(exact, rel=0.03)
    assert not gmsh.isInitialized()  # the generator finalised its own session


def test_generator_inside_a_callers_gmsh_session_leaves_it_open():
    gmsh.initialize(readConfigFiles=False, interruptible=False)
    try:
        gmsh.model.add("caller")
        mesh = lv_ellipsoid(3.0)
        assert gmsh.isInitialized() and mesh.n_tets > 0
        assert gmsh.model.getCurrent() == "caller"
    finally:
        gmsh.finalize()


@pytest.mark.parametrize("kwargs, match", [
    (dict(resolution=0.0), "resolution"),
    (dict(resolution=float("nan")), "resolution"),
    (dict(resolution="fine"), "resolution"),
    (dict(r_short_endo=10.0), "r_short_endo"),
    (dict(r_long_endo=21.0), "r_long_endo"),
    (dict(r_short_epi=-1.0), "r_short_epi"),
    (dict(base_z=17.0), "base_z"),
    (dict(base_z=25.0), "base_z"),
    (dict(base_z=-18.0), "base_z"),
    (dict(resolution=0.05), "max_tets"),
])
def test_lv_rejects_bad_parameters(kwargs, match):
    with pytest.raises(MeshError, match=match):
        lv_ellipsoid(**kwargs)


def test_biv_is_a_valid_mesh_with_named_surfaces(biv):
    assert np.all(biv.volumes() > 0)
    names = ("lv_endo", "rv_endo", "epi", "base")
    masks = {k: biv.point_data[f"surface_{k}"] == 1 for k in names}
    assert all(m.sum() > 10 for m in masks.values())
    assert not np.any(masks["lv_endo"] & masks["rv_endo"])
    assert not np.any(masks["lv_endo"] & masks["epi"])
    assert not np.any(masks["rv_endo"] & masks["epi"])
    assert_surfaces_tile_boundary(biv, names)
    x = biv.points
    assert np.allclose(level(x[masks["lv_endo"]], (0, 0, 0), (7, 7, 17)), 1.0, atol=1e-6)
    # the RV endocardium: its own ellipsoid (free wall) or the LV epicardium (septum)
    rv = x[masks["rv_endo"]]
    on_free = np.isclose(level(rv, (5, 0, 0), (10, 11, 15)), 1.0, atol=1e-6)
    on_septum = np.isclose(level(rv, (0, 0, 0), (10, 10, 20)), 1.0, atol=1e-6)
    assert np.all(on_free | on_septum) and on_free.sum() > 20 and on_septum.sum() > 20
    assert np.all(rv[:, 0] > 0)  # the RV is on the +x side
    # more tissue than the LV shell alone, less than the two outer ellipsoids
    lv_shell = truncated_ellipsoid_volume(10, 20, 5) - truncated_ellipsoid_volume(7, 17, 5)
    assert lv_shell < biv.volumes().sum() < lv_shell + 4 / 3 * np.pi * 13 * 14 * 18


def test_biv_is_deterministic():
    a, b = biv_ellipsoids(3.0), biv_ellipsoids(3.0)
    assert np.array_equal(a.points, b.points) and np.array_equal(a.tets, b.tets)
    assert all(np.array_equal(a.point_data[k], b.point_data[k]) for k in a.point_data)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rv_shift=0.0, rv_radii=(9.0, 11.0, 15.0)), "reach beyond the LV"),
    (dict(rv_shift=2.0, rv_radii=(14.0, 14.0, 15.0)), "encloses"),
    (dict(rv_radii=(10.0, 11.0)), "rv_radii"),
    (dict(rv_radii=(10.0, -1.0, 15.0)), "rv_radii"),
    (dict(base_z=16.0), "RV cavity"),
    (dict(rv_wall=0.0), "rv_wall"),
    (dict(r_short_endo=11.0), "endocardial radii"),
])
def test_biv_rejects_bad_parameters(kwargs, match):
    with pytest.raises(MeshError, match=match):
        biv_ellipsoids(3.0, **kwargs)


def test_generated_nodes_are_numbered_for_a_narrow_matrix_band():
    """gmsh's creation order scatters neighbours; the generators renumber by reverse Cuthill-McKee."""
    from twin.mesh.anatomy import bandwidth_order

    mesh = lv_ellipsoid(0.8)
    spread = np.abs(mesh.tets[:, :, None].astype(np.int64) - mesh.tets[:, None, :]).max(axis=(1, 2))
    assert spread.max() < mesh.n_points / 8, (spread.max(), mesh.n_points)
    # the order is a permutation, and a shuffled mesh gets its band back
    rng = np.random.default_rng(0)
    shuffle = rng.permutation(mesh.n_points)
    inverse = np.empty_like(shuffle)
    inverse[shuffle] = np.arange(mesh.n_points)
    scattered = inverse[mesh.tets]
    assert np.abs(scattered[:, :, None].astype(np.int64) - scattered[:, None, :]).max() > mesh.n_points / 2
    perm = bandwidth_order(mesh.n_points, scattered)
    assert np.array_equal(np.sort(perm), np.arange(mesh.n_points))
    back = np.empty_like(perm)
    back[perm] = np.arange(mesh.n_points)
    again = back[scattered]
    assert np.abs(again[:, :, None].astype(np.int64) - again[:, None, :]).max() < mesh.n_points / 8
