"""The tetrahedral mesh data model and its checks."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import MeshError

logger = logging.getLogger(__name__)


@dataclass
class TetMesh:
    """A tetrahedral mesh with optional fibres, sheets and region tags.

    Attributes
    ----------
    points
        ``(n, 3)`` float64 coordinates [mm].
    tets
        ``(m, 4)`` int32 vertex indices (positively oriented after :meth:`check`).
    fibres, sheets
        ``(m, 3)`` unit vectors per element, or ``None``.
    regions
        ``(m,)`` int32 region tags (zeros when not given).
    point_data, cell_data
        Extra named arrays carried along (e.g. an LGE intensity per node).
    """

    points: np.ndarray
    tets: np.ndarray
    fibres: np.ndarray | None = None
    sheets: np.ndarray | None = None
    regions: np.ndarray | None = None
    point_data: dict[str, np.ndarray] = field(default_factory=dict)
    cell_data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.points = np.ascontiguousarray(self.points, dtype=np.float64)
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise MeshError(f"points must have shape (n, 3), got {self.points.shape}")
        tets = np.asarray(self.tets)
        if tets.ndim != 2 or tets.shape[1] != 4:
            raise MeshError(f"tetrahedra must have shape (m, 4), got {tets.shape}")
        if tets.size and (tets.min() < 0 or tets.max() >= len(self.points)):
            raise MeshError(f"tetrahedra reference node {int(tets.max()) if tets.max() >= len(self.points) else int(tets.min())}"
                            f" but the mesh has {len(self.points)} nodes")
        self.tets = np.ascontiguousarray(tets, dtype=np.int32)
        m = len(self.tets)
        for name in ("fibres", "sheets"):
            arr = getattr(self, name)
            if arr is not None:
                arr = np.ascontiguousarray(arr, dtype=np.float64)
                if arr.shape != (m, 3):
                    raise MeshError(f"{name} must have shape ({m}, 3) (one vector per element), got {arr.shape}")
                setattr(self, name, arr)
        if self.regions is None:
            self.regions = np.zeros(m, dtype=np.int32)
        else:
            reg = np.asarray(self.regions).reshape(-1)
            if reg.shape != (m,):
                raise MeshError(f"region tags must have one entry per element ({m}), got {reg.shape}")
            self.regions = np.ascontiguousarray(reg, dtype=np.int32)

    @property
    def n_points(self) -> int:
        return len(self.points)

    @property
    def n_tets(self) -> int:
        return len(self.tets)

    def volumes(self) -> np.ndarray:
        """Signed volumes ``(m,)`` [mm³] (positive for positively oriented elements)."""
        x = self.points[self.tets]
        return np.linalg.det(x[:, 1:, :] - x[:, :1, :]) / 6.0

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.points.min(axis=0), self.points.max(axis=0)

    def edges(self) -> np.ndarray:
        """Unique edges ``(e, 2)`` as sorted node pairs."""
        pairs = self.tets[:, [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]].reshape(-1, 2)
        return np.unique(np.sort(pairs, axis=1), axis=0)

    def edge_lengths(self) -> np.ndarray:
        """Lengths of the unique edges [mm]."""
        e = self.edges()
        return np.linalg.norm(self.points[e[:, 0]] - self.points[e[:, 1]], axis=1)

    def node_regions(self) -> tuple[np.ndarray, np.ndarray]:
        """Region of every node: the most frequent tag of its elements (ties: smallest tag).

        Returns
        -------
        tags
            Sorted unique tags ``(k,)`` int32.
        index
            ``(n,)`` int32 index into ``tags`` per node.
        """
        assert self.regions is not None
        tags, elem_idx = np.unique(self.regions, return_inverse=True)
        k = len(tags)
        nodes = self.tets.ravel().astype(np.int64)
        region = np.repeat(elem_idx, 4).astype(np.int64)
        counts = np.bincount(nodes * k + region, minlength=self.n_points * k).reshape(self.n_points, k)
        # argmax returns the first maximum: ties go to the smallest tag
        return tags.astype(np.int32), np.ascontiguousarray(counts.argmax(axis=1), dtype=np.int32)

    def check(self, *, source: str = "mesh") -> "TetMesh":
        """Return a checked copy: oriented, no unreferenced nodes, unit fibres.

        Raises
        ------
        MeshError
            For NaN coordinates, degenerate elements or invalid fibre vectors,
            naming the count and the first offender.
        """
        bad = ~np.all(np.isfinite(self.points), axis=1)
        if bad.any():
            raise MeshError(f"{source}: {int(bad.sum())} node(s) have NaN or infinite coordinates "
                            f"(first: node {int(np.flatnonzero(bad)[0])})")
        if self.n_tets == 0:
            raise MeshError(f"{source}: the mesh has no tetrahedra")
        tets = self.tets.copy()
        srt = np.sort(tets, axis=1)
        repeated = np.any(srt[:, 1:] == srt[:, :-1], axis=1)
        vol = self.volumes()
        scale = np.median(np.abs(vol))
        degenerate = repeated | (np.abs(vol) <= 1e-12 * scale) | (vol == 0)
        if degenerate.any():
            first = int(np.flatnonzero(degenerate)[0])
            raise MeshError(f"{source}: {int(degenerate.sum())} degenerate element(s) with zero volume "
                            f"or a repeated node (first: element {first}, volume {vol[first]:.3g} mm³)")
        inverted = vol < 0
        if inverted.any():
            logger.warning("%s: re-oriented %d inverted element(s) (first: element %d)", source,
                           int(inverted.sum()), int(np.flatnonzero(inverted)[0]))
            tets[inverted] = tets[inverted][:, [0, 2, 1, 3]]
        fibres, sheets = self.fibres, self.sheets
        for name in ("fibres", "sheets"):
            arr = getattr(self, name)
            if arr is None:
                continue
            norm = np.linalg.norm(arr, axis=1)
            bad = ~np.isfinite(norm) | (norm < 1e-12)
            if bad.any():
                raise MeshError(f"{source}: {int(bad.sum())} element(s) have zero-length or NaN {name} "
                                f"(first: element {int(np.flatnonzero(bad)[0])})")
            arr = arr / norm[:, None]
            if name == "fibres":
                fibres = arr
            else:
                sheets = arr
        points, point_data = self.points, dict(self.point_data)
        used = np.zeros(self.n_points, dtype=bool)
        used[tets.ravel()] = True
        if not used.all():
            unused = np.flatnonzero(~used)
            logger.warning("%s: removed %d node(s) not used by any tetrahedron (first: node %d)", source,
                           unused.size, int(unused[0]))
            new_index = np.cumsum(used) - 1
            tets = new_index[tets]
            points = points[used]
            point_data = {k: v[used] for k, v in point_data.items()}
        return replace(self, points=points, tets=tets, fibres=fibres, sheets=sheets,
                       point_data=point_data, cell_data=dict(self.cell_data))


def mesh_hash(mesh: TetMesh) -> str:
    """SHA-256 of the arrays that define the mesh (points, tets, fibres, sheets, regions)."""
    h = hashlib.sha256()
    for arr in (mesh.points, mesh.tets, mesh.fibres, mesh.sheets, mesh.regions):
        if arr is None:
            h.update(b"none")
        else:
            a = np.ascontiguousarray(arr)
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
    return h.hexdigest()
