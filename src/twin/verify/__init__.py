"""``twin verify``: published benchmarks and exact solutions, as commands that gate CI.

Each benchmark module exposes ``add_arguments(parser)`` (its command-line options) and
``run(args, folder) -> VerifyReport``; :data:`BENCHMARKS` lists them for the CLI.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .report import Check, VerifyReport

#: command name -> module (imported on demand: numerics are heavy)
BENCHMARKS = {
    "niederer": "twin.verify.niederer",
    "mms": "twin.verify.mms",
    "waves": "twin.verify.waves",
}


def benchmark_module(name: str) -> ModuleType:
    """The module implementing ``twin verify <name>``."""
    return importlib.import_module(BENCHMARKS[name])


__all__ = ["BENCHMARKS", "Check", "VerifyReport", "benchmark_module"]
