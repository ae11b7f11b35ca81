"""Agreement metrics between two spike trains ``[T, B, ...]`` (a target and the reference).

A spike is any value > 0 (Xylo's hidden neurons may emit several per step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _binary(x: Tensor) -> Tensor:
    return (x.detach().to(torch.float64).cpu() > 0).to(torch.float64)


def exact_agreement(a: Tensor, b: Tensor) -> float:
    """Fraction of (step, sample, neuron) where both spike or both stay silent."""
    return float((_binary(a) == _binary(b)).to(torch.float64).mean())


def _dilate(x: Tensor, window: int) -> Tensor:
    """1 where ``x`` spikes within +-window steps ([T, N] -> [T, N])."""
    if window == 0:
        return x
    y = F.max_pool1d(x.T[:, None, :], kernel_size=2 * window + 1, stride=1, padding=window)
    return y[:, 0, :].T


def windowed_f1(a: Tensor, b: Tensor, window: int = 2) -> float:
    """F1 of matching spikes within +-``window`` steps: precision = spikes of ``a`` with a
    spike of ``b`` nearby, recall the reverse. 1.0 when neither spikes."""
    x = _binary(a).reshape(a.shape[0], -1)
    y = _binary(b).reshape(b.shape[0], -1)
    nx, ny = float(x.sum()), float(y.sum())
    if nx == 0 and ny == 0:
        return 1.0
    if nx == 0 or ny == 0:
        return 0.0
    precision = float((x * _dilate(y, window)).sum()) / nx
    recall = float((y * _dilate(x, window)).sum()) / ny
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two equally shaped tensors (NaN when one is constant)."""
    x = a.detach().to(torch.float64).cpu().reshape(-1)
    y = b.detach().to(torch.float64).cpu().reshape(-1)
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum()) / den if den > 0 else math.nan


def count_correlation(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of the spike counts per (sample, neuron) over the whole run."""
    return pearson(_binary(a).sum(0), _binary(b).sum(0))


def shift(x: Tensor, steps: int) -> Tensor:
    """``y[t] = x[t + steps]`` (zeros after the end): undo a latency of ``steps``."""
    if steps <= 0:
        return x
    y = torch.zeros_like(x)
    if steps < x.shape[0]:
        y[: x.shape[0] - steps] = x[steps:]
    return y
