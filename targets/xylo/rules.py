"""Xylo Audio 2 (SYNS61201) design rules and the analysis of a NIR graph into Xylo's layout.

``analyse(checked, semantics)`` reads a validated graph as Xylo sees a network:

- **sources** are the graph's ``Input`` nodes (input channels, spike counts) and its spiking
  neuron nodes (``LIF``, ``CubaLIF``);
- every chain of stateless linear nodes between sources and a neuron (``Linear``, ``Affine``,
  ``Conv1d``/``Conv2d``, ``SumPool2d``/``AvgPool2d``, ``Scale``, ``Flatten``, ``Identity``)
  is composed into one dense weight matrix per (source, neuron) pair (a convolution becomes a
  dense matrix, when it fits), and the affine biases into one bias per neuron;
- an ``LI`` node whose only successor is one ``LIF`` node of its shape is a **synaptic
  filter**: it becomes a synaptic current of that LIF (Xylo has two per hidden neuron);
- neuron nodes that feed an ``Output`` are Xylo **output neurons** (8 at most; ``LI`` /
  ``CubaLI`` there are read out as membrane potentials), every other neuron is a **hidden
  neuron** (1000 at most).

It returns a :class:`Network` (the float network in Xylo's layout, which ``quantize`` turns into
integers) and the list of :class:`~nrf_nir.targets.Violation` (``check``). Every violation
names the node, the field and the limit.

``analyse`` is a composition of steps, each a function of its own: role assignment
(:func:`assign_roles`, :func:`map_outputs`, :func:`split_neurons`), chain composition
(:func:`compose_chains`), one function per design rule (``rule_*``, recording into a
:class:`RuleLog`), the float layers (:func:`build_layer`), the layout
(:func:`assign_layout`), the latency (:func:`assign_latency`) and the notes
(:func:`add_notes`). The chip limits live in :mod:`nrf_nir.chips`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch

from nrf_nir.chips import XYLO_AUDIO2, XYLO_CHIP_ALIASES, XYLO_SPECS, XyloSpec, xylo_spec
from nrf_nir.reference import make_layer
from nrf_nir.semantics import Semantics
from nrf_nir.targets import Violation
from nrf_nir.validate import Checked, Identity

# --------------------------------------------------------------------------------------------
# the hardware: the chip limits are public in nrf_nir.chips; these names stay importable here
# --------------------------------------------------------------------------------------------

SPEC = XYLO_AUDIO2
SPECS = XYLO_SPECS
CHIP_ALIASES = XYLO_CHIP_ALIASES
chip_spec = xylo_spec

#: Stateless nodes composed into dense weights.
LINEAR_TYPES: tuple[type, ...] = (nir.Input, nir.Output, Identity, nir.Affine, nir.Linear,
                                  nir.Scale, nir.Conv1d, nir.Conv2d, nir.SumPool2d,
                                  nir.AvgPool2d, nir.Flatten)
SPIKING_TYPES: tuple[type, ...] = (nir.LIF, nir.CubaLIF)
READOUT_TYPES: tuple[type, ...] = (nir.LI, nir.CubaLI)
SUPPORTED = ("Linear, Affine, Conv1d/Conv2d and pooling (flattened to dense weights), Scale, "
             "Flatten, Identity; LIF and CubaLIF neurons; LI as a synaptic filter of an LIF; "
             "LI/CubaLI as membrane readouts")

#: Largest dense matrix (elements) built while composing stateless chains.
MAX_DENSE_ELEMENTS = 20_000_000
#: Largest source (input or neuron node) whose dense composition is attempted at all.
MAX_SOURCE_SIZE = 4096


# --------------------------------------------------------------------------------------------
# the analysed network
# --------------------------------------------------------------------------------------------


@dataclass
class Synapse:
    """One synaptic current of a neuron layer (Xylo: ``i_syn`` or ``i_syn2``).

    kind: ``current`` (the CubaLIF/CubaLI's own current, decay from ``tau_syn``), ``direct``
    (an LIF/LI has no current; Xylo always has one: decay dash 1, charge conserved) or
    ``filter`` (an LI node in front of an LIF, decay from the LI's ``tau``).
    node: the node whose time constant sets the decay (the neuron, or the LI filter).
    c: per-step decay fraction of the reference (``dt/tau`` Euler, ``1-exp(-dt/tau)``
    exponential) per neuron, or None for ``direct``.
    gain: steady-state gain from this synapse's input to the reference membrane ``v - v_leak``
    per neuron (``r`` for direct, ``r*w_in/c_syn`` for a current, ``r_lif*r_li`` for a filter).
    blocks: source name -> float weight matrix ``[n, n_source]`` (spikes in, current out).
    bias: constant input per step ``[n]`` in the synapse's input units.
    offset: constant steady-state contribution to ``v - v_leak`` ``[n]`` (an LI filter's
    ``v_leak``, times the LIF's ``r``).
    """

    kind: str
    node: str
    c: np.ndarray | None
    gain: np.ndarray
    blocks: dict[str, np.ndarray]
    bias: np.ndarray
    offset: np.ndarray


@dataclass
class Layer:
    """One neuron node in Xylo's layout."""

    name: str
    node_type: str
    role: str  # "hidden" or "output"
    shape: tuple[int, ...]
    n: int
    c_mem: np.ndarray  # per-step membrane decay fraction of the reference
    tau_mem: np.ndarray
    v_leak: np.ndarray
    v_th: np.ndarray | None  # None: a membrane readout (LI / CubaLI)
    v_reset: np.ndarray | None
    synapses: list[Synapse]
    offset: int = 0  # first hidden (or output) index
    lag: int = 0  # steps Xylo runs behind the reference at this layer

    @property
    def readout(self) -> str:
        return "spikes" if self.v_th is not None else "vmem"


@dataclass
class InputSlot:
    name: str
    shape: tuple[int, ...]
    offset: int
    size: int


@dataclass
class OutputSlot:
    name: str  # the Output node
    layer: str  # the neuron node that feeds it
    shape: tuple[int, ...]


@dataclass
class Network:
    """A graph in Xylo's layout, still in floats (see ``quantize``)."""

    dt: float
    semantics: Semantics
    inputs: list[InputSlot]
    hidden: list[Layer]
    output_layers: list[Layer]
    outputs: list[OutputSlot]
    notes: list[str] = field(default_factory=list)

    @property
    def n_in(self) -> int:
        return sum(s.size for s in self.inputs)

    @property
    def n_hidden(self) -> int:
        return sum(layer.n for layer in self.hidden)

    @property
    def n_out(self) -> int:
        return sum(layer.n for layer in self.output_layers)

    @property
    def layers(self) -> list[Layer]:
        return [*self.hidden, *self.output_layers]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def source_kind(self, name: str) -> str:
        """``input`` or ``hidden`` (the only sources Xylo has)."""
        return "input" if any(s.name == name for s in self.inputs) else "hidden"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def decay_fraction(tau: np.ndarray, dt: float, integration: str) -> np.ndarray:
    """The fraction of a state lost per step in the reference: ``dt/tau`` (Euler) or
    ``1 - exp(-dt/tau)`` (exponential)."""
    if integration == "exponential":
        return -np.expm1(-dt / tau)
    return dt / tau


def dash_of(c: np.ndarray) -> np.ndarray:
    """Xylo's bit-shift decay for a per-step decay fraction ``c``: ``round(log2(1/c))``
    (for Euler, ``round(log2(tau/dt))``); unclipped."""
    with np.errstate(divide="ignore"):
        return np.rint(-np.log2(c)).astype(np.int64)


def effective_tau(dash: np.ndarray, dt: float, integration: str) -> np.ndarray:
    """The time constant a bit-shift decay ``dash`` implements, in the graph's integration:
    decay fraction ``2**-dash`` per step."""
    c = np.exp2(-np.asarray(dash, dtype=np.float64))
    if integration == "exponential":
        with np.errstate(divide="ignore"):
            return np.where(c >= 1.0, 0.0, -dt / np.log1p(-np.minimum(c, 1.0 - 1e-300)))
    return dt / c


def _flat(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``arr`` broadcast to ``shape`` and flattened (float64 copy)."""
    return np.broadcast_to(np.asarray(arr, dtype=np.float64), shape).reshape(-1).copy()


class AffineMap:
    """A node's output as an affine function of the sources: the sum over sources of
    ``mats[src] @ y_src`` (``[size, n_src]``) plus ``bias`` (``[size]``); ``mats[src]`` is None
    for the identity (a source itself)."""

    def __init__(self, size: int, mats: dict[str, np.ndarray | None] | None = None,
                 bias: np.ndarray | None = None) -> None:
        self.size = size
        self.mats: dict[str, np.ndarray | None] = dict(mats or {})
        self.bias = np.zeros(size) if bias is None else bias

    def dense(self, src: str, n_src: int) -> np.ndarray:
        """The matrix of source ``src`` (``n_src`` elements), the identity made explicit."""
        m = self.mats[src]
        return np.eye(n_src) if m is None else m


# --------------------------------------------------------------------------------------------
# the analysis: shared state between the steps
# --------------------------------------------------------------------------------------------


@dataclass
class RuleLog:
    """The design-rule violations found so far for ``target``, in the order found; ``lossy``:
    those (precision rules) that still leave a runnable network."""

    target: str = "xylo"
    found: list[Violation] = field(default_factory=list)
    lossy: list[Violation] = field(default_factory=list)

    def add(self, node: str | None, fld: str | None, message: str, *,
            lossy: bool = False) -> None:
        """Record a violation of ``node``'s field ``fld`` (None: the whole graph)."""
        self.found.append(Violation(self.target, node, fld, message))
        if lossy:
            self.lossy.append(self.found[-1])

    @property
    def blocking(self) -> bool:
        """Whether a violation found so far leaves no mapping (any but the precision rules)."""
        return len(self.found) > len(self.lossy)


@dataclass
class Roles:
    """What each node of a graph is to Xylo; node names, every list in schedule order.

    order: every node; position: node -> index in ``order``; spiking: LIF/CubaLIF nodes;
    leaky: LI/CubaLI nodes; filters: LI nodes that are the synaptic filter of one LIF;
    neurons: spiking and leaky nodes that are not filters; sources: the Input nodes, then the
    spiking nodes (what Xylo's weight matrices read).
    """

    order: list[str]
    position: dict[str, int]
    spiking: list[str]
    leaky: list[str]
    filters: list[str]
    neurons: list[str]
    sources: list[str]


@dataclass
class Composition:
    """State of :func:`compose_node`: the graph and its roles, the semantics its stateless
    kernels run with (dt set), the maps composed so far (node -> its output) and the nodes
    that cannot be composed."""

    checked: Checked
    roles: Roles
    semantics: Semantics
    log: RuleLog
    maps: dict[str, AffineMap] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)


def node_size(checked: Checked, name: str) -> int:
    """Number of elements of node ``name``'s output (a source's channels or neurons)."""
    return math.prod(checked.out_shapes[name])


# --------------------------------------------------------------------------------------------
# the analysis: the steps, in the order ``analyse`` runs them
# --------------------------------------------------------------------------------------------


def analyse(checked: Checked, semantics: Semantics, *, target: str = "xylo",
            spec: XyloSpec = SPEC) -> tuple[Network | None, list[Violation]]:
    """Map ``checked`` onto Xylo's layout; return the network (None when a rule is violated
    so that no mapping exists) and every design-rule violation found. Only precision
    rules (:func:`rule_ranges`: int8/int16 cannot resolve a layer's scale) leave a network:
    quantization clips and rounds it and it runs, though not as the reference does."""
    log = RuleLog(target)
    rule_time_step(semantics, log)
    rule_node_types(checked, log)
    roles = assign_roles(checked)
    rule_input_channels(checked, spec, log)
    if not rule_composable(checked, roles, spec, log):
        return None, log.found
    ins = compose_chains(checked, roles, semantics, log)
    if ins is None:
        return None, log.found
    outputs = map_outputs(checked, roles, ins, log)
    hidden_names, out_names = split_neurons(roles, outputs)
    rule_output_edges(checked, roles, ins, out_names, log)
    rule_hidden_neurons_spike(checked, hidden_names, log)
    rule_filter_sources(roles, ins, out_names, log)
    rule_neuron_counts(checked, hidden_names, out_names, spec, log)
    dt = semantics.dt
    layers: dict[str, Layer] = {}
    for name in [*hidden_names, *out_names]:
        role = "output" if name in out_names else "hidden"
        layer = build_layer(name, role, checked, semantics, ins, roles.filters, dt or 1.0)
        check_layer(layer, checked, dt, spec, log)
        rule_synapse_count(layer, spec, log)
        layers[name] = layer
    if log.blocking or dt is None:
        return None, log.found
    net = assign_layout(checked, semantics, dt, [layers[n] for n in hidden_names],
                        [layers[n] for n in out_names], outputs)
    rule_expansion(net, set(checked.flat.inputs), spec, log)
    if log.blocking:
        return None, log.found
    assign_latency(net, roles.position)
    add_notes(net, semantics)
    return net, log.found


def rule_time_step(semantics: Semantics, log: RuleLog) -> None:
    """The graph has a time step: Xylo's bit-shift decays are defined relative to it."""
    if semantics.dt is None:
        log.add(None, "dt", "the graph has no time step (metadata 'dt'); Xylo's bit-shift "
                "decays are defined relative to dt: pass dt")


def rule_node_types(checked: Checked, log: RuleLog) -> None:
    """Every node is a stateless linear node (composed into weights), an LIF/CubaLIF neuron
    or an LI/CubaLI (synaptic filter or readout)."""
    for name, node in checked.flat.nodes.items():
        if not isinstance(node, (*LINEAR_TYPES, *SPIKING_TYPES, *READOUT_TYPES)):
            kind = type(node).__name__
            log.add(name, "type", f"{kind} has no Xylo equivalent (Xylo runs LIF neurons with "
                    f"bit-shift decays); supported: {SUPPORTED}")


def assign_roles(checked: Checked) -> Roles:
    """The sources, synaptic filters and neurons of ``checked`` (see :class:`Roles`). An LI
    node is a synaptic filter when its only successor is one LIF node of its shape."""
    flat = checked.flat
    nodes = flat.nodes
    order = [n for unit in checked.units for n in unit.members]
    spiking = [n for n in order if isinstance(nodes[n], SPIKING_TYPES)]
    leaky = [n for n in order if isinstance(nodes[n], READOUT_TYPES)]
    filters: list[str] = []
    for name in leaky:
        succ = flat.succs[name]
        if (isinstance(nodes[name], nir.LI) and len(succ) == 1
                and isinstance(nodes[succ[0]], nir.LIF)
                and checked.in_shapes[succ[0]] == checked.out_shapes[name]):
            filters.append(name)
    neurons = [n for n in order if n in spiking or (n in leaky and n not in filters)]
    return Roles(order=order, position={n: i for i, n in enumerate(order)}, spiking=spiking,
                 leaky=leaky, filters=filters, neurons=neurons,
                 sources=list(flat.inputs) + spiking)


def rule_input_channels(checked: Checked, spec: XyloSpec, log: RuleLog) -> None:
    """All Input nodes together (flattened) fit the chip's input channels; the violation
    names the Input at which the running total first exceeds them."""
    running = 0
    for name in checked.flat.inputs:
        running += node_size(checked, name)
        if running > spec.max_inputs:
            log.add(name, "shape", f"input channels: {running} in total (this Input has "
                    f"{node_size(checked, name)}) > {spec.max_inputs}, the {spec.name} limit")
            break


def rule_composable(checked: Checked, roles: Roles, spec: XyloSpec, log: RuleLog) -> bool:
    """Whether composing the stateless chains into dense weights is attempted at all: there
    are input channels, no I/IF/Delay/Threshold node, and no Input or neuron node larger than
    ``MAX_SOURCE_SIZE`` elements (each such neuron node is a violation)."""
    flat = checked.flat
    nodes = flat.nodes
    n_in_total = sum(node_size(checked, n) for n in flat.inputs)
    too_big = [n for n in [*flat.inputs, *roles.spiking, *roles.leaky]
               if node_size(checked, n) > MAX_SOURCE_SIZE]
    unsupported = any(isinstance(node, (nir.I, nir.IF, nir.Delay, nir.Threshold))
                      for node in nodes.values())
    if not too_big and not unsupported and n_in_total > 0:
        return True
    for n in too_big:
        if n not in flat.inputs:
            log.add(n, "shape", f"{node_size(checked, n)} neurons: far over the "
                    f"{spec.max_hidden} hidden neurons of {spec.name}; not flattened to dense "
                    "weights")
    return False


def compose_chains(checked: Checked, roles: Roles, semantics: Semantics,
                   log: RuleLog) -> dict[str, AffineMap] | None:
    """The input of every neuron, synaptic filter and Output node as an affine map of the
    sources (every chain of stateless nodes composed into dense weights and one bias); None
    when a chain cannot be composed (a violation names the node). Without a dt the stateless
    kernels run with dt = 1."""
    state = Composition(checked, roles, dataclasses.replace(semantics, dt=semantics.dt or 1.0),
                        log)
    ins: dict[str, AffineMap] = {}
    for name in [*roles.neurons, *roles.filters, *checked.flat.outputs]:
        r = incoming(state, name)
        if r is None:
            return None
        ins[name] = r
    return ins


def incoming(state: Composition, name: str) -> AffineMap | None:
    """The sum of the outputs of ``name``'s predecessors as an affine map of the sources
    (every matrix dense); None when one cannot be composed."""
    checked = state.checked
    total = AffineMap(math.prod(checked.in_shapes[name]))
    for src in checked.flat.preds[name]:
        r = compose_node(state, src)
        if r is None:
            return None
        for key in r.mats:
            n_src = node_size(checked, key)
            prev = total.mats.get(key)  # never None here: incoming sums are dense
            dense = r.dense(key, n_src)
            total.mats[key] = dense if prev is None else prev + dense
        total.bias = total.bias + r.bias
    return total


def compose_node(state: Composition, name: str) -> AffineMap | None:
    """The output of node ``name`` as an affine map of the sources, memoised in ``state``: a
    source, filter or neuron is itself; a stateless node applies its kernel to the sum of its
    predecessors. None (and ``name`` in ``state.failed``) when the dense matrix would exceed
    ``MAX_DENSE_ELEMENTS`` (a violation) or a predecessor failed."""
    if name in state.maps:
        return state.maps[name]
    if name in state.failed:
        return None
    checked, roles = state.checked, state.roles
    node = checked.flat.nodes[name]
    if name in roles.sources or name in roles.filters or name in roles.neurons:
        state.maps[name] = AffineMap(node_size(checked, name), {name: None})
        return state.maps[name]
    total = AffineMap(math.prod(checked.in_shapes[name]))
    for src in checked.flat.preds[name]:
        r = compose_node(state, src)
        if r is None:
            state.failed.add(name)
            return None
        for key, m in r.mats.items():
            cur = total.mats.get(key, "absent")
            if isinstance(cur, str):
                total.mats[key] = m
            else:
                n_src = node_size(checked, key)
                total.mats[key] = total.dense(key, n_src) + r.dense(key, n_src)
        total.bias = total.bias + r.bias
    if isinstance(node, (nir.Input, nir.Output, Identity)):
        state.maps[name] = total
        return total
    in_shape, out_shape = checked.in_shapes[name], checked.out_shapes[name]
    n_out = math.prod(out_shape)
    for key in total.mats:
        if node_size(checked, key) * max(n_out, total.size) > MAX_DENSE_ELEMENTS:
            state.log.add(name, "shape", f"{type(node).__name__} on {in_shape} -> {out_shape} "
                          f"cannot be flattened to dense Xylo weights: "
                          f"{node_size(checked, key)} x {n_out} elements > "
                          f"{MAX_DENSE_ELEMENTS:,}")
            state.failed.add(name)
            return None
    if isinstance(node, nir.Flatten):
        state.maps[name] = total
        return total
    result = apply_stateless(name, node, checked, total, state.semantics)
    state.maps[name] = result
    return result


def apply_stateless(name: str, node: Any, checked: Checked, total: AffineMap,
                    comp_sem: Semantics) -> AffineMap:
    """The affine map of stateless node ``name``'s output, given its input ``total``: the
    reference's layer (float64, CPU) applied to each source's basis (minus its response to
    zero, so the node's own bias is counted once) and to ``total``'s bias."""
    in_shape, out_shape = checked.in_shapes[name], checked.out_shapes[name]
    n_out = math.prod(out_shape)
    cpu = torch.device("cpu")
    layer = make_layer(node, checked.params[name], in_shape, out_shape, comp_sem,
                       torch.float64, cpu)
    with torch.no_grad():
        zero = layer(torch.zeros(1, *in_shape, dtype=torch.float64))
        result = AffineMap(n_out)
        for key in total.mats:
            n_src = node_size(checked, key)
            basis = torch.from_numpy(total.dense(key, n_src).T.copy()).reshape(
                n_src, *in_shape)
            y = (layer(basis) - zero).reshape(n_src, n_out)
            result.mats[key] = y.T.numpy().copy()
        b = torch.from_numpy(total.bias.copy()).reshape(1, *in_shape)
        result.bias = layer(b).reshape(-1).numpy().copy()
    return result


def map_outputs(checked: Checked, roles: Roles, ins: dict[str, AffineMap],
                log: RuleLog) -> list[OutputSlot]:
    """One slot per Output node fed directly (through Identity/Flatten only) by one neuron
    node; every other Output node is a violation."""
    outputs: list[OutputSlot] = []
    for oname in checked.flat.outputs:
        r = ins[oname]
        keys = list(r.mats)
        ok = (len(keys) == 1 and keys[0] in roles.neurons and not np.any(r.bias)
              and np.array_equal(r.dense(keys[0], node_size(checked, keys[0])),
                                 np.eye(node_size(checked, keys[0]))))
        if not ok:
            what = ", ".join(keys) or "nothing"
            log.add(oname, "edges", "Xylo's outputs are the spikes (or membranes) of its output "
                    "neurons: an Output must be fed directly (through Identity/Flatten only) by "
                    f"one LIF/CubaLIF (or LI/CubaLI readout) node; this one receives {what}")
            continue
        outputs.append(OutputSlot(oname, keys[0], checked.out_shapes[oname]))
    return outputs


def split_neurons(roles: Roles, outputs: list[OutputSlot]) -> tuple[list[str], list[str]]:
    """The hidden and the output neuron nodes, in schedule order: a neuron node that feeds an
    output slot maps to Xylo output neurons, every other one to hidden neurons."""
    feeding = {slot.layer for slot in outputs}
    return ([n for n in roles.neurons if n not in feeding],
            [n for n in roles.neurons if n in feeding])


def synapse_sources(r: AffineMap, filters: Collection[str],
                    ins: dict[str, AffineMap]) -> set[str]:
    """The sources whose spikes reach a neuron with input ``r``, directly or through one of
    its synaptic filters."""
    found: set[str] = set()
    for key in r.mats:
        if key in filters:
            found |= set(ins[key].mats)
        else:
            found.add(key)
    return found


def rule_output_edges(checked: Checked, roles: Roles, ins: dict[str, AffineMap],
                      out_names: list[str], log: RuleLog) -> None:
    """Per output neuron node, in order: it drives no other neuron, receives no input
    channel and no other output neuron."""
    flat = checked.flat
    feeds: dict[str, set[str]] = {n: set() for n in [*roles.sources, *roles.filters,
                                                     *roles.neurons]}
    for tgt in [*roles.neurons, *roles.filters]:
        for src in ins[tgt].mats:
            feeds.setdefault(src, set()).add(tgt)
    for name in out_names:
        others = sorted(feeds.get(name, set()) - set(flat.outputs))
        if others:
            log.add(name, "edges", f"drives an Output, so it maps to Xylo output neurons, "
                    f"which drive no other neuron; it also feeds {', '.join(others)}")
        srcs = synapse_sources(ins[name], roles.filters, ins)
        if any(s in flat.inputs for s in srcs):
            log.add(name, "edges", "Xylo output neurons receive only from hidden neurons, not "
                    "from input channels: put a hidden LIF/CubaLIF layer between the Input and "
                    "this node")
        bad = sorted(s for s in srcs if s in out_names)
        if bad:
            log.add(name, "edges", f"Xylo output neurons receive only from hidden neurons; "
                    f"this one receives from output neurons {', '.join(bad)} (recurrent or "
                    "chained output layers are not possible)")


def rule_hidden_neurons_spike(checked: Checked, hidden_names: list[str], log: RuleLog) -> None:
    """Hidden neurons spike: an LI/CubaLI that is neither a readout nor a synaptic filter has
    no Xylo equivalent."""
    nodes = checked.flat.nodes
    for name in hidden_names:
        if isinstance(nodes[name], READOUT_TYPES):
            kind = type(nodes[name]).__name__
            log.add(name, "type", f"{kind} is neither an output readout nor the synaptic "
                    "filter of a single LIF: Xylo's hidden neurons spike (use LIF/CubaLIF)")


def rule_filter_sources(roles: Roles, ins: dict[str, AffineMap], out_names: list[str],
                        log: RuleLog) -> None:
    """A synaptic filter receives input channels or hidden neurons only (no filter, no output
    neuron)."""
    for name in roles.filters:
        for src in ins[name].mats:
            if src in roles.filters or src in out_names:
                log.add(name, "edges", f"a synaptic filter (LI -> LIF) receives spikes from "
                        f"input channels or hidden neurons only; it receives {src}")


def rule_neuron_counts(checked: Checked, hidden_names: list[str], out_names: list[str],
                       spec: XyloSpec, log: RuleLog) -> None:
    """Hidden and output neurons fit the chip (each violation names the node at which the
    running total first exceeds the limit), and there are output neurons."""
    for names, limit, what in ((hidden_names, spec.max_hidden, "hidden"),
                               (out_names, spec.max_outputs, "output")):
        running = 0
        for name in names:
            running += node_size(checked, name)
            if running > limit:
                log.add(name, "shape", f"{what} neurons: {running} in total up to this node "
                        f"({node_size(checked, name)} here) > {limit}, the {spec.name} limit")
                break
    if not hidden_names and not out_names:
        log.add(None, "nodes", "no neuron node: Xylo needs at least one hidden and one output "
                "LIF layer")
    elif not out_names:
        log.add(None, "nodes", "no neuron node feeds an Output: Xylo's outputs are output "
                "neurons")


def build_layer(name: str, role: str, checked: Checked, semantics: Semantics,
                ins: dict[str, AffineMap], filters: Collection[str], dt: float) -> Layer:
    """Neuron node ``name`` as a Xylo layer of ``role`` (``hidden``/``output``), its float
    parameters flattened per neuron, ``dt`` in seconds. Synapses: a CubaLIF/CubaLI's own
    current; for an LIF/LI, a ``direct`` synapse (when it receives spikes or a bias directly,
    or has no filter), then one ``filter`` synapse per synaptic filter in front of it."""
    node = checked.flat.nodes[name]
    p = checked.params[name]
    shape = checked.in_shapes[name]
    n = math.prod(shape)
    integration = semantics.integration
    cuba = isinstance(node, (nir.CubaLIF, nir.CubaLI))
    spiking = isinstance(node, SPIKING_TYPES)
    tau_mem = _flat(p["tau_mem" if cuba else "tau"], shape)
    c_mem = decay_fraction(tau_mem, dt, integration)
    r = _flat(p["r"], shape)
    synapses: list[Synapse] = []
    rep = ins[name]
    direct = {k: rep.dense(k, node_size(checked, k)) for k in rep.mats if k not in filters}
    zeros = np.zeros(n)
    if cuba:
        w_in = _flat(p["w_in"], shape)
        c_syn = decay_fraction(_flat(p["tau_syn"], shape), dt, integration)
        synapses.append(Synapse("current", name, c_syn, r * w_in / c_syn, direct,
                                rep.bias.copy(), zeros.copy()))
    else:
        if direct or np.any(rep.bias) or not any(k in filters for k in rep.mats):
            synapses.append(Synapse("direct", name, None, r.copy(), direct, rep.bias.copy(),
                                    zeros.copy()))
        for key in rep.mats:
            if key not in filters:
                continue
            fp = checked.params[key]
            fshape = checked.in_shapes[key]
            c_f = decay_fraction(_flat(fp["tau"], fshape), dt, integration)
            frep = ins[key]
            blocks = {k: frep.dense(k, node_size(checked, k)) for k in frep.mats}
            synapses.append(Synapse("filter", key, c_f, r * _flat(fp["r"], fshape), blocks,
                                    frep.bias.copy(), r * _flat(fp["v_leak"], fshape)))
    return Layer(name=name, node_type=type(node).__name__, role=role, shape=shape, n=n,
                 c_mem=c_mem, tau_mem=tau_mem, v_leak=_flat(p["v_leak"], shape),
                 v_th=_flat(p["v_threshold"], shape) if spiking else None,
                 v_reset=_flat(p["v_reset"], shape) if spiking else None, synapses=synapses)


def check_layer(layer: Layer, checked: Checked, dt: float | None, spec: XyloSpec,
                log: RuleLog) -> None:
    """The per-layer rules, in order: membrane decay, threshold above leak, synaptic decays
    (the decay rules only with a ``dt``), then, when all of those hold, the ranges."""
    decay_ok = dt is None or rule_membrane_decay(layer, dt, spec, log)
    threshold_ok = rule_threshold_above_leak(layer, log)
    synapses_ok = dt is None or rule_synaptic_decays(layer, checked, dt, spec, log)
    if decay_ok and threshold_ok and synapses_ok and dt is not None:
        rule_ranges(layer, spec, log)


def rule_membrane_decay(layer: Layer, dt: float, spec: XyloSpec, log: RuleLog) -> bool:
    """The membrane time constants fit a 4-bit decay shift (``dash <= dash_max``)."""
    dm = dash_of(layer.c_mem)
    if not np.any(dm > spec.dash_max):
        return True
    tau_field = "tau_mem" if layer.node_type in ("CubaLIF", "CubaLI") else "tau"
    worst = float(layer.tau_mem[np.argmax(dm)])
    log.add(layer.name, tau_field, f"tau = {worst:g} s = {worst / dt:g} dt needs a bit-shift "
            f"decay dash = {int(dm.max())} > {spec.dash_max} (4 bits): the longest "
            f"membrane time constant is about 2^{spec.dash_max} dt = "
            f"{dt * 2 ** spec.dash_max:g} s")
    return False


def rule_threshold_above_leak(layer: Layer, log: RuleLog) -> bool:
    """A spiking layer's thresholds lie above its ``v_leak`` (readouts always pass)."""
    if layer.v_th is not None and np.any(layer.v_th <= layer.v_leak):
        log.add(layer.name, "v_threshold", "v_threshold must be above v_leak: Xylo thresholds "
                "are positive integers above a resting membrane of 0")
        return False
    return True


def rule_synaptic_decays(layer: Layer, checked: Checked, dt: float, spec: XyloSpec,
                         log: RuleLog) -> bool:
    """:func:`rule_synaptic_decay` for every synapse of ``layer`` with a time constant (a
    CubaLIF/CubaLI's ``tau_syn``, a filter's ``tau``), in order; whether all hold."""
    results = []
    for syn in layer.synapses:
        if syn.c is None:
            continue
        fld = "tau_syn" if syn.kind == "current" else "tau"
        tau = _flat(checked.params[syn.node][fld], checked.in_shapes[syn.node])
        results.append(rule_synaptic_decay(syn.node, fld, tau, syn.c, dt, spec, log))
    return all(results)


def rule_synaptic_decay(node: str, fld: str, tau: np.ndarray, c: np.ndarray, dt: float,
                        spec: XyloSpec, log: RuleLog) -> bool:
    """Synaptic time constants ``tau`` (s, per neuron; decay fraction ``c`` per step) fit
    ``1 <= dash <= dash_max``: dash 0 would zero the current before it reaches the membrane."""
    d = dash_of(c)
    if np.any(d < 1):
        worst = float(tau[np.argmin(d)])
        log.add(node, fld, f"synaptic tau = {worst:g} s = {worst / dt:g} dt rounds to a "
                "bit-shift decay dash = 0, which zeroes the current before it reaches the "
                "membrane (the neuron is silent); Xylo synapses need tau >= "
                f"{2 ** 0.5:.3f} dt (dash >= 1)")
        return False
    if np.any(d > spec.dash_max):
        worst = float(tau[np.argmax(d)])
        log.add(node, fld, f"synaptic tau = {worst:g} s = {worst / dt:g} dt needs dash = "
                f"{int(d.max())} > {spec.dash_max} (4 bits)")
        return False
    return True


def rule_synapse_count(layer: Layer, spec: XyloSpec, log: RuleLog) -> None:
    """A layer needs no more synaptic currents per neuron than its role has on the chip."""
    limit = spec.hidden_synapses if layer.role == "hidden" else spec.output_synapses
    if len(layer.synapses) > limit:
        kinds = ", ".join(f"{s.kind} ({s.node})" for s in layer.synapses)
        log.add(layer.name, "edges", f"needs {len(layer.synapses)} synaptic currents per "
                f"neuron ({kinds}); Xylo {layer.role} neurons have {limit}")


def assign_layout(checked: Checked, semantics: Semantics, dt: float, hidden: list[Layer],
                  output_layers: list[Layer], outputs: list[OutputSlot]) -> Network:
    """The network in Xylo's index layout: input channels (one slot per Input node), hidden
    and output neurons numbered consecutively in the order given (each layer's ``offset``)."""
    net = Network(dt=dt, semantics=semantics, inputs=[], hidden=hidden,
                  output_layers=output_layers, outputs=outputs)
    offset = 0
    for name in checked.flat.inputs:
        size = node_size(checked, name)
        net.inputs.append(InputSlot(name, checked.out_shapes[name], offset, size))
        offset += size
    offset = 0
    for layer in net.hidden:
        layer.offset, offset = offset, offset + layer.n
    offset = 0
    for layer in net.output_layers:
        layer.offset, offset = offset, offset + layer.n
    return net


def rule_expansion(net: Network, inputs: set[str], spec: XyloSpec, log: RuleLog) -> None:
    """Chips where only the first ``max_input_targets`` hidden neurons take input weights and
    only the last ``max_readout_sources`` drive the readout (hidden neurons are allocated in
    schedule order)."""
    nh = sum(layer.n for layer in net.hidden)
    readers = {src for la in net.output_layers for syn in la.synapses for src in syn.blocks}
    for layer in net.hidden:
        fed = any(src in inputs for syn in layer.synapses for src in syn.blocks)
        end = layer.offset + layer.n
        if fed and spec.max_input_targets is not None and end > spec.max_input_targets:
            log.add(layer.name, "edges", f"receives input channels at hidden neurons "
                    f"{layer.offset}..{end - 1}; on {spec.name} only the first "
                    f"{spec.max_input_targets} hidden neurons take input weights")
        if (layer.name in readers and spec.max_readout_sources is not None
                and layer.offset < nh - spec.max_readout_sources):
            log.add(layer.name, "edges", f"drives the output neurons from hidden neurons "
                    f"{layer.offset}..{end - 1} of {nh}; on {spec.name} only the last "
                    f"{spec.max_readout_sources} hidden neurons drive the readout")


# --------------------------------------------------------------------------------------------
# gains, decays and extents shared with the quantizer; the precision rule; latency and notes
# --------------------------------------------------------------------------------------------


def synapse_factor(syn: Synapse, a_mem: np.ndarray, dash: np.ndarray) -> np.ndarray:
    """Per neuron: integer weight per unit float weight and per unit of membrane scale ``s``,
    chosen so that the steady-state response of Xylo (bit-shift decays ``a = 2**-dash``)
    equals the reference's: ``gain * a_syn * a_mem / (1 - a_syn)``."""
    a = np.exp2(-dash.astype(np.float64))
    return syn.gain * a * a_mem / (1.0 - a)


def layer_dashes(layer: Layer, spec: XyloSpec = SPEC) -> tuple[np.ndarray, list[np.ndarray]]:
    """Bit-shift decays of a layer: membrane (clipped to 0..15) and one per synapse (direct:
    1; else clipped to 1..15)."""
    dm = np.clip(dash_of(layer.c_mem), 0, spec.dash_max)
    ds = []
    for syn in layer.synapses:
        if syn.c is None:
            ds.append(np.ones(layer.n, dtype=np.int64))
        else:
            ds.append(np.clip(dash_of(syn.c), 1, spec.dash_max))
    return dm, ds


def layer_extent(layer: Layer, spec: XyloSpec = SPEC) -> dict[str, float]:
    """Float magnitudes that bound a layer's integer scale ``s`` (integer units per unit of
    ``v - v_leak``): largest ``|factor * w|`` per weight matrix (``in``, ``rec``, ``out``
    decided by the caller), smallest/largest threshold above leak, largest bias."""
    dm, ds = layer_dashes(layer, spec)
    a_mem = np.exp2(-dm.astype(np.float64))
    wmax = 0.0
    for syn, d in zip(layer.synapses, ds, strict=True):
        f = synapse_factor(syn, a_mem, d)
        for w in syn.blocks.values():
            if w.size:
                wmax = max(wmax, float(np.max(np.abs(f[:, None] * w))))
    theta = layer.v_th - layer.v_leak if layer.v_th is not None else None
    beta = layer_bias(layer, a_mem, ds)
    return {"w": wmax, "th_min": float(theta.min()) if theta is not None else math.nan,
            "th_max": float(theta.max()) if theta is not None else math.nan,
            "bias": float(np.max(np.abs(beta))) if beta.size else 0.0}


def layer_bias(layer: Layer, a_mem: np.ndarray, ds: list[np.ndarray]) -> np.ndarray:
    """Xylo membrane bias per neuron per unit of ``s``: ``a_mem`` times the steady-state
    offset of ``v - v_leak`` that the synapses' constant inputs produce."""
    beta = np.zeros(layer.n)
    for syn in layer.synapses:
        beta = beta + syn.gain * syn.bias + syn.offset
    return a_mem * beta


def rule_ranges(layer: Layer, spec: XyloSpec, log: RuleLog) -> None:
    """Is there an integer scale ``s`` that fits int8 weights (with the largest shift),
    int16 thresholds and biases, and still resolves the smallest threshold and the largest
    weight? A precision rule: its violations (``lossy``) leave a runnable network."""
    ext = layer_extent(layer, spec)
    limits = []
    if ext["w"] > 0:
        limits.append(spec.max_shifted_weight / ext["w"])
    if layer.v_th is not None:
        limits.append(spec.state_max / ext["th_max"])
    if ext["bias"] > 0:
        limits.append(spec.state_max / ext["bias"])
    if not limits:
        return
    s = min(limits)
    if layer.v_th is not None and s * ext["th_min"] < 1.0:
        log.add(layer.name, "v_threshold",
                f"int16 thresholds and int8 weights (x 2^{spec.max_weight_shift}) cannot both "
                f"hold this layer: at the largest scale that fits the weights/biases "
                f"({s:.4g} per unit) the smallest threshold above v_leak "
                f"({ext['th_min']:.4g}) is {s * ext['th_min']:.3g} < 1 integer unit",
                lossy=True)
    if ext["w"] > 0 and s * ext["w"] < 0.5:
        log.add(layer.name, "weight",
                f"int8 weights vanish: the thresholds/biases (int16, <= {spec.state_max}) "
                f"allow a scale of {s:.4g} per unit, at which the largest weight of this layer "
                f"({ext['w']:.4g} in membrane units) rounds to 0", lossy=True)


def assign_latency(net: Network, position: dict[str, int]) -> None:
    """Set each layer's ``lag``: the steps it runs behind the reference. A forward edge from a
    hidden neuron costs Xylo one extra step (its spikes are delivered at the next step); a
    recurrent edge already carries the previous step in the reference. ``position``: node ->
    schedule index. Adds a note when a layer receives paths of different lags."""
    lag: dict[str, int] = {s.name: 0 for s in net.inputs}
    mixed: list[str] = []
    for layer in sorted(net.layers, key=lambda la: position[la.name]):
        lags = set()
        for syn in layer.synapses:
            for src in syn.blocks:
                if src in lag and position.get(src, -1) < position[layer.name]:
                    extra = 0 if net.source_kind(src) == "input" else 1
                    lags.add(lag[src] + extra)
        layer.lag = max(lags) if lags else 0
        if len(lags) > 1:
            mixed.append(layer.name)
        lag[layer.name] = layer.lag
    if mixed:
        net.notes.append("layers " + ", ".join(mixed) + " receive paths of different depth: "
                         "Xylo's one step per hop delays them by different amounts, so no "
                         "single time shift aligns them with the reference")


def add_notes(net: Network, sem: Semantics) -> None:
    """Append to ``net.notes`` where Xylo departs from the reference semantics: reset,
    spikes per step, initial state, missing synaptic currents and output latency."""
    notes = net.notes
    for layer in net.layers:
        if layer.v_th is not None:
            if sem.spikes == "multi" and layer.role == "output":
                notes.append(f"{layer.name}: Xylo's output neurons emit at most one spike per "
                             "step; the graph counts several (spikes = 'multi')")
            elif sem.spikes == "single" and layer.role == "hidden" and sem.reset == "subtract":
                notes.append(f"{layer.name}: Xylo's hidden neurons emit up to 31 spikes per "
                             "step (while v >= threshold); the graph emits one "
                             "(spikes = 'single')")
            same = np.all(layer.v_reset == layer.v_leak)
            if sem.reset == "value":
                multi = (", and up to 31 spikes per step" if layer.role == "hidden" else "")
                notes.append(f"{layer.name}: the reference resets to v_reset; Xylo subtracts the "
                             f"threshold (the overshoot is kept{multi})"
                             + ("" if same else "; v_reset != v_leak"))
            elif not same:
                notes.append(f"{layer.name}: subtract-reset of v_th - v_reset differs from "
                             "Xylo's subtraction of v_th - v_leak where v_reset != v_leak")
        if sem.initial_state == "zero" and np.any(layer.v_leak != 0):
            notes.append(f"{layer.name}: the reference starts at v = 0, Xylo at rest (v_leak)")
        if any(s.kind == "direct" for s in layer.synapses):
            notes.append(f"{layer.name}: {layer.node_type} has no synaptic current; Xylo's "
                         "current decays with dash 1 (the input charge arrives over about "
                         "two steps, conserved)")
    for slot in net.outputs:
        lag = net.layer(slot.layer).lag
        if lag:
            notes.append(f"Output node {slot.name!r}: Xylo runs {lag} step(s) behind the "
                         "reference "
                         "(one per hop from a hidden neuron); option align_latency=True "
                         "shifts the outputs back")
