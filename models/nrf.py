"""NRF: covariant spatio-temporal receptive fields regressing the positions of moving shapes.

The paper's network (Pedersen, Conradt, Lindeberg 2024) runs four temporal channels
(``tau_mem_inv`` 182.6, 91.3, 45.6, 22.8 /s) in parallel; each is a chain of blocks ``AvgPool2d(2)
-> Conv2d (9 x 9, 7 x 7, 5 x 5; no bias, same padding; initialised with Gaussian-derivative
receptive fields) -> LIFBoxCell (v_th 0.1)``; the channels are averaged and a head
``ConvTranspose2d -> LIBoxCell -> ReLU`` gives one heatmap per shape, read out by DSNT
(a soft-argmax) as coordinates. Here the four parallel chains are one chain with four times the
channels and grouped convolutions (``groups=4``; per-channel time constants), which computes
exactly the same thing and which NIR expresses node for node; the average over the channels is
a ``1 x 1`` convolution.

``nrf`` (the zoo model) is a small variant: input ``[2, 64, 64]`` (ON/OFF events), 8 + 8
receptive fields per temporal channel, 3 shapes, and an expressible head ``Conv2d(1 x 1) ->
LIBoxCell`` whose ``[3, 8, 8]`` voltages are the heatmaps (DSNT is applied outside the graph;
``decode="max"`` is the argmax cell). :func:`build_full` is the full-size architecture (input
``[2, 300, 300]``, 192 receptive fields per temporal channel, ``ConvTranspose2d`` / ``ReLU`` /
DSNT head): its backbone exports and runs in the reference; the whole model's export fails
naming the head's modules.

Data: :func:`generate` is a small GERD-like generator: a circle, a square and a triangle move
across the frame with constant velocities (reflecting at the borders); pixels whose intensity
changes emit ON / OFF events; plus noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ._common import DT, Stepper, fit, rng

NAME = "nrf"
TAU_INV = (182.5742, 91.2871, 45.6435, 22.8218)  # 1000 / temporal_scale_distribution(4, 30, 2)
SIZE = 64
SHAPES = ("circle", "square", "triangle")
K = len(SHAPES)  # heatmaps of the full-size model
N_SHAPES = 1  # shapes per generated sample (and heatmaps of the zoo variant)
INPUT_SHAPE = (2, SIZE, SIZE)
HEAT = SIZE // 8
DECODE = "max"
METRIC = "error_px"
TARGET = 4.0  # mean position error in input pixels (the frame is 64 x 64)
HIGHER_IS_BETTER = False
SPIKING = False  # the heatmaps are leaky-integrator voltages
T_TRAIN = 32
T_EVAL = 60
WARMUP = 20  # steps before the error is measured (the slowest channel's tau is 44 steps)
QUICK_EVAL = {"n": 32}


def _rf_weights(scales: list[float], angles: list[float], ratios: list[float],
                size: int) -> torch.Tensor:
    """Gaussian-derivative receptive fields ``[n, size, size]`` (Norse's
    ``spatial_receptive_fields_with_derivatives``, derivatives (0,0), (1,0), (0,1), (1,1))."""
    from norse.torch.functional import receptive_field as rf

    fields = rf.spatial_parameters(torch.tensor(scales), torch.tensor(angles),
                                   torch.tensor(ratios), [(0, 0), (1, 0), (0, 1), (1, 1)])
    return rf.spatial_receptive_fields_with_derivatives(fields, size, domain=6).float()


class NRFNet(Stepper):
    """The receptive-field backbone (+ a head) as one chain; the neuron time constants are
    buffers shared with the Norse cells."""

    def __init__(self, *, size: int, fields: int, head: str, scales: list[float],
                 angles: list[float], ratios: list[float], k: int = K) -> None:
        import norse.torch as snn

        n_t = len(TAU_INV)
        widths = [fields, fields, k]
        kernels = [9, 7, 5]
        layers: list[tuple[str, nn.Module]] = []
        buffers = {}
        c_in = 2
        convs: list[nn.Conv2d] = []
        for b, (w, ks) in enumerate(zip(widths, kernels, strict=True), start=1):
            conv = nn.Conv2d(c_in, n_t * w, ks, padding="same", bias=False,
                             groups=1 if b == 1 else n_t)
            tau = torch.tensor(TAU_INV).repeat_interleave(w).view(-1, 1, 1)
            cell = snn.LIFBoxCell(snn.LIFBoxParameters(tau_mem_inv=tau, v_th=torch.as_tensor(0.1),
                                                       alpha=torch.as_tensor(10.0)), dt=DT)
            buffers[f"tau{b}"] = tau
            convs.append(conv)
            layers += [(f"pool{b}", nn.AvgPool2d(2)), (f"conv{b}", conv), (f"lif{b}", cell)]
            c_in = n_t * w
        merge = nn.Conv2d(n_t * k, k, 1, bias=False)  # the average of the temporal channels
        layers.append(("merge", merge))
        if head == "li":
            layers.append(("readout", snn.LIBoxCell(snn.LIBoxParameters(
                tau_mem_inv=torch.as_tensor(max(TAU_INV))), dt=DT)))
        super().__init__(layers, (2, size, size), DT)
        for name, t in buffers.items():
            self.register_buffer(name, t)
        with torch.no_grad():
            # receptive fields on both polarities, with a gain that makes the sparse events
            # drive the v_th = 0.1 neurons; the deeper blocks start from torch's default x3
            rfw = _rf_weights(scales, angles, ratios, 9)[:fields]
            convs[0].weight.copy_(rfw[:, None].repeat(n_t, 2, 1, 1) * 5.0)
            convs[1].weight.mul_(3.0)
            convs[2].weight.mul_(3.0)
            m = torch.zeros(k, n_t * k, 1, 1)
            for j in range(n_t):  # 32 x the average of the temporal channels (sharp DSNT)
                m[torch.arange(k), j * k + torch.arange(k)] = 32.0 / n_t
            merge.weight.copy_(m)


def build() -> NRFNet:
    return NRFNet(size=SIZE, fields=8, head="li", scales=[1.0, 2.0], angles=[0.0],
                  ratios=[1.0], k=N_SHAPES)


# --------------------------------------------------------------------------------------------
# The full-size architecture and its head


class DSNT(nn.Module):
    """Differentiable spatial to numerical transform: the soft-argmax of each heatmap
    ``[..., H, W]`` as ``(x, y)`` in [-1, 1]."""

    def forward(self, heat: torch.Tensor) -> torch.Tensor:
        return dsnt(heat)


def dsnt(heat: torch.Tensor) -> torch.Tensor:
    H, W = heat.shape[-2:]
    p = torch.softmax(heat.flatten(-2), dim=-1).view(heat.shape)
    ys = (torch.arange(H, dtype=heat.dtype) + 0.5) / H * 2 - 1
    xs = (torch.arange(W, dtype=heat.dtype) + 0.5) / W * 2 - 1
    return torch.stack([(p.sum(-2) * xs).sum(-1), (p.sum(-1) * ys).sum(-1)], dim=-1)


class NRFHead(nn.Module):
    """The paper's head: ``ConvTranspose2d(3, 3, 5) -> LIBoxCell -> ReLU`` and DSNT."""

    def __init__(self) -> None:
        import norse.torch as snn

        super().__init__()
        self.deconv = nn.ConvTranspose2d(K, K, 5, bias=False)
        self.li = snn.LIBoxCell(snn.LIBoxParameters(tau_mem_inv=torch.as_tensor(max(TAU_INV))),
                                dt=DT)
        self.relu = nn.ReLU()
        self.dsnt = DSNT()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state, out = None, []
        for t in range(x.shape[0]):
            v, state = self.li(self.deconv(x[t]), state)
            out.append(self.dsnt(self.relu(v)))
        return torch.stack(out)


