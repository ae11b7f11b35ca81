"""Validation and shape inference for every node type of docs/semantics.md.

``validate(graph)`` returns a :class:`Checked` graph (flattened, with shapes and normalised
parameters) or raises :class:`ValidationError` naming the node, the field and the problem.
"""

from __future__ import annotations

import math
import os
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np
from nir.ir.graph import Identity

from .errors import NIRError, UnsupportedError, ValidationError, brief
from .graph import FlatGraph, Unit, back_edges, check_cycles_have_state, flatten, schedule
from .semantics import Semantics, read_node_semantics, read_semantics

Shape = tuple[int, ...]

#: Per-sample element limit of one node's output (refuse huge graphs before allocating).
DEFAULT_MAX_ELEMENTS = int(os.environ.get("NRF_NIR_MAX_ELEMENTS", 50_000_000))

#: Characters a node name (or metadata key) may have.
MAX_NAME_CHARS = 255
#: Unicode categories a name may not contain: control, invisible format (bidi overrides,
#: zero-width), unpaired surrogate (undecodable bytes), line and paragraph separators.
_BAD_NAME_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def check_node_name(name: str) -> str | None:
    """Why ``name`` cannot name a node or a metadata key in a file, or None if it can.

    Names become HDF5 link names and appear in messages, so ``save`` refuses and ``load``
    rejects the same ones: empty, ``.`` or ``..``, containing ``/``, longer than
    ``MAX_NAME_CHARS``, with a control or invisible character, or whitespace at either end.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not text"
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"has {len(name):,} characters, over the limit of {MAX_NAME_CHARS}"
    if name in (".", ".."):
        return f"{name!r} is reserved by HDF5"
    if "/" in name:
        return "contains '/', the HDF5 path separator"
    bad = next((c for c in name if unicodedata.category(c) in _BAD_NAME_CATEGORIES), None)
    if bad is not None:
        return f"contains the control or invisible character {ascii(bad)}"
    if name != name.strip():
        return "starts or ends with whitespace"
    return None

#: The node types the reference (and so the project) understands.
NODE_TYPES: tuple[type, ...] = (
    nir.Input, nir.Output, Identity, nir.Affine, nir.Linear, nir.Scale, nir.Conv1d,
    nir.Conv2d, nir.SumPool2d, nir.AvgPool2d, nir.Flatten, nir.Threshold, nir.I, nir.LI,
    nir.IF, nir.LIF, nir.CubaLI, nir.CubaLIF, nir.Delay,
)

#: Node classes by their NIR type name (``Identity`` is not exported by ``nir``).
NODE_CLASSES: dict[str, type] = {t.__name__: t for t in (*NODE_TYPES, nir.NIRGraph)}

#: Neuron-like nodes: parameter fields (all broadcast to the input shape).
NEURON_FIELDS: dict[type, tuple[str, ...]] = {
    nir.Threshold: ("threshold",),
    nir.Scale: ("scale",),
    nir.I: ("r",),
    nir.IF: ("r", "v_threshold", "v_reset"),
    nir.LI: ("tau", "r", "v_leak"),
    nir.LIF: ("tau", "r", "v_leak", "v_threshold", "v_reset"),
    nir.CubaLI: ("tau_syn", "tau_mem", "r", "v_leak", "w_in"),
    nir.CubaLIF: ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
    nir.Delay: ("delay",),
}
POSITIVE_FIELDS = frozenset({"tau", "tau_syn", "tau_mem"})
NONNEGATIVE_FIELDS = frozenset({"delay"})
DEFAULT_ZERO_FIELDS = frozenset({"v_reset"})
DEFAULT_ONE_FIELDS = frozenset({"w_in"})


@dataclass
class Checked:
    """A validated graph ready to be lowered.

    flat: the graph with nested graphs inlined (dotted names).
    back: edges that close a cycle (they carry the previous step).
    in_shapes / out_shapes: per-sample shapes (no time, no batch) of each node.
    params: normalised float64 parameters per node (neuron fields broadcast-ready arrays,
        ``weight``/``bias`` arrays, and integer tuples for convolution and pooling geometry).
    units: the schedule (single nodes and cycles stepped together).
    """

    graph: nir.NIRGraph
    flat: FlatGraph
    back: set[tuple[str, str]]
    in_shapes: dict[str, Shape]
    out_shapes: dict[str, Shape]
    params: dict[str, dict[str, Any]]
    units: list[Unit]

    @property
    def input_shapes(self) -> dict[str, Shape]:
        return {n: self.out_shapes[n] for n in self.flat.inputs}

    @property
    def output_shapes(self) -> dict[str, Shape]:
        return {n: self.out_shapes[n] for n in self.flat.outputs}


def _array(name: str, field: str, value: Any, *, allow_none: bool = False) -> np.ndarray:
    if value is None:
        if allow_none:
            return np.asarray(np.nan)
        raise ValidationError("is missing", node=name, field=field)
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a user error
        raise ValidationError(f"cannot be read as an array ({exc})", node=name,
                              field=field) from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == np.bool_):
        raise ValidationError(f"must be numeric, got dtype {arr.dtype}", node=name, field=field)
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValidationError("must be real, got complex values", node=name, field=field)
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise ValidationError(f"contains {bad}", node=name, field=field)
    return arr


def _ints(name: str, field: str, value: Any, n: int, *, minimum: int) -> tuple[int, ...]:
    arr = _array(name, field, value)
    if arr.ndim == 0 or arr.size == 1:
        arr = np.full(n, arr.reshape(-1)[0] if arr.size else np.nan)
    if arr.shape != (n,):
        raise ValidationError(f"must be an int or {n} ints, got shape {arr.shape}", node=name,
                              field=field)
    if not np.all(arr == np.round(arr)) or np.any(arr < minimum):
        raise ValidationError(f"must be integers >= {minimum}, got {brief(arr)}", node=name,
                              field=field)
    return tuple(int(v) for v in arr)


def _shape(name: str, field: str, value: Any) -> Shape:
    arr = _array(name, field, value)
    if arr.ndim > 1 or np.any(arr < 1) or not np.all(arr == np.round(arr)):
        raise ValidationError(f"must be a list of positive integers, got {brief(arr)}",
                              node=name, field=field)
    return tuple(int(v) for v in arr.reshape(-1))


def _type_shape(name: str, node: nir.NIRNode, attr: str, key: str) -> Any:
    types = getattr(node, attr, None)
    if not isinstance(types, dict) or not types:
        return None
    return types.get(key, next(iter(types.values())))


def _padding(name: str, value: Any, n: int) -> str | tuple[int, ...]:
    if isinstance(value, bytes):
        value = value.decode("utf8")
    if isinstance(value, np.ndarray) and value.dtype.kind in "SUO":
        value = value.item()
        if isinstance(value, bytes):
            value = value.decode("utf8")
    if isinstance(value, str):
        if value not in ("same", "valid"):
            raise ValidationError(f"must be 'same', 'valid' or integers, got {value!r}",
                                  node=name, field="padding")
        return value
    return _ints(name, "padding", value, n, minimum=0)


def _conv_out(name: str, size: Shape, kernel: Shape, stride: tuple[int, ...],
              padding: tuple[int, ...], dilation: tuple[int, ...]) -> Shape:
    out = []
    for L, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True):
        o = (L + 2 * p - d * (k - 1) - 1) // s + 1
        if o < 1:
            raise ValidationError(
                f"kernel {tuple(kernel)} (dilation {tuple(dilation)}, padding {tuple(padding)}) "
                f"does not fit the input {tuple(size)}", node=name, field="weight")
        out.append(o)
    return tuple(out)


def _broadcast_ok(name: str, field: str, arr: np.ndarray, shape: Shape) -> None:
    if arr.size == 1:
        return
    try:
        result = np.broadcast_shapes(arr.shape, shape)
    except ValueError:
        result = None
    if result != shape:
        raise ValidationError(
            f"shape {arr.shape} does not match the node's input shape {shape}", node=name,
            field=field)


def _node_params(name: str, node: nir.NIRNode) -> dict[str, Any]:
    """Read and check the parameters that do not depend on the input shape."""
    p: dict[str, Any] = {}
    kind = type(node)
    if kind in NEURON_FIELDS:
        for field in NEURON_FIELDS[kind]:
            value = getattr(node, field, None)
            if value is None and field in DEFAULT_ZERO_FIELDS:
                value = 0.0
            if value is None and field in DEFAULT_ONE_FIELDS:
                value = 1.0
            arr = _array(name, field, value)
            if field in POSITIVE_FIELDS and np.any(arr <= 0):
                raise ValidationError(f"time constant must be > 0 seconds, got min "
                                      f"{arr.min():g}", node=name, field=field)
            if field in NONNEGATIVE_FIELDS and np.any(arr < 0):
                raise ValidationError(f"must be >= 0 seconds, got min {arr.min():g}", node=name,
                                      field=field)
            p[field] = arr
        shapes = [a.shape for a in p.values() if a.size != 1]
        try:
            p["_shape"] = tuple(np.broadcast_shapes(*shapes)) if shapes else None
        except ValueError:
            raise ValidationError(
                "parameters have shapes that do not broadcast together: "
                + ", ".join(f"{f}{a.shape}" for f, a in p.items()), node=name,
                field=NEURON_FIELDS[kind][0]) from None
    elif kind in (nir.Affine, nir.Linear):
        w = _array(name, "weight", getattr(node, "weight", None))
        if w.ndim != 2 or 0 in w.shape:
            raise ValidationError(f"must be a 2-D [out, in] matrix, got shape {w.shape}",
                                  node=name, field="weight")
        p["weight"] = w
        if kind is nir.Affine:
            b = _array(name, "bias", getattr(node, "bias", None))
            if b.size != 1 and b.shape != (w.shape[0],):
                raise ValidationError(f"must have shape ({w.shape[0]},), got {b.shape}",
                                      node=name, field="bias")
            p["bias"] = np.broadcast_to(b.reshape(-1), (w.shape[0],)).copy()
    elif kind in (nir.Conv1d, nir.Conv2d):
        nd = 1 if kind is nir.Conv1d else 2
        w = _array(name, "weight", getattr(node, "weight", None))
        if w.ndim != nd + 2 or 0 in w.shape:
            raise ValidationError(f"must have shape [C_out, C_in/groups, {'k' * nd}], got "
                                  f"{w.shape}", node=name, field="weight")
        groups = _ints(name, "groups", getattr(node, "groups", 1), 1, minimum=1)[0]
        if w.shape[0] % groups:
            raise ValidationError(f"C_out={w.shape[0]} is not divisible by groups={groups}",
                                  node=name, field="groups")
        bias = getattr(node, "bias", None)
        b = np.zeros(w.shape[0]) if bias is None else _array(name, "bias", bias)
        if b.size == 1:
            b = np.full(w.shape[0], b.reshape(-1)[0])
        if b.shape != (w.shape[0],):
            raise ValidationError(f"must have shape ({w.shape[0]},), got {b.shape}", node=name,
                                  field="bias")
        p.update(weight=w, bias=b, groups=groups,
                 stride=_ints(name, "stride", getattr(node, "stride", 1), nd, minimum=1),
                 dilation=_ints(name, "dilation", getattr(node, "dilation", 1), nd, minimum=1),
                 padding=_padding(name, getattr(node, "padding", 0), nd))
        if p["padding"] == "same" and any(s != 1 for s in p["stride"]):
            raise UnsupportedError("padding 'same' with a stride other than 1 is not defined",
                                   node=name, field="padding")
    elif kind in (nir.SumPool2d, nir.AvgPool2d):
        k = _ints(name, "kernel_size", getattr(node, "kernel_size", None), 2, minimum=1)
        stride_value = getattr(node, "stride", None)
        s = k if stride_value is None else _ints(name, "stride", stride_value, 2, minimum=1)
        pad = _ints(name, "padding", getattr(node, "padding", 0), 2, minimum=0)
        if any(2 * pp > kk for pp, kk in zip(pad, k, strict=True)):
            raise ValidationError(f"padding {pad} must be at most half the kernel {k}",
                                  node=name, field="padding")
        p.update(kernel_size=k, stride=s, padding=pad)
    elif kind is nir.Flatten:
        for field in ("start_dim", "end_dim"):
            arr = _array(name, field, getattr(node, field, None))
            if arr.size != 1 or arr.reshape(-1)[0] != round(float(arr.reshape(-1)[0])):
                raise ValidationError(f"must be one integer, got {brief(arr)}", node=name,
                                      field=field)
            p[field] = int(arr.reshape(-1)[0])
    return p


def _infer(name: str, node: nir.NIRNode, p: dict[str, Any], shape: Shape) -> Shape:
    """The output shape of ``node`` for per-sample input ``shape``."""
    kind = type(node)
    if kind in NEURON_FIELDS:
        for field in NEURON_FIELDS[kind]:
            _broadcast_ok(name, field, p[field], shape)
        return shape
    if kind in (nir.Affine, nir.Linear):
        w = p["weight"]
        if not shape or shape[-1] != w.shape[1]:
            raise ValidationError(
                f"weight expects {w.shape[1]} inputs in the last dimension, but the input has "
                f"shape {shape}", node=name, field="weight")
        return (*shape[:-1], w.shape[0])
    if kind in (nir.Conv1d, nir.Conv2d):
        nd = 1 if kind is nir.Conv1d else 2
        w = p["weight"]
        if len(shape) != nd + 1:
            dims = "L" if nd == 1 else "H, W"
            raise ValidationError(f"expects input [C, {dims}], got shape {shape}", node=name,
                                  field="input_shape")
        if shape[0] != w.shape[1] * p["groups"]:
            raise ValidationError(
                f"expects {w.shape[1] * p['groups']} input channels (C_in/groups={w.shape[1]}, "
                f"groups={p['groups']}), got {shape[0]}", node=name, field="weight")
        declared = getattr(node, "input_shape", None)
        if declared is not None:
            dec = _ints(name, "input_shape", declared, nd, minimum=1)
            if dec != shape[1:]:
                raise ValidationError(f"declares spatial input {dec} but receives {shape[1:]}",
                                      node=name, field="input_shape")
        kernel = tuple(w.shape[2:])
        pad = p["padding"]
        if pad == "same":
            return (w.shape[0], *shape[1:])
        pad_t = (0,) * nd if pad == "valid" else pad
        return (w.shape[0], *_conv_out(name, shape[1:], kernel, p["stride"], pad_t,
                                       p["dilation"]))
    if kind in (nir.SumPool2d, nir.AvgPool2d):
        if len(shape) != 3:
            raise ValidationError(f"expects input [C, H, W], got shape {shape}", node=name,
                                  field="kernel_size")
        return (shape[0], *_conv_out(name, shape[1:], p["kernel_size"], p["stride"],
                                     p["padding"], (1, 1)))
    if kind is nir.Flatten:
        nd = len(shape)
        start, end = p["start_dim"], p["end_dim"]
        s = start + nd if start < 0 else start
        e = end + nd if end < 0 else end
        if not (0 <= s <= e < nd):
            raise ValidationError(
                f"start_dim={start}, end_dim={end} do not index the per-sample input shape "
                f"{shape} (dimensions exclude time and batch)", node=name, field="start_dim")
        declared = _type_shape(name, node, "input_type", "input")
        if declared is not None and _shape(name, "input_type", declared) != shape:
            raise ValidationError(f"declares input {brief(declared)} but "
                                  f"receives {shape}", node=name, field="input_type")
        return (*shape[:s], math.prod(shape[s:e + 1]), *shape[e + 1:])
    if kind is nir.Output:
        declared = _type_shape(name, node, "output_type", "output")
        if declared is not None and _shape(name, "output_type", declared) != shape:
            raise ValidationError(f"declares shape {_shape(name, 'output_type', declared)} but "
                                  f"receives {shape}", node=name, field="output_type")
        return shape
    return shape  # Identity, nested Input


def _check_node_semantics(graph: nir.NIRGraph) -> None:
    """Refuse a node-level semantics key (``reset_delay`` in a node's own metadata) whose value
    is not one of its choices, or does not combine with the graph's keys (one NIRError naming
    the node and the key; ``nrf_nir.semantics.read_node_semantics``). The graph's own keys are
    read by whoever runs it; unreadable here, the node values are checked alone."""
    try:
        base = read_semantics(graph)
    except NIRError:
        base = Semantics(reset="subtract")  # checks the values, not their combination
    read_node_semantics(graph, base)


def validate(graph: nir.NIRGraph, *, max_elements: int | None = None) -> Checked:
    """Check ``graph`` and infer every node's shapes; raise a :class:`ValidationError`
    naming the node and field of the first problem found."""
    if not isinstance(graph, nir.NIRGraph):
        raise ValidationError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    limit = DEFAULT_MAX_ELEMENTS if max_elements is None else max_elements
    flat = flatten(graph)
    for name, node in flat.nodes.items():
        if not isinstance(node, NODE_TYPES):
            raise ValidationError(
                f"unsupported node type {type(node).__name__}; known: "
                + ", ".join(t.__name__ for t in NODE_TYPES), node=name, field="type")
    _check_node_semantics(graph)
    if not flat.inputs:
        raise ValidationError("the graph has no Input node", field="nodes")
    if not flat.outputs:
        raise ValidationError("the graph has no Output node", field="nodes")
    for name in flat.nodes:
        node = flat.nodes[name]
        top_input = name in flat.inputs
        if top_input and flat.preds[name]:
            raise ValidationError("an Input node cannot receive edges", node=name, field="edges")
        if not top_input and not flat.preds[name]:
            raise ValidationError("has no incoming edge", node=name, field="edges")
        if name in flat.outputs and flat.succs[name]:
            raise ValidationError("an Output node cannot send edges", node=name, field="edges")
    back = back_edges(flat)
    check_cycles_have_state(flat)
    units = schedule(flat, back)
    params = {name: _node_params(name, node) for name, node in flat.nodes.items()}
    in_shapes: dict[str, Shape] = {}
    out_shapes: dict[str, Shape] = {}
    for name in flat.inputs:
        declared = _type_shape(name, flat.nodes[name], "input_type", "input")
        if declared is None:
            raise ValidationError("has no shape", node=name, field="shape")
        shape = _shape(name, "shape", declared)
        in_shapes[name] = out_shapes[name] = shape
    order = [n for unit in units for n in unit.members]
    for name in order:
        if name in out_shapes:
            continue
        shapes = [(src, out_shapes[src]) for src in flat.preds[name] if src in out_shapes]
        if not shapes:  # reached only through a back edge: impossible after back_edges()
            raise ValidationError("receives input only through a recurrent edge", node=name,
                                  field="edges")
        first_src, shape = shapes[0]
        for src, other in shapes[1:]:
            if other != shape:
                raise ValidationError(
                    f"incoming edges disagree on shape: {first_src!r} sends {shape}, {src!r} "
                    f"sends {other}", node=name, field="edges")
        in_shapes[name] = shape
        out = _infer(name, flat.nodes[name], params[name], shape)
        if math.prod(out) > limit:
            raise ValidationError(
                f"output shape {out} has {math.prod(out):,} elements per sample, over the limit "
                f"of {limit:,} (raise it with max_elements or NRF_NIR_MAX_ELEMENTS)", node=name,
                field="shape")
        out_shapes[name] = out
    for src, dst in back:
        if out_shapes[src] != in_shapes[dst]:
            raise ValidationError(
                f"recurrent edge from {src!r} sends {out_shapes[src]} but the node receives "
                f"{in_shapes[dst]}", node=dst, field="edges")
    dt = _stated_dt(graph)
    if dt is not None:  # a Delay's buffer at the file's own dt (a run re-checks at its dt)
        for name, node in flat.nodes.items():
            if isinstance(node, nir.Delay):
                check_delay(name, params[name]["delay"], dt, math.prod(in_shapes[name]), limit)
    return Checked(graph, flat, back, in_shapes, out_shapes, params, units)


# ------------------------------------------------------------ numbers that must run

#: Forward Euler multiplies a state by ``1 - dt/tau`` per step: above 2 it grows without bound.
EULER_MAX_DECAY = 2.0

#: The time constants of the leaky nodes (their Euler decay factor is ``dt/tau``).
TAU_FIELDS: dict[type, tuple[str, ...]] = {
    nir.LI: ("tau",), nir.LIF: ("tau",), nir.CubaLI: ("tau_mem", "tau_syn"),
    nir.CubaLIF: ("tau_mem", "tau_syn"),
}


def _stated_dt(graph: nir.NIRGraph) -> float | None:
    """The graph's metadata dt in seconds; None when absent or unreadable (reported later)."""
    try:
        return read_semantics(graph).dt
    except NIRError:
        return None


