"""Export live PyTorch / Norse modules to a NIR graph.

The exporter walks the module tree: containers (``nn.Sequential``, Norse ``SequentialState``,
``Lift``) become chains of nodes; each supported leaf maps to one NIR node (or, for a recurrent
cell, a nested graph). Shapes come from running each module on one time step of
``sample_input``. Anything without a NIR equivalent stops the export with one error that lists
every unsupported module by path and type.

A custom module can take part in two ways:

- ``to_nir_sequence(self) -> torch.nn.Module`` returns an equivalent chain (e.g. a
  ``SequentialState``) sharing its parameters; the chain is exported instead.
- ``to_nir_graph(self, sample, path) -> NIRFragment`` exports the module itself, typically as a
  nested ``nir.NIRGraph`` with named nodes and edges (a neuron with a recurrent adaptation path,
  say). ``sample`` is one time step ``[B, *shape]`` of the module's input, ``path`` the module's
  dotted path (for error messages); the fragment carries the node, the module's output on
  ``sample`` (the shapes downstream) and its ``dt`` and reset method when it holds neurons. A
  module that cannot be expressed raises a ``NIRError`` naming ``path`` and the field at fault.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import nir
import numpy as np
import torch
from torch import nn

from nrf_nir.errors import NIRError, UnsupportedError
from nrf_nir.semantics import Semantics, write_semantics

PRODUCER = "nrf-nir"


def _norse() -> Any:
    try:
        import norse.torch as snn
    except ImportError:  # pragma: no cover - norse is a dependency of the exporter
        return None
    return snn


def _np(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _param(value: Any, shape: tuple[int, ...], path: str, field_name: str) -> np.ndarray:
    """A neuron parameter as an array of the neuron shape (scalars are expanded; per-neuron
    arrays keep their values and dtype)."""
    arr = _np(value)
    if arr.dtype.kind not in "fiub":
        raise NIRError(f"must be numeric, got {arr.dtype}", node=path, field=field_name)
    arr = arr.astype(np.float64 if arr.dtype.kind != "f" else arr.dtype)
    try:
        return np.broadcast_to(arr, shape).copy()
    except ValueError:
        raise NIRError(f"shape {arr.shape} does not broadcast to the layer shape {shape}",
                       node=path, field=field_name) from None


def _inverse(value: Any, shape: tuple[int, ...], path: str, field_name: str) -> np.ndarray:
    """tau in seconds from Norse's tau_inv (1/s), computed in float64."""
    inv = _param(value, shape, path, field_name).astype(np.float64)
    if np.any(inv <= 0) or not np.all(np.isfinite(inv)):
        raise NIRError(f"must be finite and > 0 (1/seconds), got min {inv.min():g}", node=path,
                       field=field_name)
    return 1.0 / inv


@dataclass(frozen=True)
class NIRFragment:
    """What a custom module's ``to_nir_graph(sample, path)`` returns.

    node: one NIR node, or a nested ``nir.NIRGraph`` with one ``Input`` and one ``Output``
        (a cycle inside it is a recurrent connection, docs/semantics.md). It is added under the
        module's name; edges reach its ``Input`` and leave its ``Output``.
    output: the module's output for ``sample`` (one time step ``[B, ...]``).
    dt: the time step (seconds) the module integrates with; checked against the other cells'.
    reset: ``"value"`` or ``"subtract"`` when the module holds spiking neurons.
    """

    node: nir.NIRNode
    output: torch.Tensor
    dt: float | None = None
    reset: str | None = None


class NIRExportable(Protocol):
    """A module that exports itself (see the module docstring)."""

    def to_nir_graph(self, sample: torch.Tensor, path: str) -> NIRFragment: ...


class _Sequenced(Protocol):
    """A module that exports as an equivalent chain (see the module docstring)."""

    def to_nir_sequence(self) -> nn.Module: ...


@dataclass
class _Context:
    """Export state: collected nodes/edges, problems, and the semantics seen on cells."""

    nodes: dict[str, nir.NIRNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    dts: dict[str, float] = field(default_factory=dict)
    resets: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, node: nir.NIRNode, source: str) -> str:
        base, k = name, 1
        while name in self.nodes or name in ("input", "output"):
            name, k = f"{base}_{k}", k + 1
        self.nodes[name] = node
        self.edges.append((source, name))
        return name


def _node_name(path: str) -> str:
    return path.replace(".", "_") or "module"


# --------------------------------------------------------------------------------------------
# Leaf converters: (path, module, x) -> (nir node, y); x and y are one time step [B, ...].


