"""Region selectors: which nodes a ``region:`` entry of a case file picks."""

from __future__ import annotations

import numpy as np

from ..errors import MeshError


def select_nodes(points: np.ndarray, tets: np.ndarray, tags: np.ndarray, *, box=None, sphere=None,
                 tag=None, nodes=None) -> np.ndarray:
    """Indices of the nodes in a region (exactly one selector given).

    Parameters
    ----------
    points, tets, tags
        Mesh coordinates [mm], connectivity and element region tags.
    box
        Object with ``min`` and ``max`` corners [mm]; bounds are inclusive with a
        tolerance of 1e-9 of the mesh size, so faces of a generated box count.
    sphere
        Object with ``center`` [mm] and ``radius`` [mm].
    tag
        An element tag or list of tags: the nodes of those elements.
    nodes
        Explicit node indices.

    Returns
    -------
    numpy.ndarray
        Sorted unique ``int64`` node indices (possibly empty: the caller decides
        whether that is an error).
    """
    lo, hi = points.min(axis=0), points.max(axis=0)
    tol = 1e-9 * max(float(np.linalg.norm(hi - lo)), 1.0)
    if box is not None:
        bmin = np.asarray(box.min, dtype=float) - tol
        bmax = np.asarray(box.max, dtype=float) + tol
        mask = np.all((points >= bmin) & (points <= bmax), axis=1)
        return np.flatnonzero(mask)
    if sphere is not None:
        d2 = np.sum((points - np.asarray(sphere.center, dtype=float)) ** 2, axis=1)
        return np.flatnonzero(d2 <= (sphere.radius + tol) ** 2)
    if tag is not None:
        wanted = np.atleast_1d(np.asarray(tag, dtype=np.int64))
        return np.unique(tets[np.isin(tags, wanted)])
    if nodes is not None:
        idx = np.unique(np.asarray(nodes, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= len(points)):
            raise MeshError(f"node index {int(idx.max())} is out of range: the mesh has {len(points)} nodes")
        return idx
    raise MeshError("a region needs one of box, sphere, tag or nodes")


def describe_bounds(points: np.ndarray) -> str:
    """``[x0, x1] × [y0, y1] × [z0, z1] mm`` of the mesh, for error messages."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return " × ".join(f"[{a:.4g}, {b:.4g}]" for a, b in zip(lo, hi)) + " mm"
