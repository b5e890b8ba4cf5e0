"""Case files: YAML -> validated, unit-resolved, frozen objects.

A case file describes one scenario: mesh, tissue, reaction model, stimuli,
solver and outputs.  Every error names the file, the line and the key, says
what was expected and, for misspelt keys, what was probably meant.

Parsing happens in three stages, each with its own job:

1. :func:`_compose` reads YAML into plain Python objects and records the line
   of every key (so later stages can point at it);
2. :func:`_check_keys` walks the data against the schema and rejects unknown
   keys with a "did you mean" hint (pydantic would only say "extra input");
3. pydantic validates types, units and ranges; cross-field consistency is
   checked by the models' validators and by :func:`_check_semantics`.
"""

from __future__ import annotations

import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import CaseError, ModelError
from .units import UnitError, dimension_of, parse_quantity

Key = tuple[Any, ...]


# --------------------------------------------------------------------------- quantities
def _quantity(kind: str):
    def convert(value: Any) -> Any:
        try:
            return parse_quantity(value, kind)
        except UnitError as exc:
            raise ValueError(str(exc)) from None

    return BeforeValidator(convert)


Length = Annotated[float, _quantity("length")]
Time = Annotated[float, _quantity("time")]
Potential = Annotated[float, _quantity("potential")]
Conductivity = Annotated[float, _quantity("conductivity")]
Capacitance = Annotated[float, _quantity("capacitance")]
SurfaceToVolume = Annotated[float, _quantity("surface_to_volume")]
Vector3 = tuple[Length, Length, Length]
Direction = tuple[float, float, float]