class NRFFull(nn.Module):
    """Full size: ``backbone`` (exportable) then ``head`` (not: ConvTranspose2d, ReLU, DSNT)."""

    def __init__(self, size: int = 300) -> None:
        super().__init__()
        self.backbone = NRFNet(size=size, fields=192, head="none",
                               scales=[1.0, 2.0, 4.0, 8.0],
                               angles=[float(a) for a in torch.linspace(
                                   0, 2 * torch.pi - torch.pi / 4, 4)],
                               ratios=[float(r) for r in (1.5 ** torch.arange(3.0)).sqrt()])
        self.head = NRFHead()
        self.input_shape = self.backbone.input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_full(size: int = 300) -> NRFFull:
    """The full-size architecture (untrained: receptive-field initialisation)."""
    return NRFFull(size).eval()


# --------------------------------------------------------------------------------------------
# Data: a small GERD-like generator


def _masks(kind: int, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, size: int
           ) -> np.ndarray:
    """Anti-aliased (2 x 2 supersampled) masks ``[..., size, size]`` of one shape kind."""
    sub = (np.arange(2) + 0.5) / 2
    g = (np.arange(size)[:, None] + sub[None]).reshape(-1)  # supersampled coordinates
    yy, xx = g[:, None], g[None, :]
    dx = xx - cx[..., None, None]
    dy = yy - cy[..., None, None]
    rr = r[..., None, None]
    if kind == 0:
        m = dx * dx + dy * dy <= rr * rr
    elif kind == 1:
        m = (np.abs(dx) <= 0.8 * rr) & (np.abs(dy) <= 0.8 * rr)
    else:
        m = (dy <= 0.8 * rr) & (dy >= -rr) & (np.abs(dx) <= (dy + rr) * 0.6)
    m = m.reshape(*m.shape[:-2], size, 2, size, 2).mean(axis=(-3, -1))
    return m.astype(np.float32)