def check_delay(name: str, delay: np.ndarray, dt: float, neurons: int, limit: int) -> None:
    """Refuse a Delay (seconds) whose buffer at ``dt`` (seconds), ``round(delay/dt)`` steps x
    ``neurons`` elements per sample, is over ``limit`` elements or not a finite number."""
    longest_s = float(np.max(delay)) if delay.size else 0.0
    with np.errstate(all="ignore"):
        steps = float(np.round(np.float64(longest_s) / dt))
    if not math.isfinite(steps):
        raise ValidationError(f"a delay of {longest_s:g} s at dt = {dt:g} s is not a finite "
                              "number of steps", node=name, field="delay")
    elements = steps * max(neurons, 1)
    if elements > limit:
        raise ValidationError(
            f"a delay of {longest_s:g} s at dt = {dt:g} s is {steps:.4g} steps: its buffer of "
            f"{elements:.4g} elements per sample (steps x {neurons:,} neurons) is over the limit "
            f"of {limit:,} (raise it with max_elements or NRF_NIR_MAX_ELEMENTS)", node=name,
            field="delay")


def _fits(name: str, field: str, values: np.ndarray, dtype: np.dtype, what: str) -> None:
    """Refuse ``values`` (float64) that are not finite once cast to ``dtype``."""
    big = float(np.finfo(dtype).max)
    if values.size == 0 or (-big <= float(np.min(values)) and float(np.max(values)) <= big):
        return  # in range: the cast is finite (the common case, no copy)
    with np.errstate(all="ignore"):
        finite = np.isfinite(np.asarray(values, dtype=np.float64).astype(dtype))
    if finite.all():
        return  # rounds to the largest finite value
    worst = float(np.asarray(values, dtype=np.float64).reshape(-1)[int(np.argmin(finite))])
    hint = "; run in float64 (--dtype float64)" if dtype != np.float64 else ""
    raise ValidationError(f"{what} {worst:g} is not finite in {dtype.name} (largest "
                          f"{big:.4g}){hint}", node=name, field=field)


