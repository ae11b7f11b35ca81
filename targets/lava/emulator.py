"""``loihi``: a batched PyTorch emulator of Lava's Loihi-2 fixed-point CUBA LIF and its Dense
connections, bit-exact with ``lava-fixed`` (lava-nc 0.10.0 ``PyLifModelBitAcc`` and
``PyDenseModelBitAcc``), without Lava's one-step-per-hop latency (outputs are aligned with the
reference, as ``lava-fixed`` aligns them).

Per neuron and step, in integers (``M = 2**23``)::

    a   = wrap32(W_ff @ s + W_rec @ z[t-1] + bias)        # a_in, int32 like Lava's channels
    u   = wrap24(wrap32(trunc(u * (4096 - du - 1) / 4096) + wrap32(a << 6)))
    v   = clip(trunc(v * (4096 - dv) / 4096) + u + 64 * v_bias, -(M - 1), M - 1)
    z   = v > vth << 6;   v = 0 where z

(``v_bias``: the neuron bias ``bias_mant`` that holds a leak behind a filtering ``u``, else 0.)

``trunc`` rounds toward zero (Lava: ``sign(x) * (|x| >> 12)``); ``wrap24`` is Lava's single
wrap (``u > M: u - 2M``, then ``<= -M: + 2M``). Where bounds computed from the weights prove an
overflow impossible, its handling is skipped (exact either way).

Matrix products are exact: on CPU, spikes (and graded payloads up to 127) times the 8-bit
weights run as int8 products with int32 accumulation (``torch._int_mm``; ``w = 2*hi + lo``
splits Lava's 9-bit weight range into int8 parts), else in float32 (float64) when every
partial sum is an integer below 2**24 (2**53), else in int64.

A ``conv`` synapse (Lava's ``PyConvModelFixed``) is a PyTorch convolution of the integer
inputs with the integer kernel (a kernel constant on stride-sized blocks as that sum pool, then
the block kernel: ``_Conv``): in float32 on CPU, cast to int32 without rounding, when the
kernel's bound on the sums is below 2**24 (PyTorch's CPU convolution is direct or im2col +
GEMM: every partial sum an exact integer), else in float64 (below 2**52; on CUDA always,
where cuDNN may pick Winograd or FFT algorithms whose rounding stays far below 0.5), then
Lava's 24-bit signed wrap of its
output (``signed_clamp``), skipped where the kernel's bound proves it a no-op.

Execution is layer by layer: a layer's feed-forward input for all ``T`` steps is one matrix
product, then the neuron steps through time on ``[B, n]``; a recurrent loop adds its product
inside the step loop. A graph ``Delay`` on a synapse (``plan.node_delays``: steps per synapse)
splits it into one part per delay ``d``, which multiplies the source ``d`` steps earlier (zeros
before the first step): Lava's ``DelayDense`` sums the same integer products into the same
step. Lava's alignment delays are left out (they undo its latency). The populations of a loop
through several populations (``plan.layer_groups``; also one population with a synapse from
itself: its own loop through a ``Delay``) step together, one step at a time: each
member adds the products of the members' outputs ``node_delay + back`` steps earlier (the
connection back in the loop at least one step) to its inputs from outside the loop, summed
(``_input_sum``) and stepped (``_neuron``) as on the one-layer path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .conv import WORK_CAP, ConvGeometry, conv_work
from .plan import (
    UV_MAX,
    FixedLayer,
    FixedPlan,
    Synapse,
    layer_groups,
    needed_layers,
    node_delays,
)

_M = UV_MAX
_2_31 = 2**31


def _wrap32(x: Tensor) -> Tensor:
    return ((x + _2_31) & (2**32 - 1)) - _2_31


def _c_order(t: Tensor) -> Tensor:
    """A copy of ``t`` with C-order strides also along dimensions of size 1 (``contiguous()``
    keeps any stride there, e.g. ``(1, 1)`` for ``[1, 4]``, and ``torch._int_mm`` on CPU reads
    such a matrix wrongly)."""
    return t.new_empty(t.shape).copy_(t)


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
            self.hi = _c_order(torch.div(w, 2, rounding_mode="floor").to(torch.int8).T)
            lo = (w - 2 * torch.div(w, 2, rounding_mode="floor")).to(torch.int8)
            self.lo = _c_order(lo.T) if bool(lo.any()) else None
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
    wraps its output to 24 bits (signed).

    A kernel constant on blocks of its stride ``s_h x s_w`` (what the planner's fold of a sum
    pool of window and stride ``s`` into the next convolution gives: ``SumPool2d(2) ->
    Conv2d(3x3)`` is one ``6x6`` convolution of stride 2) is applied as that sum pool of the
    input (a depthwise convolution with a kernel of ones, the same padding) followed by the
    block kernel ``[C_out, C_in/g, kh/s_h, kw/s_w]`` at stride 1: the same integer sums with
    ``s_h * s_w`` times fewer products."""

    def __init__(self, kernel: Tensor, geo: ConvGeometry) -> None:
        self.kernel, self.geo = kernel, geo
        self.n = int(geo.out_shape[0] * geo.out_shape[1] * geo.out_shape[2])
        self.row_bound = float(kernel.abs().reshape(kernel.shape[0], -1).sum(dim=1).max()) \
            if kernel.numel() else 0.0
        (ph0, ph1), (pw0, pw1) = geo.padding
        self.pad = (pw0, pw1, ph0, ph1)
        #: elements of work per input row (padded input, output, PyTorch's im2col buffer)
        self.work = conv_work(geo, tuple(kernel.shape[2:]))
        #: the block kernel of a kernel constant on stride-sized blocks, else None
        self.block = self._block_kernel(kernel, geo)
        self._cast: dict[torch.dtype, tuple[Tensor, Tensor | None]] = {}

    @staticmethod
    def _block_kernel(kernel: Tensor, geo: ConvGeometry) -> Tensor | None:
        """``B`` with ``kernel[:, :, a, b] == B[:, :, a // s_h, b // s_w]`` (``s``: the
        stride), or None where the kernel is not such a spread or the path does not apply
        (dilation, stride 1, asymmetric padding)."""
        sh, sw = geo.stride
        kh, kw = int(kernel.shape[2]), int(kernel.shape[3])
        if (tuple(geo.dilation) != (1, 1) or (sh, sw) == (1, 1) or kh % sh or kw % sw
                or not geo.symmetric or kernel.numel() == 0):
            return None
        block = kernel[:, :, ::sh, ::sw]
        spread = block.repeat_interleave(sh, dim=2).repeat_interleave(sw, dim=3)
        return block.contiguous() if torch.equal(spread, kernel) else None

    @staticmethod
    def _float32_exact() -> bool:
        """Whether PyTorch runs float32 convolutions in float32 (not set to oneDNN's
        reduced-precision bf16/tf32 modes: ``torch.backends.mkldnn.conv.fp32_precision``)."""
        conv = getattr(torch.backends.mkldnn, "conv", None)  # absent from older PyTorch
        return getattr(conv, "fp32_precision", "none") in ("none", "ieee")

    def _kernels(self, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        """The kernel (the block kernel where it applies) and the depthwise kernel of ones of
        the sum pool (None: no pool) in ``dtype``, cached."""
        if dtype not in self._cast:
            if self.block is None:
                self._cast[dtype] = (self.kernel.to(dtype), None)
            else:
                c_in, sh, sw = self.geo.in_shape[0], *self.geo.stride
                ones = torch.ones(c_in, 1, sh, sw, dtype=dtype, device=self.kernel.device)
                self._cast[dtype] = (self.block.to(dtype), ones)
        return self._cast[dtype]

    def _apply(self, xs: Tensor, kernel: Tensor, ones: Tensor | None) -> Tensor:
        """The convolution of ``xs`` ``[m, C_in, H, W]`` (float): ``[m, C_out, Ho, Wo]``."""
        geo = self.geo
        if ones is not None:  # sum pool (padded like the convolution), then the block kernel
            pad = (geo.padding[0][0], geo.padding[1][0])
            pooled = F.conv2d(xs, ones, stride=geo.stride, padding=pad, groups=xs.shape[1])
            return F.conv2d(pooled, kernel, groups=geo.groups)
        if geo.symmetric:
            return F.conv2d(xs, kernel, stride=geo.stride, dilation=geo.dilation,
                            padding=(geo.padding[0][0], geo.padding[1][0]), groups=geo.groups)
        return F.conv2d(F.pad(xs, self.pad), kernel, stride=geo.stride, dilation=geo.dilation,
                        groups=geo.groups)

    def bound(self, x_max: float) -> float:
        return min(self.row_bound * x_max, float(_M))

    def matmul(self, x: Tensor, x_max: float) -> Tensor:
        """The convolution of ``x`` ``[m, n_in]`` (flat ``[C, H, W]``): ``[m, n]``, exact,
        wrapped to 24 bits like Lava; int32 where the kernel's bound rules out the wrap, else
        int64."""
        bound = self.row_bound * x_max
        if bound >= 2**52:
            raise ValueError("a convolution whose sums may exceed 2**52 is not emulated")
        cpu = x.device.type == "cpu"
        # float32 on CPU (direct convolution: every partial sum an integer below 2**24, exact;
        # a sum pool's sums are partial sums of the same products); else float64 (on CPU exact
        # the same way below 2**52; on CUDA cuDNN may pick Winograd/FFT: rounding errors far
        # below 0.5, removed by rounding)
        dtype = torch.float32 if cpu and bound < 2**24 and self._float32_exact() \
            else torch.float64
        kernel, ones = self._kernels(dtype)
        int_dtype = torch.int32 if bound < _M else torch.int64
        m = int(x.shape[0])
        rows = max(1, WORK_CAP // max(1, self.work))  # bounded memory per convolution call
        got = torch.empty(m, self.n, dtype=int_dtype, device=x.device) if m > rows else None
        for j in range(0, m, rows):
            out = self._apply(x[j:j + rows].to(dtype).reshape(-1, *self.geo.in_shape),
                              kernel, ones).reshape(-1, self.n)
            if not cpu:
                out = torch.round(out)
            if got is None:  # one block: its integer values are the result (exact casts)
                got = out.to(int_dtype)
            else:
                got[j:j + rows] = out
        if got is None:
            got = torch.empty(0, self.n, dtype=int_dtype, device=x.device)
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


class _Part:
    """The part of a synapse whose weights wait ``shift`` steps (the graph's ``Delay`` nodes;
    Lava's alignment delays are latency, which this emulator does not have): ``w`` maps the
    source elements ``cols`` (None: all) to the population's neurons ``rows`` (None: all)."""

    def __init__(self, w: _Weights | _Conv, shift: int = 0, rows: Tensor | None = None,
                 cols: Tensor | None = None) -> None:
        self.w, self.shift, self.rows, self.cols = w, shift, rows, cols

    def product(self, s: Tensor, t0: int, t1: int, n: int, s_max: float) -> Tensor:
        """Its input to the steps ``t0 .. t1 - 1``, ``[(t1 - t0) * B, n]``: ``w`` times the
        source ``s`` ``[T, B, n_src]`` ``shift`` steps earlier, zeros before the first step
        (the reference's delay line starts empty)."""
        lo, hi = t0 - self.shift, t1 - self.shift
        x = s[max(lo, 0):max(hi, 0)]
        if self.cols is not None:
            x = x.index_select(2, self.cols)
        if lo < 0:
            x = torch.cat([x.new_zeros((min(-lo, t1 - t0), *x.shape[1:])), x])
        got = self.w.matmul(x.reshape(-1, x.shape[-1]), s_max)
        if self.rows is None:
            return got
        full = got.new_zeros((got.shape[0], n))
        full[:, self.rows] = got
        return full


def _parts(syn: Synapse, steps: int | np.ndarray, dev: torch.device) -> list[_Part]:
    """A synapse as parts of one delay each: ``steps`` (its graph ``Delay`` steps, an int or
    per synapse ``[n, n_src]``) split by value, each part holding only the rows and columns
    where it has nonzero weights."""
    if isinstance(steps, int):
        return [_Part(_synapse(syn, dev), steps)]
    if syn.kind != "dense":
        raise ValueError("per-synapse delays on a convolution are not emulated (the planner "
                         "makes a delayed convolution a dense matrix)")
    w = torch.as_tensor(syn.weight, dtype=torch.int64, device=dev)
    d = torch.as_tensor(steps, dtype=torch.int64, device=dev)
    parts = []
    for shift in torch.unique(d).tolist():
        mask = (d == shift) & (w != 0)
        rows = torch.nonzero(mask.any(dim=1)).reshape(-1)
        cols = torch.nonzero(mask.any(dim=0)).reshape(-1)
        if rows.numel() == 0:
            continue
        sub = torch.where(mask, w, 0)[rows][:, cols]
        parts.append(_Part(_Weights(sub), int(shift),
                           None if rows.numel() == w.shape[0] else rows,
                           None if cols.numel() == w.shape[1] else cols))
    return parts or [_Part(_Weights(torch.zeros_like(w)))]


def _input_sum(parts: list[Tensor], a_bound: float, bias: Tensor,
               shape: tuple[int, int, int]) -> Tensor:
    """A population's ``a_in`` ``shape`` (``[Tc, B, n]``) from its synapses' integer products
    ``parts`` and its constant input ``bias``, as Lava sums int32 channels: int32 where
    ``a_bound`` rules out an overflow, else summed in int64 and wrapped once (the same)."""
    if a_bound < 2**31:  # no int32 overflow: stay in int32
        a = parts[0].to(torch.int32)
        for p in parts[1:]:
            a = a + p.to(torch.int32)
        return a.reshape(shape) + bias.to(torch.int32)
    a = parts[0].to(torch.int64)
    for p in parts[1:]:
        a = a + p.to(torch.int64)
    return _wrap32(a.reshape(shape)) + bias


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
        #: per layer and synapse (feed-forward input), its weight matrix or convolution: one
        #: part, or one per delay of the graph's Delay nodes on it
        self.w_ff = [[_parts(syn, steps, dev)
                      for syn, steps in zip(fl.inputs, node_delays(fixed, k), strict=True)]
                     for k, fl in enumerate(fixed.layers)]
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
        for group in layer_groups(fixed.layers, need):
            if len(group) > 1 or any(syn.source == group[0]
                                     for syn in fixed.layers[group[0]].inputs):
                # a loop through several populations, or a population's own loop through a
                # Delay (a synapse from itself): stepped together
                self._run_loop(group, xin, x_max, out, record_state, bar)
                continue
            k = group[0]
            fl = fixed.layers[k]
            # Lava's alignment delays only undo its per-hop latency, which this emulator has
            # not; the graph's Delay nodes are the parts' shifts
            feeds = [(part, s, s_max) for part, s, s_max, _ in self._feeds(k, xin, x_max, out)]
            bound = sum(part.w.bound(s_max) for part, _, s_max in feeds)
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
                          *(part.w.work for part, _, _ in feeds if isinstance(part.w, _Conv))])
            tc = max(1, min(T, self.chunk_elements // max(1, B * widest)))
            for t0 in range(0, T, tc):
                t1 = min(T, t0 + tc)
                parts = [part.product(s, t0, t1, fl.n, s_max) for part, s, s_max in feeds]
                a = _input_sum(parts, a_bound, self.bias[k], (t1 - t0, B, fl.n))
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

    def _feeds(self, k: int, xin: Tensor, x_max: float, out: dict
               ) -> list[tuple[_Part, Tensor, float, int]]:
        """Layer ``k``'s synapse parts with their source's values (``xin`` or ``out[source]``,
        ``[T, B, n_src]``; a member of the same loop: filled step by step), the bound on the
        source's values and the source layer (-1: the input)."""
        return [(part, xin if syn.source < 0 else out[syn.source],
                 x_max if syn.source < 0 else 1.0, syn.source)
                for parts, syn in zip(self.w_ff[k], self.fixed.layers[k].inputs, strict=True)
                for part in parts]

    def _run_loop(self, group: list[int], xin: Tensor, x_max: float, out: dict,
                  record_state: bool, bar: Any) -> None:
        """Run the layers ``group`` (a loop through several populations, in layer order) step
        by step together: each step, each member's input is the sum of its synapses' products
        of the sources' outputs ``node_delay + back`` steps earlier (a member earlier in the
        group: this step's when that is 0; the connection back in the loop is at least one
        step late), from other layers precomputed per time chunk as in :meth:`run`; then
        :meth:`_neuron` steps it, the arithmetic of the one-layer path. Fills ``out``."""
        fixed, dev = self.fixed, self.device
        T, B = int(xin.shape[0]), int(xin.shape[1])
        inside = set(group)
        for k in group:  # the members' outputs, filled step by step
            out[k] = torch.empty(T, B, fixed.layers[k].n, dtype=torch.int8, device=dev)
        feeds = {k: self._feeds(k, xin, x_max, out) for k in group}
        a_bound: dict[int, float] = {}
        for k in group:
            if fixed.layers[k].readout:
                raise ValueError("a read-out population in a loop is not emulated (the "
                                 "planner refuses it)")
            rec = self.w_rec[k]
            a_bound[k] = (sum(part.w.bound(s_max) for part, _, s_max, _ in feeds[k])
                          + (rec.row_bound if rec is not None else 0.0)
                          + (float(self.bias[k].abs().max()) if fixed.layers[k].n else 0.0))
        recs: dict[int, tuple[Tensor | None, Tensor | None]] = {}
        for k in group:
            if record_state:
                recs[k] = (torch.empty(T, B, fixed.layers[k].n, dtype=torch.int64, device=dev),
                           torch.empty(T, B, fixed.layers[k].n, dtype=torch.int64, device=dev))
            else:
                recs[k] = (None, None)
        state: dict[int, tuple[Tensor, Tensor, Tensor] | None] = dict.fromkeys(group)
        widest = max([fixed.layers[k].n for k in group]
                     + [s.shape[-1] for k in group for _, s, _, _ in feeds[k]]
                     + [part.w.work for k in group for part, _, _, _ in feeds[k]
                        if isinstance(part.w, _Conv)])
        tc = max(1, min(T, self.chunk_elements // max(1, B * widest)))
        for t0 in range(0, T, tc):
            t1 = min(T, t0 + tc)
            # the products from layers outside the loop, for the chunk: [t1 - t0, B, n]
            outer = {k: [part.product(s, t0, t1, fixed.layers[k].n, s_max)
                         .reshape(t1 - t0, B, -1)
                         for part, s, s_max, src in feeds[k] if src not in inside]
                     for k in group}
            with _OneThread(dev.type == "cpu"
                            and B * max(fixed.layers[k].n for k in group) <= 1 << 20):
                for t in range(t0, t1):
                    for k in group:
                        fl = fixed.layers[k]
                        parts = [p[t - t0] for p in outer[k]] + [
                            part.product(out[src], t, t + 1, fl.n, s_max)
                            for part, _, s_max, src in feeds[k] if src in inside]
                        a = _input_sum(parts, a_bound[k], self.bias[k], (1, B, fl.n))
                        u_rec, v_rec = recs[k]
                        state[k] = self._neuron(
                            fl, a, self.w_rec[k], a_bound[k], state[k], out[k][t:t + 1],
                            None if u_rec is None else u_rec[t:t + 1],
                            None if v_rec is None else v_rec[t:t + 1], bar)
        if record_state:
            for k in group:
                out[(k, "u")], out[(k, "v")] = recs[k]

    def _neuron(self, fl: FixedLayer, a: Tensor, rec: _Weights | None, a_bound: float,
                state: tuple[Tensor, Tensor, Tensor] | None, spikes: Tensor,
                u_rec: Tensor | None, v_rec: Tensor | None, bar: Any = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        """Step the neurons through the chunk ``a`` ``[Tc, B, n]``; write ``spikes[t]``
        (and the states); return the state ``(u, v, z)``. ``bar``: a progress bar moved
        one step per step. A subtract-reset layer is Lava's ``PyATRLIFModelFixed`` (``u`` and
        ``v`` as the LIF's, no reset of ``v``; ``r`` decays as ``v``, ``v - r >= vth << 6``
        fires and adds ``2 * (vth << 6)`` to ``r``): its state's ``v`` is ``[v, r]``
        ``[2, B, n]``, and ``v_rec`` records ``v``."""
        T, B, n = a.shape
        dev = a.device
        if state is None:
            u = torch.zeros(B, n, dtype=torch.int64, device=dev)
            v = torch.zeros(B, n, dtype=torch.int64, device=dev)
            if fl.v_start is not None:  # Lava's initial v after its idle (latency) decays
                v += torch.as_tensor(fl.v_start, dtype=torch.int64, device=dev)
            z_prev = torch.zeros(B, n, dtype=torch.int8, device=dev)
            r = torch.zeros(B, n, dtype=torch.int64, device=dev) if fl.subtract else None
        else:
            u, v, z_prev = state
            r = None
            if fl.subtract:
                v, r = v[0], v[1]
        keep_u = 4096 - (fl.du + 1)
        keep_v = 4096 - fl.dv
        vth = fl.vth << 6
        # the neuron bias on v (the leak of a population whose u filters): 64 * bias_mant
        v_bias = None if fl.v_bias is None or not np.any(fl.v_bias) else \
            torch.as_tensor(64 * fl.v_bias, dtype=torch.int64, device=dev)
        b_v = 0.0 if v_bias is None else float(v_bias.abs().max())
        # Bounds that make Lava's overflow handling a no-op (then it is skipped; exact):
        # int32 wraps when |a << 6| + |decayed u| < 2**31; the 24-bit wrap of u when
        # |u| <= 64 * a_bound * 4096 / (du + 1) < M; the clip of v when |v| <= u_max * 4096 / dv
        # <= M - 1.
        safe32 = a_bound * 64 + 2 * _M < _2_31
        u_max = 64 * a_bound * 4096 / (4096 - keep_u)
        wrap24 = not (safe32 and u_max < _M)
        clip = wrap24 or fl.dv == 0 or (u_max + b_v) * 4096 / fl.dv > _M - 1 or fl.subtract
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
            if v_bias is not None:
                v.add_(v_bias)
            if clip:
                v.clamp_(-(_M - 1), _M - 1)
            if r is not None:  # ATRLIF: r decays as v (truncating); w = v - r fires at >= vth
                r = torch.div(r * keep_v, 4096, rounding_mode="trunc")
                torch.ge(v - r, vth, out=z)
                r = r + z * (2 * vth)
            else:
                torch.gt(v, vth, out=z)
                v.masked_fill_(z, 0)
            spikes[t].copy_(z)
            z_prev = spikes[t]
            if u_rec is not None and v_rec is not None:
                u_rec[t] = u
                v_rec[t] = v
            if bar is not None:
                bar.update(1)
        return u, v if r is None else torch.stack([v, r]), z_prev
