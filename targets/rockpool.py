"""The ``rockpool`` target and the Rockpool NIR dialect.

**Target.** A validated NIR graph becomes Rockpool 3.1 float modules (``LIFTorch``,
``LIFNeuronTorch``, ``LinearTorch``; torch layers wrapped with Rockpool's
``TorchModule.from_torch``) driven by the shared graph runner (``nrf_nir.runner``), with
parameters translated so that each module computes docs/semantics.md's equations (see
docs/targets/rockpool.md for the table and the measured agreement).

======================  ==================================================================
NIR node                Rockpool module
======================  ==================================================================
CubaLIF / CubaLI        ``LIFTorch(leak_mode="decays")``: ``alpha = 1 - c_mem``,
                        ``beta = 1 - c_syn`` (exponential: ``exp(-dt/tau)``), input scaled
                        by ``k*w_in`` with ``k = c_mem*r/beta``, ``bias = c_mem*v_leak``;
                        a Linear self-loop becomes ``w_rec``; CubaLI: no spikes, ``y = vmem``;
                        a synaptic decay of 0 everywhere: as LIF with input ``w_in*x``
LIF / LI / IF / I       ``LIFNeuronTorch``: ``tau_mem`` chosen so that Rockpool's own
                        ``exp(-dt/tau_mem)`` is exactly ``1 - c`` in float32 (IF/I:
                        ``tau_mem = inf``), input scaled by ``c*r`` (IF/I: ``dt*r``),
                        ``bias = c*v_leak``; LI/I: no spikes, ``y = vmem``
Affine / Linear         ``LinearTorch`` (``weight = W.T``, bias for Affine)
Conv, pooling, Flatten, torch layers made Rockpool modules by ``TorchModule.from_torch``
Scale, Threshold
Input/Output/Identity   pass-through
======================  ==================================================================

Rockpool neurons reset by subtracting their threshold and spike on ``v >= threshold``
(``StepPWL``); the contract's ``subtract`` reset maps with the membrane shifted by ``v_reset``
(Rockpool threshold ``v_th - v_reset``), ``max_spikes_per_dt = 1`` gives one spike per step, and
``threshold = "gt"`` uses :class:`StepStrict` (``v > threshold``) as ``spike_generation_fn``.
``spikes = "multi"`` (declared in :attr:`RockpoolTarget.SEMANTICS`) is Rockpool's own
multi-event neuron: ``StepPWL`` (``floor(v/threshold)`` events where ``v >= threshold``) with
``max_spikes_per_dt`` set to the float32 maximum (no cap, as the contract), or
:class:`StepStrictMulti` under ``threshold = "gt"``; the reset subtracts ``threshold`` per event.
Value reset, Delay and recurrent cycles other than a CubaLIF's Linear self-loop have no Rockpool
equivalent: ``check`` lists them.

**Dialect.** Files written by Rockpool's ``to_nir`` are recognised and rewritten into the
contract by :mod:`nrf_nir.dialect_rockpool` (framework-free, so that loading a file imports no
framework); :data:`DIALECT`, :class:`RockpoolDialect` and :func:`recover_dt` are re-exported here.
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

from nrf_nir.dialect_rockpool import DIALECT, RockpoolDialect, recover_dt  # noqa: F401
from nrf_nir.errors import NIRError
from nrf_nir.layers import common_layer
from nrf_nir.runner import DEFAULT_CHUNK_BYTES, Fusion, GraphRunner, StatefulLayer
from nrf_nir.semantics import Semantics
from nrf_nir.targets import (
    Findings,
    Options,
    Violation,
    findings,
    option_choice,
    option_int,
    parse_options,
    refuse,
)
from nrf_nir.validate import Checked, Shape

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import rockpool
    from rockpool.nn.modules.torch import LIFNeuronTorch, LIFTorch, LinearTorch, TorchModule
    from rockpool.nn.modules.torch.lif_neuron_torch import tau_to_decay
    from rockpool.nn.modules.torch.lif_torch import StepPWL

NAME = "rockpool"
ROCKPOOL_VERSION = getattr(rockpool, "__version__", "unknown")

_SPIKING = (nir.IF, nir.LIF, nir.CubaLIF)
_CUBA = (nir.CubaLI, nir.CubaLIF)
_MEMBRANE = (nir.I, nir.IF, nir.LI, nir.LIF)
_NEURONS = _CUBA + _MEMBRANE
_LEAKS = ("exact", "tau")


# --------------------------------------------------------------------------------------------
# spike generation functions (Rockpool's ``spike_generation_fn`` extension point)
# --------------------------------------------------------------------------------------------

class StepStrict(StepPWL):
    """One event where ``v > threshold`` (the contract's ``gt``); StepPWL's surrogate gradient.

    Rockpool's own ``StepPWL`` emits ``floor(v/threshold)`` events where ``v >= threshold``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, threshold: Tensor = torch.tensor(1.0),  # noqa: B008
                window: Tensor = torch.tensor(0.5),  # noqa: B008
                max_spikes_per_dt: Tensor = torch.tensor(1.0)) -> Tensor:  # noqa: B008
        ctx.save_for_backward(x, threshold)
        ctx.window = window
        return (x > threshold).to(x.dtype)


