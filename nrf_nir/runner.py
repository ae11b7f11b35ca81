"""The one graph executor: runs a validated graph as one torch module per node.

The reference (:class:`nrf_nir.reference.Program`) and the torch-based targets (norse, snntorch,
rockpool) differ only in the layers they hand to :class:`GraphRunner`; how a graph runs is here
and only here (docs/semantics.md, "Execution"). Time is cut into chunks of as many steps as fit
``chunk_bytes`` of node outputs (:func:`chunk_steps`; ``stepwise``: 1 step), units run in
schedule order, a stateless layer runs once per chunk on ``[Tc*B, ...]`` (so every target's
matrix products see the reference's number of rows), a :class:`StatefulLayer` steps through the
chunk, the nodes of a recurrent cycle step together (back edges carry the previous step's
output) and values are freed after their last use. Two options cover the frameworks' ways:
``fusions`` (cycles whose recurrence a neuron layer computes itself, e.g. snnTorch's ``RLeaky``)
and ``whole_time`` (stateful layers see all time steps at once, e.g. Rockpool's modules).

Torch only: no framework is imported here.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import NIRError
from .semantics import Semantics
from .validate import Checked

#: Default memory budget (bytes) for the values of one chunk of time steps: cache-sized, so
#: that a chunk's activations stay in cache (measured on the benchmark nets: 4-16 MiB is
#: 1.4-1.9x faster than 256 MiB; benchmarks/README.md).
DEFAULT_CHUNK_BYTES = 8 * 2**20


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: Any) -> torch.dtype:
    """``None`` -> float32; accepts torch dtypes and the strings float32/float64."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        table = {"float32": torch.float32, "float64": torch.float64, "float": torch.float32,
                 "double": torch.float64}
        if dtype not in table:
            raise NIRError(f"dtype must be float32 or float64, got {dtype!r}", field="dtype")
        return table[dtype]
    if dtype not in (torch.float32, torch.float64):
        raise NIRError(f"dtype must be float32 or float64, got {dtype!r}", field="dtype")
    return dtype


def resolve(dtype: Any, device: Any) -> tuple[torch.dtype, torch.device]:
    """The run dtype (float32 by default) and device (CUDA when present by default)."""
    return resolve_dtype(dtype), torch.device(device) if device is not None else default_device()


def chunk_steps(checked: Checked, steps: int, batch: int, dtype: torch.dtype,
                chunk_bytes: int = DEFAULT_CHUNK_BYTES, stepwise: bool = False) -> int:
    """Time steps per chunk: as many as fit ``chunk_bytes`` of node outputs (1 when
    ``stepwise``)."""
    if stepwise:
        return 1
    per_step = batch * torch.finfo(dtype).bits // 8 * sum(
        math.prod(s) for s in checked.out_shapes.values())
    return max(1, min(steps, chunk_bytes // max(per_step, 1)))


def all_finite(x: Tensor) -> bool:
    """A finite sum proves every element finite; only a non-finite one needs the exact check."""
    return not x.is_floating_point() or bool(torch.isfinite(x.sum())) or \
        bool(torch.isfinite(x).all())


@dataclass(frozen=True)
class NonFinite:
    """Where a run first produced NaN or inf: ``node``, time ``step``, ``field`` ("output" or
    a state name, "v" / "i") and ``kind`` ("NaN" or "inf")."""

    node: str
    step: int
    field: str
    kind: str


class StatefulLayer(nn.Module):
    """A layer with state: ``init_state(batch)``, ``step(x, state) -> (y, state)`` on
    ``[B, *in]``. ``run`` may update the state it is given in place: the runner hands each
    layer a state of its own (fresh, or a copy of the caller's).

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
    rows: int  # steps per stateless call
    state_recs: dict[str, dict[str, Tensor]]
    keep: set[str]
    calls: dict[str, Callable[[Tensor], Tensor]]  # stateless node -> its layer's call


class _Found(Exception):
    def __init__(self, where: NonFinite) -> None:
        self.where = where


def _combine(layer: nn.Module, parts: list[Tensor]) -> Any:
    """A node's input: the sum of its incoming edges in edge order (their list for a
    ``separate`` layer)."""
    if isinstance(layer, StatefulLayer) and layer.separate:
        return parts
    x = parts[0]
    for part in parts[1:]:
        x = x + part
    return x


def _caller(layer: nn.Module) -> Callable[[Tensor], Tensor]:
    """``layer.forward`` when calling the module would only add ``nn.Module``'s dispatch (no
    hook, no ``__call__`` of its own), else the module: a stateless layer is called once per
    node and chunk, so the dispatch is most of the Python cost of a many-chunk run."""
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    module_hooks = torch.nn.modules.module
    if type(layer).__call__ is nn.Module.__call__ and \
            not any(getattr(layer, h, None) for h in hooks) and \
            not any(getattr(module_hooks, f"_global{h}", True) for h in hooks):
        forward: Callable[[Tensor], Tensor] = layer.forward
        return forward
    return layer


def _tensors(state: Any) -> Iterator[Tensor]:
    """The tensors of a layer's state (a tensor, a tuple of them, a dataclass)."""
    if isinstance(state, Tensor):
        yield state
    elif isinstance(state, (tuple, list)):
        for item in state:
            yield from _tensors(item)
    elif dataclasses.is_dataclass(state) and not isinstance(state, type):
        for f in dataclasses.fields(state):
            yield from _tensors(getattr(state, f.name))


