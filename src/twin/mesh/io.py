"""Mesh reading and writing: every meshio format with tetrahedra, and CARP text files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import MeshError
from .tetmesh import TetMesh

logger = logging.getLogger(__name__)

#: scale factors to mm
UNIT_SCALE = {"um": 1e-3, "mm": 1.0, "cm": 10.0, "m": 1000.0}
FIBRE_NAMES = ("fibres", "fibers", "fibre", "fiber", "fiber_direction", "f0", "lon")
SHEET_NAMES = ("sheets", "sheet", "s0")
REGION_NAMES = ("region", "regions", "tag", "tags", "elemtag", "cell_tags", "gmsh:physical", "medit:ref",
                "material", "cellentityids")


def _carp_base(path: Path) -> Path | None:
    if path.suffix in (".pts", ".elem", ".lon"):
        return path.with_suffix("")
    if path.suffix == "" and path.with_suffix(".pts").exists():
        return path
    return None


def default_unit(path: str | Path) -> str:
    """The unit ``unit="auto"`` reads a file in: µm for CARP files (openCARP's convention), else mm."""
    return "um" if _carp_base(Path(path)) is not None else "mm"


def _read_counted(path: Path, what: str) -> list[str]:
    try:
        lines = path.read_text().split("\n")
    except OSError as exc:
        raise MeshError(f"cannot read {path}: {exc}") from None
    return [ln for ln in lines if ln.strip()]


def _read_carp(base: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    pts_path, elem_path, lon_path = (base.with_suffix(s) for s in (".pts", ".elem", ".lon"))
    for p in (pts_path, elem_path):
        if not p.exists():
            raise MeshError(f"mesh file not found: {p} (a CARP mesh needs .pts and .elem)")
    lines = _read_counted(pts_path, "points")
    try:
        n = int(lines[0].split()[0])
        points = np.array([ln.split()[:3] for ln in lines[1:n + 1]], dtype=np.float64)
    except (ValueError, IndexError):
        raise MeshError(f"{pts_path.name}: expected a point count then 'x y z' per line") from None
    if points.shape != (n, 3):
        raise MeshError(f"{pts_path.name}: header says {n} points, found {len(points)}")
    lines = _read_counted(elem_path, "elements")
    try:
        m = int(lines[0].split()[0])
    except (ValueError, IndexError):
        raise MeshError(f"{elem_path.name}: expected an element count on the first line") from None
    rows = [ln.split() for ln in lines[1:m + 1]]
    if len(rows) != m:
        raise MeshError(f"{elem_path.name}: header says {m} elements, found {len(rows)}")
    kinds = {r[0] for r in rows}
    if kinds != {"Tt"}:
        raise MeshError(f"{elem_path.name}: only tetrahedra ('Tt') are supported, found "
                        f"{', '.join(sorted(kinds - {'Tt'}))}")
    try:
        tets = np.array([r[1:5] for r in rows], dtype=np.int64)
        tags = np.array([r[5] if len(r) > 5 else 0 for r in rows], dtype=np.int64)
    except ValueError:
        raise MeshError(f"{elem_path.name}: expected 'Tt n0 n1 n2 n3 [tag]' per line") from None
    fibres = sheets = None
    if lon_path.exists():
        lines = _read_counted(lon_path, "fibres")
        first = lines[0].split()
        if len(first) == 1:
            n_dir = int(first[0])
            body = lines[1:]
        else:  # some writers omit the header
            n_dir = 2 if len(first) == 6 else 1
            body = lines
        try:
            data = np.array([ln.split() for ln in body], dtype=np.float64)
        except ValueError:
            raise MeshError(f"{lon_path.name}: expected 3 or 6 numbers per element") from None
        if data.shape != (m, 3 * n_dir):
            raise MeshError(f"{lon_path.name}: expected {m} rows of {3 * n_dir} numbers, got {data.shape}")
        fibres = data[:, :3]
        sheets = data[:, 3:6] if n_dir == 2 else None
    return points, tets, tags, fibres, sheets


def _find(data: dict[str, np.ndarray], names: tuple[str, ...], explicit: str | None, what: str,
          source: str) -> np.ndarray | None:
    if explicit is not None:
        if explicit in data:
            return data[explicit]
        raise MeshError(f"{source}: no {what} array named '{explicit}'; arrays in the file: "
                        f"{', '.join(sorted(data)) or 'none'}")
    lower = {k.lower(): k for k in data}
    for n in names:
        if n in lower:
            return data[lower[n]]
    return None


def read_mesh(path: str | Path, *, unit: str = "auto", fibres: str | None = None,
              regions: str | None = None, check: bool = True) -> TetMesh:
    """Read a tetrahedral mesh (any meshio format, or CARP ``.pts/.elem/.lon``).

    Parameters
    ----------
    path
        The mesh file; for CARP the ``.pts`` or ``.elem`` file or the common base name.
    unit
        Length unit of the file: ``"um"``, ``"mm"``, ``"cm"``, ``"m"`` or ``"auto"``
        (µm for CARP, as openCARP writes them; mm otherwise).
    fibres, regions
        Names of the fibre and region-tag arrays; by default well-known names are searched.
    check
        Run :meth:`TetMesh.check` (re-orient, drop unused nodes, normalise fibres); ``False``
        returns the data as stored (for ``twin mesh info``).

    Returns
    -------
    TetMesh
        The checked mesh in mm.

    Raises
    ------
    MeshError
        Missing file, unreadable format, no tetrahedra, bad data.
    """
    path = Path(path)
    source = path.name
    if unit != "auto" and unit not in UNIT_SCALE:
        raise MeshError(f"unknown mesh unit '{unit}'; expected one of auto, {', '.join(UNIT_SCALE)}")
    base = _carp_base(path)
    if base is not None:
        points, tets, tags, fib, sh = _read_carp(base)
        scale = UNIT_SCALE["um" if unit == "auto" else unit]
        mesh = TetMesh(points * scale, tets, fibres=fib, sheets=sh, regions=tags)
        return mesh.check(source=source) if check else mesh
    if not path.exists():
        raise MeshError(f"mesh file not found: {path}")
    import meshio

    try:
        raw = meshio.read(path)
    except (Exception, SystemExit) as exc:
        # meshio raises many types (ReadError, KeyError, ValueError...) and its VTU reader even
        # calls sys.exit() on malformed XML: none of that may escape as a traceback or an exit
        raise MeshError(f"cannot read mesh {path}: {exc or type(exc).__name__}") from None
    blocks = [i for i, c in enumerate(raw.cells) if c.type == "tetra"]
    if not blocks:
        found = sorted({c.type for c in raw.cells})
        raise MeshError(f"{source}: no tetrahedra in the file (cell types found: {', '.join(found) or 'none'})")
    tets = np.concatenate([raw.cells[i].data for i in blocks])
    cell_data = {}
    for name, arrays in raw.cell_data.items():
        cell_data[name] = np.concatenate([np.asarray(arrays[i]) for i in blocks])
    point_data = {k: np.asarray(v) for k, v in raw.point_data.items()}
    available = sorted(set(cell_data) | set(point_data))
    for what, name, pool in (("fibre", fibres, available), ("region", regions, sorted(cell_data))):
        if name is not None and name not in pool:
            raise MeshError(f"{source}: no {what} array named '{name}'; arrays in the file: "
                            f"{', '.join(available) or 'none'}")
    if fibres is not None:
        fib, point_fib = cell_data.get(fibres), point_data.get(fibres)
    else:
        fib = _find(cell_data, FIBRE_NAMES, None, "fibre", source)
        point_fib = None if fib is not None else _find(point_data, FIBRE_NAMES, None, "fibre", source)
    if fib is None and point_fib is not None:
        logger.info("%s: fibres given per node; averaged per element and renormalised", source)
        fib = np.asarray(point_fib, dtype=np.float64)[tets].mean(axis=1)
    sheet = _find(cell_data, SHEET_NAMES, None, "sheet", source)
    tags = cell_data[regions] if regions is not None else _find(cell_data, REGION_NAMES, None, "region", source)
    if fib is not None and np.asarray(fib).ndim == 2 and np.asarray(fib).shape[1] > 3:
        full = np.asarray(fib)
        fib = full[:, :3]
        if sheet is None and full.shape[1] >= 6:
            sheet = full[:, 3:6]
    extra = {k: v for k, v in cell_data.items()
             if v is not fib and v is not sheet and v is not tags and np.asarray(v).shape[:1] == (len(tets),)}
    scale = UNIT_SCALE["mm" if unit == "auto" else unit]
    mesh = TetMesh(np.asarray(raw.points, dtype=np.float64)[:, :3] * scale, tets,
                   fibres=None if fib is None else np.asarray(fib, dtype=np.float64),
                   sheets=None if sheet is None else np.asarray(sheet, dtype=np.float64),
                   regions=None if tags is None else np.asarray(tags).reshape(-1).astype(np.int64),
                   point_data=point_data, cell_data=extra)
    return mesh.check(source=source) if check else mesh


def write_mesh(mesh: TetMesh, path: str | Path, **kwargs) -> None:
    """Write with meshio; fibres, sheets and tags as cell data ``fibres``, ``sheets``, ``region``."""
    import meshio

    cell_data = {"region": [mesh.regions]}
    if mesh.fibres is not None:
        cell_data["fibres"] = [mesh.fibres]
    if mesh.sheets is not None:
        cell_data["sheets"] = [mesh.sheets]
    meshio.write(path, meshio.Mesh(mesh.points, [("tetra", mesh.tets)], cell_data=cell_data,
                                   point_data=mesh.point_data), **kwargs)


def write_carp(mesh: TetMesh, basename: str | Path, *, unit: str = "um") -> None:
    """Write CARP ``.pts`` (in ``unit``), ``.elem`` (with tags) and ``.lon`` (when fibres exist)."""
    base = Path(basename)
    if base.suffix in (".pts", ".elem", ".lon"):
        base = base.with_suffix("")
    scale = 1.0 / UNIT_SCALE[unit]
    np.savetxt(base.with_suffix(".pts"), mesh.points * scale, fmt="%.10g", header=str(mesh.n_points),
               comments="")
    elem = np.column_stack([mesh.tets, mesh.regions])
    with open(base.with_suffix(".elem"), "w") as f:
        f.write(f"{mesh.n_tets}\n")
        np.savetxt(f, elem, fmt="Tt %d %d %d %d %d")
    if mesh.fibres is not None:
        data = mesh.fibres if mesh.sheets is None else np.column_stack([mesh.fibres, mesh.sheets])
        np.savetxt(base.with_suffix(".lon"), data, fmt="%.8g", header="1" if mesh.sheets is None else "2",
                   comments="")