class UnstableWarning(RuntimeWarning):
    """Forward Euler at dt/tau > 2: a state without reset oscillates with growing amplitude."""


def check_node_numerics(name: str, node: nir.NIRNode, p: dict[str, Any], semantics: Semantics,
                        dtype: Any = np.float32, *, unstable: str = "raise") -> None:
    """Refuse what cannot run in ``dtype`` (float32 or float64): parameters that are not finite
    once cast, and the coefficients the simulators derive from them (docs/semantics.md) at
    ``semantics.dt`` seconds: ``dt*r`` (I, IF), the Euler decay factor ``dt*(1/tau)`` (finite
    and, unless ``unstable`` is "warn" (an :class:`UnstableWarning` then), at most 2, else a
    state without reset diverges; exponential integration's ``exp(-dt/tau)`` is in [0, 1] for
    every tau > 0) and, with subtract reset, ``v_threshold - v_reset``."""
    dtype = np.dtype(dtype)
    for field, value in p.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and field != "delay":
            _fits(name, field, value, dtype, "value")
    dt = semantics.dt
    if dt is None:
        return
    kind = type(node)
    if kind in (nir.I, nir.IF):
        with np.errstate(all="ignore"):
            gain = dt * p["r"]
        _fits(name, "r", gain, dtype, f"the input gain dt*r at dt = {dt:g} s is")
    if semantics.integration == "euler":
        for field in TAU_FIELDS.get(kind, ()):
            tau = p[field]
            with np.errstate(all="ignore"):  # as the reference: 1/tau in float64, cast, times dt
                decay = dt * (1.0 / tau).astype(dtype)
            where = f"at dt = {dt:g} s ({field} min {float(tau.min()):g} s)"
            if not np.all(np.isfinite(decay)):
                raise ValidationError(f"the decay factor dt/{field} overflows {dtype.name} "
                                      f"{where}", node=name, field=field)
            if float(decay.max()) > EULER_MAX_DECAY:
                error = ValidationError(
                    f"forward Euler is unstable: the decay factor dt/{field} = "
                    f"{float(decay.max()):.4g} > {EULER_MAX_DECAY:g} {where}; use a smaller dt "
                    "or integration 'exponential'", node=name, field=field)
                if unstable != "warn":
                    raise error
                warnings.warn(str(error), UnstableWarning, stacklevel=4)
    if kind in (nir.IF, nir.LIF, nir.CubaLIF) and semantics.reset == "subtract":
        with np.errstate(all="ignore"):
            step = p["v_threshold"].astype(dtype) - p["v_reset"].astype(dtype)
        if not np.all(np.isfinite(step)):
            raise ValidationError(f"the subtract reset v_threshold - v_reset overflows "
                                  f"{dtype.name}", node=name, field="v_threshold")


