"""The Python API: validate, check, lower and run a NIR graph on any registered target."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import nir
import numpy as np
import torch
from torch import Tensor

from .errors import NIRError
from .io import load
from .reference import resolve_dtype
from .semantics import Semantics, read_semantics
from .validate import Checked
from .validate import validate as _validate

GraphLike: TypeAlias = "nir.NIRGraph | str | os.PathLike[str]"


def _graph(graph: GraphLike) -> nir.NIRGraph:
    if isinstance(graph, nir.NIRGraph):
        return graph
    if isinstance(graph, (str, os.PathLike)):
        return load(graph, validate=False)
    raise NIRError(f"expected a nir.NIRGraph or a path to a .nir file, got "
                   f"{type(graph).__name__}")


def validate(graph: GraphLike) -> Checked:
    """Validate a graph (or file) and return it flattened with inferred shapes."""
    g = _graph(graph)
    try:
        return _validate(g)
    except NIRError as exc:
        if not isinstance(graph, nir.NIRGraph):
            exc.with_file(str(graph))
        raise


def check(graph: GraphLike, target: str = "reference", *, dt: float | None = None) -> list[Any]:
    """What ``target`` cannot run of ``graph``: a list of ``Violation`` (empty: all of it)."""
    from .targets import get

    checked = validate(graph)
    return get(target).check(checked, read_semantics(checked.graph).with_dt(dt))


@dataclass
class Lowered:
    """A graph lowered to one target, ready to run many times."""

    target: str
    checked: Checked
    semantics: Semantics
    backend: Any
    dtype: torch.dtype

    def run(self, inputs: Any, *, record: Iterable[str] = ()) -> dict[str, Tensor]:
        from .targets import get

        prepared = prepare_inputs(self.checked, inputs, self.dtype)
        return get(self.target).run(self.backend, prepared, tuple(record))


def lower(graph: GraphLike, target: str = "reference", *, dt: float | None = None,
          dtype: Any = None, device: Any = None, strict: bool = True,
          **options: Any) -> Lowered:
    """Validate and lower ``graph`` for ``target``.

    dt: time step in seconds; overrides the graph's metadata ``dt`` (one must exist).
    strict: refuse (NIRError listing the violations) when ``check`` reports any.
    options: target-specific options (reference: ``chunk_bytes``, ``stepwise``).
    """
    from .targets import Options, get

    checked = validate(graph)
    semantics = read_semantics(checked.graph).with_dt(dt)
    semantics.require_dt()
    backend = get(target)
    if strict:
        violations = backend.check(checked, semantics)
        if violations:
            raise NIRError(f"target {target!r} cannot run this graph: "
                           + "; ".join(str(v) for v in violations), field="target")
    run_dtype = resolve_dtype(dtype)
    lowered = backend.lower(checked, semantics, Options(dtype=run_dtype, device=device,
                                                        extra=options))
    return Lowered(target, checked, semantics, lowered, run_dtype)


def _to_tensor(name: str, value: Any) -> Tensor:
    if isinstance(value, Tensor):
        tensor = value.detach()
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - any conversion failure is a user error
            raise NIRError(f"input cannot be read as an array ({exc})", node=name,
                           field="inputs") from None
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise NIRError(f"input must be numeric (bool, int or float), got dtype {arr.dtype}",
                           node=name, field="inputs")
        tensor = torch.from_numpy(np.ascontiguousarray(arr))
    if tensor.is_complex():
        raise NIRError(f"input must be real, got {tensor.dtype}", node=name, field="inputs")
    return tensor


def prepare_inputs(checked: Checked, inputs: Any, dtype: torch.dtype) -> dict[str, Tensor]:
    """Check inputs against the graph's Input nodes and convert them to ``dtype`` tensors.

    ``inputs``: one array (single-input graph) or a mapping from Input node name to array,
    each ``[T, B, *shape]``.
    """
    names = checked.flat.inputs
    if isinstance(inputs, Mapping):
        given = dict(inputs)
        missing = [n for n in names if n not in given]
        unknown = [n for n in given if n not in names]
        if missing or unknown:
            raise NIRError(
                f"inputs must be keyed by the graph's Input nodes ({', '.join(names)}); "
                + (f"missing: {', '.join(missing)}" if missing else "")
                + ("; " if missing and unknown else "")
                + (f"unknown: {', '.join(map(str, unknown))}" if unknown else ""),
                field="inputs")
    else:
        if len(names) != 1:
            raise NIRError(f"the graph has {len(names)} Input nodes ({', '.join(names)}): pass "
                           "a dict keyed by their names", field="inputs")
        given = {names[0]: inputs}
    out: dict[str, Tensor] = {}
    time_batch: tuple[int, int] | None = None
    for name in names:
        tensor = _to_tensor(name, given[name])
        shape = checked.out_shapes[name]
        want = f"[T, B, {', '.join(map(str, shape))}]" if shape else "[T, B]"
        if tensor.dim() != 2 + len(shape) or tuple(tensor.shape[2:]) != shape:
            raise NIRError(f"input must have shape {want} (T steps, B samples), got "
                           f"{list(tensor.shape)}", node=name, field="inputs")
        if tensor.shape[0] < 1 or tensor.shape[1] < 1:
            raise NIRError(f"input needs at least one step and one sample, got "
                           f"{list(tensor.shape)}", node=name, field="inputs")
        tb = (int(tensor.shape[0]), int(tensor.shape[1]))
        if time_batch is not None and tb != time_batch:
            raise NIRError(f"all inputs must share T and B: {tb} vs {time_batch}", node=name,
                           field="inputs")
        time_batch = tb
        converted = tensor.to(dtype)
        # A finite sum proves every element finite (NaN/inf propagate); only a non-finite sum
        # (or an overflow) needs the exact, slower element-wise check.
        if converted.is_floating_point() and not bool(torch.isfinite(converted.sum())) and \
                not bool(torch.isfinite(converted).all()):
            raise NIRError("input contains NaN or inf", node=name, field="inputs")
        out[name] = converted
    return out


def export(module: Any, sample_input: Any, *, dt: float | None = None) -> nir.NIRGraph:
    """Export a live Norse / PyTorch module to a NIR graph (see ``nrf_nir.exporters``).

    sample_input: one time step ``[B, *input_shape]``. dt: seconds (default: the cells' dt).
    """
    from .exporters import export as _export

    return _export(module, sample_input, dt=dt)


def run(graph: GraphLike, inputs: Any, *, target: str = "reference", dt: float | None = None,
        dtype: Any = None, record: Iterable[str] = (), device: Any = None,
        **options: Any) -> dict[str, Tensor]:
    """Simulate ``graph`` on ``target``.

    inputs: one array ``[T, B, *shape]`` (single Input node) or a dict keyed by Input node name.
    dt: seconds; overrides the graph's metadata ``dt`` (one of the two must exist).
    dtype: float32 (default) or float64. device: default CUDA when present, else CPU.
    record: node names (dotted inside nested graphs) and ``"<neuron>.v"`` / ``".i"`` states.
    Returns output node name (and each recorded name) -> ``[T, B, ...]`` tensor.
    """
    lowered = lower(graph, target, dt=dt, dtype=dtype, device=device, **options)
    return lowered.run(inputs, record=record)
