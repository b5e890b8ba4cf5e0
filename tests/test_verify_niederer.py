"""``twin verify niederer``: the N-version benchmark at its coarsest resolution, and its helpers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import meshio
import numpy as np
import pytest

from twin.case import case_from_text
from twin.cli import main
from twin.errors import TwinError
from twin.observers.probes import locate_points
from twin.solver.setup import build_problem
from twin.verify import niederer
from twin.verify.report import VerifyReport


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- helpers
def test_harmonic_mean_conductivities_of_the_benchmark():
    sigma_l, sigma_t = niederer.monodomain_conductivities()
    assert sigma_l == pytest.approx(0.17 * 0.62 / (0.17 + 0.62), rel=1e-15)
    assert sigma_t == pytest.approx(0.019 * 0.24 / (0.019 + 0.24), rel=1e-15)
    # the values the benchmark's participants quote (0.1334 and 0.0176 S/m)
    assert round(sigma_l, 4) == 0.1334 and round(sigma_t, 4) == 0.0176
    # a harmonic mean lies below both and is symmetric
    assert niederer.harmonic_mean_conductivity(0.62, 0.17) == sigma_l < 0.17
    with pytest.raises(TwinError, match="must be > 0"):
        niederer.harmonic_mean_conductivity(0.0, 0.24)


def test_benchmark_points_are_the_corners_and_the_centre():
    pts = niederer.benchmark_points()
    assert list(pts) == [f"P{i}" for i in range(1, 10)]
    assert pts["P1"] == (0.0, 0.0, 0.0) and pts["P8"] == (20.0, 7.0, 3.0) and pts["P9"] == (10.0, 3.5, 1.5)
    assert (pts["P2"], pts["P3"], pts["P4"]) == ((0.0, 7.0, 0.0), (20.0, 0.0, 0.0), (20.0, 7.0, 0.0))
    assert (pts["P5"], pts["P6"], pts["P7"]) == ((0.0, 0.0, 3.0), (0.0, 7.0, 3.0), (20.0, 0.0, 3.0))
    corners = {(x, y, z) for x in (0.0, 20.0) for y in (0.0, 7.0) for z in (0.0, 3.0)}
    assert {pts[f"P{i}"] for i in range(1, 9)} == corners


def test_case_text_is_the_benchmark_and_its_points_are_nodes():
    case = case_from_text(niederer.case_text(0.5, 0.05, 80.0))
    s = case.spec
    assert s.mesh.size == (20.0, 7.0, 3.0) and s.mesh.spacing == 0.5
    assert (s.tissue.sigma_l, s.tissue.sigma_t) == niederer.monodomain_conductivities()
    assert s.tissue.chi == 140.0 and s.tissue.cm == pytest.approx(0.01)          # 1 µF/cm²
    assert s.model.name == "tentusscher_2006"
    assert s.stimuli[0].strength.value == pytest.approx(50.0)                    # 50 000 µA/cm³
    assert s.stimuli[0].duration == 2.0 and s.outputs.activation.threshold == 0.0
    assert (s.solver.theta, s.solver.splitting, s.solver.resolved_mass) == (0.5, "godunov", "consistent")
    problem = build_problem(case)
    assert problem.n_nodes == 41 * 15 * 7
    assert problem.stimuli[0].nodes.size == 4 ** 3                               # [0, 1.5]³ at 0.5 mm
    coords = np.array(list(niederer.benchmark_points().values()))
    _, weights, inside = locate_points(problem.mesh.points, problem.mesh.tets, coords)
    assert inside.all() and np.allclose(weights.max(axis=1), 1.0)                # every P is a node


def test_diagonal_and_monotonicity_helpers():
    dist, coords = niederer.diagonal(5)
    assert np.allclose(coords[0], 0.0) and np.allclose(coords[-1], (20, 7, 3))
    assert dist[-1] == pytest.approx(np.sqrt(20 ** 2 + 7 ** 2 + 3 ** 2))
    assert niederer.max_decrease(np.array([1.0, 1.0, 2.0, 5.0])) == 0.0
    assert niederer.max_decrease(np.array([1.0, 3.0, 2.5, 5.0])) == pytest.approx(0.5)
    assert np.isnan(niederer.max_decrease(np.array([1.0, np.nan, 2.0])))
    assert niederer.contraction_ratio([56.0, 40.0, 38.0]) == pytest.approx(2.0 / 16.0)
    assert niederer.contraction_ratio([40.0, 42.0, 50.0]) == pytest.approx(4.0)


def _fake_run(dx: float, dt: float, p8: float) -> niederer.BenchmarkRun:
    points = {f"P{i}": 10.0 for i in range(1, 10)} | {"P1": 1.0, "P8": p8}
    return niederer.BenchmarkRun(dx=dx, dt=dt, end_time=80.0, nodes=8, steps=10, wall_time=0.0, points=points,
                                 diagonal=np.linspace(1.0, p8, 11), activated=1.0, activation=np.ones(8),
                                 mesh_points=np.zeros((8, 3)), mesh_tets=np.zeros((1, 4), np.int32))


def test_checks_can_fail(tmp_path):
    # a run that matches the P1-FEM reference and converges passes ...
    good = VerifyReport("niederer", tmp_path)
    niederer._checks(good, [_fake_run(0.5, 0.05, 56.0), _fake_run(0.2, 0.05, 40.0), _fake_run(0.1, 0.05, 39.0)])
    assert good.passed and any("converges in space" in c.name for c in good.checks)
    # ... a diverging sequence, a P8 outside the band and a P8 far from the reference do not
    bad = VerifyReport("niederer", tmp_path)
    niederer._checks(bad, [_fake_run(0.5, 0.05, 56.0), _fake_run(0.2, 0.05, 48.0), _fake_run(0.1, 0.05, 30.0)])
    failed = {c.name.split("] ", 1)[1].split(":")[0] for c in bad.checks if not c.passed}
    assert any(name.startswith("P8 converges in space") for name in failed)
    assert "P8 inside the published band at dx 0.1 mm" in failed
    assert any(name.startswith("P8 relative to P1-FEM reference") for name in failed)
    # a slab that did not finish activating fails
    late = _fake_run(0.5, 0.05, float("nan"))
    late.activated = 0.97
    stalled = VerifyReport("niederer", tmp_path)
    niederer._checks(stalled, [late])
    assert not any(c.passed for c in stalled.checks if "activated" in c.name or "P8" in c.name)


# --------------------------------------------------------------------------- end to end
def test_verify_niederer_coarse_passes_and_writes_its_files(tmp_path: Path):
    outdir = tmp_path / "niederer"
    # one thread: on 4305 nodes Numba's parallel regions cost more than they save, and a machine
    # shared with other jobs slows a two-thread PCG several-fold (measured 66 s against 12 s)
    code, out, err = run_cli("verify", "niederer", "--dx", "0.5", "--dt", "0.05", "-o", str(outdir), "-q",
                             "--threads", "1")
    assert code == 0, err
    report = json.loads((outdir / "report.json").read_text())
    assert report["passed"] is True
    assert all(c["passed"] for c in report["checks"]) and len(report["checks"]) == 4
    assert report["settings"]["sigma_l_S_per_m"] == pytest.approx(0.1334177, rel=1e-6)
    for name in ("report.md", "diagonal.png", "activation_dx0.5_dt0.05.vtu", "activation_points.csv",
                 "diagonal.csv"):
        assert (outdir / name).is_file() and (outdir / name).stat().st_size > 0, name
    assert (outdir / "diagonal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = list(csv.DictReader((outdir / "activation_points.csv").open()))
    assert len(rows) == 1
    act = {f"P{i}": float(rows[0][f"P{i}_ms"]) for i in range(1, 10)}
    lo, hi, _ = niederer.P8_BANDS[0.5]
    assert lo <= act["P8"] <= hi
    # the wave starts at the stimulated corner and the centre lies between the ends of the diagonal
    assert act["P1"] < 2.5 and act["P1"] < act["P9"] < act["P8"]
    # conduction is fastest along the fibres (x): P3 (20, 0, 0) activates before P2 (0, 7, 0)
    assert act["P3"] < act["P2"]

    vtu = meshio.read(outdir / "activation_dx0.5_dt0.05.vtu")
    t_act = vtu.point_data["activation_time"]
    assert vtu.points.shape == (4305, 3) and np.all(np.isfinite(t_act))
    assert t_act.max() == pytest.approx(max(act.values()), abs=1e-6)   # the last node is a corner (P4)
    assert "P1-FEM" in (outdir / "report.md").read_text()


def test_verify_niederer_refuses_resolutions_outside_the_benchmark(tmp_path: Path):
    code, out, err = run_cli("verify", "niederer", "--dx", "0.3", "-o", str(tmp_path / "x"))
    assert code == 2
    assert "--dx" in err and "invalid choice: 0.3" in err and "0.5, 0.2, 0.1" in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()
    code, out, err = run_cli("verify", "niederer", "--dt", "0.02", "-o", str(tmp_path / "x"))
    assert code == 2 and "--dt" in err and "invalid choice: 0.02" in err


def test_verify_niederer_refuses_bad_end_times(tmp_path: Path):
    code, _, err = run_cli("verify", "niederer", "--end-time", "1", "-o", str(tmp_path / "a"))
    assert code == 2 and "--end-time must be longer than the 2 ms stimulus" in err
    code, _, err = run_cli("verify", "niederer", "--end-time", "80.03", "-o", str(tmp_path / "b"))
    assert code == 2 and "not a whole number of time steps dt = 0.05 ms" in err
