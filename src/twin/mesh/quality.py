"""What ``twin mesh info`` reports: size, element quality, regions, surfaces, fibres, and the unit.

The unit guess exists because of a classic trap: openCARP meshes are in µm, CEPS
meshes in cm, most others in mm, and a mesh read in the wrong unit runs without
complaint at a conduction velocity off by a factor of 10 to 1000.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .io import UNIT_SCALE
from .tetmesh import TetMesh

#: plausible extent of a simulated organ or sample [mm] (a 1 mm cube to a whole torso)
PLAUSIBLE_EXTENT_MM = (1.0, 1000.0)
#: plausible median edge length [mm] (5 µm, finer than any tissue mesh, to 10 mm)
PLAUSIBLE_EDGE_MM = (0.005, 10.0)
#: the typical values the guess aims at: hearts span ~10–150 mm with edges of ~0.1–2 mm
TYPICAL_EXTENT_MM, TYPICAL_EDGE_MM = 60.0, 0.5


def edge_lengths(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Lengths of the unique edges of the mesh (in the points' unit)."""
    pairs = np.concatenate([tets[:, [i, j]] for i, j in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))])
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    return np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1)


def guess_unit(points: np.ndarray, tets: np.ndarray, prefer: str | None = None) -> tuple[str, dict[str, float]]:
    """Most plausible length unit of raw coordinates, from the extent and the edge lengths.

    Small samples are ambiguous between neighbouring units (a 6 mm slab is also a plausible
    6 cm heart), so ``prefer`` (the declared or conventional unit) wins unless another unit
    is more plausible by over a decade.

    Returns
    -------
    unit
        One of ``um``, ``mm``, ``cm``, ``m``.
    scores
        Per unit, the distance in decades of (extent, median edge) from typical cardiac values
        once converted to mm (smaller is more plausible).
    """
    extent = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
    edge = float(np.median(edge_lengths(points, tets)))
    scores = {}
    for unit, scale in UNIT_SCALE.items():
        e_mm, h_mm = extent * scale, edge * scale
        scores[unit] = abs(np.log10(max(e_mm, 1e-30) / TYPICAL_EXTENT_MM)) + abs(np.log10(max(h_mm, 1e-30) / TYPICAL_EDGE_MM))
    best = min(scores, key=scores.get)
    # the declared unit, then the most common one, unless clearly beaten
    for choice, margin in ((prefer, 1.0), ("mm", 0.5)):
        if choice is not None and scores[choice] - scores[best] <= margin:
            return choice, scores
    return best, scores


