"""Convolutions and pooling for the Lava targets: geometry, float64 application, folding.

Layouts: a population's values are NIR's ``[C, H, W]`` flattened in C order (a ``Conv1d``'s
``[C, L]`` is ``[C, 1, L]``: a 2-D convolution of height 1). Kernels are PyTorch's
``[C_out, C_in/groups, kh, kw]`` cross-correlation kernels. Lava's ``Conv`` process
(lava-nc 0.10.0, ``lava/proc/conv``) works on ``(X, Y, C) = (W, H, C)`` arrays with a kernel
``(C_out, kw, kh, C_in/groups)`` and computes a true convolution (scipy ``convolve2d``), so its
kernel is ours flipped in both spatial axes (:func:`lava_kernel`). Lava's padding is
symmetric.

A sum pool is a depthwise convolution with a kernel of ones (an average pool: of
``1/(kh*kw)``, PyTorch's ``count_include_pad=True``). A pool followed by a convolution is one
convolution (stride ``s_pool * s_conv``, kernel ``s_pool*d*(K-1) + k``, dilation 1) when the
pool's windows that the convolution's padding stands for lie in the padding of the composed
one: :func:`compose_pool_conv` builds it and keeps it only when it is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

Shape3 = tuple[int, int, int]
Pad = tuple[tuple[int, int], tuple[int, int]]

#: Largest dense matrix (elements) a path of convolutions/pooling is lowered to when it is not
#: one Lava convolution (float64: 32 MiB).
DENSE_CAP = 1 << 22
#: Float64 elements of work (input, output, im2col buffer) per block of rows that
#: :func:`conv_apply` / :func:`conv_adjoint` convolve at once (64 MiB): planning a large
#: input (the zoo's 2x64x64 ``nrf``) stays within a bounded memory.
WORK_CAP = 1 << 23
#: Random inputs on which :func:`compose_pool_conv` compares the pool-then-conv map with the
#: folded convolution (two different linear maps differ on a generic input).
PROBES = 3


@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D convolution ``in_shape [C_in, H, W] -> out_shape [C_out, Ho, Wo]``; padding per
    spatial axis as ``(before, after)`` (``'same'`` with an even span pads one more after, as
    PyTorch does)."""

    in_shape: Shape3
    out_shape: Shape3
    stride: tuple[int, int]
    padding: Pad
    dilation: tuple[int, int]
    groups: int

    @property
    def symmetric(self) -> bool:
        return all(lo == hi for lo, hi in self.padding)

    def lava_problem(self) -> str | None:
        """Why Lava's ``Conv`` cannot hold this geometry (None: it can)."""
        if not self.symmetric:
            return f"asymmetric padding {self.padding} (Lava pads both sides alike)"
        return None


def conv_work(geo: ConvGeometry, kernel_hw: tuple[int, ...]) -> int:
    """Float64 elements one input row (one sample) costs :func:`conv_apply` or
    :func:`conv_adjoint`: the padded input, the output and PyTorch's im2col buffer
    (``C_in * kh * kw`` values per output position)."""
    c_in, h, w = geo.in_shape
    c_out, ho, wo = geo.out_shape
    padded = c_in * (h + sum(geo.padding[0])) * (w + sum(geo.padding[1]))
    columns = c_in * int(kernel_hw[0]) * int(kernel_hw[1]) * ho * wo
    return padded + c_out * ho * wo + columns


