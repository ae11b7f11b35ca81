"""POKER-DVS: a recurrent LIF classifier of card-suit event streams (Norse tutorial).

Architecture (as in the Norse tutorial): flatten ``2 x 35 x 35`` event frames ->
``LIFRecurrentCell(2450 -> 100, v_th 0.3, tau_syn_inv = tau_mem_inv = 100)`` ->
``Linear(100 -> 4, no bias)`` -> ``LICell``; the class is the argmax over classes of the readout
voltage's maximum over time (``decode="max"``).

Data: :func:`generate` renders the four pips (clubs, hearts, diamonds, spades) as dark shapes on a
white card that wobble inside a tracked ``35 x 35`` crop (as in the real recordings, where pips
were tracked and cropped), and turns intensity changes into ON/OFF events (channel 1 = ON,
channel 0 = OFF, tonic's ``ToFrame`` layout ``[T, p, y, x]``) plus background noise.
:func:`load_tonic` reads the real dataset as ``tonic.datasets.POKERDVS`` stores it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nrf_nir.errors import NIRError

from ._common import DT, Stepper, decisions, fit, rng

NAME = "poker-dvs"
CLASSES = ("cl", "he", "di", "sp")  # tonic's order and folder names
SENSOR = (35, 35, 2)  # tonic's sensor_size: (x, y, p)
INPUT_SHAPE = (2, 35, 35)  # one frame: [p, y, x]
HIDDEN = 100
DECODE = "max"
T_TRAIN = 40
T_EVAL = 60
QUICK_EVAL = {"n": 128}
TARGET = 0.90
METRIC = "accuracy"
SPIKING = False  # the readout is a leaky-integrator voltage


# --------------------------------------------------------------------------------------------
# Model


def build() -> Stepper:
    import norse.torch as snn

    rnn = snn.LIFRecurrentCell(
        INPUT_SHAPE[0] * INPUT_SHAPE[1] * INPUT_SHAPE[2], HIDDEN,
        p=snn.LIFParameters(alpha=torch.as_tensor(100.0), v_th=torch.as_tensor(0.3),
                            tau_syn_inv=torch.as_tensor(100.0),
                            tau_mem_inv=torch.as_tensor(100.0)),
        dt=DT)
    layers = [("flatten", nn.Flatten(start_dim=1)), ("rnn", rnn),
              ("fc", nn.Linear(HIDDEN, len(CLASSES), bias=False)), ("readout", snn.LICell(dt=DT))]
    return Stepper(layers, INPUT_SHAPE, DT)


# --------------------------------------------------------------------------------------------
# Synthetic data


def _pip_masks(res: int = 96) -> torch.Tensor:
    """The four pips as binary masks ``[4, res, res]`` over ``[-1, 1]^2`` (u right, v down)."""
    g = (torch.arange(res, dtype=torch.float64) + 0.5) / res * 2 - 1
    v, u = torch.meshgrid(g, g, indexing="ij")

    def disk(cu: float, cv: float, r: float) -> torch.Tensor:
        return (u - cu) ** 2 + (v - cv) ** 2 <= r * r

    def tri(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]
            ) -> torch.Tensor:
        def side(p: tuple[float, float], q: tuple[float, float]) -> torch.Tensor:
            return (q[0] - p[0]) * (v - p[1]) - (q[1] - p[1]) * (u - p[0])
        s1, s2, s3 = side(a, b), side(b, c), side(c, a)
        return ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))

    stem = tri((0.0, 0.35), (-0.32, 0.95), (0.32, 0.95))
    club = disk(0.0, -0.45, 0.34) | disk(-0.42, 0.12, 0.34) | disk(0.42, 0.12, 0.34) | \
        disk(0.0, 0.0, 0.2) | stem
    heart = disk(-0.36, -0.3, 0.4) | disk(0.36, -0.3, 0.4) | \
        tri((-0.74, -0.18), (0.74, -0.18), (0.0, 0.9))
    diamond = (u.abs() / 0.68 + v.abs() / 0.95) <= 1
    spade = disk(-0.36, 0.2, 0.4) | disk(0.36, 0.2, 0.4) | \
        tri((-0.74, 0.08), (0.74, 0.08), (0.0, -0.95)) | stem
    return torch.stack([club, heart, diamond, spade]).to(torch.float32)


_MASKS: torch.Tensor | None = None


def generate(n: int, T: int = T_TRAIN, seed: int = 0, *, noise: float = 0.002,
             labels: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` event streams ``[T, n, 2, 35, 35]`` (float32 event counts) and labels ``[n]``.

    Each sample: one pip (random class unless ``labels`` is given), half-size 9-12 px, rotated
    by up to 15 degrees, wobbling around the crop centre (amplitude 1.5-4 px, speed up to about
    1 px per step). A pixel emits an event with probability ``min(1, 2.5 |dI|)`` where its
    intensity changed by ``dI`` since the previous step, polarity by the sign; plus Bernoulli
    noise of rate ``noise`` per pixel, channel and step.
    """
    global _MASKS
    if _MASKS is None:
        _MASKS = _pip_masks()
    r = rng(seed, 1)
    y = r.integers(0, 4, n) if labels is None else np.asarray(labels, dtype=np.int64)
    half = r.uniform(9.0, 12.0, n)  # pip half-size in pixels
    angle = np.deg2rad(r.uniform(-15, 15, n))
    amp = r.uniform(1.5, 4.0, (n, 2))
    omega = r.uniform(0.12, 0.3, (n, 2))
    phase = r.uniform(0, 2 * np.pi, (n, 2))
    offset = r.uniform(-2.0, 2.0, (n, 2))
    steps = np.arange(T + 1)[:, None, None]
    centre = offset[None] + amp[None] * np.sin(omega[None] * steps + phase[None])  # [T+1, n, 2]

    H, W = INPUT_SHAPE[1:]
    gen = torch.Generator().manual_seed(int(r.integers(0, 2**62)))
    f32 = torch.float32
    # pixel coordinates relative to the crop centre, in pixels
    py = (torch.arange(H, dtype=f32) - (H - 1) / 2).view(1, 1, H, 1)
    px = (torch.arange(W, dtype=f32) - (W - 1) / 2).view(1, 1, 1, W)
    c = torch.from_numpy(centre.astype(np.float32))  # [T+1, n, 2]
    cos = torch.from_numpy(np.cos(angle).astype(np.float32)).view(1, n, 1, 1)
    sin = torch.from_numpy(np.sin(angle).astype(np.float32)).view(1, n, 1, 1)
    inv = torch.from_numpy((1.0 / half).astype(np.float32)).view(1, n, 1, 1)
    dx = px - c[..., 0, None, None]  # [T+1, n, H, W]
    dy = py - c[..., 1, None, None]
    grid = torch.stack([(cos * dx + sin * dy) * inv, (cos * dy - sin * dx) * inv], -1)
    masks = _MASKS[torch.from_numpy(y)][:, None]  # [n, 1, R, R]
    # all steps at once: sample each pip on a [(T+1) * H, W] grid
    grid = grid.permute(1, 0, 2, 3, 4).reshape(n, (T + 1) * H, W, 2)
    frames = torch.nn.functional.grid_sample(masks, grid, mode="bilinear",
                                             padding_mode="zeros", align_corners=False)
    frames = frames.view(n, T + 1, H, W).transpose(0, 1)  # [T+1, n, H, W]
    diff = -0.8 * (frames[1:] - frames[:-1])  # intensity 1 - 0.8 * pip
    fire = torch.rand(diff.shape, generator=gen) < (2.5 * diff.abs()).clamp(max=1.0)
    x = torch.stack([fire & (diff < 0), fire & (diff > 0)], dim=2).to(f32)  # [T, n, 2, H, W]
    if noise > 0:
        x += (torch.rand(x.shape, generator=gen) < noise).to(f32)
    return x, torch.from_numpy(y)


