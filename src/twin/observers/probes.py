"""Probe points: P1 interpolation of the solution at named coordinates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.spatial import cKDTree


def locate_points(points: np.ndarray, tets: np.ndarray, query: np.ndarray, k: int = 16
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find the containing tetrahedron and barycentric weights of each query point.

    Parameters
    ----------
    points, tets
        The mesh [mm].
    query
        ``(q, 3)`` coordinates [mm].
    k
        How many nearest element centroids to test before scanning everything.

    Returns
    -------
    nodes
        ``(q, 4)`` vertex indices of the containing element (``-1`` when outside).
    weights
        ``(q, 4)`` barycentric weights (sum to one).
    inside
        ``(q,)`` bool: whether the point lies in the mesh (tolerance 1e-8 relative).
    """
    query = np.atleast_2d(np.asarray(query, dtype=np.float64))
    x = points[tets]
    centroids = x.mean(axis=1)
    tree = cKDTree(centroids)
    nodes = np.full((len(query), 4), -1, dtype=np.int64)
    weights = np.zeros((len(query), 4))
    inside = np.zeros(len(query), dtype=bool)
    k = min(k, len(tets))

    def bary(elems: np.ndarray, p: np.ndarray) -> np.ndarray:
        jac = x[elems, 1:, :] - x[elems, :1, :]                     # (e, 3, 3)
        lam = np.linalg.solve(np.transpose(jac, (0, 2, 1)), (p - x[elems, 0, :])[..., None])[..., 0]
        return np.concatenate([1.0 - lam.sum(axis=1, keepdims=True), lam], axis=1)

    for qi, p in enumerate(query):
        _, cand = tree.query(p, k=k)
        cand = np.atleast_1d(cand)
        for elems in (cand, np.arange(len(tets))):
            w = bary(elems, p)
            worst = w.min(axis=1)
            j = int(np.argmax(worst))
            if worst[j] >= -1e-8:
                nodes[qi] = tets[elems[j]]
                weights[qi] = np.clip(w[j], 0.0, None) / np.clip(w[j], 0.0, None).sum()
                inside[qi] = True
                break
    return nodes, weights, inside


class ProbeRecorder:
    """Samples the diffusing state at probe points after every step.

    Parameters
    ----------
    names
        Probe names (CSV column headers).
    nodes, weights
        From :func:`locate_points`.
    n_samples
        Number of rows to preallocate (steps + 1): nothing is allocated in the loop.
    """

    def __init__(self, names: Sequence[str], nodes: np.ndarray, weights: np.ndarray, n_samples: int) -> None:
        self.names = list(names)
        self.nodes = nodes
        self.weights = weights
        self.times = np.full(n_samples, np.nan)
        self.values = np.full((n_samples, len(self.names)), np.nan)

    def record(self, row: int, t: float, v: np.ndarray) -> None:
        if not self.names:
            return
        self.times[row] = t
        self.values[row] = np.sum(v[self.nodes] * self.weights, axis=1)

    def table(self) -> tuple[list[str], np.ndarray]:
        """Header and the recorded rows (time first)."""
        done = np.isfinite(self.times)
        return ["time_ms"] + self.names, np.column_stack([self.times[done], self.values[done]])


def probe_table(probes: Mapping[str, Sequence[float]]) -> tuple[list[str], np.ndarray]:
    """Names and ``(q, 3)`` coordinates from the case's ``outputs.probes`` mapping."""
    names = list(probes)
    coords = np.array([probes[n] for n in names], dtype=np.float64).reshape(len(names), 3)
    return names, coords
