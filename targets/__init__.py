"""The one registry of targets (back-ends).

A target is an object with ``name``, ``description``, and

- ``check(checked, semantics) -> list[Violation]``: what it cannot run, before running;
- ``lower(checked, semantics, options) -> Any``: the backend object;
- ``run(lowered, inputs, record) -> dict[str, Tensor]``: outputs ``[T, B, ...]``;
- optionally ``artifact(lowered, directory) -> list[Path]``: write deployable files (and a
  report) into ``directory``, return their paths (``nrf-nir deploy``).

Targets register by module path so that importing the registry imports no backend framework.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from nrf_nir.errors import NIRError
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


@dataclass(frozen=True)
class Options:
    """Run options common to all targets. dtype/device None: the target's default."""

    dtype: Any = None
    device: Any = None
    extra: Mapping[str, Any] | None = None


def parse_options(options: Options, known: tuple[str, ...], target: str) -> dict[str, Any]:
    """``options.extra`` as a dict, refused (NIRError, field ``options``) when it names an
    option ``target`` does not know."""
    extra = dict(options.extra or {})
    unknown = sorted(set(extra) - set(known))
    if unknown:
        raise NIRError(f"unknown option(s) for the {target} target: {', '.join(unknown)} "
                       f"(known: {', '.join(known) or 'none'})", field="options")
    return extra


def refuse(target: str, found: list[Violation]) -> None:
    """Raise NIRError (field ``target``) listing ``found`` when there is any violation."""
    if found:
        raise NIRError(f"the {target} target cannot run this graph: "
                       + "; ".join(str(v) for v in found), field="target")


class Target(Protocol):
    name: str
    description: str

    def check(self, checked: Checked, semantics: Semantics) -> list[Violation]: ...

    def lower(self, checked: Checked, semantics: Semantics, options: Options) -> Any: ...

    def run(self, lowered: Any, inputs: Mapping[str, Tensor],
            record: tuple[str, ...]) -> dict[str, Tensor]: ...


#: name -> "module:attribute" of the target object.
_REGISTRY: dict[str, str] = {
    "reference": "nrf_nir.targets.reference:TARGET",
    "norse": "nrf_nir.targets.norse:TARGET",
    "snntorch": "nrf_nir.targets.snntorch:TARGET",
    "rockpool": "nrf_nir.targets.rockpool:TARGET",
    "xylo": "nrf_nir.targets.xylo:TARGET",
    "xylosim": "nrf_nir.targets.xylo:XYLOSIM_TARGET",
    "xylo-imu": "nrf_nir.targets.xylo:IMU_TARGET",
    "xylo-audio3": "nrf_nir.targets.xylo:AUDIO3_TARGET",
    "xylosim-imu": "nrf_nir.targets.xylo:XYLOSIM_IMU_TARGET",
    "xylosim-audio3": "nrf_nir.targets.xylo:XYLOSIM_AUDIO3_TARGET",
    "lava-float": "nrf_nir.targets.lava:FLOAT_TARGET",
    "lava-fixed": "nrf_nir.targets.lava:FIXED_TARGET",
    "loihi": "nrf_nir.targets.lava:LOIHI_TARGET",
}
_LOADED: dict[str, Target] = {}


def register(name: str, location: str) -> None:
    """Register a target object found at ``"package.module:attribute"``."""
    _REGISTRY[name] = location
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
        module_name, _, attr = _REGISTRY[name].partition(":")
        try:
            module = importlib.import_module(module_name)
            _LOADED[name] = getattr(module, attr)
        except (ImportError, AttributeError) as exc:
            raise NIRError(f"target {name!r} is not available: {exc}", field="target") from None
    return _LOADED[name]


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
