"""The ``snntorch`` target and the ``snntorch`` dialect.

**Target.** A validated NIR graph becomes a ``torch.nn.Module`` of snnTorch 1.0.0 neurons
(``Leaky``, ``Synaptic``, ``RLeaky``, ``RSynaptic``) and torch layers that reproduces
docs/semantics.md. snnTorch computes ``mem = beta*mem + input`` (``Synaptic``: ``syn =
alpha*syn + input; mem = beta*mem + syn``), so the contract's ``v + c*((r*x + v_leak) - v)`` is
written as ``beta = 1 - c``, input ``c*r*x`` plus a per-step term; the same equations in another
floating-point order, so a spike can flip where a membrane lies within rounding error of its
threshold (measured: docs/targets/snntorch.md). Read from the snnTorch source:

- Firing is ``(mem - threshold) > 0`` (the surrogate's forward), i.e. ``v > v_th``. ``ge`` uses
  the next float below the threshold (``v >= th`` iff ``v > nextafter(th, -inf)``), exact.
- ``reset_delay=True`` (snnTorch's default): the membrane a step returns is not reset; the reset
  ``R = ((mem - threshold) > 0)`` is applied at the next step: "subtract" subtracts the threshold
  *after* the decay (``beta*mem + x - R*th``), the contract subtracts it before
  (``beta*(mem - z*th) + x``); the difference ``(1-beta)*th*z`` is fed back through the input
  (``Synaptic``: through its current, corrected for the current's decay). "zero" multiplies the
  old membrane by ``1 - R`` before integrating: the contract's value reset, exactly, for
  ``Leaky``. ``Synaptic``/``RLeaky`` zero the whole new membrane instead (the step's input is
  lost), so they run with ``reset_delay=False`` (immediate reset), which is exact when
  ``v_th >= v_reset``. ``RSynaptic`` with ``reset_delay=False`` never applies its reset in 1.0.0
  (it resets local copies of its arguments), so a CubaLIF in a recurrent loop with a value reset
  runs as ``Synaptic`` with the recurrent edge stepped by this module.
- The contract's ``reset_delay = "on"`` (metadata) is snnTorch's own ``reset_delay=True``:
  "subtract" subtracts ``v_th - v_reset`` after the decay, as snnTorch does (``G`` below only
  corrects the first step and the ``ge`` threshold); "value" zeroes the whole step after a
  spike, as ``Synaptic``/``RLeaky``/``RSynaptic`` do, and a ``Leaky`` (which would keep that
  step's input) gets its input masked by ``1 - R`` for that step.
- The contract's ``reset_delay = "guarded"`` (subtract reset only) is snnTorch's own
  ``reset_delay=False``: ``mem = beta*mem + x - R*th`` is tested, then ``mem - (spk - R)*th``
  returned ("avoid double reset"); ``G`` below only corrects the ``ge`` threshold's last bit.
  ``RSynaptic`` does not compute it (its ``reset_delay=False`` resets local copies of its
  arguments), so such a CubaLIF in a loop runs as ``Synaptic``, its back edge stepped here.
- A node's own metadata ``reset_delay`` overrides the graph's for that node
  (``nrf_nir.semantics.node_semantics``); every neuron is planned with its own value.
- ``v_reset != 0``: the module works with ``u = v - v_reset`` (threshold ``v_th - v_reset``,
  leak ``v_leak - v_reset``), so both resets become snnTorch's.
- Initial state: the membrane is passed in explicitly (``v_leak`` or 0, minus ``v_reset``).

A ``LIF``/``CubaLIF`` in a loop ``lif -> W -> lif`` (``W`` a ``Linear``/``Affine`` used only
there, or a ``Scale``, or a self-edge) becomes ``RLeaky``/``RSynaptic`` with ``W`` scaled into
its recurrent layer. Other cycles are stepped by the module with the contract's back edges.
Execution follows the reference's chunking (stateless layers on ``[Tc*B, ...]``).

**Dialect.** Files written by ``snntorch.export_nir.export_to_nir`` are recognised and
rewritten into the contract by :mod:`nrf_nir.dialect_snntorch` (framework-free, so that loading
a file imports no framework); :data:`DIALECT` and :class:`SnnTorchDialect` are re-exported here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import snntorch as snn
    from snntorch._neurons.neurons import SpikingNeuron

from nrf_nir.dialect_snntorch import DIALECT, EXPORT_DT, SnnTorchDialect  # noqa: F401
from nrf_nir.errors import NIRError
from nrf_nir.layers import Scale, common_layer, linear, param
from nrf_nir.runner import (  # noqa: F401
    DEFAULT_CHUNK_BYTES,
    Fusion,
    GraphRunner,
    NetworkState,
    StatefulLayer,
    resolve,
)
from nrf_nir.semantics import Semantics, node_semantics
from nrf_nir.targets import (
    Options,
    Violation,
    findings,
    option_bool,
    option_int,
    parse_options,
    refuse,
)
from nrf_nir.validate import Checked, Shape

NAME = "snntorch"
SNNTORCH_VERSION = getattr(snn, "__version__", "unknown")

_LEAKY = (nir.LI, nir.LIF, nir.CubaLI, nir.CubaLIF)
_SPIKING = (nir.IF, nir.LIF, nir.CubaLIF)
_CUBA = (nir.CubaLI, nir.CubaLIF)
_NEURONS = (nir.I, nir.IF, *_LEAKY)


# --------------------------------------------------------------------------------------------
# check: what snnTorch cannot express
# --------------------------------------------------------------------------------------------

def _initial_v(node: nir.NIRNode, p: dict[str, Any], sem: Semantics) -> np.ndarray:
    if isinstance(node, (nir.I, nir.IF)) or sem.initial_state == "zero":
        return np.zeros(())
    return p["v_leak"]


def violations(checked: Checked, semantics: Semantics) -> list[Violation]:
    """Everything of ``checked`` that snnTorch 1.0.0 cannot compute as the reference does."""
    out: list[Violation] = []
    dt = semantics.dt

    def add(node: str, fld: str, message: str) -> None:
        out.append(Violation(NAME, node, fld, message))

    ge = semantics.threshold == "ge"
    for name, node in checked.flat.nodes.items():
        p = checked.params[name]
        kind = type(node).__name__
        if isinstance(node, _LEAKY) and semantics.integration == "euler" and dt is not None:
            fields = ("tau_syn", "tau_mem") if isinstance(node, _CUBA) else ("tau",)
            for fld in fields:
                if np.any(dt / p[fld] > 1):
                    what = "alpha" if fld == "tau_syn" else "beta"
                    add(name, fld, f"{kind}: dt/{fld} > 1 makes the Euler decay {what} = "
                        f"1 - dt/{fld} negative; snnTorch clamps {what} to [0, 1]")
        if isinstance(node, _SPIKING) and semantics.reset == "value":
            v0 = _initial_v(node, p, semantics)
            above = v0 >= p["v_threshold"] if ge else v0 > p["v_threshold"]
            if np.any(above):
                fld = "v_leak" if (semantics.initial_state == "leak"
                                   and not isinstance(node, nir.IF)) else "v_threshold"
                add(name, fld, f"{kind}: the initial membrane is above the threshold; snnTorch "
                    "resets a membrane above threshold before the first step (the contract "
                    "does not threshold the initial state)")
            if isinstance(node, nir.CubaLIF) and node_semantics(semantics, node,
                                                                name).reset_delay == "off":
                theta = p["v_threshold"] - p["v_reset"]
                if np.any(theta <= 0 if ge else theta < 0):
                    add(name, "v_threshold",
                        "CubaLIF with a value reset and v_threshold "
                        f"{'<=' if ge else '<'} v_reset: snnTorch's Synaptic zeroes the whole "
                        "next step with reset_delay=True, and with reset_delay=False re-resets "
                        "a membrane of 0 that lies above its threshold")
    return out


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------

def _is(t: Tensor | None, value: float) -> bool:
    return t is not None and t.dim() == 0 and float(t) == value


@dataclass
class NeuronPlan:
    """One NIR neuron translated to snnTorch (all tensors in the run dtype).

    kind: "leaky" (Leaky / RLeaky) or "synaptic" (Synaptic / RSynaptic).
    reset: snnTorch's reset_mechanism ("subtract", "zero" or "none").
    reset_delay: snnTorch's reset_delay.
    delayed: the contract's ``reset_delay = "on"`` (snnTorch's membrane is then the contract's).
    guarded: the contract's ``reset_delay = "guarded"`` (snnTorch's ``reset_delay=False`` with
    the subtract reset computes it).
    beta, alpha: decay factors. threshold: snnTorch's threshold (of ``u = v - v_reset``).
    theta_sub: the contract's subtracted amount ``v_th - v_reset``.
    scale: multiplies the node's input (None: 1). bias: added to the membrane every step
    (None: 0). shift: ``v_reset`` (None: 0), ``v = u + shift``. mem0: initial ``u``.
    i_scale: the synaptic current fed to snnTorch is ``i_scale * i`` (reference's ``i``).
    i_decay: the reference's current decay factor (for recording ``i``).
    """

    kind: str
    reset: str
    reset_delay: bool
    spiking: bool
    delayed: bool
    guarded: bool
    beta: Tensor
    threshold: Tensor
    theta_sub: Tensor
    mem0: Tensor
    scale: Tensor | None = None
    bias: Tensor | None = None
    shift: Tensor | None = None
    alpha: Tensor | None = None
    i_scale: Tensor | None = None
    i_decay: Tensor | None = None


def plan_neuron(node: nir.NIRNode, p: dict[str, Any], sem: Semantics, dtype: torch.dtype,
                device: torch.device, *, recurrent: bool = False) -> NeuronPlan:
    """Translate one validated neuron (see the module docstring for the equations); its own
    metadata may override ``reset_delay`` (:func:`nrf_nir.semantics.node_semantics`)."""
    dt = sem.require_dt()
    sem = node_semantics(sem, node)

    def t(arr: Any) -> Tensor:
        return param(arr, dtype, device)

    spiking = isinstance(node, _SPIKING)
    synapse = isinstance(node, _CUBA)
    one = torch.ones((), dtype=dtype, device=device)
    if spiking:
        v_reset = p["v_reset"]
        theta = p["v_threshold"] - v_reset  # float64, rounded once
        threshold = t(theta)
        if sem.threshold == "ge":  # v >= th  <=>  v > (the float below th)
            threshold = torch.nextafter(threshold, torch.full_like(threshold, -math.inf))
        theta_sub = t(theta)
    else:
        v_reset = np.zeros(())
        threshold = theta_sub = one
    v0 = _initial_v(node, p, sem)
    if isinstance(node, (nir.I, nir.IF)):
        beta = one
        scale: Tensor | None = t(dt * p["r"])  # dt*r in float64, rounded once (as the reference)
        bias = None
    else:
        tau = p["tau_mem"] if synapse else p["tau"]
        if sem.integration == "exponential":
            a = np.exp(-dt / tau)
            beta, c = t(a), t(1.0 - a)
        else:
            c = dt * t(1.0 / tau)  # the reference's coefficient, rounded the same way
            beta = 1 - c
        scale = c if np.all(p["r"] == 1) else c * t(p["r"])
        leak = p["v_leak"] - v_reset
        bias = None if np.all(leak == 0) else c * t(leak)
    plan = NeuronPlan(kind="synaptic" if synapse else "leaky", reset="none", reset_delay=True,
                      spiking=spiking, delayed=spiking and sem.reset_delay == "on",
                      guarded=spiking and sem.reset_delay == "guarded",
                      beta=beta, threshold=threshold, theta_sub=theta_sub,
                      mem0=t(v0 - v_reset), bias=bias,
                      shift=None if np.all(v_reset == 0) else t(v_reset))
    if synapse:
        if sem.integration == "exponential":
            plan.alpha = t(np.exp(-dt / p["tau_syn"]))
            plan.i_decay = plan.alpha
        else:
            c_syn = dt * t(1.0 / p["tau_syn"])
            plan.alpha = 1 - c_syn
            plan.i_decay = 1 - c_syn
        i_scale = scale if scale is not None else one
        plan.i_scale = i_scale
        if not np.all(p["w_in"] == 1):
            scale = t(p["w_in"]) * i_scale
    plan.scale = None if _is(scale, 1.0) else scale
    if spiking:
        plan.reset = "subtract" if sem.reset == "subtract" else "zero"
        # Leaky's delayed zero reset is the contract's immediate one; Synaptic/RLeaky need
        # reset_delay=False for it. The contract's delayed and guarded resets are snnTorch's
        # own reset_delay=True and False.
        plan.reset_delay = not plan.guarded and (
            plan.delayed or plan.reset == "subtract" or (not synapse and not recurrent))
    return plan


def _drop_instance(module: nn.Module) -> nn.Module:
    """snnTorch keeps every neuron ever built in a class-level list (for init_hidden
    bookkeeping, unused here): remove ours so lowered networks can be freed."""
    insts = SpikingNeuron.instances
    for k in range(len(insts) - 1, -1, -1):
        if insts[k] is module:
            del insts[k]
    return module


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------

@dataclass
class NeuronState:
    """mem: snnTorch's membrane (of ``u = v - v_reset``); syn: its current (Synaptic);
    z: the last step's spikes; g: the last step's per-step membrane term (Synaptic)."""

    mem: Tensor
    syn: Tensor | None
    z: Tensor
    g: Tensor | None


class SnnNeuron(StatefulLayer):
    """One NIR neuron run by an snnTorch neuron, with the contract's input scaling, initial
    state and reset timing (module docstring).

    Each step feeds snnTorch ``scale * x + e``, where ``e`` adds to the membrane the term
    ``G = bias + threshold*R - beta*theta_sub*z_prev`` (subtract reset; ``bias`` otherwise):
    ``R`` is the reset snnTorch is about to apply (``(mem - threshold) > 0``), ``z_prev`` the
    contract's last spike. For ``Synaptic`` the term goes through the current, so
    ``e = G - alpha*G_prev`` (the current then holds exactly ``G`` on top of the real one).
    """

    def __init__(self, plan: NeuronPlan, shape: Shape, dtype: torch.dtype,
                 device: torch.device, recurrent: nn.Module | None = None) -> None:
        super().__init__()
        self.plan, self.shape, self.dtype, self.device = plan, shape, dtype, device
        self.synapse = plan.kind == "synaptic"
        self.fused = recurrent is not None
        kwargs: dict[str, Any] = {"threshold": plan.threshold, "reset_mechanism": plan.reset,
                                  "reset_delay": plan.reset_delay, "init_hidden": False}
        if self.fused:
            assert recurrent is not None
            if isinstance(recurrent, nn.Linear):
                kwargs.update(linear_features=recurrent.in_features, learn_recurrent=False)
            else:
                kwargs.update(all_to_all=False, V=recurrent.scale, learn_recurrent=False)
        if self.synapse:
            cls: type = snn.RSynaptic if self.fused else snn.Synaptic
            module = cls(alpha=plan.alpha, beta=plan.beta, **kwargs)
        else:
            cls = snn.RLeaky if self.fused else snn.Leaky
            module = cls(beta=plan.beta, **kwargs)
        if isinstance(recurrent, nn.Linear):
            module.recurrent = recurrent
        self.neuron = _drop_instance(module.to(device))
        # G corrects snnTorch's delayed subtraction into the contract's (subtract reset): the
        # contract subtracts theta_sub before the decay (immediate) or after it (delayed)
        self.subtract = plan.spiking and plan.reset == "subtract" and not plan.guarded
        self.k_z: Tensor | None = (plan.theta_sub if plan.delayed
                                   else plan.beta * plan.theta_sub) if self.subtract else None
        # guarded: snnTorch subtracts its threshold, below theta_sub by the ge threshold's last
        # bit: G = beta*(threshold - theta_sub)*z[t-1] takes the difference back off
        self.k_guard: Tensor | None = None
        if plan.guarded and not torch.equal(plan.threshold, plan.theta_sub):
            self.k_guard = plan.beta * (plan.threshold - plan.theta_sub)
        self.has_g = self.subtract or self.k_guard is not None or plan.bias is not None
        # a Leaky whose delayed zero reset must drop the whole step, as Synaptic/RLeaky do
        self.mask_input = (plan.delayed and plan.reset == "zero" and not self.synapse
                           and not self.fused)
        self.state_names = ("v", "i") if self.synapse else ("v",)

    def init_state(self, batch: int) -> NeuronState:
        full = (batch, *self.shape)
        zeros = torch.zeros(full, dtype=self.dtype, device=self.device)
        return NeuronState(mem=self.plan.mem0.expand(full).clone(),
                           syn=zeros.clone() if self.synapse else None, z=zeros,
                           g=zeros.clone() if self.synapse and self.has_g else None)

    def _g(self, state: NeuronState) -> Tensor | None:
        plan = self.plan
        if self.k_guard is not None:
            g = self.k_guard * state.z
            return g if plan.bias is None else plan.bias + g
        if not self.subtract:
            return plan.bias
        reset = ((state.mem - plan.threshold) > 0).to(self.dtype)  # what snnTorch subtracts
        g = plan.threshold * reset - self.k_z * state.z  # type: ignore[operator]
        return g if plan.bias is None else plan.bias + g

    def step(self, x: Tensor, state: NeuronState) -> tuple[Tensor, NeuronState]:
        plan = self.plan
        inp = x if plan.scale is None else plan.scale * x
        g = self._g(state)
        g_state = state.g
        if g is not None:
            if self.synapse:
                e = g - plan.alpha * state.g  # type: ignore[operator]
                g_state = g.expand_as(inp)
            else:
                e = g
            inp = inp + e
        if self.mask_input:
            inp = inp * (1 - ((state.mem - plan.threshold) > 0).to(self.dtype))
        args: tuple[Any, ...]
        if self.synapse:
            args = (state.z, state.syn, state.mem) if self.fused else (state.syn, state.mem)
            spk, syn, mem = self.neuron(inp, *args)
        else:
            args = (state.z, state.mem) if self.fused else (state.mem,)
            spk, mem = self.neuron(inp, *args)
            syn = None
        z = spk.to(self.dtype)
        new = NeuronState(mem=mem, syn=syn, z=z, g=g_state)
        if plan.spiking:
            return z, new
        return (mem if plan.shift is None else mem + plan.shift), new

    def read(self, state: NeuronState, key: str) -> Tensor:
        """A state in the reference's variables (converted back; equal within rounding)."""
        plan = self.plan
        if key == "v":
            u = state.mem
            if plan.spiking and plan.reset_delay and not plan.delayed:  # not reset yet
                if plan.reset == "subtract":
                    u = u - plan.theta_sub * state.z
                else:
                    u = u * (1 - state.z)
            return u if plan.shift is None else u + plan.shift
        syn = state.syn
        assert syn is not None and plan.i_scale is not None
        if bool((plan.i_scale == 0).any()):
            raise NIRError("cannot record the current where c*r = 0: snnTorch's current is "
                           "then scaled to zero", field="record")
        if self.has_g:
            g = self._g_current(state)
            syn = syn - g
        return plan.i_decay * (syn / plan.i_scale)  # type: ignore[operator]

    def _g_current(self, state: NeuronState) -> Tensor:
        return state.g if state.g is not None else torch.zeros((), dtype=self.dtype,
                                                               device=self.device)


def make_layer(node: nir.NIRNode, p: dict[str, Any], in_shape: Shape, out_shape: Shape,
               sem: Semantics, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """The module of one validated node (neurons: an unfused :class:`SnnNeuron`)."""
    layer = common_layer(node, p, in_shape, out_shape, sem, dtype, device)
    if layer is not None:
        return layer
    if isinstance(node, _NEURONS):
        return SnnNeuron(plan_neuron(node, p, sem, dtype, device), in_shape, dtype, device)
    raise NIRError(f"the snntorch target has no mapping for {type(node).__name__}", field="type")


# --------------------------------------------------------------------------------------------
# recurrent patterns -> RLeaky / RSynaptic
# --------------------------------------------------------------------------------------------

def find_fusion(checked: Checked, members: tuple[str, ...], sem: Semantics) -> Fusion | None:
    """The RLeaky/RSynaptic pattern of a cyclic unit, when it maps exactly."""
    flat = checked.flat
    if len(members) == 1:
        (n,) = members
        loop = None
        if (n, n) not in checked.back:
            return None
    elif len(members) == 2:
        n, loop = members
        if not (isinstance(flat.nodes[loop], (nir.Linear, nir.Affine, nir.Scale))
                and flat.preds[loop] == [n] and flat.succs[loop] == [n]
                and (loop, n) in checked.back):
            return None
    else:
        return None
    node = flat.nodes[n]
    if not isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)):
        return None
    if loop is not None and isinstance(flat.nodes[loop], (nir.Linear, nir.Affine)):
        if len(checked.in_shapes[n]) != 1:
            return None  # RLeaky's linear recurrence acts on [B, n]
        if np.any(checked.params[loop].get("bias", 0.0) != 0):
            # RLeaky adds its recurrent bias from step 1 on (Linear(0) = bias), but a back
            # edge carries 0 at step 1: the module steps this loop itself
            return None
    sem = node_semantics(sem, node, n)
    if sem.reset_delay == "guarded" and isinstance(node, nir.CubaLIF):
        return None  # RSynaptic's reset_delay=False never resets its stored membrane
    if sem.reset == "value" and sem.reset_delay == "off":
        if isinstance(node, nir.CubaLIF):
            return None  # RSynaptic's immediate reset is broken in 1.0.0 (module docstring)
        p = checked.params[n]
        theta = p["v_threshold"] - p["v_reset"]
        if np.any(theta <= 0 if sem.threshold == "ge" else theta < 0):
            return None  # RLeaky needs reset_delay=False, exact only for v_th >= v_reset
    return Fusion(n, loop)


