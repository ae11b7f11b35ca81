"""Shared pieces of the three Lava targets: lowered programs, inputs and outputs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nrf_nir.errors import NIRError, shown
from nrf_nir.reference import resolve_dtype
from nrf_nir.semantics import Semantics
from nrf_nir.targets import (
    Findings,
    Options,
    Target,
    Violation,
    findings,
    option_bool,
    option_int,
    parse_options,
    refuse,
)
from nrf_nir.validate import Checked

from .plan import VTH_MAX, FixedPlan, Plan, analyse


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
    options (``copies``: samples per Lava network; ``vth``: forced threshold mantissa;
    ``input_scale``: inputs are sent as payloads ``round(x * input_scale)``, a float).
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


def input_values(prog: LavaProgram, inputs: Mapping[str, Tensor], *,
                 integers: bool) -> Tensor:
    """Every Input node's values, each ``[T, B, *shape]`` (the same ``T`` and ``B`` for all),
    flattened and concatenated in the plan's order (:attr:`Plan.input_slices`):
    ``[T, B, n_in]``; ``integers``: each Input's fixed-point payloads
    (:func:`input_payloads`). Refused (NIRError naming the Input, field ``inputs``): a missing
    input, fewer than two dimensions, a per-sample shape other than the Input's (or its flat
    size), a ``T`` or ``B`` other than the first Input's."""
    plan = prog.plan
    shapes = plan.inputs or {plan.input_name: plan.input_shape}
    parts: list[Tensor] = []
    first: tuple[str, int, int] | None = None
    for name, shape in shapes.items():
        if name not in inputs:
            raise NIRError(f"missing input {name!r}", node=name, field="inputs")
        t = inputs[name].detach()
        if t.dim() < 2:
            raise NIRError("inputs are [T, B, *shape]", node=name, field="inputs")
        T, B = int(t.shape[0]), int(t.shape[1])
        n = int(np.prod(shape))
        if tuple(t.shape[2:]) not in (tuple(shape), (n,)):
            raise NIRError(f"expected [T, B, {', '.join(map(str, shape))}] (or [T, B, {n}]), "
                           f"got {list(t.shape)}", node=name, field="inputs")
        if first is None:
            first = (name, T, B)
        elif (T, B) != first[1:]:
            raise NIRError(f"input {name!r} has T = {T}, B = {B}; input {first[0]!r} has "
                           f"T = {first[1]}, B = {first[2]}: every input needs the same "
                           "steps and samples", node=name, field="inputs")
        t = t.reshape(T, B, n)
        parts.append(input_payloads(prog, t, node=name) if integers else t)
    return parts[0] if len(parts) == 1 else torch.cat(
        [p.to(torch.float64) for p in parts], dim=2)


def input_array(prog: LavaProgram, inputs: Mapping[str, Tensor], *,
                integers: bool) -> np.ndarray:
    """The inputs as one ``[T, B, n_in]`` float64 numpy array (:func:`input_values`)."""
    return input_values(prog, inputs, integers=integers).to("cpu", torch.float64).numpy()


#: The largest magnitude of an input payload: Lava's Loihi-2 models take graded spikes of
#: ``num_message_bits = 24`` (``lava/proc/conv/models.py``: ``s_in`` int32 of precision 24),
#: i.e. 24-bit signed integers; symmetric here.
PAYLOAD_MAX = 2**23 - 1
#: The options of the fixed-point targets (``lava-fixed`` also takes ``copies``).
FIXED_OPTIONS = ("vth", "progress", "input_scale")


def input_scale_of(extra: Mapping[str, Any], node: str | None = None) -> float | None:
    """The option ``input_scale`` (payload units per input unit) as a positive finite float;
    None when not given. Refused (NIRError, field ``input_scale``, naming ``node``, the
    Input) otherwise."""
    if "input_scale" not in extra:
        return None
    value = extra["input_scale"]
    try:
        scale = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise NIRError(f"the option input_scale must be a positive finite number (payload "
                       f"units per input unit), got {shown(str(value), 40)}", node=node,
                       field="input_scale")
    return scale


def input_node(checked: Checked) -> str | None:
    """The graph's (first) Input node, which input errors name."""
    return next(iter(checked.flat.inputs), None)


def lava_options(options: Options, known: tuple[str, ...], target: str,
                 node: str | None = None) -> dict[str, Any]:
    """``options.extra`` checked: names (``parse_options``) and ``input_scale``'s value,
    replaced by its float."""
    extra = parse_options(options, known, target)
    checks = {"vth": option_int(1, VTH_MAX), "copies": option_int(1), "progress": option_bool}
    for name in checks.keys() & extra.keys():
        extra[name] = checks[name](name, extra[name])
    scale = input_scale_of(extra, node)
    if scale is not None:
        extra["input_scale"] = scale
    return extra


def input_payloads(prog: LavaProgram, x: Tensor, node: str | None = None) -> Tensor:
    """The integer payloads a fixed-point target sends for the input ``x`` of the Input
    ``node`` (default: the first; any shape, on its device): ``round(x * input_scale)`` in
    float64, half to even (``torch.round``), with the option ``input_scale`` (the same for
    every Input); ``x`` itself (which must then be integers) without it. Both fixed-point
    targets call this, so their payloads are the same. Refused (NIRError on the Input, field
    ``inputs``, or ``input_scale`` when the scale makes it too large): non-finite values,
    non-integers without ``input_scale``, payloads beyond :data:`PAYLOAD_MAX` (checked on the
    extremes of ``x`` before the scaled array is made)."""
    name = prog.plan.input_name if node is None else node
    scale: float | None = prog.options.get("input_scale")
    if x.numel() == 0:
        return x.to(torch.float64)
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise NIRError(f"the {prog.target} target sends inputs as integer payloads; got "
                       "non-finite values (NaN or inf)", node=name, field="inputs")
    if scale is None and not bool(torch.all(x == torch.round(x))):
        raise NIRError(
            f"the {prog.target} target takes integer inputs (spikes, or graded spike "
            "payloads); got non-integer values. For analog inputs pass the target option "
            "input_scale (e.g. input_scale=255 for images in [0, 1]): each x is then sent as "
            "the payload round(x * input_scale)", node=name, field="inputs")
    x_max = max(abs(lo), abs(hi))
    top = x_max * (1.0 if scale is None else scale)
    if round(top) > PAYLOAD_MAX:
        how = (f"max |x| = {x_max:g} times input_scale {scale:g} is {top:.6g}"
               if scale is not None else f"max |x| = {top:.6g}")
        raise NIRError(f"input payloads exceed Lava's 24-bit graded spikes (|payload| <= "
                       f"{PAYLOAD_MAX}): {how}", node=name,
                       field="inputs" if scale is None else "input_scale")
    return x if scale is None else torch.round(x.to(torch.float64) * scale)


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
