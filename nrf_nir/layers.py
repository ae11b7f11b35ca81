"""The torch layers of every node that is no neuron, shared by the reference and the
torch-based targets (norse, snntorch, rockpool), which all compute these nodes with plain torch
(docs/semantics.md). Each one's ``make_layer`` builds its neurons itself and asks
:func:`common_layer` for the rest. Stateless layers take ``[N, *in]``."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

from .functional import delay_line
from .runner import StatefulLayer
from .semantics import Semantics
from .validate import Identity, Shape


def param(arr: Any, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A float64 parameter rounded once to ``dtype``, broadcasting against ``[B, *shape]``:
    0-d when all its values are equal (the same numbers, much faster broadcasting)."""
    arr = np.asarray(arr, dtype=np.float64)
    flat = arr.reshape(-1)
    if flat.size == 1 or bool(np.all(flat == flat[0])):
        return torch.tensor(float(flat[0]), dtype=dtype, device=device)
    return torch.as_tensor(arr, device=device).to(dtype)


def param_unless(arr: Any, neutral: float, dtype: torch.dtype,
                 device: torch.device) -> Tensor | None:
    """None when ``arr`` is exactly ``neutral`` everywhere (the operation is skipped, which is
    exact), else :func:`param`."""
    return None if np.all(np.asarray(arr) == neutral) else param(arr, dtype, device)


class Scale(nn.Module):
    """NIR ``Scale``: ``y = x * s``."""

    def __init__(self, scale: Tensor) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class Threshold(nn.Module):
    """NIR ``Threshold``: ``y = x > theta`` (``x >= theta`` with ``threshold = "ge"``)."""

    def __init__(self, theta: Tensor, ge: bool) -> None:
        super().__init__()
        self.theta, self.ge = theta, ge

    def forward(self, x: Tensor) -> Tensor:
        return (x >= self.theta if self.ge else x > self.theta).to(x.dtype)


class Reshape(nn.Module):
    """NIR ``Flatten``: a per-sample reshape to the inferred output shape."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.per_sample = shape  # not ``shape``: a Rockpool module's ``shape`` is its (in, out)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.per_sample)


class Delay(StatefulLayer):
    """NIR ``Delay``: ``y[t] = x[t - d]`` per element, ``d = round(delay / dt)`` steps (a torch
    delay line)."""

    def __init__(self, steps: np.ndarray, shape: Shape, dtype: torch.dtype,
                 device: torch.device) -> None:
        super().__init__()
        self.shape, self.dtype, self.device = shape, dtype, device
        self.depth = int(steps.max()) if steps.size else 0
        self.uniform = steps.size == 1 or bool(np.all(steps == steps.reshape(-1)[0]))
        self.d = int(steps.reshape(-1)[0]) if steps.size else 0
        self.steps = torch.as_tensor(np.broadcast_to(steps, shape).copy(), device=device)

    def init_state(self, batch: int) -> Tensor:
        return torch.zeros(self.depth, batch, *self.shape, dtype=self.dtype, device=self.device)

    def run(self, x: Tensor, state: Tensor, out: Tensor,
            record: dict[str, Tensor] | None) -> Tensor:
        y, history = delay_line(state, x, None if self.uniform else self.steps, self.d)
        out.copy_(y)
        return history

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        out = torch.empty_like(x).unsqueeze(0)
        state = self.run(x.unsqueeze(0), state, out, None)
        return out[0], state


def linear(weight: np.ndarray | Tensor, bias: np.ndarray | Tensor | None, dtype: torch.dtype,
           device: torch.device) -> nn.Linear:
    """``torch.nn.Linear`` holding ``weight`` ``[out, in]`` (and ``bias``) rounded to ``dtype``."""
    w = torch.as_tensor(weight, device=device).to(dtype)
    layer = nn.utils.skip_init(nn.Linear, w.shape[1], w.shape[0], bias=bias is not None,
                               device=device, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None:
            layer.bias.copy_(torch.as_tensor(bias, device=device).to(dtype))
    return layer


def conv(nd: int, p: dict[str, Any], dtype: torch.dtype, device: torch.device) -> nn.Module:
    """``torch.nn.Conv1d`` / ``Conv2d`` of a validated node's parameters."""
    w = p["weight"]
    has_bias = bool(np.any(p["bias"]))  # the reference passes no bias when it is all zero
    cls = nn.Conv1d if nd == 1 else nn.Conv2d
    layer = nn.utils.skip_init(cls, w.shape[1] * p["groups"], w.shape[0], tuple(w.shape[2:]),
                               stride=p["stride"], padding=p["padding"],
                               dilation=p["dilation"], groups=p["groups"], bias=has_bias,
                               device=device, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w, device=device).to(dtype))
        if has_bias:
            layer.bias.copy_(torch.as_tensor(p["bias"], device=device).to(dtype))
    return layer


def common_layer(node: nir.NIRNode, p: dict[str, Any], in_shape: Shape, out_shape: Shape,
                 sem: Semantics, dtype: torch.dtype, device: torch.device) -> nn.Module | None:
    """The torch module of a node that is no neuron (None for a neuron, or an unknown type)."""
    dt = sem.require_dt()
    if isinstance(node, (nir.Input, nir.Output, Identity)):
        return nn.Identity()
    if isinstance(node, (nir.Affine, nir.Linear)):
        return linear(p["weight"], p.get("bias"), dtype, device)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return conv(1 if isinstance(node, nir.Conv1d) else 2, p, dtype, device)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        return nn.AvgPool2d(p["kernel_size"], p["stride"], p["padding"], count_include_pad=True,
                            divisor_override=1 if isinstance(node, nir.SumPool2d) else None)
    if isinstance(node, nir.Flatten):
        return Reshape(out_shape)
    if isinstance(node, nir.Scale):
        return Scale(param(p["scale"], dtype, device))
    if isinstance(node, nir.Threshold):
        return Threshold(param(p["threshold"], dtype, device), sem.threshold == "ge")
    if isinstance(node, nir.Delay):
        with np.errstate(all="ignore"):
            steps = np.round(p["delay"] / dt).astype(np.int64)
        return Delay(steps, in_shape, dtype, device)
    return None
