"""Pure one-step functions of the stateful NIR nodes (docs/semantics.md).

Tensors are ``[B, *shape]``; parameters broadcast against them. The operation order is part of
the contract: it is Norse 1.1.0's, so that a model trained in Norse runs bit for bit the same.
``c = dt * (1/tau)`` (Euler) or ``a = exp(-dt/tau)``, ``b = 1 - a`` (exponential) are
precomputed by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class Firing:
    """Threshold and reset of a spiking node (docs/semantics.md, "Reset").

    v_th, v_reset: tensors broadcastable to the state. ge: spike on ``v >= v_th`` instead of
    ``v > v_th``. subtract: reset by ``v - z*(v_th - v_reset)`` instead of ``v = v_reset``.
    multi: ``z`` counts the multiples of ``theta = v_th - v_reset`` that ``v - v_reset``
    exceeds (``gt``) or reaches (``ge``): several spikes per step (Sinabs's MultiSpike).
    floor: the membrane's lower bound after the reset (``-v_th`` in the run dtype), or None.
    delayed: the reset of a step's spikes lands in the next step, after its integration
    (:meth:`fire_delayed`; snnTorch's ``reset_delay=True``).
    guarded: subtract reset in the step that spikes, the spike test seeing a pending
    subtraction where the last step's membrane is still above threshold
    (:meth:`fire_guarded`; snnTorch's ``reset_delay=False``).
    """

    v_th: Tensor
    v_reset: Tensor
    ge: bool = False
    subtract: bool = False
    multi: bool = False
    floor: Tensor | None = None
    delayed: bool = False
    guarded: bool = False
    reset_is_zero: bool = field(init=False)
    plain: bool = field(init=False)
    theta: Tensor = field(init=False)

    def __post_init__(self) -> None:
        # Decided once: reading a tensor's value every step would sync a GPU every step.
        zero = self.v_reset.dim() == 0 and float(self.v_reset) == 0.0
        object.__setattr__(self, "reset_is_zero", zero)
        object.__setattr__(self, "plain", not (self.multi or self.delayed or self.guarded)
                           and self.floor is None)
        object.__setattr__(self, "theta", self.v_th - self.v_reset)

    def fire(self, v: Tensor, out: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(z, v_after_reset)``; ``z`` has ``v``'s dtype (0. or 1.; a count under
        ``multi``) and is written into ``out`` when given. Not for ``delayed`` or ``guarded``
        firing.

        Float arithmetic only (faster than boolean masks on CPU) and exact:
        ``sign(v - v_th) > 0`` iff ``v > v_th``; ``v * (1 - z) + z * v_reset`` is ``v`` or
        ``v_reset`` exactly (Norse resets the same way).
        """
        if not self.plain:
            z = self.spikes(v)
            if out is not None:
                out.copy_(z)
            return z, self.clamp(self.reset(v, z))
        if out is not None:  # a comparison written straight into a float buffer
            z = torch.ge(v, self.v_th, out=out) if self.ge else torch.gt(v, self.v_th, out=out)
        elif self.ge:  # v >= v_th  <=>  not (v_th > v)
            z = (self.v_th - v).sign_().clamp_(min=0).neg_().add_(1)
        else:
            z = (v - self.v_th).sign_().clamp_(min=0)
        if self.subtract:
            v = v - z * (self.v_th - self.v_reset)
        else:
            v = v * (1 - z)
            if not self.reset_is_zero:
                v = v + z * self.v_reset
        return z, v

    def fire_delayed(self, v: Tensor, z_prev: Tensor) -> tuple[Tensor, Tensor]:
        """One step of delayed firing on the integrated membrane ``v``: the reset of the last
        step's spikes ``z_prev`` first, then this step's spikes; return ``(z, v)``, ``v`` not
        reset for ``z`` (the next step does it)."""
        v = self.reset(v, z_prev)
        return self.spikes(v), self.clamp(v)

    def fire_guarded(self, v: Tensor, v_prev: Tensor) -> tuple[Tensor, Tensor]:
        """One step of guarded firing (subtract reset) on the integrated membrane ``v``, with
        ``v_prev`` the membrane the last step ended with: ``p = spikes(v_prev)`` (a pending
        subtraction), ``u = v - p*theta``, ``z = spikes(u)``, ``v = u - (z - p)*theta``
        (``= v - z*theta``), snnTorch's order; return ``(z, v)``."""
        pending = self.spikes(v_prev)
        u = self.reset(v, pending)
        z = self.spikes(u)
        return z, self.clamp(u - (z - pending) * self.theta)

    def spikes(self, v: Tensor) -> Tensor:
        """``z`` of membrane ``v`` in ``v``'s dtype: 0/1, or under ``multi`` the count, with
        Sinabs's arithmetic for ``ge``: ``trunc(u/theta)`` where ``u = v - v_reset > 0``
        (``u/theta`` rounded in the run dtype), else 0; ``gt``: ``ceil(u/theta) - 1``."""
        if not self.multi:
            return (v >= self.v_th if self.ge else v > self.v_th).to(v.dtype)
        u = v if self.reset_is_zero else v - self.v_reset
        if self.ge:
            count = torch.div(u, self.theta, rounding_mode="trunc")
        else:
            count = torch.div(u, self.theta).ceil_().sub_(1).clamp_(min=0)
        return torch.where(u > 0, count, torch.zeros((), dtype=v.dtype, device=v.device))

    def reset(self, v: Tensor, z: Tensor) -> Tensor:
        """``v`` after the reset for spikes ``z``: ``v - z*theta`` (subtract), or ``v_reset``
        where ``z > 0`` (value: one reset however many spikes)."""
        if self.subtract:
            return v - z * self.theta
        fired = (z > 0).to(v.dtype) if self.multi else z
        v = v * (1 - fired)
        return v if self.reset_is_zero else v + fired * self.v_reset

    def clamp(self, v: Tensor) -> Tensor:
        """The membrane floor, in Sinabs's arithmetic: ``relu(v - floor) + floor``."""
        if self.floor is None:
            return v
        return torch.relu(v - self.floor) + self.floor


def li_euler(x: Tensor, v: Tensor, c: Tensor, r: Tensor | None, v_leak: Tensor | None) -> Tensor:
    """LI: ``v + c * ((v_leak - v) + r*x)``; ``r``/``v_leak`` None mean exactly 1 / 0."""
    rx = x if r is None else r * x
    lv = -v if v_leak is None else v_leak - v
    return v + c * (lv + rx)


def lif_euler(x: Tensor, v: Tensor, c: Tensor, r: Tensor | None, v_leak: Tensor | None) -> Tensor:
    """LIF membrane (Norse LIFBox order): ``v + c * ((r*x + v_leak) - v)``."""
    rx = x if r is None else r * x
    if v_leak is not None:
        rx = rx + v_leak
    return v + c * (rx - v)


def leaky_exponential(x: Tensor, v: Tensor, a: Tensor, b: Tensor, r: Tensor | None,
                      v_leak: Tensor | None) -> Tensor:
    """Exact decay: ``a*v + b*(v_leak + r*x)`` with ``a = exp(-dt/tau)``, ``b = 1 - a``."""
    rx = x if r is None else r * x
    if v_leak is not None:
        rx = v_leak + rx
    return a * v + b * rx


def integrate(x: Tensor, v: Tensor, dt_r: Tensor) -> Tensor:
    """I / IF: ``v + (dt*r) * x``."""
    return v + dt_r * x


def synapse_jump(x: Tensor, i: Tensor, w_in: Tensor | None) -> Tensor:
    """Cuba current jump: ``i + w_in*x``."""
    return i + (x if w_in is None else w_in * x)


def synapse_decay_euler(i: Tensor, neg_c_syn: Tensor) -> Tensor:
    """Cuba current decay (Norse order): ``i + (-c_syn) * i``."""
    return i + neg_c_syn * i


def delay_line(history: Tensor, x: Tensor, steps: Tensor | None, d: int
               ) -> tuple[Tensor, Tensor]:
    """``y[t] = x[t - d]`` over a chunk, with the previous ``depth`` steps in ``history``.

    history: ``[depth, B, *shape]`` (zeros at the start); x: ``[Tc, B, *shape]``; steps: the
    per-element delays in steps (``[*shape]``), or None when every element is delayed by ``d``.
    Returns ``(y [Tc, B, *shape], new history [depth, B, *shape])``.
    """
    depth, tc = history.shape[0], x.shape[0]
    if depth == 0:
        return x.clone(), history
    buf = torch.cat([history, x], dim=0)
    if steps is None:
        start = depth - d
        y = buf[start:start + tc].clone()
    else:
        shape = x.shape[2:]
        t = torch.arange(tc, device=x.device).view(tc, *([1] * len(shape)))
        idx = (depth + t - steps).unsqueeze(1).expand(tc, x.shape[1], *shape)
        y = torch.gather(buf, 0, idx)
    return y, buf[tc:].clone()
