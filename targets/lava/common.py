"""Shared pieces of the three Lava targets: lowered programs, inputs and outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nrf_nir.errors import NIRError
from nrf_nir.reference import resolve_dtype
from nrf_nir.semantics import Semantics
from nrf_nir.targets import Findings, Options, Target, Violation, findings, refuse
from nrf_nir.validate import Checked

from .plan import FixedPlan, Plan, analyse


def checked_plan(checked: Checked, semantics: Semantics, target: str) -> list[Violation]:
    """A Lava target's ``check``: every violation, and the plan (None with any) as the
    analysis ``lower`` reuses."""
    plan, found = analyse(checked, semantics, target)
    return Findings(found, plan)


def plan_of(target: Target, checked: Checked, semantics: Semantics, options: Options) -> Plan:
    """The plan ``lower`` acts on: refused (NIRError) with any violation, else the one
    ``check`` made (analysed again only when it gave none)."""
    found = findings(target, checked, semantics, options)
    refuse(target.name, found)
    plan = found.analysis
    if plan is None:  # a check result without its analysis
        plan, again = analyse(checked, semantics, target.name)
        refuse(target.name, again)
    assert plan is not None  # analyse maps whatever it finds no violation in
    return plan


@dataclass
class LavaProgram:
    """A graph lowered for ``lava-float``, ``lava-fixed`` or ``loihi``.

    plan: the float translation; fixed: the quantized network (fixed / loihi); options: target
    options (``copies``: samples per Lava network; ``vth``: forced threshold mantissa).
    """

    target: str
    checked: Checked
    semantics: Semantics
    plan: Plan
    dtype: torch.dtype
    fixed: FixedPlan | None = None
    options: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def quantization_report(self) -> dict[str, Any]:
        if self.fixed is None:
            return {}
        return self.fixed.report()


def input_array(prog: LavaProgram, inputs: Mapping[str, Tensor], *,
                integers: bool) -> np.ndarray:
    """The single input as ``[T, B, n_in]`` float64 numpy."""
    name = prog.plan.input_name
    if name not in inputs:
        raise NIRError(f"missing input {name!r}", node=name, field="inputs")
    x = inputs[name].detach().to("cpu", torch.float64).numpy()
    if x.ndim < 2:
        raise NIRError("inputs are [T, B, *shape]", node=name, field="inputs")
    x = x.reshape(x.shape[0], x.shape[1], -1)
    if x.shape[2] != prog.plan.n_in:
        raise NIRError(f"expected {prog.plan.n_in} values per sample, got {x.shape[2]}",
                       node=name, field="inputs")
    if integers and not np.all(x == np.round(x)):
        raise NIRError(f"the {prog.target} target takes integer inputs (spikes, or graded "
                       "spike payloads); got non-integer values", node=name, field="inputs")
    return x


def outputs(prog: LavaProgram, values: Mapping[int, Any], record: tuple[str, ...],
            T: int, B: int) -> dict[str, Tensor]:
    """Output nodes and recorded neurons as ``[T, B, *shape]`` tensors of ``prog.dtype``:
    spikes, or a read-out's voltage in reference units (``values`` holds Lava's ``v`` per
    layer: float ``v'`` for lava-float, integers for the fixed-point targets). A node split
    into populations is put together from them (each ``part`` of its neurons)."""
    plan = prog.plan
    result: dict[str, Tensor] = {}
    for name, ks in plan.read(record).items():
        first = plan.layers[ks[0]]
        shape = plan.out_shapes.get(name) or plan.node_shapes.get(name, first.shape)
        pieces = [_layer_values(prog, k, values[k]) for k in ks]
        if len(ks) == 1 and first.part is None:
            z = pieces[0]
        else:
            n = sum(plan.layers[k].n for k in ks)
            whole = np.empty((T, B, n), dtype=np.float64 if first.readout else np.int8)
            for k, piece in zip(ks, pieces, strict=True):
                part = plan.layers[k].part
                whole[:, :, slice(None) if part is None else part] = (
                    piece.cpu().numpy() if isinstance(piece, Tensor) else piece
                ).reshape(T, B, -1)
            z = whole
        t = z if isinstance(z, Tensor) else torch.from_numpy(np.ascontiguousarray(z))
        result[name] = t.to(prog.dtype).reshape(T, B, *shape)
    return result


def _layer_values(prog: LavaProgram, k: int, z: Any) -> Any:
    """Layer ``k``'s values: spikes as given, a read-out's voltage in reference units."""
    layer = prog.plan.layers[k]
    if not layer.readout:
        return z
    z = z.cpu().numpy() if isinstance(z, Tensor) else np.asarray(z)
    if prog.fixed is not None:
        return prog.fixed.layers[k].voltage(z)
    return z.astype(np.float64) + (0.0 if layer.v_offset is None else layer.v_offset)


def default_dtype(options: Options) -> torch.dtype:
    return resolve_dtype(options.dtype)
