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
from ..mesh.io import UNIT_SCALE, default_unit
from ..mesh.quality import guess_unit, implausible_size
from ..mesh.regions import Selection, describe_bounds, select, select_nodes
from ..models import ReactionModel, get_model
from ..observers.probes import locate_points, probe_table
from .diffusion import DiffusionStepper
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
    diffusion
        The diffusion half of the splitting, built from K [mS] (element conductivity tensors)
        and the mass matrix [mm³] for the case's dt, θ and method.  K and M themselves are not
        kept: the stepper's system matrices hold everything the time loop needs (a run at
        another dt builds another problem).
    stimuli
        Stimulus protocols with node sets and amplitudes [mV/ms].
    probe_names, probe_nodes, probe_weights
        Probe interpolation data.
    activation_threshold
        [mV]
    cell_fields
        Per-element arrays written with every output (region tags, fibres, named
        regions, conductivity), so a clinician sees the substrate next to the result.
    excitable
        ``(n,)`` bool: False for nodes inside dense scar (no stimulus reaches them).
    sigma
        ``(m, 3, 3)`` element conductivity tensors [S/m], kept only when the case asks for a
        pseudo-ECG (which needs them; 390 B per node on a typical tet mesh otherwise wasted).
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
    diffusion: DiffusionStepper
    stimuli: list[StimulusProtocol]
    probe_names: list[str]
    probe_nodes: np.ndarray
    probe_weights: np.ndarray
    activation_threshold: float
    cell_fields: dict[str, np.ndarray] = field(default_factory=dict)
    excitable: np.ndarray | None = None
    sigma: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return self.mesh.n_points


def generate_mesh(generator: str, *, size=None, spacing=None, resolution=None, geometry=None,
                  direction=(1.0, 0.0, 0.0)) -> TetMesh:
    """Build a generated mesh: ``box`` (size, spacing), ``lv`` or ``biv`` (resolution, geometry)."""
    if generator == "box":
        return box_mesh(tuple(size), spacing, fibre=tuple(direction))
    from ..mesh.anatomy import ANATOMY_GENERATORS

    return ANATOMY_GENERATORS[generator](resolution, **dict(geometry or {}))


