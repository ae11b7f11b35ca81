"""The ``norse`` target: a NIR graph as a ``torch.nn.Module`` of Norse 1.1.0 cells and torch
layers, bit for bit equal to the reference (docs/semantics.md) wherever ``check`` reports
nothing.

Mapping (see docs/targets/norse.md):

======================  ==================================================================
NIR node                module
======================  ==================================================================
LIF                     ``norse.torch.LIFBoxCell`` (input pre-scaled by ``r`` when r != 1)
LI                      ``norse.torch.LIBoxCell`` (input pre-scaled by ``r`` when r != 1)
CubaLIF                 ``norse.torch.LIFCell`` (inputs pre-scaled by ``w_in``; r must be 1)
CubaLI                  ``norse.torch.LICell`` (inputs pre-scaled by ``w_in``; r must be 1)
IF                      ``norse.torch.IAFCell`` (input pre-scaled by ``dt*r``, starts at 0)
I                       a small torch module (Norse has no pure integrator)
Affine / Linear         ``torch.nn.Linear``
Conv1d / Conv2d         ``torch.nn.Conv1d`` / ``torch.nn.Conv2d``
AvgPool2d / SumPool2d   ``torch.nn.AvgPool2d`` (SumPool: ``divisor_override=1``)
Flatten, Scale,         small torch modules
Threshold, Delay
Input/Output/Identity   ``torch.nn.Identity``
======================  ==================================================================

Execution mirrors the reference so that matrix products see the same shapes (CPU BLAS may
round a product differently for a different number of rows): time is cut into the same chunks,
a stateless layer outside a cycle runs once per chunk on ``[Tc*B, ...]``, a Norse cell steps
through the chunk one step at a time, and the nodes of a recurrent cycle step together.
``stepwise=True`` (a target option) steps every layer one step at a time (Tc = 1), as the
reference's ``stepwise=True`` does.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import nir
import numpy as np
import torch
from torch import Tensor, nn

with warnings.catch_warnings():  # Norse 1.1.0 uses the deprecated torch.jit.script at import
    warnings.simplefilter("ignore")
    import norse
    from norse.torch.functional.iaf import IAFFeedForwardState, IAFParameters
    from norse.torch.functional.leaky_integrator import LIParameters, LIState
    from norse.torch.functional.leaky_integrator_box import LIBoxParameters, LIBoxState
    from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters
    from norse.torch.functional.reset import reset_subtract, reset_value
    from norse.torch.module.iaf import IAFCell
    from norse.torch.module.leaky_integrator import LICell
    from norse.torch.module.leaky_integrator_box import LIBoxCell
    from norse.torch.module.lif import LIFCell
    from norse.torch.module.lif_box import LIFBoxCell

from nrf_nir.errors import NIRError
from nrf_nir.functional import delay_line
from nrf_nir.reference import DEFAULT_CHUNK_BYTES, chunk_steps, default_device, resolve_dtype
from nrf_nir.semantics import Semantics
from nrf_nir.targets import Options, Violation
from nrf_nir.validate import Checked, Identity, Shape

NAME = "norse"
NORSE_VERSION = getattr(norse, "__version__", "unknown")

#: Spike function of every Norse cell: ``heaviside(v - v_th)`` = ``v > v_th`` exactly (IEEE
#: subtraction of two finite floats is zero only when they are equal). Same forward values as
#: Norse's default "super" surrogate, without its autograd bookkeeping.
_METHOD = "heaviside"

_LEAKY = (nir.LI, nir.LIF, nir.CubaLI, nir.CubaLIF)
_SPIKING = (nir.IF, nir.LIF, nir.CubaLIF)
_CUBA = (nir.CubaLI, nir.CubaLIF)


# --------------------------------------------------------------------------------------------
# check: what Norse cannot express exactly
# --------------------------------------------------------------------------------------------

def violations(checked: Checked, semantics: Semantics) -> list[Violation]:
    """Everything of ``checked`` that Norse 1.1.0 cannot compute as the reference does."""
    out: list[Violation] = []

    def add(node: str, fld: str, message: str) -> None:
        out.append(Violation(NAME, node, fld, message))

    for name, node in checked.flat.nodes.items():
        p = checked.params[name]
        kind = type(node).__name__
        if isinstance(node, _LEAKY) and semantics.integration == "exponential":
            add(name, "integration",
                f"{kind}: Norse integrates with forward Euler only; the graph asks for "
                "'exponential' integration")
        if isinstance(node, _SPIKING) and semantics.threshold == "ge":
            add(name, "threshold",
                f"{kind}: Norse spikes on v > v_th (heaviside of v - v_th); the graph asks for "
                "'ge' (v >= v_th)")
        if semantics.reset == "subtract":
            if isinstance(node, nir.IF):
                add(name, "reset", "IF: Norse's IAFCell resets to v_reset only; the graph asks "
                    "for 'subtract'")
            elif isinstance(node, nir.CubaLIF):
                add(name, "reset", "CubaLIF: Norse's LIFCell resets to v_reset only; the graph "
                    "asks for 'subtract'")
            elif isinstance(node, nir.LIF) and np.any(p["v_reset"] != 0):
                add(name, "v_reset",
                    "LIF with 'subtract' reset: Norse's reset_subtract subtracts v_th, which "
                    "equals v_th - v_reset only where v_reset == 0 (here v_reset is nonzero)")
        if isinstance(node, _CUBA) and np.any(p["r"] != 1):
            add(name, "r",
                f"{kind}: Norse's {'LIFCell' if isinstance(node, nir.CubaLIF) else 'LICell'} "
                "has no input resistance (v += c*((v_leak - v) + i)); r must be exactly 1")
    return out


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------

def _tensor(arr: np.ndarray, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A parameter as a tensor broadcasting against ``[B, *shape]`` (0-d when scalar); float64
    values rounded once to ``dtype``, as the reference does."""
    if arr.size == 1:
        return torch.tensor(float(arr.reshape(-1)[0]), dtype=dtype, device=device)
    return torch.as_tensor(arr, device=device).to(dtype)


