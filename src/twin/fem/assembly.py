"""Assembly of the P1 stiffness and mass matrices, vectorised over all elements.

For a tetrahedron with vertices x0..x3 the barycentric (hat) functions have
constant gradients G (4×3): with J = [x1-x0, x2-x0, x3-x0]ᵀ (rows), the
gradients of φ1..φ3 are the columns of J⁻¹ and ∇φ0 = -Σ∇φk.  Then

    K_e = |T| G σ_e Gᵀ          (stiffness, σ_e the element conductivity tensor)
    M_e = |T|/20 (1 + δ_ij)     (consistent mass),   lumped: |T|/4 per vertex.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import MeshError


def p1_gradients(points: np.ndarray, tets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hat-function gradients and volumes of every tetrahedron.

    Parameters
    ----------
    points
        ``(n, 3)`` coordinates [mm].
    tets
        ``(m, 4)`` vertex indices.

    Returns
    -------
    grads
        ``(m, 4, 3)`` gradients [1/mm].
    volumes
        ``(m,)`` unsigned volumes [mm³].
    """
    x = points[tets]                                  # (m, 4, 3)
    jac = x[:, 1:, :] - x[:, :1, :]                   # (m, 3, 3), rows are edge vectors
    det = np.linalg.det(jac)
    if np.any(det == 0.0) or not np.all(np.isfinite(det)):
        bad = int(np.flatnonzero((det == 0.0) | ~np.isfinite(det))[0])
        raise MeshError(f"degenerate tetrahedron {bad}: zero or non-finite volume")
    inv = np.linalg.inv(jac)                          # columns are ∇φ1..∇φ3
    grads = np.empty((len(tets), 4, 3))
    grads[:, 1:, :] = np.transpose(inv, (0, 2, 1))
    grads[:, 0, :] = -grads[:, 1:, :].sum(axis=1)
    return grads, np.abs(det) / 6.0


def conductivity_tensors(fibres: np.ndarray, sigma_l: np.ndarray | float, sigma_t: np.ndarray | float,
                         sigma_n: np.ndarray | float | None = None,
                         sheets: np.ndarray | None = None) -> np.ndarray:
    """Per-element conductivity tensors [S/m].

    ``σ = σt I + (σl − σt) f fᵀ``; with a sheet direction s and a distinct
    sheet-normal conductivity σn, ``+ (σn − σt) n nᵀ`` with n = f × s
    (orthotropic: σl along f, σt along s, σn along n).

    Parameters
    ----------
    fibres
        ``(m, 3)`` unit fibre directions.
    sigma_l, sigma_t, sigma_n
        Scalars or ``(m,)`` arrays [S/m]; ``sigma_n`` defaults to ``sigma_t``.
    sheets
        ``(m, 3)`` unit sheet directions, needed only when σn differs from σt.

    Returns
    -------
    numpy.ndarray
        ``(m, 3, 3)`` symmetric tensors.
    """
    m = len(fibres)
    sl = np.broadcast_to(np.asarray(sigma_l, dtype=np.float64), (m,))
    st = np.broadcast_to(np.asarray(sigma_t, dtype=np.float64), (m,))
    f = fibres / np.linalg.norm(fibres, axis=1, keepdims=True)
    tensor = st[:, None, None] * np.eye(3)[None] + (sl - st)[:, None, None] * np.einsum("mi,mj->mij", f, f)
    if sigma_n is not None:
        sn = np.broadcast_to(np.asarray(sigma_n, dtype=np.float64), (m,))
        if np.any(sn != st):
            if sheets is None:
                raise MeshError("a sheet-normal conductivity sigma_n different from sigma_t needs "
                                "sheet directions in the mesh")
            n = np.cross(f, sheets)
            n /= np.linalg.norm(n, axis=1, keepdims=True)
            tensor += (sn - st)[:, None, None] * np.einsum("mi,mj->mij", n, n)
    return tensor


def _scatter(tets: np.ndarray, local: np.ndarray, n: int) -> sp.csr_matrix:
    rows = np.repeat(tets, 4, axis=1).ravel()
    cols = np.tile(tets, (1, 4)).ravel()
    mat = sp.coo_matrix((local.ravel(), (rows, cols)), shape=(n, n)).tocsr()
    mat.sum_duplicates()
    mat.sort_indices()
    return mat


def stiffness_matrix(points: np.ndarray, tets: np.ndarray, sigma: np.ndarray) -> sp.csr_matrix:
    """Assemble K_ij = ∫ ∇φ_i · σ ∇φ_j dx.

    Parameters
    ----------
    points, tets
        The mesh ([mm]).
    sigma
        ``(m, 3, 3)`` element tensors or ``(m,)`` isotropic values [S/m].

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(n, n)`` symmetric positive semi-definite matrix [mS] (S/m · mm).
    """
    grads, vol = p1_gradients(points, tets)
    if sigma.ndim == 1:
        local = np.einsum("m,mik,mjk->mij", vol * sigma, grads, grads)
    else:
        local = np.einsum("m,mik,mkl,mjl->mij", vol, grads, sigma, grads)
    return _scatter(tets, local, len(points))


def mass_matrix(points: np.ndarray, tets: np.ndarray) -> sp.csr_matrix:
    """Consistent mass matrix M_ij = ∫ φ_i φ_j dx [mm³]."""
    _, vol = p1_gradients(points, tets)
    pattern = (np.ones((4, 4)) + np.eye(4)) / 20.0
    local = vol[:, None, None] * pattern[None]
    return _scatter(tets, local, len(points))


def lumped_mass(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Row-sum lumped mass: a quarter of each incident element's volume per node [mm³]."""
    _, vol = p1_gradients(points, tets)
    return np.bincount(tets.ravel(), weights=np.repeat(vol / 4.0, 4), minlength=len(points))
