"""The model library against Myokit's CVODE, the model CLI (list/show/import/cell) and the importer.

The reference runs the *same* model file in an independent stiff integrator (Myokit's CVODE
simulation, adaptive order and step, tolerances 1e-8): a wrong generated kernel (a bad
Rush–Larsen form, a state updated out of order, a dropped term) shows up as a trace error.
The metric is the MRMS of Marsh et al. 2012 over every beat.
"""

from __future__ import annotations

import functools
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from twin.cell import apd, run_cell
from twin.cli import main
from twin.errors import ModelError
from twin.models import get_model
from twin.models.library import BUILTIN_DIR
from twin.models.lookup import LookupSettings

myokit = pytest.importorskip("myokit")

#: every model file shipped in models/, with its cell types (ORd convention endo 0, epi 1, M 2)
LIBRARY = sorted(p.stem for p in BUILTIN_DIR.glob("*.mmt"))
#: excitable membrane models (paced, compared with CVODE); generic ones are verification/neuro terms
CARDIAC = [name for name in LIBRARY if get_model(name).kind == "cardiac"]
CELL_TYPES = {"tentusscher_2006": (0, 1, 2), "ohara_rudy_2011": (0, 1, 2)}
CASES = [(name, ct) for name in CARDIAC for ct in CELL_TYPES.get(name, (None,))]

DT = 0.01     # [ms], as the issue asks
BCL = 1000.0  # [ms], 1 Hz
BEATS = 3


@functools.lru_cache(maxsize=1)
def _cvode_problem() -> str | None:
    """Why Myokit's CVODE simulation cannot be built here, or None when it can."""
    try:
        model, protocol, _ = myokit.load(str(BUILTIN_DIR / "mitchell_schaeffer.mmt"))
        myokit.Simulation(model, protocol)
    except Exception as exc:  # noqa: BLE001 - no compiler or no sundials: the test says why it skips
        return f"Myokit's CVODE simulation cannot be built (install gcc and Debian's libsundials-dev): {exc}"
    return None


def mrms(test: np.ndarray, ref: np.ndarray) -> float:
    """Mean root-mean-square error of Marsh et al. 2012, normalised by the reference's range."""
    return float(np.sqrt(np.mean(((test - ref) / (ref.max() - ref.min())) ** 2)))


def cvode_trace(path: Path, params: dict[str, float], duration: float, n: int) -> np.ndarray:
    model, _, _ = myokit.load(str(path))
    for name, value in params.items():
        [var] = [v for v in model.variables(deep=True) if v.name() == name]
        var.set_rhs(value)
    protocol = myokit.pacing.blocktrain(period=BCL, duration=duration, offset=0, level=1)
    sim = myokit.Simulation(model, protocol)
    sim.set_tolerance(1e-8, 1e-8)
    vm = model.label("membrane_potential").qname()
    log = sim.run(BEATS * BCL + DT / 2, log=[vm], log_interval=DT)
    return np.asarray(log[vm])[:n]


@pytest.mark.slow
@pytest.mark.parametrize("lookup", [False, True], ids=["exact", "lookup"])
@pytest.mark.parametrize("name,celltype", CASES, ids=[f"{n}-{c}" if c is not None else n for n, c in CASES])
def test_kernel_matches_cvode(name: str, celltype: int | None, lookup: bool) -> None:
    """Both ways the tissue may step a model: every rate exactly, and through the lookup tables
    (the default of tissue runs) at their default range and spacing."""
    if _cvode_problem():
        pytest.skip(_cvode_problem())
    model = get_model(name)
    if lookup and model.lookup is None:
        pytest.skip(f"{name} has no lookup table (too little voltage-only work to pay)")
    params = {} if celltype is None else {"celltype": celltype}
    trace = run_cell(model, bcl=BCL, beats=BEATS, dt=DT, parameters=params,
                     lookup=LookupSettings() if lookup else None)
    duration = model.cell_stimulus_duration or 1.0  # run_cell's default too
    ref = cvode_trace(Path(model.source), params, duration, len(trace.time))
    v = trace.vm[: len(ref)]
    assert len(ref) == len(trace.time)
    assert v.max() - v.min() > 80.0, "the cell did not fire"
    err = mrms(v, ref)
    last = trace.time >= (BEATS - 1) * BCL
    d_apd = apd(trace.time[last], v[last]) - apd(trace.time[last], ref[last])
    print(f"{name} celltype={celltype} lookup={lookup}: MRMS {err:.2e}, dAPD90 {d_apd:+.3f} ms")
    assert err < 0.02
    assert abs(d_apd) < 1.0


