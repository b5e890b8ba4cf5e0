"""Case files: schema, units, line numbers, did-you-mean, overrides."""

from __future__ import annotations

import io

import pytest

from twin.case import case_from_text, load_case, parse_parameter
from twin.cli import main
from twin.errors import CaseError

from .conftest import SMALL_CASE


def test_units_are_resolved_to_canonical(write_case):
    case = load_case(write_case(SMALL_CASE))
    t = case.spec.tissue
    assert t.sigma_l == pytest.approx(0.17)          # S/m == mS/mm
    assert t.chi == pytest.approx(140.0)             # 1/mm
    assert t.cm == pytest.approx(0.01)               # µF/mm²
    s = case.spec.stimuli[0].strength
    assert (s.kind, s.value) == ("current_density", pytest.approx(50.0))  # µA/mm³
    assert case.spec.solver.resolved_mass == "consistent"


def test_quantities_with_other_units(write_case):
    text = SMALL_CASE.replace("chi: 140 1/mm", "chi: 1400 1/cm").replace("dt: 0.02", "dt: 20 us") \
        .replace("sigma_t: 0.019 S/m", "sigma_t: 0.19 mS/cm")
    case = load_case(write_case(text))
    assert case.spec.tissue.chi == pytest.approx(140.0)
    assert case.spec.solver.dt == pytest.approx(0.02)
    assert case.spec.tissue.sigma_t == pytest.approx(0.019)


def test_override_with_set(write_case):
    case = load_case(write_case(SMALL_CASE), ["solver.dt=0.01", "stimuli.0.strength=40 A/F",
                                              "tissue.fibres.direction=[0, 1, 0]"])
    assert case.spec.solver.dt == 0.01
    assert case.spec.stimuli[0].strength.kind == "current_per_capacitance"
    assert case.spec.tissue.fibres.direction == (0.0, 1.0, 0.0)
    with pytest.raises(CaseError) as exc:
        load_case(write_case(SMALL_CASE), ["solver.dt=-1"])
    assert "--set" in str(exc.value) and "solver.dt" in str(exc.value)


def test_parameter_factor_syntax():
    assert parse_parameter("x0.5", 4.0) == 2.0
    assert parse_parameter("*2", 4.0) == 8.0
    assert parse_parameter(3, 4.0) == 3.0
    with pytest.raises(ValueError):
        parse_parameter("half", 4.0)


BROKEN = {
    # name: (edit applied to SMALL_CASE, expected fragment, expected key in the message, line)
    "typo_key": (("  dt: 0.02", "  dtt: 0.02"), "did you mean 'dt'", "solver.dtt", 19),
    "wrong_unit": (("chi: 140 1/mm", "chi: 140 mV"), "is not a surface to volume", "tissue.chi", 10),
    "negative_dt": (("  dt: 0.02", "  dt: -0.02"), "greater than 0", "solver.dt", 19),
    "missing_mesh_file": (("  generator: box\n  size: [4, 1, 0.5]\n  spacing: 0.25",
                           "  file: nowhere.vtu"), "mesh file not found", "mesh.file", 4),
    "stimulus_outside_mesh": (("min: [0, 0, 0], max: [0.5, 1, 0.5]", "min: [50, 50, 50], max: [51, 51, 51]"),
                              "contains no node", "stimuli[0].region", 15),
    "unknown_model": (("name: mitchell_schaeffer", "name: mitchel_schaefer"),
                      "did you mean 'mitchell_schaeffer'", "model.name", 13),
    "wrong_type": (("  end_time: 20", "  end_time: [20]"), "end_time", "solver.end_time", 20),
    "theta_out_of_range": (("  end_time: 20", "  end_time: 20\n  theta: 1.5"), "less than or equal to 1",
                           "solver.theta", 21),
    "probe_outside": (("mid: [2, 0.5, 0.25]", "mid: [20, 0.5, 0.25]"), "outside the mesh",
                      "outputs.probes.mid", 25),
    "inconsistent_interval": (("  interval: 5", "  interval: 0.03"), "multiple of solver.dt",
                              "outputs.interval", 22),
    "bad_yaml": (("  spacing: 0.25", "  spacing: [0.25"), "not valid YAML", None, None),
    "unknown_parameter": (("  name: mitchell_schaeffer", "  name: mitchell_schaeffer\n  parameters: {tau_clos: 100}"),
                          "did you mean 'tau_close'", "model.parameters.tau_clos", 14),
    "explicit_consistent": (("  end_time: 20", "  end_time: 20\n  diffusion: explicit\n  mass: consistent"),
                            "explicit diffusion needs mass: lumped", "solver", 18),
    "field_unknown": (("fields: [Vm, h]", "fields: [Vm, hh]"), "did you mean 'h'", "outputs.fields[1]", 23),
    "explicit_unstable": (("  end_time: 20", "  end_time: 20\n  diffusion: explicit\n  dt: 1"), "unstable",
                          None, None),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_case_gives_one_line_and_exit_2(name, write_case):
    (old, new), fragment, key, line = BROKEN[name]
    assert old in SMALL_CASE, name
    text = SMALL_CASE.replace(old, new, 1)
    if name == "explicit_unstable":
        text = text.replace("  dt: 0.02\n", "", 1)
    path = write_case(text, f"{name}.yaml")
    out, err = io.StringIO(), io.StringIO()
    cmd = "simulate" if name == "explicit_unstable" else "validate"
    extra = ["-o", str(path.parent / "out"), "-q"] if cmd == "simulate" else ["-q"]
    code = main([cmd, str(path), *extra], stdout=out, stderr=err)
    message = err.getvalue()
    assert code == 2, message
    lines = message.strip().splitlines()
    assert len(lines) == 1, message
    assert "Traceback" not in message
    assert fragment in message, message
    if key is not None:
        assert f": {key}: " in message, message
    if line is not None:
        assert f"{path}:{line}:" in message, message
    else:
        assert str(path.name) in message or "unstable" in message


def test_duplicate_key_is_an_error():
    with pytest.raises(CaseError, match="duplicate key 'mesh'"):
        case_from_text("mesh: {generator: box}\nmesh: {generator: box}\n", source="d.yaml")


def test_empty_and_non_mapping_files(write_case):
    with pytest.raises(CaseError, match="required key is missing"):
        load_case(write_case(""))
    with pytest.raises(CaseError, match="mapping of sections"):
        load_case(write_case("- a\n- b\n"))
    with pytest.raises(CaseError, match="case file not found"):
        load_case("/nonexistent/case.yaml")


def test_validate_good_case(write_case):
    out = io.StringIO()
    assert main(["validate", str(write_case(SMALL_CASE))], stdout=out, stderr=io.StringIO()) == 0
    assert "valid" in out.getvalue()
