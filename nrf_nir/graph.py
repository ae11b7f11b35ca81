"""Graph structure: nested graphs flattened to dotted names, back edges, schedule.

Pure graph algorithms over node names; no numerics here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import nir

from .errors import ValidationError

#: Node types whose output at step t depends on earlier steps.
STATEFUL_TYPES: tuple[type, ...] = (nir.I, nir.IF, nir.LI, nir.LIF, nir.CubaLI, nir.CubaLIF,
                                    nir.Delay)


@dataclass
class FlatGraph:
    """A NIR graph with nested graphs inlined.

    nodes: dotted name -> node (nested ``Input``/``Output`` stay as pass-through nodes).
    edges: (source, destination) pairs, in file order, between names of ``nodes``.
    inputs / outputs: the top-level Input / Output node names, in node order.
    """

    nodes: dict[str, nir.NIRNode]
    edges: list[tuple[str, str]]
    inputs: list[str]
    outputs: list[str]
    preds: dict[str, list[str]] = field(init=False)
    succs: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.preds = {name: [] for name in self.nodes}
        self.succs = {name: [] for name in self.nodes}
        for src, dst in self.edges:
            self.succs[src].append(dst)
            self.preds[dst].append(src)

    def is_stateful(self, name: str) -> bool:
        return isinstance(self.nodes[name], STATEFUL_TYPES)


def walk(graph: nir.NIRGraph, prefix: str = "") -> list[tuple[str, nir.NIRNode]]:
    """Every node of ``graph`` and of its nested graphs (a nested graph itself first, then its
    nodes), named by its dotted path."""
    found: list[tuple[str, nir.NIRNode]] = []
    for name, node in graph.nodes.items():
        found.append((prefix + str(name), node))
        if isinstance(node, nir.NIRGraph):
            found.extend(walk(node, f"{prefix}{name}."))
    return found


def _edge_name(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf8", errors="replace")
    return str(value)


def _only(kind: str, graph_name: str, names: list[str]) -> str:
    if len(names) != 1:
        raise ValidationError(
            f"an edge names subgraph {graph_name!r} as a whole, but it has {len(names)} "
            f"{kind} nodes ({', '.join(names) or 'none'}); name one as '{graph_name}.<{kind}>'",
            node=graph_name, field="edges")
    return f"{graph_name}.{names[0]}"


def flatten(graph: nir.NIRGraph) -> FlatGraph:
    """Inline nested ``NIRGraph`` nodes; edges to or from a subgraph go to its Input/Output."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    _inline(graph, "", nodes, edges, {})
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    return FlatGraph(nodes, edges, inputs, outputs)


def _inline(graph: nir.NIRGraph, prefix: str, nodes: dict[str, nir.NIRNode],
            edges: list[tuple[str, str]], groups: dict[str, nir.NIRGraph]) -> None:
    where = prefix[:-1] or None
    if not isinstance(graph.nodes, dict):
        raise ValidationError("nodes must be a mapping of names to nodes", node=where,
                              field="nodes")
    for raw_name, node in graph.nodes.items():
        name = _edge_name(raw_name)
        if not name or name != name.strip():
            raise ValidationError(f"invalid node name {name!r}", node=prefix + name,
                                  field="nodes")
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            groups[full] = node
            _inline(node, full + ".", nodes, edges, groups)
        elif isinstance(node, nir.NIRNode):
            if full in nodes:
                raise ValidationError("two nodes resolve to this dotted name", node=full,
                                      field="nodes")
            nodes[full] = node
        else:
            raise ValidationError(f"is a {type(node).__name__}, not a NIR node", node=full,
                                  field="nodes")

    def resolve(name: str, end: str) -> str:
        full = prefix + name
        if full in groups:
            kind = nir.Input if end == "dst" else nir.Output
            inner = [n for n, node in groups[full].nodes.items() if isinstance(node, kind)]
            return _only("Input" if end == "dst" else "Output", full, inner)
        if full not in nodes:
            role = "destination" if end == "dst" else "source"
            known = ", ".join(sorted(map(_edge_name, graph.nodes)))
            raise ValidationError(
                f"edge {end == 'dst' and 'to' or 'from'} a missing node: the {role} "
                f"{name!r} is not in the graph (nodes: {known})", node=full, field="edges")
        return full

    raw_edges = graph.edges
    if not isinstance(raw_edges, (list, tuple)) and not hasattr(raw_edges, "__iter__"):
        raise ValidationError("edges must be a list of (source, destination) pairs",
                              node=where, field="edges")
    seen: set[tuple[str, str]] = set()
    for edge in raw_edges:
        try:
            src_raw, dst_raw = edge
        except (TypeError, ValueError):
            raise ValidationError(f"edge {edge!r} is not a (source, destination) pair",
                                  node=where, field="edges") from None
        src = resolve(_edge_name(src_raw), "src")
        dst = resolve(_edge_name(dst_raw), "dst")
        if (src, dst) in seen:
            raise ValidationError(f"duplicate edge ({src!r}, {dst!r})", node=dst,
                                  field="edges")
        seen.add((src, dst))
        edges.append((src, dst))


