"""The Python API: validate, check, lower and run a NIR graph on any registered target."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

import nir
import numpy as np
import torch
from torch import Tensor

from .errors import NIRError, listed, shown
from .io import validate_graph as validate  # (nrf_nir.validate, defined without torch)
from .runner import all_finite, resolve_dtype
from .semantics import Semantics, read_semantics
from .validate import Checked, check_numerics

GraphLike: TypeAlias = "nir.NIRGraph | str | os.PathLike[str]"


def check(graph: GraphLike, target: str = "reference", *, dt: float | None = None,
          dialect: str = "auto") -> list[Any]:
    """What ``target`` cannot run of ``graph``: a list of ``Violation`` (empty: all of it).
    dialect: for a path, as for ``nrf_nir.load``. A violation on a node that a dialect made
    says which node of the file it was made from. Firing semantics the target does not
    compute (``spikes``, ``membrane_floor``, ``reset_delay``) come first."""
    from .targets import check_target, get

    checked = validate(graph, dialect=dialect)
    found = check_target(get(target), checked, read_semantics(checked.graph).with_dt(dt))
    return _in_user_terms(checked, found)


def _origin(checked: Checked, node: str | None) -> str | None:
    """"made from 'X' by the Y dialect" for a node a dialect created, else None."""
    from .dialects import origin_of

    return origin_of(checked.flat.nodes.get(node)) if node else None


def _in_user_terms(checked: Checked, violations: list[Any]) -> list[Any]:
    """``violations`` (in place, same list type) with each message on a node that a dialect
    made starting with where it came from (``(made from 'lif1.w_rec' by the snntorch
    dialect)``): the user's file has no such node."""
    for k, v in enumerate(violations):
        origin = _origin(checked, getattr(v, "node", None))
        if origin and hasattr(v, "message") and origin not in v.message:
            violations[k] = replace(v, message=f"({origin}) {v.message}")
    return violations


def _error_in_user_terms(checked: Checked, exc: NIRError) -> NIRError:
    """``exc``, its message saying where its node came from when a dialect made it."""
    origin = _origin(checked, exc.node)
    return exc.with_prefix(f"({origin}) ") if origin and origin not in str(exc.message) else exc


class NonFiniteWarning(RuntimeWarning):
    """A run produced NaN or inf (``strict_numerics=True`` makes it a :class:`NonFiniteError`)."""


class NonFiniteError(NIRError):
    """A run produced NaN or inf under ``strict_numerics=True``."""


@dataclass
class Lowered:
    """A graph lowered to one target, ready to run many times.

    strict_numerics: a run that produces NaN or inf raises :class:`NonFiniteError` instead of
    warning (:class:`NonFiniteWarning`).
    violations: what the target's ``check`` found and it lowered anyway (``strict=False``).
    """

    target: str
    checked: Checked
    semantics: Semantics
    backend: Any
    dtype: torch.dtype
    strict_numerics: bool = False
    violations: list[Any] = field(default_factory=list)

    def run(self, inputs: Any, *, record: Iterable[str] = (),
            strict_numerics: bool | None = None) -> dict[str, Tensor]:
        from .targets import get

        prepared = prepare_inputs(self.checked, inputs, self.dtype)
        out = get(self.target).run(self.backend, prepared, tuple(record))
        strict = self.strict_numerics if strict_numerics is None else strict_numerics
        _report_nonfinite(self, prepared, out, strict)
        return out


def _report_nonfinite(lowered: Lowered, inputs: dict[str, Tensor], out: dict[str, Tensor],
                      strict: bool) -> None:
    """Warn (or raise, when ``strict``) when outputs, recorded values or, for the reference,
    final states hold NaN or inf; the reference re-runs to name the first node that made one."""
    bad = [key for key, value in out.items() if not all_finite(value)]
    locate = getattr(lowered.backend, "first_nonfinite", None)
    states_bad = getattr(lowered.backend, "finite_states", True) is False
    if not bad and not states_bad:
        return
    where = locate(inputs) if locate is not None else None
    seen = f"; non-finite outputs: {', '.join(bad)}" if bad else "; the outputs are finite"
    if where is not None:
        at = "at" if where.field == "output" else "by"  # states are watched per chunk
        what = "output" if where.field == "output" else f"state {where.field!r}"
        error: NIRError = NonFiniteError(
            f"the run produced {where.kind}: this node's {what} is the first non-finite value "
            f"in execution order ({at} time step {where.step}){seen}", node=where.node,
            field=where.field)
    else:
        error = NonFiniteError(f"the {lowered.target} run produced NaN or inf in its "
                               f"output{seen}", node=bad[0] if bad else None, field="output")
    if strict:
        raise error
    warnings.warn(str(error), NonFiniteWarning, stacklevel=3)


