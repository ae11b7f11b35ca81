"""The numba code of :mod:`nrf_nir.targets.xylo.kernel` (imported on first use only: numba is
optional). Module-level functions, so that numba's on-disk cache is found again by the next
process (functions built inside a function are closures, whose cache entries never match)."""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .kernel import HI, LO, Arr, _cache_ready

#: Whether the compiled functions are cached on disk (``kernel._cache_ready``).
CACHE = _cache_ready(numba)

i32, f32 = np.int32, np.float32
lo32, hi32 = i32(LO), i32(HI)


@njit(inline="always")
def _sat(a: np.int32) -> np.int32:  # pragma: no cover - compiled
    a = a if a > lo32 else lo32
    return a if a < hi32 else hi32


@njit(inline="always")
def _decay(x: np.int32, d: np.int32) -> np.int32:  # pragma: no cover - compiled
    # x - decay(x): decay = x >> d (arithmetic), at least 1 in magnitude where x != 0
    y = i32(x >> d)
    y = y + i32((y == 0) & (x > 0))
    return i32(x - y)


@njit(inline="always")
def _deliver(acc: np.ndarray, wr: np.ndarray, cnt: np.int32, j0: int,
             j1: int) -> None:  # pragma: no cover - compiled
    # on slices from 0: LLVM vectorises this loop, not one over range(j0, j1)
    a, w = acc[j0:j1], wr[j0:j1]
    for j in range(j1 - j0):
        a[j] = _sat(i32(a[j] + i32(cnt * i32(w[j]))))


@njit(inline="always")
def _membrane(i: np.int32, v: np.int32,  # pragma: no cover - compiled
              dmem: np.int32, bias: np.int32) -> np.int32:
    vd = i32(v - _decay(v, dmem))  # decay(v)
    dv = i32(i - vd)
    dv = i32(dv - i32(65536) * i32(vd == lo32))  # the int16 cast of -(-32768)
    dv = _sat(dv)
    dv = _sat(i32(dv + bias))
    return _sat(i32(v + dv))


@njit(inline="always")
def _spikes(v: np.int32, th: np.int32, mx: np.int32) -> np.int32:  # pragma: no cover - compiled
    # floor(v / th) for v >= 0 (float32 division is exact enough: |v|, th < 2^15)
    s = i32(f32(v) / f32(th))
    s = s if s > 0 else i32(0)
    return s if s < mx else mx


# Each neuron loop below does one thing: LLVM vectorises such loops, not fused ones.


@njit(cache=CACHE, nogil=True, boundscheck=False)
def sample(b: int, x: Arr, w_in: Arr, in_span: Arr, w_rec: Arr,  # pragma: no cover
           rec_span: Arr, k: int, nh: int, no: int,
           dash_mem: Arr, dash_syn: Arr, dash_syn2: Arr, th: Arr, bias: Arr, mh: np.int32,
           dash_mem_o: Arr, dash_syn_o: Arr, th_o: Arr, bias_o: Arr, mo: np.int32,
           out: Arr, rec_n: Arr, rec_v: Arr, rec_i: Arr, rec_i2: Arr, rec_vo: Arr,
           rec_io: Arr) -> None:
    """The whole run of sample ``b``."""
    T, B, nin = x.shape
    ncol = w_rec.shape[1] if w_rec.shape[0] else w_in.shape[1]
    base = k * nh
    acc = np.zeros(ncol, np.int32)
    v = np.zeros(nh, np.int32)
    vo = np.zeros(no, np.int32)
    n = np.zeros(nh, np.int32)
    tot = np.zeros(nh, np.int32)
    active = np.empty(nh, np.int64)
    n_active = 0
    for t in range(T):
        # 1. deliver: input events (channel order), then last step's hidden spikes
        for c in range(nin):
            cnt = i32(x[t, b, c])
            if cnt != 0:
                _deliver(acc, w_in[c], cnt, in_span[c, 0], in_span[c, 1])
        for q in range(n_active):
            p = active[q]
            _deliver(acc, w_rec[p], n[p], rec_span[p, 0], rec_span[p, 1])
        # 2. hidden neurons: decay the currents, then the membranes
        for p in range(nh):
            acc[p] = _decay(acc[p], dash_syn[p])
            tot[p] = acc[p]
        if k == 2:
            for p in range(nh):
                acc[nh + p] = _decay(acc[nh + p], dash_syn2[p])
                tot[p] = i32(tot[p] + acc[nh + p])
        for p in range(nh):
            v[p] = _membrane(tot[p], v[p], dash_mem[p], bias[p])
        n_active = 0
        for p in range(nh):  # few neurons spike: a branch beats vector division
            if v[p] >= th[p]:
                sp = _spikes(v[p], th[p], mh)
                v[p] = i32(v[p] - sp * th[p])
                n[p] = sp
                active[n_active] = p
                n_active += 1
            else:
                n[p] = 0
        # 3. output neurons
        for o in range(no):
            io = _decay(acc[base + o], dash_syn_o[o])
            acc[base + o] = io
            vp = _membrane(io, vo[o], dash_mem_o[o], bias_o[o])
            so = _spikes(vp, th_o[o], mo)
            vo[o] = i32(vp - so * th_o[o])
            out[t, b, o] = so
        if rec_n.shape[0]:
            rec_n[t, b] = n
        if rec_v.shape[0]:
            rec_v[t, b] = v
        if rec_i.shape[0]:
            rec_i[t, b] = acc[:nh]
        if rec_i2.shape[0] and k == 2:
            rec_i2[t, b] = acc[nh:2 * nh]
        if rec_vo.shape[0]:
            rec_vo[t, b] = vo
        if rec_io.shape[0]:
            rec_io[t, b] = acc[base:base + no]


@njit(parallel=True, cache=CACHE, nogil=True)
def run(x: Arr, w_in: Arr, in_span: Arr, w_rec: Arr,  # pragma: no cover - compiled
        rec_span: Arr, k: int, nh: int, no: int,
        dash_mem: Arr, dash_syn: Arr, dash_syn2: Arr, th: Arr, bias: Arr, max_h: int,
        dash_mem_o: Arr, dash_syn_o: Arr, th_o: Arr, bias_o: Arr, max_o: int,
        out: Arr, rec_n: Arr, rec_v: Arr, rec_i: Arr, rec_i2: Arr, rec_vo: Arr,
        rec_io: Arr) -> None:
    for b in prange(x.shape[1]):
        sample(b, x, w_in, in_span, w_rec, rec_span, k, nh, no,
               dash_mem, dash_syn, dash_syn2, th, bias, i32(max_h),
               dash_mem_o, dash_syn_o, th_o, bias_o, i32(max_o),
               out, rec_n, rec_v, rec_i, rec_i2, rec_vo, rec_io)