class StepAtLeast(StepPWL):
    """One event where ``v >= threshold``, for any sign of the threshold (StepPWL's
    ``floor(v/threshold)`` counts events only for a positive threshold)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, threshold: Tensor = torch.tensor(1.0),  # noqa: B008
                window: Tensor = torch.tensor(0.5),  # noqa: B008
                max_spikes_per_dt: Tensor = torch.tensor(1.0)) -> Tensor:  # noqa: B008
        ctx.save_for_backward(x, threshold)
        ctx.window = window
        return (x >= threshold).to(x.dtype)


class StepStrictMulti(StepPWL):
    """Under ``spikes = "multi"`` with ``threshold = "gt"``: ``ceil(v/threshold) - 1`` events
    where ``v > 0`` (the multiples of ``threshold`` that ``v`` exceeds; the reference's
    arithmetic), at most ``max_spikes_per_dt``; StepPWL's surrogate gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, threshold: Tensor = torch.tensor(1.0),  # noqa: B008
                window: Tensor = torch.tensor(0.5),  # noqa: B008
                max_spikes_per_dt: Tensor = torch.tensor(2.0**16)) -> Tensor:  # noqa: B008
        ctx.save_for_backward(x, threshold)
        ctx.window = window
        count = torch.div(x, threshold).ceil_().sub_(1).clamp_(min=0)
        count = torch.minimum(count, max_spikes_per_dt.to(count.dtype))
        return torch.where(x > 0, count, torch.zeros((), dtype=x.dtype, device=x.device))


#: ``max_spikes_per_dt`` under ``spikes = "multi"``: no cap (the contract counts every
#: multiple); Rockpool's StepPWL clamps with ``(n - cap) * (n > cap)``, finite for this cap.
NO_SPIKE_CAP = float(torch.finfo(torch.float32).max)