def _strength(value: Any) -> Any:
    """Stimulus strength: volumetric [µA/mm³], per area [µA/mm²] or per capacitance [A/F]."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"kind": "current_density", "value": float(value)}
    if isinstance(value, dict):
        return value
    try:
        kind, magnitude = dimension_of(value, ("current_density", "current_per_area",
                                               "current_per_capacitance"))
    except UnitError as exc:
        raise ValueError(str(exc)) from None
    return {"kind": kind, "value": magnitude}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Strength(_Strict):
    kind: Literal["current_density", "current_per_area", "current_per_capacitance"]
    value: float


# --------------------------------------------------------------------------- sections
MESH_UNITS = ("auto", "um", "mm", "cm", "m")
MESH_GENERATORS = ("box", "lv", "biv")


class MeshSpec(_Strict):
    """``mesh:`` either a ``file`` or a ``generator`` with its parameters.

    ``box`` takes ``size`` and ``spacing``; ``lv`` (truncated ellipsoid) and ``biv``
    (biventricle) take ``resolution`` and optional ``geometry`` keys (radii [mm]...; see
    ``twin mesh generate --help``).
    """

    file: str | None = None
    unit: Literal["auto", "um", "mm", "cm", "m"] = "auto"
    fibres: str | None = Field(None, description="name of the fibre array in the file")
    regions: str | None = Field(None, description="name of the region-tag array in the file")
    generator: str | None = None
    size: Vector3 | None = None
    spacing: Length | None = None
    resolution: Length | None = None
    geometry: dict[str, float | list[float] | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> "MeshSpec":
        if (self.file is None) == (self.generator is None):
            raise ValueError("give exactly one of 'file' (a mesh file) or 'generator' (box, lv or biv)")
        if self.generator is None:
            if any(v is not None for v in (self.size, self.spacing, self.resolution)) or self.geometry:
                raise ValueError("'size', 'spacing', 'resolution' and 'geometry' belong to a generator, "
                                 "not to a mesh file")
            return self
        if self.generator not in MESH_GENERATORS:
            raise ValueError(_unknown("generator", self.generator, MESH_GENERATORS))
        if self.generator == "box":
            if self.size is None or self.spacing is None:
                raise ValueError("the 'box' generator needs 'size' [mm] (3 numbers) and 'spacing' [mm]")
            if min(self.size) <= 0 or self.spacing <= 0:
                raise ValueError(f"box size and spacing must be > 0, got size={list(self.size)}, "
                                 f"spacing={self.spacing}")
            if self.spacing > min(self.size):
                raise ValueError(f"spacing {self.spacing} mm is larger than the smallest box side "
                                 f"{min(self.size)} mm")
            if self.resolution is not None or self.geometry:
                raise ValueError("the 'box' generator takes 'size' and 'spacing', not 'resolution'/'geometry'")
        else:
            if self.resolution is None or self.resolution <= 0:
                raise ValueError(f"the '{self.generator}' generator needs 'resolution' > 0 [mm] (element size)")
            if self.size is not None or self.spacing is not None:
                raise ValueError(f"the '{self.generator}' generator takes 'resolution' and 'geometry', "
                                 "not 'size'/'spacing'")
            from .mesh.anatomy import geometry_keys

            allowed = geometry_keys(self.generator)
            for key in self.geometry:
                if key not in allowed:
                    raise ValueError(_unknown(f"geometry key of the '{self.generator}' generator", key, allowed))
        return self


class FibreSpec(_Strict):
    """``tissue.fibres:`` where fibre directions come from.

    ``auto``: the mesh's own fibres, else rule-based (``ldrb``) on a mesh with endo/epi/base
    surfaces; ``mesh``: the mesh's fibres; ``uniform``: ``direction`` everywhere; ``ldrb``:
    the Laplace–Dirichlet rule-based method (Bayer et al. 2012) with helix angles
    ``alpha_*`` and transverse angles ``beta_*`` [degrees] from endocardium to epicardium.
    """

    source: Literal["auto", "mesh", "uniform", "ldrb"] = "auto"
    direction: Direction = (1.0, 0.0, 0.0)
    alpha_endo: float = Field(60.0, ge=-90, le=90)
    alpha_epi: float = Field(-60.0, ge=-90, le=90)
    beta_endo: float = Field(0.0, ge=-90, le=90)
    beta_epi: float = Field(0.0, ge=-90, le=90)
    alpha_septum: float | None = Field(None, ge=-90, le=90)
    beta_septum: float | None = Field(None, ge=-90, le=90)
    alpha_endo_rv: float | None = Field(None, ge=-90, le=90)
    alpha_epi_rv: float | None = Field(None, ge=-90, le=90)

    @model_validator(mode="after")
    def _nonzero(self) -> "FibreSpec":
        if math.hypot(*self.direction) == 0.0:
            raise ValueError("fibre direction must not be the zero vector")
        return self

    def ldrb_options(self) -> dict[str, float]:
        """Keyword arguments of :func:`twin.mesh.fibres.ldrb`."""
        keys = ("alpha_endo", "alpha_epi", "beta_endo", "beta_epi", "alpha_septum", "beta_septum",
                "alpha_endo_rv", "alpha_epi_rv")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class ConductivityOverride(_Strict):
    sigma_l: Conductivity | None = Field(None, ge=0)
    sigma_t: Conductivity | None = Field(None, ge=0)
    sigma_n: Conductivity | None = Field(None, ge=0)


class TissueSpec(_Strict):
    """``tissue:`` monodomain conductivities [S/m], χ [1/mm], Cm [µF/mm²]."""

    sigma_l: Conductivity = Field(0.17, gt=0)
    sigma_t: Conductivity = Field(0.019, gt=0)
    sigma_n: Conductivity | None = Field(None, gt=0)
    chi: SurfaceToVolume = Field(140.0, gt=0)
    cm: Capacitance = Field(0.01, gt=0)
    fibres: FibreSpec = FibreSpec()
    regions: dict[int, ConductivityOverride] = Field(default_factory=dict)


ParamValue = float | str


class ModelRegion(_Strict):
    parameters: dict[str, ParamValue] = Field(default_factory=dict)


class ModelSpec(_Strict):
    """``model:`` reaction model name, parameter overrides, per-region overrides."""

    name: str = "mitchell_schaeffer"
    parameters: dict[str, ParamValue] = Field(default_factory=dict)
    regions: dict[int, ModelRegion] = Field(default_factory=dict)


class BoxRegion(_Strict):
    min: Vector3
    max: Vector3

    @model_validator(mode="after")
    def _ordered(self) -> "BoxRegion":
        if any(a > b for a, b in zip(self.min, self.max)):
            raise ValueError(f"box min {list(self.min)} must be <= max {list(self.max)} on every axis")
        return self


class SphereRegion(_Strict):
    center: Vector3
    radius: Length = Field(gt=0)


class CylinderRegion(_Strict):
    start: Vector3
    end: Vector3
    radius: Length = Field(gt=0)


class SurfaceRegion(_Strict):
    """Within ``[min, max]`` mm of the named surface (e.g. ``endo``)."""

    name: str
    min: Length = Field(0.0, ge=0)
    max: Length = Field(gt=0)


class TransmuralRegion(_Strict):
    """Transmural depth in ``[min, max]``: 0 at the endocardium, 1 at the epicardium."""

    min: float = Field(0.0, ge=0, le=1)
    max: float = Field(1.0, ge=0, le=1)


class FieldRegion(_Strict):
    """A threshold on a scalar array of the mesh (point or cell data)."""

    name: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> "FieldRegion":
        if self.min is None and self.max is None:
            raise ValueError("a field threshold needs 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"field threshold min {self.min} is above max {self.max}")
        return self


class LesionRegion(_Strict):
    """An ablation lesion at a point: a cylinder of ``radius`` reaching ``depth`` into the wall.

    The axis is ``direction`` when given, else the inward normal of the nearest mesh
    surface (``surface_*`` node masks); a mesh without surfaces gets a sphere of ``radius``.
    """

    at: Vector3
    radius: Length = Field(gt=0)
    depth: Length = Field(gt=0)
    direction: Direction | None = None


SELECTORS = ("box", "sphere", "cylinder", "tag", "nodes", "surface", "transmural", "field", "lesion")


class RegionSpec(_Strict):
    """A part of the mesh: exactly one selector (see :mod:`twin.mesh.regions`)."""

    box: BoxRegion | None = None
    sphere: SphereRegion | None = None
    cylinder: CylinderRegion | None = None
    tag: int | list[int] | None = None
    nodes: list[Annotated[int, Field(ge=0)]] | None = None
    surface: SurfaceRegion | None = None
    transmural: TransmuralRegion | None = None
    field: FieldRegion | None = None
    lesion: LesionRegion | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "RegionSpec":
        given = [k for k in SELECTORS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a region needs exactly one of {', '.join(SELECTORS)}"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


def _conductivity_or_factor(value: Any) -> Any:
    """``"x0.5"`` (a factor of the value underneath) or a conductivity quantity [S/m]."""
    if isinstance(value, str) and value.strip()[:1] in ("x", "*", "×"):
        try:
            return ("factor", float(value.strip()[1:]))
        except ValueError:
            raise ValueError(f"expected a factor like 'x0.5' or a conductivity like '0.05 S/m', "
                             f"got {value!r}") from None
    try:
        return ("value", parse_quantity(value, "conductivity"))
    except UnitError as exc:
        raise ValueError(str(exc)) from None


ConductivityChange = Annotated[tuple[Literal["factor", "value"], Annotated[float, Field(ge=0)]],
                               BeforeValidator(_conductivity_or_factor)]


class RegionTissue(_Strict):
    sigma_l: ConductivityChange | None = None
    sigma_t: ConductivityChange | None = None
    sigma_n: ConductivityChange | None = None


class FibrosisSpec(_Strict):
    """Diffuse fibrosis: this fraction of the region's elements, drawn with ``seed``, conducts nothing."""

    density: float = Field(gt=0, lt=1)
    seed: int = Field(0, ge=0)


