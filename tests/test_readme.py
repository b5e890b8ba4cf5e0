"""The README's two commands stay true: CI runs exactly the README's test command."""

from __future__ import annotations

import re

from .conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_ci_runs_the_readme_test_command():
    commands = readme_commands()
    assert len(commands) == 2
    assert "twin simulate cases/slab.yaml" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci


def test_default_case_exists():
    assert (ROOT / "cases" / "slab.yaml").exists()
