"""Checkpoints (HDF5): everything needed to continue a run bit-for-bit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import OutputError
from .atomic import atomic_write

FORMAT = "twin-checkpoint-1"


def save_checkpoint(path: str | Path, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """Atomically write ``arrays`` (datasets) and scalar ``attrs`` to an HDF5 file."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            for k, v in attrs.items():
                f.attrs[k] = v
            for k, v in arrays.items():
                f.create_dataset(k, data=v)

    atomic_write(path, write)


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise OutputError(f"{path} is not a twin checkpoint")
            arrays = {k: f[k][()] for k in f.keys()}
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise OutputError(f"cannot read checkpoint {path}: {exc}") from None
    return arrays, attrs