@pytest.mark.parametrize("name", ["tentusscher_2006", "ohara_rudy_2011"])
def test_cell_types_order_apd(name: str) -> None:
    """Transmural heterogeneity as published: M cells have the longest APD at 1 Hz."""
    if name not in LIBRARY:
        pytest.skip(f"{name} not in the library")
    model = get_model(name)
    apds = {}
    for ct in (0, 1, 2):
        tr = run_cell(model, bcl=BCL, beats=2, dt=DT, parameters={"celltype": ct}, sample_every=10)
        last = tr.time >= BCL
        apds[ct] = apd(tr.time[last], tr.vm[last])
    assert apds[2] > max(apds[0], apds[1]) + 20.0, apds


def test_stimulus_must_be_per_capacitance(tmp_path: Path) -> None:
    text = (BUILTIN_DIR / "mitchell_schaeffer.mmt").read_text()
    bad = text.replace("i_stim = engine.pace * amplitude\n    in [A/F]", "i_stim = engine.pace * amplitude\n    in [pA]")
    bad = bad.replace("amplitude = -40 [A/F]\n    in [A/F]", "amplitude = -40 [pA]\n    in [pA]")
    assert bad != text
    path = tmp_path / "ms_pA.mmt"
    path.write_text(bad)
    from twin.models import load_model_file

    with pytest.raises(ModelError, match=r"current per capacitance \[A/F\]"):
        load_model_file(path)


def test_models_list_and_show(capsys) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in LIBRARY:
        assert name in out
    assert main(["models", "show", "mitchell_schaeffer"]) == 0
    out = capsys.readouterr().out
    assert "tau_close" in out and "150" in out and "doi:10.1016/S0092-8240(03)00041-7" in out
    assert "lookup table: none" in out
    assert main(["models", "show", "tentusscher_2006"]) == 0
    out = capsys.readouterr().out
    assert "lookup table: 29 columns against V (11 gates, 7 voltage factors); 1 against ik1.V_EK" in out
    assert main(["models", "show", "mitchel_schaeffer"]) == 2
    assert "did you mean 'mitchell_schaeffer'" in capsys.readouterr().err