# --------------------------------------------------------------------------------------------
# The real dataset, as tonic stores it


EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int64), ("y", np.int64), ("p", np.int64)])


def load_tonic(root: str | os.PathLike[str], train: bool = True
               ) -> list[tuple[np.ndarray, int]]:
    """Read POKER-DVS as ``tonic.datasets.POKERDVS`` stores it, without importing tonic.

    ``root`` is tonic's ``save_to`` (the folder that holds ``POKERDVS/``) or the
    ``POKERDVS`` folder itself. Layout: ``POKERDVS/pips_train/<cl|he|di|sp>/*.npy`` (and
    ``pips_test``); each file is an integer array ``[N, 4]`` with columns ``t`` (microseconds),
    ``x``, ``y``, ``p``. Returns ``(events, label)`` pairs, events as a structured array with
    fields ``t, x, y, p``, class folders and files in name order (tonic walks folders in
    file-system order), labels in tonic's order ``cl, he, di, sp``.
    """
    base = Path(root)
    folder = "pips_train" if train else "pips_test"
    if (base / "POKERDVS" / folder).is_dir():
        base = base / "POKERDVS"
    top = base / folder
    if not top.is_dir():
        raise NIRError(f"no POKER-DVS folder {folder!r} here (expected tonic's layout "
                       f"POKERDVS/{folder}/<cl|he|di|sp>/*.npy)", file=str(root))
    result = []
    for path, dirs, files in sorted(os.walk(top)):
        dirs.sort()
        label = Path(path).name
        for file in sorted(files):
            if not file.endswith(".npy"):
                continue
            if label not in CLASSES:
                raise NIRError(f"unknown class folder {label!r} (expected one of "
                               f"{', '.join(CLASSES)})", file=os.path.join(path, file))
            arr = np.load(os.path.join(path, file), allow_pickle=False)
            result.append((_structured(arr, os.path.join(path, file)), CLASSES.index(label)))
    return result


