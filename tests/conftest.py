"""Shared fixtures: small meshes and case writers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def write_case(tmp_path: Path):
    """Write a YAML case (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "case.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


SMALL_CASE = """
name: small
mesh:
  generator: box
  size: [4, 1, 0.5]
  spacing: 0.25
tissue:
  sigma_l: 0.17 S/m
  sigma_t: 0.019 S/m
  chi: 140 1/mm
  cm: 1 uF/cm^2
model:
  name: mitchell_schaeffer
stimuli:
  - region: {box: {min: [0, 0, 0], max: [0.5, 1, 0.5]}}
    strength: 50000 uA/cm^3
    duration: 1 ms
solver:
  dt: 0.02
  end_time: 20
outputs:
  interval: 5
  fields: [Vm, h]
  probes:
    mid: [2, 0.5, 0.25]
"""
