"""The reference simulator: a batched, time-first PyTorch interpreter of NIR graphs.

It implements docs/semantics.md: :func:`make_layer` builds each node's layer (the neurons
here, every other node from :mod:`nrf_nir.layers`) and :class:`Program` runs them with the one
graph executor, :class:`nrf_nir.runner.GraphRunner`: a stateless node runs once on all the
chunk's steps at once (``[Tc*B, ...]``), a neuron loops over the chunk's steps, and the nodes
of a recurrent cycle are stepped together. ``stepwise=True`` runs one step at a time everywhere
(Tc = 1), like Norse.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

from . import functional as fn
from . import fused
from .errors import NIRError
from .layers import common_layer, param, param_unless
from .runner import (  # noqa: F401 - the executor's names, re-exported
    DEFAULT_CHUNK_BYTES,
    GraphRunner,
    NonFinite,
    StatefulLayer,
    all_finite,
    chunk_steps,
    default_device,
    resolve,
    resolve_dtype,
)
from .semantics import Semantics, node_semantics
from .validate import Shape


class Neuron(StatefulLayer):
    """I, IF, LI, LIF, CubaLI and CubaLIF in one kernel, configured by which parts it has."""

    def __init__(self, *, shape: Shape, dtype: torch.dtype, device: torch.device,
                 v0: Tensor, membrane: str, coeffs: dict[str, Tensor | None],
                 firing: fn.Firing | None, synapse: bool, fused: bool = True) -> None:
        super().__init__()
        self.shape, self.dtype, self.device = shape, dtype, device
        self.v0, self.membrane, self.k, self.firing = v0, membrane, coeffs, firing
        self.synapse = synapse
        # the fused CPU kernel (nrf_nir.fused): allowed, what it computes, its [8, P] parameters
        self.fused_allowed = fused
        self.fused_kind = self._fused_kind()
        self._fused_params: np.ndarray | None = None
        self.state_names = ("v", "i") if synapse else ("v",)
        # delayed firing keeps the last step's spikes as a last, unnamed state
        self.delayed = firing is not None and firing.delayed
        # The current jumps once per incoming edge, in edge order: ``(i + a) + b`` as Norse's
        # LIFRecurrentCell computes ``i + W_in x + W_rec z``.
        self.separate = synapse

    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        v = self.v0.expand(batch, *self.shape).clone()
        state: tuple[Tensor, ...] = (v,)
        if self.synapse:
            state += (torch.zeros(batch, *self.shape, dtype=self.dtype, device=self.device),)
        if self.delayed:
            state += (torch.zeros(batch, *self.shape, dtype=self.dtype, device=self.device),)
        return state

    def read(self, state: tuple[Tensor, ...], key: str) -> Tensor:
        return state[self.state_names.index(key)]

    def _membrane(self, x: Tensor, v: Tensor) -> Tensor:
        k = self.k
        if self.membrane == "integrate":
            return fn.integrate(x, v, k["dt_r"])  # type: ignore[arg-type]
        if self.membrane == "exponential":
            return fn.leaky_exponential(x, v, k["a"], k["b"], k["r"], k["v_leak"])  # type: ignore[arg-type]
        if self.membrane == "lif":
            return fn.lif_euler(x, v, k["c"], k["r"], k["v_leak"])  # type: ignore[arg-type]
        return fn.li_euler(x, v, k["c"], k["r"], k["v_leak"])  # type: ignore[arg-type]

    def _fused_kind(self) -> fused.NeuronKind | None:
        """What the fused kernel computes for this layer, mirroring the torch path that
        :meth:`run` takes; None where it does not apply (IF, I, exact integration, non-plain
        firing)."""
        k, firing = self.k, self.firing
        if self.membrane not in ("lif", "li") or (self.synapse and k["a_syn"] is not None):
            return None
        kind = fused.NeuronKind(li=self.membrane == "li", synapse=self.synapse,
                                spiking=firing is not None, has_leak=k["v_leak"] is not None)
        if firing is None:
            return kind  # LI, CubaLI: the output is v
        if not firing.plain:
            return None
        if self.synapse:
            mode = fused.FIRE  # step(): Firing.fire(v)
        elif self.membrane == "lif" and k["r"] is None and not firing.subtract:
            mode = fused.IN_PLACE  # _run_lif_in_place
        else:
            mode = fused.FIRE_OUT  # run(): Firing.fire(v, out=out[t])
        return replace(kind, ge=firing.ge, mode=mode, subtract=firing.subtract,
                       reset_zero=firing.reset_is_zero)

    def _run_fused(self, x: Any, state: tuple[Tensor, ...], out: Tensor
                   ) -> tuple[Tensor, ...] | None:
        """The chunk through the fused kernel, the state updated in place; None (nothing
        touched) where the kernel does not apply."""
        kind = self.fused_kind
        if kind is None or self.device.type != "cpu":
            return None
        if isinstance(x, list):  # the current's incoming edges, one by one: fused for one
            if len(x) != 1:
                return None
            x = x[0]
        if self._fused_params is None:
            k, firing = self.k, self.firing
            rows = {fused.ROW_C: k["c"], fused.ROW_R: k["r"], fused.ROW_LEAK: k["v_leak"]}
            if firing is not None:
                rows.update({fused.ROW_TH: firing.v_th, fused.ROW_RESET: firing.v_reset,
                             fused.ROW_THETA: firing.theta})
            if self.synapse:
                rows.update({fused.ROW_W_IN: k["w_in"], fused.ROW_NEG_C_SYN: k["neg_c_syn"]})
            self._fused_params = fused.parameters(rows, self.shape, self.dtype)
        cur = state[1] if self.synapse else None
        if not fused.run_chunk(kind, self._fused_params, x, state[0], cur, out):
            return None
        return state  # (v,) or (v, i), updated in place

    def run(self, x: Any, state: tuple[Tensor, ...], out: Tensor,
            record: dict[str, Tensor] | None) -> tuple[Tensor, ...]:
        if (not record and self.fused_kind is not None and out.shape[0] >= fused.MIN_STEPS
                and fused.enabled(self.fused_allowed)):
            done = self._run_fused(x, state, out)
            if done is not None:
                return done
        # The same arithmetic as step(), writing spikes straight into ``out``.
        firing = self.firing
        if firing is None or self.synapse or record or firing.delayed or firing.guarded:
            return super().run(x, state, out, record)
        if (self.membrane == "lif" and self.k["r"] is None and not firing.subtract
                and firing.plain):
            return (self._run_lif_in_place(x, state[0], out, firing),)  # the run's own state
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
        new: tuple[Tensor, ...] = (v, i) if self.synapse else (v,)
        if self.firing is None:
            return v, new
        if self.delayed:
            y, v = self.firing.fire_delayed(v, state[-1])
            return y, (v, *new[1:], y)
        if self.firing.guarded:
            y, v = self.firing.fire_guarded(v, state[0])
            return y, (v, *new[1:])
        y, v = self.firing.fire(v)
        return y, (v, *new[1:])


def _euler_c(tau: np.ndarray, dt: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    # c = dt * (1/tau): 1/tau in float64, cast, then multiplied by dt in the run dtype,
    # exactly as Norse's ``dt * tau_mem_inv``.
    return dt * param(1.0 / tau, dtype, device)


def make_layer(node: nir.NIRNode, p: dict[str, Any], in_shape: Shape, out_shape: Shape,
               sem: Semantics, dtype: torch.dtype, device: torch.device, *,
               fused: bool = True) -> nn.Module:
    """The reference's layer of one validated node (its own metadata may override
    ``reset_delay``: :func:`nrf_nir.semantics.node_semantics`). fused: its neurons may run
    the fused CPU kernel (:mod:`nrf_nir.fused`)."""
    dt = sem.require_dt()

    def t(arr: np.ndarray) -> Tensor:
        return param(arr, dtype, device)

    layer = common_layer(node, p, in_shape, out_shape, sem, dtype, device)
    if layer is not None:
        return layer
    spiking = isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF))
    firing = None
    if spiking:
        own = node_semantics(sem, node)
        v_th = t(p["v_threshold"])
        firing = fn.Firing(v_th, t(p["v_reset"]), ge=sem.threshold == "ge",
                           subtract=sem.reset == "subtract", multi=sem.spikes == "multi",
                           floor=-v_th if sem.membrane_floor == "minus_threshold" else None,
                           delayed=own.reset_delay == "on",
                           guarded=own.reset_delay == "guarded")
    coeffs: dict[str, Tensor | None] = {"r": param_unless(p["r"], 1.0, dtype, device)}
    if isinstance(node, (nir.I, nir.IF)):
        v0 = torch.zeros((), dtype=dtype, device=device)
        coeffs["dt_r"] = t(dt * p["r"])  # dt*r in float64, then rounded once
        return Neuron(shape=in_shape, dtype=dtype, device=device, v0=v0, membrane="integrate",
                      coeffs=coeffs, firing=firing, synapse=False, fused=fused)
    synapse = isinstance(node, (nir.CubaLI, nir.CubaLIF))
    tau = p["tau_mem"] if synapse else p["tau"]
    coeffs["v_leak"] = param_unless(p["v_leak"], 0.0, dtype, device)
    v0 = t(p["v_leak"]) if sem.initial_state == "leak" else torch.zeros((), dtype=dtype,
                                                                         device=device)
    if sem.integration == "exponential":
        a = np.exp(-dt / tau)
        coeffs["a"], coeffs["b"] = t(a), t(1.0 - a)
        membrane = "exponential"
    else:
        coeffs["c"] = _euler_c(tau, dt, dtype, device)
        membrane = "lif" if isinstance(node, nir.LIF) else "li"
    if synapse:
        coeffs["w_in"] = param_unless(p["w_in"], 1.0, dtype, device)
        if sem.integration == "exponential":
            coeffs["a_syn"], coeffs["neg_c_syn"] = t(np.exp(-dt / p["tau_syn"])), None
        else:
            coeffs["a_syn"] = None
            coeffs["neg_c_syn"] = -_euler_c(p["tau_syn"], dt, dtype, device)
    return Neuron(shape=in_shape, dtype=dtype, device=device, v0=v0, membrane=membrane,
                  coeffs=coeffs, firing=firing, synapse=synapse, fused=fused)


def check_multi_spikes(checked: Any, semantics: Semantics) -> None:
    """Refuse (NIRError naming the node) ``spikes = "multi"`` on a spiking node whose
    ``v_th - v_reset`` is not > 0: the spike count divides by it."""
    if semantics.spikes != "multi":
        return
    for name, node in checked.flat.nodes.items():
        if isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)):
            p = checked.params[name]
            if np.any(np.asarray(p["v_threshold"] - p["v_reset"]) <= 0):
                raise NIRError("spikes 'multi' counts multiples of v_threshold - v_reset, "
                               "which must be > 0", node=name, field="v_threshold")


class Program(GraphRunner):
    """A graph lowered to the reference's layers; ``run(inputs, record)`` simulates it on
    ``[T, B, *shape]`` inputs (:class:`nrf_nir.runner.GraphRunner`). ``fused=False`` keeps
    every neuron on its torch loop (else Euler LIF / CubaLIF / LI chunks on the CPU run the
    bit-identical fused kernel of :mod:`nrf_nir.fused` when numba is installed)."""

    def __init__(self, checked: Any, semantics: Semantics, *, dtype: Any = None,
                 device: Any = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 stepwise: bool = False, progress: bool = False, fused: bool = True) -> None:
        dtype, device = resolve(dtype, device)
        check_multi_spikes(checked, semantics)
        layers = {name: make_layer(node, checked.params[name], checked.in_shapes[name],
                                   checked.out_shapes[name], semantics, dtype, device,
                                   fused=fused)
                  for name, node in checked.flat.nodes.items()}
        super().__init__(checked, semantics, layers, dtype=dtype, device=device,
                         chunk_bytes=chunk_bytes, stepwise=stepwise, progress=progress)
        self.requires_grad_(False)  # a simulator: no autograd bookkeeping on its weights

