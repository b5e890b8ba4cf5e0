"""ParaView output: one VTU per time plus a ``.pvd`` index, and single VTU maps."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import quoteattr

import meshio
import numpy as np

from .atomic import atomic_write, write_text


def write_vtu(path: str | Path, points: np.ndarray, tets: np.ndarray,
              point_data: Mapping[str, np.ndarray] | None = None,
              cell_data: Mapping[str, np.ndarray] | None = None) -> None:
    """Atomically write a tetrahedral VTU (binary, zlib-compressed).

    Parameters
    ----------
    path
        Target ``.vtu`` file.
    points, tets
        Mesh [mm].
    point_data, cell_data
        Arrays per node ``(n,)``/``(n, k)`` and per element ``(m,)``/``(m, k)``.
    """
    mesh = meshio.Mesh(
        points, [("tetra", tets)],
        point_data={k: np.asarray(v) for k, v in (point_data or {}).items()},
        cell_data={k: [np.asarray(v)] for k, v in (cell_data or {}).items()},
    )
    atomic_write(path, lambda tmp: meshio.write(tmp, mesh, file_format="vtu"))


class PvdSeries:
    """A ParaView collection file listing the time steps written so far.

    The index is rewritten atomically after each frame, so an interrupted run
    leaves a valid series of everything written up to then.

    Parameters
    ----------
    path
        The ``.pvd`` file; frames live in a sibling folder and are listed relative to it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: list[tuple[float, str]] = []

    def add(self, time: float, frame: str | Path) -> None:
        rel = Path(frame).resolve().relative_to(self.path.parent.resolve())
        self.entries.append((float(time), rel.as_posix()))
        self.flush()

    def truncate(self, time: float) -> None:
        """Drop frames after ``time`` [ms] (used when resuming from a checkpoint)."""
        self.entries = [(t, f) for t, f in self.entries if t <= time + 1e-9]
        self.flush()

    def flush(self) -> None:
        rows = "\n".join(f'    <DataSet timestep="{t:.10g}" group="" part="0" file={quoteattr(f)}/>'
                         for t, f in self.entries)
        write_text(self.path, '<?xml version="1.0"?>\n'
                   '<VTKFile type="Collection" version="0.1" byte_order="LittleEndian">\n'
                   f"  <Collection>\n{rows}\n  </Collection>\n</VTKFile>\n")

    @classmethod
    def read(cls, path: str | Path) -> "PvdSeries":
        """Load an existing index (to resume a run)."""
        import xml.etree.ElementTree as ET

        series = cls(path)
        root = ET.parse(path).getroot()
        for ds in root.iter("DataSet"):
            series.entries.append((float(ds.get("timestep", "0")), ds.get("file", "")))
        return series