def _fused_layer(checked: Checked, fusion: Fusion, sem: Semantics, dtype: torch.dtype,
                 device: torch.device) -> SnnNeuron:
    flat, n = checked.flat, fusion.neuron
    shape = checked.in_shapes[n]
    plan = plan_neuron(flat.nodes[n], checked.params[n], sem, dtype, device, recurrent=True)
    one = torch.ones((), dtype=dtype, device=device)
    gain = plan.scale if plan.scale is not None else one  # what the input is multiplied by
    recurrent: nn.Module
    if fusion.loop is None:
        recurrent = Scale(gain.clone())
    else:
        loop_node, p = flat.nodes[fusion.loop], checked.params[fusion.loop]
        if isinstance(loop_node, nir.Scale):
            recurrent = Scale(gain * param(p["scale"], dtype, device))
        else:
            rows = gain.expand(shape).to(torch.float64).cpu().numpy()
            w = rows[:, None] * p["weight"]
            b = rows * p["bias"] if "bias" in p else np.zeros(shape)
            recurrent = linear(w, b, dtype, device)
    return SnnNeuron(plan, shape, dtype, device, recurrent=recurrent)


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------

class SnnTorchNetwork(GraphRunner):
    """A validated NIR graph as snnTorch neurons and torch layers
    (:class:`nrf_nir.runner.GraphRunner`; fused cycles: :func:`find_fusion`).

    ``forward(inputs, state=None, record=())`` runs ``[T, B, *shape]`` inputs (a tensor, or a
    dict keyed by the graph's Input nodes) and returns ``(results, state)``: each Output node
    and each recorded name (a node's output, or ``"<neuron>.v"`` / ``"<neuron>.i"``, converted
    back to the reference's variables) maps to ``[T, B, ...]``.
    """

    def __init__(self, checked: Checked, semantics: Semantics, *, dtype: Any = None,
                 device: Any = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 stepwise: bool = False, fuse: bool = True,
                 progress: bool = False) -> None:
        dtype, device = resolve(dtype, device)
        fusions: dict[int, Fusion] = {}
        if fuse:
            for ui, unit in enumerate(checked.units):
                found = find_fusion(checked, unit.members, semantics) if unit.cyclic else None
                if found is not None:
                    fusions[ui] = found
        fused = {f.neuron: f for f in fusions.values()}
        layers = {name: _fused_layer(checked, fused[name], semantics, dtype, device)
                  if name in fused else
                  make_layer(node, checked.params[name], checked.in_shapes[name],
                             checked.out_shapes[name], semantics, dtype, device)
                  for name, node in checked.flat.nodes.items()}
        super().__init__(checked, semantics, layers, dtype=dtype, device=device,
                         chunk_bytes=chunk_bytes, stepwise=stepwise, fusions=fusions,
                         progress=progress)


