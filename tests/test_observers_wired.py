"""Repolarisation, pseudo-ECG and reentry observers inside ``twin simulate``, including resume."""

from __future__ import annotations

import json

import numpy as np

from twin.cli import main

CASE = """
name: wired
mesh: {generator: box, size: [4, 1, 0.5], spacing: 0.25}
tissue: {fibres: {source: uniform, direction: [1, 0, 0]}}
model: {name: mitchell_schaeffer, parameters: {tau_close: 30}}
stimuli:
  - region: {box: {min: [0, 0, 0], max: [0.5, 1, 0.5]}}
    strength: 50000 uA/cm^3
    duration: 1 ms
solver: {dt: 0.05, end_time: END}
outputs:
  interval: 0
  checkpoint_interval: 20
  maps: [activation, repolarisation]
  ecg: {electrodes: {ahead: [20, 0.5, 0.25], behind: [-16, 0.5, 0.25]}}
  reentry: {min_duration: 50}
"""


def _read(folder):
    import meshio

    summary = json.loads((folder / "summary.json").read_text())
    maps = meshio.read(folder / "activation.vtu").point_data
    ecg = np.genfromtxt(folder / "ecg.csv", delimiter=",", names=True)
    return summary, maps, ecg


def test_observers_in_simulate_and_resume(tmp_path, write_case):
    straight = tmp_path / "straight"
    assert main(["simulate", str(write_case(CASE.replace("END", "120"), "a.yaml")), "-o", str(straight), "-q"]) == 0
    summary, maps, ecg = _read(straight)
    assert {"activation_time", "repolarisation_time", "apd"} <= set(maps)
    apd = maps["apd"]
    assert np.all(np.isfinite(apd)) and 40 < np.mean(apd) < 100
    assert summary["repolarisation"]["level"] == "APD90"
    assert summary["ecg"]["qrs_ms"] is not None and summary["reentry"]["sustained"] is False
    # the wave runs towards 'ahead' and away from 'behind': opposite deflections during the QRS
    early = ecg["time_ms"] < 10
    assert ecg["phi_ahead"][early].max() > 0 > ecg["phi_behind"][early].min()

    # stop at 60 ms, then extend the same run to 120 ms from its checkpoint: identical results
    split = tmp_path / "split"
    assert main(["simulate", str(write_case(CASE.replace("END", "60"), "b.yaml")), "-o", str(split), "-q"]) == 0
    assert main(["simulate", str(write_case(CASE.replace("END", "120"), "b.yaml")), "-o", str(split), "-q",
                 "--resume"]) == 0
    s2, maps2, ecg2 = _read(split)
    for key in ("activation_time", "repolarisation_time", "apd"):
        np.testing.assert_array_equal(maps[key], maps2[key])
    np.testing.assert_array_equal(ecg["phi_ahead"], ecg2["phi_ahead"])
    assert s2["ecg"] == summary["ecg"]


def test_unknown_ecg_lead_is_refused_before_the_run(tmp_path, write_case, capsys):
    case = write_case(CASE.replace("END", "20").replace(
        "ecg: {electrodes: {ahead: [20, 0.5, 0.25], behind: [-16, 0.5, 0.25]}}", "ecg: {electrodes: standard, lead: V9}"))
    out = tmp_path / "never"
    assert main(["simulate", str(case), "-o", str(out), "-q"]) == 2
    assert "outputs.ecg.lead: no lead 'V9'; leads: I, II, III" in capsys.readouterr().err
    assert not out.exists()
