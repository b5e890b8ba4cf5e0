"""From a validated case to a ready-to-run problem: mesh, tissue, FEM matrices, model, stimuli."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..case import Case
from ..errors import CaseError, MeshError
from ..fem import conductivity_tensors, lumped_mass, mass_matrix, stiffness_matrix
from ..mesh import TetMesh, box_mesh, mesh_hash, read_mesh
from ..mesh.regions import describe_bounds, select_nodes
from ..models import ReactionModel, get_model
from ..observers.probes import locate_points, probe_table
from .stimulus import StimulusProtocol

logger = logging.getLogger(__name__)


@dataclass
class Problem:
    """Everything the time loop needs, built once.

    Attributes
    ----------
    case
        The validated case.
    mesh
        The checked mesh [mm] with the fibres actually used.
    mesh_hash
        SHA-256 of the mesh arrays (provenance).
    model
        The reaction model.
    tags
        Sorted region tags; row ``r`` of ``params`` belongs to ``tags[r]``.
    node_region
        ``(n,)`` int32 index into ``tags`` for every node.
    params
        ``(len(tags), n_params)`` parameter table.
    stiffness
        K [mS] with the element conductivity tensors.
    mass
        Consistent mass (sparse) or lumped mass (array) [mm³].
    stimuli
        Stimulus protocols with node sets and amplitudes [mV/ms].
    probe_names, probe_nodes, probe_weights
        Probe interpolation data.
    activation_threshold
        [mV]
    timings
        Seconds spent per setup stage.
    """

    case: Case
    mesh: TetMesh
    mesh_hash: str
    model: ReactionModel
    tags: np.ndarray
    node_region: np.ndarray
    params: np.ndarray
    stiffness: sp.csr_matrix
    mass: Any
    stimuli: list[StimulusProtocol]
    probe_names: list[str]
    probe_nodes: np.ndarray
    probe_weights: np.ndarray
    activation_threshold: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return self.mesh.n_points


def load_mesh(case: Case) -> TetMesh:
    """Read or generate the case's mesh, with the fibre field the case asks for."""
    spec = case.spec.mesh
    fibre_spec = case.spec.tissue.fibres
    direction = np.asarray(fibre_spec.direction, dtype=np.float64)
    if spec.generator is not None:
        assert spec.size is not None and spec.spacing is not None
        try:
            mesh = box_mesh(tuple(spec.size), spec.spacing, fibre=tuple(direction))
        except MeshError as exc:
            raise case.error("mesh", str(exc)) from None
    else:
        path = case.mesh_path()
        try:
            mesh = read_mesh(path, unit=spec.unit, fibres=spec.fibres, regions=spec.regions)
        except MeshError as exc:
            raise case.error("mesh.file", str(exc)) from None
        source = fibre_spec.source
        if source == "uniform":
            mesh.fibres = np.ascontiguousarray(np.tile(direction / np.linalg.norm(direction),
                                                       (mesh.n_tets, 1)))
            mesh.sheets = None
        elif mesh.fibres is None:
            raise case.error("tissue.fibres.source",
                             f"the mesh {path.name} has no fibre field; name it with mesh.fibres or "
                             "set tissue.fibres.source: uniform with a direction")
    return mesh


def _tag_check(case: Case, key: tuple, tag: int, tags: np.ndarray) -> None:
    if tag not in tags:
        raise case.error(key, f"no element has region tag {tag}; tags in the mesh: "
                         f"{', '.join(str(int(t)) for t in tags)}")


