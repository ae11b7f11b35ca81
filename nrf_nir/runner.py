"""The graph runner shared by the torch-based targets (norse, snntorch, rockpool).

A target builds one ``torch.nn.Module`` per node (its own ``make_layer``); :class:`GraphRunner`
drives them through the validated graph the way the reference does (docs/semantics.md,
"Execution"): time is cut into the reference's chunks (:func:`nrf_nir.reference.chunk_steps`,
so that matrix products see the same number of rows), units run in schedule order, a stateless
layer runs once per chunk on ``[Tc*B, ...]``, a :class:`StatefulLayer` steps through the chunk,
the nodes of a recurrent cycle step together (back edges carry the previous step), and values
are freed after their last use. What differs between frameworks stays in the layers (how a
state is read for recording: :meth:`StatefulLayer.read`) and in two options: ``fusions``
(cycles whose recurrence a neuron layer computes itself, e.g. snnTorch's ``RLeaky``) and
``whole_time`` (stateful layers see all time steps at once, e.g. Rockpool's modules).

Torch only: no framework is imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import NIRError
from .reference import (
    DEFAULT_CHUNK_BYTES,
    chunk_steps,
    default_device,
    resolve_dtype,
    step_cycle,
)
from .semantics import Semantics
from .validate import Checked


class StatefulLayer(nn.Module):
    """A layer with state: ``init_state(batch)``, ``step(x, state) -> (y, state)``.

    ``separate``: ``step`` receives the incoming edges as a list (edge order) instead of their
    sum. ``state_names``: the state fields that can be recorded (``"<node>.v"``), read by
    :meth:`read`.
    """

    separate = False
    state_names: tuple[str, ...] = ()

    def init_state(self, batch: int) -> Any:
        raise NotImplementedError

    def step(self, x: Any, state: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def read(self, state: Any, key: str) -> Tensor:
        """The recorded state field ``key`` (default: the state's attribute of that name)."""
        value: Tensor = getattr(state, key)
        return value

    def run(self, x: Any, state: Any, out: Tensor, record: dict[str, Tensor] | None) -> Any:
        """Step through ``x`` ``[Tc, B, ...]`` (a list of them when ``separate``), writing
        ``out[t]`` and the recorded state fields; return the final state."""
        for t in range(out.shape[0]):
            y, state = self.step([xi[t] for xi in x] if self.separate else x[t], state)
            out[t] = y
            if record:
                for key, buf in record.items():
                    buf[t] = self.read(state, key)
        return state


@dataclass(frozen=True)
class Fusion:
    """A cycle ``neuron -> loop -> neuron`` that the neuron's layer computes as one module
    (its recurrent weights folded in).

    loop: the name of the recurrent node (None: a self-edge). Its output is computed from the
    neuron's only when it is needed (recorded).
    """

    neuron: str
    loop: str | None


@dataclass
class NetworkState:
    """The state of a :class:`GraphRunner` between calls.

    nodes: node name -> its layer's state. prev: source of each recurrent (back) edge stepped
    by the runner -> its last output.
    """

    nodes: dict[str, Any] = field(default_factory=dict)
    prev: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class _Chunk:
    """What the units of one chunk of time steps share."""

    state: NetworkState
    n: int  # steps in the chunk
    B: int
    t0: int  # first step of the chunk
    rows: int  # steps per stateless call (the reference's chunk)
    state_recs: dict[str, dict[str, Tensor]]
    keep: set[str]


def _combine(layer: nn.Module, parts: list[Tensor]) -> Any:
    """A node's input: the sum of its incoming edges in edge order (their list for a
    ``separate`` layer)."""
    if isinstance(layer, StatefulLayer) and layer.separate:
        return parts
    x = parts[0]
    for part in parts[1:]:
        x = x + part
    return x


def resolve(dtype: Any, device: Any) -> tuple[torch.dtype, torch.device]:
    """The run dtype (float32 by default) and device (CUDA when present by default)."""
    return resolve_dtype(dtype), torch.device(device) if device is not None else default_device()


class GraphRunner(nn.Module):
    """A validated graph as per-node torch layers.

    ``forward(inputs, state=None, record=())`` runs ``[T, B, *shape]`` inputs (one tensor, or a
    dict keyed by the graph's Input nodes) and returns ``(results, state)``: results maps each
    Output node (and each recorded name: a node's output, or ``"<neuron>.v"`` /
    ``"<neuron>.i"``) to ``[T, B, ...]``. Pass the returned state back to continue a run.

    layers: node name -> its module (a :class:`StatefulLayer` when it has state). fusions:
    index of a cyclic unit in ``checked.units`` -> the :class:`Fusion` that runs it.
    whole_time: stateful layers run on all the steps at once (stateless layers still on the
    reference's chunks).
    """

    def __init__(self, checked: Checked, semantics: Semantics, layers: Mapping[str, nn.Module],
                 *, dtype: Any = None, device: Any = None,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, stepwise: bool = False,
                 fusions: Mapping[int, Fusion] | None = None, whole_time: bool = False) -> None:
        super().__init__()
        self.checked, self.semantics = checked, semantics
        self.dt = semantics.require_dt()
        self.dtype, self.device = resolve(dtype, device)
        self.chunk_bytes, self.stepwise = int(chunk_bytes), bool(stepwise)
        self.whole_time = bool(whole_time)
        self.names = list(checked.flat.nodes)
        self.index = {name: k for k, name in enumerate(self.names)}
        self.layers = nn.ModuleList([layers[name] for name in self.names])
        self.fusions: dict[int, Fusion] = dict(fusions or {})
        # back edges stepped here (those of fused cycles live inside their neuron's layer)
        inner = {(f.loop or f.neuron, f.neuron) for f in self.fusions.values()}
        self.back = sorted(e for e in checked.back if e not in inner)

    def layer(self, name: str) -> nn.Module:
        return self.layers[self.index[name]]

    def initial_state(self, batch: int) -> NetworkState:
        c = self.checked
        return NetworkState(
            nodes={n: m.init_state(batch) for n, m in zip(self.names, self.layers, strict=True)
                   if isinstance(m, StatefulLayer)},
            prev={src: torch.zeros(batch, *c.out_shapes[src], dtype=self.dtype,
                                   device=self.device) for src, _ in self.back})

    # ------------------------------------------------------------------------ recording
    def _parse_record(self, record: tuple[str, ...]) -> dict[str, tuple[str, str | None]]:
        nodes = self.checked.flat.nodes
        parsed: dict[str, tuple[str, str | None]] = {}
        for key in record:
            if key in nodes:
                parsed[key] = (key, None)
                continue
            node, _, state = key.rpartition(".")
            layer = self.layer(node) if node in self.index else None
            if isinstance(layer, StatefulLayer) and state in layer.state_names:
                parsed[key] = (node, state)
                continue
            raise NIRError(
                f"cannot record {key!r}: not a node name, nor '<neuron>.v' / '<neuron>.i' "
                f"(nodes: {', '.join(nodes)})", node=key, field="record")
        return parsed

    # ------------------------------------------------------------------------ running
    def forward(self, inputs: Any, state: NetworkState | None = None,
                record: tuple[str, ...] = (), *, grad: bool = False
                ) -> tuple[dict[str, Tensor], NetworkState]:
        """``grad``: record the autograd graph (to train the layers' parameters), else run
        without it (faster, less memory)."""
        c, flat = self.checked, self.checked.flat
        if isinstance(inputs, Tensor):
            if len(flat.inputs) != 1:
                raise NIRError(f"the graph has {len(flat.inputs)} Input nodes: pass a dict",
                               field="inputs")
            inputs = {flat.inputs[0]: inputs}
        xs = {n: inputs[n].to(device=self.device, dtype=self.dtype) for n in flat.inputs}
        first = xs[flat.inputs[0]]
        T, B = int(first.shape[0]), int(first.shape[1])
        if state is None:
            state = self.initial_state(B)
        recs = self._parse_record(tuple(record))
        results: dict[str, Tensor] = {
            n: torch.empty(T, B, *c.out_shapes[n], dtype=self.dtype, device=self.device)
            for n in flat.outputs}
        for key, (node, st) in recs.items():
            if key not in results:
                shape = c.out_shapes[node] if st is None else c.in_shapes[node]
                results[key] = torch.empty(T, B, *shape, dtype=self.dtype, device=self.device)
        state_recs: dict[str, dict[str, Tensor]] = {}
        for key, (node, st) in recs.items():
            if st is not None:
                state_recs.setdefault(node, {})[st] = results[key]
        keep = set(flat.outputs) | {node for node, st in recs.values() if st is None}
        last_use: dict[str, int] = {}
        for ui, unit in enumerate(c.units):
            for m in unit.members:
                for src in flat.preds[m]:
                    last_use[src] = max(last_use.get(src, -1), ui)
        # the reference's chunking, so that every matrix product has the same number of rows
        rows = chunk_steps(c, T, B, self.dtype, self.chunk_bytes, self.stepwise)
        tc = max(T, 1) if self.whole_time else rows
        with torch.set_grad_enabled(grad):
            for t0 in range(0, T, tc):
                t1 = min(T, t0 + tc)
                ch = _Chunk(state, t1 - t0, B, t0, rows, state_recs, keep)
                vals: dict[str, Tensor] = {n: xs[n][t0:t1] for n in flat.inputs}
                for ui, unit in enumerate(c.units):
                    if ui in self.fusions:
                        self._run_fused(self.fusions[ui], vals, ch)
                    elif unit.cyclic:
                        self._run_cycle(unit.members, vals, ch)
                    elif unit.members[0] not in vals:
                        name = unit.members[0]
                        vals[name] = self._run_node(name, flat.preds[name], vals, ch)
                    for src in [s for s, u in last_use.items() if u == ui]:
                        if src not in keep and src in vals:
                            del vals[src]
                for name in flat.outputs:
                    results[name][t0:t1] = vals[name]
                for key, (node, st) in recs.items():
                    if st is None and key not in flat.outputs:
                        results[key][t0:t1] = vals[node]
        return results, state

    def _stateless(self, layer: nn.Module, x: Tensor, rows: int) -> Tensor:
        """A stateless layer on ``x`` ``[n, B, ...]``: one call on ``[n*B, ...]`` per ``rows``
        steps."""
        n, B = int(x.shape[0]), int(x.shape[1])
        if n > rows:
            return torch.cat([self._stateless(layer, x[t0:t0 + rows], rows)
                              for t0 in range(0, n, rows)])
        y = layer(x.reshape(n * B, *x.shape[2:]))
        return y.reshape(n, B, *y.shape[1:])

    def _run_node(self, name: str, preds: list[str], vals: dict[str, Tensor],
                  ch: _Chunk) -> Tensor:
        layer = self.layer(name)
        x = _combine(layer, [vals[src] for src in preds])
        if not isinstance(layer, StatefulLayer):
            return self._stateless(layer, x, ch.rows)
        out = torch.empty(ch.n, ch.B, *self.checked.out_shapes[name], dtype=self.dtype,
                          device=self.device)
        rec = {k: v[ch.t0:ch.t0 + ch.n] for k, v in ch.state_recs.get(name, {}).items()}
        ch.state.nodes[name] = layer.run(x, ch.state.nodes[name], out, rec or None)
        return out

    def _run_fused(self, fusion: Fusion, vals: dict[str, Tensor], ch: _Chunk) -> None:
        name = fusion.neuron
        loop = fusion.loop or name
        preds = [src for src in self.checked.flat.preds[name] if src != loop]
        vals[name] = self._run_node(name, preds, vals, ch)
        if fusion.loop is not None and fusion.loop in ch.keep:  # its output is recorded
            vals[fusion.loop] = self._stateless(self.layer(fusion.loop), vals[name], ch.rows)

    def _run_cycle(self, members: tuple[str, ...], vals: dict[str, Tensor], ch: _Chunk) -> None:
        outs = {m: torch.empty(ch.n, ch.B, *self.checked.out_shapes[m], dtype=self.dtype,
                               device=self.device) for m in members}
        nodes = ch.state.nodes

        def step(m: str, parts: list[Tensor], t: int) -> Tensor:
            layer = self.layer(m)
            x = _combine(layer, parts)
            if not isinstance(layer, StatefulLayer):
                y: Tensor = layer(x)
                return y
            y, nodes[m] = layer.step(x, nodes[m])
            for key, buf in ch.state_recs.get(m, {}).items():
                buf[ch.t0 + t] = layer.read(nodes[m], key)
            return y

        step_cycle(self.checked, members, vals, ch.state.prev, outs, step)
