"""Regenerate the sample meshes of this folder (deterministic: same gmsh, same files).

    python meshes/make_samples.py

* ``lv_scar_isthmus.vtu``: the Land et al. 2015 benchmark LV (truncated ellipsoid, radii 7/10 mm
  short axis, 17/20 mm long axis, base at z = 5 mm, apex at -z) at 0.9 mm, rule-based fibres
  (Bayer 2012, helix +60° endo to -60° epi) with sheets, surfaces ``surface_endo/epi/base`` and a
  lateral-wall infarct: region tags 1 healthy, 2 border zone, 3 dense scar, 4 a conducting isthmus
  through the scar along the long axis; point field ``lge`` (a synthetic late-gadolinium intensity,
  1 in dense scar, 0.5 in the border zone, 0.1 healthy, smoothed) for threshold-based regions.
* ``biv.vtu``: the idealised biventricle of ``twin mesh generate biv`` at 2 mm with rule-based
  fibres and surfaces ``surface_lv_endo/rv_endo/epi/base``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twin.case import RegionSpec
from twin.mesh.anatomy import biv_ellipsoids, lv_ellipsoid
from twin.mesh.convert import write_any
from twin.mesh.fibres import with_ldrb_fibres
from twin.mesh.regions import select

HERE = Path(__file__).resolve().parent

#: the infarct: centre on the lateral (-x) wall at mid-height, radii [mm]
SCAR_CENTRE = (-7.8, 0.0, -8.0)
SCAR_RADIUS = 4.0
BZ_RADIUS = 5.5
ISTHMUS = {"start": (-7.8, 0.0, -14.0), "end": (-7.8, 0.0, -2.0), "radius": 1.3}


def lv_sample():
    mesh = with_ldrb_fibres(lv_ellipsoid(0.9))

    def elements(**selector):
        return select(mesh.points, mesh.tets, mesh.regions, RegionSpec(**selector), mesh.point_data).elements

    tags = np.ones(mesh.n_tets, dtype=np.int32)
    tags[elements(sphere={"center": SCAR_CENTRE, "radius": BZ_RADIUS})] = 2
    tags[elements(sphere={"center": SCAR_CENTRE, "radius": SCAR_RADIUS})] = 3
    isthmus = elements(cylinder=ISTHMUS) & (tags == 3)
    tags[isthmus] = 4
    mesh.regions = tags
    # synthetic LGE: per element by tissue class, then averaged to the nodes (smooth edges)
    level = np.select([tags == 3, tags == 2, tags == 4], [1.0, 0.5, 0.5], 0.1)
    lge = np.bincount(mesh.tets.ravel(), np.repeat(level, 4), minlength=mesh.n_points)
    mesh.point_data["lge"] = lge / np.bincount(mesh.tets.ravel(), minlength=mesh.n_points)
    return mesh


def main() -> None:
    lv = lv_sample()
    write_any(lv, HERE / "lv_scar_isthmus.vtu", overwrite=True)
    counts = {int(t): int((lv.regions == t).sum()) for t in np.unique(lv.regions)}
    print(f"lv_scar_isthmus.vtu: {lv.n_points} nodes, {lv.n_tets} tetrahedra, elements per tag {counts}")
    biv = with_ldrb_fibres(biv_ellipsoids(2.0))
    biv.regions[:] = 1
    write_any(biv, HERE / "biv.vtu", overwrite=True)
    print(f"biv.vtu: {biv.n_points} nodes, {biv.n_tets} tetrahedra")


if __name__ == "__main__":
    main()
