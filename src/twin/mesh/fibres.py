r"""Rule-based myocardial fibres: the Laplace–Dirichlet rule-based (LDRB) method.

Bayer, Blake, Plank & Trayanova 2012, "A novel rule-based algorithm for assigning
myocardial fiber orientation to computational heart models", Ann Biomed Eng
40:2243, doi:10.1007/s10439-012-0593-5 — the method of the ``ldrb`` package,
implemented here on twin's own P1 operators (no FEniCS).

Steps
-----
1. Laplace problems ``Δu = 0`` (P1, identity conductivity, zero flux elsewhere):

   * ψ (apex → base): 0 at the apex node, 1 on the base;
   * φ_epi: 1 on the epicardium, 0 on the endocardium (LV and RV);
   * φ_lv: 1 on the LV endocardium, 0 on the epicardium and RV endocardium;
   * φ_rv (biventricle): 1 on the RV endocardium, 0 on the others;
   * septum weight (biventricle, an addition to Bayer): 1 on the septal parts of
     both endocardia, 0 on the free-wall endocardia and the epicardium.

   The base is a zero-flux boundary for every field but ψ.
2. Per element, the gradients give orthonormal frames (``axis``): e1 along ∇ψ
   (apex → base, "longitudinal"), e2 along the transmural gradient with its ∇ψ part
   removed, e0 = e1 × e2 (circumferential).  The LV frame uses −∇φ_lv (pointing out
   of the LV), the RV frame +∇φ_rv (pointing into the RV, as Bayer: in the septum
   both then point from the LV to the RV) and the epicardial frame +∇φ_epi.
3. Each frame is rotated (``orient``) by the helix angle α about e2 and then by the
   transverse angle β about the new fibre axis: ``Q = A Rz(α) Rx(β)``; the columns
   of Q are the fibre f, the sheet s and the sheet normal n = f × s.  With β = 0 the
   sheet is the cross-fibre direction tangent to the wall and n is transmural.
4. The frames are blended by quaternion slerp modulo the frame symmetries
   (``bislerp``): ``Q_endo = bislerp(Q_lv, Q_rv, d)`` with d = φ_rv / (φ_lv + φ_rv),
   then ``Q = bislerp(Q_endo, Q_epi, φ_epi)``.

Angles.  With e = φ_epi, the helix angle varies linearly with e through each free
wall, ``α_L(e) = α_endo + e (α_epi − α_endo)`` in the LV and ``α_R(e)`` likewise with
the RV angles; in the septum it goes from +α_septum at the LV side to −α_septum at
the RV side (LV frame orientation), i.e. +α_septum on both septal endocardia seen
from their own cavity, as in Bayer's α_s(d).  Every frame is rotated by the target
angle of the point expressed in its own orientation (the endocardial frames by
``(1 − d) α_L − d α_R``, the epicardial frame by ``(1 − d) α_L + d α_R``), so that
bislerp interpolates only between the geometries of the frames.  This departs from
Bayer, who rotates the epicardial frame by α_w(e) but the endocardial one by the
fixed α_endo and then slerps with weight e: the resulting helix angle is
α_endo + e²(α_epi − α_endo) (quadratic in e) and, when |α_epi − α_endo| > 90°, it
jumps where bislerp switches to the other frame symmetry (at e = 0.75 for ±60°).
Here the helix angle is exactly linear in φ_epi in the LV free wall.  β is treated
like α.

Sign convention: the helix angle is positive when the fibre, seen from outside the
wall, turns from the circumferential direction e0 = e1 × e2 towards the base
(e1); α_endo = +60°, α_epi = −60° is the usual right-handed endocardium /
left-handed epicardium.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import MeshError
from ..fem import p1_gradients, stiffness_matrix
from .tetmesh import TetMesh

logger = logging.getLogger(__name__)

_PREFIX = "surface_"


# --------------------------------------------------------------------------- surfaces

@dataclass(frozen=True)
class _Surfaces:
    """Boolean node masks of the surfaces the method needs."""

    lv: np.ndarray
    rv: np.ndarray | None
    epi: np.ndarray
    base: np.ndarray

    @property
    def biventricular(self) -> bool:
        return self.rv is not None


def _mask(mesh: TetMesh, name: str) -> np.ndarray | None:
    arr = mesh.point_data.get(_PREFIX + name)
    if arr is None:
        return None
    arr = np.asarray(arr).reshape(-1)
    if arr.shape != (mesh.n_points,):
        raise MeshError(f"surface mask '{_PREFIX}{name}' has {arr.size} entries but the mesh has "
                        f"{mesh.n_points} nodes")
    return arr != 0


def _surfaces(mesh: TetMesh, what: str = "rule-based fibres and the transmural depth") -> _Surfaces:
    """The LV (``endo``) or biventricular (``lv_endo`` + ``rv_endo``) surfaces, with ``epi`` and ``base``."""
    have = sorted(k[len(_PREFIX):] for k in mesh.point_data if k.startswith(_PREFIX))
    lv_name = "lv_endo" if _PREFIX + "lv_endo" in mesh.point_data else "endo"
    required = [lv_name, "epi", "base"]
    masks = {name: _mask(mesh, name) for name in required}
    missing = [n for n, m in masks.items() if m is None]
    if missing:
        raise MeshError(f"{what} need the surfaces endo (LV) or lv_endo + rv_endo (biventricle), epi and base "
                        f"as node masks '{_PREFIX}<name>' in the mesh's point data; missing: {', '.join(missing)}; "
                        f"the mesh has: {', '.join(have) or 'no surfaces'}")
    empty = [n for n, m in masks.items() if not m.any()]
    rv = _mask(mesh, "rv_endo") if lv_name == "lv_endo" else None
    if rv is not None and not rv.any():
        empty.append("rv_endo")
    if empty:
        raise MeshError(f"{what}: surface(s) {', '.join(empty)} have no nodes")
    lv, epi = masks[lv_name], masks["epi"]
    # a node on two of these surfaces would get two Dirichlet values
    for (name_a, a), (name_b, b) in (((lv_name, lv), ("epi", epi)), ((lv_name, lv), ("rv_endo", rv)),
                                     (("rv_endo", rv), ("epi", epi))):
        if a is not None and b is not None and (a & b).any():
            raise MeshError(f"{what}: surfaces {name_a} and {name_b} share {int((a & b).sum())} node(s); "
                            "they must not touch")
    return _Surfaces(lv=lv, rv=rv, epi=epi, base=masks["base"])


# --------------------------------------------------------------------------- Laplace solves

def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum's own loop rather than BLAS ddot: multi-threaded OpenBLAS on short
    # vectors slows CG down 4-30x when the cores are busy with other work
    return float(np.einsum("i,i->", a, b))


def _pcg(a: sp.csr_matrix, b: np.ndarray, diag_inv: np.ndarray, rtol: float,
         max_iter: int) -> tuple[np.ndarray, int]:
    """Jacobi-preconditioned CG from zero; returns (x, iterations) or (x, −1) without convergence.

    Stops when ``‖r‖₂ ≤ rtol ‖b‖₂``.  A plain loop with BLAS-free dot products (see
    :func:`_dot`); scipy's ``cg`` goes through BLAS and was 4-30x slower on a loaded
    2-core machine.
    """
    x = np.zeros_like(b)
    r = b.copy()
    z = diag_inv * r
    p = z.copy()
    rz = _dot(r, z)
    stop2 = rtol ** 2 * max(_dot(b, b), 1e-300)
    if _dot(r, r) <= stop2:
        return x, 0
    for it in range(1, max_iter + 1):
        q = a @ p
        alpha = rz / _dot(p, q)
        x += alpha * p
        r -= alpha * q
        if _dot(r, r) <= stop2:
            return x, it
        z = diag_inv * r
        rz_new = _dot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, -1


class _Dirichlet:
    """``K u = 0`` with u given on a fixed node set, for several right-hand sides.

    Rows of the fixed nodes are eliminated: ``K_ff u_f = −K_fc u_c``.  The reduced
    matrix is SPD when every connected part of the mesh touches the fixed set.
    """

    def __init__(self, stiffness: sp.csr_matrix, fixed: np.ndarray, what: str) -> None:
        self.fixed = fixed
        self.free = ~fixed
        k_free = stiffness[self.free]
        self.k_ff = k_free[:, self.free].tocsr()
        self.k_fc = k_free[:, fixed].tocsr()
        diag = self.k_ff.diagonal()
        if np.any(diag <= 0):
            raise MeshError(f"{what}: {int((diag <= 0).sum())} node(s) belong to no element")
        self.diag_inv = 1.0 / diag
        self.what = what

    def solve(self, values: np.ndarray, *, rtol: float = 1e-10) -> np.ndarray:
        """Return the full solution with ``u[fixed] = values[fixed]``."""
        u = np.array(values, dtype=np.float64)
        if self.k_ff.shape[0] == 0:
            return u
        rhs = -(self.k_fc @ u[self.fixed])
        x, its = _pcg(self.k_ff, rhs, self.diag_inv, rtol, 20 * self.k_ff.shape[0] + 100)
        if its < 0:
            # only pathological meshes get here (a part not touching the fixed set);
            # a direct solve either copes or shows the singularity
            logger.warning("%s: CG did not converge; solving directly", self.what)
            x = spla.spsolve(self.k_ff.tocsc(), rhs)
        else:
            logger.debug("%s: CG converged in %d iterations", self.what, its)
        if not np.all(np.isfinite(x)):
            raise MeshError(f"{self.what}: the Laplace problem is singular; does every part of the mesh "
                            "touch the endocardium or epicardium?")
        u[self.free] = x
        return u


def _find_apex(points: np.ndarray, surf: _Surfaces) -> int:
    """The epicardial node farthest from the base plane (least-squares plane through the base nodes)."""
    base = points[surf.base]
    centre = base.mean(axis=0)
    normal = np.linalg.svd(base - centre, full_matrices=False)[2][-1]
    if normal @ (centre - points.mean(axis=0)) < 0:  # make the normal point out through the base
        normal = -normal
    epi = np.flatnonzero(surf.epi)
    return int(epi[np.argmin((points[epi] - centre) @ normal)])


def _apex_node(mesh: TetMesh, surf: _Surfaces, apex: int | Sequence[float] | None) -> int:
    if apex is None:
        return _find_apex(mesh.points, surf)
    if isinstance(apex, (int, np.integer)):
        if not 0 <= int(apex) < mesh.n_points:
            raise MeshError(f"apex node {int(apex)} is not a node of the mesh (0..{mesh.n_points - 1})")
        return int(apex)
    xyz = np.asarray(apex, dtype=np.float64).reshape(-1)
    if xyz.shape != (3,) or not np.all(np.isfinite(xyz)):
        raise MeshError(f"apex must be a node index or a point (x, y, z) [mm], got {apex!r}")
    return int(np.argmin(np.linalg.norm(mesh.points - xyz, axis=1)))


def laplace_fields(mesh: TetMesh, *, apex: int | Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """Solve the LDRB Laplace problems on the mesh (per node).

    Parameters
    ----------
    mesh
        Tetrahedral mesh [mm] with the node masks ``surface_endo`` (LV) or
        ``surface_lv_endo`` + ``surface_rv_endo`` (biventricle), ``surface_epi`` and
        ``surface_base``.
    apex
        Apex node index or point [mm] (nearest node); default: the epicardial node
        farthest from the least-squares plane through the base.

    Returns
    -------
    dict
        ``apex_base`` (ψ: 0 at the apex, 1 on the base), ``epi`` (φ_epi: 0 on the
        endocardium, 1 on the epicardium), ``lv`` (φ_lv) and, for a biventricle,
        ``rv`` (φ_rv) and ``septum`` (1 on the septal endocardia, 0 on the free-wall
        endocardia and the epicardium); ``(n,)`` float64 arrays, dimensionless.
        ``apex_node`` holds the apex index as a 0-d int array.

    Raises
    ------
    MeshError
        When a surface is missing or empty, or the Laplace problem is singular.
    """
    surf = _surfaces(mesh)
    stiffness = stiffness_matrix(mesh.points, mesh.tets, np.ones(mesh.n_tets))
    apex_node = _apex_node(mesh, surf, apex)
    if surf.base[apex_node]:
        raise MeshError(f"the apex (node {apex_node}) lies on the base; give 'apex' explicitly")

    fixed = surf.base.copy()
    fixed[apex_node] = True
    psi = _Dirichlet(stiffness, fixed, "apex-to-base field").solve(surf.base.astype(np.float64))

    endo = surf.lv if surf.rv is None else surf.lv | surf.rv
    transmural = _Dirichlet(stiffness, endo | surf.epi, "transmural fields")
    fields = {"apex_base": psi,
              "epi": transmural.solve(surf.epi.astype(np.float64)),
              "lv": transmural.solve(surf.lv.astype(np.float64))}
    if surf.rv is not None:
        fields["rv"] = transmural.solve(surf.rv.astype(np.float64))
        fields["septum"] = _septum_weight(mesh.points, surf, transmural)
    for key in ("epi", "lv", "rv", "septum"):
        if key in fields:
            # P1 on obtuse tetrahedra breaks the discrete maximum principle (values ~ −1e-3)
            np.clip(fields[key], 0.0, 1.0, out=fields[key])
    fields["apex_node"] = np.array(apex_node)
    return fields


def _septum_weight(points: np.ndarray, surf: _Surfaces, transmural: _Dirichlet) -> np.ndarray:
    """Harmonic septum indicator: 1 on the endocardium facing the other ventricle, 0 on free walls and epi.

    An endocardial node is septal when the other ventricle's endocardium is nearer
    than the epicardium (Euclidean distance to the nearest node).
    """
    from scipy.spatial import cKDTree

    assert surf.rv is not None
    d_epi = cKDTree(points[surf.epi]).query(points)[0]
    d_lv = cKDTree(points[surf.lv]).query(points)[0]
    d_rv = cKDTree(points[surf.rv]).query(points)[0]
    septal = (surf.lv & (d_rv < d_epi)) | (surf.rv & (d_lv < d_epi))
    return transmural.solve(septal.astype(np.float64))


def transmural_depth(mesh: TetMesh, *, fields: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Harmonic transmural depth per node: 0 on the endocardium (LV and RV), 1 on the epicardium.

    The Laplace field φ_epi of :func:`laplace_fields` (zero flux through the base).
    It is smooth and exactly 0/1 on the surfaces but, being harmonic, not
    proportional to distance: in a curved wall it bends towards the endocardium
    (mid-wall of the default LV ellipsoid at ≈ 0.55 at the equator).

    Parameters
    ----------
    mesh
        Mesh with ``surface_endo`` (or ``surface_lv_endo``/``surface_rv_endo``),
        ``surface_epi`` and ``surface_base`` masks.
    fields
        Fields already computed by :func:`laplace_fields` (skips the solve).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64 in [0, 1].
    """
    if fields is not None:
        return fields["epi"]
    surf = _surfaces(mesh)
    endo = surf.lv if surf.rv is None else surf.lv | surf.rv
    stiffness = stiffness_matrix(mesh.points, mesh.tets, np.ones(mesh.n_tets))
    depth = _Dirichlet(stiffness, endo | surf.epi, "transmural depth").solve(surf.epi.astype(np.float64))
    return np.clip(depth, 0.0, 1.0, out=depth)