class NoSpike(torch.autograd.Function):
    """No events: a non-spiking node (LI, CubaLI, I) whose output is the membrane."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, threshold: Any = None, window: Any = None,
                max_spikes_per_dt: Any = None) -> Tensor:
        return torch.zeros_like(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Any, ...]:
        return torch.zeros_like(grad_output), None, None, None


# --------------------------------------------------------------------------------------------
# parameter translation
# --------------------------------------------------------------------------------------------

def _f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).astype(np.float32)


@dataclass
class NeuronPlan:
    """The Rockpool parameters of one neuron node, flattened to ``n`` neurons.

    alpha / beta: membrane / synaptic decay factors (float32). tau_mem: LIFNeuronTorch's time
    constant (float32) whose ``exp(-dt/tau_mem)`` Rockpool computes. scale: input multiplier
    (None: exactly 1). k: ratio of Rockpool's synaptic state to the contract's ``i``.
    shift: ``v_reset`` subtracted from the membrane (None: 0). decay_mismatch: neurons whose
    Rockpool decay is not the target value bit for bit.
    """

    kind: str  # "cuba" (LIFTorch) or "membrane" (LIFNeuronTorch)
    spiking: bool
    n: int
    alpha: np.ndarray
    beta: np.ndarray | None
    tau_mem: np.ndarray | None
    tau_syn: np.ndarray | None
    scale: np.ndarray | None
    k: np.ndarray | None
    bias: np.ndarray
    threshold: np.ndarray
    shift: np.ndarray | None
    v0: np.ndarray
    problems: list[tuple[str, str]]
    decay_mismatch: int = 0


def _euler_c(tau: np.ndarray, dt: float) -> np.ndarray:
    """The reference's float32 ``c = dt * (1/tau)`` (1/tau in float64, rounded, times dt in
    float32), as float64 values."""
    inv = torch.as_tensor(np.ascontiguousarray(1.0 / tau)).to(torch.float32)
    return (dt * inv).double().numpy()


def _decay_tau(alpha: np.ndarray, dt: float) -> tuple[np.ndarray, int]:
    """Float32 ``tau_mem`` values for which Rockpool's ``tau_to_decay(dt, tau_mem)`` (what
    ``LIFNeuronTorch.forward`` computes) equals ``alpha`` (float32) bit for bit.

    Starts from ``-dt/ln(alpha)`` and walks float32 neighbours (up to 256 ulps each way, until
    no neuron gets closer for 32 ulps each way); an
    alpha of 1 is ``tau = inf``, of 0 a tau so short that ``exp`` underflows. Returns the taus
    and how many neurons found no exact match (they keep the nearest decay)."""
    alpha = np.asarray(alpha, dtype=np.float32).reshape(-1)
    n = alpha.size
    tau = np.empty(n, dtype=np.float32)
    one, zero = alpha == 1, alpha == 0
    tau[one] = np.inf
    tau[zero] = np.float32(dt * 1e-3)  # exp(-1000) == 0 in float32
    mid = ~(one | zero)
    if mid.any():
        with np.errstate(divide="ignore"):
            start = (-dt / np.log(alpha[mid].astype(np.float64))).astype(np.float32)
        bits = start.view(np.int32).astype(np.int64)
        target = torch.from_numpy(alpha[mid].copy())
        found = np.zeros(mid.sum(), dtype=bool)
        best = start.copy()
        best_err = np.full(mid.sum(), np.inf)
        # The whole vector is evaluated for every offset so that each element goes through
        # exactly the code path of the module's forward (same shape, same positions).
        stale = 0
        for step in range(513):
            if stale > 64:  # no neuron got closer over the last 32 ulps each way
                break
            offset = (step + 1) // 2 * (1 if step % 2 else -1)
            cand_bits = np.clip(bits + offset, 1, 0x7F7FFFFF).astype(np.int32)
            cand = cand_bits.view(np.float32)
            full = np.ones(n, dtype=np.float32)
            full[mid] = cand
            with torch.no_grad():
                dec = tau_to_decay(dt, torch.from_numpy(full)).numpy()[mid]
            err = np.abs(dec.astype(np.float64) - target.numpy().astype(np.float64))
            better = ~found & (err < best_err)
            stale = 0 if better.any() else stale + 1
            best[better] = cand[better]
            best_err[better] = err[better]
            found |= err == 0
            if found.all():
                break
        tau[mid] = best
        missing = int((~found).sum())
    else:
        missing = 0
    return tau, missing


def neuron_plan(node: nir.NIRNode, p: dict[str, Any], shape: Shape, sem: Semantics,
                leak: str = "exact") -> NeuronPlan:
    """Translate one neuron node's parameters (float64, broadcast to ``shape``) to Rockpool's."""
    dt = sem.require_dt()
    n = math.prod(shape)

    def full(arr: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(arr, dtype=np.float64), shape).reshape(-1).copy()

    problems: list[tuple[str, str]] = []
    spiking = isinstance(node, _SPIKING)
    cuba = isinstance(node, _CUBA)
    exponential = sem.integration == "exponential"
    kind_name = type(node).__name__
    # the reference's float32 parameters, as float64 values
    r = _f32(full(p["r"])).astype(np.float64)
    v_reset = _f32(full(p["v_reset"])).astype(np.float64) if spiking else np.zeros(n)
    v_th = _f32(full(p["v_threshold"])).astype(np.float64) if spiking else np.ones(n)
    subtract_shift = spiking and sem.reset == "subtract" and bool(np.any(v_reset != 0))
    shift = v_reset if subtract_shift else np.zeros(n)
    if spiking and sem.reset != "subtract":
        problems.append(("reset", f"{kind_name}: Rockpool neurons reset by subtracting their "
                         "threshold (v -= threshold); the graph asks for 'value' reset "
                         "(v = v_reset)"))
    threshold = _f32(v_th - shift)  # = the reference's float32 v_th - v_reset
    if spiking and sem.spikes == "multi" and np.any(_f32(v_th - v_reset) <= 0):
        problems.append(("v_threshold", f"{kind_name}: spikes 'multi' counts multiples of "
                         "v_threshold - v_reset, which is <= 0 for some neurons (Rockpool's "
                         "StepPWL needs a positive threshold)"))

    if isinstance(node, (nir.I, nir.IF)):
        dt_r = _f32(dt * full(p["r"]))  # the reference's dt*r, rounded once
        v0 = _f32(0.0 - shift)
        return NeuronPlan("membrane", spiking, n, alpha=np.ones(n, np.float32), beta=None,
                          tau_mem=np.full(n, np.inf, np.float32), tau_syn=None,
                          scale=None if np.all(dt_r == 1) else dt_r, k=None,
                          bias=np.zeros(n, np.float32), threshold=threshold,
                          shift=_f32(shift) if subtract_shift else None, v0=v0,
                          problems=problems)

    v_leak = _f32(full(p["v_leak"])).astype(np.float64)
    tau = full(p["tau_mem"] if cuba else p["tau"])
    v_start = v_leak if sem.initial_state == "leak" else np.zeros(n)
    v0 = _f32(_f32(v_start).astype(np.float64) - shift)
    if leak == "tau":  # the translation of docs/targets/rockpool.md: exact math, rounded once
        if exponential:
            a64, b64 = np.exp(-dt / tau), -np.expm1(-dt / tau)
        else:
            b64 = dt / tau
            a64 = 1.0 - b64
    elif exponential:
        a64 = np.exp(-dt / tau)
        b64 = _f32(1.0 - a64).astype(np.float64)  # the reference's t(1 - a)
    else:
        b64 = _euler_c(tau, dt)
        a64 = 1.0 - b64  # exact in float64: both are float32 values
    alpha = _f32(a64)
    bias = _f32(b64 * (v_leak - shift))
    field = "tau_mem" if cuba else "tau"
    if cuba:
        tau_syn = full(p["tau_syn"])
        if leak == "tau":
            beta64 = np.exp(-dt / tau_syn) if exponential else 1.0 - dt / tau_syn
            beta = _f32(beta64)
        else:
            beta = _f32(np.exp(-dt / tau_syn) if exponential else 1.0 - _euler_c(tau_syn, dt))
            beta64 = beta.astype(np.float64)
        w_in = _f32(full(p["w_in"])).astype(np.float64)
    # A synaptic decay of exactly 0 empties the current after every step (Euler: tau_syn = dt;
    # exponential: exp(-dt/tau_syn) underflows): the node is then a LIF/LI of input w_in*x,
    # which LIFNeuronTorch computes (LIFTorch would add the *decayed* current, 0).
    degenerate = cuba and leak == "exact" and bool(np.all(beta == 0))
    if not cuba or degenerate:
        scale = _f32(b64 * r * (w_in if degenerate else 1.0))
        plan = NeuronPlan("membrane", spiking, n, alpha=alpha, beta=None, tau_mem=None,
                          tau_syn=None, scale=None if np.all(scale == 1) else scale, k=None,
                          bias=bias, threshold=threshold,
                          shift=_f32(shift) if subtract_shift else None, v0=v0,
                          problems=problems)
        if np.any(a64 < 0) or (leak == "tau" and np.any(a64 <= 0)):
            problems.append((field, f"{kind_name}: the forward Euler decay 1 - dt/tau is "
                             f"{float(np.min(a64)):.4g} (dt > tau); LIFNeuronTorch decays by "
                             "exp(-dt/tau_mem), which is in [0, 1]"))
            return plan
        if leak == "tau":
            with np.errstate(divide="ignore"):
                plan.tau_mem = _f32(np.where(a64 >= 1, np.inf, -dt / np.log(a64)))
        else:
            plan.tau_mem, plan.decay_mismatch = _decay_tau(alpha, dt)
        return plan

    # CubaLI / CubaLIF: LIFTorch, i <- beta*(i + X); v <- alpha*v + i + bias
    with np.errstate(divide="ignore", invalid="ignore"):
        k = b64 * r / beta64
    scale = _f32(k * w_in)
    plan = NeuronPlan("cuba", spiking, n, alpha=alpha, beta=beta, tau_mem=None, tau_syn=None,
                      scale=None if np.all(scale == 1) else scale, k=k, bias=bias,
                      threshold=threshold, shift=_f32(shift) if subtract_shift else None,
                      v0=v0, problems=problems)
    if np.any(beta == 0) or not np.all(np.isfinite(scale)):
        problems.append(("tau_syn", f"{kind_name}: the synaptic decay is 0 for some neurons "
                         "and not for others (tau_syn = dt under Euler, or exp(-dt/tau_syn) "
                         "underflows): LIFTorch adds the *decayed* current beta*i to the "
                         "membrane, so no input would reach those neurons"))
    if leak == "tau":
        if np.any(a64 <= 0) or np.any(beta64 <= 0):
            problems.append((field, f"{kind_name}: a decay 1 - dt/tau is <= 0 (dt >= tau): no "
                             "time constant has exp(-dt/tau) <= 0 (use leak='exact', Rockpool's "
                             "leak_mode='decays')"))
        else:
            plan.tau_mem = _f32(-dt / np.log(a64))
            plan.tau_syn = _f32(np.where(beta64 >= 1, np.inf, -dt / np.log(beta64)))
    return plan


# --------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------

def _recurrent_pair(checked: Checked, members: tuple[str, ...]) -> tuple[str, str] | str:
    """``(cubalif, w_rec)`` when a cycle is a CubaLIF with a Linear self-loop (Rockpool's
    ``LIFTorch(has_rec=True)``), else the reason it is not."""
    flat = checked.flat
    if len(members) != 2:
        return (f"a recurrent cycle of {len(members)} nodes ({', '.join(members)}); Rockpool "
                "expresses recurrence only as LIFTorch's w_rec: a CubaLIF with one Linear "
                "self-loop")
    lifs = [m for m in members if isinstance(flat.nodes[m], nir.CubaLIF)]
    dense = [m for m in members if isinstance(flat.nodes[m], (nir.Linear, nir.Affine))]
    if len(lifs) != 1 or len(dense) != 1:
        kinds = ", ".join(f"{m} ({type(flat.nodes[m]).__name__})" for m in members)
        return (f"a recurrent cycle of {kinds}; Rockpool expresses recurrence only as "
                "LIFTorch's w_rec: a CubaLIF with a Linear self-loop")
    lif, rec = lifs[0], dense[0]
    if flat.preds[rec] != [lif] or flat.succs[rec] != [lif] or (rec, lif) not in checked.back:
        return (f"the recurrent weights {rec!r} also connect to other nodes; LIFTorch's w_rec "
                "feeds only its own neurons")
    if len(checked.in_shapes[lif]) != 1:
        return f"a recurrent layer of shape {checked.in_shapes[lif]} (LIFTorch's w_rec is 1-D)"
    p = checked.params[rec]
    if "bias" in p and np.any(p["bias"] != 0):
        return (f"the recurrent Affine {rec!r} has a bias; LIFTorch's w_rec has none")
    return lif, rec


def violations(checked: Checked, semantics: Semantics, leak: str = "exact",
               plans: dict[str, NeuronPlan] | None = None) -> list[Violation]:
    """Everything of ``checked`` that Rockpool 3.1's modules cannot compute as the reference
    does (up to float32 rounding; see docs/targets/rockpool.md). ``plans``: filled with each
    neuron's plan, which :class:`RockpoolNetwork` reuses."""
    out: list[Violation] = []
    flat = checked.flat
    plans = {} if plans is None else plans

    def plan_of(name: str) -> NeuronPlan:
        if name not in plans:
            plans[name] = neuron_plan(flat.nodes[name], checked.params[name],
                                      checked.in_shapes[name], semantics, leak)
        return plans[name]

    for unit in checked.units:
        if unit.cyclic:
            pair = _recurrent_pair(checked, unit.members)
            if not isinstance(pair, str) and plan_of(pair[0]).kind != "cuba":
                pair = (f"the CubaLIF {pair[0]!r} has a synaptic decay of 0 and runs as "
                        "LIFNeuronTorch, which has no recurrent weights")
            if isinstance(pair, str):
                for m in unit.members:
                    out.append(Violation(NAME, m, "edges", pair))
    for name, node in flat.nodes.items():
        if isinstance(node, nir.Delay):
            out.append(Violation(NAME, name, "delay", "Delay: Rockpool 3.1 has no delay "
                                 "module (synaptic or axonal delays)"))
        elif isinstance(node, _NEURONS):
            for fld, message in plan_of(name).problems:
                out.append(Violation(NAME, name, fld, message))
    return out


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------

