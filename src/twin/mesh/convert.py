"""``twin mesh convert``: between meshio formats and CARP text files, keeping fibres, sheets and tags."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from ..errors import MeshError
from .io import read_mesh, write_carp, write_mesh

logger = logging.getLogger(__name__)

CARP_SUFFIXES = (".pts", ".elem", ".lon")


def convert_mesh(source: str | Path, target: str | Path, *, unit: str = "auto", out_unit: str | None = None,
                 overwrite: bool = False) -> Path:
    """Read ``source`` and write ``target`` (format from its suffix; CARP for .pts/.elem/.lon or none).

    Parameters
    ----------
    source, target
        Mesh files.
    unit
        Unit of ``source`` (``auto``: µm for CARP, mm otherwise).
    out_unit
        Unit written (default: µm for CARP, mm otherwise).
    overwrite
        Replace existing output files.

    Returns
    -------
    Path
        The written file (the ``.pts`` file for CARP).
    """
    _check_target(Path(target), overwrite)
    mesh = read_mesh(source, unit=unit)
    if mesh.fibres is None:
        logger.warning("%s has no fibres: the output has none either", Path(source).name)
    written = write_any(mesh, target, out_unit=out_unit, overwrite=overwrite)
    logger.info("converted %s (%d nodes, %d tetrahedra) to %s", Path(source).name, mesh.n_points,
                mesh.n_tets, Path(target).name)
    return written


def _outputs(target: Path) -> tuple[bool, Path, list[Path]]:
    carp = target.suffix in CARP_SUFFIXES or target.suffix == ""
    base = target.with_suffix("") if carp else target
    return carp, base, ([base.with_suffix(s) for s in CARP_SUFFIXES] if carp else [target])


def _check_target(target: Path, overwrite: bool) -> None:
    carp, _, outputs = _outputs(target)
    if not carp:
        import meshio

        known = meshio.extension_to_filetypes
        if target.suffix.lower() not in known:
            raise MeshError(f"cannot write '{target.name}': unknown mesh format '{target.suffix}'; use one of "
                            f"{', '.join(sorted(known))}, or .pts/.elem/.lon (or no suffix) for CARP")
    existing = [p for p in outputs if p.exists()]
    if existing and not overwrite:
        raise MeshError(f"{existing[0]} exists; pass --overwrite to replace it")


def write_any(mesh, target: str | Path, *, out_unit: str | None = None, overwrite: bool = False) -> Path:
    """Write ``mesh`` [mm] to ``target`` in the format of its suffix, atomically; return the main file."""
    from .io import UNIT_SCALE

    target = Path(target)
    _check_target(target, overwrite)
    carp, base, _ = _outputs(target)
    out_unit = out_unit or ("um" if carp else "mm")
    # write into a temporary folder next to the target, then move: a failed write never leaves
    # half a mesh under the target's name
    folder = target.parent if str(target.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".twin-convert-") as tmp:
        tmp_base = Path(tmp) / base.name
        if carp:
            write_carp(mesh, tmp_base, unit=out_unit)
        else:
            scaled = mesh if out_unit == "mm" else _scaled(mesh, 1.0 / UNIT_SCALE[out_unit])
            try:
                write_mesh(scaled, tmp_base)
            except Exception as exc:  # meshio raises many types for data a format cannot hold
                raise MeshError(f"cannot write {target.name}: {exc}") from None
        for written in sorted(Path(tmp).iterdir()):
            os.replace(written, folder / written.name)
    return base.with_suffix(".pts") if carp else target


def _scaled(mesh, factor: float):
    from dataclasses import replace

    return replace(mesh, points=mesh.points * factor)


__all__ = ["convert_mesh", "write_any"]
