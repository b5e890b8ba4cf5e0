"""Mesh generators: a structured box of tetrahedra for tests, benchmarks and the slab case."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import MeshError
from .tetmesh import TetMesh

# Kuhn (Freudenthal) split of the unit cube: the six tetrahedra along the main
# diagonal 0 -> 7, one per permutation of the axes.  Neighbouring cubes split
# their shared faces the same way, so the mesh is conforming.
_CORNERS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0],
                     [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]])
_KUHN = np.array([[0, 1, 3, 7], [0, 1, 5, 7], [0, 2, 3, 7], [0, 2, 6, 7], [0, 4, 5, 7], [0, 4, 6, 7]])


def box_mesh(size: Sequence[float], spacing: float | Sequence[float], *, origin: Sequence[float] = (0, 0, 0),
             fibre: Sequence[float] | None = (1.0, 0.0, 0.0), region: int = 0) -> TetMesh:
    """Structured tetrahedral mesh of the box ``[origin, origin + size]``.

    Parameters
    ----------
    size
        Side lengths [mm].
    spacing
        Target edge length along each axis [mm]; the number of cells per axis is
        ``max(1, round(size / spacing))`` and the actual spacing ``size / n``.
    origin
        Lower corner [mm].
    fibre
        Constant fibre direction (normalised), or ``None`` for no fibres.
    region
        Tag given to every element.

    Returns
    -------
    TetMesh
        ``(nx+1)(ny+1)(nz+1)`` nodes (x fastest) and ``6 nx ny nz`` positively
        oriented tetrahedra.
    """
    size_a = np.asarray(size, dtype=np.float64).reshape(-1)
    spacing_a = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    if size_a.shape != (3,) or not np.all(np.isfinite(size_a)) or np.any(size_a <= 0):
        raise MeshError(f"box size must be three positive lengths [mm], got {list(size_a)}")
    if not np.all(np.isfinite(spacing_a)) or np.any(spacing_a <= 0):
        raise MeshError(f"box spacing must be positive [mm], got {list(spacing_a)}")
    n = np.maximum(1, np.round(size_a / spacing_a)).astype(np.int64)
    axes = [origin[i] + np.linspace(0.0, size_a[i], n[i] + 1) for i in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    points = np.column_stack([xx.ravel(), yy.ravel(), zz.ravel()])

    def node(i, j, k):
        return (k * (n[1] + 1) + j) * (n[0] + 1) + i

    k, j, i = np.meshgrid(np.arange(n[2]), np.arange(n[1]), np.arange(n[0]), indexing="ij")
    i, j, k = i.ravel(), j.ravel(), k.ravel()
    corners = np.stack([node(i + c[0], j + c[1], k + c[2]) for c in _CORNERS], axis=1)  # (cells, 8)
    tets = corners[:, _KUHN].reshape(-1, 4)
    x = points[tets]
    vol = np.linalg.det(x[:, 1:, :] - x[:, :1, :])
    neg = vol < 0
    tets[neg] = tets[neg][:, [0, 2, 1, 3]]
    fibres = None
    if fibre is not None:
        f = np.asarray(fibre, dtype=np.float64)
        if np.linalg.norm(f) == 0:
            raise MeshError("fibre direction must not be the zero vector")
        fibres = np.tile(f / np.linalg.norm(f), (len(tets), 1))
    return TetMesh(points=points, tets=tets, fibres=fibres, regions=np.full(len(tets), region, np.int32))
