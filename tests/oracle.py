"""Independent plain-numpy (float64) oracle for the discrete-time semantics of NIR graphs.

This module re-implements ``docs/semantics.md`` / ``docs/contract.md`` without importing
anything from ``nrf_nir`` and without torch.  It steps one time step at a time with plain numpy
operations in the arithmetic order written in the contract, so that a float64 torch
implementation following the same contract agrees bit for bit (matrix products and
convolutions are sums whose order is not specified: tests that require bit-exactness feed
them values whose products and sums are exact, e.g. small dyadic numbers and spikes).

Public entry point: :func:`oracle_run`.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

__all__ = ["oracle_run", "flatten_graph", "find_back_edges"]

#: How a CubaLI/CubaLIF node with several incoming edges takes its current jump.
#: "per_edge" (docs/contract.md, docs/semantics.md; Norse's LIFRecurrentCell grouping
#: ``(i + W_in x) + W_rec z``): ``i = i + w_in * x_e`` once per incoming edge, in edge order.
#: "sum" (the first draft of the contract): the edges are summed first, then one jump.
CUBA_JUMP_DEFAULT = "per_edge"

_DEFAULTS = {
    "reset": "value",
    "threshold": "gt",
    "integration": "euler",
    "initial_state": "leak",
}


# --------------------------------------------------------------------------------------------
# Graph flattening (nested graphs -> one flat graph with dotted names)
# --------------------------------------------------------------------------------------------


def _is_identity(node: Any) -> bool:
    return type(node).__name__ == "Identity"


def _only(kind: str, graph: nir.NIRGraph, gname: str) -> str:
    cls = nir.Input if kind == "input" else nir.Output
    names = [k for k, n in graph.nodes.items() if isinstance(n, cls)]
    if len(names) != 1:
        raise ValueError(
            f"subgraph {gname!r} has {len(names)} {kind} nodes; "
            f"an edge must name one explicitly ({gname!r}.<name>)"
        )
    return names[0]


def _resolve(graph: nir.NIRGraph, name: str, prefix: str, as_dst: bool) -> str:
    """Resolve an edge endpoint ``name`` inside ``graph`` (whose flat prefix is ``prefix``)."""
    if name in graph.nodes:
        node = graph.nodes[name]
        if isinstance(node, nir.NIRGraph):
            inner = _only("input" if as_dst else "output", node, name)
            return _resolve(node, inner, prefix + name + ".", as_dst)
        return prefix + name
    # dotted form "g.rest": the longest known prefix that is a subgraph
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head in graph.nodes and isinstance(graph.nodes[head], nir.NIRGraph):
            rest = ".".join(parts[cut:])
            return _resolve(graph.nodes[head], rest, prefix + head + ".", as_dst)
    raise ValueError(f"edge endpoint {prefix + name!r} names no node")


def flatten_graph(graph: nir.NIRGraph):
    """Return ``(nodes, edges, top_inputs, top_outputs)`` of the flat graph.

    ``nodes`` is an insertion-ordered dict ``flat_name -> (node, role)`` where role is one of
    ``"input"`` (top-level Input), ``"output"`` (top-level Output), ``"pass"`` (a nested
    Input/Output, or Identity: passes its summed input through) or ``"op"``.
    ``edges`` lists ``(src, dst)`` flat names; each level keeps its own list order (top level
    first, then nested levels in node order).
    """
    nodes: dict[str, tuple[Any, str]] = {}
    edges: list[tuple[str, str]] = []

    def walk(g: nir.NIRGraph, prefix: str, top: bool):
        subs = []
        for name, node in g.nodes.items():
            flat = prefix + name
            if isinstance(node, nir.NIRGraph):
                subs.append((node, flat + "."))
                continue
            if isinstance(node, nir.Input):
                role = "input" if top else "pass"
            elif isinstance(node, nir.Output):
                role = "output" if top else "pass"
            elif _is_identity(node):
                role = "pass"
            else:
                role = "op"
            nodes[flat] = (node, role)
        for src, dst in g.edges:
            edges.append(
                (_resolve(g, src, prefix, as_dst=False), _resolve(g, dst, prefix, as_dst=True))
            )
        for sub, p in subs:
            walk(sub, p, False)

    walk(graph, "", True)
    top_inputs = [k for k, (n, r) in nodes.items() if r == "input"]
    top_outputs = [k for k, (n, r) in nodes.items() if r == "output"]
    return nodes, edges, top_inputs, top_outputs


def find_back_edges(nodes, edges, top_inputs) -> set[int]:
    """Indices (into ``edges``) of back edges: DFS from the top-level Input nodes in node order,
    following each node's outgoing edges in list order; an edge to a node on the current DFS
    path closes a cycle.  Nodes not reached from an Input are then explored in node order."""
    succ: dict[str, list[int]] = {k: [] for k in nodes}
    for idx, (s, _d) in enumerate(edges):
        succ[s].append(idx)
    WHITE, GRAY, BLACK = 0, 1, 2
    color = {k: WHITE for k in nodes}
    back: set[int] = set()

    def dfs(root: str):
        # iterative DFS that mirrors the recursive one exactly
        color[root] = GRAY
        stack = [(root, iter(succ[root]))]
        while stack:
            u, it = stack[-1]
            for idx in it:
                v = edges[idx][1]
                if color[v] == GRAY:
                    back.add(idx)
                elif color[v] == WHITE:
                    color[v] = GRAY
                    stack.append((v, iter(succ[v])))
                    break
            else:
                color[u] = BLACK
                stack.pop()

    for r in top_inputs:
        if color[r] == WHITE:
            dfs(r)
    for r in nodes:
        if color[r] == WHITE:
            dfs(r)
    return back


def _topo_order(nodes, edges, back) -> list[str]:
    indeg = {k: 0 for k in nodes}
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    for idx, (s, d) in enumerate(edges):
        if idx in back:
            continue
        indeg[d] += 1
        succ[s].append(d)
    order: list[str] = []
    ready = [k for k in nodes if indeg[k] == 0]
    while ready:
        u = ready.pop(0)
        order.append(u)
        for v in succ[u]:
            indeg[v] -= 1
            if indeg[v] == 0:
                ready.append(v)
    if len(order) != len(nodes):  # pragma: no cover - cannot happen after back-edge removal
        raise ValueError("graph still has a cycle after removing back edges")
    return order


# --------------------------------------------------------------------------------------------
# Helpers for the stateless operators (written with numpy only)
# --------------------------------------------------------------------------------------------


def _p(a) -> np.ndarray:
    """A parameter as float64; size-1 arrays become 0-d so that they broadcast."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 1:
        a = a.reshape(())
    return a


