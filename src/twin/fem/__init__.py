"""P1 finite elements on tetrahedra: gradients, stiffness and mass, vectorised over elements."""

from .assembly import conductivity_tensors, lumped_mass, mass_matrix, p1_gradients, stiffness_matrix

__all__ = ["p1_gradients", "stiffness_matrix", "mass_matrix", "lumped_mass", "conductivity_tensors"]