class NamedRegion(_Strict):
    """``regions:`` entry: a part of the mesh and what is different there.

    Applied in the order given (a later region overrides an earlier one), after the
    mesh-tag overrides of ``tissue.regions`` and ``model.regions``.
    """

    name: str
    where: RegionSpec
    dense_scar: bool = False
    tissue: RegionTissue = RegionTissue()
    parameters: dict[str, ParamValue] = Field(default_factory=dict)
    fibrosis: FibrosisSpec | None = None

    @model_validator(mode="after")
    def _something(self) -> "NamedRegion":
        changes = (self.dense_scar or self.fibrosis is not None or bool(self.parameters)
                   or any(v is not None for v in (self.tissue.sigma_l, self.tissue.sigma_t, self.tissue.sigma_n)))
        if not changes:
            raise ValueError("a region must change something: dense_scar, tissue, parameters or fibrosis")
        if self.dense_scar and (self.parameters or self.fibrosis is not None):
            raise ValueError("a dense scar neither conducts nor excites: parameters and fibrosis "
                             "make no sense there")
        return self


class StimulusSpec(_Strict):
    """One stimulus protocol: ``count`` pulses every ``period`` from ``start``."""

    name: str | None = None
    region: RegionSpec
    strength: Annotated[Strength, BeforeValidator(_strength)]
    start: Time = Field(0.0, ge=0)
    duration: Time = Field(2.0, gt=0)
    period: Time = Field(0.0, ge=0)
    count: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _train(self) -> "StimulusSpec":
        if self.count > 1:
            if self.period <= 0:
                raise ValueError(f"count = {self.count} pulses needs a period > 0")
            if self.period < self.duration:
                raise ValueError(f"period {self.period} ms is shorter than the pulse duration "
                                 f"{self.duration} ms")
        return self


