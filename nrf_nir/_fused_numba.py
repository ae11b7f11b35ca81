"""The numba kernel of :mod:`nrf_nir.fused`, imported by it on first use only (numba is
optional). Module-level, so that numba's on-disk cache is found again by the next process.

``fastmath`` stays off: every operation is one IEEE operation, rounded alone (no FMA
contraction), in the order of the torch code it replaces, so results are bit-identical.
Unsigned indices spare the negative-index wrap-around checks, which lets LLVM vectorise the
inner loop."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import njit, prange, uint64

from .fused import (
    FIRE,
    GE,
    HAS_LEAK,
    IN_PLACE,
    LI,
    MODE_SHIFT,
    RESET_ZERO,
    ROW_C,
    ROW_LEAK,
    ROW_NEG_C_SYN,
    ROW_R,
    ROW_RESET,
    ROW_TH,
    ROW_THETA,
    ROW_W_IN,
    SPIKING,
    SUBTRACT,
    SYNAPSE,
    numba_cache_ready,
)

#: Whether the compiled kernel is cached on disk (:func:`nrf_nir.fused.numba_cache_ready`).
CACHE = numba_cache_ready(numba)


@njit(inline="always", fastmath=False)
def _step(drive: Any, vi: Any, c: Any, leak: Any, th: Any, reset: Any, theta: Any,
          one: np.floating, li: bool, spiking: bool, ge: bool, fire: bool, subtract: bool,
          reset_zero: bool) -> tuple[Any, Any]:  # pragma: no cover
    """One neuron's step after its drive ``r*x`` (or ``r*i``), in numpy scalars of the arrays'
    dtype: the membrane (``li_euler`` or ``lif_euler``; a missing ``v_leak`` is 0, which
    changes no result bit: only the sign of a zero ``tmp``, which ``v + c*tmp`` loses), then
    the threshold and the reset. Returns the new membrane and the output (the spike, or the
    membrane when not ``spiking``)."""
    zero = one - one
    if li:  # li_euler: v + c*((v_leak - v) + r*x)
        tmp = (leak - vi) + drive
    else:  # lif_euler: v + c*((r*x + v_leak) - v)
        tmp = (drive + leak) - vi
    vi = vi + tmp * c
    if not spiking:
        return vi, vi
    if fire:  # Firing.fire(v): torch's sign(NaN) is 0, so under ge a NaN fires
        if ge:
            z = zero if th - vi > 0 else one
        else:
            z = one if vi - th > 0 else zero
    elif ge:  # Firing.fire(v, out=...): torch.ge / torch.gt
        z = one if vi >= th else zero
    else:
        z = one if vi > th else zero
    if subtract:
        vi = vi - z * theta
    else:
        vi = vi * (one - z)
        if not reset_zero:
            vi = vi + z * reset
    return vi, z


@njit(parallel=True, cache=CACHE, nogil=True, fastmath=False)
def neuron_chunk(x: np.ndarray, v: np.ndarray, cur: np.ndarray, out: np.ndarray,
                 prm: np.ndarray, one: np.floating, nsplit: int,
                 code: int) -> None:  # pragma: no cover - compiled
    """Step ``T = x.size // v.size`` time steps of ``N = v.size`` neurons in place.

    x, out: ``[T*N]`` (time-major, then ``[B, P]``); v, cur: ``[N]`` membrane and synaptic
    current (``cur`` unused without a synapse); prm: ``[8, P]`` per-neuron parameters (rows
    ``ROW_*``; a missing ``r`` or ``w_in`` is 1 and ``v_leak`` 0, factors and terms that
    change no bit); one: 1 in their dtype; code: :attr:`nrf_nir.fused.NeuronKind.code`.
    Parallel over ``B * nsplit`` blocks of neurons (``nsplit`` per sample), each running the
    whole time loop on its block, whose state stays in cache. Three loops, whose memory
    accesses do not depend on a flag, so that LLVM unswitches their few flags and vectorises
    them: the in-place LIF (the common case), neurons without a synapse, and with one."""
    li, synapse, spiking = (code & LI) != 0, (code & SYNAPSE) != 0, (code & SPIKING) != 0
    has_leak, ge = (code & HAS_LEAK) != 0, (code & GE) != 0
    subtract, reset_zero = (code & SUBTRACT) != 0, (code & RESET_ZERO) != 0
    mode = code >> MODE_SHIFT
    fire = mode == FIRE
    in_place = spiking and mode == IN_PLACE and not (li or synapse)
    c, r, leak, th, reset = prm[ROW_C], prm[ROW_R], prm[ROW_LEAK], prm[ROW_TH], prm[ROW_RESET]
    theta, w_in, neg_c_syn = prm[ROW_THETA], prm[ROW_W_IN], prm[ROW_NEG_C_SYN]
    N = v.size
    T = x.size // N
    P = prm.shape[1]
    B = N // P
    zero = one - one
    for j in prange(B * nsplit):
        b = j // nsplit
        k = j - b * nsplit
        lo = uint64(k * P // nsplit)
        hi = uint64((k + 1) * P // nsplit)
        base = uint64(b * P)
        if in_place:  # Neuron._run_lif_in_place, operation by operation
            for t in range(T):
                off = uint64(t) * uint64(N) + base
                for p in range(lo, hi):
                    vi = v[base + p]
                    if has_leak:
                        tmp = (x[off + p] + leak[p]) - vi
                    else:
                        tmp = x[off + p] - vi
                    vi = vi + tmp * c[p]
                    if ge:
                        z = one if vi >= th[p] else zero
                    else:
                        z = one if vi > th[p] else zero
                    out[off + p] = z
                    vi = vi + (-vi) * z  # v.addcmul_(v, z, value=-1)
                    if not reset_zero:
                        vi = vi + z * reset[p]
                    v[base + p] = vi
        elif synapse:  # step(): i += w_in*x; v from r*i; i += (-c_syn)*i; fire
            for t in range(T):
                off = uint64(t) * uint64(N) + base
                for p in range(lo, hi):
                    ci = cur[base + p] + w_in[p] * x[off + p]
                    vi, y = _step(r[p] * ci, v[base + p], c[p], leak[p], th[p], reset[p],
                                  theta[p], one, li, spiking, ge, fire, subtract, reset_zero)
                    cur[base + p] = ci + neg_c_syn[p] * ci
                    out[off + p] = y
                    v[base + p] = vi
        else:  # step() / run(): v from r*x; fire
            for t in range(T):
                off = uint64(t) * uint64(N) + base
                for p in range(lo, hi):
                    vi, y = _step(r[p] * x[off + p], v[base + p], c[p], leak[p], th[p],
                                  reset[p], theta[p], one, li, spiking, ge, fire, subtract,
                                  reset_zero)
                    out[off + p] = y
                    v[base + p] = vi
