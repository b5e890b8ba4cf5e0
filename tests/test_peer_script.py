"""benchmarks/peers/torchcor_niederer.py without TorchCor: it says why it skips and exits 0."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peers" / "torchcor_niederer.py"


def _load():
    spec = importlib.util.spec_from_file_location("torchcor_niederer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(importlib.util.find_spec("torchcor") is not None, reason="TorchCor is installed here")
def test_skips_with_a_reason_when_torchcor_is_absent(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TWIN_PEER_PYTHON", raising=False)
    assert _load().main(["--peer-python", str(tmp_path / "no-python")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SKIPPED: TorchCor is not available")
    assert "pip install torch==2.13.0 torchcor" in out


def test_refuses_fewer_than_one_repeat(capsys):
    with pytest.raises(SystemExit) as exc:
        _load().main(["--repeats", "0"])
    assert exc.value.code == 2
    assert "--repeats must be at least 1" in capsys.readouterr().err
