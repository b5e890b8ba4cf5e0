"""End to end through the CLI: files, provenance, ParaView, resume, reproducibility."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import meshio
import numba
import numpy as np
import pytest

from twin.case import case_from_text
from twin.cli import main
from twin.solver.setup import build_problem
from twin.solver.simulation import Simulation

from .conftest import ROOT, SMALL_CASE


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def small_run(tmp_path, write_case):
    case = write_case(SMALL_CASE)
    outdir = tmp_path / "run"
    code, out, err = run_cli("simulate", str(case), "-o", str(outdir), "--threads", "1")
    assert code == 0, err
    return outdir, out


def test_simulate_writes_series_map_probes_and_summary(small_run):
    outdir, out = small_run
    assert "node-steps/s" in out
    pvd = (outdir / "series.pvd").read_text()
    frames = sorted((outdir / "series").glob("*.vtu"))
    assert len(frames) == 5 and pvd.count("<DataSet") == 5          # t = 0, 5, 10, 15, 20 ms
    last = meshio.read(frames[-1])
    assert set(last.point_data) == {"Vm", "h"}
    act = meshio.read(outdir / "activation.vtu")
    t_act = act.point_data["activation_time"]
    x = act.points[:, 0]
    # the wave starts at the stimulated end and travels along x
    assert np.all(np.isfinite(t_act))
    assert t_act[x > 3.9].mean() > t_act[x < 0.1].mean() + 5.0
    assert "fibres" in act.cell_data and "region" in act.cell_data
    rows = list(csv.reader((outdir / "probes.csv").open()))
    assert rows[0] == ["time_ms", "mid"] and len(rows) == 1 + 1001
    vm_mid = np.array([float(r[1]) for r in rows[1:]])
    assert vm_mid.max() > 0.0                                          # the probe saw the action potential
    summary = json.loads((outdir / "summary.json").read_text())
    assert summary["mesh"]["hash"] and len(summary["mesh"]["hash"]) == 64
    assert summary["case"]["resolved"]["tissue"]["cm"] == pytest.approx(0.01)
    assert summary["machine"]["threads"] == 1
    assert {"numba", "numpy", "twin"} <= set(summary["versions"])
    for key in ("compile", "solve", "setup_assembly", "solve_reaction", "solve_diffusion", "solve_output"):
        assert summary["timings_s"][key] >= 0.0
    assert summary["throughput_node_steps_per_s"] > 0
    assert summary["activation"]["fraction_activated"] == 1.0


def test_existing_results_are_not_overwritten(small_run, write_case):
    outdir, _ = small_run
    before = (outdir / "summary.json").read_text()
    code, _, err = run_cli("simulate", str(write_case(SMALL_CASE)), "-o", str(outdir), "-q")
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    assert (outdir / "summary.json").read_text() == before
    code, _, err = run_cli("simulate", str(write_case(SMALL_CASE)), "-o", str(outdir), "-q", "--overwrite",
                           "--set", "solver.end_time=10")
    assert code == 0, err
    assert len(list((outdir / "series").glob("*.vtu"))) == 3


def test_resume_continues_bit_for_bit(tmp_path, write_case):
    case = write_case(SMALL_CASE)
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_cli("simulate", str(case), "-o", str(full), "-q")[0] == 0
    code, _, err = run_cli("simulate", str(case), "-o", str(part), "-q", "--set", "solver.end_time=10",
                           "--set", "outputs.checkpoint_interval=5")
    assert code == 0, err
    assert (part / "checkpoint.h5").exists()
    code, _, err = run_cli("simulate", str(case), "-o", str(part), "-q", "--resume",
                           "--set", "outputs.checkpoint_interval=5")
    assert code == 0, err
    a = meshio.read(full / "activation.vtu").point_data["activation_time"]
    b = meshio.read(part / "activation.vtu").point_data["activation_time"]
    assert np.array_equal(a, b)
    fa = meshio.read(sorted((full / "series").glob("*.vtu"))[-1]).point_data["Vm"]
    fb = meshio.read(sorted((part / "series").glob("*.vtu"))[-1]).point_data["Vm"]
    assert np.array_equal(fa, fb)
    assert (part / "series.pvd").read_text().count("<DataSet") == 5
    assert (full / "probes.csv").read_text() == (part / "probes.csv").read_text()
    # a changed physics setting cannot resume from the old state
    code, _, err = run_cli("simulate", str(case), "-o", str(part), "-q", "--resume",
                           "--set", "tissue.sigma_l=0.2")
    assert code == 2 and "different case" in err


def test_resume_without_checkpoint_is_refused(tmp_path, write_case):
    code, _, err = run_cli("simulate", str(write_case(SMALL_CASE)), "-o", str(tmp_path / "x"), "--resume")
    assert code == 2 and "no checkpoint.h5" in err


def test_same_case_same_numbers_for_any_thread_count():
    case = case_from_text(SMALL_CASE)
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS, 1):
            numba.set_num_threads(threads)
            results.append(Simulation(build_problem(case)).run())
    finally:
        numba.set_num_threads(previous)
    for r in results[1:]:
        assert np.array_equal(r.states, results[0].states)
        assert np.array_equal(r.activation, results[0].activation, equal_nan=True)


def test_info_and_usage_errors():
    code, out, _ = run_cli("info")
    assert code == 0 and "threading layer" in out and "numba" in out
    code, _, err = run_cli("simulate")
    assert code == 2 and "required" in err
    code, _, err = run_cli("simulate", "case.yaml", "--threads", "0")
    assert code == 2 and "--threads" in err
    assert run_cli("--version")[0] == 0


@pytest.mark.skipif(shutil.which("pvpython") is None, reason="ParaView's pvpython is not installed")
def test_paraview_opens_series_and_activation_map(small_run):
    outdir, _ = small_run
    proc = subprocess.run(["pvpython", str(ROOT / "tests" / "pvpython_check.py"), str(outdir / "series.pvd"),
                           str(outdir / "activation.vtu")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["times"] == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert info["n_points"] == 255 and info["n_cells"] == 768
    assert {"Vm", "h"} <= set(info["arrays"])
    assert info["act_arrays"] == ["activation_time"] and info["act_cells"] == 768
    assert 0.0 < info["act_range"][0] < info["act_range"][1] < 20.0


@pytest.mark.parametrize("case_file", sorted((ROOT / "cases").glob("*.yaml")), ids=lambda p: p.name)
def test_every_case_file_runs_coarse(case_file, tmp_path):
    """Smoke test: every shipped case validates and runs a short coarse version."""
    assert run_cli("validate", str(case_file), "-q")[0] == 0
    code, _, err = run_cli("simulate", str(case_file), "-q", "-o", str(tmp_path / "out"),
                           "--set", "solver.end_time=10", "--set", "outputs.interval=5")
    assert code == 0, err
    assert (tmp_path / "out" / "summary.json").exists()


def test_failed_setup_leaves_no_folder(tmp_path, write_case):
    bad = SMALL_CASE.replace("mid: [2, 0.5, 0.25]", "mid: [20, 0.5, 0.25]")
    outdir = tmp_path / "never"
    code, _, err = run_cli("simulate", str(write_case(bad)), "-o", str(outdir), "-q")
    assert code == 2 and "outside the mesh" in err
    assert not outdir.exists()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only(tmp_path, write_case):
    case = str(write_case(SMALL_CASE))
    err = FakeTerminal()
    assert main(["simulate", case, "-o", str(tmp_path / "a")], stdout=io.StringIO(), stderr=err) == 0
    assert "100.0%" in err.getvalue() and "\r[" in err.getvalue()
    err = FakeTerminal()
    assert main(["simulate", case, "-o", str(tmp_path / "b"), "--quiet"], stdout=io.StringIO(), stderr=err) == 0
    assert err.getvalue() == ""
    err = io.StringIO()
    assert main(["simulate", case, "-o", str(tmp_path / "c")], stdout=io.StringIO(), stderr=err) == 0
    assert "\r[" not in err.getvalue()


def test_a_frame_that_cannot_be_written_is_a_clean_error(tmp_path, write_case, monkeypatch, capsys):
    """Frames are written by a background thread: its failure still stops the run with a message,
    and the series index lists only the frames that were completely written."""
    from twin.io import vtk

    real = vtk.FrameEncoder.write
    calls = {"n": 0}

    def failing(self, path, point_data):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(28, "No space left on device", str(path))
        real(self, path, point_data)

    monkeypatch.setattr(vtk.FrameEncoder, "write", failing)
    out = tmp_path / "full"
    code = main(["simulate", str(write_case(SMALL_CASE)), "-o", str(out), "-q"])
    assert code != 0
    err = capsys.readouterr().err
    assert "cannot write a time-series frame: No space left on device" in err
    assert "Traceback" not in err
    import xml.etree.ElementTree as ET

    listed = [ds.get("file") for ds in ET.parse(out / "series.pvd").getroot().iter("DataSet")]
    assert len(listed) == 2 and all((out / f).exists() for f in listed)
