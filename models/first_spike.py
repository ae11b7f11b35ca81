"""First-spike coding: a current-based LIF (CuLIF) classifier of SHD-like spike patterns.

Architecture (a small variant of the first-spike-coding paper's SHD network): ``Linear(70 ->
128)`` -> ``LIFCell`` (CuLIF, tau_syn = tau_mem = 50 ms) -> ``Linear(128 -> 10)`` -> ``LIFCell``
(tau_syn = tau_mem = 100 ms). ``dt = 10 ms``, ``T = 100`` steps (1 s). The class is the output
neuron that spikes first (``decode="first"``; ties go to the lowest index, silent samples to
class 0, exactly as ``nrf_nir.metrics.decisions``).

Differences from the paper's CuLIF (``v = d_m v + (1 - d_m) I_old; I = d_s I + x``, spike on
``v >= theta``, hard reset): Norse's ``LIFCell`` adds the input current before the membrane
update, so it reacts one step earlier (the same network with every input delayed by one step),
and it spikes on ``v > v_th``. Both are Norse's and NIR's semantics and are exported exactly.
No BatchNorm (in eval mode it would fold into the Linear layer).

The AdLIF variant (``v = d_m v + (1 - d_m)(x - w); w = d_w w + a v + b s``) is the zoo model
``first-spike-adlif`` (``first_spike_adlif``): its adaptation current is a leaky integrator of
the neuron's own spikes, which NIR expresses exactly as a recurrent path ``LIF -> Scale(b / c_w)
-> LI(tau_w) -> Scale(-1) -> LIF`` (a back edge, so the neuron sees ``w`` of the previous step,
as AdLIF does) when ``a = 0``. The sub-threshold coupling ``a v`` cannot be expressed: no NIR
node outputs a spiking neuron's membrane voltage.

Data: :func:`generate` draws SHD-like "spoken digits" on 70 frequency channels (SHD's 700
downsampled by 10): each class is a fixed set of three formant-like tracks sweeping across
channels; samples vary in speed, onset, pitch (channel shift) and noise. :func:`load_shd` reads
the real SHD HDF5 files and :func:`to_frames` bins them to the model's input.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from nrf_nir.errors import NIRError

from ._common import Stepper, decisions, fit, rng

NAME = "first-spike"
CHANNELS = 70
CLASSES = 10
HIDDEN = 128
INPUT_SHAPE = (CHANNELS,)
DT = 10e-3
DECODE = "first"
METRIC = "accuracy"
TARGET = 0.80
SPIKING = True
T_TRAIN = 100
T_EVAL = 100
QUICK_EVAL = {"n": 256}


def build() -> Stepper:
    import norse.torch as snn

    def lif(tau_inv: float) -> nn.Module:
        return snn.LIFCell(p=snn.LIFParameters(tau_syn_inv=torch.as_tensor(tau_inv),
                                               tau_mem_inv=torch.as_tensor(tau_inv),
                                               v_th=torch.as_tensor(1.0),
                                               alpha=torch.as_tensor(100.0)), dt=DT)

    layers = [("fc1", nn.Linear(CHANNELS, HIDDEN)), ("lif1", lif(20.0)),
              ("fc2", nn.Linear(HIDDEN, CLASSES)), ("lif2", lif(10.0))]
    return Stepper(layers, INPUT_SHAPE, DT)


# --------------------------------------------------------------------------------------------
# Synthetic SHD-like data


def _templates() -> np.ndarray:
    """Per class, three tracks: ``[CLASSES, 3, 4]`` rows (t0, t1, ch0, ch1) in [0, 1] time and
    channel units. Fixed (seed independent)."""
    r = np.random.default_rng(20240531)
    out = np.empty((CLASSES, 3, 4))
    for c in range(CLASSES):
        for k in range(3):
            t0 = r.uniform(0.05, 0.45)
            t1 = t0 + r.uniform(0.25, 0.5)
            lo, hi = k / 3, (k + 1) / 3  # one track per third of the spectrum
            out[c, k] = (t0, min(t1, 0.95), r.uniform(lo, hi), r.uniform(lo, hi))
    return out


_TEMPLATES = _templates()


def generate(n: int, T: int = T_TRAIN, seed: int = 0, *, labels: np.ndarray | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` binary spike rasters ``[T, n, 70]`` float32 and labels ``[n]``.

    A track active from ``t0`` to ``t1`` (fractions of a 1 s utterance) sweeps linearly from
    channel ``ch0`` to ``ch1``; a channel at distance ``d`` from it spikes with probability
    ``0.45 exp(-d^2 / 2 sigma^2)`` per 10 ms (``sigma`` = 1.5 channels), plus noise of 0.01.
    Per sample: speed x0.85-1.15, onset +-80 ms, pitch shift +-3 channels, per-track gain 0.7-1.3
    and 15% dropout of track spikes.
    """
    r = rng(seed, 2)
    y = r.integers(0, CLASSES, n) if labels is None else np.asarray(labels, dtype=np.int64)
    speed = r.uniform(0.85, 1.15, n)
    onset = r.uniform(-0.08, 0.08, n)
    shift = r.uniform(-3.0, 3.0, n)
    gain = r.uniform(0.7, 1.3, (n, 3))
    tr = _TEMPLATES[y]  # [n, 3, 4]
    t = (np.arange(T) + 0.5) * DT  # seconds, utterance time is t / 1 s
    ch = np.arange(CHANNELS)
    # time in template units for each sample
    u = (t[None, :] - onset[:, None]) / speed[:, None]  # [n, T]
    rate = np.full((n, T, CHANNELS), 0.01)
    for k in range(3):
        t0, t1 = tr[:, k, 0:1], tr[:, k, 1:2]
        c0 = tr[:, k, 2:3] * (CHANNELS - 1) + shift[:, None]
        c1 = tr[:, k, 3:4] * (CHANNELS - 1) + shift[:, None]
        frac = np.clip((u - t0) / (t1 - t0), 0, 1)
        active = (u >= t0) & (u <= t1)
        centre = c0 + frac * (c1 - c0)  # [n, T]
        d = ch[None, None, :] - centre[..., None]
        bump = 0.45 * gain[:, k, None, None] * np.exp(-d * d / (2 * 1.5**2))
        rate += active[..., None] * 0.85 * bump
    spikes = r.random(rate.shape) < np.clip(rate, 0, 1)
    x = np.ascontiguousarray(spikes.transpose(1, 0, 2), dtype=np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


# --------------------------------------------------------------------------------------------
# The real dataset: SHD HDF5 files


def load_shd(path: str | os.PathLike[str]) -> tuple[list[np.ndarray], list[np.ndarray],
                                                     np.ndarray]:
    """Read a Spiking Heidelberg Digits file (``shd_train.h5`` / ``shd_test.h5``).

    Layout: ``spikes/times`` (variable-length float arrays, seconds), ``spikes/units``
    (variable-length integer arrays, channels 0-699) and ``labels`` (one integer per sample).
    Returns ``(times, units, labels)``.
    """
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise NIRError(f"not a readable HDF5 file ({exc})", file=str(path)) from None
    with f:
        try:
            times_ds, units_ds, labels_ds = f["spikes"]["times"], f["spikes"]["units"], \
                f["labels"]
        except KeyError as exc:
            raise NIRError(f"not an SHD file: missing {exc} (expected spikes/times, "
                           "spikes/units, labels)", file=str(path)) from None
        times = [np.asarray(a, dtype=np.float64) for a in times_ds]
        units = [np.asarray(a, dtype=np.int64) for a in units_ds]
        labels = np.asarray(labels_ds, dtype=np.int64)
    if not (len(times) == len(units) == len(labels)):
        raise NIRError(f"spikes/times ({len(times)}), spikes/units ({len(units)}) and labels "
                       f"({len(labels)}) differ in length", file=str(path))
    for k, (a, b) in enumerate(zip(times, units, strict=True)):
        if a.shape != b.shape:
            raise NIRError(f"sample {k}: {a.size} times but {b.size} units", file=str(path))
    return times, units, labels


def to_frames(times: list[np.ndarray], units: list[np.ndarray], *, T: int = T_EVAL,
              dt: float = DT, channels: int = 700, downsample: int = 10) -> torch.Tensor:
    """Bin spike lists to ``[T, n, channels // downsample]`` float32 (1 where any spike fell
    into the bin of ``dt`` seconds and group of ``downsample`` channels; spikes after
    ``T * dt`` are dropped)."""
    out = np.zeros((T, len(times), channels // downsample), np.float32)
    for k, (t, u) in enumerate(zip(times, units, strict=True)):
        step = np.floor(np.asarray(t) / dt).astype(np.int64)
        group = np.asarray(u, dtype=np.int64) // downsample
        keep = (step >= 0) & (step < T) & (group >= 0) & (group < out.shape[2])
        out[step[keep], k, group[keep]] = 1.0
    return torch.from_numpy(out)


# --------------------------------------------------------------------------------------------
# Training and evaluation


def first_spike_times(z: torch.Tensor) -> torch.Tensor:
    """Differentiable first-spike step ``[B, C]`` of spikes ``[T, B, C]``: the number of steps
    before the first spike (``T`` when silent), ``sum_t prod_{u <= t} (1 - z_u)``."""
    return torch.cumprod(1.0 - z, dim=0).sum(dim=0)


def predict(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return decisions(module(x), DECODE)


def train(module: Stepper, *, steps: int = 500, batch: int = 64, lr: float = 5e-3,
          seed: int = 0, T: int = T_TRAIN, temperature: float = 10.0, init_gain: float = 2.0,
          show_progress: bool = True) -> dict[str, Any]:
    """First-spike loss: cross-entropy over classes of ``-t_first / temperature`` (steps), so
    the correct output neuron learns to fire first and the others later or never. The Linear
    weights start from torch's default initialisation times ``init_gain`` (enough drive that
    the output neurons spike, not so much that they all spike at once)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in module.layers:
            if isinstance(m, nn.Linear):
                m.weight.mul_(init_gain)
    module.train()

    def loss_of(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = generate(batch, T, seed=seed * 1_000_003 + step)
        z = module(x)
        loss = torch.nn.functional.cross_entropy(-first_spike_times(z) / temperature, y)
        return loss, {"acc": float((decisions(z.detach(), DECODE) == y).float().mean())}

    final = fit(module.parameters(), loss_of, steps=steps, lr=lr, desc=NAME,
                show_progress=show_progress)
    module.eval()
    return {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "T": T,
            "temperature": temperature, "init_gain": init_gain,
            "final_loss": final["loss"], "final_train_accuracy": final["acc"]}


EVAL_SEED = 900_002


def evaluate(module: nn.Module, *, n: int = 512, T: int = T_EVAL, seed: int = EVAL_SEED,
             data: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
             ) -> dict[str, Any]:
    """Accuracy and silent fraction on ``n`` held-out samples, in batches of 128, drawn by
    ``data(batch, T, seed=...)`` (default :func:`generate`)."""
    data = generate if data is None else data
    module.eval()
    correct, silent = 0, 0
    for start in range(0, n, 128):
        b = min(128, n - start)
        x, y = data(b, T, seed=seed + start)
        with torch.no_grad():
            z = module(x)
        correct += int((decisions(z, DECODE) == y).sum())
        silent += int((z.sum(dim=(0, 2)) == 0).sum())
    return {"metric": "accuracy", "accuracy": correct / n, "silent_fraction": silent / n,
            "n": n, "T": T, "seed": seed}