# --------------------------------------------------------------------------------------------
# the target
# --------------------------------------------------------------------------------------------

_OPTIONS = {"chunk_bytes": option_int(low=1), "stepwise": option_bool, "fuse": option_bool,
            "progress": option_bool}


class SnnTorchTarget:
    name = NAME
    #: firing semantics computed besides the defaults (nrf_nir.targets.semantics_violations)
    SEMANTICS: Mapping[str, tuple[str, ...]] = {"reset_delay": ("off", "on", "guarded")}
    progress = True  # takes the option progress (a progress bar over time steps)
    description = (f"snnTorch {SNNTORCH_VERSION} neurons (Leaky, Synaptic, RLeaky, RSynaptic) "
                   "and torch layers; equal to the reference within float rounding")

    def check(self, checked: Checked, semantics: Semantics,
              options: Options | None = None) -> list[Violation]:
        return violations(checked, semantics)

    def lower(self, checked: Checked, semantics: Semantics,
              options: Options) -> SnnTorchNetwork:
        """strict=False: lower what the target can run; violations that make running impossible
        still raise: every one of this target's does (its check lists what it cannot compute)."""
        extra = parse_options(options, _OPTIONS, NAME)
        refuse(NAME, findings(self, checked, semantics, options))
        return SnnTorchNetwork(checked, semantics, dtype=options.dtype, device=options.device,
                               **extra)

    def run(self, lowered: SnnTorchNetwork, inputs: Mapping[str, Tensor],
            record: tuple[str, ...]) -> dict[str, Tensor]:
        return lowered.run(dict(inputs), tuple(record))


TARGET = SnnTorchTarget()
