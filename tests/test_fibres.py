"""Rule-based fibres (LDRB, Bayer et al. 2012) on the idealised LV and biventricle.

The helix angle is measured here independently of the implementation: against the
circumferential direction of the analytic wall geometry (the family of ellipsoids
between endo- and epicardium), as a function of the analytic depth in the wall.
"""

from __future__ import annotations

import numpy as np
import pytest

from twin.errors import MeshError
from twin.mesh import TetMesh, box_mesh
from twin.mesh.anatomy import biv_ellipsoids, lv_ellipsoid
from twin.mesh.fibres import (_bislerp, _quat_to_rot, _rot_to_quat, laplace_fields, ldrb, transmural_depth,
                              with_ldrb_fibres)

LV_ENDO, LV_EPI = (7.0, 7.0, 17.0), (10.0, 10.0, 20.0)
RV_CENTRE, RV_ENDO, RV_EPI = (5.0, 0.0, 0.0), (10.0, 11.0, 15.0), (13.0, 14.0, 18.0)


@pytest.fixture(scope="module")
def lv():
    mesh = lv_ellipsoid(1.5)
    return mesh, laplace_fields(mesh)


@pytest.fixture(scope="module")
def biv():
    mesh = biv_ellipsoids(2.0)
    return mesh, laplace_fields(mesh)


def wall_geometry(x: np.ndarray, centre, endo, epi) -> tuple[np.ndarray, np.ndarray]:
    """Analytic depth t (0 endo, 1 epi) and outward unit normal of the ellipsoid through each point.

    The wall is the family of ellipsoids with semi-axes ``endo + t (epi − endo)``; t is
    found by bisection (the level decreases monotonically with t).
    """
    x = x - np.asarray(centre)
    endo, epi = np.asarray(endo), np.asarray(epi)
    lo, hi = np.full(len(x), -1.0), np.full(len(x), 2.0)
    for _ in range(60):
        t = 0.5 * (lo + hi)
        outside = np.sum((x / (endo + t[:, None] * (epi - endo))) ** 2, axis=1) > 1.0
        lo, hi = np.where(outside, t, lo), np.where(outside, hi, t)
    t = 0.5 * (lo + hi)
    normal = x / (endo + t[:, None] * (epi - endo)) ** 2
    return t, normal / np.linalg.norm(normal, axis=1, keepdims=True)