def _linear(path: str, m: nn.Linear, x: torch.Tensor) -> tuple[nir.NIRNode, torch.Tensor]:
    w = _np(m.weight)
    node = nir.Linear(weight=w) if m.bias is None else nir.Affine(weight=w, bias=_np(m.bias))
    return node, m(x)


def _conv(path: str, m: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> tuple[nir.NIRNode,
                                                                          torch.Tensor]:
    if m.padding_mode != "zeros":
        raise UnsupportedError(f"padding_mode {m.padding_mode!r} has no NIR equivalent "
                               "(only zero padding)", node=path, field="padding_mode")
    bias = np.zeros(m.out_channels, dtype=_np(m.weight).dtype) if m.bias is None else _np(m.bias)
    cls = nir.Conv1d if isinstance(m, nn.Conv1d) else nir.Conv2d
    spatial = tuple(int(s) for s in x.shape[2:])
    padding = m.padding if isinstance(m.padding, str) else tuple(int(p) for p in m.padding)
    node = cls(input_shape=spatial[0] if cls is nir.Conv1d else spatial, weight=_np(m.weight),
               stride=tuple(m.stride), padding=padding, dilation=tuple(m.dilation),
               groups=int(m.groups), bias=bias)
    return node, m(x)


def _avgpool(path: str, m: nn.AvgPool2d, x: torch.Tensor) -> tuple[nir.NIRNode, torch.Tensor]:
    if m.ceil_mode or not m.count_include_pad or m.divisor_override is not None:
        raise UnsupportedError("only AvgPool2d(ceil_mode=False, count_include_pad=True, "
                               "divisor_override=None) has a NIR equivalent", node=path,
                               field="ceil_mode")

    def pair(v: Any) -> np.ndarray:
        return np.array([v, v] if isinstance(v, int) else list(v))

    stride = m.stride if m.stride is not None else m.kernel_size
    node = nir.AvgPool2d(kernel_size=pair(m.kernel_size), stride=pair(stride),
                         padding=pair(m.padding))
    return node, m(x)


def _flatten(path: str, m: nn.Flatten, x: torch.Tensor) -> tuple[nir.NIRNode, torch.Tensor]:
    nd = x.dim()
    start = m.start_dim + nd if m.start_dim < 0 else m.start_dim
    end = m.end_dim + nd if m.end_dim < 0 else m.end_dim
    if start < 1:
        raise UnsupportedError("Flatten over the batch dimension has no NIR equivalent "
                               "(start_dim must be >= 1)", node=path, field="start_dim")
    node = nir.Flatten(input_type={"input": np.array(x.shape[1:])}, start_dim=start - 1,
                       end_dim=end - 1)
    return node, m(x)


def _identity(path: str, m: nn.Module, x: torch.Tensor) -> tuple[None, torch.Tensor]:
    return None, x


LeafConverter = Callable[[str, Any, torch.Tensor], tuple[Any, torch.Tensor]]


class SampleShapeError(NIRError):
    """The sample_input does not fit the model's first layer (rank or size).

    layer: the layer's type name; layout: what it takes, e.g. ``[B, 12]``; shape: the
    sample's shape.
    """

    def __init__(self, layer: str, layout: str, shape: list[int], node: str) -> None:
        self.layer, self.layout, self.shape = layer, layout, shape
        super().__init__(f"{layer} takes one time step {layout}, got a sample_input of shape "
                         f"{shape} (pass one time step [B, *input_shape])", node=node,
                         field="sample_input")


def _takes(m: nn.Module) -> tuple[int, int | None, str] | None:
    """What a leaf takes as one time step: (rank with the batch dimension, the axis whose
    size it fixes or None, the layout as text, e.g. ``[B, 12]``); None for any input."""
    if isinstance(m, nn.Linear):
        return 2, 1, f"[B, {m.in_features}]"
    if isinstance(m, nn.Conv1d):
        return 3, 1, f"[B, {m.in_channels}, L]"
    if isinstance(m, nn.Conv2d):
        return 4, 1, f"[B, {m.in_channels}, H, W]"
    if isinstance(m, nn.AvgPool2d):
        return 4, None, "[B, C, H, W]"
    return None


def _check_takes(path: str, m: nn.Module, x: torch.Tensor, first: bool) -> None:
    """Refuse an input the leaf does not take: torch would apply a Linear over extra leading
    dimensions or read a Conv input as unbatched, and the export would be of another shape.
    first: ``x`` is the sample itself (the error then names the field ``sample_input``)."""
    takes = _takes(m)
    if takes is None:
        return
    rank, axis, layout = takes
    size = None if axis is None else (m.in_features if isinstance(m, nn.Linear)
                                      else cast(Any, m).in_channels)
    if x.dim() == rank and (axis is None or x.shape[axis] == size):
        return
    node = path or type(m).__name__
    if first:
        raise SampleShapeError(type(m).__name__, layout, list(x.shape), node)
    raise NIRError(f"{type(m).__name__} takes one time step {layout}, got shape "
                   f"{list(x.shape)} from the layer before", node=node, field="input")


@contextlib.contextmanager
def _running(path: str, m: nn.Module, x: torch.Tensor) -> Iterator[None]:
    """Turn the error of running ``m`` on ``x`` (torch's, or user code's) into a NIRError
    naming the module and the input shape."""
    try:
        yield
    except NIRError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NIRError(f"{type(m).__name__} fails on an input of shape {list(x.shape)}: "
                       f"{first[:300]}", node=path or type(m).__name__, field="input") from None


def _leaf_converters() -> dict[type, LeafConverter]:
    table: dict[type, LeafConverter] = {
        nn.Linear: _linear, nn.Conv1d: _conv, nn.Conv2d: _conv, nn.AvgPool2d: _avgpool,
        nn.Flatten: _flatten, nn.Identity: _identity, nn.Dropout: _identity,
    }
    return table


# --------------------------------------------------------------------------------------------
# Norse cells


def _reset_name(p: Any) -> str:
    method = getattr(p, "reset_method", None)
    if method is None:
        return "value"
    name = getattr(method, "__name__", "")
    if name == "reset_value":
        return "value"
    if name == "reset_subtract":
        return "subtract"
    raise UnsupportedError(f"reset method {name or method!r} has no NIR equivalent", field="p")


def _norse_cell(ctx: _Context, path: str, m: nn.Module, x: torch.Tensor,
                source: str) -> tuple[str, torch.Tensor] | None:
    """Export a Norse neuron module; None when ``m`` is not one."""
    snn = _norse()
    if snn is None:
        return None
    kinds = {
        "LIFBoxCell": "lifbox", "LIFCell": "cuba", "LIF": "cuba", "LICell": "cubali",
        "LI": "cubali", "LIBoxCell": "libox", "IAFCell": "iaf", "IAF": "iaf",
        "LIFRecurrentCell": "rec", "LIFRecurrent": "rec",
    }
    kind = None
    for name, k in kinds.items():
        cls = getattr(snn, name, None)
        if cls is not None and type(m) is cls:
            kind = k
            break
    if kind is None:
        return None
    cell: Any = m  # a Norse module: nn.Module types its attributes (p, dt, ...) as Tensor | Module
    p = cell.p
    dt = float(cell.dt)
    ctx.dts[path] = dt
    time_module = type(m).__name__ in ("LIF", "LI", "IAF", "LIFRecurrent")
    with torch.no_grad():
        if time_module:
            y, _ = m(x.unsqueeze(0))
            y = y[0]
        else:
            y, _ = m(x)
    shape = tuple(int(s) for s in y.shape[1:])
    name = _node_name(path)

    def prm(attr: str) -> np.ndarray:
        return _param(getattr(p, attr), shape, path, attr)

    if kind == "lifbox":
        ctx.resets[path] = _reset_name(p)
        node: nir.NIRNode = nir.LIF(tau=_inverse(p.tau_mem_inv, shape, path, "tau_mem_inv"),
                                    r=np.ones(shape), v_leak=prm("v_leak"),
                                    v_threshold=prm("v_th"), v_reset=prm("v_reset"))
    elif kind == "libox":
        node = nir.LI(tau=_inverse(p.tau_mem_inv, shape, path, "tau_mem_inv"),
                      r=np.ones(shape), v_leak=prm("v_leak"))
    elif kind == "cuba":
        ctx.resets[path] = "value"
        node = nir.CubaLIF(tau_syn=_inverse(p.tau_syn_inv, shape, path, "tau_syn_inv"),
                           tau_mem=_inverse(p.tau_mem_inv, shape, path, "tau_mem_inv"),
                           r=np.ones(shape), v_leak=prm("v_leak"), v_threshold=prm("v_th"),
                           v_reset=prm("v_reset"), w_in=np.ones(shape))
    elif kind == "cubali":
        node = nir.CubaLI(tau_syn=_inverse(p.tau_syn_inv, shape, path, "tau_syn_inv"),
                          tau_mem=_inverse(p.tau_mem_inv, shape, path, "tau_mem_inv"),
                          r=np.ones(shape), v_leak=prm("v_leak"), w_in=np.ones(shape))
    elif kind == "iaf":
        ctx.resets[path] = "value"
        v_reset = prm("v_reset")
        if np.any(v_reset != 0):
            raise UnsupportedError(
                "Norse IAF starts at v = v_reset; NIR IF starts at 0, so a non-zero v_reset "
                "cannot be exported faithfully", node=path, field="v_reset")
        node = nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=prm("v_th"), v_reset=v_reset)
    else:
        ctx.resets[path] = "value"
        hidden = shape[-1]
        w_in, w_rec = _np(m.input_weights), _np(m.recurrent_weights)
        sub = nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type=np.array(x.shape[1:])),
                "w_in": nir.Linear(weight=w_in),
                "lif": nir.CubaLIF(
                    tau_syn=_inverse(p.tau_syn_inv, shape, path, "tau_syn_inv"),
                    tau_mem=_inverse(p.tau_mem_inv, shape, path, "tau_mem_inv"),
                    r=np.ones(shape), v_leak=prm("v_leak"), v_threshold=prm("v_th"),
                    v_reset=prm("v_reset"), w_in=np.ones(shape)),
                "w_rec": nir.Linear(weight=w_rec),
                "output": nir.Output(output_type=np.array([hidden])),
            },
            # Edge order matters: Norse computes (i + W_in x) + W_rec z.
            edges=[("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                   ("lif", "output")],
            type_check=False)
        node = sub
    return ctx.add(name, node, source), y


# --------------------------------------------------------------------------------------------
# The walk


_CONTAINERS = (nn.Sequential,)


def _is_container(m: nn.Module) -> bool:
    snn = _norse()
    if isinstance(m, _CONTAINERS):
        return True
    return snn is not None and isinstance(m, getattr(snn, "SequentialState", ()))


def _is_lift(m: nn.Module) -> bool:
    snn = _norse()
    return snn is not None and type(m) is getattr(snn, "Lift", None)


def _survey(path: str, m: nn.Module, problems: list[str]) -> None:
    """List every module below ``m`` that cannot be exported (all of them, not the first)."""
    if _is_container(m):
        for name, child in m.named_children():
            _survey(f"{path}.{name}" if path else name, child, problems)
        return
    if _is_lift(m):
        _survey(f"{path}.lifted_module" if path else "lifted_module",
                cast(nn.Module, m.lifted_module), problems)
        return
    if hasattr(m, "to_nir_graph"):  # exports itself; its own errors name the field
        return
    if hasattr(m, "to_nir_sequence"):
        _survey(path, cast(_Sequenced, m).to_nir_sequence(), problems)
        return
    if type(m) in _leaf_converters():
        return
    snn = _norse()
    if snn is not None and any(type(m) is getattr(snn, n, None) for n in (
            "LIFBoxCell", "LIFCell", "LIF", "LICell", "LI", "LIBoxCell", "IAFCell", "IAF",
            "LIFRecurrentCell", "LIFRecurrent")):
        return
    children = list(m.named_children())
    label = path or "<root>"
    if children and not type(m).__module__.startswith("torch."):  # user code: look inside
        problems.append(f"{label} ({type(m).__name__}: custom forward code)")
        for name, child in children:
            _survey(f"{path}.{name}" if path else name, child, problems)
    else:
        problems.append(f"{label} ({type(m).__name__})")


def _walk(ctx: _Context, path: str, m: nn.Module, x: torch.Tensor,
          source: str) -> tuple[str, torch.Tensor]:
    if _is_container(m):
        for name, child in m.named_children():
            source, x = _walk(ctx, f"{path}.{name}" if path else name, child, x, source)
        return source, x
    if _is_lift(m):
        return _walk(ctx, path, cast(nn.Module, m.lifted_module), x, source)
    if hasattr(m, "to_nir_graph"):
        with _running(path, m, x):
            return _custom(ctx, path, m, x, source)
    if hasattr(m, "to_nir_sequence"):
        return _walk(ctx, path, cast(_Sequenced, m).to_nir_sequence(), x, source)
    converter = _leaf_converters().get(type(m))
    if converter is not None:
        _check_takes(path, m, x, first=source == "input")
        with torch.no_grad(), _running(path, m, x):
            node, y = converter(path, m, x)
        if node is None:
            return source, y
        return ctx.add(_node_name(path), node, source), y
    with _running(path, m, x):
        result = _norse_cell(ctx, path, m, x, source)
    if result is None:  # _survey already refused these; keep a safe fallback
        raise UnsupportedError(f"{type(m).__name__} has no NIR equivalent", node=path or None)
    return result


def _custom(ctx: _Context, path: str, m: nn.Module, x: torch.Tensor,
            source: str) -> tuple[str, torch.Tensor]:
    """A module that exports itself (``to_nir_graph``)."""
    with torch.no_grad():
        fragment: object = cast(NIRExportable, m).to_nir_graph(x, path)
    if not isinstance(fragment, NIRFragment):
        raise NIRError(f"{type(m).__name__}.to_nir_graph must return an NIRFragment, got "
                       f"{type(fragment).__name__}", node=path or None)
    if not isinstance(fragment.node, nir.NIRNode):
        raise NIRError(f"{type(m).__name__}.to_nir_graph returned a "
                       f"{type(fragment.node).__name__}, not a NIR node", node=path or None)
    if fragment.dt is not None:
        ctx.dts[path] = float(fragment.dt)
    if fragment.reset is not None:
        if fragment.reset not in ("value", "subtract"):
            raise NIRError(f"reset must be 'value' or 'subtract', got {fragment.reset!r}",
                           node=path or None, field="reset")
        ctx.resets[path] = fragment.reset
    return ctx.add(_node_name(path), fragment.node, source), fragment.output


def export(module: nn.Module, sample_input: Any, *, dt: float | None = None,
           producer: str = PRODUCER) -> nir.NIRGraph:
    """Export ``module`` to a NIR graph whose metadata fixes its discrete-time semantics.

    sample_input: one time step ``[B, *input_shape]`` (shapes are inferred by running it).
    dt: time step in seconds; by default the ``dt`` of the Norse cells (which must agree). A
        ``dt`` that differs from the cells' is refused: the cells' behaviour depends on it.
    """
    if not isinstance(module, nn.Module):
        raise NIRError(f"export expects a torch.nn.Module, got {type(module).__name__}")
    x = sample_input if isinstance(sample_input, torch.Tensor) else torch.as_tensor(
        np.asarray(sample_input))
    if x.dim() < 2:
        raise NIRError(f"sample_input must be one time step [B, *input_shape], got shape "
                       f"{list(x.shape)}", field="sample_input")
    x = x.to(torch.float32) if not x.is_floating_point() else x
    problems: list[str] = []
    _survey("", module, problems)
    if problems:
        raise UnsupportedError(f"{len(problems)} module(s) have no NIR equivalent: "
                               + "; ".join(problems), field="module")
    ctx = _Context()
    ctx.nodes["input"] = nir.Input(input_type=np.array(x.shape[1:]))
    was_training = module.training
    module.eval()
    try:
        last, y = _walk(ctx, "", module, x, "input")
    finally:
        module.train(was_training)
    ctx.nodes["output"] = nir.Output(output_type=np.array(y.shape[1:]))
    ctx.edges.append((last, "output"))

    dts = sorted(set(ctx.dts.values()))
    if len(dts) > 1:
        raise NIRError("the cells use different time steps: " + ", ".join(
            f"{p or '<root>'} dt={d:g}" for p, d in ctx.dts.items()), field="dt")
    if dt is not None and dts and not math.isclose(dt, dts[0], rel_tol=0, abs_tol=0):
        raise NIRError(f"dt={dt:g} s differs from the cells' dt={dts[0]:g} s; the cells "
                       "integrate with their own dt, so the export would not be faithful",
                       field="dt")
    resets = sorted(set(ctx.resets.values()))
    if len(resets) > 1:
        raise UnsupportedError("mixed reset methods in one model: " + ", ".join(
            f"{p} {r}" for p, r in ctx.resets.items()), field="reset")
    from nrf_nir import __version__

    snn = _norse()
    norse_version = getattr(snn, "__version__", None) if snn is not None else None
    if norse_version is None:
        try:
            from importlib.metadata import version

            norse_version = version("norse")
        except Exception:  # noqa: BLE001
            norse_version = "absent"
    graph = nir.NIRGraph(nodes=ctx.nodes, edges=ctx.edges, type_check=False)
    semantics = Semantics(dt=dt if dt is not None else (dts[0] if dts else None),
                          reset=resets[0] if resets else "value", producer=producer,
                          producer_version=f"{__version__} (norse {norse_version})")
    return write_semantics(graph, semantics)