def generate(n: int, T: int = T_TRAIN, seed: int = 0, *, noise: float = 0.001,
             shapes: int = N_SHAPES) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` event streams ``[T, n, 2, 64, 64]`` and shape centres ``[T, n, 3, 2]`` as
    ``(x, y)`` in [-1, 1] (DSNT's frame).

    Each sample: a circle, a square and a triangle (size 6-10 px) at random positions, moving at
    0.1-0.4 px per step in random directions, reflecting at the borders. A pixel emits an event
    with probability ``min(1, 3 |dI|)`` where its intensity changed by ``dI`` (bright shapes on
    black; ON = channel 1 where it rose, OFF = channel 0); plus noise of rate ``noise``.
    """
    r = rng(seed, 5)
    S = shapes
    kinds = np.arange(K)[None].repeat(n, 0) if S == K else r.integers(0, K, (n, S))
    size = r.uniform(6, 10, (n, S))
    lo, hi = size + 1, SIZE - size - 1
    start = r.uniform(lo[..., None], hi[..., None], (n, S, 2))
    speed = r.uniform(0.1, 0.4, (n, S))
    ang = r.uniform(0, 2 * np.pi, (n, S))
    vel = np.stack([np.cos(ang), np.sin(ang)], -1) * speed[..., None]
    t = np.arange(T + 1)[:, None, None, None]
    span = (hi - lo)[None, ..., None]
    pos = start[None] - lo[None, ..., None] + vel[None] * t
    pos = np.mod(pos, 2 * span)
    pos = lo[None, ..., None] + np.where(pos > span, 2 * span - pos, pos)  # [T+1, n, K, 2]
    intensity = np.zeros((T + 1, n, SIZE, SIZE), np.float32)
    for j in range(S):
        for kind in range(K):
            sel = kinds[:, j] == kind
            if not sel.any():
                continue
            m = _masks(kind, pos[:, sel, j, 0], pos[:, sel, j, 1],
                       np.broadcast_to(size[sel, j], (T + 1, int(sel.sum()))), SIZE)
            intensity[:, sel] = np.maximum(intensity[:, sel], m)
    diff = np.diff(intensity, axis=0)
    fire = r.random(diff.shape) < np.minimum(1.0, 3.0 * np.abs(diff))
    x = np.zeros((T, n, 2, SIZE, SIZE), np.float32)
    x[:, :, 1] = fire & (diff > 0)
    x[:, :, 0] = fire & (diff < 0)
    if noise > 0:
        x += r.random(x.shape) < noise
    centres = pos[1:] / SIZE * 2 - 1
    return torch.from_numpy(x), torch.from_numpy(centres.astype(np.float32))


# --------------------------------------------------------------------------------------------
# Training and evaluation


def coordinates(out: torch.Tensor) -> torch.Tensor:
    """DSNT coordinates ``[T, B, 3, 2]`` of heatmap voltages ``[T, B, 3, 8, 8]``."""
    return dsnt(out)


def train(module: NRFNet, *, steps: int = 250, batch: int = 8, lr: float = 5e-3, seed: int = 0,
          T: int = T_TRAIN, show_progress: bool = True) -> dict[str, Any]:
    """MSE between the DSNT coordinates of the heatmaps and the true centres, over the steps
    after ``WARMUP / 2``."""
    torch.manual_seed(seed)
    module.train()

    def loss_of(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x, centres = generate(batch, T, seed=seed * 1_000_003 + step)
        start = WARMUP // 2
        out = module(x)
        return torch.nn.functional.mse_loss(coordinates(out[start:]), centres[start:]), {}

    final = fit(module.parameters(), loss_of, steps=steps, lr=lr, desc=NAME,
                show_progress=show_progress)
    module.eval()
    return {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "T": T,
            "final_loss": final["loss"]}


def evaluate(module: nn.Module, *, n: int = 64, T: int = T_EVAL, seed: int = 900_005
             ) -> dict[str, Any]:
    """``error_px``: mean distance (input pixels) between the DSNT coordinates and the true
    centres over the steps after ``WARMUP``; ``argmax_error_px``: the same for the argmax cell
    of each heatmap (cell centres)."""
    module.eval()
    errs, arg_errs = [], []
    for start in range(0, n, 16):
        b = min(16, n - start)
        x, centres = generate(b, T, seed=seed + start)
        with torch.no_grad():
            out = module(x)[WARMUP:]
        c = centres[WARMUP:]
        errs.append(((coordinates(out) - c).norm(dim=-1) * SIZE / 2).flatten())
        flat = out.flatten(-2).argmax(-1)
        cell = torch.stack([flat % HEAT, flat // HEAT], -1).float()
        arg = (cell + 0.5) / HEAT * 2 - 1
        arg_errs.append(((arg - c).norm(dim=-1) * SIZE / 2).flatten())
    err = torch.cat(errs)
    return {"metric": METRIC, "error_px": float(err.mean()),
            "median_error_px": float(err.median()),
            "argmax_error_px": float(torch.cat(arg_errs).mean()), "n": n, "T": T,
            "warmup": WARMUP, "seed": seed}
