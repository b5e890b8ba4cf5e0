"""Idealised ventricular anatomy meshed with gmsh: a truncated LV ellipsoid and a biventricle.

Convention (both generators)
----------------------------
* Lengths in mm.  The LV long axis is the z axis, the apex points to −z and the
  base is the plane ``z = base_z``; the LV cavity is centred on the z axis.
* The LV wall lies between two prolate ellipsoids of revolution centred at the
  origin, ``(x² + y²)/r_s² + z²/r_l² = 1``, cut by the base plane (Land et al. 2015,
  "Verification of cardiac mechanics software", Proc. R. Soc. A 471:20150641:
  r_s 7 → 10 mm, r_l 17 → 20 mm, base at z = 5 mm).
* In the biventricle the RV lies on the +x side of the LV: its cavity is an
  ellipsoid centred at ``(rv_shift, 0, 0)`` minus the LV, so the septum is the part
  of the LV wall that faces +x.
* Named surfaces are node masks in ``mesh.point_data`` (int8, 1 on the surface):
  ``surface_endo`` / ``surface_epi`` / ``surface_base`` for the LV;
  ``surface_lv_endo`` / ``surface_rv_endo`` / ``surface_epi`` / ``surface_base`` for the
  biventricle.  The nodes on the rim where a wall meets the base plane belong to
  both the wall's mask and ``surface_base``; endocardial and epicardial masks are
  disjoint.
* The mesh size is uniform.  With the default 3 mm wall, 2 mm and coarser meshes
  have no node inside the wall (one element across it): fine for tests, too coarse
  for propagation, which wants 0.5 mm or less.

gmsh is a global singleton: the generators are not thread-safe.  When gmsh is
already initialised by the caller they work in a temporary model (and leave the
caller's session open, with the mesh options changed); otherwise they initialise
and always finalise it.  With fixed options and one thread gmsh is deterministic,
so the same parameters give the same mesh, node for node.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import MeshError
from .tetmesh import TetMesh

logger = logging.getLogger(__name__)

# Mean tetrahedron volume of a gmsh Delaunay mesh with uniform size h, as a
# fraction of h³ (measured on the LV at 1–3 mm); used only to refuse meshes that
# would exhaust memory before gmsh starts.
_TET_VOLUME_FACTOR = 0.17


@dataclass(frozen=True)
class _Ellipsoid:
    """Axis-aligned ellipsoid ``Σ ((x − c)/r)² = 1`` [mm]."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]

    def level(self, x: np.ndarray) -> np.ndarray:
        """``Σ ((x − c)/r)²`` per point: < 1 inside, 1 on the surface, > 1 outside."""
        return np.sum(((x - np.asarray(self.centre)) / np.asarray(self.radii)) ** 2, axis=-1)

    def residual(self, x: np.ndarray) -> np.ndarray:
        """Approximate distance [mm] of each point to the surface (exact on the surface)."""
        return np.abs(np.sqrt(self.level(x)) - 1.0) * min(self.radii)

    def add_to(self, occ) -> int:
        """Add the solid to the gmsh OCC kernel; return its volume tag."""
        tag = occ.addSphere(*self.centre, 1.0)
        occ.dilate([(3, tag)], *self.centre, *self.radii)
        return tag


def truncated_ellipsoid_volume(r_short: float, r_long: float, z_top: float) -> float:
    """Volume [mm³] of the prolate ellipsoid ``(x²+y²)/r_short² + z²/r_long² ≤ 1`` below ``z = z_top``.

    ``V = π r_s² [(z_top + r_l) − (z_top³ + r_l³) / (3 r_l²)]`` for ``|z_top| ≤ r_l``.
    """
    z = min(max(z_top, -r_long), r_long)
    return math.pi * r_short ** 2 * ((z + r_long) - (z ** 3 + r_long ** 3) / (3.0 * r_long ** 2))


