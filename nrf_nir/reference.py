"""The reference simulator: a batched, time-first PyTorch interpreter of NIR graphs.

It implements docs/semantics.md. Execution is layer-wise over chunks of time: a stateless node
(``Affine``, ``Conv2d`` ...) runs once on all the chunk's steps at once (``[Tc*B, ...]``), a
stateful node loops over the chunk's steps, and the nodes of a recurrent cycle are stepped
together. ``stepwise=True`` runs one step at a time everywhere (Tc = 1), like Norse.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from . import functional as fn
from .errors import NIRError
from .semantics import Semantics
from .validate import Checked, Identity, Shape

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


class Kernel:
    """One node's computation. Stateless kernels implement ``apply`` on ``[N, *in]``;
    stateful kernels implement ``init`` and ``step`` on ``[B, *in]``."""

    stateful = False
    state_names: tuple[str, ...] = ()
    #: Receive incoming edges as a list (in edge order) instead of their sum.
    separate_inputs = False

    def apply(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def init(self, batch: int) -> tuple[Tensor, ...]:
        return ()

    def step(self, x: Any, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        return self.apply(x), state

    def run(self, x: Any, state: tuple[Tensor, ...], out: Tensor,
            record: dict[str, Tensor] | None) -> tuple[Tensor, ...]:
        """Step through ``x`` ``[Tc, B, *in]`` (a list of them when ``separate_inputs``)
        writing ``out[t]``; return the final state.

        ``record`` maps a state name to a ``[Tc, B, *shape]`` tensor to fill."""
        for t in range(out.shape[0]):
            xt = [xi[t] for xi in x] if isinstance(x, list) else x[t]
            y, state = self.step(xt, state)
            out[t] = y
            if record:
                for key, buf in record.items():
                    buf[t] = state[self.state_names.index(key)]
        return state


class Passthrough(Kernel):
    def apply(self, x: Tensor) -> Tensor:
        return x


class Dense(Kernel):
    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        self.weight, self.bias = weight, bias

    def apply(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class Scale(Kernel):
    def __init__(self, scale: Tensor) -> None:
        self.scale = scale

    def apply(self, x: Tensor) -> Tensor:
        return x * self.scale


class Conv(Kernel):
    def __init__(self, nd: int, weight: Tensor, bias: Tensor | None, p: dict[str, Any]) -> None:
        self.conv = F.conv1d if nd == 1 else F.conv2d
        self.weight, self.bias = weight, bias
        self.kwargs = {"stride": p["stride"], "padding": p["padding"],
                       "dilation": p["dilation"], "groups": p["groups"]}

    def apply(self, x: Tensor) -> Tensor:
        return self.conv(x, self.weight, self.bias, **self.kwargs)


class Pool(Kernel):
    def __init__(self, p: dict[str, Any], total: bool) -> None:
        self.kwargs = {"kernel_size": p["kernel_size"], "stride": p["stride"],
                       "padding": p["padding"], "count_include_pad": True,
                       "divisor_override": 1 if total else None}

    def apply(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, **self.kwargs)


class Reshape(Kernel):
    def __init__(self, shape: Shape) -> None:
        self.shape = shape

    def apply(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)


class Threshold(Kernel):
    def __init__(self, theta: Tensor, ge: bool) -> None:
        self.theta, self.ge = theta, ge

    def apply(self, x: Tensor) -> Tensor:
        return (x >= self.theta if self.ge else x > self.theta).to(x.dtype)


class Neuron(Kernel):
    """I, IF, LI, LIF, CubaLI and CubaLIF in one kernel, configured by which parts it has."""

    stateful = True

    def __init__(self, *, shape: Shape, dtype: torch.dtype, device: torch.device,
                 v0: Tensor, membrane: str, coeffs: dict[str, Tensor | None],
                 firing: fn.Firing | None, synapse: bool) -> None:
        self.shape, self.dtype, self.device = shape, dtype, device
        self.v0, self.membrane, self.k, self.firing = v0, membrane, coeffs, firing
        self.synapse = synapse
        self.state_names = ("v", "i") if synapse else ("v",)
        # The current jumps once per incoming edge, in edge order: ``(i + a) + b`` as Norse's
        # LIFRecurrentCell computes ``i + W_in x + W_rec z``.
        self.separate_inputs = synapse

    def init(self, batch: int) -> tuple[Tensor, ...]:
        v = self.v0.expand(batch, *self.shape).clone()
        if self.synapse:
            return v, torch.zeros(batch, *self.shape, dtype=self.dtype, device=self.device)
        return (v,)

    def _membrane(self, x: Tensor, v: Tensor) -> Tensor:
        k = self.k
        if self.membrane == "integrate":
            return fn.integrate(x, v, k["dt_r"])  # type: ignore[arg-type]
        if self.membrane == "exponential":
            return fn.leaky_exponential(x, v, k["a"], k["b"], k["r"], k["v_leak"])  # type: ignore[arg-type]
        if self.membrane == "lif":
            return fn.lif_euler(x, v, k["c"], k["r"], k["v_leak"])  # type: ignore[arg-type]
        return fn.li_euler(x, v, k["c"], k["r"], k["v_leak"])  # type: ignore[arg-type]

    def run(self, x: Any, state: tuple[Tensor, ...], out: Tensor,
            record: dict[str, Tensor] | None) -> tuple[Tensor, ...]:
        # The same arithmetic as step(), writing spikes straight into ``out``.
        firing = self.firing
        if firing is None or self.synapse or record:
            return super().run(x, state, out, record)
        if self.membrane == "lif" and self.k["r"] is None and not firing.subtract:
            return (self._run_lif_in_place(x, state[0].clone(), out, firing),)
        (v,) = state
        for t in range(out.shape[0]):
            _, v = firing.fire(self._membrane(x[t], v), out=out[t])
        return (v,)

    def _run_lif_in_place(self, x: Tensor, v: Tensor, out: Tensor, firing: fn.Firing) -> Tensor:
        """The LIF loop with no allocation per step: the same operations, in the same order,
        as ``lif_euler`` then ``Firing.fire`` (value reset): ``v + c*((x + v_leak) - v)``,
        ``z = v > v_th``, then ``v - v*z`` (= 0 where z, else v) plus ``v_reset*z``."""
        c, v_leak = self.k["c"], self.k["v_leak"]
        assert c is not None  # Euler LIF always has its coefficient
        v_reset = firing.v_reset
        reset_zero = firing.reset_is_zero
        tmp = torch.empty_like(v)
        for t in range(out.shape[0]):
            if v_leak is None:
                torch.sub(x[t], v, out=tmp)
            else:
                torch.add(x[t], v_leak, out=tmp)
                tmp.sub_(v)
            tmp.mul_(c)
            v.add_(tmp)
            z = out[t]
            if firing.ge:
                torch.ge(v, firing.v_th, out=z)
            else:
                torch.gt(v, firing.v_th, out=z)
            v.addcmul_(v, z, value=-1.0)
            if not reset_zero:
                v.addcmul_(z, v_reset)
        return v

    def step(self, x: Any, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        v = state[0]
        if self.synapse:
            i = state[1]
            for xi in x if isinstance(x, list) else [x]:
                i = fn.synapse_jump(xi, i, self.k["w_in"])
            v = self._membrane(i, v)
            if self.k["a_syn"] is not None:
                i = self.k["a_syn"] * i
            else:
                i = fn.synapse_decay_euler(i, self.k["neg_c_syn"])  # type: ignore[arg-type]
        else:
            v = self._membrane(x, v)
        if self.firing is None:
            y = v
        else:
            y, v = self.firing.fire(v)
        return y, ((v, i) if self.synapse else (v,))


class Delay(Kernel):
    """``y[t] = x[t - d]`` elementwise, ``d = round(delay / dt)`` steps, zero before start."""

    stateful = True

    def __init__(self, steps: np.ndarray, shape: Shape, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.shape, self.dtype, self.device = shape, dtype, device
        self.depth = int(steps.max()) if steps.size else 0
        self.uniform = steps.size == 1 or bool(np.all(steps == steps.reshape(-1)[0]))
        self.d = int(steps.reshape(-1)[0]) if steps.size else 0
        self.steps = torch.as_tensor(np.broadcast_to(steps, shape).copy(), device=device)

    def init(self, batch: int) -> tuple[Tensor, ...]:
        return (torch.zeros(self.depth, batch, *self.shape, dtype=self.dtype,
                            device=self.device),)

    def run(self, x: Tensor, state: tuple[Tensor, ...], out: Tensor,
            record: dict[str, Tensor] | None) -> tuple[Tensor, ...]:
        y, history = fn.delay_line(state[0], x, None if self.uniform else self.steps, self.d)
        out.copy_(y)
        return (history,)

    def step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        out = torch.empty_like(x).unsqueeze(0)
        new_state = self.run(x.unsqueeze(0), state, out, None)
        return out[0], new_state


def _tensor(arr: np.ndarray, shape: Shape, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A parameter as a tensor that broadcasts against ``[B, *shape]``: 0-d when all its
    values are equal (same numbers, much faster broadcasting)."""
    flat = arr.reshape(-1)
    if flat.size == 1 or bool(np.all(flat == flat[0])):
        return torch.tensor(float(flat[0]), dtype=dtype, device=device)
    return torch.as_tensor(arr, device=device).to(dtype)