def check_numerics(checked: Checked, semantics: Semantics, dtype: Any = np.float32,
                   max_elements: int | None = None, *, strict: bool = False) -> None:
    """Refuse a validated graph that cannot run at ``semantics.dt`` (seconds) in ``dtype``:
    :func:`check_node_numerics` on every node, and Delay buffers over ``max_elements``
    elements per sample (default ``DEFAULT_MAX_ELEMENTS``). Called before any target lowers.
    An Euler-unstable decay (dt/tau > 2) warns, or is refused when ``strict``: with a reset a
    spiking neuron stays bounded, and other simulators run such graphs too."""
    dt = semantics.require_dt()
    limit = DEFAULT_MAX_ELEMENTS if max_elements is None else max_elements
    for name, node in checked.flat.nodes.items():
        p = checked.params[name]
        if isinstance(node, nir.Delay):
            check_delay(name, p["delay"], dt, math.prod(checked.in_shapes[name]), limit)
        check_node_numerics(name, node, p, semantics, dtype,
                            unstable="raise" if strict else "warn")


def check_values(graph: nir.NIRGraph, semantics: Semantics | None = None) -> None:
    """Check every known node's parameters without shapes or structure (numeric, finite,
    time constants > 0, delays >= 0) and, when ``semantics`` states a dt, that their float64
    derived coefficients are sane (:func:`check_node_numerics`). Dialects call it before and
    after rescaling a foreign file."""

    def visit(prefix: str, g: nir.NIRGraph) -> None:
        for key, node in g.nodes.items():
            name = f"{prefix}{key}"
            if isinstance(node, nir.NIRGraph):
                visit(f"{name}.", node)
            elif isinstance(node, NODE_TYPES):
                p = _node_params(name, node)
                if semantics is not None:
                    check_node_numerics(name, node, p, semantics, np.float64)

    visit("", graph)