def build_problem(case: Case) -> Problem:
    """Build mesh, tissue, FEM matrices, model tables, stimuli and probes for ``case``.

    Raises
    ------
    CaseError
        When the case does not fit the mesh (empty stimulus region, probe outside,
        unknown region tag...).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spec = case.spec
    mesh = load_mesh(case)
    timings["mesh"] = time.perf_counter() - t0
    logger.info("mesh: %d nodes, %d tetrahedra, bounds %s", mesh.n_points, mesh.n_tets,
                describe_bounds(mesh.points))

    t0 = time.perf_counter()
    tags, node_region = mesh.node_regions()
    element_tags = np.unique(mesh.regions)
    tissue = spec.tissue
    m = mesh.n_tets
    sl = np.full(m, tissue.sigma_l)
    st = np.full(m, tissue.sigma_t)
    # σn defaults to σt element by element (also where a region overrides σt only)
    sn = np.full(m, np.nan if tissue.sigma_n is None else tissue.sigma_n)
    for tag, override in tissue.regions.items():
        _tag_check(case, ("tissue", "regions", tag), tag, element_tags)
        sel = mesh.regions == tag
        if override.sigma_l is not None:
            sl[sel] = override.sigma_l
        if override.sigma_t is not None:
            st[sel] = override.sigma_t
        if override.sigma_n is not None:
            sn[sel] = override.sigma_n
    sn = np.where(np.isnan(sn), st, sn)
    assert mesh.fibres is not None
    try:
        sigma = conductivity_tensors(mesh.fibres, sl, st, sn, mesh.sheets)
    except MeshError as exc:
        raise case.error("tissue.sigma_n", str(exc)) from None
    stiffness = stiffness_matrix(mesh.points, mesh.tets, sigma)
    if spec.solver.resolved_mass == "lumped":
        mass: Any = lumped_mass(mesh.points, mesh.tets)
    else:
        mass = mass_matrix(mesh.points, mesh.tets)
    timings["assembly"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = get_model(spec.model.name)
    for tag in spec.model.regions:
        _tag_check(case, ("model", "regions", tag), tag, element_tags)
    params = model.parameter_table(spec.model.parameters,
                                   {t: r.parameters for t, r in spec.model.regions.items()}, tags)

    chi_cm = tissue.chi * tissue.cm
    stimuli = []
    for i, s in enumerate(spec.stimuli):
        region = s.region
        if region.nodes is not None and max(region.nodes, default=-1) >= mesh.n_points:
            raise case.error(("stimuli", i, "region", "nodes"),
                             f"node index {max(region.nodes)} is out of range: the mesh has "
                             f"{mesh.n_points} nodes")
        nodes = select_nodes(mesh.points, mesh.tets, mesh.regions, box=region.box, sphere=region.sphere,
                             tag=region.tag, nodes=region.nodes)
        if nodes.size == 0:
            raise case.error(("stimuli", i, "region"), "the stimulus region contains no node of the mesh "
                             f"(the mesh spans {describe_bounds(mesh.points)})")
        kind, value = s.strength.kind, s.strength.value
        amplitude = {"current_density": value / chi_cm, "current_per_area": value / tissue.cm,
                     "current_per_capacitance": value}[kind]
        stimuli.append(StimulusProtocol(name=s.name or f"stimulus{i}", nodes=nodes, amplitude=amplitude,
                                        start=s.start, duration=s.duration, period=s.period,
                                        count=s.count))
        logger.info("stimulus %s: %d nodes, %.4g A/F", stimuli[-1].name, nodes.size, amplitude)

    names, coords = probe_table(spec.outputs.probes)
    if names:
        probe_nodes, probe_weights, inside = locate_points(mesh.points, mesh.tets, coords)
        if not inside.all():
            bad = names[int(np.flatnonzero(~inside)[0])]
            raise case.error(("outputs", "probes", bad), f"probe point {list(spec.outputs.probes[bad])} "
                             f"lies outside the mesh (which spans {describe_bounds(mesh.points)})")
    else:
        probe_nodes, probe_weights = np.zeros((0, 4), np.int64), np.zeros((0, 4))
    threshold = spec.outputs.activation.threshold
    timings["model_and_stimuli"] = time.perf_counter() - t0
    return Problem(case=case, mesh=mesh, mesh_hash=mesh_hash(mesh), model=model, tags=tags,
                   node_region=np.ascontiguousarray(node_region, dtype=np.int32), params=params,
                   stiffness=stiffness, mass=mass, stimuli=stimuli, probe_names=names,
                   probe_nodes=probe_nodes, probe_weights=probe_weights,
                   activation_threshold=model.activation_threshold if threshold is None else threshold,
                   timings=timings)


__all__ = ["Problem", "build_problem", "load_mesh", "CaseError"]
