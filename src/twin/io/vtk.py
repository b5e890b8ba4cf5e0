"""ParaView output: one VTU per time plus a ``.pvd`` index, and single VTU maps."""

from __future__ import annotations

import zlib
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


#: uncompressed bytes per zlib block of a frame's arrays (VTK's own writer uses 32 KiB)
BLOCK = 1 << 20
_VTK_TYPES = {np.dtype("<f8"): "Float64", np.dtype("<f4"): "Float32", np.dtype("<i8"): "Int64",
              np.dtype("<i4"): "Int32", np.dtype("u1"): "UInt8"}
VTK_TETRA = 10


def _zlib_blocks(array: np.ndarray, level: int) -> bytes:
    """One array as VTK's compressed appended block: UInt64 header, then the zlib blocks."""
    raw = memoryview(np.ascontiguousarray(array)).cast("B")
    n = len(raw)
    chunks = [raw[i:i + BLOCK] for i in range(0, n, BLOCK)] or [raw[0:0]]
    packed = [zlib.compress(c, level) for c in chunks]
    header = np.array([len(chunks), BLOCK, n - (len(chunks) - 1) * BLOCK, *map(len, packed)], dtype="<u8")
    return header.tobytes() + b"".join(packed)


class FrameEncoder:
    """Writes the frames of a time series as VTU files, encoding the mesh only once.

    Every frame holds the whole mesh (ParaView reads each VTU on its own), but the
    compressed points, connectivity, offsets and cell types are the same bytes every
    time: they are encoded once, when the encoder is made (before the time loop), and
    reused, so a frame costs the compression of its point data only.  zlib level 1
    throughout: level 6 made the mesh blocks 3 % smaller in 5x the time (measured on
    the Niederer slab), and the point data is compressed by a thread that shares the
    cores with the solver.

    Parameters
    ----------
    points, tets
        The mesh [mm]; ``(n, 3)`` and ``(m, 4)``.
    """

    def __init__(self, points: np.ndarray, tets: np.ndarray) -> None:
        self.n_points = int(points.shape[0])
        self.n_cells = int(tets.shape[0])
        offsets = np.arange(4, 4 * self.n_cells + 1, 4, dtype="<i8")
        types = np.full(self.n_cells, VTK_TETRA, dtype="u1")
        self._geometry = [
            ('type="Float64" NumberOfComponents="3"', _zlib_blocks(np.asarray(points, dtype="<f8"), 1)),
            ('type="Int64" Name="connectivity"', _zlib_blocks(np.asarray(tets, dtype="<i8"), 1)),
            ('type="Int64" Name="offsets"', _zlib_blocks(offsets, 1)),
            ('type="UInt8" Name="types"', _zlib_blocks(types, 1)),
        ]

    def encode(self, point_data: Mapping[str, np.ndarray]) -> bytes:
        """The bytes of one VTU file with ``point_data`` (arrays ``(n,)`` or ``(n, k)``)."""
        blocks: list[bytes] = []
        offset = 0

        def entry(attrs: str, data: bytes) -> str:
            nonlocal offset
            blocks.append(data)
            line = f'<DataArray {attrs} format="appended" offset="{offset}"/>'
            offset += len(data)
            return line

        pd = []
        for name, values in point_data.items():
            arr = np.asarray(values)
            if arr.dtype.kind == "f" and arr.dtype != np.float32:
                arr = arr.astype("<f8", copy=False)
            if arr.shape[0] != self.n_points:
                raise ValueError(f"point data '{name}' has {arr.shape[0]} values for {self.n_points} points")
            vtk_type = _VTK_TYPES.get(arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype)
            if vtk_type is None:
                raise ValueError(f"point data '{name}' has an unsupported type {arr.dtype}")
            comps = f' NumberOfComponents="{arr.shape[1]}"' if arr.ndim == 2 else ""
            pd.append(entry(f'type="{vtk_type}" Name={quoteattr(name)}{comps}', _zlib_blocks(arr, 1)))
        mesh = [entry(attrs, data) for attrs, data in self._geometry]
        xml = (
            '<?xml version="1.0"?>\n'
            '<VTKFile type="UnstructuredGrid" version="1.0" byte_order="LittleEndian" header_type="UInt64" '
            'compressor="vtkZLibDataCompressor">\n'
            "  <UnstructuredGrid>\n"
            f'    <Piece NumberOfPoints="{self.n_points}" NumberOfCells="{self.n_cells}">\n'
            "      <PointData>\n" + "".join(f"        {x}\n" for x in pd) + "      </PointData>\n"
            f"      <Points>\n        {mesh[0]}\n      </Points>\n"
            "      <Cells>\n" + "".join(f"        {x}\n" for x in mesh[1:]) + "      </Cells>\n"
            "    </Piece>\n  </UnstructuredGrid>\n"
            '  <AppendedData encoding="raw">\n   _'
        )
        return xml.encode("ascii") + b"".join(blocks) + b"\n  </AppendedData>\n</VTKFile>\n"

    def write(self, path: str | Path, point_data: Mapping[str, np.ndarray]) -> None:
        """Atomically write one frame."""
        data = self.encode(point_data)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


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