def load_mesh(case: Case) -> TetMesh:
    """Read or generate the case's mesh, with the fibre field the case asks for."""
    spec = case.spec.mesh
    fibre_spec = case.spec.tissue.fibres
    direction = np.asarray(fibre_spec.direction, dtype=np.float64)
    path = None
    if spec.generator is not None:
        try:
            mesh = generate_mesh(spec.generator, size=spec.size, spacing=spec.spacing, resolution=spec.resolution,
                                 geometry=spec.geometry, direction=direction)
        except MeshError as exc:
            raise case.error("mesh", str(exc)) from None
    else:
        path = case.mesh_path()
        try:
            mesh = read_mesh(path, unit=spec.unit, fibres=spec.fibres, regions=spec.regions)
        except MeshError as exc:
            raise case.error("mesh.file", str(exc)) from None
        why = implausible_size(mesh)
        if why is not None:
            read_as = spec.unit if spec.unit != "auto" else default_unit(path)
            guess, _ = guess_unit(mesh.points / UNIT_SCALE[read_as], mesh.tets)
            raise case.error("mesh.unit", f"the mesh {path.name} read in {read_as} cannot be tissue: {why}; "
                             f"its coordinates look like {guess} (set mesh.unit: {guess})")
    source = fibre_spec.source
    has_surfaces = "surface_epi" in mesh.point_data
    if source == "uniform" and not (spec.generator == "box"):
        mesh.fibres = np.ascontiguousarray(np.tile(direction / np.linalg.norm(direction), (mesh.n_tets, 1)))
        mesh.sheets = None
    elif source == "ldrb" or (source == "auto" and mesh.fibres is None and has_surfaces):
        from ..mesh.fibres import with_ldrb_fibres

        try:
            mesh = with_ldrb_fibres(mesh, **fibre_spec.ldrb_options())
        except MeshError as exc:
            raise case.error("tissue.fibres.source", f"rule-based fibres: {exc}") from None
        logger.info("rule-based fibres: helix %g° (endo) to %g° (epi)", fibre_spec.alpha_endo, fibre_spec.alpha_epi)
    elif mesh.fibres is None:
        name = path.name if path is not None else f"generated {spec.generator}"
        raise case.error("tissue.fibres.source",
                         f"the mesh {name} has no fibre field; name it with mesh.fibres, set "
                         "tissue.fibres.source: uniform with a direction, or ldrb (needs endo/epi/base surfaces)")
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
    selections = _named_regions(case, mesh)
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
    region_index = np.zeros(m, dtype=np.int32)   # 1 + index of the last named region, 0 = none
    scar_elements = np.zeros(m, dtype=bool)
    fibrotic = np.zeros(m, dtype=bool)
    for i, (region, sel) in enumerate(zip(spec.regions, selections)):
        elems = sel.elements
        region_index[elems] = i + 1
        for name, arr in (("sigma_l", sl), ("sigma_t", st), ("sigma_n", sn)):
            change = getattr(region.tissue, name)
            if change is not None:
                kind, value = change
                base = arr[elems]
                if name == "sigma_n":  # an unset σn is σt: a factor scales that
                    base = np.where(np.isnan(base), st[elems], base)
                arr[elems] = base * value if kind == "factor" else value
        if region.fibrosis is not None:
            # each element of the region independently non-conducting with probability `density`
            rng = np.random.default_rng(region.fibrosis.seed)
            hit = np.flatnonzero(elems)[rng.random(int(elems.sum())) < region.fibrosis.density]
            fibrotic[hit] = True
            logger.info("region %s: %d of %d elements fibrotic", region.name, hit.size, int(elems.sum()))
        # a later region overrides an earlier one: a conducting isthmus is cut through a scar
        scar_elements[elems] = region.dense_scar
    sn = np.where(np.isnan(sn), st, sn)
    # Dense scar and fibrotic elements are cut out of the domain (out of the stiffness AND the
    # mass matrix: a consistent mass alone would still couple a node to its neighbours), so
    # their boundaries are insulating. A node with no live element around it is isolated: it
    # keeps a diagonal mass, never changes by diffusion and is never stimulated.
    dead = scar_elements | fibrotic
    for arr in (sl, st, sn):
        arr[dead] = 0.0
    live = np.zeros(mesh.n_points, dtype=bool)
    live[mesh.tets[~dead].ravel()] = True
    assert mesh.fibres is not None
    try:
        sigma = conductivity_tensors(mesh.fibres, sl, st, sn, mesh.sheets)
    except MeshError as exc:
        raise case.error("tissue.sigma_n", str(exc)) from None
    stiffness = stiffness_matrix(mesh.points, mesh.tets, sigma)
    live_tets = mesh.tets[~dead]
    isolated_mass = np.where(live, 0.0, lumped_mass(mesh.points, mesh.tets)) if dead.any() else None
    if spec.solver.resolved_mass == "lumped":
        mass: Any = lumped_mass(mesh.points, live_tets)
        if isolated_mass is not None:
            mass = mass + isolated_mass
    else:
        mass = mass_matrix(mesh.points, live_tets)
        if isolated_mass is not None:
            mass = (mass + sp.diags(isolated_mass)).tocsr()
    timings["assembly"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    solver = spec.solver
    diffusion = DiffusionStepper(stiffness, mass, tissue.chi, tissue.cm, solver.dt, theta=solver.theta,
                                 method=solver.diffusion, tol=solver.tolerance, max_iter=solver.max_iterations)
    del stiffness, mass   # the stepper's A and B replace them
    timings["diffusion_matrices"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = get_model(spec.model.name)
    for tag in spec.model.regions:
        _tag_check(case, ("model", "regions", tag), tag, element_tags)
    params = model.parameter_table(spec.model.parameters,
                                   {t: r.parameters for t, r in spec.model.regions.items()}, tags)
    params, node_region = _region_parameters(model, params, node_region, spec.regions, selections)

    chi_cm = tissue.chi * tissue.cm
    stimuli = []
    for i, s in enumerate(spec.stimuli):
        region = s.region
        if region.nodes is not None and max(region.nodes, default=-1) >= mesh.n_points:
            raise case.error(("stimuli", i, "region", "nodes"),
                             f"node index {max(region.nodes)} is out of range: the mesh has "
                             f"{mesh.n_points} nodes")
        try:
            nodes = select_nodes(mesh.points, mesh.tets, mesh.regions, region, mesh.point_data, mesh.cell_data)
        except MeshError as exc:
            raise case.error(("stimuli", i, "region"), str(exc)) from None
        if nodes.size and not live[nodes].all():
            logger.warning("stimulus %s: %d of its nodes lie inside dense scar and are not stimulated",
                           s.name or f"stimulus{i}", int((~live[nodes]).sum()))
            nodes = nodes[live[nodes]]
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
    cell_fields: dict[str, np.ndarray] = {"region": mesh.regions}
    if mesh.fibres is not None:
        cell_fields["fibres"] = mesh.fibres
    if spec.regions:
        cell_fields["named_region"] = region_index
        cell_fields["sigma_l"] = sl
        cell_fields["dense_scar"] = scar_elements.astype(np.int8)
        cell_fields["fibrotic"] = fibrotic.astype(np.int8)
    timings["model_and_stimuli"] = time.perf_counter() - t0
    return Problem(case=case, mesh=mesh, mesh_hash=mesh_hash(mesh), model=model, tags=tags,
                   node_region=np.ascontiguousarray(node_region, dtype=np.int32), params=params,
                   diffusion=diffusion, stimuli=stimuli, probe_names=names,
                   probe_nodes=probe_nodes, probe_weights=probe_weights,
                   activation_threshold=model.activation_threshold if threshold is None else threshold,
                   cell_fields=cell_fields, excitable=live,
                   sigma=sigma if spec.outputs.ecg is not None else None, timings=timings)


def _named_regions(case: Case, mesh: TetMesh) -> list[Selection]:
    """Select every entry of the case's ``regions:`` on the mesh; an empty one is an error."""
    out = []
    for i, region in enumerate(case.spec.regions):
        try:
            sel = select(mesh.points, mesh.tets, mesh.regions, region.where, mesh.point_data, mesh.cell_data)
        except MeshError as exc:
            raise case.error(("regions", i, "where"), str(exc)) from None
        if not sel.elements.any():
            raise case.error(("regions", i, "where"), f"region '{region.name}' contains no element of the "
                             f"mesh (the mesh spans {describe_bounds(mesh.points)})")
        logger.info("region %s: %d elements, %d nodes", region.name, int(sel.elements.sum()), int(sel.nodes.sum()))
        out.append(sel)
    return out


def _region_parameters(model: Any, params: np.ndarray, node_region: np.ndarray, regions: list,
                       selections: list[Selection]) -> tuple[np.ndarray, np.ndarray]:
    """Add parameter rows for named regions: each (row, region) pair met gets one new row.

    The parameter table stays ``(rows, n_params)`` with a node -> row index (no per-node
    copies); factors apply to the value the node had before the region.
    """
    rows = [r for r in params]
    node_region = node_region.copy()
    for region, sel in zip(regions, selections):
        if not region.parameters:
            continue
        made: dict[int, int] = {}
        hit = np.flatnonzero(sel.nodes)
        for old in np.unique(node_region[hit]):
            rows.append(model.parameter_row(region.parameters, base=rows[int(old)]))
            made[int(old)] = len(rows) - 1
        node_region[hit] = [made[int(r)] for r in node_region[hit]]
    return np.ascontiguousarray(np.array(rows)), np.ascontiguousarray(node_region, dtype=np.int32)


__all__ = ["Problem", "build_problem", "load_mesh", "CaseError"]
