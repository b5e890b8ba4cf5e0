"""Model files (Myokit ``.mmt``) → one Numba kernel over all nodes.

Stages (each timed, see :class:`GeneratedModel.timings`):

1. **load** – Myokit parses and validates the model (units, labels, cycles);
2. **analyse** – find the bindings (membrane potential, stimulus, diffusion
   current), split constants into *parameters* (literals, one column each in
   the region table) and *derived constants*, classify every state as a
   Hodgkin–Huxley gate (Rush–Larsen) or not (forward Euler), and order the
   intermediate variables topologically;
3. **generate** – write Python source for the kernel into the kernel cache,
   named by a hash of the model source and :data:`GENERATOR_VERSION`;
4. **compile** – Numba compiles it once per machine (``cache=True``).

The generated module holds ``node_step`` (one node, one time step: the model's
equations), ``step`` (the tissue kernel of :mod:`twin.models.base`, a ``prange``
over nodes calling ``node_step``) and ``pace`` (a single cell paced in one
compiled loop, for ``twin cell`` and the reference tests; it shares
``node_step`` so it checks exactly the arithmetic the tissue runs).  It adds
the tissue's applied current ``i_stim`` [A/F] to the membrane potential's
derivative by replacing the model's own stimulus variable with ``-i_stim``
(Myokit models write ``dot(V) = -(i_ion + i_stim)``), and sets the diffusion
current to zero (diffusion is the other half of the splitting).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

logger = logging.getLogger(__name__)

#: bump when the generated code changes, so cached kernels are regenerated
GENERATOR_VERSION = "2"

LABEL_VM = "membrane_potential"
LABEL_STIM = "stimulus_current"
BIND_DIFFUSION = "diffusion_current"


def kernel_cache_dir() -> Path:
    """Folder for generated kernel sources and Numba's cache (``$TWIN_CACHE_DIR`` or ~/.cache/twin)."""
    root = os.environ.get("TWIN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "twin")
    path = Path(root) / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class ModelAnalysis:
    """What the generator needs to know about a Myokit model."""

    model: Any
    vm: Any
    stimulus: Any | None
    states: list[Any]
    parameters: list[Any]
    derived: list[Any]            # constants computed from parameters (once per node and step)
    intermediates: list[Any]      # state-dependent variables, in evaluation order
    gates: dict[str, tuple[Any, Any]]  # state qname -> (inf, tau) expressions
    stimulus_amplitude: float | None
    meta: dict[str, str] = field(default_factory=dict)


def load_mmt(path: str | Path) -> tuple[Any, Any]:
    """Parse a ``.mmt`` file; Myokit's parse errors become :class:`ModelError` with line numbers."""
    import myokit

    path = Path(path)
    try:
        model, protocol, _ = myokit.load(str(path))
    except myokit.ParseError as exc:
        raise ModelError(f"{path.name}:{exc.line}: {exc.value}: {exc.desc}") from None
    except myokit.MyokitError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    if model is None:
        raise ModelError(f"{path.name}: no [[model]] section")
    try:
        model.validate()
    except myokit.MyokitError as exc:
        raise ModelError(f"{path.name}: invalid model: {exc}") from None
    return model, protocol


def _deps(var: Any) -> set[Any]:
    return set(var.refs_to(state_refs=False)) | set(var.refs_to(state_refs=True))


def analyse(model: Any, source: str = "model") -> ModelAnalysis:
    """Classify the variables of a Myokit model for code generation (see module docstring)."""
    import myokit.lib.hh as hh

    vm = model.label(LABEL_VM)
    if vm is None or not vm.is_state():
        raise ModelError(f"{source}: no state variable is labelled '{LABEL_VM}' (the diffusing state)")
    if str(model.time_unit()) not in ("[ms]", "None") or (vm.unit() is not None and str(vm.unit()) != "[mV]"):
        raise ModelError(f"{source}: twin needs time in [ms] and the membrane potential in [mV], "
                         f"got {model.time_unit()} and {vm.unit()}")
    stimulus = model.label(LABEL_STIM)
    if stimulus is not None and stimulus.unit() is not None:
        # the tissue hands the kernel a current per capacitance: a stimulus in pA or uA/cm^2
        # would be silently off by the capacitance, so refuse it
        import myokit

        if not myokit.Unit.can_convert(stimulus.unit(), myokit.parse_unit("A/F")):
            raise ModelError(f"{source}: the stimulus current {stimulus.qname()} is in {stimulus.unit()}; "
                             "twin needs a current per capacitance [A/F] (= [uA/uF] = [mV/ms])")
    diffusion = model.binding(BIND_DIFFUSION)
    time_var = model.time()
    pace = model.binding("pace")
    replaced = {v for v in (stimulus, diffusion, pace) if v is not None}
    states = list(model.states())
    everything = list(model.variables(deep=True))
    for v in everything:
        if time_var is not None and time_var in _deps(v) and v not in replaced:
            raise ModelError(f"{source}: variable {v.qname()} depends on time directly; tissue kernels "
                             "need autonomous models (the stimulus comes from the tissue)")
    # only what the states need (the model's own pacing protocol is dropped)
    needed: set[Any] = set()
    todo = [s for s in states]
    while todo:
        v = todo.pop()
        for d in _deps(v):
            if d not in needed and d not in replaced and not d.is_state() and d is not time_var:
                needed.add(d)
                todo.append(d)
    parameters = sorted((v for v in needed if v.is_literal()), key=lambda v: v.qname())
    derived_set = {v for v in needed if v.is_constant() and not v.is_literal()}
    inter_set = needed - set(parameters) - derived_set

    def topo(nodes: set[Any]) -> list[Any]:
        order: list[Any] = []
        mark: dict[Any, int] = {}

        def visit(v: Any) -> None:
            if mark.get(v) == 2:
                return
            if mark.get(v) == 1:
                raise ModelError(f"{source}: cyclic definition through {v.qname()}")
            mark[v] = 1
            for d in sorted(_deps(v), key=lambda x: x.qname()):
                if d in nodes:
                    visit(d)
            mark[v] = 2
            order.append(v)

        for v in sorted(nodes, key=lambda x: x.qname()):
            visit(v)
        return order

    gates: dict[str, tuple[Any, Any]] = {}
    for s in states:
        if s is vm:
            continue
        try:
            if hh.has_inf_tau_form(s, vm):
                inf, tau = hh.get_inf_and_tau(s, vm)
                gates[s.qname()] = (inf.lhs(), tau.lhs())
            elif hh.has_alpha_beta_form(s, vm):
                alpha, beta = hh.get_alpha_and_beta(s, vm)
                gates[s.qname()] = (("ab", alpha.lhs()), ("ab", beta.lhs()))
        except Exception:  # myokit.lib.hh rejects exotic forms: integrate those explicitly
            pass
    amplitude = None
    if stimulus is not None:
        lits = [d for d in _deps(stimulus) if d.is_literal()]
        if len(lits) == 1:
            amplitude = float(lits[0].eval())
    meta = {str(k): str(v) for k, v in model.meta.items()}
    return ModelAnalysis(model=model, vm=vm, stimulus=stimulus, states=states, parameters=parameters,
                         derived=topo(derived_set), intermediates=topo(inter_set), gates=gates,
                         stimulus_amplitude=amplitude, meta=meta)


def _ident(qname: str) -> str:
    return "v_" + re.sub(r"[^0-9a-zA-Z_]", "_", qname.replace(".", "__"))


def generate_source(a: ModelAnalysis, func_name: str = "step") -> str:
    """Python source of the Numba kernel for the analysed model."""
    import myokit
    from myokit.formats.python import PythonExpressionWriter

    writer = PythonExpressionWriter()
    stim, diffusion, pace = a.stimulus, a.model.binding(BIND_DIFFUSION), a.model.binding("pace")

    def lhs_name(lhs: Any) -> str:
        var = lhs.var()
        if isinstance(lhs, myokit.Derivative):
            raise ModelError(f"derivative of {var.qname()} used in an expression: not supported")
        if stim is not None and var is stim:
            return "(-stim)"
        if (diffusion is not None and var is diffusion) or (pace is not None and var is pace):
            return "0.0"
        return _ident(var.qname())

    writer.set_lhs_function(lhs_name)
    ex = writer.ex
    lines = [
        '"""Generated by twin.models.codegen from a model file; do not edit."""',
        "import math",
        "import numpy as np",
        "from numba import njit, prange",
        "",
        "",
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False)",
        "def node_step(states, node, p, stim, dt, n_sub):  # pragma: no cover",
        '    """Advance node ``node`` of ``states`` by ``dt`` in ``n_sub`` sub-steps (params row ``p``)."""',
        "    h_dt = dt / n_sub",
    ]
    ind = " " * 4
    for j, v in enumerate(a.parameters):
        lines.append(f"{ind}{_ident(v.qname())} = p[{j}]")
    for v in a.derived:
        lines.append(f"{ind}{_ident(v.qname())} = {ex(v.rhs())}")
    for k, s in enumerate(a.states):
        lines.append(f"{ind}{_ident(s.qname())} = states[{k}, node]")
    lines.append(f"{ind}for _sub in range(n_sub):")
    ind2 = " " * 8
    for v in a.intermediates:
        lines.append(f"{ind2}{_ident(v.qname())} = {ex(v.rhs())}")
    updates = []
    for s in a.states:
        name = _ident(s.qname())
        gate = a.gates.get(s.qname())
        if gate is None:
            lines.append(f"{ind2}d_{name} = {ex(s.rhs())}")
            updates.append(f"{ind2}{name} = {name} + h_dt * d_{name}")
        elif isinstance(gate[0], tuple):
            alpha, beta = ex(gate[0][1]), ex(gate[1][1])
            lines.append(f"{ind2}ab_{name} = {alpha} + {beta}")
            lines.append(f"{ind2}inf_{name} = ({alpha}) / ab_{name}")
            updates.append(f"{ind2}{name} = inf_{name} + ({name} - inf_{name}) * math.exp(-h_dt * ab_{name})")
        else:
            inf, tau = ex(gate[0]), ex(gate[1])
            lines.append(f"{ind2}inf_{name} = {inf}")
            updates.append(f"{ind2}{name} = inf_{name} + ({name} - inf_{name}) * math.exp(-h_dt / ({tau}))")
    # all derivatives are evaluated at the old state before any state changes
    lines.extend(updates)
    for k, s in enumerate(a.states):
        lines.append(f"{ind}states[{k}, node] = {_ident(s.qname())}")
    vm_row = a.states.index(a.vm)
    lines += [
        "",
        "",
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False, parallel=True)",
        f"def {func_name}(states, params, region, i_stim, dt, n_sub):  # pragma: no cover",
        '    """Tissue kernel: every node by one step, nodes split over threads (each owns its column)."""',
        "    for node in prange(states.shape[1]):",
        "        node_step(states, node, params[region[node]], i_stim[node], dt, n_sub)",
        "",
        "",
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False)",
        "def pace(states, p, amplitude, start, duration, bcl, dt, n_steps, n_sub, sample_every, out):  # pragma: no cover",
        '    """Single cell (column 0 of ``states``), paced in one compiled loop; returns the step of a',
        "    non-finite Vm, or -1.  Sampled states go to ``out[:, k // sample_every]``.\"\"\"",
        "    for k in range(n_steps):",
        "        t_mid = (k + 0.5) * dt",
        "        on = t_mid >= start and (t_mid - start) % bcl < duration",
        "        node_step(states, 0, p, amplitude if on else 0.0, dt, n_sub)",
        f"        if not math.isfinite(states[{vm_row}, 0]):",
        "            return k",
        "        if (k + 1) % sample_every == 0:",
        "            out[:, (k + 1) // sample_every] = states[:, 0]",
        "    return -1",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class GeneratedModel:
    """A compiled kernel and what the registry needs to describe it."""

    analysis: ModelAnalysis
    protocol: Any
    kernel: Any
    pace: Any
    source_path: Path
    key: str
    timings: dict[str, float]


