"""Region selectors: which nodes and elements a ``region:`` / ``where:`` entry of a case picks.

A selector is one of

* ``box`` (``min``, ``max`` [mm]), ``sphere`` (``center``, ``radius`` [mm]),
  ``cylinder`` (axis from ``start`` to ``end``, ``radius`` [mm]; capped at the ends);
* ``tag``: element region tags from the mesh file;
* ``nodes``: explicit node indices;
* ``surface``: within ``[min, max]`` mm of a named surface (node mask
  ``surface_<name>`` in the mesh's point data, e.g. ``endo``);
* ``transmural``: transmural depth in ``[min, max]`` (0 at the endocardium, 1 at
  the epicardium), from the distances to the ``endo`` (or ``lv_endo`` + ``rv_endo``)
  and ``epi`` surfaces;
* ``field``: a threshold ``[min, max]`` on a point or cell array of the mesh
  (wall thickness, an LGE intensity...) — how scar is derived from imaging;
* ``lesion``: an ablation lesion at a point, a cylinder of ``radius`` reaching
  ``depth`` into the wall along ``direction`` or the inward surface normal.

Nodes are selected by their coordinates (or values); elements by their centroid
(or, for fields given per node, by the mean of their nodes' values), so a region's
elements and nodes agree away from its boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MeshError

SURFACE_PREFIX = "surface_"


@dataclass
class Selection:
    """Boolean masks of a region: ``nodes`` ``(n,)`` and ``elements`` ``(m,)``."""

    nodes: np.ndarray
    elements: np.ndarray


def surface_names(point_data: dict[str, np.ndarray]) -> list[str]:
    """Names of the surfaces a mesh carries (``surface_endo`` -> ``endo``)."""
    return sorted(k[len(SURFACE_PREFIX):] for k in point_data if k.startswith(SURFACE_PREFIX))


def surface_distance(points: np.ndarray, point_data: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Euclidean distance [mm] of every node to the nearest node of surface ``name``."""
    from scipy.spatial import cKDTree

    key = SURFACE_PREFIX + name
    if key not in point_data:
        have = surface_names(point_data)
        raise MeshError(f"the mesh has no surface '{name}'; surfaces: {', '.join(have) or 'none'} "
                        f"(a surface is a node mask '{SURFACE_PREFIX}<name>' in the mesh's point data)")
    mask = np.asarray(point_data[key]).reshape(-1) != 0
    if not mask.any():
        raise MeshError(f"surface '{name}' is empty")
    dist, _ = cKDTree(points[mask]).query(points)
    return dist


def transmural_depth(points: np.ndarray, point_data: dict[str, np.ndarray]) -> np.ndarray:
    """Transmural depth per node: d_endo / (d_endo + d_epi), 0 at the endocardium, 1 at the epicardium.

    The endocardium is ``endo``, or the union of ``lv_endo`` and ``rv_endo`` on a
    biventricular mesh.
    """
    names = surface_names(point_data)
    endo_names = ["endo"] if "endo" in names else [n for n in ("lv_endo", "rv_endo") if n in names]
    if not endo_names or "epi" not in names:
        raise MeshError("transmural depth needs 'endo' (or 'lv_endo'/'rv_endo') and 'epi' surfaces; "
                        f"the mesh has: {', '.join(names) or 'none'}")
    d_endo = np.min([surface_distance(points, point_data, n) for n in endo_names], axis=0)
    d_epi = surface_distance(points, point_data, "epi")
    total = d_endo + d_epi
    return np.divide(d_endo, total, out=np.zeros_like(total), where=total > 0)


def _within(values: np.ndarray, lo: float | None, hi: float | None, tol: float = 0.0) -> np.ndarray:
    mask = np.ones(values.shape, dtype=bool)
    if lo is not None:
        mask &= values >= lo - tol
    if hi is not None:
        mask &= values <= hi + tol
    return mask


