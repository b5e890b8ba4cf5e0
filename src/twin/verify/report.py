"""What every ``twin verify`` command produces: named checks against stated tolerances.

A :class:`VerifyReport` collects the checks of one verification run and writes the
self-contained folder (``report.json`` and ``report.md``, next to whatever tables,
plots and VTU files the command wrote).  The CLI exits non-zero when any check
fails, so CI can gate on it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io.atomic import write_json, write_text

logger = logging.getLogger(__name__)


@dataclass
class Check:
    """One measured quantity against its tolerance.

    Attributes
    ----------
    name
        What is checked, e.g. ``"L2 order in space (3D)"``.
    value
        The measured value.
    expected
        The reference (exact value, published value or target order).
    tolerance
        Allowed ``|value - expected|`` (or, with ``kind="max"``, the upper bound of ``value``).
    kind
        ``"abs"`` (|value − expected| ≤ tolerance) or ``"max"`` (value ≤ tolerance) or
        ``"min"`` (value ≥ tolerance).
    unit
        Unit of ``value`` for the tables (``"ms"``, ``"%"``, ``""``).
    """

    name: str
    value: float
    expected: float | None
    tolerance: float
    kind: str = "abs"
    unit: str = ""

    @property
    def passed(self) -> bool:
        if self.value != self.value:  # NaN never passes
            return False
        if self.kind == "max":
            return self.value <= self.tolerance
        if self.kind == "min":
            return self.value >= self.tolerance
        assert self.expected is not None
        return abs(self.value - self.expected) <= self.tolerance

    def describe(self) -> str:
        if self.kind == "max":
            rule = f"≤ {self.tolerance:g}"
        elif self.kind == "min":
            rule = f"≥ {self.tolerance:g}"
        else:
            rule = f"{self.expected:g} ± {self.tolerance:g}"
        return f"{self.name}: {self.value:.4g}{(' ' + self.unit) if self.unit else ''} (expected {rule})"


@dataclass
class VerifyReport:
    """Checks, tables and files of one ``twin verify`` run.

    Attributes
    ----------
    name
        Benchmark name (``niederer``, ``mms``, ``waves``).
    folder
        Output folder.
    settings
        Options the run used (recorded in ``report.json``).
    checks
        The :class:`Check` list.
    tables
        Named tables: each a list of row dicts with the same keys (written as Markdown).
    files
        Other files written into ``folder`` (relative names).
    notes
        Free text for the Markdown report (what the benchmark is, references).
    """

    name: str
    folder: Path
    settings: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    notes: str = ""
    started: float = field(default_factory=time.perf_counter)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def check(self, name: str, value: float, expected: float | None, tolerance: float, *,
              kind: str = "abs", unit: str = "") -> Check:
        """Add a check and log its outcome."""
        c = Check(name, float(value), None if expected is None else float(expected), float(tolerance), kind, unit)
        self.checks.append(c)
        logger.info("%s %s", "PASS" if c.passed else "FAIL", c.describe())
        return c

    def write(self) -> None:
        """Write ``report.json`` and ``report.md`` into the folder (atomically)."""
        from ..solver.simulation import versions

        self.folder.mkdir(parents=True, exist_ok=True)
        data = {
            "benchmark": self.name,
            "passed": self.passed,
            "settings": self.settings,
            "checks": [{**c.__dict__, "passed": c.passed} for c in self.checks],
            "tables": self.tables,
            "files": self.files,
            "versions": versions(),
            "wall_time_s": time.perf_counter() - self.started,
        }
        write_json(self.folder / "report.json", data)
        write_text(self.folder / "report.md", self.markdown())

    def markdown(self) -> str:
        lines = [f"# twin verify {self.name}: {'PASSED' if self.passed else 'FAILED'}", ""]
        if self.notes:
            lines += [self.notes.strip(), ""]
        if self.settings:
            lines += ["Settings: " + ", ".join(f"`{k}` = {v}" for k, v in self.settings.items()), ""]
        lines += ["## Checks", "", "| check | value | expected | result |", "|---|---|---|---|"]
        for c in self.checks:
            rule = (f"≤ {c.tolerance:g}" if c.kind == "max" else f"≥ {c.tolerance:g}" if c.kind == "min"
                    else f"{c.expected:g} ± {c.tolerance:g}")
            lines.append(f"| {_cell(c.name)} | {c.value:.4g} {c.unit} | {rule} | {'pass' if c.passed else 'FAIL'} |")
        for title, rows in self.tables.items():
            if not rows:
                continue
            keys = list(rows[0])
            lines += ["", f"## {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            for row in rows:
                lines.append("| " + " | ".join(_fmt(row.get(k)) for k in keys) + " |")
        if self.files:
            lines += ["", "## Files", ""] + [f"- `{f}`" for f in self.files]
        return "\n".join(lines) + "\n"


def save_figure(fig: Any, path: Path) -> str:
    """Write a matplotlib figure as PNG atomically; return the file name (for ``VerifyReport.files``)."""
    from ..io.atomic import atomic_write

    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    return path.name


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.5g}"
    return "" if v is None else _cell(str(v))


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (a '|' would end the cell)."""
    return text.replace("|", "\\|")
