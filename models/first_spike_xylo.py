"""First-spike coding sized for Xylo Audio 2: current-based LIF classifier of 8 SHD-like classes
on 16 channels.

The zoo model that fits Xylo's design rules (16 input channels, <= 1000 hidden neurons, <= 8
output neurons, <= 2 synaptic time constants per hidden neuron and 1 per output neuron), so
that the ``xylo`` / ``xylosim`` targets are held to decision agreement with the reference on
a trained model.

Architecture: ``Linear(16 -> 128, no bias)`` -> ``LIBoxCell`` (synaptic filter, tau_syn =
20 ms) -> ``LIFBoxCell`` (tau_mem = 40 ms, subtract reset) -> ``Linear(128 -> 8, no bias)`` ->
``LIBoxCell`` (40 ms) -> ``LIFBoxCell`` (80 ms, subtract reset); ``dt = 10 ms``, ``T = 100``
steps (1 s), thresholds 1, ``v_leak = v_reset = 0``. Class = the output neuron that spikes
first (``decode="first"``, as ``first-spike``).

Each ``LIBox -> LIFBox`` pair is a current-based LIF (CuLIF): the LI filter's voltage is the
synaptic current (``v_li = c_syn * i`` of Norse's ``LIFCell``, the same dynamics with the
weights scaled by ``c_syn = dt / tau_syn``). It is written this way because Norse's
``LIFCell`` can only reset to ``v_reset``, while ``LIFBoxCell`` takes ``reset_subtract``, which
is what Xylo does; NIR gets ``Linear -> LI -> LIF``, and Xylo's mapper makes the LI a synaptic
current of the LIF. Measured with the ``LIFCell`` (value reset) version of this model: decision
agreement with Xylo 0.936 (0.986 when the reference was rerun with subtract reset).

Xylo-friendly by construction:

- every time constant is ``dt * 2**k``: Norse's Euler step then decays by exactly
  ``1 - 2**-k``, which is Xylo's bit-shift decay (``dash = k``; no tau rounding error);
- no biases, ``v_leak = 0``, thresholds 1, subtract reset;
- the input is integer event counts per step and channel (Xylo's audio front end delivers
  0..15 events per channel and step): :func:`generate` sums groups of 4-5 of ``first-spike``'s
  70 binary channels into 16 channels (counts 0..5);
- the last training steps run with the weights rounded to the int8 grid the Xylo quantizer
  uses at its default headroom (straight-through gradients), and the saved weights lie exactly
  on that grid, so quantizing the weights loses nothing (:func:`snap_to_xylo_grid`).

What still differs on Xylo: integer states and decays (``x >> dash`` rounds down), a hidden
neuron may spike more than once per step (Norse's at most once), and each hidden -> output
hop costs one step (``align_latency=True`` shifts it back).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from nrf_nir.chips import XYLO_AUDIO2, XYLO_DEFAULT_HEADROOM

from . import first_spike
from ._common import Stepper, decisions, fit, rng

NAME = "first-spike-xylo"
SOURCE_CHANNELS = first_spike.CHANNELS  # 70
CHANNELS = 16
CLASSES = 8
HIDDEN = 128
INPUT_SHAPE = (CHANNELS,)
DT = 10e-3
# time constants as dt * 2**k (Euler decay 1 - 2**-k == Xylo's bit shift k)
TAU_SYN_HIDDEN, TAU_MEM_HIDDEN = 2 * DT, 4 * DT
TAU_SYN_OUT, TAU_MEM_OUT = 4 * DT, 8 * DT
# the task's decoding, metric, target and run lengths: first_spike's
DECODE, METRIC, TARGET, SPIKING = (first_spike.DECODE, first_spike.METRIC, first_spike.TARGET,
                                   first_spike.SPIKING)
T_TRAIN, T_EVAL, QUICK_EVAL = first_spike.T_TRAIN, first_spike.T_EVAL, first_spike.QUICK_EVAL

# The Xylo quantizer's defaults that set the weight grid: its default headroom and Xylo Audio
# 2's int16 states and int8 weights with one left shift per matrix.
XYLO_HEADROOM = XYLO_DEFAULT_HEADROOM
XYLO_STATE_MAX = XYLO_AUDIO2.state_max
XYLO_WEIGHT_MAX = XYLO_AUDIO2.weight_max
XYLO_MAX_SHIFT = XYLO_AUDIO2.max_weight_shift

# source channel -> Xylo channel: floor(c * 16 / 70), groups of 4 or 5 neighbouring channels
GROUP = np.arange(SOURCE_CHANNELS) * CHANNELS // SOURCE_CHANNELS


def build() -> Stepper:
    import norse.torch as snn
    from norse.torch.functional.reset import reset_subtract

    def synapse(tau: float) -> nn.Module:
        return snn.LIBoxCell(snn.LIBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / tau),
                                                 v_leak=torch.as_tensor(0.0)), dt=DT)

    def lif(tau: float) -> nn.Module:
        return snn.LIFBoxCell(snn.LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / tau),
                                                   v_leak=torch.as_tensor(0.0),
                                                   v_th=torch.as_tensor(1.0),
                                                   v_reset=torch.as_tensor(0.0),
                                                   alpha=torch.as_tensor(100.0),
                                                   reset_method=reset_subtract), dt=DT)

    layers = [("fc1", nn.Linear(CHANNELS, HIDDEN, bias=False)),
              ("syn1", synapse(TAU_SYN_HIDDEN)), ("lif1", lif(TAU_MEM_HIDDEN)),
              ("fc2", nn.Linear(HIDDEN, CLASSES, bias=False)),
              ("syn2", synapse(TAU_SYN_OUT)), ("lif2", lif(TAU_MEM_OUT))]
    return Stepper(layers, INPUT_SHAPE, DT)


# --------------------------------------------------------------------------------------------
# Data: first-spike's SHD-like generator, 8 classes, summed to 16 channels


def to_channels(x: torch.Tensor) -> torch.Tensor:
    """Sum ``[..., 70]`` spikes into ``[..., 16]`` integer event counts (float32): channel
    ``c`` goes to ``floor(c * 16 / 70)``."""
    group = torch.as_tensor(GROUP, device=x.device)
    out = torch.zeros(*x.shape[:-1], CHANNELS, dtype=x.dtype, device=x.device)
    return out.index_add_(x.dim() - 1, group, x)


def generate(n: int, T: int = T_TRAIN, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples ``[T, n, 16]`` of integer event counts (float32, 0..5) and labels ``[n]``
    in ``0..7``: ``first_spike.generate``'s patterns of its first 8 classes (labels drawn
    uniformly, seeded), each 70-channel raster summed into 16 channel groups."""
    y = rng(seed, 3).integers(0, CLASSES, n)
    x, labels = first_spike.generate(n, T, seed=seed, labels=y)
    return to_channels(x), labels


