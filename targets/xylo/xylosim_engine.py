"""SynSense's XyloSim (``xylosim`` 0.1.3 through Rockpool 3.1.0's Xylo modules).

``import rockpool.devices.xylo`` fails without the ``samna`` package (its ``syns65302``
subpackage imports samna outside a ``try``), and the PyPI package named samna must never be
installed or imported (it downloads software when imported). So (measured on Rockpool 3.1.0)
an empty package object with the real ``__path__`` is registered for
``rockpool.devices.xylo`` in ``sys.modules``, so that its ``__init__`` never runs, and
``rockpool.devices.xylo.syns61201.XyloSim`` is imported beneath it.
``XyloSim.from_specification`` then builds a ``xylosim.v2.XyloLayer``. Xylo IMU and Audio 3
configurations run in ``syns63300.XyloSim`` (its package shimmed the same way), on the same
``xylosim.v2.XyloLayer``.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterable
from typing import Any

import numpy as np

from nrf_nir.errors import NIRError

from .config import XyloConfig
from .emulator import RECORDABLE

_CLASSES: dict[str, Any] = {}
#: chip -> the Rockpool subpackage whose XyloSim simulates it (Audio 3 uses the IMU's)
_SIM_PACKAGE = {"syns61201": "syns61201", "syns63300": "syns63300", "syns65302": "syns63300"}


def _shim(name: str, path: str) -> types.ModuleType:
    """An empty package ``name`` with the real ``__path__``: its submodules import, its
    ``__init__`` (which tries to import samna) never runs."""
    if name not in sys.modules:
        shim = types.ModuleType(name)
        shim.__path__ = [path]
        shim.__package__ = name
        sys.modules[name] = shim
    return sys.modules[name]


def xylosim_class(chip: str = "syns61201") -> Any:
    """Rockpool's ``XyloSim`` for ``chip`` (``syns61201.XyloSim`` for Xylo Audio 2,
    ``syns63300.XyloSim`` for Xylo IMU and Audio 3), imported without samna."""
    package = _SIM_PACKAGE.get(chip)
    if package is None:
        raise NIRError(f"no XyloSim for chip {chip!r}; known: {', '.join(_SIM_PACKAGE)}",
                       field="chip")
    if package in _CLASSES:
        return _CLASSES[package]
    try:
        import rockpool.devices as devices
        import xylosim.v2  # noqa: F401  (fail early with a clear message)
    except ImportError as exc:
        raise ImportError(f"the xylosim target needs rockpool 3.1.0 and xylosim 0.1.3 "
                          f"(pip install 'nrf-nir[rockpool]'): {exc}") from None
    root = os.path.join(os.path.dirname(devices.__file__), "xylo")
    devices.xylo = _shim("rockpool.devices.xylo", root)
    if package == "syns61201":
        from rockpool.devices.xylo.syns61201.xylo_sim import XyloSim
    else:
        _shim("rockpool.devices.xylo.syns63300", os.path.join(root, "syns63300"))
        from rockpool.devices.xylo.syns63300.xylo_sim import XyloSim
    _CLASSES[package] = XyloSim
    return XyloSim


def build(config: XyloConfig) -> Any:
    """A Rockpool ``XyloSim`` module for ``config`` (``from_specification``; the output
    decays are always given explicitly, else Rockpool leaves the readout silent)."""
    config.validate()
    spec = config.specification()
    dt = spec.pop("dt")
    return xylosim_class(config.chip).from_specification(**spec, dt=dt)


def run_xylosim(config: XyloConfig, inputs: Any, *, record: Iterable[str] = (),
                sim: Any = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Run ``inputs`` (``[T, B, Nin]`` event counts) sample by sample in XyloSim, each from
    the reset state. Same keys and meaning as :meth:`XyloEmulator.run` (numpy int32).
    ``progress``: a progress bar (samples) on stderr."""
    record = tuple(record)
    for key in record:
        if key not in RECORDABLE:
            raise NIRError(f"cannot record {key!r}; known: {', '.join(RECORDABLE)}",
                           field="record")
    x = np.asarray(inputs)
    if x.ndim != 3 or x.shape[2] != config.n_in:
        raise NIRError(f"inputs must be [T, B, {config.n_in}] event counts, got "
                       f"{list(x.shape)}", field="inputs")
    if np.any(x != np.round(x)) or np.any(x < 0):
        raise NIRError("Xylo inputs are event counts: non-negative integers", field="inputs")
    # XyloSim clamps to 15 events itself; clamping here keeps the uint8 conversion valid
    x = np.minimum(x, 15).astype(np.int64)
    T, B = x.shape[:2]
    sim = build(config) if sim is None else sim
    res = {"spikes_out": np.zeros((T, B, config.n_out), np.int32)}
    for key in record:
        res[key] = np.zeros((T, B, config.n_out if key.endswith("_out") else config.n_hidden),
                            np.int32)
    names = {"spikes": "Spikes", "v": "Vmem", "i": "Isyn", "i2": "Isyn2",
             "v_out": "Vmem_out", "i_out": "Isyn_out"}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=B, unit="sample", desc="xylosim", leave=False)
    for b in range(B):
        sim.reset_state()
        out, _, rec = sim.evolve(x[:, b], record=bool(record))
        res["spikes_out"][:, b] = np.asarray(out).reshape(T, config.n_out)
        for key in record:
            if key == "i2" and names[key] not in rec:  # a one-synapse chip (Xylo IMU)
                continue
            res[key][:, b] = np.asarray(rec[names[key]]).reshape(T, -1)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return res