class LookupSpec(_Strict):
    """``solver.lookup_table:`` tabulated voltage-dependent rates (see :mod:`twin.models.lookup`)."""

    enabled: bool = True
    v_min: Potential = -120.0
    v_max: Potential = 80.0
    dv: Potential = Field(0.02, gt=0, le=1.0)
    #: the vectorised tissue kernel (``false``: node at a time, same tables)
    simd: bool = True

    @model_validator(mode="after")
    def _range(self) -> "LookupSpec":
        if self.v_max <= self.v_min:
            raise ValueError(f"v_max = {self.v_max} mV must be above v_min = {self.v_min} mV")
        if (self.v_max - self.v_min) / self.dv > 2e6:
            raise ValueError(f"{(self.v_max - self.v_min) / self.dv:.3g} table rows: raise dv or narrow the range")
        return self


class SolverSpec(_Strict):
    """``solver:`` time stepping and the linear solver."""

    dt: Time = Field(0.02, gt=0)
    end_time: Time = Field(100.0, gt=0)
    theta: float = Field(0.5, ge=0, le=1)
    splitting: Literal["godunov", "strang"] = "godunov"
    diffusion: Literal["implicit", "explicit"] = "implicit"
    mass: Literal["lumped", "consistent"] | None = None
    tolerance: float = Field(1e-8, gt=0, lt=1)
    max_iterations: int = Field(1000, ge=1)
    reaction_substeps: int = Field(1, ge=1)
    lookup_table: LookupSpec = LookupSpec()

    @field_validator("lookup_table", mode="before")
    @classmethod
    def _lookup_switch(cls, value: Any) -> Any:
        # ``lookup_table: false`` is the short way to turn the tables off
        return {"enabled": value} if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _consistent(self) -> "SolverSpec":
        if self.dt > self.end_time:
            raise ValueError(f"dt = {self.dt} ms is larger than end_time = {self.end_time} ms")
        if self.diffusion == "explicit" and self.mass == "consistent":
            raise ValueError("explicit diffusion needs mass: lumped (a consistent mass matrix "
                             "would need a linear solve anyway; use diffusion: implicit)")
        return self

    @property
    def resolved_mass(self) -> str:
        """Mass matrix actually used: explicit needs lumped; implicit defaults to consistent."""
        if self.mass is not None:
            return self.mass
        return "lumped" if self.diffusion == "explicit" else "consistent"


class ActivationSpec(_Strict):
    threshold: Potential | None = None


class RepolarisationSpec(_Strict):
    """Repolarisation map: APD at ``apd_percent`` % repolarisation per node and beat, or at a fixed level."""

    apd_percent: float | None = Field(90.0, gt=0, lt=100)
    threshold: Potential | None = None


class ECGSpec(_Strict):
    """Pseudo-ECG: electrodes (``standard`` 12-lead placement around the mesh, or named points)."""

    electrodes: Literal["standard"] | dict[str, Vector3] = "standard"
    sigma_bath: Conductivity = Field(0.2, gt=0)
    lead: str | None = Field(None, description="lead for QRS and QT (default II, else the first)")


class ReentrySpec(_Strict):
    """Reentry detection: activity lasting ``min_duration`` after the end of the last stimulus."""

    min_duration: Time = Field(300.0, gt=0)