def _unless(arr: np.ndarray, neutral: float, dtype: torch.dtype,
            device: torch.device) -> Tensor | None:
    """None when ``arr`` is exactly ``neutral`` everywhere (the operation is skipped: exact)."""
    return None if np.all(arr == neutral) else _tensor(arr, dtype, device)


def _weight(arr: np.ndarray, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.as_tensor(arr, device=device).to(dtype)


class _Stateful(nn.Module):
    """A layer with state: ``init_state(batch)``, ``step(x, state) -> (y, state)``.

    ``separate``: ``step`` receives the incoming edges as a list (edge order) instead of
    their sum. ``state_names``: the state fields that can be recorded.
    """

    separate = False
    state_names: tuple[str, ...] = ()

    def init_state(self, batch: int) -> Any:
        raise NotImplementedError

    def step(self, x: Any, state: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def run(self, x: Any, state: Any, out: Tensor,
            record: dict[str, Tensor] | None) -> Any:
        """Step through ``x`` ``[Tc, B, ...]`` (a list of them when ``separate``), writing
        ``out[t]`` and the recorded state fields; return the final state."""
        for t in range(out.shape[0]):
            y, state = self.step([xi[t] for xi in x] if self.separate else x[t], state)
            out[t] = y
            if record:
                for key, buf in record.items():
                    buf[t] = getattr(state, key)
        return state


class _NorseNeuron(_Stateful):
    """A Norse cell with the input scaling and explicit initial state of the contract."""

    def __init__(self, cell: nn.Module, *, shape: Shape, v0: Tensor, scale: Tensor | None,
                 synapse: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.cell, self.shape, self.v0, self.scale = cell, shape, v0, scale
        self.dtype = dtype
        self.synapse = synapse
        # The current jumps once per incoming edge, in edge order: ``(i + a) + b``. All but
        # the last jump are added to the state's ``i``; the cell adds the last one.
        self.separate = synapse
        self.state_names = ("v", "i") if synapse else ("v",)
        if isinstance(cell, LIFBoxCell):
            self.state_type: Any = LIFBoxFeedForwardState
        elif isinstance(cell, LIBoxCell):
            self.state_type = LIBoxState
        elif isinstance(cell, LIFCell):
            self.state_type = LIFFeedForwardState
        elif isinstance(cell, LICell):
            self.state_type = LIState
        else:
            self.state_type = IAFFeedForwardState

    def init_state(self, batch: int) -> Any:
        v = self.v0.expand(batch, *self.shape).clone()
        if self.synapse:
            i = torch.zeros(batch, *self.shape, dtype=self.dtype, device=v.device)
            return self.state_type(v=v, i=i)
        return self.state_type(v=v)

    def step(self, x: Any, state: Any) -> tuple[Tensor, Any]:
        if not self.synapse:
            return self.cell(x if self.scale is None else self.scale * x, state)
        jumps = [xi if self.scale is None else self.scale * xi for xi in x]
        i = state.i
        for jump in jumps[:-1]:
            i = i + jump
        return self.cell(jumps[-1], self.state_type(v=state.v, i=i))


class IState(NamedTuple):
    v: Tensor


class Integrator(_Stateful):
    """NIR ``I``: ``v = v + (dt*r) * x``; ``y = v`` (Norse has no pure integrator)."""

    state_names = ("v",)

    def __init__(self, dt_r: Tensor, shape: Shape, dtype: torch.dtype,
                 device: torch.device) -> None:
        super().__init__()
        self.dt_r, self.shape, self.dtype, self.device = dt_r, shape, dtype, device

    def init_state(self, batch: int) -> IState:
        return IState(torch.zeros(batch, *self.shape, dtype=self.dtype, device=self.device))

    def step(self, x: Tensor, state: IState) -> tuple[Tensor, IState]:
        v = state.v + self.dt_r * x
        return v, IState(v)


class Delay(_Stateful):
    """NIR ``Delay``: ``y[t] = x[t - d]`` per element, ``d = round(delay / dt)`` steps."""

    def __init__(self, steps: np.ndarray, shape: Shape, dtype: torch.dtype,
                 device: torch.device) -> None:
        super().__init__()
        self.shape, self.dtype, self.device = shape, dtype, device
        self.depth = int(steps.max()) if steps.size else 0
        self.uniform = steps.size == 1 or bool(np.all(steps == steps.reshape(-1)[0]))
        self.d = int(steps.reshape(-1)[0]) if steps.size else 0
        self.steps = torch.as_tensor(np.broadcast_to(steps, shape).copy(), device=device)

    def init_state(self, batch: int) -> Tensor:
        return torch.zeros(self.depth, batch, *self.shape, dtype=self.dtype, device=self.device)

    def run(self, x: Tensor, state: Tensor, out: Tensor,
            record: dict[str, Tensor] | None) -> Tensor:
        y, history = delay_line(state, x, None if self.uniform else self.steps, self.d)
        out.copy_(y)
        return history

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        out = torch.empty_like(x).unsqueeze(0)
        state = self.run(x.unsqueeze(0), state, out, None)
        return out[0], state


class Scale(nn.Module):
    """NIR ``Scale``: ``y = x * s``."""

    def __init__(self, scale: Tensor) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class Threshold(nn.Module):
    """NIR ``Threshold``: ``y = x > theta`` (``x >= theta`` with ``threshold = "ge"``)."""

    def __init__(self, theta: Tensor, ge: bool) -> None:
        super().__init__()
        self.theta, self.ge = theta, ge

    def forward(self, x: Tensor) -> Tensor:
        return (x >= self.theta if self.ge else x > self.theta).to(x.dtype)


class Reshape(nn.Module):
    """NIR ``Flatten``: a per-sample reshape to the inferred output shape."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)


def _linear(p: dict[str, Any], dtype: torch.dtype, device: torch.device) -> nn.Linear:
    w = p["weight"]
    layer = nn.utils.skip_init(nn.Linear, w.shape[1], w.shape[0], bias="bias" in p,
                               device=device, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(_weight(w, dtype, device))
        if "bias" in p:
            layer.bias.copy_(_weight(p["bias"], dtype, device))
    return layer


def _conv(nd: int, p: dict[str, Any], dtype: torch.dtype, device: torch.device) -> nn.Module:
    w = p["weight"]
    has_bias = bool(np.any(p["bias"]))  # the reference passes no bias when it is all zero
    cls = nn.Conv1d if nd == 1 else nn.Conv2d
    layer = nn.utils.skip_init(cls, w.shape[1] * p["groups"], w.shape[0], tuple(w.shape[2:]),
                               stride=p["stride"], padding=p["padding"],
                               dilation=p["dilation"], groups=p["groups"], bias=has_bias,
                               device=device, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(_weight(w, dtype, device))
        if has_bias:
            layer.bias.copy_(_weight(p["bias"], dtype, device))
    return layer


def make_layer(node: nir.NIRNode, p: dict[str, Any], in_shape: Shape, out_shape: Shape,
               sem: Semantics, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """The module of one validated node (which ``violations`` found expressible)."""
    dt = sem.require_dt()

    def t(arr: np.ndarray) -> Tensor:
        return _tensor(arr, dtype, device)

    zero = torch.zeros((), dtype=dtype, device=device)
    if isinstance(node, (nir.Input, nir.Output, Identity)):
        return nn.Identity()
    if isinstance(node, (nir.Affine, nir.Linear)):
        return _linear(p, dtype, device)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return _conv(1 if isinstance(node, nir.Conv1d) else 2, p, dtype, device)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        return nn.AvgPool2d(p["kernel_size"], p["stride"], p["padding"], count_include_pad=True,
                            divisor_override=1 if isinstance(node, nir.SumPool2d) else None)
    if isinstance(node, nir.Flatten):
        return Reshape(out_shape)
    if isinstance(node, nir.Scale):
        return Scale(t(p["scale"]))
    if isinstance(node, nir.Threshold):
        return Threshold(t(p["threshold"]), sem.threshold == "ge")
    if isinstance(node, nir.Delay):
        with np.errstate(all="ignore"):
            steps = np.round(p["delay"] / dt).astype(np.int64)
        return Delay(steps, in_shape, dtype, device)
    if isinstance(node, (nir.I, nir.IF)):
        # dt*r in float64, rounded once; a factor of exactly 1 is skipped (exact)
        dt_r = dt * p["r"]
        if isinstance(node, nir.I):
            return Integrator(t(dt_r), in_shape, dtype, device)
        iaf = IAFCell(IAFParameters(v_th=t(p["v_threshold"]), v_reset=t(p["v_reset"]),
                                    method=_METHOD), dt=dt)
        # IAFCell would start at v_reset; the contract starts I/IF at 0
        return _NorseNeuron(iaf, shape=in_shape, v0=zero, scale=_unless(dt_r, 1.0, dtype, device),
                            synapse=False, dtype=dtype)
    if isinstance(node, _LEAKY):
        synapse = isinstance(node, _CUBA)
        v_leak = t(p["v_leak"])
        v0 = v_leak if sem.initial_state == "leak" else zero
        # tau_mem_inv = 1/tau in float64, rounded once: Norse computes dt * tau_mem_inv,
        # exactly the reference's coefficient
        tau_mem_inv = t(1.0 / (p["tau_mem"] if synapse else p["tau"]))
        if isinstance(node, nir.LIF):
            cell: nn.Module = LIFBoxCell(LIFBoxParameters(
                tau_mem_inv=tau_mem_inv, v_leak=v_leak, v_th=t(p["v_threshold"]),
                v_reset=t(p["v_reset"]), method=_METHOD,
                reset_method=reset_subtract if sem.reset == "subtract" else reset_value), dt=dt)
        elif isinstance(node, nir.LI):
            cell = LIBoxCell(LIBoxParameters(tau_mem_inv=tau_mem_inv, v_leak=v_leak), dt=dt)
        elif isinstance(node, nir.CubaLIF):
            cell = LIFCell(LIFParameters(
                tau_syn_inv=t(1.0 / p["tau_syn"]), tau_mem_inv=tau_mem_inv, v_leak=v_leak,
                v_th=t(p["v_threshold"]), v_reset=t(p["v_reset"]), method=_METHOD), dt=dt)
        else:
            cell = LICell(LIParameters(tau_syn_inv=t(1.0 / p["tau_syn"]),
                                       tau_mem_inv=tau_mem_inv, v_leak=v_leak), dt=dt)
        scale = _unless(p["w_in"] if synapse else p["r"], 1.0, dtype, device)
        return _NorseNeuron(cell, shape=in_shape, v0=v0, scale=scale, synapse=synapse,
                            dtype=dtype)
    raise NIRError(f"the norse target has no mapping for {type(node).__name__}", field="type")


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------

@dataclass
class NetworkState:
    """The state of a :class:`NorseNetwork` between calls.

    nodes: node name -> its Norse state (``LIFBoxFeedForwardState``, ``LIFFeedForwardState``
    ...), or a delay line. prev: source of each recurrent (back) edge -> its last output.
    """

    nodes: dict[str, Any] = field(default_factory=dict)
    prev: dict[str, Tensor] = field(default_factory=dict)


class NorseNetwork(nn.Module):
    """A validated NIR graph as Norse cells and torch layers.

    ``forward(inputs, state=None, record=())`` runs ``[T, B, *shape]`` inputs (one tensor, or a
    dict keyed by the graph's Input nodes) and returns ``(results, state)``: results maps each
    Output node (and each recorded name: a node's output, or ``"<neuron>.v"`` /
    ``"<neuron>.i"``) to ``[T, B, ...]``. Pass the returned state back to continue a run.
    """

    def __init__(self, checked: Checked, semantics: Semantics, *, dtype: Any = None,
                 device: Any = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 stepwise: bool = False) -> None:
        super().__init__()
        self.checked, self.semantics = checked, semantics
        self.dt = semantics.require_dt()
        self.dtype = resolve_dtype(dtype)
        self.device = torch.device(device) if device is not None else default_device()
        self.chunk_bytes, self.stepwise = int(chunk_bytes), bool(stepwise)
        flat = checked.flat
        self.names = list(flat.nodes)
        self.index = {name: k for k, name in enumerate(self.names)}
        self.layers = nn.ModuleList([
            make_layer(node, checked.params[name], checked.in_shapes[name],
                       checked.out_shapes[name], semantics, self.dtype, self.device)
            for name, node in flat.nodes.items()])

    def layer(self, name: str) -> nn.Module:
        return self.layers[self.index[name]]

    def initial_state(self, batch: int) -> NetworkState:
        c = self.checked
        return NetworkState(
            nodes={n: m.init_state(batch) for n, m in zip(self.names, self.layers, strict=True)
                   if isinstance(m, _Stateful)},
            prev={src: torch.zeros(batch, *c.out_shapes[src], dtype=self.dtype,
                                   device=self.device) for src, _ in sorted(c.back)})

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
            if isinstance(layer, _Stateful) and state in layer.state_names:
                parsed[key] = (node, state)
                continue
            raise NIRError(
                f"cannot record {key!r}: not a node name, nor '<neuron>.v' / '<neuron>.i' "
                f"(nodes: {', '.join(nodes)})", node=key, field="record")
        return parsed

    # ------------------------------------------------------------------------ running
    def forward(self, inputs: Any, state: NetworkState | None = None,
                record: tuple[str, ...] = ()) -> tuple[dict[str, Tensor], NetworkState]:
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
        tc = chunk_steps(c, T, B, self.dtype, self.chunk_bytes, self.stepwise)
        with torch.no_grad():
            for t0 in range(0, T, tc):
                t1 = min(T, t0 + tc)
                vals: dict[str, Tensor] = {n: xs[n][t0:t1] for n in flat.inputs}
                for ui, unit in enumerate(c.units):
                    if unit.cyclic:
                        self._run_cycle(unit.members, vals, state, t1 - t0, B, t0, state_recs)
                    elif unit.members[0] not in vals:
                        name = unit.members[0]
                        vals[name] = self._run_node(name, vals, state, t1 - t0, B, t0,
                                                    state_recs)
                    for src in [s for s, u in last_use.items() if u == ui]:
                        if src not in keep and src in vals:
                            del vals[src]
                for name in flat.outputs:
                    results[name][t0:t1] = vals[name]
                for key, (node, st) in recs.items():
                    if st is None and key not in flat.outputs:
                        results[key][t0:t1] = vals[node]
        return results, state

    def _run_node(self, name: str, vals: dict[str, Tensor], state: NetworkState, n: int, B: int,
                  t0: int, state_recs: dict[str, dict[str, Tensor]]) -> Tensor:
        layer = self.layer(name)
        parts = [vals[src] for src in self.checked.flat.preds[name]]
        if isinstance(layer, _Stateful) and layer.separate:
            x: Any = parts
        else:
            x = parts[0]
            for part in parts[1:]:
                x = x + part
        if not isinstance(layer, _Stateful):
            y = layer(x.reshape(n * B, *x.shape[2:]))
            return y.reshape(n, B, *y.shape[1:])
        out = torch.empty(n, B, *self.checked.out_shapes[name], dtype=self.dtype,
                          device=self.device)
        rec = {k: v[t0:t0 + n] for k, v in state_recs.get(name, {}).items()}
        state.nodes[name] = layer.run(x, state.nodes[name], out, rec or None)
        return out

    def _run_cycle(self, members: tuple[str, ...], vals: dict[str, Tensor],
                   state: NetworkState, n: int, B: int, t0: int,
                   state_recs: dict[str, dict[str, Tensor]]) -> None:
        c, flat = self.checked, self.checked.flat
        inside = set(members)
        outs = {m: torch.empty(n, B, *c.out_shapes[m], dtype=self.dtype, device=self.device)
                for m in members}
        prev = state.prev
        for t in range(n):
            cur: dict[str, Tensor] = {}
            for m in members:
                parts = [prev[src] if (src, m) in c.back else cur[src] if src in inside
                         else vals[src][t] for src in flat.preds[m]]
                layer = self.layer(m)
                x: Any = parts
                if not (isinstance(layer, _Stateful) and layer.separate):
                    x = parts[0]
                    for part in parts[1:]:
                        x = x + part
                if isinstance(layer, _Stateful):
                    y, state.nodes[m] = layer.step(x, state.nodes[m])
                    for key, buf in state_recs.get(m, {}).items():
                        buf[t0 + t] = getattr(state.nodes[m], key)
                else:
                    y = layer(x)
                cur[m] = y
                outs[m][t] = y
            for src in prev:
                if src in inside:
                    prev[src] = cur[src]
        vals.update(outs)


# --------------------------------------------------------------------------------------------
# the target
# --------------------------------------------------------------------------------------------

class NorseTarget:
    name = NAME
    description = (f"Norse {NORSE_VERSION} cells (LIFBoxCell, LIBoxCell, LIFCell, LICell, "
                   "IAFCell) and torch layers; bit-exact to the reference")

    def check(self, checked: Checked, semantics: Semantics) -> list[Violation]:
        return violations(checked, semantics)

    def lower(self, checked: Checked, semantics: Semantics, options: Options) -> NorseNetwork:
        extra = dict(options.extra or {})
        unknown = sorted(set(extra) - {"chunk_bytes", "stepwise"})
        if unknown:
            raise NIRError(f"unknown option(s) for the norse target: {', '.join(unknown)} "
                           "(known: chunk_bytes, stepwise)", field="options")
        found = violations(checked, semantics)
        if found:
            raise NIRError("the norse target cannot run this graph: "
                           + "; ".join(str(v) for v in found), field="target")
        return NorseNetwork(checked, semantics, dtype=options.dtype, device=options.device,
                            **extra)

    def run(self, lowered: NorseNetwork, inputs: Mapping[str, Tensor],
            record: tuple[str, ...]) -> dict[str, Tensor]:
        results, _ = lowered(dict(inputs), record=tuple(record))
        return results


TARGET = NorseTarget()