def _by_position(points: np.ndarray, sel: Any, tol: float) -> np.ndarray | None:
    """Mask of the given coordinates inside a geometric selector, or None if it is not geometric."""
    if sel.box is not None:
        lo = np.asarray(sel.box.min, dtype=float) - tol
        hi = np.asarray(sel.box.max, dtype=float) + tol
        return np.all((points >= lo) & (points <= hi), axis=1)
    if sel.sphere is not None:
        d2 = np.sum((points - np.asarray(sel.sphere.center, dtype=float)) ** 2, axis=1)
        return d2 <= (sel.sphere.radius + tol) ** 2
    cyl = getattr(sel, "cylinder", None)
    if cyl is not None:
        a, b = np.asarray(cyl.start, dtype=float), np.asarray(cyl.end, dtype=float)
        axis = b - a
        length = float(np.linalg.norm(axis))
        if length == 0.0:
            raise MeshError("cylinder start and end must differ")
        axis /= length
        rel = points - a
        along = rel @ axis
        radial = np.linalg.norm(rel - np.outer(along, axis), axis=1)
        return (along >= -tol) & (along <= length + tol) & (radial <= cyl.radius + tol)
    return None


def select(points: np.ndarray, tets: np.ndarray, tags: np.ndarray, sel: Any,
           point_data: dict[str, np.ndarray] | None = None,
           cell_data: dict[str, np.ndarray] | None = None) -> Selection:
    """Nodes and elements of the region described by ``sel`` (one selector set).

    Parameters
    ----------
    points, tets, tags
        Mesh coordinates [mm], connectivity and element region tags.
    sel
        Object with the selector attributes of :class:`twin.case.RegionSpec`
        (exactly one not ``None``).
    point_data, cell_data
        The mesh's named arrays (surfaces, fields).

    Returns
    -------
    Selection
        Node and element masks (possibly empty: the caller decides whether that is an error).
    """
    point_data = point_data or {}
    cell_data = cell_data or {}
    lo, hi = points.min(axis=0), points.max(axis=0)
    # bounds are inclusive with a tolerance, so the faces of a generated box count
    tol = 1e-9 * max(float(np.linalg.norm(hi - lo)), 1.0)
    centroids = points[tets].mean(axis=1)
    node_mask = _by_position(points, sel, tol)
    if node_mask is not None:
        return Selection(node_mask, _by_position(centroids, sel, tol))
    if sel.tag is not None:
        wanted = np.atleast_1d(np.asarray(sel.tag, dtype=np.int64))
        elements = np.isin(tags, wanted)
        return Selection(_nodes_of(tets, elements, len(points)), elements)
    if sel.nodes is not None:
        idx = np.unique(np.asarray(sel.nodes, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= len(points)):
            raise MeshError(f"node index {int(idx.max())} is out of range: the mesh has {len(points)} nodes")
        nodes = np.zeros(len(points), dtype=bool)
        nodes[idx] = True
        return Selection(nodes, nodes[tets].all(axis=1))
    surf = getattr(sel, "surface", None)
    if surf is not None:
        dist = surface_distance(points, point_data, surf.name)
        return Selection(_within(dist, surf.min, surf.max, tol), _within(dist[tets].mean(axis=1), surf.min, surf.max, tol))
    trans = getattr(sel, "transmural", None)
    if trans is not None:
        depth = transmural_depth(points, point_data)
        return Selection(_within(depth, trans.min, trans.max, 1e-12),
                         _within(depth[tets].mean(axis=1), trans.min, trans.max, 1e-12))
    lesion = getattr(sel, "lesion", None)
    if lesion is not None:
        return Selection(*_lesion_masks(points, tets, point_data, lesion, tol))
    fld = getattr(sel, "field", None)
    if fld is not None:
        if fld.name in point_data:
            values = np.asarray(point_data[fld.name], dtype=float)
            if values.ndim != 1:
                raise MeshError(f"field '{fld.name}' must be a scalar per node, got shape {values.shape}")
            return Selection(_within(values, fld.min, fld.max), _within(values[tets].mean(axis=1), fld.min, fld.max))
        if fld.name in cell_data:
            values = np.asarray(cell_data[fld.name], dtype=float)
            if values.ndim != 1:
                raise MeshError(f"field '{fld.name}' must be a scalar per element, got shape {values.shape}")
            elements = _within(values, fld.min, fld.max)
            return Selection(_nodes_of(tets, elements, len(points)), elements)
        have = sorted(set(point_data) | set(cell_data))
        raise MeshError(f"the mesh has no field '{fld.name}'; arrays: {', '.join(have) or 'none'}")
    raise MeshError("a region needs one of box, sphere, cylinder, tag, nodes, surface, transmural or field")


def inward_normal(points: np.ndarray, point_data: dict[str, np.ndarray], at: np.ndarray,
                  k: int = 12) -> np.ndarray | None:
    """Unit normal into the tissue at the surface point nearest ``at``, or None without surfaces.

    The normal is the least-variance direction of the ``k`` nearest surface nodes (a local
    plane fit); its sign points toward the tissue near ``at``.
    """
    from scipy.spatial import cKDTree

    masks = [np.asarray(v).reshape(-1) != 0 for key, v in point_data.items() if key.startswith(SURFACE_PREFIX)]
    if not masks:
        return None
    surface = points[np.any(masks, axis=0)]
    if len(surface) < 3:
        return None
    _, idx = cKDTree(surface).query(at, k=min(k, len(surface)))
    patch = surface[np.atleast_1d(idx)]
    centre = patch.mean(axis=0)
    _, _, vt = np.linalg.svd(patch - centre)
    normal = vt[-1]
    # orient toward the tissue: the mean of the mesh nodes near the patch lies inside the wall
    radius = 2.0 * float(np.max(np.linalg.norm(patch - centre, axis=1))) + 1e-9
    near = points[np.linalg.norm(points - centre, axis=1) <= radius]
    if np.dot(near.mean(axis=0) - centre, normal) < 0:
        normal = -normal
    return normal


def _lesion_masks(points, tets, point_data, lesion, tol) -> tuple[np.ndarray, np.ndarray]:
    at = np.asarray(lesion.at, dtype=float)
    if lesion.direction is not None:
        axis = np.asarray(lesion.direction, dtype=float)
        norm = float(np.linalg.norm(axis))
        if norm == 0.0:
            raise MeshError("lesion direction must not be the zero vector")
        axis = axis / norm
    else:
        axis = inward_normal(points, point_data, at)
    centroids = points[tets].mean(axis=1)

    def inside(x: np.ndarray) -> np.ndarray:
        rel = x - at
        if axis is None:  # no surfaces to orient by: a sphere
            return np.linalg.norm(rel, axis=1) <= lesion.radius + tol
        along = rel @ axis
        radial = np.linalg.norm(rel - np.outer(along, axis), axis=1)
        # the lesion starts a radius above the surface point so a point given slightly
        # outside or inside the wall still burns the surface
        return (along >= -lesion.radius) & (along <= lesion.depth + tol) & (radial <= lesion.radius + tol)

    return inside(points), inside(centroids)


def _nodes_of(tets: np.ndarray, elements: np.ndarray, n: int) -> np.ndarray:
    nodes = np.zeros(n, dtype=bool)
    nodes[tets[elements].ravel()] = True
    return nodes


def select_nodes(points: np.ndarray, tets: np.ndarray, tags: np.ndarray, sel: Any,
                 point_data: dict[str, np.ndarray] | None = None,
                 cell_data: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Sorted ``int64`` indices of the nodes of the region ``sel`` (see :func:`select`)."""
    return np.flatnonzero(select(points, tets, tags, sel, point_data, cell_data).nodes)


def describe_bounds(points: np.ndarray) -> str:
    """``[x0, x1] × [y0, y1] × [z0, z1] mm`` of the mesh, for error messages."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return " × ".join(f"[{a:.4g}, {b:.4g}]" for a, b in zip(lo, hi)) + " mm"