# ------------------------------------------------------------ dt lint

class DtLintWarning(UserWarning):
    """Input spikes enter a neuron without a synaptic current (LIF, IF, LI fed from an Input
    through weights only), so the effect of one spike on the membrane scales with dt."""


#: Stateless nodes a spike passes through on its way from an Input to a neuron.
_LINT_WEIGHTS = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d, nir.Scale)
_LINT_PASS = (nir.Flatten, nir.SumPool2d, nir.AvgPool2d, nir.Input, nir.Output)
#: Neurons whose membrane takes the input directly (no synaptic current).
_LINT_NEURONS = (nir.LIF, nir.IF, nir.LI)
#: dt used for the example numbers when the graph states none (seconds).
LINT_EXAMPLE_DT = 1e-3


def _spike_peak(node: nir.NIRNode, p: dict[str, Any], weight: float, dt: float,
                integration: str) -> float:
    """Largest membrane jump (in the graph's voltage unit) of one unit input spike through
    ``weight`` at ``dt`` seconds: ``dt*r*w`` (IF), ``dt/tau*r*w`` (Euler) or
    ``(1 - exp(-dt/tau))*r*w`` (exponential)."""
    r = np.abs(p["r"])
    if isinstance(node, nir.IF):
        gain = dt * r
    else:
        with np.errstate(all="ignore"):
            gain = dt / p["tau"] if integration == "euler" else -np.expm1(-dt / p["tau"])
        gain = gain * r
    return float(np.max(gain)) * weight