def build_kernel(path: str | Path) -> GeneratedModel:
    """Load, analyse and generate the kernel of a ``.mmt`` file (compilation happens at first call).

    The generated module is keyed by a hash of the model file's text and
    :data:`GENERATOR_VERSION`, so Numba's on-disk cache is reused across runs
    and invalidated when either changes.
    """
    path = Path(path)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    text = path.read_text(encoding="utf-8")
    model, protocol = load_mmt(path)
    timings["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    analysis = analyse(model, path.name)
    timings["analyse"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    key = hashlib.sha256((GENERATOR_VERSION + "\0" + text).encode()).hexdigest()[:16]
    stem = re.sub(r"[^0-9a-zA-Z_]", "_", path.stem)
    module_name = f"twin_kernel_{stem}_{key}"
    target = kernel_cache_dir() / f"{module_name}.py"
    if not target.exists():
        source = generate_source(analysis)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(source, encoding="utf-8")
        os.replace(tmp, target)  # atomic: parallel processes never import half a file
    timings["generate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, target)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    timings["import"] = time.perf_counter() - t0
    return GeneratedModel(analysis=analysis, protocol=protocol, kernel=module.step, pace=module.pace, source_path=target, key=key,
                          timings=timings)


def initial_state(a: ModelAnalysis) -> np.ndarray:
    """Initial values of the states, in the kernel's row order."""
    return np.array([float(s.initial_value(as_float=True)) for s in a.states])
