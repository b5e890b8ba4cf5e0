"""Reaction models: the generic interface, model files in ``models/`` and their kernels."""

from __future__ import annotations

import difflib

from ..errors import ModelError
from .base import ReactionModel
from .library import load_model_file, model_files


def available_models() -> list[str]:
    """Names of all models on the search path."""
    return sorted(model_files())


def get_model(name: str) -> ReactionModel:
    """Return the model called ``name`` (``ModelError`` with suggestions otherwise)."""
    files = model_files()
    if name not in files:
        names = sorted(files)
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ModelError(f"unknown reaction model '{name}'; {hint}available: {', '.join(names)}")
    return load_model_file(files[name])


__all__ = ["ReactionModel", "get_model", "available_models", "load_model_file"]
