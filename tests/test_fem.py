"""P1 assembly: kernels, patch tests, eigenvalues against the analytic ones."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse.linalg as spla

from twin.errors import MeshError
from twin.fem import conductivity_tensors, lumped_mass, mass_matrix, p1_gradients, stiffness_matrix
from twin.mesh import box_mesh


@pytest.fixture(scope="module")
def box():
    return box_mesh((2.0, 1.0, 1.0), 0.25)


def test_gradients_sum_to_zero_and_reproduce_linear_fields(box):
    grads, vol = p1_gradients(box.points, box.tets)
    assert np.allclose(grads.sum(axis=1), 0.0, atol=1e-12)
    a = np.array([0.3, -1.2, 2.0])
    u = box.points @ a + 4.0
    g = np.einsum("mi,mik->mk", u[box.tets], grads)
    assert np.allclose(g, a[None, :], atol=1e-12)
    assert np.isclose(vol.sum(), 2.0)


def test_constant_in_kernel_and_symmetric(box):
    sigma = conductivity_tensors(box.fibres, 0.17, 0.019)
    k = stiffness_matrix(box.points, box.tets, sigma)
    assert abs(k - k.T).max() < 1e-14
    assert np.abs(k @ np.ones(box.n_points)).max() < 1e-12
    eig = np.linalg.eigvalsh(k.toarray())
    assert eig.min() > -1e-12  # positive semi-definite


def test_linear_field_patch_test(box):
    """Interior rows of K u vanish for linear u; Dirichlet patch reproduces u exactly."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=3)
    sigma = conductivity_tensors(np.tile(f / np.linalg.norm(f), (box.n_tets, 1)), 0.3, 0.05)
    k = stiffness_matrix(box.points, box.tets, sigma).tocsr()
    u = box.points @ np.array([1.0, -2.0, 0.5]) + 3.0
    lo, hi = box.points.min(0), box.points.max(0)
    boundary = np.any(np.isclose(box.points, lo) | np.isclose(box.points, hi), axis=1)
    ku = k @ u
    assert np.abs(ku[~boundary]).max() < 1e-12
    assert abs(ku.sum()) < 1e-12  # total flux of a constant gradient through a closed surface
    inner = np.flatnonzero(~boundary)
    outer = np.flatnonzero(boundary)
    rhs = -k[inner][:, outer] @ u[outer]
    u_in = spla.spsolve(k[inner][:, inner].tocsc(), rhs)
    assert np.abs(u_in - u[inner]).max() < 1e-10


def test_mass_matrices(box):
    m = mass_matrix(box.points, box.tets)
    ml = lumped_mass(box.points, box.tets)
    assert np.isclose(m.sum(), 2.0) and np.isclose(ml.sum(), 2.0)
    assert np.allclose(np.asarray(m.sum(axis=1)).ravel(), ml)
    x = box.points[:, 0]
    assert np.isclose(x @ (m @ x), 8.0 / 3.0)  # ∫ x² over [0,2]×[0,1]² exactly


def test_anisotropic_tensor():
    f = np.array([[1.0, 1.0, 0.0]]) / np.sqrt(2)
    t = conductivity_tensors(f, 2.0, 0.5)[0]
    assert np.allclose(t @ f[0], 2.0 * f[0])
    perp = np.array([1.0, -1.0, 0.0]) / np.sqrt(2)
    assert np.allclose(t @ perp, 0.5 * perp)
    s = np.array([[0.0, 0.0, 1.0]])
    t3 = conductivity_tensors(f, 2.0, 0.5, 0.1, s)[0]
    assert np.allclose(np.sort(np.linalg.eigvalsh(t3)), [0.1, 0.5, 2.0])
    assert np.allclose(t3 @ s[0], 0.5 * s[0])
    with pytest.raises(MeshError, match="sheet"):
        conductivity_tensors(f, 2.0, 0.5, 0.1, None)


def test_laplacian_eigenvalues_converge_to_analytic():
    """Neumann eigenvalues of the box: π²(i²/Lx² + j²/Ly² + k²/Lz²), error O(h²)."""
    lx, ly, lz = 2.0, 1.0, 1.0
    exact = sorted(np.pi ** 2 * (i * i / lx**2 + j * j / ly**2 + k * k / lz**2)
                   for i in range(4) for j in range(3) for k in range(3))[1:6]
    errors = []
    for h in (0.25, 0.125):
        mesh = box_mesh((lx, ly, lz), h)
        sigma = np.ones(mesh.n_tets)
        k = stiffness_matrix(mesh.points, mesh.tets, sigma).toarray()
        m = mass_matrix(mesh.points, mesh.tets).toarray()
        ev = sla.eigh(k, m, eigvals_only=True, subset_by_index=[1, 5])
        errors.append(np.max(np.abs(ev - exact) / exact))
    assert errors[1] < 0.03
    order = np.log2(errors[0] / errors[1])
    assert order > 1.7, f"observed eigenvalue order {order:.2f}"
