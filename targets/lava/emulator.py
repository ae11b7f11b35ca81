"""``loihi``: a batched PyTorch emulator of Lava's Loihi-2 fixed-point CUBA LIF and its Dense
connections, bit-exact with ``lava-fixed`` (lava-nc 0.10.0 ``PyLifModelBitAcc`` and
``PyDenseModelBitAcc``), without Lava's one-step-per-hop latency (outputs are aligned with the
reference, as ``lava-fixed`` aligns them).

Per neuron and step, in integers (``M = 2**23``)::

    a   = wrap32(W_ff @ s + W_rec @ z[t-1] + bias)        # a_in, int32 like Lava's channels
    u   = wrap24(wrap32(trunc(u * (4096 - du - 1) / 4096) + wrap32(a << 6)))
    v   = clip(trunc(v * (4096 - dv) / 4096) + u, -(M - 1), M - 1)
    z   = v > vth << 6;   v = 0 where z

``trunc`` rounds toward zero (Lava: ``sign(x) * (|x| >> 12)``); ``wrap24`` is Lava's single
wrap (``u > M: u - 2M``, then ``<= -M: + 2M``). Where bounds computed from the weights prove an
overflow impossible, its handling is skipped (exact either way).

Matrix products are exact: on CPU, spikes (and graded payloads up to 127) times the 8-bit
weights run as int8 products with int32 accumulation (``torch._int_mm``; ``w = 2*hi + lo``
splits Lava's 9-bit weight range into int8 parts), else in float32 (float64) when every
partial sum is an integer below 2**24 (2**53), else in int64.

A ``conv`` synapse (Lava's ``PyConvModelFixed``) is a PyTorch convolution of the integer
inputs with the integer kernel, rounded: in float32 on CPU when the kernel's bound on the sums
is below 2**24 (PyTorch's CPU convolution is direct or im2col + GEMM: every partial sum an
exact integer), else in float64 (below 2**52; on CUDA always, where cuDNN may pick Winograd or
FFT algorithms whose rounding stays far below 0.5), then Lava's 24-bit signed wrap of its
output (``signed_clamp``), skipped where the kernel's bound proves it a no-op.

Execution is layer by layer: a layer's feed-forward input for all ``T`` steps is one matrix
product, then the neuron steps through time on ``[B, n]``; a recurrent loop adds its product
inside the step loop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .conv import WORK_CAP, ConvGeometry, conv_work
from .plan import UV_MAX, FixedLayer, FixedPlan, Synapse, needed_layers

_M = UV_MAX
_2_31 = 2**31


def _wrap32(x: Tensor) -> Tensor:
    return ((x + _2_31) & (2**32 - 1)) - _2_31


class _Weights:
    """An integer weight matrix ``w`` ``[n, k]`` (values in [-256, 255]) ready for exact
    products: ``w = 2*hi + lo`` with ``hi`` in int8 and ``lo`` in {0, 1}, for the int8 matrix
    product (``torch._int_mm``, int32 accumulation), and ``w`` itself for the float path."""

    def __init__(self, w: Tensor) -> None:
        self.w = w
        self.n, self.k = int(w.shape[0]), int(w.shape[1])
        self.row_bound = float(w.abs().sum(dim=1).max()) if w.numel() else 0.0
        small = w.numel() > 0 and int(w.min()) >= -256 and int(w.max()) <= 255
        self.int8 = small and w.device.type == "cpu"
        if self.int8:
            self.hi = torch.div(w, 2, rounding_mode="floor").to(torch.int8).T.contiguous()
            lo = (w - 2 * torch.div(w, 2, rounding_mode="floor")).to(torch.int8)
            self.lo = lo.T.contiguous() if bool(lo.any()) else None
        self.fallbacks = 0

    def bound(self, x_max: float) -> float:
        """A bound on ``|x @ w.T|`` for ``|x| <= x_max``."""
        return self.row_bound * x_max

    def matmul(self, x: Tensor, x_max: float) -> Tensor:
        """``x @ w.T`` exactly, for integer-valued ``x`` ``[m, k]`` with ``|x| <= x_max``:
        int32 (int8 path, or float path with a bound below 2**31) or int64."""
        bound = self.row_bound * x_max
        if self.int8 and x_max <= 127 and bound < 2**31 and x.shape[0] > 0:
            try:  # int32 result: |x @ w.T| <= bound < 2**31
                xi = x.to(torch.int8)
                out = torch._int_mm(xi, self.hi).mul_(2)
                if self.lo is not None:
                    out += torch._int_mm(xi, self.lo)
                return out
            except RuntimeError:  # a shape or build without int8 kernels: the float path
                self.fallbacks += 1
                self.int8 = False
        if bound < 2**24:
            return (x.to(torch.float32) @ self.w.to(torch.float32).T).to(torch.int32)
        if bound < 2**53:
            out = x.to(torch.float64) @ self.w.to(torch.float64).T
            return out.to(torch.int32 if bound < 2**31 else torch.int64)
        return x.to(torch.int64) @ self.w.T


class _Conv:
    """A ``conv`` synapse: integer kernel ``[C_out, C_in/g, kh, kw]`` and its geometry; Lava
    wraps its output to 24 bits (signed)."""

    def __init__(self, kernel: Tensor, geo: ConvGeometry) -> None:
        self.kernel, self.geo = kernel, geo
        self.n = int(geo.out_shape[0] * geo.out_shape[1] * geo.out_shape[2])
        self.row_bound = float(kernel.abs().reshape(kernel.shape[0], -1).sum(dim=1).max()) \
            if kernel.numel() else 0.0
        (ph0, ph1), (pw0, pw1) = geo.padding
        self.pad = (pw0, pw1, ph0, ph1)
        #: elements of work per input row (padded input, output, PyTorch's im2col buffer)
        self.work = conv_work(geo, tuple(kernel.shape[2:]))

    def bound(self, x_max: float) -> float:
        return min(self.row_bound * x_max, float(_M))

    def matmul(self, x: Tensor, x_max: float) -> Tensor:
        """The convolution of ``x`` ``[m, n_in]`` (flat ``[C, H, W]``): ``[m, n]`` int64,
        exact, wrapped to 24 bits like Lava."""
        bound = self.row_bound * x_max
        if bound >= 2**52:
            raise ValueError("a convolution whose sums may exceed 2**52 is not emulated")
        # float32 on CPU (direct convolution: every partial sum an integer below 2**24, exact);
        # float64 elsewhere (cuDNN may pick Winograd/FFT: rounding errors far below 0.5)
        dtype = torch.float32 if bound < 2**24 and x.device.type == "cpu" else torch.float64
        kernel = self.kernel.to(dtype)
        got = torch.empty(x.shape[0], self.n, dtype=torch.int64, device=x.device)
        rows = max(1, WORK_CAP // max(1, self.work))  # bounded memory per convolution call
        for j in range(0, x.shape[0], rows):
            xs = F.pad(x[j:j + rows].to(dtype).reshape(-1, *self.geo.in_shape), self.pad)
            out = F.conv2d(xs, kernel, stride=self.geo.stride, dilation=self.geo.dilation,
                           groups=self.geo.groups)
            got[j:j + rows] = torch.round(out).reshape(xs.shape[0], self.n)
        if bound >= _M:  # signed_clamp(x, 24): (x + 2**23) mod 2**24 - 2**23
            got = ((got + _M) & (2 * _M - 1)) - _M
        return got


def _synapse(syn: Synapse, dev: torch.device) -> _Weights | _Conv:
    if syn.kind == "conv":
        assert syn.geometry is not None
        return _Conv(torch.as_tensor(syn.weight, dtype=torch.int64, device=dev), syn.geometry)
    if syn.kind != "dense":
        raise ValueError(f"synapse kind {syn.kind!r} is not emulated")
    return _Weights(torch.as_tensor(syn.weight, dtype=torch.int64, device=dev))


class _OneThread:
    """The step loop's elementwise ops on ``[B, n]`` run fastest on one CPU thread (OpenMP
    threads on a busy machine spin-wait at every small op): set 1 thread for the loop."""

    def __init__(self, active: bool) -> None:
        self.active, self.saved = active, 0

    def __enter__(self) -> None:
        if self.active:
            self.saved = torch.get_num_threads()
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self.active:
            torch.set_num_threads(self.saved)


class LoihiEmulator:
    """Run a :class:`FixedPlan` on ``[T, B, n_in]`` integer inputs (torch, CPU or CUDA)."""

    def __init__(self, fixed: FixedPlan, device: torch.device | str | None = None) -> None:
        self.fixed = fixed
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        dev = self.device
        #: per layer, one weight matrix or convolution per synapse (feed-forward input)
        self.w_ff = [[_synapse(syn, dev) for syn in fl.inputs] for fl in fixed.layers]
        self.w_rec = [None if fl.w_rec is None else
                      _Weights(torch.as_tensor(fl.w_rec, dtype=torch.int64, device=dev))
                      for fl in fixed.layers]
        self.bias = [torch.as_tensor(fl.bias, dtype=torch.int64, device=dev)
                     for fl in fixed.layers]
        #: elements of one time chunk's feed-forward product (memory bound)
        self.chunk_elements = 1 << 23

    def run(self, x: Tensor, layers: set[int] | None = None, record_state: bool = False,
            checked: bool = False, progress: bool = False) -> dict:
        """Spikes (int8 0/1) ``[T, B, n]`` of every layer (or of ``layers`` and what they
        need), keyed by layer index; a read-out layer gives its voltage ``v`` instead (int64,
        Lava's units). ``record_state`` adds ``(k, "u")`` / ``(k, "v")`` entries. ``checked``:
        the caller has checked that ``x`` is integer-valued. ``progress``: a progress bar on
        stderr over the neuron steps (``T`` per layer run, layer after layer)."""
        fixed = self.fixed
        x = x.to(self.device)
        T, B = int(x.shape[0]), int(x.shape[1])
        xin = x.reshape(T, B, -1)
        if not checked and not bool(torch.all(xin == torch.round(xin))):
            raise ValueError("Loihi inputs must be integers (spikes, or graded spike payloads)")
        need = needed_layers(fixed.layers, set(range(len(fixed.layers))) if layers is None
                             else set(layers))
        x_max = float(xin.abs().max()) if xin.numel() else 0.0
        out: dict = {}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=T * len(need), unit="step", desc=f"loihi ({len(need)} layers)",
                       leave=False)
        for k, fl in enumerate(fixed.layers):
            if k not in need:
                continue
            # a synapse's delay only aligns Lava's per-hop latency; this emulator has none
            feeds = [(w, xin if syn.source < 0 else out[syn.source],
                      x_max if syn.source < 0 else 1.0)
                     for w, syn in zip(self.w_ff[k], fl.inputs, strict=True)]
            bound = sum(w.bound(s_max) for w, _, s_max in feeds)
            rec = self.w_rec[k]
            rec_bound = rec.row_bound if rec is not None else 0.0
            b_max = float(self.bias[k].abs().max()) if fl.n else 0.0
            a_bound = bound + rec_bound + b_max
            spikes = torch.empty(T, B, fl.n, dtype=torch.int8, device=self.device)
            u_rec = v_rec = None
            if record_state or fl.readout:
                u_rec = torch.empty(T, B, fl.n, dtype=torch.int64, device=self.device)
                v_rec = torch.empty(T, B, fl.n, dtype=torch.int64, device=self.device)
            state = None
            # time chunks: the feed-forward product of a chunk at once, bounded memory
            widest = max([fl.n, *(s.shape[-1] for _, s, _ in feeds),
                          *(w.work for w, _, _ in feeds if isinstance(w, _Conv))])
            tc = max(1, min(T, self.chunk_elements // max(1, B * widest)))
            for t0 in range(0, T, tc):
                t1 = min(T, t0 + tc)
                parts = [w.matmul(s[t0:t1].reshape((t1 - t0) * B, -1), s_max)
                         for w, s, s_max in feeds]
                if a_bound < 2**31:  # no int32 overflow: stay in int32
                    a = parts[0].to(torch.int32)
                    for p in parts[1:]:
                        a = a + p.to(torch.int32)
                    a = a.reshape(t1 - t0, B, fl.n) + self.bias[k].to(torch.int32)
                else:  # Lava sums int32 channels: the sum wraps like one wrap of the total
                    a = parts[0].to(torch.int64)
                    for p in parts[1:]:
                        a = a + p.to(torch.int64)
                    a = _wrap32(a.reshape(t1 - t0, B, fl.n)) + self.bias[k]
                with _OneThread(self.device.type == "cpu" and B * fl.n <= 1 << 20):
                    state = self._neuron(fl, a, rec, a_bound, state, spikes[t0:t1],
                                         None if u_rec is None else u_rec[t0:t1],
                                         None if v_rec is None else v_rec[t0:t1], bar)
            out[k] = v_rec if fl.readout else spikes
            if record_state:
                out[(k, "u")], out[(k, "v")] = u_rec, v_rec
        if bar is not None:
            bar.close()
        return out

    def _neuron(self, fl: FixedLayer, a: Tensor, rec: _Weights | None, a_bound: float,
                state: tuple[Tensor, Tensor, Tensor] | None, spikes: Tensor,
                u_rec: Tensor | None, v_rec: Tensor | None, bar: Any = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        """Step the neurons through the chunk ``a`` ``[Tc, B, n]``; write ``spikes[t]``
        (and the states); return the state ``(u, v, z)``. ``bar``: a progress bar moved
        one step per step."""
        T, B, n = a.shape
        dev = a.device
        if state is None:
            u = torch.zeros(B, n, dtype=torch.int64, device=dev)
            v = torch.zeros(B, n, dtype=torch.int64, device=dev)
            z_prev = torch.zeros(B, n, dtype=torch.int8, device=dev)
        else:
            u, v, z_prev = state
        keep_u = 4096 - (fl.du + 1)
        keep_v = 4096 - fl.dv
        vth = fl.vth << 6
        # Bounds that make Lava's overflow handling a no-op (then it is skipped; exact):
        # int32 wraps when |a << 6| + |decayed u| < 2**31; the 24-bit wrap of u when
        # |u| <= 64 * a_bound * 4096 / (du + 1) < M; the clip of v when |v| <= u_max * 4096 / dv
        # <= M - 1.
        safe32 = a_bound * 64 + 2 * _M < _2_31
        u_max = 64 * a_bound * 4096 / (4096 - keep_u)
        wrap24 = not (safe32 and u_max < _M)
        clip = wrap24 or fl.dv == 0 or u_max * 4096 / fl.dv > _M - 1
        full_u = keep_u == 0
        act_all = a * 64 if (safe32 and rec is None) else None
        z = torch.empty(B, n, dtype=torch.bool, device=dev)
        for t in range(T):
            if act_all is not None:
                act = act_all[t]
            else:
                at = a[t]
                if rec is not None:
                    zr = rec.matmul(z_prev, 1.0)
                    at = at + (_wrap32(zr) if rec.row_bound >= 2**31 else zr)
                act = at * 64 if safe32 else _wrap32(_wrap32(at.to(torch.int64)) * 64)
            if full_u:
                cur = act
            else:  # u is int64 here (int32 products would overflow)
                cur = torch.div(u.to(torch.int64) * keep_u, 4096, rounding_mode="trunc")
                cur.add_(act)
                if not safe32:
                    cur = _wrap32(cur)
            if wrap24:
                w1 = torch.where(cur > _M, cur - 2 * _M, cur)
                u = torch.where(w1 <= -_M, cur + 2 * _M, w1)
            else:
                u = cur
            if keep_v == 4096:
                v = v + u
            else:
                v = torch.div(v * keep_v, 4096, rounding_mode="trunc").add_(u)
            if clip:
                v.clamp_(-(_M - 1), _M - 1)
            torch.gt(v, vth, out=z)
            v.masked_fill_(z, 0)
            spikes[t].copy_(z)
            z_prev = spikes[t]
            if u_rec is not None and v_rec is not None:
                u_rec[t] = u
                v_rec[t] = v
            if bar is not None:
                bar.update(1)
        return u, v, z_prev
