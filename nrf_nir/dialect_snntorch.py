"""The ``snntorch`` dialect: NIR files written by ``snntorch.export_nir.export_to_nir``.

Such files carry snnTorch's conventions (dt = 1e-4 s hard-coded, ``r = tau/dt``,
``w_in = tau_syn/dt``, delayed subtract reset, membranes starting at 0, no metadata).
:data:`DIALECT` recognises them and rewrites them into the contract (see
docs/targets/snntorch.md). Framework-free (numpy and nir only): loading a file never imports
snnTorch or torch.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import nir
import numpy as np

from .dialects import MADE_BY, MADE_FROM
from .errors import NIRError
from .graph import walk
from .semantics import CHOICES, Semantics, write_semantics

NAME = "snntorch"

#: The time step snntorch.export_nir hard-codes when it writes time constants.
EXPORT_DT = 1e-4

#: Node types snntorch.export_nir writes (anything else: not an snnTorch export).
_EXPORTED_TYPES = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d,
                   nir.Flatten, nir.LIF, nir.CubaLIF, nir.NIRGraph)
_META_KEYS = ("dt", "semantics_version", *CHOICES)


def _arr(value: Any) -> np.ndarray:
    """A parameter as float64 (NaN when absent or not numeric: it then matches nothing)."""
    if value is None:
        return np.full((), np.nan)
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return np.full((), np.nan)


def _zero(value: Any) -> bool:
    return bool(np.all(_arr(value) == 0))


def _is_over_dt(num: Any, den: Any) -> bool:
    """``num == den / EXPORT_DT`` within float32 rounding (inf == inf allowed)."""
    a, b = _arr(num), _arr(den)
    with np.errstate(all="ignore"):
        return bool(np.all(np.isclose(a, b / EXPORT_DT, rtol=1e-5, atol=0.0)))


class SnnTorchDialect:
    """Recognise and normalise NIR files written by ``snntorch.export_nir.export_to_nir``.

    Heuristic (conservative): no nrf-nir metadata (no ``dt``, no semantics keys); only the
    node types that exporter writes; at least one ``LIF``/``CubaLIF``; and every one of them
    carries its signature: ``r = tau/1e-4`` (``tau_mem`` for CubaLIF), ``w_in = tau_syn/1e-4``,
    ``v_leak = 0`` and ``v_reset = 0`` everywhere (relative tolerance 1e-5: float32 values).

    Options (the file records neither): ``reset`` "subtract" (snnTorch's default) or
    "zero", the reset mechanism of every neuron; ``delay`` "on" (snnTorch's default
    ``reset_delay=True``: the reset lands one step late) or "off". They become the metadata
    ``reset`` ("subtract" / "value") and ``reset_delay`` (:meth:`delay_of` per neuron: the
    graph's metadata holds the value most neurons need, a neuron that needs another one holds
    it in its own metadata).
    """

    name = NAME
    options: dict[str, tuple[str, ...]] = {"reset": ("subtract", "zero"),
                                           "delay": ("on", "off")}

    def __init__(self, reset: str = "subtract", delay: bool = True) -> None:
        if reset not in ("subtract", "zero"):
            raise NIRError(f"reset must be 'subtract' or 'zero', got {reset!r}", field="reset")
        self.reset = reset
        self.delay = delay

    def configure(self, options: dict[str, str], dt: float | None) -> SnnTorchDialect:
        """``options``: reset=subtract|zero, delay=on|off. ``dt`` is not used: snnTorch's
        export hard-codes 1e-4 s into the time constants (a run's dt still overrides it)."""
        return SnnTorchDialect(reset=options.get("reset", self.reset),
                               delay=options.get("delay", "on" if self.delay else "off") == "on")

    def delay_of(self, node: nir.NIRNode, in_loop: bool) -> str:
        """The contract's ``reset_delay`` that reproduces snnTorch 1.0.0's reset of one exported
        neuron (``LIF``: Leaky, or RLeaky ``in_loop``; ``CubaLIF``: Synaptic / RSynaptic)
        under this dialect's options, read from snnTorch's source:

        - RSynaptic: "on" whatever its ``reset_delay`` (with False it resets local copies of its
          arguments, never the stored membrane);
        - Leaky with the zero reset: "off" (its delayed reset zeroes the old membrane before
          integrating: the same spikes as the immediate reset);
        - ``delay`` on: "on"; ``delay`` off: "guarded" under the subtract reset (the spike test
          of ``mem = beta*mem + x - R*th``, "avoid double reset"), "off" under the zero reset
          (the membrane it leaves is 0, never above threshold: ``R = 0``).
        """
        if isinstance(node, nir.CubaLIF) and in_loop:
            return "on"
        if isinstance(node, nir.LIF) and not in_loop and self.reset == "zero":
            return "off"
        if self.delay:
            return "on"
        return "guarded" if self.reset == "subtract" else "off"

    def _reset_note(self, delay: str) -> str:
        asked = (f"reset '{self.reset}' with reset_delay={self.delay}"
                 + (" (snnTorch's defaults; the file records neither)"
                    if self.reset == "subtract" and self.delay else " (as asked)"))
        hows = {
            "on": ("reset_delay 'on': snnTorch subtracts the threshold after the next step's "
                   "decay (mem = beta*mem + x - th*z[t-1])") if self.reset == "subtract" else
                  ("reset 'value' with reset_delay 'on': snnTorch's Synaptic/RLeaky/RSynaptic "
                   "zero the whole step after a spike (its input is lost)"),
            "guarded": ("reset_delay 'guarded': snnTorch subtracts the threshold in the step "
                        "that spikes, its spike test seeing mem = beta*mem + x - R*th with "
                        "R = (mem[t-1] > th) (\"avoid double reset\")"),
            "off": (f"reset '{'subtract' if self.reset == 'subtract' else 'value'}' with "
                    "reset_delay 'off': the reset lands in the step that spikes"),
        }
        how = hows[delay]
        if delay == "off" and self.delay:
            how += (" (a Leaky outside a loop: its delayed zero reset zeroes the old membrane "
                    "before integrating, the spikes of the immediate reset)")
        elif delay == "on" and not self.delay:
            how += (" (RSynaptic with reset_delay=False resets local copies of its arguments, "
                    "never its stored membrane: its reset lands one step late)")
        return f"{asked}: {how}"

    def detect(self, graph: nir.NIRGraph) -> str | None:
        meta = graph.metadata if isinstance(graph.metadata, dict) else {}
        if any(k in meta for k in _META_KEYS):
            return None
        neurons = 0
        for _, node in walk(graph):
            if not isinstance(node, _EXPORTED_TYPES):
                return None
            if isinstance(node, (nir.LIF, nir.CubaLIF)):
                neurons += 1
                if not (_zero(node.v_leak) and _zero(getattr(node, "v_reset", 0.0))):
                    return None
                if isinstance(node, nir.LIF) and not _is_over_dt(node.r, node.tau):
                    return None
                if isinstance(node, nir.CubaLIF) and not (
                        _is_over_dt(node.r, node.tau_mem)
                        and _is_over_dt(node.w_in, node.tau_syn)):
                    return None
        if not neurons:
            return None
        return ("every LIF/CubaLIF has r = tau/1e-4 (w_in = tau_syn/1e-4), v_leak = 0 and "
                "v_reset = 0: the signature of snntorch.export_nir (dt = 1e-4 s hard-coded)")

    def normalize(self, graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
        g = copy.deepcopy(graph)
        dt = EXPORT_DT
        notes = [f"dt = {dt:g} s, the time step snntorch.export_nir hard-codes (r = tau/dt); "
                 "initial membranes and currents 0, as snnTorch starts them; spikes on "
                 "mem > threshold"]
        subtract = self.reset == "subtract"
        loops = set(_loop_neurons(g))
        wants = {name: self.delay_of(node, name in loops) for name, node in walk(g)
                 if isinstance(node, (nir.LIF, nir.CubaLIF))}
        # the graph holds the value most neurons need (the first one on a tie); the others
        # hold theirs in their own metadata
        delay = Counter(wants.values()).most_common(1)[0][0]
        notes.append(self._reset_note(delay))
        own = {name: want for name, want in wants.items() if want != delay}
        replaced: dict[str, nir.NIRNode] = {}
        w_in_fixed = False
        for name, node in walk(g):
            if not isinstance(node, (nir.LIF, nir.CubaLIF)):
                continue
            tau = _arr(node.tau if isinstance(node, nir.LIF) else node.tau_mem)
            if isinstance(node, nir.CubaLIF):
                w_in, tau_syn = _arr(node.w_in), _arr(node.tau_syn)
                with np.errstate(all="ignore"):
                    node.w_in = w_in * (dt / tau_syn)
                w_in_fixed = True
            if name in own:
                node.metadata = {**(node.metadata or {}), "reset_delay": own[name]}
            if isinstance(node, nir.LIF) and np.all(np.isinf(tau)):
                # beta = 1: snnTorch integrates without leak; NIR's LIF cannot (tau = inf)
                replaced[name] = nir.IF(r=np.full(tau.shape, 1.0 / dt),
                                        v_threshold=np.asarray(node.v_threshold),
                                        v_reset=np.zeros(np.shape(node.v_threshold)),
                                        metadata=dict(node.metadata or {}))
        infinite = [name for name, node in walk(g) if isinstance(node, nir.CubaLIF) and not (
            np.all(np.isfinite(_arr(node.tau_syn))) and np.all(np.isfinite(_arr(node.tau_mem))))]
        infinite += [name for name, node in walk(g) if isinstance(node, nir.LIF)
                     and name not in replaced and not np.all(np.isfinite(_arr(node.tau)))]
        if infinite:
            notes.append("cannot express alpha = 1 or beta = 1 (tau = inf) here: NIR time "
                         f"constants must be finite (the graph will not validate): "
                         f"{', '.join(infinite)}")
        if w_in_fixed:
            notes.append("CubaLIF w_in multiplied by dt/tau_syn: snnTorch writes w_in = "
                         "tau_syn/dt, but its Synaptic adds the input to the current unscaled "
                         "(syn = alpha*syn + x), which is the contract's jump i += w_in*x with "
                         "w_in = 1")
        if replaced:
            _replace_nodes(g, replaced)
            notes.append(f"LIF with beta = 1 (tau = inf) written as IF(r = 1/dt): "
                         f"{', '.join(sorted(replaced))}")
        if own:
            notes.append("node metadata reset_delay where a neuron's reset differs from the "
                         f"graph's '{delay}' (what snnTorch's module does with these options): "
                         + ", ".join(f"{name} '{want}'" for name, want in own.items()))
        negative = [name for name, node in walk(g) if isinstance(node, (nir.LIF, nir.CubaLIF))
                    and np.any(_arr(node.v_threshold) < 0)]
        if negative:
            notes.append("snnTorch resets a membrane of 0 that lies above a negative threshold "
                         "before the first step; the contract does not (threshold < 0 in "
                         f"{', '.join(negative)})")
        moved = _move_loop_biases(g)
        if moved:
            notes.append("snnTorch's RLeaky/RSynaptic add their recurrent bias from the first "
                         "step on (nn.Linear of the initial zero spikes), but a NIR back edge "
                         "carries 0 at step 1: the recurrent bias is moved onto the forward "
                         f"input (an identity Affine) for {', '.join(moved)}")
        dims = _strip_batch_dims(g)
        if dims:
            notes.append("leading batch dimension of size 1 removed from the shapes of "
                         f"{', '.join(dims)} (the graph does not validate with it)")
        write_semantics(g, Semantics(dt=dt, reset="subtract" if subtract else "value",
                                     integration="euler", threshold="gt",
                                     initial_state="zero", reset_delay=delay,
                                     producer="snntorch", producer_version="unknown"))
        return g, notes


def _replace_nodes(graph: nir.NIRGraph, replaced: dict[str, nir.NIRNode]) -> None:
    for name, new in replaced.items():
        parts = name.split(".")
        holder = graph
        # dotted names may be literal top-level keys (nirtorch flattens subgraphs that way)
        if name in holder.nodes:
            holder.nodes[name] = new
            continue
        for part in parts[:-1]:
            holder = holder.nodes[part]
        holder.nodes[parts[-1]] = new


def _loop_neurons(graph: nir.NIRGraph, prefix: str = "") -> list[str]:
    """LIF/CubaLIF nodes in a two-node loop or with a self-edge (RLeaky/RSynaptic exports)."""
    found: list[str] = []
    edges = {(str(a), str(b)) for a, b in graph.edges}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            found.extend(_loop_neurons(node, f"{prefix}{name}."))
        elif isinstance(node, (nir.LIF, nir.CubaLIF)) and any(
                a == name and (b, a) in edges for a, b in edges):
            found.append(prefix + str(name))
    return found


def _move_loop_biases(graph: nir.NIRGraph, prefix: str = "") -> list[str]:
    """Rewrite each loop ``neuron -> Affine(W, b) -> neuron`` (the Affine used only there) as
    ``neuron -> Linear(W) -> neuron`` plus an identity ``Affine(I, b)`` on the neuron's first
    forward input, in every (nested) graph. Returns the loop node names."""
    moved: list[str] = []
    for name, node in list(graph.nodes.items()):
        if isinstance(node, nir.NIRGraph):
            moved.extend(_move_loop_biases(node, f"{prefix}{name}."))
    edges = [(str(a), str(b)) for a, b in graph.edges]
    for w_name, w in list(graph.nodes.items()):
        if not isinstance(w, nir.Affine) or _zero(w.bias):
            continue
        ins = [a for a, b in edges if b == w_name]
        outs = [b for a, b in edges if a == w_name]
        if len(ins) != 1 or outs != ins:
            continue
        lif = ins[0]
        if not isinstance(graph.nodes.get(lif), (nir.LIF, nir.CubaLIF)):
            continue
        feeds = [a for a, b in edges if b == lif and a != w_name]
        if not feeds:
            continue
        weight, bias = _arr(w.weight), _arr(w.bias)
        graph.nodes[w_name] = nir.Linear(weight=weight)
        new = f"{w_name}_bias"
        while new in graph.nodes:
            new += "_"
        n = weight.shape[0]
        graph.nodes[new] = nir.Affine(weight=np.eye(n), bias=np.broadcast_to(bias, (n,)).copy(),
                                      metadata={MADE_FROM: prefix + w_name,
                                                MADE_BY: "snntorch dialect"})
        k = edges.index((feeds[0], lif))
        edges[k:k + 1] = [(feeds[0], new), (new, lif)]
        moved.append(prefix + w_name)
    graph.edges = edges
    return moved


def _strip_batch_dims(graph: nir.NIRGraph) -> list[str]:
    """Drop a leading size-1 axis from Input/Output types when the graph does not validate
    with it but does without it (older nirtorch exports kept the batch axis)."""
    from .validate import validate

    try:
        validate(graph)
        return []
    except NIRError:
        pass
    trial = copy.deepcopy(graph)
    changed: list[str] = []
    for name, node in walk(trial):
        for attr in ("input_type", "output_type"):
            types = getattr(node, attr, None)
            if not isinstance(node, (nir.Input, nir.Output)) or not isinstance(types, dict):
                continue
            for key, shape in list(types.items()):
                arr = np.asarray(shape).reshape(-1)
                if arr.size >= 2 and arr[0] == 1:
                    types[key] = arr[1:]
                    if name not in changed:
                        changed.append(name)
    if not changed:
        return []
    try:
        validate(trial)
    except NIRError:
        return []
    graph.nodes = trial.nodes
    return changed


DIALECT = SnnTorchDialect()