def implausible_size(mesh_mm: TetMesh) -> str | None:
    """Why a mesh in mm cannot be a tissue mesh (too large or edges too fine), or None."""
    extent = float(np.linalg.norm(mesh_mm.points.max(axis=0) - mesh_mm.points.min(axis=0)))
    # a sample of elements is enough for a median, and keeps reading large meshes fast
    tets = mesh_mm.tets[:: max(1, mesh_mm.n_tets // 20000)]
    edge = float(np.median(np.linalg.norm(mesh_mm.points[tets[:, 1:]] - mesh_mm.points[tets[:, :1]], axis=2)))
    if extent > PLAUSIBLE_EXTENT_MM[1]:
        return f"it spans {extent:.4g} mm (over {PLAUSIBLE_EXTENT_MM[1]:g} mm)"
    if edge < PLAUSIBLE_EDGE_MM[0]:
        return f"its median edge is {edge:.3g} mm (under {PLAUSIBLE_EDGE_MM[0]:g} mm)"
    return None


def radius_ratio(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Normalised radius ratio 3 r_in / R_circ per element: 1 for a regular tetrahedron, → 0 for slivers."""
    x = points[tets]
    a, b, c = x[:, 1] - x[:, 0], x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]
    vol6 = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c)))
    num = (np.einsum("ij,ij->i", a, a)[:, None] * np.cross(b, c) + np.einsum("ij,ij->i", b, b)[:, None] * np.cross(c, a)
           + np.einsum("ij,ij->i", c, c)[:, None] * np.cross(a, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        r_circ = np.linalg.norm(num, axis=1) / (2.0 * vol6)
        faces = (np.linalg.norm(np.cross(b - a, c - a), axis=1) + np.linalg.norm(np.cross(a, b), axis=1)
                 + np.linalg.norm(np.cross(b, c), axis=1) + np.linalg.norm(np.cross(c, a), axis=1)) / 2.0
        r_in = (vol6 / 2.0) / faces
        q = 3.0 * r_in / r_circ
    return np.nan_to_num(q, nan=0.0)


def face_neighbours(tets: np.ndarray) -> np.ndarray:
    """``(k, 2)`` pairs of elements that share a face."""
    faces = np.concatenate([tets[:, [1, 2, 3]], tets[:, [0, 2, 3]], tets[:, [0, 1, 3]], tets[:, [0, 1, 2]]])
    owner = np.tile(np.arange(len(tets)), 4)
    faces = np.sort(faces, axis=1)
    order = np.lexsort(faces.T[::-1])
    faces, owner = faces[order], owner[order]
    same = np.all(faces[1:] == faces[:-1], axis=1)
    return np.column_stack([owner[:-1][same], owner[1:][same]])


def fibre_report(fibres: np.ndarray, sheets: np.ndarray | None, tets: np.ndarray) -> dict[str, Any]:
    """Unit length, fibre–sheet orthogonality and jumps between face neighbours [degrees]."""
    norm = np.linalg.norm(fibres, axis=1)
    out: dict[str, Any] = {"max_length_error": float(np.max(np.abs(norm - 1.0)))}
    f = fibres / np.where(norm > 0, norm, 1.0)[:, None]
    if sheets is not None:
        s = sheets / np.maximum(np.linalg.norm(sheets, axis=1), 1e-300)[:, None]
        out["max_sheet_angle_error_deg"] = float(np.degrees(np.max(np.abs(np.arcsin(np.clip(
            np.abs(np.einsum("ij,ij->i", f, s)), 0, 1))))))
    pairs = face_neighbours(tets)
    if len(pairs):
        # fibres are axes, not arrows: f and -f are the same direction
        cos = np.clip(np.abs(np.einsum("ij,ij->i", f[pairs[:, 0]], f[pairs[:, 1]])), 0.0, 1.0)
        jump = np.degrees(np.arccos(cos))
        out.update(jump_median_deg=float(np.median(jump)), jump_p99_deg=float(np.percentile(jump, 99)),
                   jumps_over_45_deg=int((jump > 45).sum()))
    return out


def mesh_report(raw: TetMesh, mesh: TetMesh, declared_unit: str = "auto", read_unit: str = "mm") -> dict[str, Any]:
    """Everything ``twin mesh info`` prints.

    Parameters
    ----------
    raw
        The mesh as read, before checks and in its file unit (for inversions and fibre lengths).
    mesh
        The checked mesh in mm.
    declared_unit
        The unit the user declared (``auto`` if none).
    read_unit
        The unit the file was read in (the declared one, or the format's convention).
    """
    vol = raw.volumes()
    q = radius_ratio(mesh.points, mesh.tets)
    edges = edge_lengths(mesh.points, mesh.tets)
    worst = np.argsort(q)[:5]
    used = np.zeros(raw.n_points, dtype=bool)
    used[raw.tets.ravel()] = True
    guess, scores = guess_unit(raw.points / UNIT_SCALE[read_unit], raw.tets, prefer=read_unit)
    abs_vol = np.abs(mesh.volumes())
    regions = {}
    for tag in np.unique(mesh.regions):
        sel = mesh.regions == tag
        regions[int(tag)] = {"elements": int(sel.sum()), "volume_mm3": float(abs_vol[sel].sum())}
    report: dict[str, Any] = {
        "nodes": mesh.n_points,
        "elements": mesh.n_tets,
        "volume_mm3": float(abs_vol.sum()),
        "bounds_mm": [mesh.points.min(axis=0).tolist(), mesh.points.max(axis=0).tolist()],
        "edge_mm": {"min": float(edges.min()), "median": float(np.median(edges)), "max": float(edges.max())},
        "quality": {
            "radius_ratio_min": float(q.min()), "radius_ratio_median": float(np.median(q)),
            "slivers_below_0.1": int((q < 0.1).sum()),
            "worst": [{"element": int(i), "radius_ratio": float(q[i])} for i in worst],
        },
        "inverted_elements": int((vol < 0).sum()),
        "first_inverted": int(np.flatnonzero(vol < 0)[0]) if (vol < 0).any() else None,
        "unreferenced_nodes": int((~used).sum()),
        "regions": regions,
        "surfaces": {k[len("surface_"):]: int(np.count_nonzero(v)) for k, v in mesh.point_data.items()
                     if k.startswith("surface_")},
        "point_data": sorted(mesh.point_data),
        "cell_data": sorted(mesh.cell_data),
        "unit": {"declared": declared_unit, "read_as": read_unit, "guess": guess,
                 "scores": {k: round(float(v), 3) for k, v in scores.items()}},
    }
    if raw.fibres is not None:
        report["fibres"] = fibre_report(raw.fibres, raw.sheets, mesh.tets)
    return report
