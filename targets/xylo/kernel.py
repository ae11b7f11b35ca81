"""XyloSim's step as one compiled CPU kernel (numba), batched over samples.

The kernel follows XyloSim 0.1.3 (``xylosim.v2.XyloLayer::evolve``) literally, in integers,
one sample per thread: every event is a saturating int16 addition in XyloSim's order (inputs
in channel order, then the hidden spikes of the previous step in neuron order), so it is
bit-exact by construction, saturation included, with no bound bookkeeping. ``c`` events of
one source add ``clamp(acc + c * w)`` (repeated saturating additions of one value equal one
saturating addition of their sum). Only the hidden neurons that spiked are delivered, each
over the column span its weight row reaches (the block structure of a layered network).

Compiled on first use (15-20 s on 2 cores; ``make install`` does it, :func:`warm`) and cached
on disk, beside this file when the package directory is writable, else in ``$NUMBA_CACHE_DIR``
or ``~/.cache/nrf-nir/numba``: a new process loads it in well under a second (the numba code
is module-level, :mod:`._kernel_numba`, so that its cache entries match again). Used by
:class:`~nrf_nir.targets.xylo.emulator.XyloEmulator` on CPU when numba is installed
(``pip install nrf-nir[xylo]``); the torch path serves CUDA.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np

LO, HI = -32768, 32767
Arr: TypeAlias = np.ndarray  # the kernel's arrays (C-contiguous; int8, int16, int32, int64)
_KERNEL: Any = None


def available() -> bool:
    """Whether numba can be imported (the kernel needs it)."""
    try:
        import numba  # noqa: F401
    except Exception:  # pragma: no cover - depends on the install
        return False
    return True


def _cache_ready(numba: Any) -> bool:
    """Whether the compiled kernel can be cached on disk: beside this file when the package
    directory is writable, else in ``$NUMBA_CACHE_DIR`` or ``~/.cache/nrf-nir/numba``."""
    from nrf_nir.fused import numba_cache_ready

    return numba_cache_ready(numba, beside=__file__)


def _build() -> Any:
    from . import _kernel_numba

    return _kernel_numba.run


def kernel() -> Any:
    """The compiled kernel (built on the first call)."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _build()
    return _KERNEL


def spans(w: np.ndarray) -> np.ndarray:
    """Per row of ``w`` the column span ``[first, last + 1)`` of its non-zero entries
    (``[0, 0)`` for an empty row), int64 ``[rows, 2]``."""
    nz = w != 0
    any_ = nz.any(1)
    first = np.where(any_, nz.argmax(1), 0)
    last = np.where(any_, w.shape[1] - nz[:, ::-1].argmax(1), 0)
    return np.ascontiguousarray(np.stack([first, last], 1).astype(np.int64))


def warm() -> float:
    """Compile the kernel now and cache it on disk (``make install`` calls this, so that the
    first Xylo run of a fresh install does not wait for the compiler); return the seconds it
    took. Runs a 4-8-3 network of LIF neurons through the ``xylo`` target on the CPU."""
    import time

    import nir

    from nrf_nir.api import lower

    rng = np.random.default_rng(0)
    lif = {"tau": np.full(8, 0.01), "r": np.ones(8), "v_leak": np.zeros(8),
           "v_threshold": np.ones(8), "v_reset": np.zeros(8)}
    out = {k: v[:3] for k, v in lif.items()}
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([4])),
               "w1": nir.Linear(weight=rng.normal(0, 1, (8, 4))), "l1": nir.LIF(**lif),
               "w2": nir.Linear(weight=rng.normal(0, 1, (3, 8))), "l2": nir.LIF(**out),
               "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "w1"), ("w1", "l1"), ("l1", "w2"), ("w2", "l2"), ("l2", "output")],
        type_check=False)
    graph.metadata = {"dt": 1e-3}
    start = time.perf_counter()
    lower(graph, "xylo", device="cpu").run(
        (rng.random((20, 2, 4)) < 0.3).astype(np.float32))
    return time.perf_counter() - start
