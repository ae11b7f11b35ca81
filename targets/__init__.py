"""The one registry of targets (back-ends).

A target is an object with ``name``, ``description``, and

- ``check(checked, semantics, options=None) -> list[Violation]``: what it cannot run, before
  running (``options``: those of the lower it checks for, when a rule depends on one);
- ``lower(checked, semantics, options) -> Any``: the backend object. ``nrf_nir.lower`` runs
  ``check`` once and passes its result as ``options.violations``; ``lower`` acts on that list
  (:func:`findings`) and never checks again;
- ``run(lowered, inputs, record) -> dict[str, Tensor]``: outputs ``[T, B, ...]``;
- optionally ``artifact(lowered, directory) -> list[Path]``: write deployable files (and a
  report) into ``directory``, return their paths (``nrf-nir deploy``);
- optionally ``SEMANTICS``: the values of the firing semantics keys (``spikes``,
  ``membrane_floor``, ``reset_delay``; docs/semantics.md) it computes besides the defaults,
  e.g. ``{"reset_delay": ("off", "on")}``. Without it a target runs the defaults only, and
  :func:`check_target` refuses any other value, in the graph's metadata or in a spiking
  node's own (``reset_delay``), before the target's own ``check``: the one place where this
  is decided, so that no target runs such a graph wrong.

Targets register by module path so that importing the registry imports no backend framework;
``describe`` tells whether a target's framework is installed (``importlib.util.find_spec``) and
gives its description without importing it (``nrf-nir targets``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from nrf_nir.errors import NIRError, listed, shown

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

    from nrf_nir.semantics import Semantics
    from nrf_nir.validate import Checked


@dataclass(frozen=True)
class Violation:
    """Something a target cannot run as the reference does.

    target: target name; node: dotted node name (None: the whole graph); field: the parameter
    or metadata key at fault; message: what and why.
    """

    target: str
    node: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = ", ".join(x for x in (self.node and f"node {self.node!r}",
                                      self.field and f"field {self.field!r}") if x)
        return f"[{self.target}] {where + ': ' if where else ''}{self.message}"


class Findings(list[Violation]):
    """What ``check`` found: the violations (a list, compared and shown as one) and the
    analysis made on the way (a plan, a mapped network; None: none), which ``lower`` reuses
    instead of analysing again."""

    def __init__(self, violations: Iterable[Violation] = (), analysis: Any = None) -> None:
        super().__init__(violations)
        self.analysis = analysis


@dataclass(frozen=True)
class Options:
    """Run options common to all targets. dtype/device None: the target's default.

    violations: what ``check`` found for this lower (``nrf_nir.lower`` runs it once); None: a
    direct call of ``lower``, which then checks itself.
    """

    dtype: Any = None
    device: Any = None
    extra: Mapping[str, Any] | None = None
    violations: list[Violation] | None = None


def semantics_violations(target: Target, checked: Checked,
                         semantics: Semantics) -> list[Violation]:
    """What ``target`` would run wrong of the firing semantics keys: one violation (graph-wide,
    field = the key) per graph-level value it does not declare in its ``SEMANTICS`` (absent:
    the defaults only) when the graph has a spiking node (IF, LIF, CubaLIF) that value holds
    for, and one per spiking node whose own metadata sets a value it does not declare (node =
    that node; ``nrf_nir.semantics.node_semantics``). The reference computes every value: it
    is the contract."""
    import nir

    from nrf_nir.semantics import FIRING_DEFAULTS, node_overrides

    if target.name == "reference":
        return []
    support: Mapping[str, tuple[str, ...]] = getattr(target, "SEMANTICS", {})

    def computed(key: str, value: str) -> tuple[bool, tuple[str, ...]]:
        allowed = support.get(key, (FIRING_DEFAULTS[key],))
        return value in allowed, allowed

    graph_wide: dict[str, list[str]] = {}  # key -> the spiking nodes its graph value holds for
    per_node = []
    for name, node in checked.flat.nodes.items():
        if not isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)):
            continue
        own = node_overrides(node, name)
        for key in FIRING_DEFAULTS:
            if key in own:
                ok, allowed = computed(key, own[key])
                if not ok:
                    per_node.append(Violation(
                        target.name, name, key,
                        f"node metadata {key} = {own[key]!r} is not computed by this target "
                        f"(it runs {', '.join(repr(a) for a in allowed)})"))
            elif not computed(key, getattr(semantics, key))[0]:
                graph_wide.setdefault(key, []).append(name)
    out = []
    for key in (k for k in FIRING_DEFAULTS if k in graph_wide):
        value = getattr(semantics, key)
        allowed = computed(key, value)[1]
        out.append(Violation(
            target.name, None, key,
            f"metadata {key} = {value!r} is not computed by this target (it runs "
            f"{', '.join(repr(a) for a in allowed)}); spiking nodes: "
            f"{listed(graph_wide[key], 3)}"))
    return out + per_node


def check_target(target: Target, checked: Checked, semantics: Semantics,
                 options: Options | None = None) -> Findings:
    """What ``target`` cannot run of ``checked``: the firing semantics it does not compute
    (:func:`semantics_violations`), then its own ``check`` (whose analysis is kept)."""
    unsupported = semantics_violations(target, checked, semantics)
    found = target.check(checked, semantics, options)
    analysis = found.analysis if isinstance(found, Findings) else None
    if not unsupported:
        return found if isinstance(found, Findings) else Findings(found)
    return Findings([*unsupported, *found], analysis)


def findings(target: Target, checked: Checked, semantics: Semantics,
             options: Options) -> Findings:
    """The violations ``lower`` acts on: ``options.violations`` when given (check already
    ran), else :func:`check_target` now (a direct call of ``lower``)."""
    found = options.violations
    if found is None:
        found = check_target(target, checked, semantics, options)
    return found if isinstance(found, Findings) else Findings(found)


#: The check of one option's value: ``check(name, value)`` returns the value as the target
#: uses it, or raises NIRError (field = the option's name) when it does not fit.
OptionCheck = Callable[[str, Any], Any]


def parse_options(options: Options, known: tuple[str, ...] | Mapping[str, OptionCheck],
                  target: str) -> dict[str, Any]:
    """``options.extra`` as a dict, refused (NIRError, field ``options``) when it names an
    option ``target`` does not know. ``known``: the option names, or name -> check
    (:func:`option_bool`, :func:`option_int`, ...), whose results replace the values given."""
    extra = dict(options.extra or {})
    unknown = sorted(set(extra) - set(known))
    if unknown:
        raise NIRError(f"unknown option(s) for the {target} target: {listed(unknown)} "
                       f"(known: {', '.join(known) or 'none'})", field="options")
    if isinstance(known, Mapping):
        extra = {name: known[name](name, value) for name, value in extra.items()}
    return extra


def bad_option(name: str, expected: str, value: Any) -> NIRError:
    """The error of option ``name`` given ``value`` where it takes ``expected`` (field: the
    option's name, as the conformance manifests show it: ``options.<name>``)."""
    given = shown(value, 40) if isinstance(value, str) else shown(repr(value), 40, quote=False)
    return NIRError(f"the option {name} must be {expected}, got {given}", field=name)


def option_bool(name: str, value: Any) -> bool:
    """An :data:`OptionCheck`: ``True`` or ``False`` (no other value stands for one)."""
    if not isinstance(value, (bool, np.bool_)):
        raise bad_option(name, "true or false", value)
    return bool(value)


def option_int(low: int = 1, high: int | None = None) -> OptionCheck:
    """An :data:`OptionCheck`: an integer (not a bool, not a float) in ``[low, high]``."""
    span = f">= {low}" if high is None else f"in [{low}, {high}]"

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or \
                not (low <= int(value) and (high is None or int(value) <= high)):
            raise bad_option(name, f"an integer {span}", value)
        return int(value)

    return check


def option_float(low: float) -> OptionCheck:
    """An :data:`OptionCheck`: a finite number (int or float, not a bool) ``>= low``, as a
    float."""
    def check(name: str, value: Any) -> float:
        try:
            number = float(value) if isinstance(value, numbers.Real) and \
                not isinstance(value, bool) else math.nan
        except OverflowError:  # an int beyond float's range
            number = math.inf
        if not (math.isfinite(number) and number >= low):
            raise bad_option(name, f"a finite number >= {low:g}", value)
        return number

    return check


def option_choice(*choices: str) -> OptionCheck:
    """An :data:`OptionCheck`: one of the strings ``choices``."""
    def check(name: str, value: Any) -> str:
        if not (isinstance(value, str) and value in choices):
            raise bad_option(name, f"one of {', '.join(choices)}", value)
        return value

    return check


def refuse(target: str, found: list[Violation]) -> None:
    """Raise NIRError (field ``target``) listing ``found`` when there is any violation."""
    if found:
        raise NIRError(f"the {target} target cannot run this graph: "
                       + "; ".join(str(v) for v in found), field="target")


class Target(Protocol):
    name: str
    description: str

    def check(self, checked: Checked, semantics: Semantics,
              options: Options | None = None) -> list[Violation]: ...

    def lower(self, checked: Checked, semantics: Semantics, options: Options) -> Any: ...

    def run(self, lowered: Any, inputs: Mapping[str, Tensor],
            record: tuple[str, ...]) -> dict[str, Tensor]: ...


@dataclass(frozen=True)
class Entry:
    """Where a target is, and what ``nrf-nir targets`` says of it without importing it.

    location: ``"package.module:attribute"`` of the target object; needs: top-level modules
    its framework needs (looked up with ``importlib.util.find_spec``, never imported);
    description: the target's ``description``, where ``{dist}`` stands for the installed
    version of distribution ``dist`` (None: import the target to read it); missing: the reason
    given when a needed module is absent (``{missing}``: their names; default: Python's
    ``No module named 'x'``).
    """

    location: str
    needs: tuple[str, ...] = ()
    description: str | None = None
    missing: str | None = None


_XYLOSIM = ("{chip} via SynSense XyloSim 0.1.3 (Rockpool 3.1.0): same design rules, "
            "quantization and results as our emulator")
_XYLOSIM_MISSING = "the xylosim target needs {missing} (pip install 'nrf-nir[rockpool]')"
_XYLO = ("{chip}: design rules, int8/int16 quantization, batched integer emulator (bit-exact "
         "with XyloSim)")
_AUDIO2, _IMU, _AUDIO3 = "Xylo Audio 2 (SYNS61201)", "Xylo IMU (SYNS63300)", \
    "Xylo Audio 3 (SYNS65302)"

#: name -> where the target object is, what it needs and its description. The descriptions
#: equal the targets' own (tests/test_cli_imports.py compares them).
_REGISTRY: dict[str, Entry] = {
    "reference": Entry("nrf_nir.targets.reference:TARGET", ("torch",),
                       "batched PyTorch reference simulator (CUDA when present, else CPU)"),
    "norse": Entry("nrf_nir.targets.norse:TARGET", ("torch", "norse"),
                   "Norse {norse} cells (LIFBoxCell, LIBoxCell, LIFCell, LICell, IAFCell) and "
                   "torch layers; bit-exact to the reference"),
    "snntorch": Entry("nrf_nir.targets.snntorch:TARGET", ("torch", "snntorch"),
                      "snnTorch {snntorch} neurons (Leaky, Synaptic, RLeaky, RSynaptic) and "
                      "torch layers; equal to the reference within float rounding"),
    "rockpool": Entry("nrf_nir.targets.rockpool:TARGET", ("torch", "rockpool"),
                      "Rockpool {rockpool} float modules (LIFTorch, LIFNeuronTorch, "
                      "LinearTorch), float32, CPU; subtract reset only"),
    "sinabs": Entry("nrf_nir.targets.sinabs:TARGET", ("torch", "sinabs"),
                    "Sinabs {sinabs} layers (IAF, LIF, ExpLeak, SumPool2d; MultiSpike, "
                    "min_v_mem) and torch layers; bit-exact to the reference with exponential "
                    "integration"),
    "xylo": Entry("nrf_nir.targets.xylo:TARGET", ("torch",), _XYLO.replace("{chip}", _AUDIO2)),
    "xylosim": Entry("nrf_nir.targets.xylo:XYLOSIM_TARGET", ("torch", "xylosim", "rockpool"),
                     _XYLOSIM.replace("{chip}", _AUDIO2), _XYLOSIM_MISSING),
    "xylo-imu": Entry("nrf_nir.targets.xylo:IMU_TARGET", ("torch",),
                      _XYLO.replace("{chip}", _IMU)),
    "xylo-audio3": Entry("nrf_nir.targets.xylo:AUDIO3_TARGET", ("torch",),
                         _XYLO.replace("{chip}", _AUDIO3)),
    "xylosim-imu": Entry("nrf_nir.targets.xylo:XYLOSIM_IMU_TARGET",
                         ("torch", "xylosim", "rockpool"), _XYLOSIM.replace("{chip}", _IMU),
                         _XYLOSIM_MISSING),
    "xylosim-audio3": Entry("nrf_nir.targets.xylo:XYLOSIM_AUDIO3_TARGET",
                            ("torch", "xylosim", "rockpool"),
                            _XYLOSIM.replace("{chip}", _AUDIO3), _XYLOSIM_MISSING),
    "lava-float": Entry("nrf_nir.targets.lava:FLOAT_TARGET", ("torch", "lava"),
                        "Lava {lava-nc} processes (RingBuffer, Dense, Conv, LIF) on the CPU "
                        "simulator, floating_pt; latency-compensated"),
    "lava-fixed": Entry("nrf_nir.targets.lava:FIXED_TARGET", ("torch", "lava"),
                        "Lava {lava-nc} processes with Loihi-2 fixed-point models (fixed_pt), "
                        "nrf-nir's quantization; artifact: lava-dl netx HDF5"),
    "loihi": Entry("nrf_nir.targets.lava:LOIHI_TARGET", ("torch",),
                   "nrf-nir's batched PyTorch emulator of Lava's Loihi-2 fixed-point CUBA LIF, "
                   "Dense and Conv; bit-exact with lava-fixed"),
}
_LOADED: dict[str, Target] = {}


def register(name: str, location: str, *, needs: tuple[str, ...] = (),
             description: str | None = None) -> None:
    """Register a target object found at ``"package.module:attribute"`` (``needs`` and
    ``description``: see :class:`Entry`; without a description, ``describe`` imports it)."""
    _REGISTRY[name] = Entry(location, tuple(needs), description)
    _LOADED.pop(name, None)


def registered() -> list[str]:
    """All registered target names, whether or not their framework is installed."""
    return list(_REGISTRY)


def get(name: str) -> Target:
    """The target called ``name``; a clear error when unknown or not installed."""
    if name not in _REGISTRY:
        raise NIRError(f"unknown target {name!r}; registered: {', '.join(_REGISTRY)}",
                       field="target")
    if name not in _LOADED:
        module_name, _, attr = _REGISTRY[name].location.partition(":")
        try:
            module = importlib.import_module(module_name)
            _LOADED[name] = getattr(module, attr)
        except (ImportError, AttributeError) as exc:
            raise NIRError(f"target {name!r} is not available: {exc}", field="target") from None
    return _LOADED[name]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def describe(name: str) -> tuple[bool, str]:
    """``(available, text)`` for ``nrf-nir targets`` without importing any framework: whether
    the modules the target needs are installed (``importlib.util.find_spec``), and its
    description, or why it is not available (the message ``get`` would raise)."""
    if name not in _REGISTRY:
        raise NIRError(f"unknown target {name!r}; registered: {', '.join(_REGISTRY)}",
                       field="target")
    entry = _REGISTRY[name]
    if entry.description is None:  # registered without one: import it to know
        try:
            return True, get(name).description
        except NIRError as exc:
            return False, exc.message
    missing = [m for m in entry.needs if importlib.util.find_spec(m) is None]
    if missing:
        why = (entry.missing.format(missing=" and ".join(missing))
               if entry.missing and "torch" not in missing  # as get() would say
               else f"No module named {missing[0]!r}")
        return False, f"target {name!r} is not available: {why}"
    text = re.sub(r"\{([\w.-]+)\}", lambda m: _version(m.group(1)), entry.description)
    return True, text


def available() -> list[str]:
    """Registered targets whose framework imports here."""
    names = []
    for name in _REGISTRY:
        try:
            get(name)
        except NIRError:
            continue
        names.append(name)
    return names
