"""Canonical units and quantity parsing.

Inside twin every number is in the canonical unit of its kind (DESIGN.md §3):
length mm, time ms, potential mV, conductivity S/m (= mS/mm), capacitance per
area µF/mm², surface-to-volume ratio 1/mm, volumetric current µA/mm³ and
current per capacitance A/F (= mV/ms).  Case files may attach any unit that
Pint understands (``"0.17 S/m"``, ``"1400 1/cm"``, ``"1 µF/cm²"``); a bare
number is taken in the canonical unit.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from .errors import TwinError

#: kind -> canonical unit (a Pint expression) and an example for error messages.
CANONICAL: dict[str, tuple[str, str]] = {
    "length": ("mm", "0.5 mm"),
    "time": ("ms", "0.01 ms"),
    "potential": ("mV", "-40 mV"),
    "conductivity": ("mS/mm", "0.17 S/m"),
    "capacitance": ("uF/mm^2", "1 uF/cm^2"),
    "surface_to_volume": ("1/mm", "140 1/mm"),
    "current_density": ("uA/mm^3", "50000 uA/cm^3"),
    "current_per_area": ("uA/mm^2", "100 uA/cm^2"),
    "current_per_capacitance": ("mV/ms", "50 A/F"),
    "concentration": ("mM", "10 nM"),
    "dimensionless": ("", "0.5"),
}


class UnitError(TwinError, ValueError):
    """A quantity has the wrong dimension or cannot be parsed."""


@functools.lru_cache(maxsize=1)
def registry() -> Any:
    """Return the shared Pint unit registry (created lazily: it costs ~0.3 s)."""
    import pint

    ureg = pint.UnitRegistry()
    # A/F is how cell-model papers write current per capacitance; Pint derives it
    # (ampere/farad = volt/second) so no definition is needed, but "uA/uF" too.
    return ureg


_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def parse_quantity(value: Any, kind: str) -> float:
    """Convert a case-file value to a float in the canonical unit of ``kind``.

    Parameters
    ----------
    value
        A number (taken in the canonical unit) or a string ``"<number> <unit>"``.
    kind
        One of :data:`CANONICAL`.

    Returns
    -------
    float
        The magnitude in the canonical unit.

    Raises
    ------
    UnitError
        When the string cannot be parsed or its unit has another dimension.
    """
    canonical, example = CANONICAL[kind]
    if isinstance(value, bool):
        raise UnitError(f"expected a {kind.replace('_', ' ')} such as '{example}', got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise UnitError(f"expected a {kind.replace('_', ' ')} such as '{example}', got {value!r}")
    if _NUMBER.match(value):
        return float(value)
    ureg = registry()
    try:
        q = ureg.Quantity(value.strip())
    except Exception as exc:  # Pint raises several unrelated types for bad strings
        raise UnitError(f"cannot read {value!r} as a quantity ({exc}); expected e.g. '{example}'") from None
    if not hasattr(q, "to"):
        return float(q)
    try:
        return float(q.to(canonical if canonical else "dimensionless").magnitude)
    except Exception:
        raise UnitError(
            f"{value!r} is not a {kind.replace('_', ' ')}: its unit '{q.units:~}' cannot be converted "
            f"to '{canonical or 'dimensionless'}' (expected e.g. '{example}')"
        ) from None


def dimension_of(value: str, kinds: tuple[str, ...]) -> tuple[str, float]:
    """Find which of ``kinds`` a unit-carrying string belongs to.

    Used where a key accepts several dimensions, e.g. a stimulus strength given
    either as volumetric current (µA/cm³) or as current per capacitance (A/F).

    Returns
    -------
    (kind, magnitude)
        The matching kind and the magnitude in its canonical unit.
    """
    errors = []
    for kind in kinds:
        try:
            return kind, parse_quantity(value, kind)
        except UnitError as exc:
            errors.append(str(exc))
    examples = " or ".join(f"'{CANONICAL[k][1]}'" for k in kinds)
    raise UnitError(f"cannot read {value!r} as any of {', '.join(k.replace('_', ' ') for k in kinds)} "
                    f"(expected e.g. {examples})")