def _structured(arr: np.ndarray, file: str) -> np.ndarray:
    if arr.dtype.names:
        missing = [f for f in "txyp" if f not in arr.dtype.names]
        if missing:
            raise NIRError(f"event array lacks fields {missing}", file=file)
        out = np.empty(arr.shape[0], EVENT_DTYPE)
        for f in "txyp":
            out[f] = arr[f]
        return out
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.dtype.kind not in "iuf":
        raise NIRError(f"expected an event array [N, 4] (t, x, y, p), got {arr.dtype} "
                       f"{list(arr.shape)}", file=file)
    out = np.empty(arr.shape[0], EVENT_DTYPE)
    for k, f in enumerate("txyp"):
        out[f] = arr[:, k]
    return out


def to_frames(events: np.ndarray, time_window: float = 1000.0,
              sensor_size: tuple[int, int, int] = SENSOR) -> np.ndarray:
    """Event counts per ``time_window`` (microseconds) as ``[T, p, y, x]`` float32, like tonic's
    ``ToFrame(sensor_size, time_window)``: windows start at the first event's time, and only
    complete windows are kept (``include_incomplete=False``)."""
    W, H, P = sensor_size
    if len(events) == 0:
        return np.zeros((0, P, H, W), np.float32)
    t = events["t"].astype(np.int64)
    n = int(math.floor((t[-1] - t[0] - time_window) / time_window) + 1)
    n = max(n, 0)
    frames = np.zeros((n, P, H, W), np.float32)
    if n == 0:
        return frames
    k = np.floor((t - t[0]) / time_window).astype(np.int64)
    keep = k < n
    np.add.at(frames, (k[keep], events["p"][keep].astype(np.int64),
                       events["y"][keep].astype(np.int64), events["x"][keep].astype(np.int64)),
              1.0)
    return frames


# --------------------------------------------------------------------------------------------
# Training and evaluation


def predict(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return decisions(module(x), DECODE)


def train(module: Stepper, *, steps: int = 400, batch: int = 32, lr: float = 2e-3, seed: int = 0,
          T: int = T_TRAIN, show_progress: bool = True) -> dict[str, Any]:
    torch.manual_seed(seed)
    module.train()

    def loss_of(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = generate(batch, T, seed=seed * 1_000_003 + step)
        logits = module(x).max(dim=0).values  # [T, B, 4] -> [B, 4]
        return torch.nn.functional.cross_entropy(logits, y), {}

    final = fit(module.parameters(), loss_of, steps=steps, lr=lr, desc=NAME,
                show_progress=show_progress, cosine=False)
    module.eval()
    return {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "T": T,
            "final_loss": final["loss"]}


EVAL_SEED = 900_001


def evaluate(module: nn.Module, *, n: int = 256, T: int = T_EVAL, seed: int = EVAL_SEED
             ) -> dict[str, Any]:
    module.eval()
    correct = 0
    for start in range(0, n, 64):
        b = min(64, n - start)
        x, y = generate(b, T, seed=seed + start)
        correct += int((predict(module, x) == y).sum())
    return {"metric": "accuracy", "accuracy": correct / n, "n": n, "T": T, "seed": seed}
