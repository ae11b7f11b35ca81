"""Lava (Intel Loihi) targets: ``lava-float``, ``lava-fixed`` and ``loihi`` (docs/targets/lava.md).

- ``lava-float`` (:data:`FLOAT_TARGET`): Lava 0.10 processes (RingBuffer source, Dense, LIF,
  RingBuffer sinks) run by ``Loihi2SimCfg(select_tag="floating_pt")``; the reference's
  equations translated exactly, Lava's one-step-per-Dense latency removed.
- ``lava-fixed`` (:data:`FIXED_TARGET`): the same processes with Loihi-2 fixed-point models
  (``fixed_pt``), quantization chosen and reported by nrf-nir; ``artifact`` writes a lava-dl
  netx HDF5 network.
- ``loihi`` (:data:`LOIHI_TARGET`): nrf-nir's batched PyTorch emulator of those fixed-point
  models, bit-exact with ``lava-fixed``; needs no Lava.

``FLOAT_TARGET`` and ``FIXED_TARGET`` import Lava on first access (an ``ImportError`` when
Lava is not installed, so the registry lists them as unavailable); ``LOIHI_TARGET`` never does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from nrf_nir.semantics import Semantics
from nrf_nir.targets import Options, Violation
from nrf_nir.validate import Checked

from .common import (
    FIXED_OPTIONS,
    LavaProgram,
    checked_plan,
    default_dtype,
    input_node,
    input_values,
    lava_options,
    outputs,
    plan_of,
)
from .emulator import LoihiEmulator
from .plan import LOIHI_NAME, quantize


class LoihiTarget:
    name = LOIHI_NAME
    description = ("nrf-nir's batched PyTorch emulator of Lava's Loihi-2 fixed-point CUBA LIF, "
                   "Dense and Conv; bit-exact with lava-fixed")
    progress = True  # takes the option progress (a progress bar over the neuron steps)

    def check(self, checked: Checked, semantics: Semantics,
              options: Options | None = None) -> list[Violation]:
        return checked_plan(checked, semantics, self.name)

    def lower(self, checked: Checked, semantics: Semantics, options: Options) -> LavaProgram:
        """strict=False: lower what the target can run; violations that make running impossible
        still raise: every one of this target's does (no plan exists with any)."""
        extra = lava_options(options, FIXED_OPTIONS, self.name, input_node(checked))
        plan = plan_of(self, checked, semantics, options)
        device = torch.device(options.device) if options.device is not None else (
            torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        fixed = quantize(plan, vth=extra.get("vth"), input_scale=extra.get("input_scale"))
        prog = LavaProgram(self.name, checked, semantics, plan, default_dtype(options),
                           fixed=fixed, options=extra, device=device)
        prog.options["emulator"] = LoihiEmulator(fixed, device=device)
        return prog

    def check_options(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        """``extra`` as ``lower`` takes it: unknown names and a bad ``input_scale`` refused
        (NIRError naming the option as field)."""
        return lava_options(Options(extra=extra), FIXED_OPTIONS, self.name)

    def run(self, lowered: LavaProgram, inputs: Mapping[str, Tensor],
            record: tuple[str, ...]) -> dict[str, Tensor]:
        x = input_values(lowered, inputs, integers=True)
        T, B = int(x.shape[0]), int(x.shape[1])
        wanted = set(lowered.plan.record_layers(tuple(record)).values())
        emu: LoihiEmulator = lowered.options["emulator"]
        spikes = emu.run(x, layers=wanted, checked=True,
                         progress=bool(lowered.options.get("progress")))
        return outputs(lowered, {k: spikes[k].cpu() for k in wanted}, tuple(record), T, B)


LOIHI_TARGET = LoihiTarget()


def __getattr__(name: str) -> Any:
    if name in ("FLOAT_TARGET", "FIXED_TARGET"):
        from . import lava_targets  # imports Lava: ImportError when it is not installed

        return getattr(lava_targets, name)
    raise AttributeError(name)


__all__ = ["FLOAT_TARGET", "FIXED_TARGET", "LOIHI_TARGET"]