def _rockpool(module: nn.Module) -> nn.Module:
    """A torch layer as a Rockpool ``TorchModule`` (torch call API kept)."""
    TorchModule.from_torch(module, retain_torch_api=True)
    return module


def _param(arr: np.ndarray | None, device: torch.device) -> Tensor:
    if arr is None:
        raise NIRError("internal: a Rockpool parameter was not computed", field="leak")
    return torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float32), device=device)


class Dense(nn.Module):
    """Affine / Linear as Rockpool's ``LinearTorch`` over the last axis."""

    def __init__(self, p: dict[str, Any], device: torch.device) -> None:
        super().__init__()
        w = torch.as_tensor(p["weight"], device=device).to(torch.float32).contiguous()
        has_bias = "bias" in p
        # weight = W.T as a view: LinearTorch computes F.linear(x, weight.T) = F.linear(x, W)
        # with W contiguous, the very product the reference computes
        self.module = LinearTorch(
            (int(w.shape[1]), int(w.shape[0])), weight=w.T, has_bias=has_bias,
            bias=_param(p["bias"], device) if has_bias else None)
        self.n_in = int(w.shape[1])

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        y, _, _ = self.module(x.reshape(-1, self.n_in))  # Rockpool API: (1, rows, n_in)
        return y.reshape(*lead, y.shape[-1])