def _maybe(arr: np.ndarray, neutral: float, shape: Shape, dtype: torch.dtype,
           device: torch.device) -> Tensor | None:
    """None when the parameter is exactly ``neutral`` everywhere (the operation is skipped,
    which is exact), else the tensor."""
    if np.all(arr == neutral):
        return None
    return _tensor(arr, shape, dtype, device)


def _euler_c(tau: np.ndarray, dt: float, shape: Shape, dtype: torch.dtype,
             device: torch.device) -> Tensor:
    # c = dt * (1/tau): 1/tau in float64, cast, then multiplied by dt in the run dtype,
    # exactly as Norse's ``dt * tau_mem_inv``.
    return dt * _tensor(1.0 / tau, shape, dtype, device)


def make_kernel(name: str, node: nir.NIRNode, p: dict[str, Any], in_shape: Shape,
                out_shape: Shape, sem: Semantics, dtype: torch.dtype,
                device: torch.device) -> Kernel:
    """Build the kernel of one validated node."""
    dt = sem.require_dt()

    def t(arr: np.ndarray) -> Tensor:
        return _tensor(arr, in_shape, dtype, device)

    def full(arr: np.ndarray) -> Tensor:  # weights keep their shape, even when size 1
        return torch.as_tensor(arr, device=device).to(dtype)

    if isinstance(node, (nir.Input, nir.Output, Identity)):
        return Passthrough()
    if isinstance(node, (nir.Affine, nir.Linear)):
        return Dense(full(p["weight"]), full(p["bias"]) if "bias" in p else None)
    if isinstance(node, nir.Scale):
        return Scale(t(p["scale"]))
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        nd = 1 if isinstance(node, nir.Conv1d) else 2
        bias = None if not np.any(p["bias"]) else full(p["bias"])
        return Conv(nd, full(p["weight"]), bias, p)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        return Pool(p, total=isinstance(node, nir.SumPool2d))
    if isinstance(node, nir.Flatten):
        return Reshape(out_shape)
    if isinstance(node, nir.Threshold):
        return Threshold(t(p["threshold"]), sem.threshold == "ge")
    if isinstance(node, nir.Delay):
        with np.errstate(all="ignore"):
            steps = np.round(p["delay"] / dt).astype(np.int64)
        return Delay(steps, in_shape, dtype, device)
    spiking = isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF))
    firing = None
    if spiking:
        firing = fn.Firing(t(p["v_threshold"]), t(p["v_reset"]), ge=sem.threshold == "ge",
                           subtract=sem.reset == "subtract")
    coeffs: dict[str, Tensor | None] = {"r": _maybe(p["r"], 1.0, in_shape, dtype, device)}
    if isinstance(node, (nir.I, nir.IF)):
        v0 = torch.zeros((), dtype=dtype, device=device)
        coeffs["dt_r"] = t(dt * p["r"])  # dt*r in float64, then rounded once
        return Neuron(shape=in_shape, dtype=dtype, device=device, v0=v0, membrane="integrate",
                      coeffs=coeffs, firing=firing, synapse=False)
    synapse = isinstance(node, (nir.CubaLI, nir.CubaLIF))
    tau = p["tau_mem"] if synapse else p["tau"]
    coeffs["v_leak"] = _maybe(p["v_leak"], 0.0, in_shape, dtype, device)
    v0 = t(p["v_leak"]) if sem.initial_state == "leak" else torch.zeros((), dtype=dtype,
                                                                         device=device)
    if sem.integration == "exponential":
        a = np.exp(-dt / tau)
        coeffs["a"], coeffs["b"] = t(a), t(1.0 - a)
        membrane = "exponential"
    else:
        coeffs["c"] = _euler_c(tau, dt, in_shape, dtype, device)
        membrane = "lif" if isinstance(node, nir.LIF) else "li"
    if synapse:
        coeffs["w_in"] = _maybe(p["w_in"], 1.0, in_shape, dtype, device)
        if sem.integration == "exponential":
            coeffs["a_syn"], coeffs["neg_c_syn"] = t(np.exp(-dt / p["tau_syn"])), None
        else:
            coeffs["a_syn"] = None
            coeffs["neg_c_syn"] = -_euler_c(p["tau_syn"], dt, in_shape, dtype, device)
    return Neuron(shape=in_shape, dtype=dtype, device=device, v0=v0, membrane=membrane,
                  coeffs=coeffs, firing=firing, synapse=synapse)