# --------------------------------------------------------------------------- frames and rotations

def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


def _axis(longitudinal: np.ndarray, transmural: np.ndarray) -> np.ndarray:
    """Orthonormal frames ``(m, 3, 3)`` with columns e0 = e1 × e2 (circumferential), e1, e2.

    e1 is the unit ``longitudinal``; e2 the unit ``transmural`` with its e1 part
    removed.  Where the two are parallel (or a gradient vanishes) a coordinate axis
    stands in, so that the frame is always defined; such elements get a small
    blending weight or are few (the apex).
    """
    e1 = _unit(longitudinal)
    bad = np.linalg.norm(e1, axis=1) == 0
    e1[bad] = (0.0, 0.0, 1.0)
    e2 = transmural - np.sum(e1 * transmural, axis=1, keepdims=True) * e1
    norm = np.linalg.norm(e2, axis=1)
    scale = np.linalg.norm(transmural, axis=1)
    weak = norm <= 1e-8 * np.maximum(scale, 1e-300)
    if weak.any():
        # any axis not parallel to e1: the one least aligned with it
        pick = np.argmin(np.abs(e1[weak]), axis=1)
        alt = np.eye(3)[pick]
        e2[weak] = alt - np.sum(e1[weak] * alt, axis=1, keepdims=True) * e1[weak]
    e2 = _unit(e2)
    e0 = np.cross(e1, e2)
    return np.stack([e0, e1, e2], axis=2)