def _number(name: str, value: object, *, positive: bool = True) -> float:
    """``value`` as a float [mm]; MeshError naming ``name`` when it is not a (positive) finite number."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x) or (positive and x <= 0):
        kind = "a positive length" if positive else "a length"
        raise MeshError(f"{name} must be {kind} [mm], got {value!r}")
    return x


def _check_size(volume: float, h: float, max_tets: int, what: str) -> None:
    estimate = volume / (_TET_VOLUME_FACTOR * h ** 3)
    if estimate > max_tets:
        raise MeshError(f"{what} at resolution {h:g} mm would have about {estimate:.3g} tetrahedra, more than "
                        f"max_tets = {max_tets}; use a coarser resolution or raise max_tets")
    logger.debug("%s: about %.3g tetrahedra expected at %g mm", what, estimate, h)


@contextmanager
def _gmsh_model(name: str, h: float, *, netgen: bool = False) -> Iterator[object]:
    """A gmsh model with fixed, deterministic meshing options; yields ``gmsh``.

    ``netgen`` adds Netgen's optimiser after gmsh's own (about twice the meshing time).
    """
    import gmsh

    own = not gmsh.isInitialized()
    if own:
        # interruptible=False: no SIGINT handler, so the library may run off the main thread
        gmsh.initialize(readConfigFiles=False, interruptible=False)
    try:
        gmsh.model.add(name)
        opt = gmsh.option.setNumber
        opt("General.Terminal", 0)
        opt("General.Verbosity", 0)
        # one thread and the classic Delaunay algorithms: gmsh's parallel and HXT meshers
        # do not promise the same node order from run to run
        opt("General.NumThreads", 1)
        opt("Mesh.Algorithm", 6)           # Frontal-Delaunay surfaces
        opt("Mesh.Algorithm3D", 1)         # Delaunay volume
        opt("Mesh.MeshSizeMin", h)
        opt("Mesh.MeshSizeMax", h)
        opt("Mesh.MeshSizeFromPoints", 0)
        opt("Mesh.MeshSizeFromCurvature", 0)
        opt("Mesh.MeshSizeExtendFromBoundary", 1)
        opt("Mesh.ElementOrder", 1)
        opt("Mesh.Optimize", 1)
        opt("Mesh.OptimizeNetgen", 1 if netgen else 0)
        yield gmsh
    finally:
        if own:
            gmsh.finalize()
        else:
            gmsh.model.remove()


def _classify_and_mesh(gmsh, volume_tags: list[int], classify, what: str) -> TetMesh:
    """Mesh the synchronised model and build a TetMesh with ``surface_*`` node masks.

    ``classify(points) -> str`` names the surface that the mesh nodes of one
    boundary entity lie on.
    """
    try:
        gmsh.model.mesh.generate(3)
    except Exception as exc:  # gmsh raises plain Exception with its own message
        raise MeshError(f"{what}: gmsh failed to mesh the geometry: {exc}") from exc
    node_tags, coords, _ = gmsh.model.mesh.getNodes()
    node_tags = np.asarray(node_tags, dtype=np.int64)
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    index = np.full(int(node_tags.max()) + 1, -1, dtype=np.int64)
    index[node_tags] = np.arange(len(node_tags))
    tets = []
    for vol in volume_tags:
        types, _, conn = gmsh.model.mesh.getElements(3, vol)
        for etype, nodes in zip(types, conn):
            if etype != 4:  # 4 = linear tetrahedron
                raise MeshError(f"{what}: gmsh produced element type {etype}, expected linear tetrahedra")
            tets.append(index[np.asarray(nodes, dtype=np.int64)].reshape(-1, 4))
    if not tets:
        raise MeshError(f"{what}: gmsh produced no tetrahedra")
    tets_a = np.concatenate(tets)

    # geometry points and curve nodes that no tetrahedron uses are dropped here so
    # that check() has nothing to warn about
    used = np.zeros(len(coords), dtype=bool)
    used[tets_a.ravel()] = True
    new_index = np.cumsum(used) - 1
    points = coords[used]
    tets_a = new_index[tets_a]

    masks: dict[str, np.ndarray] = {}
    boundary = gmsh.model.getBoundary([(3, v) for v in volume_tags], combined=True, oriented=False)
    for dim, tag in boundary:
        inner, _, _ = gmsh.model.mesh.getNodes(dim, abs(tag), includeBoundary=False)
        allnodes, _, _ = gmsh.model.mesh.getNodes(dim, abs(tag), includeBoundary=True)
        sample = inner if len(inner) else allnodes
        name = classify(coords[index[np.asarray(sample, dtype=np.int64)]])
        key = f"surface_{name}"
        mask = masks.setdefault(key, np.zeros(len(points), dtype=np.int8))
        mask[new_index[index[np.asarray(allnodes, dtype=np.int64)]]] = 1
    perm = bandwidth_order(len(points), tets_a)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    mesh = TetMesh(points=points[perm], tets=inverse[tets_a], point_data={k: m[perm] for k, m in masks.items()})
    _require_connected(mesh, what)
    return mesh.check(source=what)


def bandwidth_order(n_points: int, tets: np.ndarray) -> np.ndarray:
    """Node order of small matrix bandwidth (reverse Cuthill–McKee): ``perm[new] = old``.

    gmsh numbers nodes in the order it creates them, which scatters neighbours over the whole
    range (mean |i − j| of the LV's matrix entries: a quarter of the node count); numbered
    along fronts, the entries of a matrix row lie close together and the solver's mat-vec
    gathers from cache (measured on the LV at 0.25 mm, 175 129 nodes: 1.6–1.7x faster; no
    difference while the vectors fit in L2, as at 0.4 mm).
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    i = np.repeat(tets, 4, axis=1).ravel()
    j = np.tile(tets, (1, 4)).ravel()
    graph = sp.csr_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n_points, n_points))
    return np.asarray(reverse_cuthill_mckee(graph, symmetric_mode=True), dtype=np.int64)


