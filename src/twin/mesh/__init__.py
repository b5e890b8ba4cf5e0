"""Tetrahedral meshes: data model, checks, readers/writers and generators."""

from .generate import box_mesh
from .io import read_mesh, write_carp, write_mesh
from .tetmesh import TetMesh, mesh_hash

__all__ = ["TetMesh", "read_mesh", "write_carp", "write_mesh", "box_mesh", "mesh_hash"]