def _orient(frame: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``frame · Rz(α) · Rx(β)`` per element; α, β ``(m,)`` [rad].

    Columns: f = cos α e0 + sin α e1, then the cross-fibre c = −sin α e0 + cos α e1
    and e2 turned by β about f: s = cos β c − sin β e2, n = sin β c + cos β e2.
    """
    e0, e1, e2 = frame[:, :, 0], frame[:, :, 1], frame[:, :, 2]
    ca, sa = np.cos(alpha)[:, None], np.sin(alpha)[:, None]
    cb, sb = np.cos(beta)[:, None], np.sin(beta)[:, None]
    f = ca * e0 + sa * e1
    c = -sa * e0 + ca * e1
    return np.stack([f, cb * c - sb * e2, sb * c + cb * e2], axis=2)


def _rot_to_quat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(m, 4)`` (w, x, y, z) of rotation matrices ``(m, 3, 3)``.

    Shepperd's method: take the square root of the largest of the four
    ``1 ± R00 ± R11 ± R22`` combinations, so no division by a small number.
    """
    r = rot
    diag = np.stack([r[:, 0, 0] + r[:, 1, 1] + r[:, 2, 2],
                     r[:, 0, 0] - r[:, 1, 1] - r[:, 2, 2],
                     -r[:, 0, 0] + r[:, 1, 1] - r[:, 2, 2],
                     -r[:, 0, 0] - r[:, 1, 1] + r[:, 2, 2]], axis=1)
    k = np.argmax(diag, axis=1)
    s = 2.0 * np.sqrt(np.maximum(1.0 + diag[np.arange(len(r)), k], 1e-300))  # = 4 |q_k|
    q = np.empty((len(r), 4))
    a, b, c, d = (r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1],
                  r[:, 0, 1] + r[:, 1, 0])
    e, f = r[:, 0, 2] + r[:, 2, 0], r[:, 1, 2] + r[:, 2, 1]
    cols = {0: (s / 4, a / s, b / s, c / s),
            1: (a / s, s / 4, d / s, e / s),
            2: (b / s, d / s, s / 4, f / s),
            3: (c / s, e / s, f / s, s / 4)}
    for key, comps in cols.items():
        sel = k == key
        q[sel] = np.stack([x[sel] for x in comps], axis=1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _quat_to_rot(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(m, 3, 3)`` of unit quaternions ``(m, 4)`` (w, x, y, z)."""
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1),
    ], axis=1)


def _bislerp(qa: np.ndarray, qb: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Slerp from frame ``qa`` to frame ``qb`` (quaternions ``(m, 4)``) at ``t`` ``(m,)``, modulo symmetry.

    A fibre frame is the same after turning two of its axes round (f, s, n → ±f, ±s,
    ±n with an even number of flips): qa·{1, i, j, k} and their negatives represent
    one frame.  The representative closest to qb (largest |q·qb|) is interpolated,
    so the path is the shortest rotation between the two frames.
    """
    w, x, y, z = qa.T
    # qa ⊗ 1, qa ⊗ i, qa ⊗ j, qa ⊗ k (Hamilton product with the unit quaternions)
    cands = np.stack([np.stack([w, x, y, z], axis=1),
                      np.stack([-x, w, z, -y], axis=1),
                      np.stack([-y, -z, w, x], axis=1),
                      np.stack([-z, y, -x, w], axis=1)], axis=1)          # (m, 4, 4)
    dots = np.einsum("mkc,mc->mk", cands, qb)
    best = np.argmax(np.abs(dots), axis=1)
    rows = np.arange(len(qa))
    qm = cands[rows, best] * np.sign(dots[rows, best])[:, None]
    cos = np.clip(np.abs(dots[rows, best]), -1.0, 1.0)
    theta = np.arccos(cos)
    sin = np.sin(theta)
    small = sin < 1e-9
    safe = np.where(small, 1.0, sin)
    wa = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    wb = np.where(small, t, np.sin(t * theta) / safe)
    q = wa[:, None] * qm + wb[:, None] * qb
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _element_gradients(grads: np.ndarray, volumes: np.ndarray, tets: np.ndarray, u: np.ndarray,
                       n: int) -> np.ndarray:
    """Per-element gradient of a P1 field; where it vanishes, the average over the element's nodes.

    An element whose four nodes all lie on one Dirichlet surface has a zero
    transmural gradient; the volume-weighted nodal average of the neighbouring
    elements' gradients stands in for it.
    """
    g = np.einsum("mki,mk->mi", grads, u[tets])
    norm = np.linalg.norm(g, axis=1)
    weak = norm <= 1e-6 * np.median(norm)
    if weak.any():
        nodal = np.zeros((n, 3))
        weight = np.zeros(n)
        for c in range(4):
            np.add.at(nodal, tets[:, c], g * volumes[:, None])
            np.add.at(weight, tets[:, c], volumes)
        nodal /= np.maximum(weight, 1e-300)[:, None]
        g[weak] = nodal[tets[weak]].mean(axis=1)
        logger.debug("ldrb: %d element(s) with a vanishing gradient took their neighbours' mean", int(weak.sum()))
    return g


# --------------------------------------------------------------------------- the method

def ldrb(mesh: TetMesh, *, alpha_endo: float = 60.0, alpha_epi: float = -60.0, beta_endo: float = 0.0,
         beta_epi: float = 0.0, alpha_endo_rv: float | None = None, alpha_epi_rv: float | None = None,
         beta_endo_rv: float | None = None, beta_epi_rv: float | None = None,
         alpha_septum: float | None = None, beta_septum: float | None = None,
         apex: int | Sequence[float] | None = None,
         fields: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fibre, sheet and sheet-normal directions per element by the LDRB method (Bayer et al. 2012).

    Parameters
    ----------
    mesh
        Tetrahedral mesh [mm] with node masks ``surface_endo`` (LV) or
        ``surface_lv_endo`` + ``surface_rv_endo`` (biventricle), ``surface_epi`` and
        ``surface_base`` in ``point_data`` (as made by
        :func:`twin.mesh.anatomy.lv_ellipsoid` / :func:`~twin.mesh.anatomy.biv_ellipsoids`).
    alpha_endo, alpha_epi
        Helix angle [deg] at the LV endocardium and epicardium (linear in between).
    beta_endo, beta_epi
        Transverse (sheet) angle [deg] at the LV endocardium and epicardium.
    alpha_endo_rv, alpha_epi_rv, beta_endo_rv, beta_epi_rv
        The same for the RV free wall [deg]; default: the LV values.
    alpha_septum, beta_septum
        Helix / transverse angle [deg] on both septal endocardia, each seen from its
        own cavity; they change sign through the septum.  Default: ``alpha_endo`` /
        ``beta_endo``.
    apex
        Apex node index or point [mm]; default: found from the base plane.
    fields
        Output of :func:`laplace_fields` for this mesh, to reuse the solves.

    Returns
    -------
    fibres, sheets, normals
        ``(m, 3)`` unit vectors per element, mutually orthogonal, right-handed
        (normals = fibres × sheets).  Their signs are arbitrary.

    Raises
    ------
    MeshError
        When a surface is missing or empty, or an angle is not a finite number.
    """
    start = time.perf_counter()
    angles = {"alpha_endo": alpha_endo, "alpha_epi": alpha_epi, "beta_endo": beta_endo, "beta_epi": beta_epi,
              "alpha_endo_rv": alpha_endo if alpha_endo_rv is None else alpha_endo_rv,
              "alpha_epi_rv": alpha_epi if alpha_epi_rv is None else alpha_epi_rv,
              "beta_endo_rv": beta_endo if beta_endo_rv is None else beta_endo_rv,
              "beta_epi_rv": beta_epi if beta_epi_rv is None else beta_epi_rv,
              "alpha_septum": alpha_endo if alpha_septum is None else alpha_septum,
              "beta_septum": beta_endo if beta_septum is None else beta_septum}
    for name, value in angles.items():
        try:
            ok = np.isfinite(float(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise MeshError(f"ldrb: {name} must be an angle in degrees, got {value!r}")
    rad = {k: np.radians(float(v)) for k, v in angles.items()}

    surf = _surfaces(mesh)
    if fields is None:
        fields = laplace_fields(mesh, apex=apex)
    tets, n = mesh.tets, mesh.n_points
    grads, volumes = p1_gradients(mesh.points, tets)

    def cell(name: str) -> np.ndarray:  # P1 value at the centroid
        return fields[name][tets].mean(axis=1)

    def grad(name: str) -> np.ndarray:
        return _element_gradients(grads, volumes, tets, fields[name], n)

    g_ab = grad("apex_base")
    e = cell("epi")
    frame_epi = _axis(g_ab, grad("epi"))
    frame_lv = _axis(g_ab, -grad("lv"))
    if surf.biventricular:
        lv, rv = cell("lv"), cell("rv")
        total = lv + rv
        d = np.divide(rv, total, out=np.full_like(total, 0.5), where=total > 1e-12)
        w = cell("septum")
    else:
        d = np.zeros(len(tets))
        w = np.zeros(len(tets))

    def law(key: str) -> tuple[np.ndarray, np.ndarray]:
        """LV and RV free-wall angle at depth e, with the septal angle blended in by w [rad]."""
        lv_endo = (1 - w) * rad[f"{key}_endo"] + w * rad[f"{key}_septum"]
        rv_endo = (1 - w) * rad[f"{key}_endo_rv"] + w * rad[f"{key}_septum"]
        return (lv_endo + e * (rad[f"{key}_epi"] - lv_endo),
                rv_endo + e * (rad[f"{key}_epi_rv"] - rv_endo))

    a_l, a_r = law("alpha")
    b_l, b_r = law("beta")
    # endocardial frames: LV-to-RV orientation in the septum, inward in the RV free
    # wall, hence −α_R; the epicardial frame points outward everywhere, hence +α_R
    a_endo, b_endo = (1 - d) * a_l - d * a_r, (1 - d) * b_l - d * b_r
    a_epi, b_epi = (1 - d) * a_l + d * a_r, (1 - d) * b_l + d * b_r

    q_endo = _rot_to_quat(_orient(frame_lv, a_endo, b_endo))
    if surf.biventricular:
        frame_rv = _axis(g_ab, grad("rv"))
        q_rv = _rot_to_quat(_orient(frame_rv, a_endo, b_endo))
        q_endo = _bislerp(q_endo, q_rv, d)
    q_epi = _rot_to_quat(_orient(frame_epi, a_epi, b_epi))
    q = _bislerp(q_endo, q_epi, e)
    rot = _quat_to_rot(q)
    fibres = _unit(rot[:, :, 0])
    sheets = _unit(rot[:, :, 1] - np.sum(rot[:, :, 1] * fibres, axis=1, keepdims=True) * fibres)
    normals = np.cross(fibres, sheets)
    logger.info("ldrb: fibres for %d elements (%s) in %.2f s", len(tets),
                "biventricle" if surf.biventricular else "LV", time.perf_counter() - start)
    return fibres, sheets, normals


def with_ldrb_fibres(mesh: TetMesh, **options) -> TetMesh:
    """Return a copy of ``mesh`` with LDRB fibres and sheets (keyword ``options`` as in :func:`ldrb`).

    The sheet normals go into ``cell_data["sheet_normals"]`` and the transmural
    depth into ``point_data["transmural_depth"]``.
    """
    fields = options.pop("fields", None)
    if fields is None:
        fields = laplace_fields(mesh, apex=options.get("apex"))
    fibres, sheets, normals = ldrb(mesh, fields=fields, **options)
    point_data = dict(mesh.point_data)
    point_data["transmural_depth"] = fields["epi"]
    cell_data = dict(mesh.cell_data)
    cell_data["sheet_normals"] = normals
    return TetMesh(points=mesh.points, tets=mesh.tets, fibres=fibres, sheets=sheets, regions=mesh.regions,
                   point_data=point_data, cell_data=cell_data)
