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

**Lookup tables** (openCARP's trick, see :mod:`twin.models.lookup`): every
intermediate that is a function of the membrane potential alone (given the
parameters) is *V-only*.  For cardiac models whose V-only part holds enough
transcendental calls to pay, the module also holds ``build_table`` (tabulates,
on a grid of V, the inf value and the Rush–Larsen factor ``exp(-h/tau)`` of
every gate whose rates are V-only, plus every maximal V-only sub-expression
with a function call, division or power used by the rest of the model),
``node_step_lut``/``step_lut``/``pace_lut`` (the same step, reading those
columns by linear interpolation; a node whose V is off the table takes the
exact branch, so nothing is clipped).
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
GENERATOR_VERSION = "10"

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


#: fewest transcendental calls per node and sub-step a lookup table must save to be generated
LUT_MIN_SAVED_CALLS = 5
#: further lookup keys a model file may name (``twin_lookup_keys``) besides V
MAX_LOOKUP_KEYS = 1


def _lookup_keys(a: ModelAnalysis, source: str) -> list[tuple[Any, float, float]]:
    """``twin_lookup_keys: comp.var LO HI; ...`` of the model file: variables to tabulate against."""
    text = a.meta.get("twin_lookup_keys", "").strip()
    keys = []
    for item in filter(None, (x.strip() for x in text.split(";"))):
        parts = item.split()
        try:
            qname, lo, hi = parts[0], float(parts[1]), float(parts[2])
            if len(parts) != 3 or not lo < hi:
                raise ValueError
        except (ValueError, IndexError):
            raise ModelError(f"{source}: twin_lookup_keys entry {item!r} must be 'component.variable LO HI' "
                             "with LO < HI") from None
        try:
            var = a.model.get(qname)
        except Exception:  # noqa: BLE001 - Myokit raises several kinds for a bad name
            raise ModelError(f"{source}: twin_lookup_keys names {qname!r}, which is not a variable") from None
        if var not in a.intermediates:
            raise ModelError(f"{source}: twin_lookup_keys: {qname} must be a state-dependent intermediate "
                             "variable (not a state, constant or unused variable)")
        keys.append((var, lo, hi))
    if len(keys) > MAX_LOOKUP_KEYS:
        raise ModelError(f"{source}: twin_lookup_keys names {len(keys)} variables; at most "
                         f"{MAX_LOOKUP_KEYS} besides V is supported")
    return keys


@dataclass
class KeyPlan:
    """A further lookup table, indexed by a model variable other than V (``twin_lookup_keys``).

    Attributes
    ----------
    var
        The key variable (an intermediate, e.g. ``ik1.V_EK = V - E_K`` for I_K1).
    lo, hi
        The table's range, in the key's unit; a key off it takes the exact branch.
    only
        Intermediates that are functions of the key and constants only (not computed per node).
    hoisted
        Code key -> key-only sub-expression tabulated as one column.
    parameters
        Indices of the parameters this table depends on.
    """

    var: Any
    lo: float
    hi: float
    only: set[Any]
    hoisted: dict[str, Any]
    parameters: list[int]

    @property
    def columns(self) -> list[str]:
        return [e.code() for e in self.hoisted.values()]


@dataclass
class LookupPlan:
    """What a model's lookup table holds (see the module docstring).

    Attributes
    ----------
    vonly
        Intermediates that are functions of V and constants only.
    gates
        Gate state qnames tabulated as two columns each (inf, Rush–Larsen factor).
    hoisted
        Code key -> V-only sub-expression tabulated as one column.
    parameters
        Indices (into ``ModelAnalysis.parameters``) of the parameters the table depends on:
        region rows that agree on these share a table.
    saved_calls
        Transcendental calls per node and sub-step the table replaces.
    keys
        Further tables indexed by other variables (at most :data:`MAX_LOOKUP_KEYS`).
    """

    vonly: set[Any]
    gates: list[str]
    hoisted: dict[str, Any]
    parameters: list[int]
    saved_calls: int
    keys: list[KeyPlan] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Column names in table order: ``inf:<gate>``, ``rl:<gate>``, then the expressions."""
        return ([c for g in self.gates for c in (f"inf:{g}", f"rl:{g}")]
                + [e.code() for e in self.hoisted.values()])


def _transcendentals(e: Any, seen: set[Any] | None = None, through: set[Any] | None = None) -> int:
    """Function calls and non-integer powers in ``e``, following names of the variables in ``through``."""
    import myokit

    seen = set() if seen is None else seen
    n = 0
    if isinstance(e, myokit.Function):
        n += 1
    elif isinstance(e, myokit.Power) and not _small_int_power(e):
        n += 1
    elif isinstance(e, myokit.Name) and through is not None and e.var() in through and e.var() not in seen:
        seen.add(e.var())
        n += _transcendentals(e.var().rhs(), seen, through)
    for child in e:
        n += _transcendentals(child, seen, through)
    return n


def _small_int_power(e: Any) -> int:
    """The exponent of ``x^k`` when k is a literal 2, 3 or 4 (written as multiplications), else 0."""
    import myokit

    k = e[1]
    if isinstance(k, myokit.Number) and float(k.eval()) in (2.0, 3.0, 4.0):
        return int(k.eval())
    return 0


def plan_lookup(a: ModelAnalysis) -> LookupPlan | None:
    """Decide the lookup-table columns of a model, or ``None`` when a table would not pay."""
    import myokit

    vm = a.vm
    const = set(a.parameters) | set(a.derived)
    zero = {v for v in (a.model.binding(BIND_DIFFUSION), a.model.binding("pace")) if v is not None}
    vonly: set[Any] = set()
    for v in a.intermediates:  # topological order: dependencies first
        if all(d is vm or d in const or d in vonly or d in zero for d in _deps(v)):
            vonly.add(v)

    def is_vonly(e: Any) -> bool:
        refs = [r.var() for r in e.references()]
        return (all(r is vm or r in const or r in vonly or r in zero for r in refs)
                and any(r is vm or r in vonly for r in refs))

    def cheap(e: Any) -> bool:
        # exact under linear interpolation, or one multiply-add: not worth a column
        if isinstance(e, myokit.Number):
            return True
        if isinstance(e, myokit.Name):
            return e.var() is vm or e.var() in const or e.var() in zero
        if isinstance(e, (myokit.Plus, myokit.Minus, myokit.Multiply, myokit.PrefixMinus, myokit.PrefixPlus)):
            return all(cheap(c) for c in e)
        return False

    hoisted: dict[str, Any] = {}
    key_specs = _lookup_keys(a, a.model.name())
    key_only: list[set[Any]] = []
    for kvar, _, _ in key_specs:
        if kvar in vonly:
            raise ModelError(f"{a.model.name()}: twin_lookup_keys: {kvar.qname()} depends on V alone; "
                             "the V table covers it already")
        only: set[Any] = set()
        for v in a.intermediates:
            if v is not kvar and v not in vonly and _deps(v) and all(
                    d is kvar or d in const or d in zero or d in only for d in _deps(v)):
                only.add(v)
        key_only.append(only)
    key_hoisted: list[dict[str, Any]] = [{} for _ in key_specs]

    def of_key(e: Any) -> int:
        """Index of the key that ``e`` is a function of (with constants), or -1."""
        refs = [r.var() for r in e.references()]
        for k, (kvar, _, _) in enumerate(key_specs):
            inside = (kvar,) + tuple(key_only[k])
            if all(r in inside or r in const or r in zero for r in refs) and any(r in inside for r in refs):
                return k
        return -1

    def key_cheap(e: Any, k: int) -> bool:
        if isinstance(e, myokit.Number):
            return True
        if isinstance(e, myokit.Name):
            return e.var() is key_specs[k][0] or e.var() in const or e.var() in zero
        if isinstance(e, (myokit.Plus, myokit.Minus, myokit.Multiply, myokit.PrefixMinus, myokit.PrefixPlus)):
            return all(key_cheap(c, k) for c in e)
        return False

    def hoist(e: Any) -> None:
        # a condition is a boolean: never interpolated, but its V-only operands may be
        if not isinstance(e, myokit.Condition):
            if is_vonly(e) and not cheap(e):
                hoisted.setdefault(e.code(), e)
                return
            k = of_key(e)
            if k >= 0 and not key_cheap(e, k):
                key_hoisted[k].setdefault(e.code(), e)
                return
        for child in e:
            hoist(child)

    gates: list[str] = []
    saved = 0
    skipped = set(vonly).union(*key_only) if key_only else set(vonly)
    for v in a.intermediates:
        if v not in skipped:
            hoist(v.rhs())
    for s in a.states:
        gate = a.gates.get(s.qname())
        if gate is None:
            hoist(s.rhs())
            continue
        exprs = [g[1] if isinstance(g, tuple) else g for g in gate]
        if all(is_vonly(e) for e in exprs):
            gates.append(s.qname())
            saved += 1 + sum(_transcendentals(e, set(), vonly) for e in exprs)
        else:
            for e in exprs:
                hoist(e)
    saved += sum(_transcendentals(e, set(), vonly) for e in hoisted.values())
    if saved < LUT_MIN_SAVED_CALLS:
        return None

    def parameters_of(todo: list[Any], through: set[Any]) -> list[int]:
        """Parameters reached from ``todo`` through derived constants and the ``through`` intermediates."""
        params: set[Any] = set()
        seen: set[Any] = set()
        while todo:
            v = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in a.parameters:
                params.add(v)
            elif v in through or v in a.derived:
                todo.extend(_deps(v))
        return sorted(a.parameters.index(v) for v in params)

    todo = [r.var() for e in hoisted.values() for r in e.references()]
    for g in gates:
        todo += [r.var() for ge in a.gates[g] for r in (ge[1] if isinstance(ge, tuple) else ge).references()]
    keys = [KeyPlan(var=kvar, lo=lo, hi=hi, only=key_only[k], hoisted=key_hoisted[k],
                    parameters=parameters_of([r.var() for e in key_hoisted[k].values() for r in e.references()],
                                             key_only[k]))
            for k, (kvar, lo, hi) in enumerate(key_specs) if key_hoisted[k]]
    return LookupPlan(vonly=vonly, gates=gates, hoisted=hoisted, parameters=parameters_of(todo, vonly),
                      saved_calls=saved, keys=keys)


def _writer(a: ModelAnalysis, subst: dict[str, str] | None = None, vec: bool = False) -> Any:
    """Myokit's Python expression writer, bound to the kernel's names.

    Small integer powers become Numba integer powers (multiplications, not ``pow``);
    ``subst`` maps the code of sub-expressions to names that replace them (table columns).
    ``vec`` writes ``exp``/``log``/``sqrt`` as functions LLVM can vectorise
    (:mod:`twin.models.vecmath`, ``np.sqrt``) for the SIMD kernel.
    """
    import myokit
    from myokit.formats.python import PythonExpressionWriter

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

    class Writer(PythonExpressionWriter):
        def ex(self, e: Any) -> str:
            if subst:
                name = subst.get(e.code())
                if name is not None:
                    return name
            return super().ex(e)

        def _ex_power(self, e: Any) -> str:
            k = _small_int_power(e)
            if k:
                return f"({self.ex(e[0])})**{k}"
            return super()._ex_power(e)

        if vec:
            def _ex_exp(self, e: Any) -> str:
                return f"vexp({self.ex(e[0])})"

            def _ex_log(self, e: Any) -> str:
                if len(e) == 1:
                    return f"vlog({self.ex(e[0])})"
                return f"(vlog({self.ex(e[0])}) / vlog({self.ex(e[1])}))"

            def _ex_sqrt(self, e: Any) -> str:
                return f"np.sqrt({self.ex(e[0])})"

    w = Writer()
    w.set_lhs_function(lhs_name)
    return w


def _substep(a: ModelAnalysis, ind: str, plan: LookupPlan | None = None, vec: bool = False) -> list[str]:
    """One sub-step's lines: intermediates, derivatives (all at the old state), then the updates.

    With ``plan``, V-only values come from the interpolated columns ``lut_<k>`` instead, and
    the values tabulated against a further key ``k`` from ``lutk<k>_<c>``: interpolated right
    after the key is computed, or evaluated exactly when the key is off its table.

    ``vec`` (with ``plan``) writes the branch-free body of the SIMD kernel: a key off its
    table clears ``ok_`` (the node is then stepped again by the exact kernel) instead of
    branching, the tables are the flat ``ktf<k>`` read at ``kb<k>_`` + row * columns, and
    ``exp``/``log`` are :mod:`twin.models.vecmath`'s.
    """
    subst = None
    tabulated: dict[str, tuple[str, str]] = {}
    skipped: set[Any] = set()
    key_at: dict[Any, int] = {}
    if plan is not None:
        k = 0
        for g in plan.gates:
            tabulated[g] = (f"lut_{k}", f"lut_{k + 1}")
            k += 2
        subst = {}
        for key in plan.hoisted:
            subst[key] = f"lut_{k}"
            k += 1
        skipped = set(plan.vonly)
        for n, kp in enumerate(plan.keys):
            for c, key in enumerate(kp.hoisted):
                subst[key] = f"lutk{n}_{c}"
            skipped |= kp.only
            key_at[kp.var] = n
    ex = _writer(a, subst, vec).ex
    exact = _writer(a).ex
    exp = "vexp" if vec else "math.exp"
    lines = []
    for v in a.intermediates:
        if v in skipped:
            continue
        lines.append(f"{ind}{_ident(v.qname())} = {ex(v.rhs())}")
        if v in key_at and vec:
            n = key_at[v]
            nk = len(plan.keys[n].hoisted)
            lines += [f"{ind}y_ = ({_ident(v.qname())} - k{n}_lo) * k{n}_inv",
                      f"{ind}on_ = (y_ >= 0.0) & (y_ < k{n}_last)",
                      f"{ind}ok_ = ok_ & on_",
                      f"{ind}y_ = y_ if on_ else 0.0",
                      f"{ind}j_ = int(y_)",
                      f"{ind}u_ = y_ - j_",
                      f"{ind}c_ = kb{n}_ + np.uint64(j_ * {nk})"]
            lines += [f"{ind}lutk{n}_{c} = ktf{n}[c_ + np.uint64({c})] + u_ * (ktf{n}[c_ + np.uint64({nk + c})]"
                      f" - ktf{n}[c_ + np.uint64({c})])" for c in range(nk)]
        elif v in key_at:
            n = key_at[v]
            kp = plan.keys[n]
            lines += [f"{ind}y_ = ({_ident(v.qname())} - k{n}_lo) * k{n}_inv",
                      f"{ind}if y_ >= 0.0 and y_ < k{n}_last:",
                      f"{ind}    j_ = int(y_)",
                      f"{ind}    u_ = y_ - j_"]
            lines += [f"{ind}    lutk{n}_{c} = ktable{n}[j_, {c}] + u_ * (ktable{n}[j_ + 1, {c}] - ktable{n}[j_, {c}])"
                      for c in range(len(kp.hoisted))]
            lines.append(f"{ind}else:")
            lines += [f"{ind}    {_ident(w.qname())} = {exact(w.rhs())}" for w in a.intermediates if w in kp.only]
            lines += [f"{ind}    lutk{n}_{c} = {exact(e)}" for c, e in enumerate(kp.hoisted.values())]
    updates = []
    for s in a.states:
        name = _ident(s.qname())
        gate = a.gates.get(s.qname())
        if s.qname() in tabulated:
            inf, factor = tabulated[s.qname()]
            updates.append(f"{ind}{name} = {inf} + ({name} - {inf}) * {factor}")
        elif gate is None:
            lines.append(f"{ind}d_{name} = {ex(s.rhs())}")
            updates.append(f"{ind}{name} = {name} + h_dt * d_{name}")
        elif isinstance(gate[0], tuple):
            alpha, beta = ex(gate[0][1]), ex(gate[1][1])
            lines.append(f"{ind}ab_{name} = {alpha} + {beta}")
            lines.append(f"{ind}inf_{name} = ({alpha}) / ab_{name}")
            updates.append(f"{ind}{name} = inf_{name} + ({name} - inf_{name}) * {exp}(-h_dt * ab_{name})")
        else:
            inf, tau = ex(gate[0]), ex(gate[1])
            lines.append(f"{ind}inf_{name} = {inf}")
            updates.append(f"{ind}{name} = inf_{name} + ({name} - inf_{name}) * {exp}(-h_dt / ({tau}))")
    return lines + updates


def _table_builder(a: ModelAnalysis, plan: LookupPlan) -> list[str]:
    """``build_table``: the columns of ``plan`` at V = v_lo + i dv, exactly (no table)."""
    ex = _writer(a).ex
    ind, ind2 = " " * 4, " " * 8
    lines = [
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False)",
        "def build_table(p, h_dt, v_lo, dv, out):  # pragma: no cover",
        '    """Fill ``out[i, :]`` with the table columns at V = v_lo + i dv (parameters ``p``, sub-step ``h_dt``)."""',
    ]
    lines += _preamble(a, ind)
    lines.append(f"{ind}for i_ in range(out.shape[0]):")
    lines.append(f"{ind2}{_ident(a.vm.qname())} = v_lo + i_ * dv")
    for v in a.intermediates:
        if v in plan.vonly:
            lines.append(f"{ind2}{_ident(v.qname())} = {ex(v.rhs())}")
    col = 0
    for g in plan.gates:
        gate = a.gates[g]
        if isinstance(gate[0], tuple):
            alpha, beta = ex(gate[0][1]), ex(gate[1][1])
            lines.append(f"{ind2}out[i_, {col}] = ({alpha}) / (({alpha}) + ({beta}))")
            lines.append(f"{ind2}out[i_, {col + 1}] = math.exp(-h_dt * (({alpha}) + ({beta})))")
        else:
            lines.append(f"{ind2}out[i_, {col}] = {ex(gate[0])}")
            lines.append(f"{ind2}out[i_, {col + 1}] = math.exp(-h_dt / ({ex(gate[1])}))")
        col += 2
    for e in plan.hoisted.values():
        lines.append(f"{ind2}out[i_, {col}] = {ex(e)}")
        col += 1
    return lines


def _key_table_builder(a: ModelAnalysis, kp: KeyPlan, n: int) -> list[str]:
    """``build_key_table<n>``: the columns of key ``n`` at key = lo + i dv, exactly."""
    ex = _writer(a).ex
    ind, ind2 = " " * 4, " " * 8
    lines = [
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False)",
        f"def build_key_table{n}(p, lo, dv, out):  # pragma: no cover",
        f'    """Fill ``out[i, :]`` with the columns tabulated against {kp.var.qname()} = lo + i dv."""',
    ]
    lines += _preamble(a, ind)
    lines.append(f"{ind}for i_ in range(out.shape[0]):")
    lines.append(f"{ind2}{_ident(kp.var.qname())} = lo + i_ * dv")
    lines += [f"{ind2}{_ident(w.qname())} = {ex(w.rhs())}" for w in a.intermediates if w in kp.only]
    lines += [f"{ind2}out[i_, {c}] = {ex(e)}" for c, e in enumerate(kp.hoisted.values())]
    return lines


def _preamble(a: ModelAnalysis, ind: str, row: str = "p[{}]") -> list[str]:
    """Parameters from the row ``p`` (or as ``row`` formats the index) and the derived constants."""
    ex = _writer(a).ex
    lines = [f"{ind}{_ident(v.qname())} = {row.format(j)}" for j, v in enumerate(a.parameters)]
    lines += [f"{ind}{_ident(v.qname())} = {ex(v.rhs())}" for v in a.derived]
    return lines


def generate_source(a: ModelAnalysis, func_name: str = "step", plan: LookupPlan | None = None) -> str:
    """Python source of the Numba kernels for the analysed model (with the lookup variants for ``plan``)."""
    ind, ind2, ind3 = " " * 4, " " * 8, " " * 12
    load_states = [f"{ind}{_ident(s.qname())} = states[{k}, node]" for k, s in enumerate(a.states)]
    store_states = [f"{ind}states[{k}, node] = {_ident(s.qname())}" for k, s in enumerate(a.states)]
    lines = [
        '"""Generated by twin.models.codegen from a model file; do not edit."""',
        "import math",
        "import numpy as np",
        "from numba import njit, prange",
        "from twin.models.vecmath import pair_hi, pair_lo, vexp, vlog  # noqa: F401 (used by the SIMD kernels)",
        "",
        "",
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False)",
        "def node_step(states, node, p, stim, dt, n_sub):  # pragma: no cover",
        '    """Advance node ``node`` of ``states`` by ``dt`` in ``n_sub`` sub-steps (params row ``p``)."""',
        "    h_dt = dt / n_sub",
        *_preamble(a, ind),
        *load_states,
        f"{ind}for _sub in range(n_sub):",
        *_substep(a, ind2),
        *store_states,
    ]
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
    lines += _simd_exact_kernel(a)
    if plan is None:
        lines += ["", "", "HAS_LOOKUP = False"]
        return "\n".join(lines) + "\n"
    n_cols = len(plan.columns)
    vm = _ident(a.vm.qname())
    n_keys = len(plan.keys)
    # per further key: its table, and its range start and inverse spacing
    key_args = "".join(f", ktable{n}, k{n}_lo, k{n}_inv" for n in range(n_keys))
    key_pass = "".join(f", ktables{n}[ktable_of_row{n}[r]], k{n}_lo, k{n}_inv" for n in range(n_keys))
    key_tissue = "".join(f", ktables{n}, ktable_of_row{n}, k{n}_lo, k{n}_inv" for n in range(n_keys))
    lines += ["", "", "HAS_LOOKUP = True", f"N_COLUMNS = {n_cols}", f"N_KEYS = {n_keys}", "", ""]
    lines += _table_builder(a, plan)
    for n, kp in enumerate(plan.keys):
        lines += ["", ""] + _key_table_builder(a, kp, n)
    lines += [
        "",
        "",
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False)",
        f"def node_step_lut(states, node, p, stim, dt, n_sub, table, v_lo, inv_dv{key_args}):  # pragma: no cover",
        '    """``node_step`` with the V-only values read from ``table`` (built for h = dt / n_sub);',
        '    a V off the table takes the exact branch."""',
        "    h_dt = dt / n_sub",
        f"{ind}n_last = table.shape[0] - 1",
        *[f"{ind}k{n}_last = ktable{n}.shape[0] - 1" for n in range(n_keys)],
        *_preamble(a, ind),
        *load_states,
        f"{ind}for _sub in range(n_sub):",
        f"{ind2}x_ = ({vm} - v_lo) * inv_dv",
        f"{ind2}if x_ >= 0.0 and x_ < n_last:",
        f"{ind3}i_ = int(x_)",
        f"{ind3}w_ = x_ - i_",
    ]
    for k in range(n_cols):
        lines.append(f"{ind3}lut_{k} = table[i_, {k}] + w_ * (table[i_ + 1, {k}] - table[i_, {k}])")
    lines += _substep(a, ind3, plan)
    lines.append(f"{ind2}else:")
    lines += _substep(a, ind3)
    lines += store_states
    lines += [
        "",
        "",
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False, parallel=True)",
        f"def step_lut(states, params, region, i_stim, dt, n_sub, tables, table_of_row, v_lo, inv_dv{key_tissue}):"
        "  # pragma: no cover",
        '    """Tissue kernel with lookup tables: ``tables[table_of_row[region[node]]]`` serves each node."""',
        "    for node in prange(states.shape[1]):",
        "        r = region[node]",
        "        node_step_lut(states, node, params[r], i_stim[node], dt, n_sub, tables[table_of_row[r]], v_lo, inv_dv"
        f"{key_pass})",
        "",
        "",
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False)",
        "def pace_lut(states, p, amplitude, start, duration, bcl, dt, n_steps, n_sub, sample_every, out,",
        f"             table, v_lo, inv_dv{key_args}):  # pragma: no cover",
        '    """``pace`` with the lookup table (single cell; for the reference tests)."""',
        "    for k in range(n_steps):",
        "        t_mid = (k + 0.5) * dt",
        "        on = t_mid >= start and (t_mid - start) % bcl < duration",
        f"        node_step_lut(states, 0, p, amplitude if on else 0.0, dt, n_sub, table, v_lo, inv_dv{key_args})",
        f"        if not math.isfinite(states[{vm_row}, 0]):",
        "            return k",
        "        if (k + 1) % sample_every == 0:",
        "            out[:, (k + 1) // sample_every] = states[:, 0]",
        "    return -1",
    ]
    lines += _simd_kernel(a, plan)
    return "\n".join(lines) + "\n"


