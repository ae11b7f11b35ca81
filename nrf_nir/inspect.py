"""Human- and machine-readable summaries of a graph: nodes, shapes, parameters, counts."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import nir
import numpy as np

from .graph import STATEFUL_TYPES
from .semantics import FIRING_DEFAULTS, node_overrides, read_semantics
from .validate import NEURON_FIELDS, Checked

if TYPE_CHECKING:  # pragma: no cover
    from .dialects import Normalized

SPIKING_TYPES = (nir.IF, nir.LIF, nir.CubaLIF)


def _summary(arr: np.ndarray) -> dict[str, Any]:
    if arr.size == 1:
        return {"shape": list(arr.shape), "value": float(arr.reshape(-1)[0])}
    return {"shape": list(arr.shape), "min": float(arr.min()), "max": float(arr.max()),
            "mean": float(arr.mean())}


def synapses(checked: Checked, name: str) -> int:
    """Connections a node makes per sample (non-zero weights, convolutions unrolled)."""
    node, p = checked.flat.nodes[name], checked.params[name]
    if isinstance(node, (nir.Affine, nir.Linear)):
        rows = math.prod(checked.in_shapes[name][:-1])
        return int(np.count_nonzero(p["weight"])) * rows
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = p["weight"]
        per_out = np.count_nonzero(w) / w.shape[0]  # non-zero taps per output channel
        return int(round(per_out * math.prod(checked.out_shapes[name])))
    return 0


def reading(loaded: Normalized | None) -> dict[str, Any]:
    """How the file was read: the dialect applied (None: plain NIR or nrf-nir's own), why,
    its notes and every change it (or a given dt) made: node, field, before, after."""
    if loaded is None:
        return {"dialect": None, "reason": None, "notes": [], "changes": []}
    return {"dialect": loaded.dialect, "reason": loaded.reason, "notes": list(loaded.notes),
            "changes": [c.as_dict() for c in loaded.changes]}


def summarize(checked: Checked, loaded: Normalized | None = None) -> dict[str, Any]:
    """A JSON-able description of a validated graph; ``loaded`` (from
    ``nrf_nir.io.load_normalized``): also how the file was read (key ``read``). A node whose
    own metadata overrides a semantics key (``reset_delay``) lists it under ``semantics``."""
    sem = read_semantics(checked.graph)
    nodes = []
    neurons = spiking = total_syn = n_params = 0
    order = [n for unit in checked.units for n in unit.members]
    for name in order:
        node, p = checked.flat.nodes[name], checked.params[name]
        params: dict[str, Any] = {k: _summary(v) for k, v in p.items()
                  if isinstance(v, np.ndarray) and not k.startswith("_")}
        params.update({k: v for k, v in p.items()
                       if isinstance(v, (int, str, tuple)) and not k.startswith("_")})
        n_params += sum(v.size for v in p.values() if isinstance(v, np.ndarray))
        syn = synapses(checked, name)
        total_syn += syn
        if type(node) in NEURON_FIELDS and isinstance(node, STATEFUL_TYPES) and not isinstance(
                node, nir.Delay):
            count = math.prod(checked.out_shapes[name])
            neurons += count
            if isinstance(node, SPIKING_TYPES):
                spiking += count
        entry: dict[str, Any] = {
            "name": name, "type": type(node).__name__,
            "input_shape": list(checked.in_shapes[name]),
            "output_shape": list(checked.out_shapes[name]),
            "stateful": isinstance(node, STATEFUL_TYPES), "synapses": syn, "params": params,
        }
        own = node_overrides(node, name)
        if own:
            entry["semantics"] = own
        nodes.append(entry)
    return {
        "inputs": {n: list(s) for n, s in checked.input_shapes.items()},
        "outputs": {n: list(s) for n, s in checked.output_shapes.items()},
        "semantics": {"dt": sem.dt, "reset": sem.reset, "integration": sem.integration,
                      "threshold": sem.threshold, "initial_state": sem.initial_state,
                      **{key: getattr(sem, key) for key in FIRING_DEFAULTS},
                      "producer": sem.producer, "producer_version": sem.producer_version},
        "counts": {"nodes": len(nodes), "neurons": neurons, "spiking_neurons": spiking,
                   "synapses": total_syn, "parameters": n_params,
                   "recurrent_edges": len(checked.back)},
        "recurrent_edges": sorted([list(e) for e in checked.back]),
        "nodes": nodes,
        "read": reading(loaded),
    }


def _node_level(nodes: list[dict[str, Any]]) -> list[str]:
    """One line per semantics key that nodes override: ``node-level reset delay: out off``."""
    lines = []
    for key in FIRING_DEFAULTS:
        held = [f"{n['name']} {n['semantics'][key]}" for n in nodes
                if key in n.get("semantics", {})]
        if held:
            lines.append(f"node-level {key.replace('_', ' ')}: {', '.join(held)}")
    return lines


def render(summary: dict[str, Any]) -> str:
    """The summary as a text table (the firing keys in the header only when not default, and
    a line of node-level overrides when there is one)."""
    sem = summary["semantics"]
    dt = "not stated (pass --dt)" if sem["dt"] is None else f"{sem['dt']:g} s"
    firing = "".join(f"{key.replace('_', ' ')}: {sem[key]}; " for key, default in
                     FIRING_DEFAULTS.items() if sem.get(key, default) != default)
    lines = [
        f"dt: {dt}; reset: {sem['reset']}; integration: {sem['integration']}; "
        f"threshold: {sem['threshold']}; initial state: {sem['initial_state']}; {firing}"
        f"producer: {sem['producer']} {sem['producer_version']}".rstrip(),
        *_node_level(summary["nodes"]),
        "inputs: " + ", ".join(f"{n} {s}" for n, s in summary["inputs"].items()),
        "outputs: " + ", ".join(f"{n} {s}" for n, s in summary["outputs"].items()),
        "",
    ]
    rows = [("node", "type", "in", "out", "parameters")]
    for node in summary["nodes"]:
        parts = []
        for key, val in node["params"].items():
            if isinstance(val, dict) and "value" in val:
                parts.append(f"{key}={val['value']:g}")
            elif isinstance(val, dict):
                parts.append(f"{key}{tuple(val['shape'])}[{val['min']:.3g}..{val['max']:.3g}]")
            else:
                parts.append(f"{key}={val}")
        rows.append((node["name"], node["type"], str(tuple(node["input_shape"])),
                     str(tuple(node["output_shape"])), " ".join(parts)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  "
                     + r[4])
    read = summary.get("read") or {}
    if read.get("dialect"):
        lines += ["", f"read with the {read['dialect']} dialect ({read['reason']}); "
                  f"{len(read['changes'])} change(s):"]
    elif read.get("changes"):
        lines += ["", f"read as written; {len(read['changes'])} change(s):"]
    elif read.get("notes"):
        lines += ["", *read["notes"]]
    for change in read.get("changes", []):
        where = f"{change['node']}.{change['field']}" if change["node"] else change["field"]
        lines.append(f"  {where}: {change['before']} -> {change['after']}")
    c = summary["counts"]
    lines += ["", f"{c['nodes']} nodes, {c['neurons']} neurons ({c['spiking_neurons']} spiking), "
              f"{c['synapses']} synapses, {c['parameters']} parameters, "
              f"{c['recurrent_edges']} recurrent edges"]
    return "\n".join(lines)