def _fed_from_input(checked: Checked, name: str) -> tuple[str, float] | None:
    """(Input name, product of the largest |weight| on the way) when an Input reaches neuron
    ``name`` through stateless weight and reshaping nodes only (forward edges), else None."""
    flat = checked.flat
    stack: list[tuple[str, float]] = [(name, 1.0)]
    seen = {name}
    while stack:
        current, gain = stack.pop()
        for src in flat.preds[current]:
            if (src, current) in checked.back or src in seen:
                continue
            seen.add(src)
            node = flat.nodes[src]
            if src in flat.inputs:
                return src, gain
            if isinstance(node, _LINT_WEIGHTS):
                weights = checked.params[src].get("weight", checked.params[src].get("scale"))
                w = float(np.max(np.abs(weights))) if isinstance(weights, np.ndarray) and \
                    weights.size else 1.0
                stack.append((src, gain * w))
            elif isinstance(node, (*_LINT_PASS, Identity)):
                stack.append((src, gain))
    return None


def dt_lint(checked: Checked, dt: float | None = None) -> list[tuple[str, str]]:
    """(neuron node, message) for each LIF/IF/LI that input spikes reach without a synaptic
    current: one unit spike moves its membrane by an amount proportional to dt, given in the
    message at ``dt`` (seconds; default the graph's, else an example at 1e-3 and 1e-4 s)."""
    try:
        sem = read_semantics(checked.graph).with_dt(dt)
    except NIRError:
        return []
    found: list[tuple[str, str]] = []
    for name in (n for unit in checked.units for n in unit.members):
        node = checked.flat.nodes[name]
        if not isinstance(node, _LINT_NEURONS) or name in checked.flat.inputs:
            continue
        source = _fed_from_input(checked, name)
        if source is None:
            continue
        src, weight = source
        p = checked.params[name]
        step = sem.dt if sem.dt is not None else LINT_EXAMPLE_DT
        now = _spike_peak(node, p, weight, step, sem.integration)
        finer = _spike_peak(node, p, weight, step / 10, sem.integration)
        at = f"at dt = {step:g} s" if sem.dt is not None else \
            f"at dt = {step:g} s (the graph states no dt)"
        found.append((name, (
            f"node {name!r} ({type(node).__name__}) takes spikes from Input {src!r} without a "
            f"synaptic current: one unit spike moves its membrane by up to {now:.3g} {at}, "
            f"{finer:.3g} at dt = {step / 10:g} s; the effect of an input spike scales with dt "
            "(a CubaLIF's synaptic current, or weights scaled for this dt, make it not)")))
    return found


def lint_dt(checked: Checked, dt: float | None = None) -> list[tuple[str, str]]:
    """:func:`dt_lint`, each finding also warned as one :class:`DtLintWarning` (one per
    neuron node)."""
    found = dt_lint(checked, dt)
    for _, message in found:
        warnings.warn(message, DtLintWarning, stacklevel=3)
    return found