class Neuron(StatefulLayer):
    """One neuron node as a Rockpool neuron module run over all time steps at once (the
    runner's ``whole_time``). The Rockpool module holds the state, reset to the contract's
    initial state before and after every run: a run does not continue a previous one."""

    def __init__(self, name: str, node: nir.NIRNode, plan: NeuronPlan, shape: Shape,
                 sem: Semantics, device: torch.device, leak: str,
                 w_rec: np.ndarray | None = None) -> None:
        super().__init__()
        self.name, self.plan, self.shape, self.device = name, plan, shape, device
        dt = sem.require_dt()
        n = plan.n
        multi = sem.spikes == "multi"
        if not plan.spiking:
            spike_fn: Any = NoSpike
        elif sem.threshold == "gt":
            spike_fn = StepStrictMulti if multi else StepStrict
        elif multi or np.all(plan.threshold > 0):
            # Rockpool's own: floor(v/th) events where v >= th, capped at max_spikes_per_dt
            spike_fn = StepPWL
        else:
            spike_fn = StepAtLeast
        self.spike_fn_name = spike_fn.__name__
        common = dict(threshold=_param(plan.threshold, device), bias=_param(plan.bias, device),
                      dt=dt, noise_std=0.0, spike_generation_fn=spike_fn,
                      max_spikes_per_dt=torch.tensor(NO_SPIKE_CAP if multi else 1.0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if plan.kind == "cuba":
                rec: dict[str, Any] = {}
                if w_rec is not None:
                    rec = dict(has_rec=True, w_rec=_param(w_rec, device))
                if leak == "tau":
                    self.module: Any = LIFTorch(n, tau_mem=_param(plan.tau_mem, device),
                                                tau_syn=_param(plan.tau_syn, device).reshape(n, 1),
                                                **rec, **common)
                else:
                    self.module = LIFTorch(n, leak_mode="decays",
                                           alpha=_param(plan.alpha, device),
                                           beta=_param(plan.beta, device).reshape(n, 1),
                                           **rec, **common)
            else:
                self.module = LIFNeuronTorch(n, tau_mem=_param(plan.tau_mem, device), **common)
        self.module.to(device)
        self.scale = None if plan.scale is None else _param(plan.scale, device)
        self.shift = None if plan.shift is None else _param(plan.shift, device)
        self.k = None if plan.k is None else torch.as_tensor(plan.k, device=device)
        self.v0 = _param(plan.v0, device)
        self.state_names = ("v", "i") if plan.kind == "cuba" else ("v",)

    def reset(self) -> None:
        m = self.module
        m.vmem = self.v0.clone()
        if self.plan.kind == "cuba":
            m.isyn = torch.zeros(self.plan.n, 1, device=self.device)
            m.spikes = torch.zeros(self.plan.n, device=self.device)

    def init_state(self, batch: int) -> None:
        return None  # held by the Rockpool module (``reset``)

    def run(self, x: Tensor, state: Any, out: Tensor,
            record: dict[str, Tensor] | None) -> Any:
        y, got = self.evolve(x, tuple(record or ()))
        out.copy_(y)
        for key, buf in (record or {}).items():
            buf.copy_(got[key])
        return state

    def evolve(self, x: Tensor, states: tuple[str, ...] = ()) -> tuple[Tensor, dict[str, Tensor]]:
        """``x`` ``[T, B, *shape]`` -> (output ``[T, B, *shape]``, requested states)."""
        T, B = int(x.shape[0]), int(x.shape[1])
        xs = x.reshape(T, B, self.plan.n)
        if self.scale is not None:
            xs = xs * self.scale
        data = xs.permute(1, 0, 2).contiguous()  # Rockpool: [B, T, N]
        need_record = bool(states) or not self.plan.spiking
        self.reset()
        out, _, rec = self.module(data, record=need_record)
        if self.plan.spiking:
            y = out
        else:
            y = rec["vmem"]
        result = y.to(self.device).permute(1, 0, 2).reshape(T, B, *self.shape)
        recorded: dict[str, Tensor] = {}
        for s in states:
            if s == "v":
                v = rec["vmem"].to(self.device)
                if self.shift is not None:
                    v = v + self.shift
                recorded[s] = v.permute(1, 0, 2).reshape(T, B, *self.shape)
            elif s == "i":
                i = (rec["isyn"].to(self.device)[..., 0].double() / self.k).float()
                recorded[s] = i.permute(1, 0, 2).reshape(T, B, *self.shape)
        self.reset()
        return result, recorded


def make_layer(node: nir.NIRNode, p: dict[str, Any], in_shape: Shape, out_shape: Shape,
               sem: Semantics, device: torch.device) -> nn.Module:
    """The stateless layer of one validated node (``nn.Identity``: pass-through)."""

    if isinstance(node, (nir.Affine, nir.Linear)):
        return Dense(p, device)
    layer = None if isinstance(node, nir.Delay) else common_layer(
        node, p, in_shape, out_shape, sem, torch.float32, device)
    if layer is None:
        raise NIRError(f"the rockpool target has no mapping for {type(node).__name__}",
                       field="type")
    return layer if isinstance(layer, nn.Identity) else _rockpool(layer)


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------

class RockpoolNetwork:
    """A validated NIR graph as Rockpool modules driven by :class:`nrf_nir.runner.GraphRunner`.

    ``run(inputs, record)`` takes ``[T, B, *shape]`` tensors keyed by Input node and returns
    each Output (and recorded name) as ``[T, B, ...]``. ``modules`` maps node names to their
    Rockpool module (``LIFTorch``, ``LIFNeuronTorch``, ``LinearTorch`` or a wrapped torch layer).
    ``runner``: the graph runner (each neuron module runs over all time steps at once, each
    stateless layer on the reference's chunks; a recurrent pair is one fused ``LIFTorch``).
    """

    def __init__(self, checked: Checked, semantics: Semantics, *, device: Any = None,
                 leak: str = "exact", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 plans: Mapping[str, NeuronPlan] | None = None) -> None:
        if leak not in _LEAKS:
            raise NIRError(f"leak must be one of {', '.join(_LEAKS)}; got {leak!r}",
                           field="leak")
        self.checked, self.semantics, self.leak = checked, semantics, leak
        self.dt = semantics.require_dt()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.chunk_bytes = int(chunk_bytes)
        flat = checked.flat
        self.pairs: dict[str, str] = {}  # recurrent CubaLIF -> its w_rec node
        fusions: dict[int, Fusion] = {}
        for ui, unit in enumerate(checked.units):
            if unit.cyclic:
                pair = _recurrent_pair(checked, unit.members)
                if isinstance(pair, str):
                    raise NIRError(pair, node=unit.members[0], field="edges")
                self.pairs[pair[0]] = pair[1]
                fusions[ui] = Fusion(*pair)
        self.neurons: dict[str, Neuron] = {}
        self.layers: dict[str, nn.Module] = {}
        for name, node in flat.nodes.items():
            p, shape = checked.params[name], checked.in_shapes[name]
            if isinstance(node, _NEURONS):
                plan = plans[name] if plans is not None and name in plans else \
                    neuron_plan(node, p, shape, semantics, leak)
                w_rec = None
                if name in self.pairs:
                    weight = checked.params[self.pairs[name]]["weight"]
                    kw = plan.scale if plan.scale is not None else np.ones(plan.n)
                    # irec = spikes @ w_rec, w_rec[m, j] = (k*w_in)[j] * W[j, m]
                    w_rec = (kw.astype(np.float64)[:, None] * weight).T
                self.neurons[name] = Neuron(name, node, plan, shape, semantics, self.device,
                                            leak, w_rec)
            elif isinstance(node, nir.Delay):
                raise NIRError("Delay: Rockpool 3.1 has no delay module", node=name,
                               field="delay")
            else:
                self.layers[name] = make_layer(node, p, shape, checked.out_shapes[name],
                                               semantics, self.device)
        self.runner = GraphRunner(checked, semantics, {**self.neurons, **self.layers},
                                  dtype=torch.float32, device=self.device,
                                  chunk_bytes=chunk_bytes, fusions=fusions, whole_time=True)

    @property
    def modules(self) -> dict[str, Any]:
        mods: dict[str, Any] = {n: nrn.module for n, nrn in self.neurons.items()}
        for n, layer in self.layers.items():
            if not isinstance(layer, nn.Identity):
                mods[n] = layer.module if isinstance(layer, Dense) else layer
        return mods

    @property
    def decay_mismatch(self) -> int:
        """Neurons whose Rockpool decay is not the contract's float32 decay bit for bit."""
        return sum(nrn.plan.decay_mismatch for nrn in self.neurons.values())

    def run(self, inputs: Mapping[str, Tensor], record: tuple[str, ...] = ()
            ) -> dict[str, Tensor]:
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        # Rockpool's neurons draw (zero-std) noise from torch's global generator: keep the
        # caller's random stream untouched
        with torch.random.fork_rng(devices=devices):
            return self.runner.run(dict(inputs), tuple(record))


# --------------------------------------------------------------------------------------------
# the target
# --------------------------------------------------------------------------------------------

class RockpoolTarget:
    name = NAME
    #: Firing semantics computed besides the defaults (``nrf_nir.targets.semantics_violations``):
    #: ``spikes = "multi"`` is Rockpool's own multi-event StepPWL.
    SEMANTICS: dict[str, tuple[str, ...]] = {"spikes": ("single", "multi")}
    description = (f"Rockpool {ROCKPOOL_VERSION} float modules (LIFTorch, LIFNeuronTorch, "
                   "LinearTorch), float32, CPU; subtract reset only")

    def check(self, checked: Checked, semantics: Semantics,
              options: Options | None = None) -> list[Violation]:
        """Violations under the ``leak`` option of ``options`` (default ``exact``); the neuron
        plans computed on the way are the analysis ``lower`` reuses."""
        leak = dict(options.extra or {}).get("leak", "exact") if options is not None \
            else "exact"
        leak = leak if leak in _LEAKS else "exact"
        plans: dict[str, NeuronPlan] = {}
        return Findings(violations(checked, semantics, leak, plans), (leak, plans))

    def lower(self, checked: Checked, semantics: Semantics, options: Options) -> RockpoolNetwork:
        """strict=False: lower what the target can run; violations that make running impossible
        still raise: every one of this target's does (its check lists what it cannot compute)."""
        extra = parse_options(options, {"leak": option_choice(*_LEAKS),
                                        "chunk_bytes": option_int(low=1)}, NAME)
        if options.dtype not in (None, torch.float32):
            raise NIRError("the rockpool target runs float32 only: Rockpool 3.1's LIFTorch and "
                           "LIFNeuronTorch cast their parameters and records to float32",
                           field="dtype")
        found = findings(self, checked, semantics, options)
        refuse(NAME, found)
        leak = extra.get("leak", "exact")
        plans = found.analysis[1] if found.analysis is not None and \
            found.analysis[0] == leak else None
        return RockpoolNetwork(checked, semantics, device=options.device, plans=plans,
                               **extra)

    def run(self, lowered: RockpoolNetwork, inputs: Mapping[str, Tensor],
            record: tuple[str, ...]) -> dict[str, Tensor]:
        return lowered.run(inputs, tuple(record))


TARGET = RockpoolTarget()