class OutputSpec(_Strict):
    """``outputs:`` folder, time series, derived maps, probes and checkpoints."""

    folder: str | None = None
    fields: list[str] = Field(default_factory=lambda: ["Vm"])
    interval: Time = Field(1.0, ge=0)
    maps: list[Literal["activation", "repolarisation"]] = Field(default_factory=lambda: ["activation"])
    activation: ActivationSpec = ActivationSpec()
    repolarisation: RepolarisationSpec = RepolarisationSpec()
    ecg: ECGSpec | None = None
    reentry: ReentrySpec | None = None
    probes: dict[str, Vector3] = Field(default_factory=dict)
    checkpoint_interval: Time = Field(0.0, ge=0)


Concentration = Annotated[float, _quantity("concentration")]


class AblationSpec(_Strict):
    """One lesion set: a point (``at``), a line of points (``points``, ``spacing``) or a region (``where``)."""

    name: str | None = None
    at: Vector3 | None = None
    points: list[Vector3] | None = Field(None, min_length=2)
    spacing: Length | None = Field(None, gt=0)
    radius: Length = Field(2.5, gt=0)
    depth: Length = Field(10.0, gt=0)
    direction: Direction | None = None
    where: RegionSpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "AblationSpec":
        given = [k for k in ("at", "points", "where") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a lesion needs exactly one of 'at' (a point), 'points' (a line) or 'where' (a region)"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class IC50Spec(_Strict):
    ic50: Concentration = Field(gt=0)
    hill: float = Field(1.0, gt=0)


class DrugSpec(_Strict):
    """A drug: a named entry of the drug table and/or explicit block, at a concentration."""

    name: str | None = None
    concentration: Concentration | None = Field(None, ge=0)
    block: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    ic50: dict[str, IC50Spec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> "DrugSpec":
        if self.name is None and not self.block and not self.ic50:
            raise ValueError("a drug needs a 'name' from the drug table, 'ic50' values or a 'block'")
        if (self.name is not None or self.ic50) and self.concentration is None:
            raise ValueError("a drug given by name or IC50 needs a 'concentration' (e.g. '10 nM')")
        return self


class ArmSpec(_Strict):
    """A treatment arm: the base case with changes (any key, lesions, a drug, regions)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    set: dict[str, Any] = Field(default_factory=dict)
    ablation: list[AblationSpec] = Field(default_factory=list)
    drug: DrugSpec | None = None
    regions: list[NamedRegion] = Field(default_factory=list)


class CouplingSpec(_Strict):
    start: Time = Field(350.0, gt=0)
    step: Time = Field(20.0, gt=0)
    min: Time = Field(150.0, gt=0)


class S1Spec(_Strict):
    bcl: Time = Field(600.0, gt=0)
    count: int = Field(4, ge=1)


class InducibilitySpec(_Strict):
    """Programmed electrical stimulation: from each site, an S1 train then extrastimuli S2… with
    shortening coupling intervals until loss of capture; inducible when activity outlasts the
    last stimulus by ``observe``."""

    sites: dict[str, Vector3] = Field(min_length=1)
    radius: Length = Field(1.5, gt=0)
    strength: Annotated[Strength, BeforeValidator(_strength)] = Field(
        default_factory=lambda: Strength(kind="current_density", value=50.0))
    duration: Time = Field(2.0, gt=0)
    s1: S1Spec = S1Spec()
    extrastimuli: int = Field(2, ge=1, le=3)
    coupling: CouplingSpec = CouplingSpec()
    observe: Time = Field(500.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "InducibilitySpec":
        if self.coupling.min > self.coupling.start:
            raise ValueError(f"coupling min {self.coupling.min} ms is above its start {self.coupling.start} ms")
        return self


class PrepaceSpec(_Strict):
    """Single-cell pre-pacing of every parameter set before the tissue run (0 beats = off)."""

    beats: int = Field(0, ge=0)
    bcl: Time = Field(1000.0, gt=0)


class CaseSpec(_Strict):
    """The whole case file."""

    name: str = "case"
    description: str = ""
    mesh: MeshSpec
    tissue: TissueSpec = TissueSpec()
    model: ModelSpec = ModelSpec()
    regions: list[NamedRegion] = Field(default_factory=list)
    stimuli: list[StimulusSpec] = Field(min_length=1)
    solver: SolverSpec = SolverSpec()
    outputs: OutputSpec = OutputSpec()
    prepace: PrepaceSpec = PrepaceSpec()
    inducibility: InducibilitySpec | None = None
    arms: list[ArmSpec] = Field(default_factory=list)


# --------------------------------------------------------------------------- the Case object
@dataclass(frozen=True)
class Case:
    """A validated case with the provenance needed for good error messages.

    Attributes
    ----------
    spec
        The validated, unit-resolved case.
    source
        The case file's name as given by the user.
    base_dir
        Folder the relative paths in the case are resolved against.
    lines
        Key path -> (source, line) for every key seen in the YAML and ``--set``.
    raw
        The merged YAML data before validation (after ``--set``).
    """

    spec: CaseSpec
    source: str
    base_dir: Path
    lines: dict[Key, tuple[str, int]] = field(repr=False, default_factory=dict)
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def error(self, key: Key | str, message: str) -> CaseError:
        """Build a :class:`CaseError` pointing at ``key`` (a tuple path or dotted string)."""
        path = _split_key(key) if isinstance(key, str) else tuple(key)
        source, line = _locate(self.lines, path, self.source)
        return CaseError(message, source=source, line=line, key=_dotted(path))

    def mesh_path(self) -> Path | None:
        """Absolute path of the mesh file, relative paths taken from the case file's folder."""
        if self.spec.mesh.file is None:
            return None
        p = Path(self.spec.mesh.file).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def resolved(self) -> dict[str, Any]:
        """The case as plain JSON-able data in canonical units (for provenance)."""
        data = self.spec.model_dump(mode="json")
        data["solver"]["mass"] = self.spec.solver.resolved_mass
        return data


def _split_key(key: str) -> Key:
    return tuple(int(p) if p.lstrip("-").isdigit() else p for p in key.split("."))


def _dotted(path: Key) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) and out and not isinstance(p, bool) else (("." if out else "") + str(p))
    return out


def _locate(lines: dict[Key, tuple[str, int]], path: Key, default: str) -> tuple[str, int | None]:
    for n in range(len(path), -1, -1):
        hit = lines.get(tuple(path[:n]))
        if hit is not None:
            return hit
    return default, None


def _unknown(what: str, name: str, choices: typing.Iterable[str]) -> str:
    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown {what} '{name}'; {hint}expected one of: {', '.join(choices)}"


# --------------------------------------------------------------------------- stage 1: YAML
def _compose(text: str, source: str) -> tuple[Any, dict[Key, tuple[str, int]]]:
    """Parse YAML keeping the line of each key; duplicate keys are errors."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CaseError(f"not valid YAML: {problem}", source=source,
                        line=(mark.line + 1) if mark else None) from None
    lines: dict[Key, tuple[str, int]] = {}
    constructor = yaml.constructor.SafeConstructor()

    def build(node: yaml.Node, path: Key) -> Any:
        lines.setdefault(path, (source, node.start_mark.line + 1))
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise CaseError(f"keys must be names or integers, got {key!r}", source=source,
                                    line=key_node.start_mark.line + 1, key=_dotted(path) or None)
                if key in out:
                    raise CaseError(f"duplicate key '{key}'", source=source,
                                    line=key_node.start_mark.line + 1, key=_dotted(path + (key,)))
                lines[path + (key,)] = (source, key_node.start_mark.line + 1)
                out[key] = build(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(item, path + (i,)) for i, item in enumerate(node.value)]
        try:
            return constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise CaseError(f"cannot read value: {exc}", source=source,
                            line=node.start_mark.line + 1, key=_dotted(path)) from None

    data = build(root, ()) if root is not None else None
    return data, lines


def _apply_override(data: dict[str, Any], lines: dict[Key, tuple[str, int]], text: str) -> None:
    """Apply one ``--set key.path=value`` (value read as YAML) to ``data`` in place."""
    if "=" not in text:
        raise CaseError(f"expected KEY=VALUE, got {text!r}", source="--set")
    key, _, raw_value = text.partition("=")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else None
    except yaml.YAMLError:
        value = raw_value
    set_key(data, lines, key.strip(), value, ("--set", None))


def set_key(data: dict[str, Any], lines: dict[Key, tuple[str, int]], key: str, value: Any,
            where: tuple[str, int | None]) -> None:
    """Set the dotted ``key`` (list items by index) of raw case ``data`` to ``value``, in place.

    ``where`` (source, line) becomes the location errors about this key cite.
    """
    source = where[0]
    path = _split_key(key)
    if not key or any(p == "" for p in path):
        raise CaseError(f"empty key in {key!r}", source=source, line=where[1])
    node: Any = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or not -len(node) <= part < len(node):
                raise CaseError(f"index {part} is out of range (the list has {len(node)} items)",
                                source=source, line=where[1], key=_dotted(path[: i + 1]))
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise CaseError(f"'{_dotted(path[:i])}' is not a section", source=source, line=where[1], key=key)
        if part not in node or node[part] is None:
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or not -len(node) <= last < len(node):
            raise CaseError(f"index {last} is out of range (the list has {len(node)} items)",
                            source=source, line=where[1], key=key)
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise CaseError(f"'{_dotted(path[:-1])}' is not a section", source=source, line=where[1], key=key)
    # every key under the override now comes from where the override was written
    for k in [k for k in lines if k[: len(path)] == path]:
        del lines[k]
    lines[path] = where  # type: ignore[assignment]


# --------------------------------------------------------------------------- stage 2: keys
def _model_class(annotation: Any) -> list[Any]:
    """The pydantic model classes reachable directly from a field annotation."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_class(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [c for a in typing.get_args(annotation) for c in _model_class(a)]
    return []


def _check_keys(data: Any, cls: type[BaseModel], path: Key, lines: dict, source: str) -> None:
    if not isinstance(data, dict) or cls is Strength:
        return  # wrong types are pydantic's job
    fields = cls.model_fields
    for key, value in data.items():
        if key not in fields:
            src, line = _locate(lines, path + (key,), source)
            raise CaseError(_unknown("key", str(key), fields), source=src, line=line,
                            key=_dotted(path + (key,)))
        annotation = fields[key].annotation
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        for sub in _model_class(annotation):
            _check_keys(value, sub, path + (key,), lines, source)
        if origin is list and args and isinstance(value, list):
            for sub in _model_class(args[0]):
                for i, item in enumerate(value):
                    _check_keys(item, sub, path + (key, i), lines, source)
        if origin is dict and len(args) == 2 and isinstance(value, dict):
            for sub in _model_class(args[1]):
                for k, item in value.items():
                    _check_keys(item, sub, path + (key, k), lines, source)


# --------------------------------------------------------------------------- stage 3
def _pydantic_error(exc: ValidationError, lines: dict, source: str) -> CaseError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] not in ("value_error", "assertion_error"):
        got = err.get("input")
        if got is not None and not isinstance(got, dict):
            msg += f" (got {got!r})"
    src, line = _locate(lines, loc, source)
    return CaseError(msg, source=src, line=line, key=_dotted(loc) or None)