def _row_chunks(m: int, per_row: int) -> list[tuple[int, int]]:
    """Row ranges of at most :data:`WORK_CAP` elements of work each (at least one row)."""
    step = max(1, WORK_CAP // max(1, per_row))
    return [(j, min(m, j + step)) for j in range(0, m, step)]


def conv_apply(x: np.ndarray, kernel: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """``x`` ``[m, n_in]`` (flat ``in_shape``) through the convolution: ``[m, n_out]``,
    float64; computed a block of rows at a time (:data:`WORK_CAP`)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty((x.shape[0], int(np.prod(geo.out_shape))))
    k = torch.as_tensor(np.ascontiguousarray(kernel), dtype=torch.float64)
    (ph0, ph1), (pw0, pw1) = geo.padding
    for j0, j1 in _row_chunks(x.shape[0], conv_work(geo, kernel.shape[2:])):
        t = torch.as_tensor(np.ascontiguousarray(x[j0:j1])).reshape(-1, *geo.in_shape)
        t = F.pad(t, (pw0, pw1, ph0, ph1))
        got = F.conv2d(t, k, stride=geo.stride, dilation=geo.dilation, groups=geo.groups)
        out[j0:j1] = got.reshape(j1 - j0, -1).numpy()
    return out


def conv_adjoint(y: np.ndarray, kernel: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """The transposed map: ``y`` ``[m, n_out]`` -> ``[m, n_in]`` (``conv_adjoint(y) =
    y @ M`` for the convolution's matrix ``M``), float64; a block of rows at a time."""
    y = np.asarray(y, dtype=np.float64)
    _, H, W = geo.in_shape
    extra = []
    for axis, size in enumerate((H, W)):
        padded = size + sum(geo.padding[axis])
        span = geo.dilation[axis] * (kernel.shape[2 + axis] - 1) + 1
        extra.append(padded - ((geo.out_shape[1 + axis] - 1) * geo.stride[axis] + span))
    k = torch.as_tensor(np.ascontiguousarray(kernel), dtype=torch.float64)
    (ph0, _), (pw0, _) = geo.padding
    out = np.empty((y.shape[0], int(np.prod(geo.in_shape))))
    for j0, j1 in _row_chunks(y.shape[0], conv_work(geo, kernel.shape[2:])):
        t = torch.as_tensor(np.ascontiguousarray(y[j0:j1])).reshape(-1, *geo.out_shape)
        got = F.conv_transpose2d(t, k, stride=geo.stride, output_padding=tuple(extra),
                                 groups=geo.groups, dilation=geo.dilation)
        out[j0:j1] = got[:, :, ph0:ph0 + H, pw0:pw0 + W].reshape(j1 - j0, -1).numpy()
    return out


def conv_block(kernel: np.ndarray, geo: ConvGeometry, out_channels: np.ndarray,
               in_channels: np.ndarray) -> tuple[np.ndarray, ConvGeometry] | None:
    """The part of a convolution from the input channels ``in_channels`` to the output
    channels ``out_channels`` (ascending index arrays): a kernel ``[len(out), len(in)/g, kh,
    kw]`` with the most groups ``g`` its block structure has, and its geometry; None where no
    weight joins those channels. (Splitting a node by time constant splits its convolutions
    so; the spatial geometry is unchanged.)"""
    c_out, cin_g = kernel.shape[:2]
    cout_g = c_out // geo.groups
    full = np.zeros((c_out, cin_g * geo.groups, *kernel.shape[2:]))
    for g in range(geo.groups):
        full[g * cout_g:(g + 1) * cout_g, g * cin_g:(g + 1) * cin_g] = \
            kernel[g * cout_g:(g + 1) * cout_g]
    sub = full[np.ix_(out_channels, in_channels)]
    if not np.any(sub):
        return None
    o, i = sub.shape[:2]
    for groups in range(math.gcd(o, i), 0, -1):
        if o % groups or i % groups:
            continue
        og, ig = o // groups, i // groups
        outside = np.ones((o, i), dtype=bool)
        for g in range(groups):
            outside[g * og:(g + 1) * og, g * ig:(g + 1) * ig] = False
        if np.any(sub[outside]):
            continue  # a weight outside the diagonal blocks
        blocks = [sub[g * og:(g + 1) * og, g * ig:(g + 1) * ig] for g in range(groups)]
        return np.concatenate(blocks, axis=0), ConvGeometry(
            in_shape=(i, *geo.in_shape[1:]), out_shape=(o, *geo.out_shape[1:]),
            stride=geo.stride, padding=geo.padding, dilation=geo.dilation, groups=groups)
    raise AssertionError("one group always holds every weight")


def lava_kernel(kernel: np.ndarray) -> np.ndarray:
    """Our ``[C_out, C_in/g, kh, kw]`` cross-correlation kernel as Lava's ``Conv`` weight
    ``(C_out, kw, kh, C_in/g)`` (a true convolution: both spatial axes flipped)."""
    return np.ascontiguousarray(kernel[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def geometry(in_shape: tuple[int, ...], kernel: np.ndarray, stride: tuple[int, ...],
             padding: str | tuple[int, ...], dilation: tuple[int, ...],
             groups: int) -> tuple[np.ndarray, ConvGeometry]:
    """A validated Conv1d/Conv2d's (or pool's) parameters as a 2-D ``(kernel, geometry)``
    (Conv1d: height 1)."""
    one_d = len(in_shape) == 2
    if one_d:
        in_shape = (in_shape[0], 1, in_shape[1])
        kernel = kernel[:, :, None, :]
        stride, dilation = (1, stride[0]), (1, dilation[0])
        if not isinstance(padding, str):
            padding = (0, padding[0])
    ks = kernel.shape[2:]
    pads: list[tuple[int, int]] = []
    for axis in range(2):
        span = dilation[axis] * (ks[axis] - 1)
        if padding == "same":
            pads.append((span // 2, span - span // 2))
        elif padding == "valid":
            pads.append((0, 0))
        else:
            assert not isinstance(padding, str)
            pads.append((int(padding[axis]), int(padding[axis])))
    out = [int(kernel.shape[0])]
    for axis in range(2):
        size = in_shape[1 + axis] + sum(pads[axis]) - dilation[axis] * (ks[axis] - 1) - 1
        out.append(size // stride[axis] + 1)
    c_in, h, w = (int(v) for v in in_shape)
    geo = ConvGeometry(in_shape=(c_in, h, w), out_shape=(out[0], out[1], out[2]),
                       stride=(int(stride[0]), int(stride[1])),
                       padding=(pads[0], pads[1]),
                       dilation=(int(dilation[0]), int(dilation[1])), groups=int(groups))
    return np.asarray(kernel, dtype=np.float64), geo


def pool_as_conv(in_shape: Shape3, kernel_size: tuple[int, ...], stride: tuple[int, ...],
                 padding: tuple[int, ...], average: bool) -> tuple[np.ndarray, ConvGeometry]:
    """A SumPool2d/AvgPool2d as a depthwise convolution (kernel of ones, or ``1/(kh*kw)``)."""
    c = in_shape[0]
    kh, kw = int(kernel_size[0]), int(kernel_size[1])
    value = 1.0 / (kh * kw) if average else 1.0
    return geometry(in_shape, np.full((c, 1, kh, kw), value), stride, padding, (1, 1), c)


def compose_pool_conv(pool: tuple[np.ndarray, ConvGeometry],
                      conv: tuple[np.ndarray, ConvGeometry]
                      ) -> tuple[np.ndarray, ConvGeometry] | None:
    """One convolution equal to ``conv(pool(x))`` (pool: a depthwise kernel of one value), or
    None when no single convolution with dilation 1 is exactly that map (checked on the real
    spatial sizes with a generic kernel and :data:`PROBES` random inputs)."""
    pk, pg = pool
    ck, cg = conv
    value = float(pk.reshape(-1)[0])
    kh, kw = pk.shape[2:]
    (sh, sw), (dh, dw) = pg.stride, cg.dilation
    Kh, Kw = ck.shape[2:]
    size = (sh * dh * (Kh - 1) + kh, sw * dw * (Kw - 1) + kw)
    kernel = np.zeros((*ck.shape[:2], *size))
    for a in range(kh):
        for b in range(kw):
            kernel[:, :, a:a + sh * dh * (Kh - 1) + 1:sh * dh,
                   b:b + sw * dw * (Kw - 1) + 1:sw * dw] += value * ck
    pads = []
    for axis, s in enumerate(pg.stride):
        lo = s * cg.padding[axis][0] + pg.padding[axis][0]
        pads.append((lo, lo))
    _, h, w = pg.in_shape
    out = [ck.shape[0]]
    strides = (sh * cg.stride[0], sw * cg.stride[1])
    for axis, L in enumerate((h, w)):
        out.append((L + 2 * pads[axis][0] - size[axis]) // strides[axis] + 1)
    if tuple(out) != cg.out_shape:
        return None
    geo = ConvGeometry(in_shape=pg.in_shape, out_shape=cg.out_shape, stride=strides,
                       padding=(pads[0], pads[1]), dilation=(1, 1), groups=cg.groups)
    # the spatial index structure, one channel, a generic kernel, on generic inputs (a few
    # random images, not the h*w unit vectors: those cost h*w convolutions' memory)
    rng = np.random.default_rng(0)
    probe = rng.uniform(0.5, 1.5, (1, 1, Kh, Kw))
    one = (1, h, w)
    images = rng.uniform(0.5, 1.5, (PROBES, h * w))
    p1 = ConvGeometry(one, (1, *pg.out_shape[1:]), pg.stride, pg.padding, (1, 1), 1)
    c1 = ConvGeometry((1, *cg.in_shape[1:]), (1, *cg.out_shape[1:]), cg.stride, cg.padding,
                      cg.dilation, 1)
    direct = conv_apply(conv_apply(images, pk[:1, :1], p1), probe, c1)
    probe_k = np.zeros((1, 1, *size))
    for a in range(kh):
        for b in range(kw):
            probe_k[:, :, a:a + sh * dh * (Kh - 1) + 1:sh * dh,
                    b:b + sw * dw * (Kw - 1) + 1:sw * dw] += value * probe
    folded = conv_apply(images, probe_k, ConvGeometry(one, (1, *cg.out_shape[1:]), strides,
                                                      geo.padding, (1, 1), 1))
    if not np.allclose(direct, folded, rtol=1e-12, atol=1e-12):
        return None
    return kernel, geo
