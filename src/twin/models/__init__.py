"""Reaction models: the generic interface and the registry of available models."""

from __future__ import annotations

from ..errors import ModelError
from ..registry import Registry
from .base import ReactionModel

MODELS: Registry[ReactionModel] = Registry("reaction model", ModelError)


def _register_builtin() -> None:
    from .handwritten import ALIEV_PANFILOV, MITCHELL_SCHAEFFER

    for model in (MITCHELL_SCHAEFFER, ALIEV_PANFILOV):
        MODELS.register(model.name, model)


def get_model(name: str) -> ReactionModel:
    """Return the model registered as ``name`` (``ModelError`` with suggestions otherwise)."""
    if not MODELS.names():
        _register_builtin()
    return MODELS.get(name)


def available_models() -> list[str]:
    """Names of all registered models."""
    if not MODELS.names():
        _register_builtin()
    return MODELS.names()


__all__ = ["ReactionModel", "get_model", "available_models", "MODELS"]
