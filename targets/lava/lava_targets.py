"""``lava-float`` and ``lava-fixed``: NIR graphs as Lava 0.10 processes (imports Lava)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from nrf_nir.semantics import Semantics
from nrf_nir.targets import Options, Violation
from nrf_nir.validate import Checked

from . import runner
from .common import (
    FIXED_OPTIONS,
    LavaProgram,
    checked_plan,
    default_dtype,
    input_array,
    input_node,
    lava_options,
    outputs,
    plan_of,
)
from .plan import FIXED_NAME, FLOAT_NAME, FixedPlan, Plan, quantize


def float_spec(plan: Plan) -> runner.NetSpec:
    return runner.NetSpec("floating_pt", plan.n_in, [
        runner.LayerSpec(n=ly.n, inputs=ly.inputs, depth=ly.depth, w_rec=ly.w_rec,
                         bias=ly.beta, du=ly.du, dv=ly.dv, vth=ly.vth, readout=ly.readout,
                         v_init=ly.v_init, v_bias=ly.v_bias, subtract=ly.subtract)
        for ly in plan.layers])


def fixed_spec(fixed: FixedPlan) -> runner.NetSpec:
    return runner.NetSpec("fixed_pt", fixed.plan.n_in, [
        runner.LayerSpec(n=fl.n, inputs=fl.inputs, depth=fl.depth, w_rec=fl.w_rec,
                         bias=fl.bias, du=fl.du, dv=fl.dv, vth=fl.vth, readout=fl.readout,
                         v_init=fl.v_init, v_bias=fl.v_bias, subtract=fl.subtract)
        for fl in fixed.layers])


class _LavaTarget:
    name = ""
    description = ""
    fixed_point = False
    progress = True  # takes the option progress (a progress bar over the Lava steps)

    def check(self, checked: Checked, semantics: Semantics,
              options: Options | None = None) -> list[Violation]:
        return checked_plan(checked, semantics, self.name)

    def lower(self, checked: Checked, semantics: Semantics, options: Options) -> LavaProgram:
        """strict=False: lower what the target can run; violations that make running impossible
        still raise: every one of this target's does (no plan exists with any)."""
        extra = lava_options(options, self.options, self.name, input_node(checked))
        plan = plan_of(self, checked, semantics, options)
        fixed = quantize(plan, vth=extra.get("vth"), input_scale=extra.get("input_scale")) \
            if self.fixed_point else None
        return LavaProgram(self.name, checked, semantics, plan, default_dtype(options),
                           fixed=fixed, options=extra)

    @property
    def options(self) -> tuple[str, ...]:
        """The target options ``lower`` takes."""
        return ("copies", *FIXED_OPTIONS) if self.fixed_point else ("copies", "progress")

    def check_options(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        """``extra`` as ``lower`` takes it: unknown names and a bad ``input_scale`` refused
        (NIRError naming the option as field)."""
        return lava_options(Options(extra=extra), self.options, self.name)

    def spec(self, prog: LavaProgram) -> runner.NetSpec:
        if self.fixed_point:
            assert prog.fixed is not None
            return fixed_spec(prog.fixed)
        return float_spec(prog.plan)

    def run(self, lowered: LavaProgram, inputs: Mapping[str, Tensor],
            record: tuple[str, ...]) -> dict[str, Tensor]:
        x = input_array(lowered, inputs, integers=self.fixed_point)
        T, B = x.shape[0], x.shape[1]
        wanted = set(lowered.plan.record_layers(tuple(record)).values())
        values = runner.run_network(self.spec(lowered), x, wanted,
                                    max_copies=lowered.options.get("copies"),
                                    progress=bool(lowered.options.get("progress")))
        return outputs(lowered, values, tuple(record), T, B)


class LavaFloatTarget(_LavaTarget):
    name = FLOAT_NAME
    description = (f"Lava {runner.LAVA_VERSION} processes (RingBuffer, Dense, Conv, LIF) on "
                   "the CPU simulator, floating_pt; latency-compensated")


class LavaFixedTarget(_LavaTarget):
    name = FIXED_NAME
    description = (f"Lava {runner.LAVA_VERSION} processes with Loihi-2 fixed-point models "
                   "(fixed_pt), nrf-nir's quantization; artifact: lava-dl netx HDF5")
    fixed_point = True

    def artifact(self, lowered: LavaProgram, directory: Path) -> list[Path]:
        from .netx import write_artifact

        return write_artifact(lowered, Path(directory))


FLOAT_TARGET = LavaFloatTarget()
FIXED_TARGET = LavaFixedTarget()
