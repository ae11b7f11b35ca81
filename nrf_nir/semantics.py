"""Discrete-time semantics written into a graph's metadata (see docs/semantics.md).

A NIR graph describes ODEs; these fields fix how a step of ``dt`` seconds is taken so that a
``.nir`` file written by nrf-nir is self-describing. Keys live flat in the top-level
``graph.metadata``; a node's own metadata may override the keys of :data:`NODE_KEYS` for that
node (:func:`node_semantics`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import nir

from .errors import NIRError

SEMANTICS_VERSION = "1"

CHOICES: dict[str, tuple[str, ...]] = {
    "reset": ("value", "subtract"),
    "integration": ("euler", "exponential"),
    "threshold": ("gt", "ge"),
    "initial_state": ("leak", "zero"),
    "spikes": ("single", "multi"),
    "membrane_floor": ("none", "minus_threshold"),
    "reset_delay": ("off", "on", "guarded"),
}

#: The keys that change how a spiking node (IF, LIF, CubaLIF) fires and resets, each with its
#: default (today's behaviour). A target runs a non-default value only when it declares it
#: (``nrf_nir.targets.semantics_violations``).
FIRING_DEFAULTS: dict[str, str] = {"spikes": "single", "membrane_floor": "none",
                                   "reset_delay": "off"}

#: Keys a node's own metadata may set for that node, overriding the graph's value.
NODE_KEYS: tuple[str, ...] = ("reset_delay",)


def _as_str(value: Any, key: str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf8", errors="replace")
    if hasattr(value, "item"):
        if getattr(value, "size", 1) != 1:
            raise NIRError(f"metadata {key} must be one string, got an array of shape "
                           f"{getattr(value, 'shape', '?')}", field=key)
        return _as_str(value.item(), key)
    return str(value)


@dataclass(frozen=True)
class Semantics:
    """The compile options that fix a graph's discrete-time meaning.

    dt: time step in seconds (None: not stated; a run must then pass ``dt``).
    reset: "value" (v = v_reset where z) or "subtract" (v -= z * (v_th - v_reset)).
    integration: "euler" (forward Euler, Norse's order) or "exponential" (exact decay).
    threshold: "gt" (spike if v > v_th, Norse) or "ge" (v >= v_th).
    initial_state: "leak" (v starts at v_leak) or "zero".
    spikes: "single" (z in {0, 1}) or "multi" (z = how many multiples of v_th - v_reset the
    membrane above v_reset holds: several spikes per step, Sinabs's MultiSpike).
    membrane_floor: "none" or "minus_threshold" (after the step's reset the membrane is
    clamped below at -v_th, Sinabs's ``min_v_mem = -spike_threshold``).
    reset_delay: "off" (the reset lands in the step that spikes), "on" (in the next step,
    after its integration: snnTorch's ``reset_delay=True``) or "guarded" (subtract reset only:
    in the step that spikes, but a membrane still above threshold after the last step's reset
    must pass ``v - theta`` over the threshold to spike: snnTorch's ``reset_delay=False``).
    """

    dt: float | None = None
    reset: str = "value"
    integration: str = "euler"
    threshold: str = "gt"
    initial_state: str = "leak"
    spikes: str = "single"
    membrane_floor: str = "none"
    reset_delay: str = "off"
    producer: str = "unknown"
    producer_version: str = ""

    def __post_init__(self) -> None:
        for key, allowed in CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise NIRError(f"must be one of {', '.join(allowed)}; got {value!r}", field=key)
        if self.reset_delay == "guarded" and self.reset != "subtract":
            raise NIRError("'guarded' applies to reset 'subtract' only (it guards a pending "
                           f"subtraction); the reset is {self.reset!r}", field="reset_delay")
        if self.dt is not None:
            if not isinstance(self.dt, (int, float)) or not math.isfinite(self.dt) or self.dt <= 0:
                raise NIRError(f"dt must be a finite number of seconds > 0; got {self.dt!r}",
                               field="dt")

    def firing_changes(self) -> dict[str, str]:
        """The firing keys (:data:`FIRING_DEFAULTS`) whose value is not the default."""
        return {key: getattr(self, key) for key, default in FIRING_DEFAULTS.items()
                if getattr(self, key) != default}

    def with_dt(self, dt: float | None) -> Semantics:
        """Return a copy whose dt is ``dt`` when given, else this one's."""
        return self if dt is None else replace(self, dt=float(dt))

    def require_dt(self) -> float:
        """The time step in seconds, or a clear error when the graph states none."""
        if self.dt is None:
            raise NIRError(
                "the graph has no time step: its metadata has no 'dt' (NIR itself stores none); "
                "pass dt explicitly (Python: dt=..., CLI: --dt SECONDS)",
                field="dt",
            )
        return self.dt

    def to_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "reset": self.reset,
            "integration": self.integration,
            "threshold": self.threshold,
            "initial_state": self.initial_state,
            "spikes": self.spikes,
            "membrane_floor": self.membrane_floor,
            "reset_delay": self.reset_delay,
            "producer": self.producer,
            "producer_version": self.producer_version,
            "semantics_version": SEMANTICS_VERSION,
        }
        if self.dt is not None:
            meta["dt"] = float(self.dt)
        return meta


def read_semantics(graph: nir.NIRGraph) -> Semantics:
    """The semantics stated in ``graph.metadata`` (defaults where a key is absent)."""
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    kwargs: dict[str, Any] = {}
    if "dt" in meta:
        raw = meta["dt"]
        try:
            kwargs["dt"] = float(raw.item() if hasattr(raw, "item") else raw)
        except (TypeError, ValueError, OverflowError):
            raise NIRError(f"metadata dt must be a number of seconds; got {raw!r}",
                           field="dt") from None
    for key in (*CHOICES, "producer", "producer_version"):
        if key in meta:
            kwargs[key] = _as_str(meta[key], key)
    return Semantics(**kwargs)


def write_semantics(graph: nir.NIRGraph, semantics: Semantics) -> nir.NIRGraph:
    """Store ``semantics`` in ``graph.metadata`` (in place) and return the graph."""
    if not isinstance(graph.metadata, dict):
        graph.metadata = {}
    graph.metadata.update(semantics.to_metadata())
    return graph


def node_overrides(node: Any, name: str | None = None) -> dict[str, str]:
    """The keys of :data:`NODE_KEYS` that ``node``'s own metadata sets, each checked against
    :data:`CHOICES` (NIRError naming ``name`` and the key)."""
    meta = getattr(node, "metadata", None)
    if not isinstance(meta, dict):
        return {}
    found: dict[str, str] = {}
    for key in NODE_KEYS:
        if key not in meta:
            continue
        try:
            value = _as_str(meta[key], key)
        except NIRError as exc:
            raise NIRError(f"node metadata {exc.message}", node=name, field=key) from None
        if value not in CHOICES[key]:
            raise NIRError(f"node metadata {key} must be one of {', '.join(CHOICES[key])}; "
                           f"got {value!r}", node=name, field=key)
        found[key] = value
    return found


def node_semantics(semantics: Semantics, node: Any, name: str | None = None) -> Semantics:
    """The semantics that hold for ``node``: ``semantics`` with the keys its own metadata
    overrides (:func:`node_overrides`); NIRError naming ``name`` and the key when the value or
    its combination with the graph's keys is invalid."""
    changes: dict[str, Any] = dict(node_overrides(node, name))
    if not changes:
        return semantics
    try:
        return replace(semantics, **changes)
    except NIRError as exc:
        raise NIRError(f"node metadata: {exc.message}", node=name, field=exc.field) from None


def read_node_semantics(graph: nir.NIRGraph, semantics: Semantics | None = None
                        ) -> dict[str, dict[str, str]]:
    """Every node-level override in ``graph`` (nested graphs included, dotted names as
    flattening names them): ``{node: {key: value}}``, each checked (:func:`node_semantics`)
    against ``semantics`` (default: the graph's own, :func:`read_semantics`)."""
    base = read_semantics(graph) if semantics is None else semantics
    found: dict[str, dict[str, str]] = {}

    def visit(g: nir.NIRGraph, prefix: str) -> None:
        nodes = g.nodes if isinstance(g.nodes, dict) else {}
        for key, node in nodes.items():
            name = prefix + (key.decode("utf8", errors="replace") if isinstance(key, bytes)
                             else str(key))
            if isinstance(node, nir.NIRGraph):
                visit(node, f"{name}.")
                continue
            overrides = node_overrides(node, name)
            if overrides:
                node_semantics(base, node, name)
                found[name] = overrides

    visit(graph, "")
    return found