def check_device(device: Any) -> Any:
    """Refuse (``NIRError``, field ``device``) a torch device that does not parse, does not
    exist on this machine or does not compute (``meta``); return ``device`` unchanged."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise NIRError(f"unknown device {shown(str(device))} (expected cpu, cuda or cuda:N)",
                       field="device") from None
    if dev.type == "cpu":
        return device
    if dev.type == "meta":
        raise NIRError("'meta' is not a device that computes (it holds shapes, not values); "
                       "use cpu or cuda", field="device")
    backend = getattr(torch, dev.type, None)
    is_available = getattr(backend, "is_available", None)
    if not callable(is_available):
        raise NIRError(f"device type {shown(dev.type)} is not supported (use cpu or cuda)",
                       field="device")
    if not is_available():
        label = "CUDA" if dev.type == "cuda" else dev.type
        raise NIRError(f"{label} is not available on this machine (use cpu)", field="device")
    count = int(getattr(backend, "device_count", lambda: 1)())
    if dev.index is not None and dev.index >= count:
        raise NIRError(f"{shown(str(dev))} does not exist: this machine has {count} {dev.type} "
                       f"device(s), {dev.type}:0 to {dev.type}:{count - 1}", field="device")
    return device


def lower(graph: GraphLike, target: str = "reference", *, dt: float | None = None,
          dtype: Any = None, device: Any = None, strict: bool = True,
          strict_numerics: bool = False, dialect: str = "auto", **options: Any) -> Lowered:
    """Validate and lower ``graph`` for ``target``.

    dt: time step in seconds; overrides the graph's metadata ``dt`` (one must exist).
    Parameters that cannot run at dt in dtype (not finite once cast, an overflowing or
    Euler-unstable decay factor dt/tau, a Delay buffer over the element limit) are refused
    before any target lowers (``nrf_nir.validate.check_numerics``).
    strict: refuse (NIRError listing the violations) when ``check`` reports any.
    strict=False: lower what the target can run and keep the violations on
    ``Lowered.violations``; violations that make running impossible still raise (the target
    says which it can run with: today Xylo's quantization-precision rules), and so does firing
    semantics the target does not compute (``nrf_nir.targets.semantics_violations``).
    strict_numerics: runs that produce NaN or inf raise instead of warning.
    dialect: for a path, the producer's conventions (as for ``nrf_nir.load``).
    Messages on a node a dialect made say which node of the file it was made from.
    options: target-specific options (reference: ``chunk_bytes``, ``stepwise``).
    """
    from .targets import Options, check_target, get, semantics_violations

    check_device(device)
    checked = validate(graph, dialect=dialect)
    semantics = read_semantics(checked.graph).with_dt(dt)
    semantics.require_dt()
    run_dtype = resolve_dtype(dtype)
    backend = get(target)
    opts = Options(dtype=run_dtype, device=device, extra=options)
    violations = _in_user_terms(checked, check_target(backend, checked, semantics, opts))
    if violations and (strict or semantics_violations(backend, checked, semantics)):
        raise NIRError(f"target {target!r} cannot run this graph: "
                       + "; ".join(str(v) for v in violations), field="target")
    try:  # before any target lowers: what no target can run at this dt and dtype
        check_numerics(checked, semantics, str(run_dtype).removeprefix("torch."),
                       strict=strict_numerics)
    except NIRError as exc:
        if not isinstance(graph, nir.NIRGraph):
            exc.with_file(str(graph))
        raise
    try:
        lowered = backend.lower(checked, semantics, replace(opts, violations=violations))
    except NIRError as exc:
        raise _error_in_user_terms(checked, exc) from None
    return Lowered(target, checked, semantics, lowered, run_dtype, strict_numerics,
                   list(violations))


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
                f"inputs must be keyed by the graph's Input nodes ({listed(names)}); "
                + (f"missing: {listed(missing)}" if missing else "")
                + ("; " if missing and unknown else "")
                + (f"unknown: {listed(map(str, unknown))}" if unknown else ""),
                field="inputs")
    else:
        if len(names) != 1:
            raise NIRError(f"the graph has {len(names)} Input nodes ({listed(names)}): pass "
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
        if not all_finite(converted):
            raise NIRError("input contains NaN or inf", node=name, field="inputs")
        out[name] = converted
    return out


def export(module: Any, sample_input: Any, *, dt: float | None = None) -> nir.NIRGraph:
    """Export a live Norse / PyTorch module to a NIR graph (see ``nrf_nir.exporters``).

    sample_input: one time step ``[B, *input_shape]``. dt: seconds (default: the cells' dt).
    The exporters are a layer above the core, found by location (``nrf_nir.plugins``).
    """
    from . import plugins

    graph: nir.NIRGraph = plugins.load(plugins.EXPORTER)(module, sample_input, dt=dt)
    return graph


def run(graph: GraphLike, inputs: Any, *, target: str = "reference", dt: float | None = None,
        dtype: Any = None, record: Iterable[str] = (), device: Any = None,
        strict_numerics: bool = False, dialect: str = "auto",
        **options: Any) -> dict[str, Tensor]:
    """Simulate ``graph`` on ``target``.

    inputs: one array ``[T, B, *shape]`` (single Input node) or a dict keyed by Input node name.
    dt: seconds; overrides the graph's metadata ``dt`` (one of the two must exist).
    dtype: float32 (default) or float64. device: default CUDA when present, else CPU.
    record: node names (dotted inside nested graphs) and ``"<neuron>.v"`` / ``".i"`` states.
    strict_numerics: NaN or inf in the run is a NIRError naming the node (default: a
    :class:`NonFiniteWarning`).
    dialect: for a path, the producer's conventions (as for ``nrf_nir.load``).
    Returns output node name (and each recorded name) -> ``[T, B, ...]`` tensor.
    """
    lowered = lower(graph, target, dt=dt, dtype=dtype, device=device,
                    strict_numerics=strict_numerics, dialect=dialect, **options)
    return lowered.run(inputs, record=record)
