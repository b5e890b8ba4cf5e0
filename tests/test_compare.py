"""Treatment arms and ``twin compare``: expansion, treatments, shared start, tables, maps, report."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from twin.arms import expand_arms
from twin.case import load_case
from twin.cli import main
from twin.errors import CaseError
from twin.models import get_model
from twin.treatments import block_fraction, drug_table

ARMS = """
name: arms
mesh: {generator: box, size: [6, 2, 0.5], spacing: 0.25}
tissue: {fibres: {source: uniform, direction: [1, 0, 0]}}
model: {name: mitchell_schaeffer}
stimuli:
  - region: {box: {min: [0, 0, 0], max: [0.5, 2, 0.5]}}
    strength: 50000 uA/cm^3
    duration: 2 ms
solver: {dt: 0.04, end_time: 40}
outputs: {interval: 0}
prepace: {beats: 2, bcl: 500}
arms:
  - name: slow
    description: half the conductivity along fibres
    set: {tissue.sigma_l: 0.085}
  - name: lesion
    description: a transmural lesion in the middle
    ablation:
      - at: [3, 1, 0.25]
        radius: 0.6
        depth: 1
        direction: [0, 0, 1]
"""


def test_block_fraction():
    assert block_fraction(10.0, 10.0, 1.0) == pytest.approx(0.5)
    assert block_fraction(0.0, 10.0, 1.0) == 0.0
    assert block_fraction(100.0, 10.0, 2.0) == pytest.approx(1 / (1 + 0.01))
    assert {"dofetilide", "verapamil", "quinidine"} <= set(drug_table())


def test_arm_expansion(write_case):
    text = ARMS.replace("model: {name: mitchell_schaeffer}", "model: {name: tentusscher_2006, parameters: {G_Kr: x0.9}}")
    text += """
  - name: dofetilide
    drug: {name: dofetilide, concentration: 2 nM}
  - name: custom
    drug: {concentration: 1 uM, ic50: {IKr: {ic50: 1 uM}}, block: {ICaL: 0.25}}
  - name: line
    ablation:
      - points: [[1, 1, 0.25], [5, 1, 0.25]]
        spacing: 1
        radius: 0.5
        depth: 1
"""
    arms = {a.name: a for a in expand_arms(load_case(write_case(text)))}
    assert list(arms) == ["base", "slow", "lesion", "dofetilide", "custom", "line"]
    assert arms["slow"].case.spec.tissue.sigma_l == 0.085 and arms["base"].case.spec.tissue.sigma_l == 0.17
    # dofetilide at its free Cmax blocks IKr by 1/(1 + (1.462/2)^0.634); the case's x0.9 is kept
    b = 1 / (1 + (1.462 / 2) ** 0.634)
    assert arms["dofetilide"].drug_factors["G_Kr"] == pytest.approx(1 - b)
    params = arms["dofetilide"].case.spec.model.parameters
    assert params["G_Kr"] == f"x{0.9 * (1 - b)!r}"
    assert arms["custom"].drug_factors == {"G_Kr": pytest.approx(0.5), "G_CaL": pytest.approx(0.75)}
    assert len(arms["line"].lesions) == 5 and arms["line"].case.spec.regions[-1].dense_scar


@pytest.mark.parametrize("old,new,expected", [
    ("name: slow", "name: base", "arms[0].name: arm name 'base' is reserved"),
    ("name: lesion", "name: slow", "arm name 'slow' is used twice"),
    ("set: {tissue.sigma_l: 0.085}", "set: {tissue.sigma_ll: 0.085}",
     "in arm 'slow': unknown key 'sigma_ll'; did you mean 'sigma_l'"),
    ("description: half", "drug: {name: dofetilid, concentration: 1 nM}\n    description: half",
     "arms[0].drug: unknown drug 'dofetilid'; did you mean 'dofetilide'"),
    ("radius: 0.6", "radius: -1", "arms[1].ablation[0].radius"),
])
def test_arm_errors(write_case, old, new, expected):
    text = ARMS.replace(old, new)
    assert text != ARMS
    with pytest.raises(CaseError) as info:
        expand_arms(load_case(write_case(text)))
    assert expected in str(info.value), str(info.value)


def test_compare_end_to_end(tmp_path, capsys):
    case = tmp_path / "arms.yaml"
    case.write_text(ARMS)
    out = tmp_path / "cmp"
    assert main(["compare", str(case), "-o", str(out), "--jobs", "2", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "total activation time" in printed and "lesion" in printed
    comparison = json.loads((out / "comparison.json").read_text())
    arms = {a["arm"]: a for a in comparison["arms"]}
    assert list(arms) == ["base", "slow", "lesion"]
    # every arm starts from the same (pre-paced) state
    assert len({a["initial_state_sha256"] for a in arms.values()}) == 1
    assert arms["slow"]["total_activation_time_ms"] > arms["base"]["total_activation_time_ms"] + 2
    # halving sigma_l slows conduction along x by about sqrt(2)
    ratio = arms["base"]["conduction_velocity_m_per_s"] / arms["slow"]["conduction_velocity_m_per_s"]
    assert 1.2 < ratio < 1.6, ratio
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["arm"] for r in rows] == ["base", "slow", "lesion"]
    assert float(rows[1]["delta_total_activation_time_ms"]) == pytest.approx(
        arms["slow"]["total_activation_time_ms"] - arms["base"]["total_activation_time_ms"])
    import meshio

    delta = meshio.read(out / "delta_slow.vtu").point_data["delta_LAT"]
    assert np.nanmax(delta) > 2.0
    lesion = np.load(out / "arms" / "lesion" / "activation.npy")
    assert np.isnan(lesion).sum() > 0  # the lesion's core never activates
    assert (out / "report.html").exists() and (out / "figures" / "lat_lesion.png").exists()
    # nothing is replaced silently; --resume keeps finished arms
    assert main(["compare", str(case), "-o", str(out)]) == 2
    stamp = (out / "arms" / "slow" / "metrics.json").stat().st_mtime_ns
    assert main(["compare", str(case), "-o", str(out), "--resume", "-q", "--no-report"]) == 0
    assert (out / "arms" / "slow" / "metrics.json").stat().st_mtime_ns == stamp


def test_compare_without_arms(tmp_path, write_case, capsys):
    case = write_case(ARMS.split("arms:\n")[0])
    assert main(["compare", str(case), "-o", str(tmp_path / "x")]) == 2
    assert "no 'arms:' section" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (installed by .ci/run)")
def test_report_renders_in_headless_chromium(tmp_path):
    case = tmp_path / "arms.yaml"
    case.write_text(ARMS.replace("prepace: {beats: 2, bcl: 500}\n", ""))
    out = tmp_path / "cmp"
    assert main(["compare", str(case), "-o", str(out), "-q"]) == 0
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=3000", "--dump-dom", (out / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert "<table id=\"metrics\">" in dom, proc.stderr[-2000:]
    assert dom.count("<tr>") == 4  # header + three arms
    assert dom.count("<img") == 3 and "data:image/png;base64," in dom
    shot = tmp_path / "report.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--no-first-run", f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}",
                    "--window-size=1200,900", (out / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
