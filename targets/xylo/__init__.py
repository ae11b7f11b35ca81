"""SynSense Xylo: design rules, quantization, XyloSim and a bit-exact batched emulator
(docs/targets/xylo.md).

- ``TARGET`` (``xylo``): Xylo Audio 2 (SYNS61201) on our integer emulator, batched over
  samples (a compiled CPU kernel, or torch operations on CUDA);
- ``XYLOSIM_TARGET`` (``xylosim``): Xylo Audio 2 on SynSense's XyloSim through Rockpool
  (imported without samna); both run the same integer configuration and agree bit for bit;
- ``IMU_TARGET`` (``xylo-imu``) and ``AUDIO3_TARGET`` (``xylo-audio3``): Xylo IMU (SYNS63300)
  and Xylo Audio 3 (SYNS65302), the same core with their own limits
  (``nrf_nir.chips.XYLO_SPECS``), on our emulator; ``xylosim-imu`` and ``xylosim-audio3``
  run them in Rockpool's ``syns63300.XyloSim`` (equal to the emulator, tested).
"""

from __future__ import annotations

from .artifact import load_artifact, write_artifact
from .config import XyloConfig
from .emulator import XyloEmulator
from .quantize import calibrate, quantize
from .rules import SPEC, SPECS, Network, XyloSpec, analyse, chip_spec
from .target import AUDIO3_TARGET, IMU_TARGET, TARGET, XyloLowered, XyloTarget, decode_outputs
from .xylosim_engine import run_xylosim


def __getattr__(name: str) -> object:
    """The XyloSim targets resolve only where xylosim and rockpool are installed, so that the
    registry lists them as unavailable elsewhere."""
    if name in ("XYLOSIM_TARGET", "XYLOSIM_IMU_TARGET", "XYLOSIM_AUDIO3_TARGET"):
        import importlib.util

        missing = [m for m in ("xylosim", "rockpool") if importlib.util.find_spec(m) is None]
        if missing:
            raise ImportError(f"the xylosim target needs {' and '.join(missing)} "
                              "(pip install 'nrf-nir[rockpool]')")
        from . import target

        return getattr(target, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AUDIO3_TARGET", "IMU_TARGET", "SPEC", "SPECS", "TARGET", "XYLOSIM_TARGET", "Network",
    "XyloConfig", "XyloEmulator", "XyloLowered", "XyloSpec", "XyloTarget", "analyse",
    "calibrate", "chip_spec", "decode_outputs", "load_artifact", "quantize", "run_xylosim",
    "write_artifact",
]
