"""Conformance cases as the core defines them, and the registry of their providers.

A :class:`Case` is a graph plus inputs; the conformance suite (``nrf_nir.conformance``) runs it
on the reference and on every target and compares. Its own node cases are built there; other
layers offer cases through a *case provider* (:class:`CaseProvider`): a function registered
here by location, ``"package.module:attribute"``, and imported only when cases are asked for
(``importlib``, as the target registry finds targets). So the suite finds the model zoo's cases
without importing ``nrf_nir.models``, and the zoo builds its cases without importing the suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast

from . import plugins

if TYPE_CHECKING:  # pragma: no cover
    import nir
    import numpy as np


@dataclass
class Case:
    """One conformance case.

    name: unique id (``node/...``, ``model/...`` or ``file/...``); graph: NIR graph with dt in
    its metadata; inputs: Input node name -> ``[T, B, *shape]`` float32; decode: how a zoo model
    decides (``max``, ``count``, ``first``) or None; spiking: whether the outputs are spikes
    (else values, compared for exact equality and RMSE); tags: labels for selecting cases.
    """

    name: str
    graph: nir.NIRGraph
    inputs: dict[str, np.ndarray]
    decode: str | None = None
    spiking: bool = True
    tags: tuple[str, ...] = field(default_factory=tuple)


class CaseProvider(Protocol):
    """A function that returns cases: ``T`` steps and ``B`` samples per case, inputs drawn
    from ``seed`` (the same arguments give the same cases)."""

    def __call__(self, T: int = ..., B: int = ..., seed: int = ...) -> list[Case]: ...


#: provider name -> location of its :class:`CaseProvider`.
_PROVIDERS: dict[str, str] = {
    "zoo": "nrf_nir.models:conformance_cases",  # one case per zoo model with a checkpoint
}


def register_provider(name: str, location: str) -> None:
    """Register (or replace) the case provider ``name`` found at ``"package.module:function"``."""
    _PROVIDERS[name] = location


def providers() -> list[str]:
    """The registered provider names, whether or not their package is installed."""
    return list(_PROVIDERS)


def provider(name: str) -> CaseProvider | None:
    """The provider ``name``, imported now; None when its package is not installed (an import
    that fails inside it propagates). An unknown name is a ``KeyError``."""
    location = _PROVIDERS[name]
    module = location.partition(":")[0]
    try:
        return cast(CaseProvider, plugins.load(location))
    except ModuleNotFoundError as exc:  # only the provider's own package missing is "absent":
        missing = exc.name or ""       # a broken import inside it is an error, not silence
        if missing and (module == missing or module.startswith(missing + ".")):
            return None
        raise


def provided_cases(T: int = 200, B: int = 16, seed: int = 0) -> list[Case]:
    """The cases of every installed provider, in registration order (``T``, ``B``, ``seed``
    passed to each)."""
    cases: list[Case] = []
    for name in _PROVIDERS:
        found = provider(name)
        if found is not None:
            cases += found(T=T, B=B, seed=seed)
    return cases
