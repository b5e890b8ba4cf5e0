"""The treatment-arm cases of cases/ meet their clinical expectations (coarse but complete runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twin.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _compare(tmp_path: Path, case: str, *overrides: str) -> dict:
    out = tmp_path / "cmp"
    argv = ["compare", str(ROOT / "cases" / case), "-o", str(out), "-q", "--no-report", "--jobs", "2",
            "--threads", "1"]
    for o in overrides:
        argv += ["--set", o]
    assert main(argv) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    return {a["arm"]: a for a in comparison["arms"]}


@pytest.mark.slow
def test_drug_ikr_block_prolongs_apd_and_qt(tmp_path):
    arms = _compare(tmp_path, "drug_ikr_block.yaml", "prepace.beats=2")
    order = ["base", "ikr_25", "ikr_50", "ikr_75"]
    apd = [arms[a]["apd90_mean_ms"] for a in order]
    qt = [arms[a]["qt_ms"] for a in order]
    assert all(b > a + 5 for a, b in zip(apd, apd[1:])), apd
    assert all(b > a + 5 for a, b in zip(qt, qt[1:])), qt
    assert 300 < apd[0] < 360  # TP06 at 1 Hz, in tissue
    assert len({a["initial_state_sha256"] for a in arms.values()}) == 1


@pytest.mark.slow
def test_biventricular_pacing_shortens_activation_and_qrs(tmp_path):
    arms = _compare(tmp_path, "lv_pacing_sites.yaml", "mesh.resolution=2.0", "solver.end_time=160")
    for single in ("base", "lv_lateral"):
        assert arms["biv"]["total_activation_time_ms"] < arms[single]["total_activation_time_ms"] - 10
        assert arms["biv"]["qrs_ms"] < arms[single]["qrs_ms"] - 10
    assert all(a["fraction_activated"] > 0.97 for a in arms.values())