def _kind(x: Tensor) -> str:
    return "NaN" if bool(torch.isnan(x).any()) else "inf"


class GraphRunner(nn.Module):
    """A validated graph as per-node torch layers.

    ``forward(inputs, state=None, record=())`` runs ``[T, B, *shape]`` inputs (one tensor, or a
    dict keyed by the graph's Input nodes) and returns ``(results, state)``: results maps each
    Output node (and each recorded name: a node's output, or ``"<neuron>.v"`` /
    ``"<neuron>.i"``) to ``[T, B, ...]``. Pass the returned state back to continue a run.
    ``run(inputs, record)`` returns the results of a run from the initial state.

    layers: node name -> its module (a :class:`StatefulLayer` when it has state). fusions:
    index of a cyclic unit in ``checked.units`` -> the :class:`Fusion` that runs it.
    whole_time: stateful layers run on all the steps at once (stateless layers still on
    ``chunk_bytes`` chunks). progress: a progress bar (steps) on long runs.
    """

    def __init__(self, checked: Checked, semantics: Semantics, layers: Mapping[str, nn.Module],
                 *, dtype: Any = None, device: Any = None,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, stepwise: bool = False,
                 fusions: Mapping[int, Fusion] | None = None, whole_time: bool = False,
                 progress: bool = False) -> None:
        super().__init__()
        self.checked, self.semantics = checked, semantics
        self.dt = semantics.require_dt()
        self.dtype, self.device = resolve(dtype, device)
        self.chunk_bytes, self.stepwise = int(chunk_bytes), bool(stepwise)
        self.whole_time, self.progress = bool(whole_time), bool(progress)
        self.names = list(checked.flat.nodes)
        self.index = {name: k for k, name in enumerate(self.names)}
        self.layers = nn.ModuleList([layers[name] for name in self.names])
        self.by_name: dict[str, nn.Module] = dict(zip(self.names, self.layers, strict=True))
        self.fusions: dict[int, Fusion] = dict(fusions or {})
        # back edges stepped here (those of fused cycles live inside their neuron's layer)
        inner = {(f.loop or f.neuron, f.neuron) for f in self.fusions.values()}
        self.back = sorted(e for e in checked.back if e not in inner)
        self.last_use: dict[str, int] = {}  # value -> index of the last unit that reads it
        for ui, unit in enumerate(checked.units):
            for m in unit.members:
                for src in checked.flat.preds[m]:
                    self.last_use[src] = max(self.last_use.get(src, -1), ui)
        #: Whether every layer's state was finite at the end of the last run (a NaN in a
        #: membrane can leave the spikes finite); see :meth:`first_nonfinite`.
        self.finite_states = True

    def layer(self, name: str) -> nn.Module:
        return self.by_name[name]

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
    def run(self, inputs: Any, record: tuple[str, ...] = ()) -> dict[str, Tensor]:
        """The results of :meth:`forward` from the initial state."""
        results, _ = self(inputs, record=tuple(record))
        return results

    def forward(self, inputs: Any, state: NetworkState | None = None,
                record: tuple[str, ...] = (), *, grad: bool = False, _watch: bool = False
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
        else:  # the caller's state stays as it was: layers may update their own in place
            state = copy.deepcopy(state)
        recs = self._parse_record(tuple(record))
        rows = chunk_steps(c, T, B, self.dtype, self.chunk_bytes, self.stepwise)
        tc = max(T, 1) if self.whole_time else rows
        single = tc == T  # one chunk: the results are the chunk's values, no copy
        results: dict[str, Tensor] = {}
        for key, (node, st) in [*((n, (n, None)) for n in flat.outputs), *recs.items()]:
            if key not in results and (st is not None or not single):
                shape = c.out_shapes[node] if st is None else c.in_shapes[node]
                results[key] = torch.empty(T, B, *shape, dtype=self.dtype, device=self.device)
        state_recs: dict[str, dict[str, Tensor]] = {}
        for key, (node, st) in recs.items():
            if st is not None:
                state_recs.setdefault(node, {})[st] = results[key]
        keep = set(flat.outputs) | {node for node, st in recs.values() if st is None}
        shown = [*((n, n) for n in flat.outputs),
                 *((key, node) for key, (node, st) in recs.items()
                   if st is None and key not in flat.outputs)]
        calls = {n: _caller(m) for n, m in self.by_name.items()
                 if not isinstance(m, StatefulLayer)}
        bar = None
        if self.progress and not _watch:
            from tqdm.auto import tqdm

            bar = tqdm(total=T, unit="step", desc="run", leave=False)
        with torch.set_grad_enabled(grad):
            for t0 in range(0, T, tc):
                t1 = min(T, t0 + tc)
                ch = _Chunk(state, t1 - t0, B, t0, rows, state_recs, keep, calls)
                vals: dict[str, Tensor] = {n: xs[n][t0:t1] for n in flat.inputs}
                for ui, unit in enumerate(c.units):
                    if ui in self.fusions:
                        self._run_fused(self.fusions[ui], vals, ch)
                    elif unit.cyclic:
                        self._run_cycle(unit.members, vals, ch)
                    elif unit.members[0] not in vals:
                        name = unit.members[0]
                        vals[name] = self._run_node(name, flat.preds[name], vals, ch)
                    if _watch:
                        self._watch(unit.members, vals, ch)
                    for src in [s for s, u in self.last_use.items() if u == ui]:
                        if src not in keep and src in vals:
                            del vals[src]
                for key, node in shown:
                    if single:
                        results[key] = vals[node]
                    else:
                        results[key][t0:t1] = vals[node]
                if bar is not None:
                    bar.update(t1 - t0)
        if bar is not None:
            bar.close()
        self.finite_states = all(all_finite(x) for s in state.nodes.values()
                                 for x in _tensors(s))
        return results, state

    def _stateless(self, call: Callable[[Tensor], Tensor], x: Tensor, rows: int) -> Tensor:
        """A stateless layer (its ``call``) on ``x`` ``[n, B, ...]``: one call on
        ``[n*B, ...]`` per ``rows`` steps."""
        n, B = int(x.shape[0]), int(x.shape[1])
        if n > rows:
            return torch.cat([self._stateless(call, x[t0:t0 + rows], rows)
                              for t0 in range(0, n, rows)])
        y = call(x.reshape(n * B, *x.shape[2:]))
        return y.reshape(n, B, *y.shape[1:])

    def _run_node(self, name: str, preds: list[str], vals: dict[str, Tensor],
                  ch: _Chunk) -> Tensor:
        layer = self.layer(name)
        x = _combine(layer, [vals[src] for src in preds])
        if not isinstance(layer, StatefulLayer):
            return self._stateless(ch.calls[name], x, ch.rows)
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
            vals[fusion.loop] = self._stateless(ch.calls[fusion.loop], vals[name], ch.rows)

    def _run_cycle(self, members: tuple[str, ...], vals: dict[str, Tensor], ch: _Chunk) -> None:
        outs = {m: torch.empty(ch.n, ch.B, *self.checked.out_shapes[m], dtype=self.dtype,
                               device=self.device) for m in members}
        nodes = ch.state.nodes

        def step(m: str, parts: list[Tensor], t: int) -> Tensor:
            layer = self.layer(m)
            x = _combine(layer, parts)
            if not isinstance(layer, StatefulLayer):
                return ch.calls[m](x)
            y, nodes[m] = layer.step(x, nodes[m])
            for key, buf in ch.state_recs.get(m, {}).items():
                buf[ch.t0 + t] = layer.read(nodes[m], key)
            return y

        step_cycle(self.checked, members, vals, ch.state.prev, outs, step)

    # ------------------------------------------------------------------------ NaN and inf
    def _watch(self, members: tuple[str, ...], vals: dict[str, Tensor], ch: _Chunk) -> None:
        """Raise ``_Found`` at the first non-finite output (exact step) or state (chunk end)."""
        for m in members:
            y = vals.get(m)
            if y is not None and not all_finite(y):
                bad = ~torch.isfinite(y.reshape(y.shape[0], -1)).all(dim=1)
                step = int(torch.nonzero(bad)[0, 0])
                raise _Found(NonFinite(m, ch.t0 + step, "output", _kind(y[step])))
            layer = self.layer(m)
            if not isinstance(layer, StatefulLayer) or m not in ch.state.nodes:
                continue
            for key in layer.state_names:
                try:
                    value = layer.read(ch.state.nodes[m], key)
                except NIRError:  # a state this layer cannot show in the reference's terms
                    continue
                if not all_finite(value):
                    raise _Found(NonFinite(m, ch.t0 + ch.n - 1, key, _kind(value)))

    def first_nonfinite(self, inputs: Mapping[str, Tensor]) -> NonFinite | None:
        """Run ``inputs`` again from the initial state watching every node after each chunk,
        in execution order, and return where NaN or inf first appeared (None: nowhere). Costs a
        run, so call it only after a run's outputs or final states were found non-finite."""
        try:
            self(dict(inputs), _watch=True)
        except _Found as found:
            return found.where
        return None


def step_cycle(checked: Checked, members: tuple[str, ...], vals: dict[str, Tensor],
               prev: dict[str, Tensor], outs: dict[str, Tensor],
               step: Callable[[str, list[Tensor], int], Tensor]) -> None:
    """Step the nodes of a recurrent cycle together through the chunk's steps (``outs``: node
    -> ``[Tc, B, ...]`` to fill; added to ``vals`` at the end).

    ``step(node, parts, t)`` computes a node's output at step ``t`` from its incoming edges'
    values, in edge order: a back edge carries its source's output of the previous step
    (``prev``, updated here), an edge inside the cycle the current step's, any other edge
    ``vals[src][t]``.
    """
    inside = set(members)
    preds = checked.flat.preds
    for t in range(outs[members[0]].shape[0]):
        cur: dict[str, Tensor] = {}
        for m in members:
            y = step(m, [prev[src] if (src, m) in checked.back else cur[src] if src in inside
                         else vals[src][t] for src in preds[m]], t)
            cur[m] = y
            outs[m][t] = y
        for src in prev:
            if src in inside:
                prev[src] = cur[src]
    vals.update(outs)