def _simd_head(a: ModelAnalysis, name: str, extra_args: str, doc: list[str], setup: list[str]) -> list[str]:
    """Signature, parameters and the loop over runs of nodes shared by the SIMD kernels (see
    :func:`_simd_kernel` for what makes the inner loop vectorisable)."""
    ind, ind2 = " " * 4, " " * 8
    rows = ", ".join(f"s{k}" for k in range(len(a.states)))
    lines = [
        "",
        "",
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False, error_model='numpy', parallel=True)",
        f"def {name}({rows}, params, seg_start, seg_end, seg_row, i_stim, h_dt{extra_args}):  # pragma: no cover",
        *doc,
        *setup,
        f"{ind}for s_ in prange(seg_start.shape[0]):",
        f"{ind2}r_ = seg_row[s_]",
        *_preamble(a, ind2, "params[r_, {}]"),
    ]
    return lines


def _simd_loop(a: ModelAnalysis) -> list[str]:
    """The inner loop's head: node index (unsigned), stimulus and the states of the node."""
    ind2, ind3 = " " * 8, " " * 12
    lines = [
        f"{ind2}first_ = np.uint64(seg_start[s_])",
        f"{ind2}for q_ in range(np.uint64(seg_end[s_] - seg_start[s_])):",
        f"{ind3}node = first_ + np.uint64(q_)",
        f"{ind3}stim = i_stim[node]",
    ]
    lines += [f"{ind3}{_ident(s.qname())} = s{k}[node]" for k, s in enumerate(a.states)]
    return lines


