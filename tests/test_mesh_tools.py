"""``twin mesh info`` / ``convert`` and the unit trap (µm meshes read as mm and the like)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from twin.cli import main
from twin.mesh import box_mesh, read_mesh, write_carp, write_mesh
from twin.mesh.quality import guess_unit, radius_ratio

ROOT = Path(__file__).resolve().parents[1]
CARP = ROOT / "meshes" / "slab_two_regions.pts"


def test_radius_ratio_reference_values():
    regular = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)
    assert radius_ratio(regular, np.array([[0, 1, 2, 3]]))[0] == pytest.approx(1.0)
    sliver = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 1e-3]], float)
    assert radius_ratio(sliver, np.array([[0, 1, 2, 3]]))[0] < 0.01


@pytest.mark.parametrize("unit,scale", [("um", 1000.0), ("mm", 1.0), ("cm", 0.1), ("m", 0.001)])
def test_unit_guess_on_heart_sized_mesh(unit, scale):
    m = box_mesh((50.0, 30.0, 20.0), 1.0)  # heart-sized at a usual resolution, mm
    assert guess_unit(m.points * scale, m.tets)[0] == unit


def test_mesh_info(capsys, tmp_path):
    assert main(["mesh", "info", str(CARP), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["nodes"] == 1625 and rep["elements"] == 6912
    assert rep["volume_mm3"] == pytest.approx(18.0)
    assert rep["regions"]["2"]["volume_mm3"] == pytest.approx(9.0)
    assert rep["unit"]["guess"] == "um" and rep["unit"]["read_as"] == "um"
    assert rep["fibres"]["jumps_over_45_deg"] > 0  # the 60° change between the two regions
    # inverted elements are counted and named
    m = box_mesh((2, 1, 1), 0.5)
    m.tets[[3, 7]] = m.tets[[3, 7]][:, [1, 0, 2, 3]]
    path = tmp_path / "inv.vtu"
    write_mesh(m, path)
    assert main(["mesh", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "inverted    2 element(s), first #3" in out


def test_mesh_info_warns_on_wrong_unit(capsys, tmp_path):
    heart = box_mesh((60.0, 40.0, 30.0), 3.0)
    path = tmp_path / "heart_um.vtu"
    heart.points *= 1000.0   # stored in µm, as openCARP users have them
    write_mesh(heart, path)
    assert main(["mesh", "info", str(path)]) == 0
    captured = capsys.readouterr()
    assert "look like um" in captured.out and "read in mm" in captured.err


def test_convert_round_trip(tmp_path, capsys):
    vtu = tmp_path / "slab.vtu"
    assert main(["mesh", "convert", str(CARP), str(vtu)]) == 0
    back = tmp_path / "again"
    assert main(["mesh", "convert", str(vtu), str(back)]) == 0
    a, b = read_mesh(CARP), read_mesh(tmp_path / "again.pts")
    np.testing.assert_allclose(a.points, b.points, atol=1e-9)
    assert np.array_equal(a.tets, b.tets) and np.array_equal(a.regions, b.regions)
    np.testing.assert_allclose(a.fibres, b.fibres, atol=1e-7)
    assert main(["mesh", "convert", str(CARP), str(vtu)]) == 2  # no silent replacement
    assert "--overwrite" in capsys.readouterr().err
    assert main(["mesh", "convert", str(CARP), str(tmp_path / "x.unknownformat")]) == 2
    assert not list(tmp_path.glob(".twin-convert-*"))


def test_case_catches_um_mesh_declared_mm(tmp_path, write_case):
    heart = box_mesh((40.0, 30.0, 20.0), 4.0, fibre=(1, 0, 0))
    write_carp(heart, tmp_path / "heart", unit="um")
    case = write_case(f"""
        name: trap
        mesh: {{file: {tmp_path / 'heart.pts'}, unit: mm}}
        stimuli:
          - region: {{sphere: {{center: [0, 0, 0], radius: 2000}}}}
            strength: 50 A/F
        solver: {{dt: 0.02, end_time: 1}}
    """)
    assert main(["validate", str(case)]) == 2
    from twin.case import load_case
    from twin.errors import CaseError
    from twin.solver.setup import build_problem

    with pytest.raises(CaseError, match=r"mesh\.unit: the mesh heart\.pts read in mm cannot be tissue: it spans "
                                        r".* mm .*look like um \(set mesh\.unit: um\)"):
        build_problem(load_case(case))
