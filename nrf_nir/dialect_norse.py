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

Recognised by: no nrf-nir metadata, and every leaky neuron's time constants below 0.1 ms (a
Norse cell with tau_inv <= 1e4 /s written as dt/tau_inv at dt = 1e-3), with Affine/Conv2d/LIF/
CubaLIF/LI/IF nodes only.
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


class NorseDialect:
    name = "norse"

    def __init__(self, dt: float = DEFAULT_DT) -> None:
        self.dt = dt

    def detect(self, graph: nir.NIRGraph) -> str | None:
        taus = []
        for node in graph.nodes.values():
            if not isinstance(node, _NORSE_TYPES):
                return None
            for f in _TAU_FIELDS.get(type(node), ()):
                taus.append(_arr(getattr(node, f)).astype(np.float64))
        if not taus or not all(t.size and float(t.max()) < 1e-4 for t in taus):
            return None
        low = min(float(t.min()) for t in taus)
        return (f"no nrf-nir metadata and time constants from {low:.3g} s, below 0.1 ms, as "
                "norse.torch.to_nir writes them (dt/tau_inv)")

    def normalize(self, graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
        dt = self.dt
        nodes: dict[str, nir.NIRNode] = {}
        notes = [f"dt not in the file: assumed Norse's default {dt:g} s",
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