def _require_connected(mesh: TetMesh, what: str) -> None:
    """Refuse geometries that fall apart (e.g. a wall pinched off by the base plane)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    e = mesh.edges()
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(mesh.n_points, mesh.n_points))
    count, labels = connected_components(graph, directed=False)
    if count > 1:
        sizes = np.bincount(labels)
        raise MeshError(f"{what}: the geometry falls apart into {count} pieces ({', '.join(map(str, sizes))} "
                        "nodes); check the parameters")


def _classifier(base_z: float, surfaces: dict[str, _Ellipsoid], scale: float, what: str,
                rename=None):
    """Return ``classify(points)``: the named surface (or ``base`` plane) the points lie on."""
    tol = 1e-3 * scale

    def classify(x: np.ndarray) -> str:
        residuals = {"base": float(np.median(np.abs(x[:, 2] - base_z)))}
        for name, ell in surfaces.items():
            residuals[name] = float(np.median(ell.residual(x)))
        name = min(residuals, key=residuals.get)
        if residuals[name] > tol:
            raise MeshError(f"{what}: a boundary surface lies on none of the defining surfaces "
                            f"(closest: {name}, {residuals[name]:.3g} mm off); the parameters make a "
                            "degenerate geometry")
        return rename(name, x) if rename else name

    return classify


def lv_ellipsoid(resolution: float = 2.0, *, r_short_endo: float = 7.0, r_short_epi: float = 10.0,
                 r_long_endo: float = 17.0, r_long_epi: float = 20.0, base_z: float = 5.0,
                 max_tets: int = 2_000_000) -> TetMesh:
    """Truncated prolate-ellipsoid LV shell (the Land et al. 2015 benchmark ventricle).

    The wall lies between ``(x²+y²)/r_short_endo² + z²/r_long_endo² = 1`` and the same
    with the epicardial radii, below the base plane ``z = base_z``; apex at
    ``(0, 0, −r_long_epi)``.

    Parameters
    ----------
    resolution
        Target edge length [mm] (gmsh's mesh size, uniform).
    r_short_endo, r_short_epi
        Short-axis (equatorial) radii of the cavity and the outer wall [mm].
    r_long_endo, r_long_epi
        Long-axis radii [mm] (apex depth below the equatorial plane z = 0).
    base_z
        Height of the base plane [mm]; ``−r_long_endo < base_z < r_long_endo`` so that
        the cavity opens at the base.
    max_tets
        Refuse (before meshing) resolutions that would give more tetrahedra than this.

    Returns
    -------
    TetMesh
        Checked mesh with ``surface_endo``, ``surface_epi`` and ``surface_base`` node
        masks (int8) in ``point_data``; no fibres, region tags 0.

    Raises
    ------
    MeshError
        For non-positive sizes, an endocardium not inside the epicardium, a base plane
        outside the cavity, a too fine resolution, or a gmsh failure.
    """
    what = "lv_ellipsoid"
    h = _number("resolution", resolution)
    r_short_endo, r_short_epi = _number("r_short_endo", r_short_endo), _number("r_short_epi", r_short_epi)
    r_long_endo, r_long_epi = _number("r_long_endo", r_long_endo), _number("r_long_epi", r_long_epi)
    base_z = _number("base_z", base_z, positive=False)
    if r_short_endo >= r_short_epi:
        raise MeshError(f"r_short_endo ({r_short_endo:g} mm) must be smaller than r_short_epi ({r_short_epi:g} mm)")
    if r_long_endo >= r_long_epi:
        raise MeshError(f"r_long_endo ({r_long_endo:g} mm) must be smaller than r_long_epi ({r_long_epi:g} mm)")
    if not -r_long_endo < base_z < r_long_endo:
        raise MeshError(f"base_z = {base_z:g} mm must lie inside the cavity's long-axis range "
                        f"({-r_long_endo:g}, {r_long_endo:g}) mm so that the base plane cuts the cavity open")
    wall = min(r_short_epi - r_short_endo, r_long_epi - r_long_endo)
    if h > wall:
        logger.warning("%s: resolution %g mm is coarser than the wall (%g mm): fewer than two nodes across it",
                       what, h, wall)
    volume = (truncated_ellipsoid_volume(r_short_epi, r_long_epi, base_z)
              - truncated_ellipsoid_volume(r_short_endo, r_long_endo, base_z))
    _check_size(volume, h, max_tets, what)

    endo = _Ellipsoid((0.0, 0.0, 0.0), (r_short_endo, r_short_endo, r_long_endo))
    epi = _Ellipsoid((0.0, 0.0, 0.0), (r_short_epi, r_short_epi, r_long_epi))
    start = time.perf_counter()
    with _gmsh_model(what, h) as gmsh:
        occ = gmsh.model.occ
        outer, inner = epi.add_to(occ), endo.add_to(occ)
        big = 2.0 * max(r_short_epi, r_long_epi)
        lid = occ.addBox(-big, -big, base_z, 2 * big, 2 * big, big)
        wall_dimtags, _ = occ.cut([(3, outer)], [(3, inner), (3, lid)])
        occ.synchronize()
        vols = [t for d, t in wall_dimtags if d == 3]
        classify = _classifier(base_z, {"endo": endo, "epi": epi}, r_short_endo, what)
        mesh = _classify_and_mesh(gmsh, vols, classify, what)
    _require_surfaces(mesh, ("endo", "epi", "base"), what)
    logger.info("%s: %d nodes, %d tetrahedra at %g mm in %.2f s", what, mesh.n_points, mesh.n_tets, h,
                time.perf_counter() - start)
    return mesh


def biv_ellipsoids(resolution: float = 2.0, *, r_short_endo: float = 7.0, r_short_epi: float = 10.0,
                   r_long_endo: float = 17.0, r_long_epi: float = 20.0, base_z: float = 5.0,
                   rv_shift: float = 5.0, rv_radii: Sequence[float] = (10.0, 11.0, 15.0), rv_wall: float = 3.0,
                   optimize: bool = True, max_tets: int = 2_000_000) -> TetMesh:
    """Idealised biventricle: the LV ellipsoid shell with an RV cavity wrapped round its +x side.

    The LV is :func:`lv_ellipsoid` (same parameters).  The RV cavity is the ellipsoid
    with semi-axes ``rv_radii`` (x, y, z) centred at ``(rv_shift, 0, 0)`` minus the LV
    epicardial ellipsoid, so that the LV wall facing +x is the septum; the RV free
    wall is ``rv_wall`` thick (an ellipsoid with semi-axes ``rv_radii + rv_wall``).
    Everything above ``z = base_z`` is cut off.

    Parameters
    ----------
    resolution
        Target edge length [mm]; 1.5–3 mm mesh reliably with the defaults.
    r_short_endo, r_short_epi, r_long_endo, r_long_epi, base_z
        LV geometry [mm], as in :func:`lv_ellipsoid`.
    rv_shift
        x position of the RV ellipsoids' centre [mm].
    rv_radii
        RV cavity semi-axes (x, y, z) [mm].
    rv_wall
        RV free-wall thickness [mm].
    optimize
        Run Netgen's optimiser after gmsh's: it removes the slivers Delaunay leaves in
        the acute wedges where the RV free wall meets the septum (worst radius ratio
        0.04 -> 0.19 at 2 mm) and roughly doubles the meshing time.
    max_tets
        Refuse resolutions that would give more tetrahedra than this.

    Returns
    -------
    TetMesh
        Checked mesh with ``surface_lv_endo``, ``surface_rv_endo`` (free wall and the
        septum's RV side), ``surface_epi`` and ``surface_base`` node masks (int8).

    Raises
    ------
    MeshError
        For invalid sizes, an RV that does not protrude from the LV or that encloses
        it, a base plane outside a cavity, or a gmsh failure.
    """
    what = "biv_ellipsoids"
    h = _number("resolution", resolution)
    r_short_endo, r_short_epi = _number("r_short_endo", r_short_endo), _number("r_short_epi", r_short_epi)
    r_long_endo, r_long_epi = _number("r_long_endo", r_long_endo), _number("r_long_epi", r_long_epi)
    base_z = _number("base_z", base_z, positive=False)
    rv_shift, rv_wall = _number("rv_shift", rv_shift, positive=False), _number("rv_wall", rv_wall)
    try:
        radii = tuple(float(r) for r in np.asarray(rv_radii, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        radii = ()
    if len(radii) != 3 or not all(math.isfinite(r) and r > 0 for r in radii):
        raise MeshError(f"rv_radii must be three positive semi-axes (x, y, z) [mm], got {rv_radii!r}")
    if r_short_endo >= r_short_epi or r_long_endo >= r_long_epi:
        raise MeshError(f"LV endocardial radii ({r_short_endo:g}, {r_long_endo:g} mm) must be smaller than the "
                        f"epicardial ones ({r_short_epi:g}, {r_long_epi:g} mm)")
    if not -r_long_endo < base_z < r_long_endo:
        raise MeshError(f"base_z = {base_z:g} mm must lie inside the LV cavity's long-axis range "
                        f"({-r_long_endo:g}, {r_long_endo:g}) mm")
    if not -radii[2] < base_z < radii[2]:
        raise MeshError(f"base_z = {base_z:g} mm must lie inside the RV cavity's long-axis range "
                        f"({-radii[2]:g}, {radii[2]:g}) mm")
    if rv_shift + radii[0] <= r_short_epi + h:
        raise MeshError(f"the RV cavity (x up to rv_shift + rv_radii[0] = {rv_shift + radii[0]:g} mm) must reach "
                        f"beyond the LV epicardium (x = {r_short_epi:g} mm) by more than the resolution")
    lv_endo = _Ellipsoid((0.0, 0.0, 0.0), (r_short_endo, r_short_endo, r_long_endo))
    lv_epi = _Ellipsoid((0.0, 0.0, 0.0), (r_short_epi, r_short_epi, r_long_epi))
    rv_endo = _Ellipsoid((float(rv_shift), 0.0, 0.0), radii)
    rv_epi = _Ellipsoid((float(rv_shift), 0.0, 0.0), tuple(r + rv_wall for r in radii))
    # the RV must wrap part of the LV, not all of it: the back of the LV (−x) stays outside
    # the RV cavity, otherwise the LV would hang free inside the RV at the equator
    if rv_endo.level(np.array([-r_short_epi, 0.0, 0.0])) <= 1.0:
        raise MeshError(f"the RV cavity (rv_shift = {rv_shift:g} mm, rv_radii = {list(radii)}) encloses the "
                        "whole LV at the equator; shift the RV to +x or make it narrower")
    volume = (truncated_ellipsoid_volume(r_short_epi, r_long_epi, base_z)
              + truncated_ellipsoid_volume(max(radii[:2]) + rv_wall, radii[2] + rv_wall, base_z))
    _check_size(volume, h, max_tets, what)

    def rename(name: str, x: np.ndarray) -> str:
        if name == "lv_epi":
            # the LV epicardium inside the RV cavity is the septum's RV side
            return "rv_endo" if np.median(rv_epi.level(x)) < 1.0 else "epi"
        return "epi" if name == "rv_epi" else name

    start = time.perf_counter()
    with _gmsh_model(what, h, netgen=bool(optimize)) as gmsh:
        occ = gmsh.model.occ
        t_lv_epi, t_rv_epi = lv_epi.add_to(occ), rv_epi.add_to(occ)
        t_lv_endo, t_rv_endo = lv_endo.add_to(occ), rv_endo.add_to(occ)
        outer, _ = occ.fuse([(3, t_lv_epi)], [(3, t_rv_epi)])
        # the RV cavity is the RV ellipsoid outside the LV: cut a copy of the LV epicardium
        lv_copy = lv_epi.add_to(occ)
        rv_cavity, _ = occ.cut([(3, t_rv_endo)], [(3, lv_copy)])
        big = 2.0 * (max(r_long_epi, abs(rv_shift) + max(radii) + rv_wall) + abs(base_z))
        lid = occ.addBox(-big, -big, base_z, 2 * big, 2 * big, big)
        myo, _ = occ.cut(outer, [(3, t_lv_endo), *rv_cavity, (3, lid)])
        occ.synchronize()
        vols = [t for d, t in myo if d == 3]
        surfaces = {"lv_endo": lv_endo, "lv_epi": lv_epi, "rv_endo": rv_endo, "rv_epi": rv_epi}
        classify = _classifier(base_z, surfaces, min(r_short_endo, *radii), what, rename)
        mesh = _classify_and_mesh(gmsh, vols, classify, what)
    _require_surfaces(mesh, ("lv_endo", "rv_endo", "epi", "base"), what)
    logger.info("%s: %d nodes, %d tetrahedra at %g mm in %.2f s", what, mesh.n_points, mesh.n_tets, h,
                time.perf_counter() - start)
    return mesh


def _require_surfaces(mesh: TetMesh, names: Sequence[str], what: str) -> None:
    for name in names:
        mask = mesh.point_data.get(f"surface_{name}")
        if mask is None or not np.any(mask):
            raise MeshError(f"{what}: the generated mesh has no '{name}' surface; the parameters make a "
                            "degenerate geometry")


#: anatomy generators by case/CLI name
ANATOMY_GENERATORS = {"lv": lv_ellipsoid, "biv": biv_ellipsoids}


def geometry_keys(kind: str) -> list[str]:
    """The ``geometry`` keywords an anatomy generator takes (everything but resolution and the size cap)."""
    import inspect

    return [k for k in inspect.signature(ANATOMY_GENERATORS[kind]).parameters if k not in ("resolution", "max_tets")]
