"""The reference's Euler neuron loops (LIF, CubaLIF, LI, CubaLI) fused into one compiled CPU
kernel per chunk: optional, bit-identical to the torch loops it replaces.

A chunk of ``T`` steps of ``N = B * P`` neurons runs as one call of a numba kernel
(:mod:`nrf_nir._fused_numba`), parallel over blocks of neurons with the time loop inside each
block, so that the state stays in cache and every step reads its input and writes its output
once. Each element performs the torch code's operations in the same order, each rounded alone
(no FMA contraction), so spikes and states are bit-identical to the torch loops, float32 and
float64 (docs/performance.md, "Fused neuron steps").

numba is imported on first use only (the core imports no compiler at import time); the torch
loop serves when numba is missing, the kernel fails to compile, the tensors are not
contiguous CPU float32/float64 tensors that need no gradient, the chunk has one step only
(:data:`MIN_STEPS`), or the kernel is switched off (``NRF_NIR_FUSED=0`` in the environment,
or the reference's option ``fused=False``). The kernel is compiled on first use (about 7 s for
both dtypes on 2 cores; ``make install`` does it, :func:`warm`) and cached on disk like the
Xylo kernel: beside this file when the package directory is writable, else in
``$NUMBA_CACHE_DIR`` or ``~/.cache/nrf-nir/numba``; a new process loads it in about 0.5 s.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: Environment switch: ``0`` sends every neuron through the torch loop.
ENV = "NRF_NIR_FUSED"
#: Chunks of fewer steps take the torch loop (measured, docs/performance.md): a one-step chunk
#: saves no pass over time; below about 16k neurons the kernel's call overhead (about 10 us,
#: mostly turning tensors into arrays) exceeds torch's loop, and above, torch's OpenMP threads
#: fall asleep while the kernel runs and waking them for the next convolution costs more than
#: the kernel saves. From two steps on the kernel is faster at every size.
MIN_STEPS = 2
#: Bytes of address space (RLIMIT_AS) below which the kernel is not loaded.
MIN_ADDRESS_SPACE = 4 << 30
#: Neurons per block of the parallel loop: at least MIN_BLOCK (the per-step loop overhead),
#: at most MAX_BLOCK (the block's state and parameters stay in the core's caches).
MIN_BLOCK, MAX_BLOCK = 256, 4096
#: Neuron-steps per thread below which fewer threads run: a chunk that one core steps in about
#: a millisecond or less runs on one. Between torch's operations numba's second thread contends
#: with torch's spinning OpenMP threads (conv net, 6-step chunks: 0.83 of the torch loop's
#: time on one thread, 0.96 on two), and on a busy machine waking it can take milliseconds.
PARALLEL_WORK = 2**22

# Rows of the ``[8, P]`` per-neuron parameter array.
ROW_C, ROW_R, ROW_LEAK, ROW_TH, ROW_RESET, ROW_THETA, ROW_W_IN, ROW_NEG_C_SYN = range(8)
N_ROWS = 8

# How a spiking neuron fires, after the torch code each one mirrors:
#: ``Neuron._run_lif_in_place``: ``z = v > v_th`` into the output, ``v += -v*z``, ``+ z*v_reset``.
IN_PLACE = 0
#: ``Firing.fire(v, out=...)``: the comparison into the output, then ``v*(1 - z)`` or
#: ``v - z*theta``.
FIRE_OUT = 1
#: ``Firing.fire(v)``: ``z = clamp(sign(v - v_th), 0)`` under gt, ``1 - clamp(sign(v_th - v), 0)``
#: under ge (torch's ``sign(NaN)`` is 0: a NaN membrane fires under ge), then the same reset as
#: FIRE_OUT.
FIRE = 2


@dataclass(frozen=True)
class NeuronKind:
    """What a fused neuron computes (decided once per layer).

    li: ``li_euler`` (``v + c*((v_leak - v) + r*x)``) instead of ``lif_euler``
    (``v + c*((r*x + v_leak) - v)``). synapse: a current ``i`` jumps by ``w_in*x`` and decays by
    Euler (Cuba). spiking: fires (else the output is ``v``). has_leak: a ``v_leak`` term (else
    it is exactly 0: IN_PLACE skips it as torch does; the other modes add 0, which changes no
    result bit). ge: spike on ``v >= v_th``. mode: IN_PLACE, FIRE_OUT or FIRE. subtract: reset
    by ``v - z*theta``. reset_zero: ``v_reset`` is the scalar 0 (its term is skipped).
    """

    li: bool
    synapse: bool
    spiking: bool
    has_leak: bool
    ge: bool = False
    mode: int = IN_PLACE
    subtract: bool = False
    reset_zero: bool = True

    code: int = field(init=False)  # the kind as one integer: the kernel's argument

    def __post_init__(self) -> None:
        flags = (self.li, self.synapse, self.spiking, self.has_leak, self.ge, self.subtract,
                 self.reset_zero)
        code = sum(bit for bit, on in zip(_FLAG_BITS, flags, strict=True) if on)
        object.__setattr__(self, "code", code | self.mode << MODE_SHIFT)


# The bits of NeuronKind.code (its flags, in field order; the mode above MODE_SHIFT).
LI, SYNAPSE, SPIKING, HAS_LEAK, GE, SUBTRACT, RESET_ZERO = (1 << i for i in range(7))
_FLAG_BITS = (LI, SYNAPSE, SPIKING, HAS_LEAK, GE, SUBTRACT, RESET_ZERO)
MODE_SHIFT = 7


_NUMPY_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
_LOCK = threading.Lock()  # numba's thread pools need not support concurrent launches
_NUMBA: Any = None
_KERNEL: Any = None
_BROKEN: str | None = None  # why the kernel is unusable in this process, once known


def enabled(option: bool = True) -> bool:
    """Whether fused kernels may run: ``option`` (the reference's ``fused``) and the
    environment (``NRF_NIR_FUSED`` not ``0``)."""
    return option and os.environ.get(ENV, "1").strip() != "0"


def numba_cache_ready(numba: Any, beside: str = __file__) -> bool:
    """Whether numba can cache compiled code on disk: beside the module file ``beside`` when
    its directory is writable, else in ``$NUMBA_CACHE_DIR`` or ``~/.cache/nrf-nir/numba``
    (which it then sets as numba's cache directory)."""
    if numba.config.CACHE_DIR or os.access(os.path.dirname(os.path.abspath(beside)), os.W_OK):
        return True
    path = os.path.join(os.path.expanduser("~"), ".cache", "nrf-nir", "numba")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    numba.config.CACHE_DIR = path
    return os.access(path, os.W_OK)


def kernel() -> Any:
    """The numba dispatcher (imported on the first call), or None without numba or after it
    failed (:func:`unavailable` says why)."""
    global _NUMBA, _KERNEL, _BROKEN
    if _BROKEN is not None:
        return None
    if _KERNEL is None:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY and limit < MIN_ADDRESS_SPACE:
            # numba's LLVM and its thread pools need more address space than such a limit
            # leaves (measured: thread creation fails under 1 GiB)
            _BROKEN = f"address space limited to {limit >> 20} MiB"
            return None
        try:
            import numba

            from . import _fused_numba
        except Exception as exc:  # numba missing or broken: the torch loop serves
            _BROKEN = f"numba unavailable: {type(exc).__name__}: {exc}"
            return None
        _NUMBA, _KERNEL = numba, _fused_numba.neuron_chunk
    return _KERNEL


def parameters(rows: dict[int, Tensor | None], shape: tuple[int, ...],
               dtype: torch.dtype) -> np.ndarray:
    """The ``[8, P]`` per-neuron parameter array (``P = prod(shape)``, C-contiguous, CPU,
    ``dtype``) from the tensors ``rows`` (row index -> a tensor broadcastable to ``shape``);
    a missing or None row holds its neutral value: 1 for ``r`` and ``w_in``, else 0."""
    size = int(np.prod(shape, dtype=np.int64))
    out = torch.zeros(N_ROWS, size, dtype=dtype)
    out[[ROW_R, ROW_W_IN]] = 1.0
    for row, value in rows.items():
        if value is not None:
            out[row] = torch.broadcast_to(value.detach().to("cpu", dtype), shape).reshape(-1)
    return out.numpy()


def _usable(x: Tensor, v: Tensor, cur: Tensor | None, out: Tensor, prm: np.ndarray) -> bool:
    """Whether the kernel may run on these tensors (cheap: it is asked once per chunk)."""
    n, size = v.numel(), x.numel()
    if (n == 0 or size < MIN_STEPS * n or n % prm.shape[1] or x.shape[1:] != v.shape
            or out.shape != x.shape or prm.dtype != _NUMPY_DTYPES.get(v.dtype)):
        return False
    grad = torch.is_grad_enabled()
    for t in (x, v, out) if cur is None else (x, v, cur, out):
        if (not t.is_cpu or t.dtype != v.dtype or not t.is_contiguous()
                or (grad and t.requires_grad)):
            return False
    return cur is None or cur.numel() == n


def blocks_per_sample(batch: int, size: int, threads: int) -> int:
    """How many blocks each sample's ``size`` neurons are split into: blocks of MIN_BLOCK ...
    MAX_BLOCK neurons, at least 4 per thread where the chunk is large enough."""
    want = -(-batch * size // (4 * threads))
    block = min(MAX_BLOCK, max(MIN_BLOCK, want))
    return max(1, min(size, -(-size // block)))


def run_chunk(kind: NeuronKind, prm: np.ndarray, x: Tensor, v: Tensor, cur: Tensor | None,
              out: Tensor) -> bool:
    """Run ``T = x.shape[0]`` steps of the neurons ``kind`` on ``x`` ``[T, B, *shape]``,
    updating ``v`` (and the current ``cur`` under ``kind.synapse``) ``[B, *shape]`` in place
    and writing ``out`` ``[T, B, *shape]``. Return False, having touched nothing, where the
    kernel does not apply (the caller runs its torch loop)."""
    global _BROKEN
    if (kind.synapse and cur is None) or not _usable(x, v, cur, out, prm):
        return False
    run = kernel()
    if run is None:
        return False
    threads = max(1, min(torch.get_num_threads(), _NUMBA.config.NUMBA_NUM_THREADS,
                         x.numel() // PARALLEL_WORK))
    batch = v.numel() // prm.shape[1]
    nsplit = blocks_per_sample(batch, prm.shape[1], threads)
    threads = min(threads, batch * nsplit)
    vv = v.numpy().reshape(-1)
    one = vv.dtype.type(1.0)
    with _LOCK:
        before = _NUMBA.get_num_threads()  # numba's setting, which other kernels share
        if before != threads:
            _NUMBA.set_num_threads(threads)
        try:
            run(x.numpy().reshape(-1), vv, vv if cur is None else cur.numpy().reshape(-1),
                out.numpy().reshape(-1), prm, one, nsplit, kind.code)
        except Exception as exc:  # compile failure (raised before the kernel writes)
            _BROKEN = f"the fused neuron kernel failed: {type(exc).__name__}: {exc}"
            warnings.warn(f"{_BROKEN}; using the torch loop", RuntimeWarning, stacklevel=2)
            return False
        finally:
            if before != threads:
                _NUMBA.set_num_threads(before)
    return True


def unavailable() -> str | None:
    """Why the kernel cannot run in this process (None: it can, or was not tried yet)."""
    return _BROKEN


def warm() -> float:
    """Compile the kernel for float32 and float64 now and cache it on disk (``make install``
    may call it, so that a fresh install's first reference run does not wait for the
    compiler); return the seconds it took, or raise RuntimeError without numba."""
    import time

    start = time.perf_counter()
    kind = NeuronKind(li=False, synapse=False, spiking=True, has_leak=False)
    for dtype in (torch.float32, torch.float64):
        prm = parameters({ROW_C: torch.tensor(0.1), ROW_TH: torch.tensor(1.0)}, (64,), dtype)
        x = torch.ones(64, 2, 64, dtype=dtype)
        if not run_chunk(kind, prm, x, torch.zeros(2, 64, dtype=dtype), None,
                         torch.empty_like(x)):
            raise RuntimeError(_BROKEN or "the fused neuron kernel did not run")
    return time.perf_counter() - start