def _tuple(v, n: int) -> tuple[int, ...]:
    a = np.atleast_1d(np.asarray(v)).astype(np.int64).ravel()
    if a.size == 1:
        a = np.repeat(a, n)
    if a.size != n:
        raise ValueError(f"expected {n} values, got {v!r}")
    return tuple(int(x) for x in a)


def _conv(x: np.ndarray, node) -> np.ndarray:
    """N-d cross-correlation (torch.nn.ConvNd semantics) of x [B, C_in, *S]."""
    w = np.asarray(node.weight, dtype=np.float64)
    nd = w.ndim - 2
    stride = _tuple(node.stride, nd)
    dilation = _tuple(node.dilation, nd)
    ksz = w.shape[2:]
    if isinstance(node.padding, str):
        if node.padding == "valid":
            pads = [(0, 0)] * nd
        elif node.padding == "same":
            pads = []
            for k, d in zip(ksz, dilation, strict=True):
                total = d * (k - 1)
                left = total // 2
                pads.append((left, total - left))
        else:
            raise ValueError(f"bad padding {node.padding!r}")
    else:
        pads = [(p, p) for p in _tuple(node.padding, nd)]
    groups = int(node.groups)
    B, C_in = x.shape[:2]
    C_out = w.shape[0]
    cin_g = C_in // groups
    cout_g = C_out // groups
    if w.shape[1] != cin_g:
        raise ValueError("conv weight does not match the input channels / groups")
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    spatial = xp.shape[2:]
    out_sz = [
        (spatial[i] - dilation[i] * (ksz[i] - 1) - 1) // stride[i] + 1 for i in range(nd)
    ]
    out = np.zeros((B, C_out, *out_sz), dtype=np.float64)
    for g in range(groups):
        xs_g = xp[:, g * cin_g : (g + 1) * cin_g]
        w_g = w[g * cout_g : (g + 1) * cout_g]
        for kidx in np.ndindex(*ksz):
            sl = tuple(
                slice(
                    kidx[i] * dilation[i],
                    kidx[i] * dilation[i] + stride[i] * (out_sz[i] - 1) + 1,
                    stride[i],
                )
                for i in range(nd)
            )
            patch = xs_g[(slice(None), slice(None)) + sl]  # [B, cin_g, *out_sz]
            wk = w_g[(slice(None), slice(None)) + kidx]  # [cout_g, cin_g]
            out[:, g * cout_g : (g + 1) * cout_g] += np.einsum("oc,bc...->bo...", wk, patch)
    bias = getattr(node, "bias", None)
    if bias is not None:
        b = np.asarray(bias, dtype=np.float64)
        if b.size == 1:
            out = out + b.reshape(())
        else:
            out = out + b.reshape((C_out,) + (1,) * nd)
    return out


