"""Treatment operators: what an arm's ``ablation`` and ``drug`` entries change in a case.

Both act on the raw case data before validation, so a treated arm is an ordinary case:

* **ablation** lesions become dense-scar ``regions`` entries appended after the case's own
  regions (a lesion overrides whatever was there): a point lesion is a ``lesion`` selector
  (a cylinder along the inward surface normal), a line of points is one such lesion every
  ``spacing`` along the polyline, a region lesion is the region itself;
* a **drug** becomes factors on the conductance parameters of the model's currents
  (``twin_currents`` in the model file), from the drug table (``models/drugs.yaml``, CiPA
  IC50/Hill values) or from the arm's own IC50s or block fractions: the fraction blocked at
  concentration C is b = 1 / (1 + (IC50 / C)^h), and the conductance is scaled by 1 − b.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml


logger = logging.getLogger(__name__)

DRUG_TABLE = Path(__file__).resolve().parents[2] / "models" / "drugs.yaml"
NM_PER_MM = 1e6  # drug concentrations are canonical mM; the table is in nM


@functools.lru_cache(maxsize=1)
def drug_table() -> dict[str, dict[str, Any]]:
    """The drug table: name -> {cmax_free [nM], CURRENT: {ic50 [nM], hill}}."""
    with open(DRUG_TABLE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def block_fraction(concentration_nM: float, ic50_nM: float, hill: float) -> float:
    """Fraction of a current blocked at a concentration (simple pore block, Hill equation)."""
    if concentration_nM <= 0:
        return 0.0
    return 1.0 / (1.0 + (ic50_nM / concentration_nM) ** hill)


def drug_blocks(drug: Any) -> dict[str, float]:
    """Block fraction per current name for a :class:`twin.case.DrugSpec`."""
    blocks: dict[str, float] = {}
    conc_nM = (drug.concentration or 0.0) * NM_PER_MM
    if drug.name is not None:
        table = drug_table()
        if drug.name not in table:
            import difflib

            close = difflib.get_close_matches(drug.name, list(table), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"unknown drug '{drug.name}'; {hint}drugs in the table: {', '.join(sorted(table))}")
        for current, entry in table[drug.name].items():
            if isinstance(entry, dict):
                blocks[current] = block_fraction(conc_nM, float(entry["ic50"]), float(entry["hill"]))
    for current, spec in drug.ic50.items():
        blocks[current] = block_fraction(conc_nM, spec.ic50 * NM_PER_MM, spec.hill)
    blocks.update(drug.block)  # explicit fractions win
    return blocks


def _scale(value: Any, factor: float) -> Any:
    """Multiply a parameter override (a number or a factor string ``"x0.5"``) by ``factor``."""
    if isinstance(value, str) and value.strip()[:1] in ("x", "*", "×"):
        return f"x{float(value.strip()[1:]) * factor!r}"
    return float(value) * factor


def apply_drug(data: dict[str, Any], model: Any, drug: Any) -> dict[str, float]:
    """Scale the model's conductances in raw case ``data`` by the drug's block; return the factors.

    Every place a blocked parameter is set (``model.parameters``, ``model.regions``,
    ``regions[].parameters``) is scaled, so remodelled regions keep their remodelling.
    """
    factors: dict[str, float] = {}
    for current, b in drug_blocks(drug).items():
        param = model.currents.get(current) or (current if current in model.param_names else None)
        if param is None:
            logger.info("drug: model '%s' has no current %s (%.1f%% block ignored)", model.name, current, 100 * b)
            continue
        factors[param] = factors.get(param, 1.0) * (1.0 - b)
    model_sec = data.setdefault("model", {}) or {}
    data["model"] = model_sec
    params = model_sec.setdefault("parameters", {}) or {}
    model_sec["parameters"] = params
    for param, f in factors.items():
        params[param] = _scale(params.get(param, "x1"), f)
    for region in (model_sec.get("regions") or {}).values():
        for param, f in factors.items():
            if isinstance(region, dict) and param in (region.get("parameters") or {}):
                region["parameters"][param] = _scale(region["parameters"][param], f)
    for region in data.get("regions") or []:
        for param, f in factors.items():
            if isinstance(region, dict) and param in (region.get("parameters") or {}):
                region["parameters"][param] = _scale(region["parameters"][param], f)
    for param, f in factors.items():
        logger.info("drug: %s x %.4g (%.1f%% block)", param, f, 100 * (1 - f))
    return factors


def lesion_regions(ablation: list[Any], raw: list[dict[str, Any]], arm: str) -> list[dict[str, Any]]:
    """Dense-scar ``regions`` entries (raw case data) for an arm's lesions.

    Parameters
    ----------
    ablation
        The arm's :class:`twin.case.AblationSpec` list (validated).
    raw
        The same entries as raw YAML data (to copy ``where`` selectors as written).
    arm
        The arm's name (region names are ``<arm>:<lesion>``).
    """
    out: list[dict[str, Any]] = []
    for i, (lesion, raw_entry) in enumerate(zip(ablation, raw)):
        name = lesion.name or f"lesion{i}"
        common = {"radius": lesion.radius, "depth": lesion.depth}
        if lesion.direction is not None:
            common["direction"] = list(lesion.direction)
        if lesion.where is not None:
            out.append({"name": f"{arm}:{name}", "where": copy.deepcopy(raw_entry["where"]), "dense_scar": True})
        elif lesion.at is not None:
            out.append({"name": f"{arm}:{name}", "where": {"lesion": {"at": list(lesion.at), **common}},
                        "dense_scar": True})
        else:
            assert lesion.points is not None
            spacing = lesion.spacing or lesion.radius
            for k, p in enumerate(_resample(np.asarray(lesion.points, dtype=float), spacing)):
                out.append({"name": f"{arm}:{name}.{k}", "where": {"lesion": {"at": p.tolist(), **common}},
                            "dense_scar": True})
    return out


def _resample(points: np.ndarray, spacing: float) -> np.ndarray:
    """Points every ``spacing`` along a polyline, both ends included."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(math.ceil(s[-1] / spacing)), 1)
    t = np.linspace(0.0, s[-1], n + 1)
    return np.column_stack([np.interp(t, s, points[:, j]) for j in range(3)])

