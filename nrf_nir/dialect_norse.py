"""The dialect of Norse 1.1.0's own exporter (``norse.torch.to_nir``).

Measured conventions of ``norse/torch/utils/export_nir.py`` (docs/norse-to-nir.md):

- time constants are written as ``dt / tau_inv`` = ``dt * tau`` (1000x too small at dt = 1e-3);
  normalised: ``tau = tau_written / dt``;
- ``IAFCell`` is written as ``IF(r=1)`` although Norse integrates ``v + x`` with no dt;
  normalised: ``r = 1 / dt``;
- ``v_reset`` is never written (NIR fills in 0): kept at 0, and said so;
- the Input node's shape includes the batch axis of the sample (``ignore_dims`` is not used);
  normalised: the leading axis is dropped, Output shapes are re-inferred;
- the file carries no dt: Norse's default 1e-3 s is assumed unless the caller names one.

Recognised only on this fingerprint, all of: no metadata; Affine/Conv2d/LIF/CubaLIF/LI/IF
nodes only; an Input whose shape carries the sample's batch axis (one axis more than the
layer it feeds takes: nirtorch's ``extract_nir_graph`` without ``ignore_dims``); every
neuron written with ``r = 1`` and ``v_reset = 0`` (``to_nir`` writes ``ones_like`` and no
``v_reset``); and every leaky neuron's time constants below 0.1 ms (dt/tau_inv). A file
without the batch axis (a sample exported without one) needs the dialect named:
``--dialect norse`` (option ``dt=SECONDS``: the dt given to ``to_nir``).
"""

from __future__ import annotations

import copy

import nir
import numpy as np

from .semantics import Semantics, write_semantics

DEFAULT_DT = 1e-3
_TAU_FIELDS = {nir.LIF: ("tau",), nir.LI: ("tau",), nir.CubaLIF: ("tau_syn", "tau_mem"),
               nir.CubaLI: ("tau_syn", "tau_mem")}
_NORSE_TYPES = (nir.Input, nir.Output, nir.Affine, nir.Conv2d, nir.LIF, nir.CubaLIF, nir.LI,
                nir.IF, nir.NIRGraph)


def _arr(value: object) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _batch_axis(graph: nir.NIRGraph, name: str, node: nir.Input) -> bool:
    """Whether Input ``name``'s shape has one leading axis more than the layer it feeds."""
    try:
        shape = _arr(node.input_type["input"]).astype(np.int64).reshape(-1)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    feeds = [graph.nodes.get(str(b)) for a, b in graph.edges if str(a) == name]
    if shape.size < 2 or not feeds:
        return False
    for layer in feeds:
        if isinstance(layer, nir.Affine):
            weight = _arr(layer.weight)
            if not (shape.size == 2 and weight.ndim == 2 and weight.shape[1] == shape[-1]):
                return False
        elif isinstance(layer, nir.Conv2d):
            if shape.size != 4:
                return False
        else:
            return False
    return True


def _is(value: object, number: float) -> bool:
    try:
        return bool(np.all(_arr(value).astype(np.float64) == number))
    except (TypeError, ValueError):
        return False


class NorseDialect:
    name = "norse"
    #: dt: the time step given to ``to_nir`` (seconds; default: the run's dt, else 1e-3)
    options: dict[str, tuple[str, ...]] = {"dt": ()}

    def __init__(self, dt: float = DEFAULT_DT, dt_source: str = "Norse's default") -> None:
        self.dt = dt
        self.dt_source = dt_source

    def configure(self, options: dict[str, str], dt: float | None) -> NorseDialect:
        if "dt" in options:
            return NorseDialect(float(options["dt"]), "the dialect's dt option")
        if dt is not None:
            return NorseDialect(float(dt), "the dt given")
        return NorseDialect()

    def detect(self, graph: nir.NIRGraph) -> str | None:
        meta = graph.metadata if isinstance(graph.metadata, dict) else {}
        if meta:
            return None
        taus = []
        batch = [name for name, node in graph.nodes.items()
                 if isinstance(node, nir.Input) and _batch_axis(graph, name, node)]
        if not batch:
            return None
        for node in graph.nodes.values():
            if not isinstance(node, _NORSE_TYPES):
                return None
            if isinstance(node, (nir.LIF, nir.CubaLIF, nir.LI, nir.IF)) and not (
                    _is(node.r, 1.0) and _is(getattr(node, "v_reset", 0.0), 0.0)):
                return None
            for f in _TAU_FIELDS.get(type(node), ()):
                taus.append(_arr(getattr(node, f)).astype(np.float64))
        if not taus or not all(t.size and float(t.max()) < 1e-4 for t in taus):
            return None
        low = min(float(t.min()) for t in taus)
        return (f"Input {batch[0]!r} carries the sample's batch axis, every neuron has r = 1 "
                f"and v_reset = 0, and time constants from {low:.3g} s, below 0.1 ms: "
                "norse.torch.to_nir's fingerprint (tau written as dt/tau_inv)")

    def normalize(self, graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
        dt = self.dt
        nodes: dict[str, nir.NIRNode] = {}
        notes = [f"dt not in the file: {dt:g} s assumed ({self.dt_source})",
                 f"time constants divided by dt ({dt:g} s): Norse writes tau as dt/tau_inv"]
        for name, node in graph.nodes.items():
            node = copy.copy(node)
            if type(node) in _TAU_FIELDS:
                for f in _TAU_FIELDS[type(node)]:
                    setattr(node, f, _arr(getattr(node, f)).astype(np.float64) / dt)
                if hasattr(node, "v_reset"):
                    notes.append(f"{name}: v_reset is not written by Norse; 0 assumed")
            if isinstance(node, nir.IF):
                node.r = _arr(node.r).astype(np.float64) / dt
                notes.append(f"{name}: IF r multiplied by 1/dt (Norse's IAF adds the input "
                             "without dt)")
            for f in ("weight", "bias", "r", "v_leak", "v_threshold", "v_reset", "w_in"):
                if hasattr(node, f) and hasattr(getattr(node, f), "detach"):
                    setattr(node, f, _arr(getattr(node, f)))
            if isinstance(node, nir.Input):
                shape = _arr(node.input_type["input"])
                if shape.size > 1:
                    node = nir.Input(input_type=np.array(shape[1:]))
                    notes.append(f"{name}: leading (batch) axis dropped from the input shape "
                                 f"{shape.tolist()}")
            if isinstance(node, nir.Output):
                node = nir.Output(output_type=None)
            if isinstance(node, nir.Conv2d):
                node.input_shape = None
            nodes[name] = node
        fixed = nir.NIRGraph(nodes=nodes, edges=list(graph.edges), type_check=False)
        write_semantics(fixed, Semantics(dt=dt, producer="norse.torch.to_nir",
                                         producer_version="1.1.0 (normalised by nrf-nir)"))
        return fixed, notes


DIALECT = NorseDialect()