def chunk_steps(checked: Checked, steps: int, batch: int, dtype: torch.dtype,
                chunk_bytes: int = DEFAULT_CHUNK_BYTES, stepwise: bool = False) -> int:
    """Time steps per chunk: as many as fit ``chunk_bytes`` of node outputs (1 when
    ``stepwise``). Targets that mirror the reference's layout (and so its rounding of matrix
    products, which depends on the number of rows) call this too."""
    if stepwise:
        return 1
    per_step = batch * torch.finfo(dtype).bits // 8 * sum(
        math.prod(s) for s in checked.out_shapes.values())
    return max(1, min(steps, chunk_bytes // max(per_step, 1)))


@dataclass
class _Record:
    node: str
    state: str | None  # None: the node's output


@dataclass(frozen=True)
class NonFinite:
    """Where a run first produced NaN or inf: ``node``, time ``step``, ``field`` ("output" or
    a state name, "v" / "i") and ``kind`` ("NaN" or "inf")."""

    node: str
    step: int
    field: str
    kind: str


class _Found(Exception):
    def __init__(self, where: NonFinite) -> None:
        self.where = where


def all_finite(x: Tensor) -> bool:
    """A finite sum proves every element finite; only a non-finite one needs the exact check."""
    return not x.is_floating_point() or bool(torch.isfinite(x.sum())) or \
        bool(torch.isfinite(x).all())


def _kind(x: Tensor) -> str:
    return "NaN" if bool(torch.isnan(x).any()) else "inf"


class Program:
    """A graph lowered to kernels; ``run`` simulates it on ``[T, B, *shape]`` inputs."""

    def __init__(self, checked: Checked, semantics: Semantics, *, dtype: Any = None,
                 device: Any = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 stepwise: bool = False, progress: bool = False) -> None:
        self.checked = checked
        self.progress = progress
        self.semantics = semantics
        self.dt = semantics.require_dt()
        self.dtype = resolve_dtype(dtype)
        self.device = torch.device(device) if device is not None else default_device()
        self.chunk_bytes = chunk_bytes
        self.stepwise = stepwise
        #: Whether every node's state was finite at the end of the last run (a NaN in a
        #: membrane can leave the spikes finite); see :meth:`first_nonfinite`.
        self.finite_states = True
        flat = checked.flat
        self.kernels = {
            name: make_kernel(name, node, checked.params[name], checked.in_shapes[name],
                              checked.out_shapes[name], semantics, self.dtype, self.device)
            for name, node in flat.nodes.items()
        }

    # ---------------------------------------------------------------- recording names
    def _parse_record(self, record: Iterable[str]) -> dict[str, _Record]:
        flat = self.checked.flat
        parsed: dict[str, _Record] = {}
        for key in record:
            if key in flat.nodes:
                parsed[key] = _Record(key, None)
                continue
            node, _, state = key.rpartition(".")
            kernel = self.kernels.get(node)
            if kernel is not None and state in kernel.state_names and isinstance(kernel, Neuron):
                parsed[key] = _Record(node, state)
                continue
            raise NIRError(
                f"cannot record {key!r}: not a node name, nor '<neuron>.v' / '<neuron>.i' "
                f"(nodes: {', '.join(flat.nodes)})", node=key, field="record")
        return parsed

    def shape_of(self, rec: _Record) -> Shape:
        c = self.checked
        return c.out_shapes[rec.node] if rec.state is None else c.in_shapes[rec.node]

    # ---------------------------------------------------------------- running
    def run(self, inputs: Mapping[str, Tensor], record: Iterable[str] = (), *,
            _watch: bool = False) -> dict[str, Tensor]:
        """Simulate. ``inputs`` maps each Input node to a ``[T, B, *shape]`` tensor already of
        this program's dtype and device. Returns outputs and recorded values, ``[T, B, ...]``."""
        c, flat = self.checked, self.checked.flat
        first = inputs[flat.inputs[0]]
        T, B = int(first.shape[0]), int(first.shape[1])
        recs = self._parse_record(record)
        tc = chunk_steps(c, T, B, self.dtype, self.chunk_bytes, self.stepwise)
        single = tc == T  # one chunk: outputs are the chunk's tensors, no copy

        results: dict[str, Tensor] = {}
        for name in flat.outputs:
            if not single:
                results[name] = torch.empty(T, B, *c.out_shapes[name], dtype=self.dtype,
                                            device=self.device)
        for key, rec in recs.items():
            if key not in results and (rec.state is not None or not single):
                results[key] = torch.empty(T, B, *self.shape_of(rec), dtype=self.dtype,
                                           device=self.device)
        state_recs: dict[str, dict[str, Tensor]] = {}
        for key, rec in recs.items():
            if rec.state is not None:
                state_recs.setdefault(rec.node, {})[rec.state] = results[key]
        keep = set(flat.outputs) | {r.node for r in recs.values() if r.state is None}

        states = {n: k.init(B) for n, k in self.kernels.items() if k.stateful}
        prev = {src: torch.zeros(B, *c.out_shapes[src], dtype=self.dtype, device=self.device)
                for src, _ in c.back}
        units = c.units
        last_use: dict[str, int] = {}
        for ui, unit in enumerate(units):
            for m in unit.members:
                for src in flat.preds[m]:
                    last_use[src] = max(last_use.get(src, -1), ui)

        bar = tqdm(total=T, unit="step", desc="reference", disable=not self.progress or _watch,
                   leave=False)
        for t0 in range(0, T, tc):
            t1 = min(T, t0 + tc)
            n = t1 - t0
            bar.update(n)
            vals: dict[str, Tensor] = {name: inputs[name][t0:t1] for name in flat.inputs}
            for ui, unit in enumerate(units):
                if unit.cyclic:
                    self._run_cycle(unit.members, vals, states, prev, n, B, t0, state_recs)
                else:
                    name = unit.members[0]
                    if name not in vals:
                        vals[name] = self._run_node(name, vals, states, n, B, t0, state_recs)
                if _watch:
                    self._watch(unit.members, vals, states, t0, n)
                for src in [s for s, u in last_use.items() if u == ui]:
                    if src not in keep and src in vals:
                        del vals[src]
            for key in [*flat.outputs, *(k for k, r in recs.items() if r.state is None)]:
                value = vals[recs[key].node if key in recs else key]
                if single:
                    results[key] = value
                else:
                    results[key][t0:t1] = value
        bar.close()
        self.finite_states = all(all_finite(s) for st in states.values() for s in st)
        return results

    def _watch(self, members: tuple[str, ...], vals: dict[str, Tensor],
               states: dict[str, tuple[Tensor, ...]], t0: int, n: int) -> None:
        """Raise ``_Found`` at the first non-finite output (exact step) or state (chunk end)."""
        for m in members:
            y = vals.get(m)
            if y is not None and not all_finite(y):
                bad = ~torch.isfinite(y.reshape(y.shape[0], -1)).all(dim=1)
                step = int(torch.nonzero(bad)[0, 0])
                raise _Found(NonFinite(m, t0 + step, "output", _kind(y[step])))
            kernel = self.kernels[m]
            for state_name, value in zip(kernel.state_names, states.get(m, ()), strict=False):
                if not all_finite(value):
                    raise _Found(NonFinite(m, t0 + n - 1, state_name, _kind(value)))

    def first_nonfinite(self, inputs: Mapping[str, Tensor]) -> NonFinite | None:
        """Run ``inputs`` again watching every node after each chunk, in execution order, and
        return where NaN or inf first appeared (None: nowhere). Costs a run, so call it only
        after a run's outputs or final states were found non-finite."""
        moved = {k: v.to(device=self.device, dtype=self.dtype) for k, v in inputs.items()}
        try:
            self.run(moved, _watch=True)
        except _Found as found:
            return found.where
        return None

    def _gather(self, name: str, vals: dict[str, Tensor]) -> Any:
        """The node's input: the sum of its incoming edges in edge order (or their list)."""
        preds = self.checked.flat.preds[name]
        if self.kernels[name].separate_inputs:
            return [vals[src] for src in preds]
        x = vals[preds[0]]
        for src in preds[1:]:
            x = x + vals[src]
        return x

    def _run_node(self, name: str, vals: dict[str, Tensor], states: dict[str, tuple[Tensor, ...]],
                  n: int, B: int, t0: int, state_recs: dict[str, dict[str, Tensor]]) -> Tensor:
        kernel = self.kernels[name]
        x = self._gather(name, vals)
        if not kernel.stateful:
            y = kernel.apply(x.reshape(n * B, *x.shape[2:]))  # stateless: never a list
            return y.reshape(n, B, *y.shape[1:])
        out = torch.empty(n, B, *self.checked.out_shapes[name], dtype=self.dtype,
                          device=self.device)
        rec = {k: v[t0:t0 + n] for k, v in state_recs.get(name, {}).items()}
        states[name] = kernel.run(x, states[name], out, rec or None)
        return out

    def _run_cycle(self, members: tuple[str, ...], vals: dict[str, Tensor],
                   states: dict[str, tuple[Tensor, ...]], prev: dict[str, Tensor], n: int,
                   B: int, t0: int, state_recs: dict[str, dict[str, Tensor]]) -> None:
        c = self.checked
        outs = {m: torch.empty(n, B, *c.out_shapes[m], dtype=self.dtype, device=self.device)
                for m in members}

        def step(m: str, parts: list[Tensor], t: int) -> Tensor:
            kernel = self.kernels[m]
            x: Any = parts
            if not kernel.separate_inputs:
                x = parts[0]
                for part in parts[1:]:
                    x = x + part
            if not kernel.stateful:
                return kernel.apply(x)
            y, states[m] = kernel.step(x, states[m])
            for key, buf in state_recs.get(m, {}).items():
                buf[t0 + t] = states[m][kernel.state_names.index(key)]
            return y

        step_cycle(c, members, vals, prev, outs, step)


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