def test_cell_command(tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "cell"
    argv = ["cell", "mitchell_schaeffer", "--bcl", "500", "--beats", "2", "--set", "tau_close=x0.5",
            "-o", str(out_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "APD90" in out and "dV/dt max" in out
    data = np.loadtxt(out_dir / "trace.csv", delimiter=",", skiprows=1)
    assert data.shape[1] == 3 and data[-1, 0] == pytest.approx(1000.0)
    assert (out_dir / "trace.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out_dir / "metrics.json").read_text())
    # halving tau_close shortens the action potential of the default model
    base = run_cell(get_model("mitchell_schaeffer"), bcl=500, beats=2)
    last = base.time >= 500
    assert metrics["last_beat"]["apd90_ms"] < apd(base.time[last], base.vm[last]) - 20
    assert main(argv) == 2  # an earlier trace is not replaced silently
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    assert main(["cell", "mitchell_schaeffer", "--set", "tau_clos=1", "-o", str(tmp_path / "x")]) == 2
    assert "did you mean 'tau_close'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["cell", "mitchell_schaeffer", "--dt", "-1", "-o", str(tmp_path / "y")]) == 2


def _cellml_in_seconds_and_volts(path: Path) -> None:
    """A CellML file as Physiome-era files often are: SI-ish units, stimulus hard-coded in time."""
    model, protocol, _ = myokit.load(str(BUILTIN_DIR / "aliev_panfilov.mmt"))
    model.time().convert_unit("s")
    model.label("membrane_potential").convert_unit("V")
    myokit.formats.exporter("cellml").model(str(path), model, protocol=protocol)


def test_import_cellml_runs_in_tissue(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TWIN_USER_MODELS", str(tmp_path / "user_models"))
    cellml = tmp_path / "ap_si.cellml"
    _cellml_in_seconds_and_volts(cellml)
    assert main(["models", "import", str(cellml), "--name", "ap_si"]) == 0
    assert "imported" in capsys.readouterr().out
    assert (tmp_path / "user_models" / "ap_si.mmt").exists()
    assert main(["models", "import", str(cellml), "--name", "ap_si"]) == 2  # no silent replacement
    assert "--overwrite" in capsys.readouterr().err

    imported, original = get_model("ap_si"), get_model("aliev_panfilov")
    assert imported.cell_stimulus == pytest.approx(original.cell_stimulus)
    a = run_cell(imported, bcl=500, beats=2)
    b = run_cell(original, bcl=500, beats=2)
    np.testing.assert_allclose(a.vm, b.vm, atol=1e-6)  # same model after the unit round trip

    case = tmp_path / "case.yaml"
    case.write_text(textwrap.dedent("""
        name: imported
        mesh: {generator: box, size: [3, 0.5, 0.5], spacing: 0.25}
        model: {name: ap_si}
        stimuli:
          - region: {box: {min: [0, 0, 0], max: [0.5, 0.5, 0.5]}}
            strength: 60 A/F
            duration: 2 ms
        solver: {dt: 0.02, end_time: 30}
        outputs: {interval: 0}
    """))
    assert main(["simulate", str(case), "-o", str(tmp_path / "out"), "-q"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["activation"]["fraction_activated"] == 1.0


def test_import_errors(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TWIN_USER_MODELS", str(tmp_path / "user_models"))
    assert main(["models", "import", str(tmp_path / "missing.cellml")]) == 2
    assert "not found" in capsys.readouterr().err
    broken = tmp_path / "broken.cellml"
    broken.write_text("<model><component")
    assert main(["models", "import", str(broken)]) == 2
    assert "cannot import" in capsys.readouterr().err
    other = tmp_path / "model.txt"
    other.write_text("x")
    assert main(["models", "import", str(other)]) == 2
    assert "unknown model format" in capsys.readouterr().err
    cellml = tmp_path / "ok.cellml"
    _cellml_in_seconds_and_volts(cellml)
    assert main(["models", "import", str(cellml), "--name", "1bad"]) == 2
    assert "must start with a letter" in capsys.readouterr().err


@pytest.mark.parametrize("name", CARDIAC)
def test_every_model_propagates_in_tissue(name: str, tmp_path: Path) -> None:
    """Generated kernels run in the tissue solver unchanged: a wave crosses a 4 mm cable."""
    model = get_model(name)
    case = tmp_path / "cable.yaml"
    case.write_text(textwrap.dedent(f"""
        name: cable
        mesh: {{generator: box, size: [4, 0.5, 0.5], spacing: 0.25}}
        model: {{name: {name}}}
        stimuli:
          - region: {{box: {{min: [0, 0, 0], max: [0.5, 0.5, 0.5]}}}}
            strength: {2 * model.cell_stimulus} A/F
            duration: 2 ms
        solver: {{dt: 0.01, end_time: 40}}
        outputs:
          interval: 0
          probes: {{near: [1, 0.25, 0.25], far: [4, 0.25, 0.25]}}
    """))
    assert main(["simulate", str(case), "-o", str(tmp_path / "out"), "-q"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["activation"]["fraction_activated"] == 1.0
    probes = np.genfromtxt(tmp_path / "out" / "probes.csv", delimiter=",", names=True)
    t = probes["time_ms"]
    up = {k: t[np.argmax(probes[k] > model.activation_threshold)] for k in ("near", "far")}
    assert 0 < up["near"] < up["far"], up  # it travelled from the stimulus to the far end


def test_coded_parameters(write_case) -> None:
    """celltype takes its labels or codes, nothing else, in case files and in the API."""
    ord_ = get_model("ohara_rudy_2011")
    j = ord_.param_names.index("celltype")
    assert ord_.parameter_row({"celltype": "M"})[j] == 2.0
    assert ord_.parameter_row({"celltype": 1})[j] == 1.0
    with pytest.raises(ModelError, match=r"one of endo \(0\), epi \(1\), M \(2\)"):
        ord_.parameter_row({"celltype": 3})
    with pytest.raises(ModelError, match="one of"):
        ord_.parameter_row({"celltype": "x2"})
    from twin.case import load_case
    from twin.errors import CaseError

    text = """
        name: c
        mesh: {generator: box, size: [1, 1, 1], spacing: 0.5}
        model:
          name: tentusscher_2006
          parameters: {celltype: endo}
          regions: {2: {parameters: {celltype: mid}}}
        stimuli:
          - region: {box: {min: [0, 0, 0], max: [0.5, 0.5, 0.5]}}
            strength: 50 A/F
        solver: {dt: 0.02, end_time: 2}
    """
    with pytest.raises(CaseError, match=r"case.yaml:7: model\.regions\[2\]\.parameters\.celltype: .*one of endo"):
        load_case(write_case(text))
    load_case(write_case(text.replace("celltype: mid", "celltype: M")))
