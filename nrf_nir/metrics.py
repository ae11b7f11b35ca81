"""The metrics: spike-train and value comparisons between a reference and a target.

One meaning per name, used by the conformance suite, the targets and the zoo. Every function
takes two tensors or arrays of the same shape ``[T, B, *shape]`` (time steps first, then
samples, then neurons; ``[T, N]`` works too) and returns a plain float or int, so results go
straight into JSON. A spike is any non-zero value (Xylo's hidden neurons may emit several per
step); a *train* is one (sample, neuron) over time.

Undefined correlations are ``None`` (never NaN: NaN is not JSON, and ``None`` fails every
threshold in a manifest).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "F1_WINDOW", "compare", "compare_values", "count_correlation", "decision_agreement",
    "decisions", "exact_agreement", "first_divergence", "pearson", "relative_rmse", "rmse",
    "rms", "spike_agreement", "van_rossum", "windowed_f1",
]

F1_WINDOW = 3
"""Default half-width of the F1 window in time steps: spikes match within +-3 steps
(the conformance column ``f1_pm3``)."""


def _tensor(x: Any) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t.detach().cpu().to(torch.float64)


def _pair(ref: Any, got: Any) -> tuple[Tensor, Tensor]:
    a, b = _tensor(ref), _tensor(got)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: reference {list(a.shape)} vs target {list(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"expected [T, B, ...], got {list(a.shape)}")
    return a, b


def exact_agreement(ref: Any, got: Any) -> float:
    """Fraction of entries (steps x samples x neurons) whose values are equal (1.0 when
    empty). For spike counts this also compares how many spikes; see ``spike_agreement``."""
    a, b = _pair(ref, got)
    return float((a == b).double().mean()) if a.numel() else 1.0


def spike_agreement(ref: Any, got: Any) -> float:
    """Fraction of entries (steps x samples x neurons) where both spike or both stay silent,
    whatever the number of spikes (1.0 when empty)."""
    a, b = _pair(ref, got)
    return float(((a != 0) == (b != 0)).double().mean()) if a.numel() else 1.0


def first_divergence(ref: Any, got: Any) -> int | None:
    """The first time step (0-based) where any entry differs; None when identical."""
    a, b = _pair(ref, got)
    differs = (a != b).reshape(a.shape[0], -1).any(dim=1)
    idx = torch.nonzero(differs)
    return int(idx[0, 0]) if idx.numel() else None


def _dilate(spikes: Tensor, window: int) -> Tensor:
    """True at t when a spike occurs within [t-window, t+window] (per train)."""
    if window == 0:
        return spikes
    flat = spikes.reshape(spikes.shape[0], -1).T.unsqueeze(1)  # [trains, 1, T]
    pooled = torch.nn.functional.max_pool1d(flat, 2 * window + 1, stride=1, padding=window)
    return pooled.squeeze(1).T.reshape(spikes.shape)


def windowed_f1(ref: Any, got: Any, window: int = F1_WINDOW) -> float:
    """F1 of spikes matched within +-``window`` time steps in the same train (default
    ``F1_WINDOW``).

    precision: fraction of target spikes with a reference spike within ``window`` steps;
    recall: the converse. Coincidence-based (a spike may match several), the usual windowed
    measure; symmetric in its arguments. Both silent: 1.0; one silent: 0.0.
    """
    a, b = _pair(ref, got)
    sa, sb = (a != 0).double(), (b != 0).double()
    na, nb = float(sa.sum()), float(sb.sum())
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    precision = float((sb * _dilate(sa, window)).sum()) / nb
    recall = float((sa * _dilate(sb, window)).sum()) / na
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def pearson(ref: Any, got: Any) -> float | None:
    """Pearson correlation of all entries of two equally shaped tensors (e.g. membrane
    readouts, any layout); None when either side is constant (undefined)."""
    a, b = _tensor(ref).reshape(-1), _tensor(got).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: reference {list(a.shape)} vs target {list(b.shape)}")
    if a.numel() < 2 or bool((a == a[0]).all()) or bool((b == b[0]).all()):
        return None
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def count_correlation(ref: Any, got: Any) -> float | None:
    """Pearson correlation of spike counts per train (sample, neuron) over the whole run:
    1.0 when the counts are identical, None when they differ and either side has no
    variance (e.g. silent)."""
    a, b = _pair(ref, got)
    ca = (a != 0).double().sum(0).reshape(-1)
    cb = (b != 0).double().sum(0).reshape(-1)
    if torch.equal(ca, cb):
        return 1.0
    return pearson(ca, cb)


def van_rossum(ref: Any, got: Any, tau_steps: float = 10.0) -> float:
    """Van Rossum distance, averaged over trains: spikes filtered by ``exp(-t/tau)`` (``tau``
    in time steps), ``D = sqrt(sum_t (f_ref - f_got)^2 / tau)`` (in units of spikes; 0 when
    identical)."""
    a, b = _pair(ref, got)
    diff = ((a != 0).double() - (b != 0).double()).reshape(a.shape[0], -1)
    decay = float(np.exp(-1.0 / tau_steps))
    f = torch.zeros(diff.shape[1], dtype=torch.float64)
    total = torch.zeros_like(f)
    for t in range(diff.shape[0]):
        f = f * decay + diff[t]
        total += f * f
    return float(torch.sqrt(total / tau_steps).mean()) if total.numel() else 0.0


def rmse(ref: Any, got: Any) -> float:
    """Root-mean-square difference (e.g. of membrane voltages, in their units; 0.0 when
    empty)."""
    a, b = _pair(ref, got)
    return float(torch.sqrt(((a - b) ** 2).mean())) if a.numel() else 0.0


def rms(values: Any) -> float:
    """Root-mean-square of all entries (in their units; 0.0 when empty)."""
    t = _tensor(values)
    return float(torch.sqrt((t**2).mean())) if t.numel() else 0.0


def relative_rmse(ref: Any, got: Any) -> float | None:
    """``rmse(ref, got) / rms(ref)``: the error in units of the reference's own size
    (dimensionless; 0.0 when identical). None when the reference is all zeros and the target
    is not (undefined: fails every bound)."""
    error, size = rmse(ref, got), rms(ref)
    if size == 0.0:
        return 0.0 if error == 0.0 else None
    return error / size


def decisions(out: Any, decode: str = "max") -> Tensor:
    """Class per sample ``[B]`` from an output ``[T, B, C]``: ``max`` (argmax of the max over
    time, for voltage readouts), ``count`` (most spikes), ``first`` (earliest spike; ties go
    to the lowest index, silent samples to class 0)."""
    t = _tensor(out)
    x = t.reshape(t.shape[0], t.shape[1], -1)
    if decode == "max":
        return x.max(dim=0).values.argmax(dim=-1)
    if decode == "count":
        return (x != 0).sum(dim=0).argmax(dim=-1)
    if decode == "first":
        T = x.shape[0]
        steps = torch.arange(T, dtype=torch.float64).view(T, 1, 1).expand_as(x)
        first = torch.where(x != 0, steps, torch.full_like(x, float(T))).min(dim=0).values
        return first.argmin(dim=-1)
    raise ValueError(f"unknown decode {decode!r}: max, count or first")


def decision_agreement(ref: Any, got: Any, decode: str = "max") -> float:
    """Fraction of samples whose decoded class (``decisions``) is the same on both sides."""
    a, b = _pair(ref, got)
    return float((decisions(a, decode) == decisions(b, decode)).double().mean())


def compare(ref: Any, got: Any, *, window: int = F1_WINDOW, tau_steps: float = 10.0,
            decode: str | None = None) -> dict[str, Any]:
    """Every spike metric at once, as a JSON-able dict (keys ``exact``,
    ``first_divergence``, ``f1_pm<window>``, ``count_correlation``, ``van_rossum``,
    ``spikes_reference``, ``spikes_target`` and, with ``decode``, ``decision_agreement``)."""
    result: dict[str, Any] = {
        "exact": exact_agreement(ref, got),
        "first_divergence": first_divergence(ref, got),
        f"f1_pm{window}": windowed_f1(ref, got, window),
        "count_correlation": count_correlation(ref, got),
        "van_rossum": van_rossum(ref, got, tau_steps),
        "spikes_reference": int((_tensor(ref) != 0).sum()),
        "spikes_target": int((_tensor(got) != 0).sum()),
    }
    if decode is not None:
        result["decision_agreement"] = decision_agreement(ref, got, decode)
    return result


def compare_values(ref: Any, got: Any, *, decode: str | None = None) -> dict[str, Any]:
    """Every value metric at once (membrane read-outs and other non-spiking outputs), as a
    JSON-able dict: ``exact`` (fraction of equal entries), ``rmse`` and ``max_abs`` (in the
    output's units), ``reference_rms``, ``relative_rmse`` and, with ``decode`` and an output
    ``[T, B, C]``, ``decision_agreement``. Non-finite errors are None (never NaN)."""
    a, b = _pair(ref, got)
    error = rmse(a, b)
    largest = float((a - b).abs().max()) if a.numel() else 0.0
    result: dict[str, Any] = {
        "exact": exact_agreement(a, b),
        "rmse": error if np.isfinite(error) else None,
        "max_abs": largest if np.isfinite(largest) else None,
        "reference_rms": rms(a),
        "relative_rmse": None,
    }
    if np.isfinite(error):
        relative = relative_rmse(a, b)
        result["relative_rmse"] = relative if relative is None or np.isfinite(relative) else None
    if decode is not None and a.dim() == 3:
        result["decision_agreement"] = decision_agreement(a, b, decode)
    return result