def _simd_exact_kernel(a: ModelAnalysis) -> list[str]:
    """``step_simd_exact``: one sub-step of every node with every rate evaluated, vectorised
    over nodes (the tissue kernel of models without tables, and of ``lookup_table: false``)."""
    ind3 = " " * 12
    lines = _simd_head(a, "step_simd_exact", "", [
        '    """One exact sub-step ``h_dt`` of the nodes of runs ``seg_start[s]:seg_end[s]`` (parameter',
        '    row ``seg_row[s]``), the states one array per state; ``node_step`` vectorised."""'], [])
    lines += _simd_loop(a)
    lines += _substep(a, ind3, None, vec=True)
    lines += [f"{ind3}s{k}[node] = {_ident(s.qname())}" for k, s in enumerate(a.states)]
    return lines


def _simd_kernel(a: ModelAnalysis, plan: LookupPlan) -> list[str]:
    """``step_simd`` (one sub-step of every node, vectorised over nodes) and ``step_flagged``.

    LLVM vectorises the inner loop over a run of nodes of one parameter row when it has no
    branch it cannot turn into selects, no call and no store it cannot prove independent:
    so the states come as one 1-D array per state (``s0``, ``s1``… — distinct arguments, which
    Numba's parfor marks ``noalias`` as long as the kernel creates no view), indices are
    unsigned (no negative-index wrap-around), the tables are flat, every value is computed
    for every node, and a node whose V (or further key) is off its table keeps its old states
    and is flagged; ``step_flagged`` then steps those nodes exactly (``node_step``: the exact
    kernel, so no second copy of the table code is compiled).

    The V table is read packed (:func:`twin.models.lookup.pack_table`): two gathers
    per column (rows i and i + 1) were most of the kernel's time; one 8-byte gather now brings
    the value and the step to the next row as two float32 (measured on the Niederer slab, TP06,
    1 thread: 48 → 37 ns per node-step alone, 57 → 45 inside the time loop).
    """
    ind, ind2, ind3 = " " * 4, " " * 8, " " * 12
    n_cols = len(plan.columns)
    n_keys = len(plan.keys)
    vm = _ident(a.vm.qname())
    key_args = "".join(f", ktf{n}, k{n}_rows, ktable_of_row{n}, k{n}_lo, k{n}_inv" for n in range(n_keys))
    lines = _simd_head(a, "step_simd", f", tp, t_rows, table_of_row, t_mid, v_lo, inv_dv{key_args}, flag", [
        '    """One sub-step ``h_dt`` of the nodes of runs ``seg_start[s]:seg_end[s]`` (parameter row',
        "    ``seg_row[s]``), the states one array per state; ``flag[node] = 1`` for a node left for",
        '    ``step_flagged`` (off a table), 0 otherwise.  ``tp`` is the packed V table',
        '    (``LookupTables.packed``: per row and column the value minus the column\'s ``t_mid`` and',
        '    the step to the next row, two float32 in one uint64: one gather per column; see',
        '    ``twin.models.lookup.pack_table``)."""'], [
        f"{ind}n_last = t_rows - 1",
        *[f"{ind}k{n}_last = k{n}_rows - 1" for n in range(n_keys)]])
    lines += [f"{ind2}tb_ = np.uint64(table_of_row[r_]) * np.uint64(t_rows * {n_cols})",
              f"{ind2}mb_ = np.uint64(table_of_row[r_]) * np.uint64({n_cols})"]
    lines += [f"{ind2}mid{k}_ = t_mid[mb_ + np.uint64({k})]" for k in range(n_cols)]
    lines += [f"{ind2}kb{n}_ = np.uint64(ktable_of_row{n}[r_]) * np.uint64(k{n}_rows * {len(kp.hoisted)})"
              for n, kp in enumerate(plan.keys)]
    lines += _simd_loop(a)
    names = [_ident(s.qname()) for s in a.states]
    lines += [f"{ind3}old{k}_ = {name}" for k, name in enumerate(names)]
    lines += [
        f"{ind3}x_ = ({vm} - v_lo) * inv_dv",
        f"{ind3}ok_ = (x_ >= 0.0) & (x_ < n_last)",
        f"{ind3}x_ = x_ if ok_ else 0.0",
        f"{ind3}i_ = int(x_)",
        f"{ind3}w_ = x_ - i_",
        f"{ind3}b_ = tb_ + np.uint64(i_ * {n_cols})",
    ]
    for k in range(n_cols):
        lines += [f"{ind3}pk_ = tp[b_ + np.uint64({k})]",
                  f"{ind3}lut_{k} = mid{k}_ + (pair_lo(pk_) + w_ * pair_hi(pk_))"]
    lines += _substep(a, ind3, plan, vec=True)
    lines += [f"{ind3}s{k}[node] = {name} if ok_ else old{k}_" for k, name in enumerate(names)]
    lines.append(f"{ind3}flag[node] = 0 if ok_ else 1")
    lines += [
        "",
        "",
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False, parallel=True)",
        "def step_flagged(states, params, region, i_stim, h_dt, flag):  # pragma: no cover",
        '    """One sub-step ``h_dt`` of the nodes ``step_simd`` flagged, exactly (``node_step``)."""',
        "    for node in prange(states.shape[1]):",
        "        if flag[node]:",
        "            node_step(states, node, params[region[node]], i_stim[node], h_dt, 1)",
    ]
    return lines


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
    plan: LookupPlan | None = None
    lookup: dict[str, Any] | None = None   # build_table, step_lut, pace_lut (with a plan)
    kernel_simd: Any = None                 # step_simd_exact


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
    # generic reaction terms (Nagumo, Fisher-KPP...) have no voltage in mV: a table in mV would not fit
    plan = plan_lookup(analysis) if analysis.meta.get("twin_kind", "cardiac").strip() != "generic" else None
    timings["analyse"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # the SIMD kernel inlines vecmath's functions: a change there must regenerate (Numba's cache
    # of the generated module only watches the module's own file)
    vecmath = Path(__file__).with_name("vecmath.py").read_text(encoding="utf-8")
    key = hashlib.sha256((GENERATOR_VERSION + "\0" + vecmath + "\0" + text).encode()).hexdigest()[:16]
    stem = re.sub(r"[^0-9a-zA-Z_]", "_", path.stem)
    module_name = f"twin_kernel_{stem}_{key}"
    target = kernel_cache_dir() / f"{module_name}.py"
    if not target.exists():
        source = generate_source(analysis, plan=plan)
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
    lookup = ({"build_table": module.build_table, "step": module.step_lut, "pace": module.pace_lut,
               "step_simd": module.step_simd, "step_flagged": module.step_flagged,
               "key_builders": tuple(getattr(module, f"build_key_table{n}") for n in range(len(plan.keys)))}
              if plan is not None else None)
    return GeneratedModel(analysis=analysis, protocol=protocol, kernel=module.step, pace=module.pace,
                          kernel_simd=module.step_simd_exact,
                          source_path=target, key=key, timings=timings, plan=plan, lookup=lookup)


def initial_state(a: ModelAnalysis) -> np.ndarray:
    """Initial values of the states, in the kernel's row order."""
    return np.array([float(s.initial_value(as_float=True)) for s in a.states])
