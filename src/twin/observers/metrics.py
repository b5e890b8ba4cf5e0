"""Scalar metrics of a finished run, the numbers ``twin compare`` puts side by side."""

from __future__ import annotations

from typing import Any

import numpy as np


def conduction_velocity(points: np.ndarray, tets: np.ndarray, activation: np.ndarray) -> np.ndarray:
    """Local conduction velocity per element [mm/ms = m/s]: 1 / |∇LAT| of the P1 activation field.

    NaN where a vertex never activated or the gradient vanishes (collision or stimulus sites).
    """
    from ..fem import p1_gradients

    grads, _ = p1_gradients(points, tets)
    lat = activation[tets]                                     # (m, 4)
    g = np.einsum("mk,mkd->md", np.nan_to_num(lat), grads)     # ∇LAT per element [ms/mm]
    norm = np.linalg.norm(g, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.where(np.isfinite(lat).all(axis=1) & (norm > 0), 1.0 / norm, np.nan)
    return cv


def run_metrics(problem: Any, result: Any) -> dict[str, Any]:
    """Activation, repolarisation, ECG and reentry metrics of one run (None where not measured).

    Returns
    -------
    dict
        ``fraction_activated``, ``total_activation_time_ms`` (last − first activation),
        ``mean_activation_time_ms``, ``conduction_velocity_m_per_s`` (median over elements of
        1/|∇LAT|), ``apd90_mean_ms``, ``apd_dispersion_ms``,
        ``repolarisation_dispersion_ms``, ``qrs_ms``, ``qt_ms``, ``inducible``,
        ``vt_cycle_length_ms``, ``exit_site``.
    """
    act = result.activation
    excitable = problem.excitable if problem.excitable is not None else np.ones(act.shape, bool)
    live = act[excitable]
    done = live[np.isfinite(live)]
    out: dict[str, Any] = {
        "nodes": int(act.size),
        "fraction_activated": float(done.size / max(live.size, 1)),
        "total_activation_time_ms": float(done.max() - done.min()) if done.size else None,
        "mean_activation_time_ms": float(done.mean()) if done.size else None,
        "conduction_velocity_m_per_s": None,
        "apd90_mean_ms": None, "apd_dispersion_ms": None, "repolarisation_dispersion_ms": None,
        "qrs_ms": None, "qt_ms": None, "inducible": None, "vt_cycle_length_ms": None, "exit_site": None,
    }
    cv = conduction_velocity(problem.mesh.points, problem.mesh.tets, act)
    cv = cv[np.isfinite(cv)]
    if cv.size:
        # the median ignores the near-infinite apparent speeds where wavefronts collide
        out["conduction_velocity_m_per_s"] = float(np.median(cv))
    if result.apd is not None:
        apd = result.apd[excitable]
        ok = np.isfinite(apd)
        if ok.any():
            out["apd90_mean_ms"] = float(apd[ok].mean())
            out["apd_dispersion_ms"] = float(apd[ok].max() - apd[ok].min())
        rep = result.repolarisation[excitable]
        rep = rep[np.isfinite(rep)]
        if rep.size:
            out["repolarisation_dispersion_ms"] = float(rep.max() - rep.min())
    if result.ecg is not None:
        out.update({k: v for k, v in result.summary.get("ecg", {}).items() if k in ("qrs_ms", "qt_ms")})
    if result.reentry is not None:
        out["inducible"] = bool(result.reentry.get("sustained"))
        out["vt_cycle_length_ms"] = result.reentry.get("cycle_length_ms")
        out["exit_site"] = result.reentry.get("exit_site")
    return out