def back_edges(flat: FlatGraph) -> set[tuple[str, str]]:
    """Edges that close a cycle: found by depth-first search from the top-level inputs in
    node order, following edges in file order. They carry the previous step's value."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    found: set[tuple[str, str]] = set()
    for root in flat.inputs:
        if root in state:
            continue
        state[root] = 1
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            name, i = stack[-1]
            succs = flat.succs[name]
            if i < len(succs):
                stack[-1] = (name, i + 1)
                nxt = succs[i]
                mark = state.get(nxt, 0)
                if mark == 1:
                    found.add((name, nxt))
                elif mark == 0:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[name] = 2
                stack.pop()
    unreachable = [n for n in flat.nodes if n not in state]
    if unreachable:
        raise ValidationError(
            f"not reachable from any Input node (unreachable: {', '.join(unreachable)})",
            node=unreachable[0], field="edges")
    return found


def topological_order(names: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Kahn's algorithm, ties broken by the order of ``names``; raises on a cycle."""
    order_index = {n: i for i, n in enumerate(names)}
    indeg = dict.fromkeys(order_index, 0)
    out: dict[str, list[str]] = {n: [] for n in order_index}
    for src, dst in edges:
        out[src].append(dst)
        indeg[dst] += 1
    import heapq

    ready = [(order_index[n], n) for n, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    result: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        result.append(name)
        for nxt in out[name]:
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                heapq.heappush(ready, (order_index[nxt], nxt))
    if len(result) != len(order_index):
        stuck = [n for n in order_index if indeg[n] > 0]
        raise ValidationError(f"cycle among {', '.join(stuck)}", node=stuck[0], field="edges")
    return result


def strongly_connected(names: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    succ: dict[str, list[str]] = {n: [] for n in names}
    for src, dst in edges:
        succ[src].append(dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    counter = 0
    for root in names:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            name, i = work[-1]
            if i < len(succ[name]):
                work[-1] = (name, i + 1)
                nxt = succ[name][i]
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[name] = min(low[name], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[name])
                if low[name] == index[name]:
                    comp: list[str] = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        comp.append(top)
                        if top == name:
                            break
                    comps.append(comp)
    return comps


@dataclass(frozen=True)
class Unit:
    """One scheduling unit: a single node, or the nodes of a cycle stepped together."""

    members: tuple[str, ...]
    cyclic: bool


def schedule(flat: FlatGraph, back: set[tuple[str, str]]) -> list[Unit]:
    """Units in an order where every forward edge goes from an earlier unit (or an earlier
    member of the same cyclic unit) to a later one."""
    names = list(flat.nodes)
    forward = [e for e in flat.edges if e not in back]
    dag_order = topological_order(names, forward)
    position = {n: i for i, n in enumerate(dag_order)}
    comps = strongly_connected(dag_order, flat.edges)
    comp_of: dict[str, int] = {}
    for ci, comp in enumerate(comps):
        for n in comp:
            comp_of[n] = ci
    self_loops = {src for src, dst in flat.edges if src == dst}
    comp_names = [str(ci) for ci in range(len(comps))]
    comp_edges = {(str(comp_of[s]), str(comp_of[d])) for s, d in forward
                  if comp_of[s] != comp_of[d]}
    # Order components by their earliest member in the DAG order (deterministic tie-break).
    comp_names.sort(key=lambda c: min(position[n] for n in comps[int(c)]))
    units = []
    for c in topological_order(comp_names, sorted(comp_edges)):
        members = sorted(comps[int(c)], key=position.__getitem__)
        cyclic = len(members) > 1 or members[0] in self_loops
        units.append(Unit(tuple(members), cyclic))
    return units


def check_cycles_have_state(flat: FlatGraph) -> None:
    """A cycle made only of stateless nodes has no meaning as a spiking network: refuse it."""
    stateless = [n for n in flat.nodes if not flat.is_stateful(n)]
    keep = set(stateless)
    edges = [(s, d) for s, d in flat.edges if s in keep and d in keep]
    for comp in strongly_connected(stateless, edges):
        if len(comp) > 1 or any(s == d == comp[0] for s, d in edges):
            raise ValidationError(
                f"cycle without state: {' -> '.join(sorted(comp))} loops through no neuron "
                "or delay", node=sorted(comp)[0], field="edges")
