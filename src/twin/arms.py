"""Treatment arms: a case's ``arms:`` expanded into complete, validated cases.

Every arm is the base case (the file without its ``arms:`` section, after ``--set``) with,
in this order: its ``set:`` overrides (any case key, dotted, list items by index), its extra
``regions``, its ablation lesions (dense-scar regions, last so they win), and its drug (factors
on the model's conductances). The base itself is always the first arm, named ``base``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .case import Case, case_from_data, set_key
from .errors import CaseError, ModelError
from .treatments import apply_drug, lesion_regions


@dataclass(frozen=True)
class Arm:
    """One arm: its validated case and a summary of its treatments.

    Attributes
    ----------
    name, description
        From the case file (``base`` for the untreated case).
    case
        The complete case of this arm.
    drug_factors
        Conductance parameter -> factor applied by the arm's drug.
    lesions
        Names of the lesion regions added.
    changes
        The ``set:`` overrides, as written.
    """

    name: str
    description: str
    case: Case
    drug_factors: dict[str, float] = field(default_factory=dict)
    lesions: list[str] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)


def expand_arms(case: Case) -> list[Arm]:
    """The base and every arm of ``case`` as validated cases (``CaseError`` naming the arm's key)."""
    from .models import get_model

    base_data = copy.deepcopy(case.raw)
    raw_arms = base_data.pop("arms", None) or []
    base_lines = {k: v for k, v in case.lines.items() if not (k and k[0] == "arms")}
    arms = [Arm("base", "the case without changes", case_from_data(copy.deepcopy(base_data), dict(base_lines),
                                                                   source=case.source, base_dir=case.base_dir))]
    for i, spec in enumerate(case.spec.arms):
        raw = raw_arms[i]
        data = copy.deepcopy(base_data)
        lines = dict(base_lines)
        for key, value in spec.set.items():
            where = case.lines.get(("arms", i, "set", key), (case.source, case.lines.get(("arms", i), (None, None))[1]))
            set_key(data, lines, str(key), copy.deepcopy(value), where)
        regions = list(data.get("regions") or [])
        regions += copy.deepcopy(raw.get("regions") or [])
        lesions = lesion_regions(spec.ablation, raw.get("ablation") or [], spec.name)
        regions += lesions
        if regions:
            data["regions"] = regions
        factors: dict[str, float] = {}
        if spec.drug is not None:
            model_name = (data.get("model") or {}).get("name", "mitchell_schaeffer")
            try:
                factors = apply_drug(data, get_model(model_name), spec.drug)
            except (ValueError, ModelError) as exc:
                raise case.error(("arms", i, "drug"), str(exc)) from None
        try:
            arm_case = case_from_data(data, lines, source=case.source, base_dir=case.base_dir)
        except CaseError as exc:
            raise CaseError(f"in arm '{spec.name}': {exc.message}", source=exc.source, line=exc.line,
                            key=exc.key) from None
        arms.append(Arm(spec.name, spec.description, arm_case, factors, [r["name"] for r in lesions],
                        dict(spec.set)))
    return arms