def _check_semantics(case: Case) -> None:
    """Cross-section checks that need more than one section, and the model registry."""
    from .models import get_model  # local: case parsing must not import Numba kernels eagerly

    s = case.spec
    solver = s.solver
    n_steps = solver.end_time / solver.dt
    if abs(n_steps - round(n_steps)) > 1e-6 * max(1.0, n_steps):
        raise case.error("solver.end_time", f"end_time = {solver.end_time} ms is not a whole number "
                         f"of time steps dt = {solver.dt} ms")
    out = s.outputs
    for key, value in (("outputs.interval", out.interval),
                       ("outputs.checkpoint_interval", out.checkpoint_interval)):
        if value > 0:
            k = value / solver.dt
            if k < 1 - 1e-9 or abs(k - round(k)) > 1e-6 * k:
                raise case.error(key, f"{value} ms must be a positive multiple of solver.dt = "
                                 f"{solver.dt} ms")
    for i, stim in enumerate(s.stimuli):
        if stim.start >= solver.end_time:
            raise case.error(("stimuli", i, "start"), f"stimulus starts at {stim.start} ms, after the "
                             f"end of the run ({solver.end_time} ms)")
        if stim.duration < solver.dt * (1 - 1e-9):
            raise case.error(("stimuli", i, "duration"), f"pulse of {stim.duration} ms is shorter than "
                             f"solver.dt = {solver.dt} ms and would be missed")
    try:
        model = get_model(s.model.name)
    except Exception as exc:
        raise case.error("model.name", str(exc)) from None
    for key_path, params in [(("model", "parameters"), s.model.parameters)] + [
            (("model", "regions", tag, "parameters"), r.parameters) for tag, r in s.model.regions.items()]:
        for pname, pvalue in params.items():
            if pname not in model.param_names:
                raise case.error(key_path + (pname,), _unknown(f"parameter of model '{model.name}'",
                                                               pname, model.param_names))
            try:
                model.parameter_row({pname: pvalue})
            except ModelError as exc:
                raise case.error(key_path + (pname,), str(exc)) from None
    arm_names: set[str] = set()
    for i, arm in enumerate(s.arms):
        if arm.name in arm_names or arm.name == "base":
            raise case.error(("arms", i, "name"), f"arm name '{arm.name}' is "
                             + ("reserved for the case without changes" if arm.name == "base" else "used twice"))
        arm_names.add(arm.name)
    names_seen: set[str] = set()
    for i, region in enumerate(s.regions):
        if region.name in names_seen:
            raise case.error(("regions", i, "name"), f"region name '{region.name}' is used twice")
        names_seen.add(region.name)
        for pname, pvalue in region.parameters.items():
            if pname not in model.param_names:
                raise case.error(("regions", i, "parameters", pname),
                                 _unknown(f"parameter of model '{model.name}'", pname, model.param_names))
            try:
                model.parameter_row({pname: pvalue})
            except ModelError as exc:
                raise case.error(("regions", i, "parameters", pname), str(exc)) from None
    fields = set(model.state_names) | {"Vm"}
    for i, name in enumerate(out.fields):
        if name not in fields:
            raise case.error(("outputs", "fields", i), _unknown(f"output field of model '{model.name}'",
                                                               name, fields))
    if s.mesh.file is not None:
        path = case.mesh_path()
        assert path is not None
        carp = path.with_suffix(".pts") if path.suffix in ("", ".elem") else None
        if not path.exists() and not (carp is not None and carp.exists()):
            raise case.error("mesh.file", f"mesh file not found: {path}")
    if s.tissue.fibres.source == "mesh" and s.mesh.generator is not None:
        raise case.error("tissue.fibres.source", "a generated mesh has no fibre field; use "
                         "source: uniform with a direction, or ldrb on lv/biv")