def _pool2d(x: np.ndarray, node, average: bool) -> np.ndarray:
    k = _tuple(node.kernel_size, 2)
    s = _tuple(node.stride, 2)
    p = _tuple(node.padding, 2)
    xp = np.pad(x, [(0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])])
    H, W = xp.shape[2:]
    oh = (H - k[0]) // s[0] + 1
    ow = (W - k[1]) // s[1] + 1
    out = np.zeros(x.shape[:2] + (oh, ow), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * s[0] : i * s[0] + k[0], j * s[1] : j * s[1] + k[1]]
            out[:, :, i, j] = win.sum(axis=(2, 3))
    if average:
        out = out / float(k[0] * k[1])  # count_include_pad=True
    return out


def _flatten(x: np.ndarray, node) -> np.ndarray:
    shape = x.shape[1:]
    n = len(shape)
    if n == 0:
        return x.reshape(x.shape[0], 1)
    start = node.start_dim % n if node.start_dim < 0 else node.start_dim
    end = node.end_dim % n if node.end_dim < 0 else node.end_dim
    new = shape[:start] + (int(np.prod(shape[start : end + 1])),) + shape[end + 1 :]
    return x.reshape((x.shape[0],) + tuple(new))


def _matvec(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y[..., i] = sum_j w[i, j] * x[..., j] (weights may carry leading batch-free dims)."""
    if w.ndim == 2:
        return x @ w.T
    return np.matmul(w, x[..., None])[..., 0]


# --------------------------------------------------------------------------------------------
# Stateful node implementations
# --------------------------------------------------------------------------------------------


class _Neuron:
    """Per-node state and one-step update, in the contract's exact arithmetic order."""

    def __init__(self, node, dt: float, opts: dict[str, str]):
        self.node = node
        self.kind = type(node).__name__
        self.dt = float(dt)
        self.opts = opts
        self.v = None
        self.i = None
        n = node
        dt = self.dt
        expo = opts["integration"] == "exponential"
        self.expo = expo
        if self.kind in ("LI", "LIF"):
            tau = _p(n.tau)
            self.r, self.v_leak = _p(n.r), _p(n.v_leak)
            if expo:
                self.a = np.exp(-dt / tau)
                self.one_minus_a = 1.0 - self.a
            else:
                self.c = dt * (1.0 / tau)
        elif self.kind in ("CubaLI", "CubaLIF"):
            tau_m, tau_s = _p(n.tau_mem), _p(n.tau_syn)
            self.r, self.v_leak, self.w_in = _p(n.r), _p(n.v_leak), _p(n.w_in)
            if expo:
                self.a_m = np.exp(-dt / tau_m)
                self.one_minus_a_m = 1.0 - self.a_m
                self.a_s = np.exp(-dt / tau_s)
            else:
                self.c_m = dt * (1.0 / tau_m)
                self.c_s = dt * (1.0 / tau_s)
        elif self.kind in ("I", "IF"):
            self.r = _p(n.r)
            self.v_leak = np.float64(0.0)
            self.dtr = dt * self.r
        else:  # pragma: no cover
            raise TypeError(self.kind)
        if self.kind in ("LIF", "CubaLIF", "IF"):
            self.v_th = _p(n.v_threshold)
            vr = getattr(n, "v_reset", None)
            self.v_reset = _p(np.zeros_like(np.asarray(n.v_threshold)) if vr is None else vr)

    def _init(self, shape):
        if self.opts["initial_state"] == "zero":
            self.v = np.zeros(shape, dtype=np.float64)
        else:
            self.v = np.broadcast_to(self.v_leak, shape).astype(np.float64).copy()
        if self.kind in ("CubaLI", "CubaLIF"):
            self.i = np.zeros(shape, dtype=np.float64)

    def step(self, x: np.ndarray) -> np.ndarray:
        k = self.kind
        parts = x if isinstance(x, list) else [x]
        if self.v is None:
            shape = np.broadcast_shapes(*[p.shape for p in parts], *self._param_shapes())
            self._init(shape)
        if isinstance(x, list) and k not in ("CubaLI", "CubaLIF"):
            raise TypeError("only Cuba neurons take their inputs edge by edge")
        v = self.v
        if k in ("LI", "LIF"):
            if self.expo:
                v = self.a * v + self.one_minus_a * (self.v_leak + self.r * x)
            elif k == "LI":
                v = v + self.c * ((self.v_leak - v) + self.r * x)
            else:
                v = v + self.c * ((self.r * x + self.v_leak) - v)
        elif k in ("CubaLI", "CubaLIF"):
            i = self.i
            for xe in parts:  # one part: the summed input (contract); several: per edge
                i = i + self.w_in * xe
            if self.expo:
                v = self.a_m * v + self.one_minus_a_m * (self.v_leak + self.r * i)
                i = self.a_s * i
            else:
                v = v + self.c_m * ((self.v_leak - v) + self.r * i)
                i = i + (-self.c_s) * i
            self.i = i
        else:  # I, IF
            v = v + self.dtr * x
        if k in ("LIF", "CubaLIF", "IF"):
            if self.opts["threshold"] == "ge":
                z = v >= self.v_th
            else:
                z = v > self.v_th
            if self.opts["reset"] == "subtract":
                v = np.where(z, v - (self.v_th - self.v_reset), v)
            else:
                v = np.where(z, self.v_reset, v)
            self.v = v
            return z.astype(np.float64)
        self.v = v
        return v.copy()

    def _param_shapes(self):
        names = ["r", "v_leak", "c", "a", "c_m", "a_m", "w_in", "v_th", "v_reset"]
        return [np.shape(getattr(self, n)) for n in names if hasattr(self, n)]


class _Delay:
    def __init__(self, node, dt: float):
        d = np.asarray(node.delay, dtype=np.float64)
        self.steps = np.rint(d / float(dt)).astype(np.int64)
        if self.steps.size == 1:
            self.steps = self.steps.reshape(())
        if np.any(self.steps < 0):
            raise ValueError("negative delay")
        self.hist: list[np.ndarray] = []

    def step(self, x: np.ndarray) -> np.ndarray:
        self.hist.append(x.copy())
        t = len(self.hist) - 1  # 0-based index of the current step
        shape = np.broadcast_shapes(x.shape, self.steps.shape)
        ks = np.broadcast_to(self.steps, shape)
        y = np.zeros(shape, dtype=np.float64)
        for k in np.unique(ks):
            if t - k < 0:
                continue
            src = np.broadcast_to(self.hist[t - int(k)], shape)
            m = ks == k
            y[m] = src[m]
        return y


# --------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------


def _stateless(node, x: np.ndarray, opts) -> np.ndarray:
    if isinstance(node, nir.Affine):
        return _matvec(np.asarray(node.weight, np.float64), x) + np.asarray(node.bias, np.float64)
    if isinstance(node, nir.Linear):
        return _matvec(np.asarray(node.weight, np.float64), x)
    if isinstance(node, nir.Scale):
        return _p(node.scale) * x
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return _conv(x, node)
    if isinstance(node, nir.SumPool2d):
        return _pool2d(x, node, average=False)
    if isinstance(node, nir.AvgPool2d):
        return _pool2d(x, node, average=True)
    if isinstance(node, nir.Flatten):
        return _flatten(x, node)
    if isinstance(node, nir.Threshold):
        th = _p(node.threshold)
        z = (x >= th) if opts["threshold"] == "ge" else (x - th > 0)
        return z.astype(np.float64)
    raise TypeError(f"oracle: unsupported node type {type(node).__name__}")


def oracle_run(
    graph: nir.NIRGraph,
    inputs: dict[str, np.ndarray] | np.ndarray,
    dt: float | None = None,
    *,
    reset: str | None = None,
    threshold: str | None = None,
    integration: str | None = None,
    initial_state: str | None = None,
    record: tuple[str, ...] | list[str] = (),
    cuba_jump: str | None = None,
) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``inputs`` ([T, B, *shape] per Input node) in float64 numpy.

    Options left as ``None`` are taken from ``graph.metadata`` and otherwise default to
    reset="value", threshold="gt", integration="euler", initial_state="leak".  Returns each
    top-level Output node's ``[T, B, *shape]`` array, plus each name in ``record``: a flat
    (dotted) node name gives that node's output; ``"<node>.v"`` / ``"<node>.i"`` the state
    after the step (after reset).  ``cuba_jump`` ("sum" | "per_edge", default
    :data:`CUBA_JUMP_DEFAULT`) selects how a Cuba neuron with several incoming edges jumps.
    """
    cuba_jump = CUBA_JUMP_DEFAULT if cuba_jump is None else cuba_jump
    if cuba_jump not in ("sum", "per_edge"):
        raise ValueError(f"cuba_jump must be 'sum' or 'per_edge', not {cuba_jump!r}")
    meta = getattr(graph, "metadata", None) or {}
    opts = {}
    for key, val in (
        ("reset", reset),
        ("threshold", threshold),
        ("integration", integration),
        ("initial_state", initial_state),
    ):
        opts[key] = val if val is not None else meta.get(key, _DEFAULTS[key])
    if dt is None:
        dt = meta.get("dt")
        if dt is None:
            raise ValueError("dt missing")
    dt = float(dt)

    nodes, edges, top_inputs, top_outputs = flatten_graph(graph)
    if not isinstance(inputs, dict):
        if len(top_inputs) != 1:
            raise ValueError("a single array needs a graph with exactly one Input node")
        inputs = {top_inputs[0]: inputs}
    inputs = {k: np.asarray(v).astype(np.float64) for k, v in inputs.items()}
    if set(inputs) != set(top_inputs):
        raise ValueError(f"inputs {sorted(inputs)} do not match Input nodes {top_inputs}")
    T = {v.shape[0] for v in inputs.values()}
    if len(T) != 1:
        raise ValueError("inputs differ in length")
    T = T.pop()

    back = find_back_edges(nodes, edges, top_inputs)
    order = _topo_order(nodes, edges, back)
    incoming: dict[str, list[int]] = {k: [] for k in nodes}
    for idx, (_s, d) in enumerate(edges):
        incoming[d].append(idx)

    state: dict[str, Any] = {}
    for name, (node, _role) in nodes.items():
        kind = type(node).__name__
        if kind in ("LI", "LIF", "CubaLI", "CubaLIF", "I", "IF"):
            state[name] = _Neuron(node, dt, opts)
        elif kind == "Delay":
            state[name] = _Delay(node, dt)

    prev: dict[str, np.ndarray] = {}  # outputs of step t-1 (for back edges)
    results: dict[str, list[np.ndarray]] = {k: [] for k in top_outputs}
    rec: dict[str, list[np.ndarray]] = {k: [] for k in record}

    for t in range(T):
        cur: dict[str, np.ndarray] = {}
        for name in order:
            node, role = nodes[name]
            x = None
            parts = []
            for idx in incoming[name]:
                src = edges[idx][0]
                if idx in back:
                    val = prev.get(src)
                    if val is None:
                        continue  # zero at step 1
                else:
                    val = cur[src]
                x = val if x is None else x + val
                parts.append(val)
            if x is None and role != "input":
                # only back edges come in, and this is step 1: the node sees zeros
                x = _zero_input(node, inputs)
            if role == "input":
                y = inputs[name][t]
            elif role in ("output", "pass"):
                y = x
            elif name in state:
                per_edge = (cuba_jump == "per_edge" and len(parts) > 1
                            and type(node).__name__ in ("CubaLI", "CubaLIF"))
                y = state[name].step(parts if per_edge else x)
            else:
                y = _stateless(node, x, opts)
            cur[name] = y
        for k in top_outputs:
            results[k].append(cur[k])
        for k in record:
            if k in cur:
                rec[k].append(cur[k])
            else:
                base, _, field = k.rpartition(".")
                if base in state and field in ("v", "i"):
                    rec[k].append(np.array(getattr(state[base], field), copy=True))
                else:
                    raise KeyError(f"cannot record {k!r}")
        prev = cur

    out = {k: np.stack(v) for k, v in results.items()}
    for k, v in rec.items():
        out[k] = np.stack(v)
    return out


def _zero_input(node, inputs):
    """Zero input for a node whose only incoming edges are back edges, at step 1.

    The shape is the node's declared input type, with the batch size of the graph inputs."""
    B = next(iter(inputs.values())).shape[1]
    it = getattr(node, "input_type", None) or {}
    shp = it.get("input") if isinstance(it, dict) else None
    if shp is None:
        raise ValueError("cannot infer the shape of a node fed only by back edges")
    return np.zeros((B, *[int(s) for s in np.atleast_1d(shp)]), dtype=np.float64)
