"""Finding model files and turning them into :class:`ReactionModel` objects.

Search path, first match wins: ``$TWIN_MODEL_PATH`` (``os.pathsep``-separated),
the user model folder (``$TWIN_USER_MODELS`` or ``~/.local/share/twin/models``,
where ``twin models import`` writes) and the project's ``models/`` folder.
A model's name is its file name without ``.mmt``.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .base import LookupKernels, LookupKey, ReactionModel
from .codegen import GENERATOR_VERSION, build_kernel, initial_state

logger = logging.getLogger(__name__)

#: what a model file's ``twin_kind`` may say
KINDS = ("cardiac", "generic")

#: the project's own model folder (src/twin/models/library.py -> <root>/models)
BUILTIN_DIR = Path(__file__).resolve().parents[3] / "models"


def user_model_dir() -> Path:
    """Folder that ``twin models import`` writes to (created on demand)."""
    root = os.environ.get("TWIN_USER_MODELS") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "twin", "models")
    return Path(root)


def search_path() -> list[Path]:
    """Folders searched for ``<name>.mmt``, in priority order."""
    extra = [Path(p) for p in os.environ.get("TWIN_MODEL_PATH", "").split(os.pathsep) if p]
    return extra + [user_model_dir(), BUILTIN_DIR]


def model_files() -> dict[str, Path]:
    """All visible models: name -> file (earlier folders shadow later ones)."""
    found: dict[str, Path] = {}
    for folder in reversed(search_path()):
        if folder.is_dir():
            for f in sorted(folder.glob("*.mmt")):
                found[f.stem] = f
    return found


def _choices(var, source: str) -> dict[str, float] | None:
    """Parse a parameter's ``twin_values: 0 = endo, 1 = epi, 2 = M`` meta property."""
    text = var.meta.get("twin_values") if "twin_values" in var.meta else None
    if text is None:
        return None
    out: dict[str, float] = {}
    for item in str(text).split(","):
        code, sep, label = item.partition("=")
        try:
            out[label.strip()] = float(code)
        except ValueError:
            sep = ""
        if not sep or not label.strip():
            raise ModelError(f"{source}: {var.qname()}: twin_values must read like '0 = endo, 1 = epi', "
                             f"got {text!r}")
    return out


def _currents(text: str, param_names: list[str], source: str) -> dict[str, str]:
    """Parse ``twin_currents: IKr = G_Kr, ICaL = G_CaL`` (current -> conductance parameter)."""
    out: dict[str, str] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        current, sep, param = (x.strip() for x in item.partition("="))
        if not sep or param not in param_names:
            raise ModelError(f"{source}: twin_currents entry {item!r} must read 'CURRENT = PARAMETER' with a "
                             f"parameter of the model")
        out[current] = param
    return out


def _short_names(qnames: list[str]) -> list[str]:
    """``component.name`` -> ``name`` where that is unambiguous, else the qualified name."""
    tails = [q.rsplit(".", 1)[-1] for q in qnames]
    return [t if tails.count(t) == 1 else q for q, t in zip(qnames, tails)]


@functools.lru_cache(maxsize=None)
def _load(path: str, mtime: float) -> ReactionModel:
    t0 = time.perf_counter()
    gen = build_kernel(path)
    a = gen.analysis
    state_q = [s.qname() for s in a.states]
    state_names = _short_names(state_q)
    vm_index = state_q.index(a.vm.qname())
    state_names[vm_index] = "Vm"
    param_q = [p.qname() for p in a.parameters]
    param_names = _short_names(param_q)
    choices = {n: c for n, p in zip(param_names, a.parameters) if (c := _choices(p, Path(path).name))}
    meta = a.meta
    threshold = float(meta.get("twin_activation_threshold", 0.0))
    kind = meta.get("twin_kind", "cardiac").strip()
    if kind not in KINDS:
        raise ModelError(f"{Path(path).name}: twin_kind must be one of {', '.join(KINDS)}, got '{kind}'")
    desc = meta.get("desc", "").strip()
    name = Path(path).stem
    stim_amp = -a.stimulus_amplitude if a.stimulus_amplitude is not None else None
    events = gen.protocol.events() if gen.protocol is not None else []
    stim_duration = float(events[0].duration()) if events else None
    bcl = float(events[0].period()) if events and events[0].period() > 0 else None
    model = ReactionModel(
        name=name,
        description=meta.get("display_name", a.model.name()),
        provenance=desc,
        state_names=tuple(state_names),
        state_units=tuple(str(s.unit() or "") .strip("[]") for s in a.states),
        initial_state=initial_state(a),
        param_names=tuple(param_names),
        param_units=tuple(str(p.unit() or "").strip("[]") for p in a.parameters),
        param_defaults=np.array([float(p.eval()) for p in a.parameters]),
        vm_index=vm_index,
        activation_threshold=threshold,
        kernel=gen.kernel,
        kernel_simd=gen.kernel_simd,
        cell_kernel=gen.pace,
        source=str(path),
        code_key=f"{gen.key} (generator {GENERATOR_VERSION})",
        cell_stimulus=stim_amp,
        cell_stimulus_duration=stim_duration,
        cell_bcl=bcl,
        param_choices=choices,
        kind=kind,
        currents=_currents(meta.get("twin_currents", ""), param_names, Path(path).name),
        lookup=(LookupKernels(gen.lookup["build_table"], gen.lookup["step"], gen.lookup["pace"],
                              tuple(gen.plan.columns), tuple(gen.plan.parameters),
                              tuple(LookupKey(kp.var.qname(), build, kp.lo, kp.hi, tuple(kp.columns),
                                              tuple(kp.parameters))
                                    for kp, build in zip(gen.plan.keys, gen.lookup["key_builders"])),
                              gen.lookup["step_simd"], gen.lookup["step_flagged"])
                if gen.lookup is not None and gen.plan is not None else None),
    )
    logger.debug("model %s prepared in %.2f s (%s)", name, time.perf_counter() - t0, gen.timings)
    return model


def load_model_file(path: str | Path) -> ReactionModel:
    """Load a model straight from a ``.mmt`` file (cached per path and modification time)."""
    p = Path(path).resolve()
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    return _load(str(p), p.stat().st_mtime)
