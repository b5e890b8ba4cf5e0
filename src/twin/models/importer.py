"""``twin models import``: a CellML (or SBML) model file → a ``.mmt`` model the engine can run.

CellML files from the Physiome repository or from CellML-exporting tools rarely
carry the labels twin needs, use seconds or volts, and hard-code their pacing
as a function of time.  Myokit reads the file; this module then

1. finds the membrane potential (label, oxmeta annotation, or Myokit's guess)
   and labels it ``membrane_potential``;
2. converts time to [ms] and the membrane potential to [mV];
3. replaces a hard-coded periodic stimulus by ``pace × amplitude`` and keeps
   the period and duration as the file's pacing protocol;
4. labels the stimulus current and converts it to a current per capacitance
   [A/F], which is what the tissue solver applies;
5. checks that the result generates a kernel, then writes it atomically into
   the user model folder.

Anything it cannot settle without guessing wrong is a :class:`ModelError`
that says what to annotate.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..io.atomic import write_text
from .codegen import LABEL_STIM, LABEL_VM, analyse
from .library import model_files, user_model_dir

logger = logging.getLogger(__name__)

FORMATS = {".cellml": "cellml", ".xml": "cellml", ".sbml": "sbml"}


def _valid_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ModelError(f"model name {name!r} must start with a letter and use only letters, digits "
                         "and '_' (it becomes the file name and the name in case files)")
    return name


def _to_unit(var: Any, unit: str, what: str, helpers: list[Any] | None = None) -> None:
    import myokit

    if var.unit() is None:
        logger.warning("%s %s has no unit; assuming it is already in [%s]", what, var.qname(), unit)
        var.set_unit(myokit.parse_unit(unit))
        return
    try:
        var.convert_unit(unit, helpers=helpers)
    except myokit.IncompatibleUnitError as exc:
        raise ModelError(f"cannot express the {what} {var.qname()} (in {var.unit()}) in [{unit}]: {exc}") from None


def convert(model: Any, source: str) -> tuple[Any, Any]:
    """Prepare an imported Myokit model for twin (steps 1–4 of the module docstring).

    Returns the model (changed in place) and the pacing protocol found in it (or ``None``).
    """
    import myokit
    import myokit.lib.guess as guess

    vm = model.label(LABEL_VM) or guess.membrane_potential(model)
    if vm is None or not vm.is_state():
        raise ModelError(f"{source}: cannot tell which state is the membrane potential; annotate it "
                         "(oxmeta 'membrane_voltage') or give it a voltage unit")
    if model.label(LABEL_VM) is None:
        vm.set_label(LABEL_VM)
    logger.info("membrane potential: %s", vm.qname())
    time_var = model.time()
    if time_var is None:
        raise ModelError(f"{source}: the model has no time variable")
    _to_unit(time_var, "ms", "time variable")
    _to_unit(vm, "mV", "membrane potential")

    protocol = guess.remove_embedded_protocol(model)
    stim = model.label(LABEL_STIM) or guess.stimulus_current(model)
    if stim is None:
        logger.warning("%s: no stimulus current found; the model can be stimulated only by tissue "
                       "stimuli that twin adds to dV/dt (single-cell runs need --amplitude)", source)
    else:
        if model.label(LABEL_STIM) is None:
            stim.set_label(LABEL_STIM)
        if stim.unit() is not None and not myokit.Unit.can_convert(stim.unit(), myokit.parse_unit("A/F")):
            cm = guess.membrane_capacitance(model)
            if cm is None:
                raise ModelError(f"{source}: the stimulus {stim.qname()} is in {stim.unit()} and no "
                                 "membrane capacitance was found to turn it into [A/F]")
            _to_unit(stim, "A/F", "stimulus current", helpers=[myokit.Quantity(cm.eval(), cm.unit())])
        else:
            _to_unit(stim, "A/F", "stimulus current")
        logger.info("stimulus current: %s", stim.qname())
    return model, protocol


def import_model(path: str | Path, name: str | None = None, folder: str | Path | None = None,
                 overwrite: bool = False) -> Path:
    """Import a CellML/SBML file as ``<folder>/<name>.mmt`` and return that path.

    Parameters
    ----------
    path
        The model file (``.cellml``, ``.xml`` or ``.sbml``).
    name
        Model name (default: the file's stem, made a valid identifier).
    folder
        Destination (default: :func:`~twin.models.library.user_model_dir`).
    overwrite
        Replace a user model of the same name.
    """
    import myokit
    import myokit.formats

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ModelError(f"{path.name}: unknown model format '{path.suffix}'; expected one of "
                         f"{', '.join(sorted(FORMATS))}")
    name = _valid_name(name or re.sub(r"\W", "_", path.stem).lstrip("_0123456789") or "imported")
    folder = Path(folder) if folder is not None else user_model_dir()
    target = folder / f"{name}.mmt"
    if target.exists() and not overwrite:
        raise ModelError(f"{target} exists; pass --overwrite to replace it or --name to choose another name")
    existing = model_files().get(name)
    if existing is not None and existing.resolve() != target.resolve():
        logger.warning("'%s' will shadow the model of the same name in %s", name, existing.parent)
    try:
        model = myokit.formats.importer(fmt).model(str(path))
    except myokit.MyokitError as exc:
        raise ModelError(f"{path.name}: cannot import: {exc}") from None
    except Exception as exc:  # malformed XML and the like, raised by the importer's parser
        raise ModelError(f"{path.name}: cannot import: {type(exc).__name__}: {exc}") from None
    model, protocol = convert(model, path.name)
    model.set_name(name)
    model.meta["desc"] = (f"Imported by 'twin models import' from {path.name}.\n"
                          + str(model.meta.get("desc", "")).strip())
    try:
        model.validate()
    except myokit.MyokitError as exc:
        raise ModelError(f"{path.name}: the converted model is invalid: {exc}") from None
    analyse(model, path.name)  # fails now, with a clear message, rather than in the first case using it
    folder.mkdir(parents=True, exist_ok=True)
    write_text(target, myokit.save(model=model, protocol=protocol))
    logger.info("imported %s as model '%s' (%s)", path.name, name, target)
    return target
