"""Foreign NIR dialects: conventions of other producers, normalised to nrf-nir's semantics.

NIR files written by snnTorch, Rockpool or Norse follow their producer's conventions (e.g.
snnTorch writes ``r = tau/dt`` for a hard-coded dt of 1e-4, Norse writes tau as ``dt*tau_inv``).
Each dialect is a framework-free module of the core (``nrf_nir.dialect_<name>``: numpy and nir
only, so that loading a file imports no backend framework) and registers here by module path.
``normalize(graph)`` recognises the producer (or takes the one named) and returns a graph in
nrf-nir's semantics plus notes saying what was assumed.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from typing import Protocol

import nir
import numpy as np

from .errors import NIRError, ValidationError


class Dialect(Protocol):
    name: str

    def detect(self, graph: nir.NIRGraph) -> str | None:
        """A one-line reason when ``graph`` looks written by this producer, else None."""
        ...

    def normalize(self, graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
        """The graph in nrf-nir's conventions, and notes on each convention applied."""
        ...


#: dialect name -> "module:attribute" of the Dialect object (tried in this order by "auto").
_DIALECTS: dict[str, str] = {
    "snntorch": "nrf_nir.dialect_snntorch:DIALECT",
    "rockpool": "nrf_nir.dialect_rockpool:DIALECT",
    "norse": "nrf_nir.dialect_norse:DIALECT",
}


def register(name: str, location: str) -> None:
    _DIALECTS[name] = location


def registered() -> list[str]:
    return list(_DIALECTS)


def get(name: str) -> Dialect:
    if name not in _DIALECTS:
        raise NIRError(f"unknown dialect {name!r}; known: {', '.join(_DIALECTS) or 'none'}",
                       field="dialect")
    module_name, _, attr = _DIALECTS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NIRError(f"dialect {name!r} is not available: {exc}", field="dialect") from None
    dialect: Dialect = getattr(module, attr)
    return dialect


@dataclass
class Normalized:
    graph: nir.NIRGraph
    dialect: str | None
    notes: list[str] = field(default_factory=list)


def normalize(graph: nir.NIRGraph, dialect: str = "auto") -> Normalized:
    """Apply a producer's conventions. ``dialect``: "auto" (recognise the producer; files that
    carry nrf-nir metadata are left alone), "none", or a registered name."""
    if dialect == "none":
        return Normalized(graph, None)
    if dialect != "auto":
        fixed, notes = _rewrite(get(dialect), graph, "named by the caller")
        return Normalized(fixed, dialect, notes)
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if "semantics_version" in meta:  # written by nrf-nir: already canonical
        return Normalized(graph, None)
    for name in _DIALECTS:
        try:
            candidate = get(name)
        except NIRError:
            continue
        reason = candidate.detect(graph)
        if reason:
            fixed, notes = _rewrite(candidate, graph, reason)
            for note in notes:
                warnings.warn(f"{name} dialect ({reason}): {note}", stacklevel=2)
            return Normalized(fixed, name, [f"recognised {name}: {reason}", *notes])
    return Normalized(graph, None)


def _rewrite(dialect: Dialect, graph: nir.NIRGraph, reason: str
             ) -> tuple[nir.NIRGraph, list[str]]:
    """``dialect.normalize(graph)``, refusing values that are invalid as written and a
    rescaling whose results are not finite or cannot run at the dt it assumes (float64)."""
    from .semantics import read_semantics
    from .validate import check_values

    check_values(graph)  # errors name the values as written
    with np.errstate(all="ignore"):  # an overflow is refused below, with its node and field
        fixed, notes = dialect.normalize(graph)
    try:
        check_values(fixed, read_semantics(fixed))
    except NIRError as exc:
        raise ValidationError(
            f"as rescaled by the {dialect.name} dialect (recognised: {reason}), "
            f"{exc.message}; --dialect none reads the file as written", node=exc.node,
            field=exc.field) from None
    return fixed, notes