def helix_angle(fibres: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Angle [deg] in (−90, 90] of the fibre against the circumferential direction ẑ × n,
    positive towards the base (n × c ≈ +z)."""
    circ = np.cross([0.0, 0.0, 1.0], normal)
    circ /= np.linalg.norm(circ, axis=1, keepdims=True)
    longi = np.cross(normal, circ)
    angle = np.degrees(np.arctan2(np.sum(fibres * longi, axis=1), np.sum(fibres * circ, axis=1)))
    return (angle + 90.0) % 180.0 - 90.0


def centroids(mesh: TetMesh) -> np.ndarray:
    return mesh.points[mesh.tets].mean(axis=1)


def line_fit(t: np.ndarray, angle: np.ndarray) -> tuple[float, float, float]:
    """(value at t = 0, value at t = 1, rms residual) of a least-squares line."""
    slope, intercept = np.polyfit(t, angle, 1)
    return intercept, intercept + slope, float(np.std(angle - (intercept + slope * t)))


def assert_orthonormal(f, s, n):
    for v in (f, s, n):
        assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)
    assert np.abs(np.sum(f * s, axis=1)).max() < 1e-12
    assert np.abs(np.sum(f * n, axis=1)).max() < 1e-12
    assert np.abs(np.sum(s * n, axis=1)).max() < 1e-12
    assert np.allclose(np.cross(f, s), n, atol=1e-12)


def test_laplace_fields_on_the_lv(lv):
    mesh, fields = lv
    endo, epi, base = (mesh.point_data[f"surface_{k}"] == 1 for k in ("endo", "epi", "base"))
    depth = transmural_depth(mesh, fields=fields)
    assert np.all(depth[endo] == 0.0) and np.all(depth[epi] == 1.0)
    assert depth.min() >= 0.0 and depth.max() <= 1.0
    assert np.allclose(fields["lv"] + fields["epi"], 1.0, atol=1e-6)  # one problem, two labels
    # monotone in the analytic depth; harmonic, so bent towards the endocardium
    t, _ = wall_geometry(mesh.points, (0, 0, 0), LV_ENDO, LV_EPI)
    inner = (depth > 0) & (depth < 1)
    assert inner.sum() > 100 and np.corrcoef(t[inner], depth[inner])[0, 1] > 0.9
    assert np.all(depth[inner] > t[inner]) and np.all(depth[inner] < t[inner] + 0.2)
    apex = int(fields["apex_node"])
    assert np.allclose(mesh.points[apex], [0, 0, -20], atol=1e-6)
    psi = fields["apex_base"]
    assert psi[apex] == 0.0 and np.all(psi[base] == 1.0)
    # ψ rises from apex to base along the wall
    assert np.corrcoef(mesh.points[:, 2], psi)[0, 1] > 0.95
    assert np.allclose(transmural_depth(mesh), depth)


def test_lv_fibres_are_orthonormal_and_the_sheet_normal_is_transmural(lv):
    mesh, fields = lv
    f, s, n = ldrb(mesh, fields=fields)
    assert f.shape == s.shape == n.shape == (mesh.n_tets, 3)
    assert_orthonormal(f, s, n)
    _, normal = wall_geometry(centroids(mesh), (0, 0, 0), LV_ENDO, LV_EPI)
    # with β = 0 fibre and sheet lie in the wall, the sheet normal crosses it
    away = centroids(mesh)[:, 2] > -14
    assert np.median(np.abs(np.sum(n * normal, axis=1))[away]) > 0.98
    assert np.median(np.abs(np.sum(f * normal, axis=1))[away]) < 0.1


@pytest.mark.parametrize("alpha_endo, alpha_epi", [(60.0, -60.0), (40.0, -50.0)])
def test_lv_helix_angle_goes_linearly_from_endo_to_epi(lv, alpha_endo, alpha_epi):
    mesh, fields = lv
    f, _, _ = ldrb(mesh, alpha_endo=alpha_endo, alpha_epi=alpha_epi, fields=fields)
    c = centroids(mesh)
    t, normal = wall_geometry(c, (0, 0, 0), LV_ENDO, LV_EPI)
    helix = helix_angle(f, normal)
    # away from the apex (the circumferential direction is undefined on the axis)
    sel = c[:, 2] > -12.0
    at_endo, at_epi, rms = line_fit(t[sel], helix[sel])
    # the law is linear in the harmonic depth φ_epi, which bends away from the
    # geometric depth in a curved wall: a few degrees at the ends of the line
    assert at_endo == pytest.approx(alpha_endo, abs=5.0)
    assert at_epi == pytest.approx(alpha_epi, abs=5.0)
    assert rms < 3.0
    # monotonic: medians of depth bins strictly decrease
    bins = np.digitize(t[sel], [0.2, 0.4, 0.6, 0.8])
    medians = [np.median(helix[sel][bins == b]) for b in range(5)]
    assert np.all(np.diff(medians) < 0), medians
    # against the harmonic depth itself the law is exact
    e = fields["epi"][mesh.tets].mean(axis=1)
    at_endo, at_epi, rms = line_fit(e[sel], helix[sel])
    assert at_endo == pytest.approx(alpha_endo, abs=1.0)
    assert at_epi == pytest.approx(alpha_epi, abs=1.0)


def test_lv_transverse_angle_tilts_the_sheet_out_of_the_wall(lv):
    mesh, fields = lv
    f0, _, _ = ldrb(mesh, fields=fields)
    f, s, n = ldrb(mesh, beta_endo=30.0, beta_epi=30.0, fields=fields)
    assert_orthonormal(f, s, n)
    assert np.allclose(f, f0, atol=1e-9)  # β turns about the fibre
    _, normal = wall_geometry(centroids(mesh), (0, 0, 0), LV_ENDO, LV_EPI)
    away = centroids(mesh)[:, 2] > -12
    tilt = np.degrees(np.arcsin(np.abs(np.sum(s * normal, axis=1))))
    assert np.median(tilt[away]) == pytest.approx(30.0, abs=3.0)


def test_lv_fibres_are_deterministic_and_with_ldrb_fibres_fills_the_mesh(lv):
    mesh, fields = lv
    f1, s1, n1 = ldrb(mesh)  # solves its own fields, finds the apex itself
    f2, s2, n2 = ldrb(mesh, fields=fields)
    assert np.allclose(np.abs(np.sum(f1 * f2, axis=1)), 1.0, atol=1e-8)
    out = with_ldrb_fibres(mesh, alpha_endo=50.0, alpha_epi=-50.0)
    assert out.fibres.shape == (mesh.n_tets, 3) and out.sheets.shape == (mesh.n_tets, 3)
    assert out.cell_data["sheet_normals"].shape == (mesh.n_tets, 3)
    assert np.allclose(out.point_data["transmural_depth"], fields["epi"], atol=1e-8)
    out.check(source="test")
    assert mesh.fibres is None  # the input is not modified


def test_biv_fibres_and_septum(biv):
    mesh, fields = biv
    assert set(fields) >= {"apex_base", "epi", "lv", "rv", "septum"}
    # 1 up to the clipping of tiny negative values (P1 on obtuse tetrahedra breaks the maximum principle)
    assert np.allclose(fields["lv"] + fields["rv"] + fields["epi"], 1.0, atol=1e-2)
    f, s, n = ldrb(mesh, fields=fields)
    assert_orthonormal(f, s, n)
    c = centroids(mesh)
    mid = (c[:, 2] > -10) & (c[:, 2] < 2)
    t_lv, n_lv = wall_geometry(c, (0, 0, 0), LV_ENDO, LV_EPI)
    t_rv, n_rv = wall_geometry(c, RV_CENTRE, RV_ENDO, RV_EPI)
    septum = mid & (c[:, 0] > 3) & (np.abs(c[:, 1]) < 3) & (t_lv < 1.05)
    lv_free = mid & (c[:, 0] < -8)
    rv_free = mid & (c[:, 0] > 13.5) & (np.abs(c[:, 1]) < 6)
    assert min(septum.sum(), lv_free.sum(), rv_free.sum()) > 50
    w = fields["septum"][mesh.tets].mean(axis=1)
    assert w[septum].mean() > 0.95 and w[lv_free].mean() < 0.05 and w[rv_free].mean() < 0.05
    # LV free wall and RV free wall (seen from outside): +60° at the endocardium to −60° at the epicardium
    for sel, t, normal in ((lv_free, t_lv, n_lv), (rv_free, t_rv, n_rv)):
        at_endo, at_epi, _ = line_fit(t[sel], helix_angle(f[sel], normal[sel]))
        assert at_endo == pytest.approx(60.0, abs=6.0) and at_epi == pytest.approx(-60.0, abs=6.0)
    # septum, seen from the LV: +60° at the LV side to −60° at the RV side (Bayer's α_s),
    # i.e. +60° on each septal endocardium seen from its own cavity; circumferential mid-wall
    h_sept = helix_angle(f[septum], n_lv[septum])
    at_lv, at_rv, _ = line_fit(t_lv[septum], h_sept)
    assert at_lv == pytest.approx(60.0, abs=6.0) and at_rv == pytest.approx(-60.0, abs=6.0)
    middle = (t_lv[septum] > 0.4) & (t_lv[septum] < 0.6)
    assert abs(np.median(h_sept[middle])) < 10.0


def test_biv_separate_rv_and_septum_angles(biv):
    mesh, fields = biv
    f, _, _ = ldrb(mesh, alpha_endo_rv=80.0, alpha_epi_rv=-40.0, alpha_septum=30.0, fields=fields)
    c = centroids(mesh)
    mid = (c[:, 2] > -10) & (c[:, 2] < 2)
    t_lv, n_lv = wall_geometry(c, (0, 0, 0), LV_ENDO, LV_EPI)
    t_rv, n_rv = wall_geometry(c, RV_CENTRE, RV_ENDO, RV_EPI)
    rv_free = mid & (c[:, 0] > 13.5) & (np.abs(c[:, 1]) < 6)
    at_endo, at_epi, _ = line_fit(t_rv[rv_free], helix_angle(f[rv_free], n_rv[rv_free]))
    assert at_endo == pytest.approx(80.0, abs=8.0) and at_epi == pytest.approx(-40.0, abs=8.0)
    septum = mid & (c[:, 0] > 3) & (np.abs(c[:, 1]) < 3) & (t_lv < 1.05)
    at_lv, at_rv, _ = line_fit(t_lv[septum], helix_angle(f[septum], n_lv[septum]))
    assert at_lv == pytest.approx(30.0, abs=6.0) and at_rv == pytest.approx(-30.0, abs=6.0)
    lv_free = mid & (c[:, 0] < -8)  # untouched
    at_endo, at_epi, _ = line_fit(t_lv[lv_free], helix_angle(f[lv_free], n_lv[lv_free]))
    assert at_endo == pytest.approx(60.0, abs=6.0) and at_epi == pytest.approx(-60.0, abs=6.0)


def test_missing_or_empty_surfaces_are_named():
    box = box_mesh((4, 4, 4), 1.0, fibre=None)
    with pytest.raises(MeshError, match=r"missing: endo, epi, base.*no surfaces"):
        ldrb(box)
    with pytest.raises(MeshError, match="missing"):
        transmural_depth(box)
    marked = TetMesh(points=box.points, tets=box.tets, point_data={
        "surface_endo": (box.points[:, 0] == 0).astype(np.int8),
        "surface_epi": (box.points[:, 0] == 4).astype(np.int8)})
    with pytest.raises(MeshError, match=r"missing: base; the mesh has: endo, epi"):
        ldrb(marked)
    marked.point_data["surface_base"] = np.zeros(box.n_points, dtype=np.int8)
    with pytest.raises(MeshError, match="base have no nodes"):
        ldrb(marked)
    marked.point_data["surface_base"] = (box.points[:, 2] == 4).astype(np.int8)
    marked.point_data["surface_epi"] = (box.points[:, 0] <= 1).astype(np.int8)
    with pytest.raises(MeshError, match="share"):
        ldrb(marked)


def test_slab_with_surfaces_gets_fibres_and_bad_angles_are_refused():
    # a flat wall: endo at x = 0, epi at x = 2, base at z = 4, apex below
    box = box_mesh((2, 4, 4), 0.5, fibre=None)
    x = box.points
    pd = {"surface_endo": (x[:, 0] == 0).astype(np.int8), "surface_epi": (x[:, 0] == 2).astype(np.int8),
          "surface_base": (x[:, 2] == 4).astype(np.int8)}
    slab = TetMesh(points=box.points, tets=box.tets, point_data=pd)
    f, s, n = ldrb(slab, apex=(2.0, 2.0, 0.0))
    assert_orthonormal(f, s, n)
    with pytest.raises(MeshError, match="alpha_epi"):
        ldrb(slab, alpha_epi=float("nan"))
    with pytest.raises(MeshError, match="apex node"):
        ldrb(slab, apex=10 ** 6)
    with pytest.raises(MeshError, match="apex"):
        ldrb(slab, apex=(1.0, 2.0))


def test_quaternions_round_trip_and_bislerp_respects_frame_symmetry():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(200, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    rot = _quat_to_rot(q)
    assert np.allclose(np.einsum("mij,mkj->mik", rot, rot), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rot), 1.0)
    q2 = _rot_to_quat(rot)
    assert np.allclose(np.abs(np.sum(q * q2, axis=1)), 1.0, atol=1e-12)
    # flipping two axes of a frame is the same frame: bislerp does not turn at all
    flipped = rot @ np.diag([-1.0, 1.0, -1.0])
    half = _quat_to_rot(_bislerp(_rot_to_quat(rot), _rot_to_quat(flipped), np.full(200, 0.5)))
    assert np.allclose(np.abs(np.einsum("mij,mij->mj", half, rot)), 1.0, atol=1e-9)
    # about a common axis the interpolated angle is linear in t
    def rz(a):
        c, s = np.cos(a), np.sin(a)
        return np.stack([np.stack([c, -s, 0 * a], 1), np.stack([s, c, 0 * a], 1),
                         np.stack([0 * a, 0 * a, 1 + 0 * a], 1)], 1)
    a0, a1 = np.full(5, 0.2), np.full(5, 1.0)
    t = np.linspace(0, 1, 5)
    mid = _quat_to_rot(_bislerp(_rot_to_quat(rz(a0)), _rot_to_quat(rz(a1)), t))
    assert np.allclose(np.arctan2(mid[:, 1, 0], mid[:, 0, 0]), 0.2 + 0.8 * t)