# --------------------------------------------------------------------------------------------
# The Xylo weight grid


def _decay(tau: float) -> float:
    return DT / tau


def xylo_weight_lsb(weight: torch.Tensor, tau_syn: float, tau_mem: float,
                    headroom: float = XYLO_HEADROOM) -> float:
    """The float weight that one int8 step of Xylo's weight matrix stands for, when the
    ``xylo`` target quantizes a layer of this model (an LI filter of gain 1 in front of an LIF;
    threshold 1, ``v_leak`` 0, no bias, time constants ``dt * 2**k``) at ``headroom``: scale
    ``s = 32767 / headroom`` integer units per unit of membrane (unless the weights limit it),
    weight factor ``f = c_syn c_mem / (1 - c_syn)`` (targets/xylo's ``synapse_factor``),
    shift = the smallest that fits the largest weight in int8; one step is
    ``2**shift / (s f)``."""
    s = XYLO_STATE_MAX / headroom
    c_syn, c_mem = _decay(tau_syn), _decay(tau_mem)
    f = c_syn * c_mem / (1.0 - c_syn)
    wmax = float(weight.detach().abs().max())
    # the weights limit the scale only when even the largest shift cannot hold them
    s = min(s, XYLO_WEIGHT_MAX * 2**XYLO_MAX_SHIFT / max(f * wmax, 1e-30))
    need = s * f * wmax
    shift = 0 if need <= XYLO_WEIGHT_MAX else min(
        XYLO_MAX_SHIFT, math.ceil(math.log2(need / XYLO_WEIGHT_MAX) - 1e-12))
    return 2.0**shift / (s * f)


# Linear layer, tau_syn and tau_mem of the neurons it feeds
LAYERS = (("fc1", TAU_SYN_HIDDEN, TAU_MEM_HIDDEN), ("fc2", TAU_SYN_OUT, TAU_MEM_OUT))


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, lsb: float) -> torch.Tensor:  # noqa: ARG004
        return torch.clamp(torch.round(w / lsb), -XYLO_WEIGHT_MAX, XYLO_WEIGHT_MAX) * lsb

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ARG004
        return grad, None