def parse_parameter(value: float | str, default: float) -> float:
    """Resolve a parameter override: a number, or a factor ``"x0.5"`` / ``"*0.5"`` of the default."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number or a factor like 'x0.5', got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    if text[:1] in ("x", "*", "×"):
        try:
            return default * float(text[1:])
        except ValueError:
            pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number or a factor like 'x0.5', got {value!r}") from None


def load_case(path: str | Path, overrides: typing.Sequence[str] = ()) -> Case:
    """Read, validate and resolve a case file.

    Parameters
    ----------
    path
        The YAML case file.
    overrides
        ``KEY=VALUE`` strings (dotted keys, YAML values) applied after reading.

    Raises
    ------
    CaseError
        With file, line and key, for anything wrong in the case.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaseError("case file not found", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(f"cannot read the case file: {exc}", source=source) from None
    return case_from_text(text, source=source, base_dir=path.resolve().parent, overrides=overrides)


def case_from_text(text: str, *, source: str = "<case>", base_dir: Path | None = None,
                   overrides: typing.Sequence[str] = ()) -> Case:
    """Validate a case given as YAML text (see :func:`load_case`)."""
    data, lines = _compose(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CaseError("a case file must be a mapping of sections (mesh:, tissue:, ...)",
                        source=source, line=1)
    for item in overrides:
        _apply_override(data, lines, item)
    return case_from_data(data, lines, source=source, base_dir=base_dir)


def case_from_data(data: dict[str, Any], lines: dict[Key, tuple[str, int]], *, source: str = "<case>",
                   base_dir: Path | None = None) -> Case:
    """Validate raw case data (as read from YAML, with line numbers per key in ``lines``)."""
    _check_keys(data, CaseSpec, (), lines, source)
    try:
        spec = CaseSpec.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_error(exc, lines, source) from None
    case = Case(spec=spec, source=source, base_dir=base_dir or Path.cwd(), lines=lines, raw=data)
    _check_semantics(case)
    return case