def snap_to_xylo_grid(module: Stepper) -> dict[str, float]:
    """Round every Linear weight to its Xylo int8 grid in place; returns each layer's grid
    step. Snapping again changes nothing (the largest weight stays on the grid)."""
    steps = {}
    with torch.no_grad():
        for name, ts, tm in LAYERS:
            lin = getattr(module.layers, name)
            lsb = xylo_weight_lsb(lin.weight, ts, tm)
            lin.weight.copy_(_RoundSTE.apply(lin.weight, lsb))
            steps[name] = lsb
    return steps


# --------------------------------------------------------------------------------------------
# Training and evaluation


def _forward(module: Stepper, x: torch.Tensor, quantized: bool
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Output spikes and every layer's output; with ``quantized`` the Linear weights are
    rounded to the Xylo grid (straight-through gradients)."""
    if not quantized:
        out: tuple[torch.Tensor, dict[str, torch.Tensor]] = module(x, record=True)
        return out
    weights = {}
    for name, ts, tm in LAYERS:
        w = getattr(module.layers, name).weight
        weights[f"layers.{name}.weight"] = _RoundSTE.apply(w, xylo_weight_lsb(w, ts, tm))
    out = torch.func.functional_call(module, weights, (x,), {"record": True})
    return out


def train(module: Stepper, *, steps: int = 1000, batch: int = 64, lr: float = 5e-3,
          seed: int = 0, T: int = T_TRAIN, temperature: float = 10.0, init_gain: float = 2.0,
          quantized_steps: int = 100, v_floor: float = -1.5, v_ceiling: float = 3.0,
          bound_weight: float = 100.0, show_progress: bool = True) -> dict[str, Any]:
    """``first_spike``'s first-spike loss (cross-entropy over ``-t_first / temperature``)
    plus ``bound_weight * mean(relu(v_floor - i)**2)`` over the synaptic currents ``i`` of both
    layers (the LI filters' voltages, which bound the membranes from below) and
    ``bound_weight * mean(relu(i - v_ceiling)**2)`` over the hidden layer's. Xylo's states are
    int16: at the default headroom (threshold 16384) a membrane saturates at ``-2``
    thresholds, and a hidden current before its decay (``2 i`` in these units, since
    ``c_syn = 1/2``) at ``+-4``; bounded currents also keep a hidden neuron at one spike per
    step, as in Norse. The last ``quantized_steps`` steps run the
    forward pass with the weights rounded to the Xylo int8 grid (straight-through
    gradients); the weights are snapped to that grid at the end."""
    torch.manual_seed(seed)
    with torch.no_grad():  # x 1 / c_syn: an LI filter has gain 1, a CuLIF current 1 / c_syn
        for name, tau_syn, _ in LAYERS:
            getattr(module.layers, name).weight.mul_(init_gain * tau_syn / DT)
    module.train()

    def loss_of(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = generate(batch, T, seed=seed * 1_000_003 + step)
        z, layers = _forward(module, x, quantized=step >= steps - quantized_steps)
        t_first = first_spike.first_spike_times(z)
        bound = (torch.relu(v_floor - layers["syn1"]).pow(2).mean()
                 + torch.relu(layers["syn1"] - v_ceiling).pow(2).mean()
                 + torch.relu(v_floor - layers["syn2"]).pow(2).mean())
        loss = torch.nn.functional.cross_entropy(-t_first / temperature, y) \
            + bound_weight * bound
        return loss, {"bound": float(bound.detach()),
                      "acc": float((decisions(z.detach(), DECODE) == y).float().mean())}

    final = fit(module.parameters(), loss_of, steps=steps, lr=lr, desc=NAME,
                show_progress=show_progress)
    grid = snap_to_xylo_grid(module)
    module.eval()
    return {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "T": T,
            "temperature": temperature, "init_gain": init_gain,
            "quantized_steps": quantized_steps, "v_floor": v_floor, "v_ceiling": v_ceiling,
            "bound_weight": bound_weight, "weight_grid": grid,
            "final_loss": final["loss"], "final_bound_penalty": final["bound"],
            "final_train_accuracy": final["acc"]}


EVAL_SEED = 900_003


def predict(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return decisions(module(x), DECODE)


def evaluate(module: nn.Module, *, n: int = 512, T: int = T_EVAL, seed: int = EVAL_SEED
             ) -> dict[str, Any]:
    return first_spike.evaluate(module, n=n, T=T, seed=seed, data=generate)
