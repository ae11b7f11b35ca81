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
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import torch

from nrf_nir.errors import NIRError
from nrf_nir.reference import make_kernel
from nrf_nir.semantics import Semantics
from nrf_nir.targets import Violation
from nrf_nir.validate import Checked, Identity

# --------------------------------------------------------------------------------------------
# the hardware
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XyloSpec:
    """Limits of one Xylo chip, as XyloSim 0.1.3 (``xylosim.v2``) implements them.

    Bit widths: weights are ``int8`` (``XyloSynapse.weight``), left-shifted by one shift per
    weight matrix (input / recurrent / readout); synaptic currents, membranes, thresholds and
    biases are ``int16`` with saturating additions; decays are bit shifts ``dash`` (4 bits);
    input channels deliver at most 15 events per step, hidden neurons emit at most 31 spikes
    per step, output neurons at most 1.
    """

    name: str = "Xylo Audio 2 (SYNS61201)"
    chip: str = "syns61201"
    max_inputs: int = 16
    max_hidden: int = 1000
    max_outputs: int = 8
    hidden_synapses: int = 2
    output_synapses: int = 1
    weight_min: int = -128
    weight_max: int = 127
    state_min: int = -32768
    state_max: int = 32767
    dash_max: int = 15
    max_weight_shift: int = 7
    max_input_spikes: int = 15
    max_hidden_spikes: int = 31
    max_output_spikes: int = 1
    #: hidden neurons that can receive input events: the first N (input expansion neurons)
    max_input_targets: int | None = None
    #: hidden neurons that can drive the output neurons: the last N (output expansion neurons)
    max_readout_sources: int | None = None

    @property
    def max_shifted_weight(self) -> int:
        return self.weight_max << self.max_weight_shift


SPEC = XyloSpec()

#: The Xylo chips whose SNN core runs XyloSim's v2 layer, by Rockpool device name. Limits from
#: Rockpool 3.1.0: ``syns63300/xylo_mapper.py`` (496 hidden, 16 outputs) and
#: ``xylo_samna.config_from_specification`` (one synapse per neuron; only the first 128
#: hidden neurons take input weights and only the last 128 drive the readout), and
#: ``syns65302`` likewise (992 hidden, 32 outputs, two synapses). Both simulate with
#: ``syns63300.XyloSim`` on ``xylosim.v2.XyloLayer``, the layer Audio 2 uses. 16 input
#: channels as Audio 2 (Rockpool checks no input count for these two). Xylo v1 (``syns61300``,
#: ``xylosim.v1``) is not included: its layer is another simulator.
SPECS: dict[str, XyloSpec] = {
    "syns61201": SPEC,
    "syns63300": XyloSpec(name="Xylo IMU (SYNS63300)", chip="syns63300", max_hidden=496,
                          max_outputs=16, hidden_synapses=1, max_input_targets=128,
                          max_readout_sources=128),
    "syns65302": XyloSpec(name="Xylo Audio 3 (SYNS65302)", chip="syns65302", max_hidden=992,
                          max_outputs=32, max_input_targets=128, max_readout_sources=128),
}
#: other names for the chips
CHIP_ALIASES = {"audio2": "syns61201", "xylo-audio2": "syns61201", "imu": "syns63300",
                "xylo-imu": "syns63300", "audio3": "syns65302", "xylo-audio3": "syns65302"}


def chip_spec(chip: str | XyloSpec | None) -> XyloSpec:
    """The limits of ``chip`` (a Rockpool device name such as ``syns63300``, or ``audio2``,
    ``imu``, ``audio3``); None is Xylo Audio 2."""
    if chip is None:
        return SPEC
    if isinstance(chip, XyloSpec):
        return chip
    key = CHIP_ALIASES.get(str(chip).lower(), str(chip).lower())
    if key not in SPECS:
        known = ", ".join([*SPECS, *CHIP_ALIASES])
        raise NIRError(f"unknown Xylo chip {chip!r}; known: {known}", field="chip")
    return SPECS[key]

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
    return np.broadcast_to(np.asarray(arr, dtype=np.float64), shape).reshape(-1).copy()


class _Rep:
    """A node's output as an affine function of the sources: sum of ``M[src] @ y_src`` plus
    ``bias``; ``M[src]`` is None for the identity (a source itself)."""

    def __init__(self, size: int, mats: dict[str, np.ndarray | None] | None = None,
                 bias: np.ndarray | None = None) -> None:
        self.size = size
        self.mats: dict[str, np.ndarray | None] = dict(mats or {})
        self.bias = np.zeros(size) if bias is None else bias

    def dense(self, src: str, n_src: int) -> np.ndarray:
        m = self.mats[src]
        return np.eye(n_src) if m is None else m


# --------------------------------------------------------------------------------------------
# the analysis
# --------------------------------------------------------------------------------------------


def analyse(checked: Checked, semantics: Semantics, *, target: str = "xylo",
            spec: XyloSpec = SPEC) -> tuple[Network | None, list[Violation]]:
    """Map ``checked`` onto Xylo's layout; return the network (None when a rule is violated
    so that no mapping exists) and every design-rule violation found. Only precision
    rules (``_range_check``: int8/int16 cannot resolve a layer's scale) leave a network:
    quantization clips and rounds it and it runs, though not as the reference does."""
    out: list[Violation] = []
    lossy: list[Violation] = []

    def add(node: str | None, fld: str | None, message: str) -> None:
        out.append(Violation(target, node, fld, message))

    def add_lossy(node: str | None, fld: str | None, message: str) -> None:
        add(node, fld, message)
        lossy.append(out[-1])

    flat = checked.flat
    nodes = flat.nodes
    dt = semantics.dt
    if dt is None:
        add(None, "dt", "the graph has no time step (metadata 'dt'); Xylo's bit-shift decays "
            "are defined relative to dt: pass dt")
    order = [n for unit in checked.units for n in unit.members]
    position = {n: i for i, n in enumerate(order)}

    # ---- node types
    for name, node in nodes.items():
        if not isinstance(node, (*LINEAR_TYPES, *SPIKING_TYPES, *READOUT_TYPES)):
            kind = type(node).__name__
            add(name, "type", f"{kind} has no Xylo equivalent (Xylo runs LIF neurons with "
                f"bit-shift decays); supported: {SUPPORTED}")

    # ---- roles: sources, filters, readouts
    def size(name: str) -> int:
        return math.prod(checked.out_shapes[name])

    spiking = [n for n in order if isinstance(nodes[n], SPIKING_TYPES)]
    leaky = [n for n in order if isinstance(nodes[n], READOUT_TYPES)]
    filters: set[str] = set()
    for name in leaky:
        succ = flat.succs[name]
        if (isinstance(nodes[name], nir.LI) and len(succ) == 1
                and isinstance(nodes[succ[0]], nir.LIF)
                and checked.in_shapes[succ[0]] == checked.out_shapes[name]):
            filters.add(name)
    neurons = [n for n in order if n in spiking or (n in leaky and n not in filters)]
    sources = list(flat.inputs) + spiking

    n_in_total = sum(size(n) for n in flat.inputs)
    running = 0
    for name in flat.inputs:
        running += size(name)
        if running > spec.max_inputs:
            add(name, "shape", f"input channels: {running} in total (this Input has "
                f"{size(name)}) > {spec.max_inputs}, the {spec.name} limit")
            break
    too_big = [n for n in [*flat.inputs, *spiking, *leaky] if size(n) > MAX_SOURCE_SIZE]
    if any(isinstance(nodes[n], (nir.I, nir.IF, nir.Delay, nir.Threshold)) for n in nodes):
        too_big.append("<unsupported>")
    if too_big or n_in_total == 0:
        for n in too_big:
            if n in nodes and n not in flat.inputs:
                add(n, "shape", f"{size(n)} neurons: far over the {spec.max_hidden} hidden "
                    f"neurons of {spec.name}; not flattened to dense weights")
        return None, out

    # ---- compose stateless chains into dense affine maps of the sources
    comp_sem = dataclasses.replace(semantics, dt=dt or 1.0)
    cpu = torch.device("cpu")
    reps: dict[str, _Rep] = {}
    failed: set[str] = set()

    def rep(name: str) -> _Rep | None:
        if name in reps:
            return reps[name]
        if name in failed:
            return None
        node = nodes[name]
        if name in sources or name in filters or name in neurons:
            reps[name] = _Rep(size(name), {name: None})
            return reps[name]
        total = _Rep(math.prod(checked.in_shapes[name]))
        for src in flat.preds[name]:
            r = rep(src)
            if r is None:
                failed.add(name)
                return None
            for key, m in r.mats.items():
                cur = total.mats.get(key, "absent")
                if isinstance(cur, str):
                    total.mats[key] = m
                else:
                    n_src = size(key)
                    total.mats[key] = total.dense(key, n_src) + r.dense(key, n_src)
            total.bias = total.bias + r.bias
        if isinstance(node, (nir.Input, nir.Output, Identity)):
            reps[name] = total
            return total
        in_shape, out_shape = checked.in_shapes[name], checked.out_shapes[name]
        n_out = math.prod(out_shape)
        for key in total.mats:
            if size(key) * max(n_out, total.size) > MAX_DENSE_ELEMENTS:
                add(name, "shape", f"{type(node).__name__} on {in_shape} -> {out_shape} cannot "
                    f"be flattened to dense Xylo weights: {size(key)} x {n_out} elements > "
                    f"{MAX_DENSE_ELEMENTS:,}")
                failed.add(name)
                return None
        if isinstance(node, nir.Flatten):
            reps[name] = total
            return total
        kernel = make_kernel(name, node, checked.params[name], in_shape, out_shape, comp_sem,
                             torch.float64, cpu)
        with torch.no_grad():
            zero = kernel.apply(torch.zeros(1, *in_shape, dtype=torch.float64))
            result = _Rep(n_out)
            for key in total.mats:
                n_src = size(key)
                basis = torch.from_numpy(total.dense(key, n_src).T.copy()).reshape(
                    n_src, *in_shape)
                y = (kernel.apply(basis) - zero).reshape(n_src, n_out)
                result.mats[key] = y.T.numpy().copy()
            b = torch.from_numpy(total.bias.copy()).reshape(1, *in_shape)
            result.bias = kernel.apply(b).reshape(-1).numpy().copy()
        reps[name] = result
        return result

    def incoming(name: str) -> _Rep | None:
        total = _Rep(math.prod(checked.in_shapes[name]))
        for src in flat.preds[name]:
            r = rep(src)
            if r is None:
                return None
            for key in r.mats:
                n_src = size(key)
                prev = total.mats.get(key)  # never None here: incoming sums are dense
                dense = r.dense(key, n_src)
                total.mats[key] = dense if prev is None else prev + dense
            total.bias = total.bias + r.bias
        return total

    ins: dict[str, _Rep] = {}
    for name in [*neurons, *filters, *flat.outputs]:
        r = incoming(name)
        if r is None:
            return None, out
        ins[name] = r

    # ---- outputs: fed directly by one neuron node
    output_of: dict[str, list[str]] = {}
    outputs: list[OutputSlot] = []
    for oname in flat.outputs:
        r = ins[oname]
        keys = list(r.mats)
        ok = (len(keys) == 1 and keys[0] in neurons and not np.any(r.bias)
              and np.array_equal(r.dense(keys[0], size(keys[0])), np.eye(size(keys[0]))))
        if not ok:
            what = ", ".join(keys) or "nothing"
            add(oname, "edges", "Xylo's outputs are the spikes (or membranes) of its output "
                "neurons: an Output must be fed directly (through Identity/Flatten only) by "
                f"one LIF/CubaLIF (or LI/CubaLI readout) node; this one receives {what}")
            continue
        output_of.setdefault(keys[0], []).append(oname)
        outputs.append(OutputSlot(oname, keys[0], checked.out_shapes[oname]))

    # ---- who feeds whom
    feeds: dict[str, set[str]] = {n: set() for n in [*sources, *filters, *neurons]}
    for tgt in [*neurons, *filters]:
        for src in ins[tgt].mats:
            feeds.setdefault(src, set()).add(tgt)

    out_layers = [n for n in neurons if n in output_of]
    hidden_names = [n for n in neurons if n not in output_of]
    for name in out_layers:
        node = nodes[name]
        others = sorted(feeds.get(name, set()) - set(flat.outputs))
        if others:
            add(name, "edges", f"drives an Output, so it maps to Xylo output neurons, which "
                f"drive no other neuron; it also feeds {', '.join(others)}")
        srcs = _synapse_sources(ins[name], filters, ins)
        if any(s in flat.inputs for s in srcs):
            add(name, "edges", "Xylo output neurons receive only from hidden neurons, not "
                "from input channels: put a hidden LIF/CubaLIF layer between the Input and "
                "this node")
        bad = sorted(s for s in srcs if s in out_layers)
        if bad:
            add(name, "edges", f"Xylo output neurons receive only from hidden neurons; this "
                f"one receives from output neurons {', '.join(bad)} (recurrent or chained "
                "output layers are not possible)")
    for name in hidden_names:
        if isinstance(nodes[name], READOUT_TYPES):
            kind = type(nodes[name]).__name__
            add(name, "type", f"{kind} is neither an output readout nor the synaptic filter "
                "of a single LIF: Xylo's hidden neurons spike (use LIF/CubaLIF)")
    for name in filters:
        for src in ins[name].mats:
            if src in filters or src in out_layers:
                add(name, "edges", f"a synaptic filter (LI -> LIF) receives spikes from "
                    f"input channels or hidden neurons only; it receives {src}")

    # ---- sizes
    for names, limit, what in ((hidden_names, spec.max_hidden, "hidden"),
                               (out_layers, spec.max_outputs, "output")):
        running = 0
        for name in names:
            running += size(name)
            if running > limit:
                add(name, "shape", f"{what} neurons: {running} in total up to this node "
                    f"({size(name)} here) > {limit}, the {spec.name} limit")
                break
    if not hidden_names and not out_layers:
        add(None, "nodes", "no neuron node: Xylo needs at least one hidden and one output "
            "LIF layer")
    elif not out_layers:
        add(None, "nodes", "no neuron node feeds an Output: Xylo's outputs are output "
            "neurons")

    # ---- per layer: synapses, time constants, thresholds, ranges
    integration = semantics.integration
    layers: dict[str, Layer] = {}
    for name in [*hidden_names, *out_layers]:
        role = "output" if name in output_of else "hidden"
        layer = _layer(name, role, checked, semantics, ins, filters, nodes, dt or 1.0,
                       spec, add, dt is not None, size, add_lossy)
        if layer is not None:
            layers[name] = layer
            limit = spec.hidden_synapses if role == "hidden" else spec.output_synapses
            if len(layer.synapses) > limit:
                kinds = ", ".join(f"{s.kind} ({s.node})" for s in layer.synapses)
                add(name, "edges", f"needs {len(layer.synapses)} synaptic currents per neuron "
                    f"({kinds}); Xylo {role} neurons have {limit}")
    if len(out) > len(lossy) or dt is None:
        return None, out

    # ---- layout: hidden ids, output ids, latency
    net = Network(dt=dt, semantics=semantics,
                  inputs=[], hidden=[layers[n] for n in hidden_names],
                  output_layers=[layers[n] for n in out_layers], outputs=outputs)
    offset = 0
    for name in flat.inputs:
        net.inputs.append(InputSlot(name, checked.out_shapes[name], offset, size(name)))
        offset += size(name)
    offset = 0
    for layer in net.hidden:
        layer.offset, offset = offset, offset + layer.n
    offset = 0
    for layer in net.output_layers:
        layer.offset, offset = offset, offset + layer.n
    _expansion_rules(net, set(flat.inputs), spec, add)
    if len(out) > len(lossy):
        return None, out
    _latency(net, position, integration)
    _notes(net, semantics)
    return net, out


def _expansion_rules(net: Network, inputs: set[str], spec: XyloSpec, add: Any) -> None:
    """Chips where only the first ``max_input_targets`` hidden neurons take input weights and
    only the last ``max_readout_sources`` drive the readout (hidden neurons are allocated in
    schedule order)."""
    nh = sum(layer.n for layer in net.hidden)
    readers = {src for la in net.output_layers for syn in la.synapses for src in syn.blocks}
    for layer in net.hidden:
        fed = any(src in inputs for syn in layer.synapses for src in syn.blocks)
        end = layer.offset + layer.n
        if fed and spec.max_input_targets is not None and end > spec.max_input_targets:
            add(layer.name, "edges", f"receives input channels at hidden neurons "
                f"{layer.offset}..{end - 1}; on {spec.name} only the first "
                f"{spec.max_input_targets} hidden neurons take input weights")
        if (layer.name in readers and spec.max_readout_sources is not None
                and layer.offset < nh - spec.max_readout_sources):
            add(layer.name, "edges", f"drives the output neurons from hidden neurons "
                f"{layer.offset}..{end - 1} of {nh}; on {spec.name} only the last "
                f"{spec.max_readout_sources} hidden neurons drive the readout")


def _synapse_sources(r: _Rep, filters: set[str], ins: dict[str, _Rep]) -> set[str]:
    found: set[str] = set()
    for key in r.mats:
        if key in filters:
            found |= set(ins[key].mats)
        else:
            found.add(key)
    return found


def _layer(name: str, role: str, checked: Checked, semantics: Semantics,
           ins: dict[str, _Rep], filters: set[str], nodes: dict[str, Any], dt: float,
           spec: XyloSpec, add: Any, have_dt: bool, size: Any,
           add_lossy: Any) -> Layer | None:
    node = nodes[name]
    p = checked.params[name]
    shape = checked.in_shapes[name]
    n = math.prod(shape)
    integration = semantics.integration
    cuba = isinstance(node, (nir.CubaLIF, nir.CubaLI))
    spiking = isinstance(node, SPIKING_TYPES)
    tau_field = "tau_mem" if cuba else "tau"
    tau_mem = _flat(p[tau_field], shape)
    c_mem = decay_fraction(tau_mem, dt, integration)
    r = _flat(p["r"], shape)
    v_leak = _flat(p["v_leak"], shape)
    v_th = _flat(p["v_threshold"], shape) if spiking else None
    v_reset = _flat(p["v_reset"], shape) if spiking else None
    ok = True
    if have_dt:
        dm = dash_of(c_mem)
        if np.any(dm > spec.dash_max):
            worst = float(tau_mem[np.argmax(dm)])
            add(name, tau_field, f"tau = {worst:g} s = {worst / dt:g} dt needs a bit-shift "
                f"decay dash = {int(dm.max())} > {spec.dash_max} (4 bits): the longest "
                f"membrane time constant is about 2^{spec.dash_max} dt = "
                f"{dt * 2 ** spec.dash_max:g} s")
            ok = False
    if v_th is not None and np.any(v_th <= v_leak):  # v_th is set iff spiking
        add(name, "v_threshold", "v_threshold must be above v_leak: Xylo thresholds are "
            "positive integers above a resting membrane of 0")
        ok = False
    synapses: list[Synapse] = []
    rep = ins[name]
    direct = {k: rep.dense(k, size(k)) for k in rep.mats if k not in filters}
    zeros = np.zeros(n)
    if cuba:
        w_in = _flat(p["w_in"], shape)
        tau_syn = _flat(p["tau_syn"], shape)
        c_syn = decay_fraction(tau_syn, dt, integration)
        if have_dt and not _syn_dash_ok(name, "tau_syn", tau_syn, c_syn, dt, spec, add):
            ok = False
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
            tau_f = _flat(fp["tau"], fshape)
            c_f = decay_fraction(tau_f, dt, integration)
            if have_dt and not _syn_dash_ok(key, "tau", tau_f, c_f, dt, spec, add):
                ok = False
            frep = ins[key]
            blocks = {k: frep.dense(k, size(k)) for k in frep.mats}
            synapses.append(Synapse("filter", key, c_f, r * _flat(fp["r"], fshape), blocks,
                                    frep.bias.copy(), r * _flat(fp["v_leak"], fshape)))
    layer = Layer(name=name, node_type=type(node).__name__, role=role, shape=shape, n=n,
                  c_mem=c_mem, tau_mem=tau_mem, v_leak=v_leak, v_th=v_th, v_reset=v_reset,
                  synapses=synapses)
    if ok and have_dt:
        _range_check(layer, spec, add_lossy)
    return layer


def _syn_dash_ok(node: str, fld: str, tau: np.ndarray, c: np.ndarray, dt: float,
                 spec: XyloSpec, add: Any) -> bool:
    d = dash_of(c)
    if np.any(d < 1):
        worst = float(tau[np.argmin(d)])
        add(node, fld, f"synaptic tau = {worst:g} s = {worst / dt:g} dt rounds to a bit-shift "
            "decay dash = 0, which zeroes the current before it reaches the membrane (the "
            f"neuron is silent); Xylo synapses need tau >= {2 ** 0.5:.3f} dt (dash >= 1)")
        return False
    if np.any(d > spec.dash_max):
        worst = float(tau[np.argmax(d)])
        add(node, fld, f"synaptic tau = {worst:g} s = {worst / dt:g} dt needs dash = "
            f"{int(d.max())} > {spec.dash_max} (4 bits)")
        return False
    return True


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


def _range_check(layer: Layer, spec: XyloSpec, add: Any) -> None:
    """Is there an integer scale ``s`` that fits int8 weights (with the largest shift),
    int16 thresholds and biases, and still resolves the smallest threshold and the largest
    weight?"""
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
        add(layer.name, "v_threshold",
            f"int16 thresholds and int8 weights (x 2^{spec.max_weight_shift}) cannot both "
            f"hold this layer: at the largest scale that fits the weights/biases "
            f"({s:.4g} per unit) the smallest threshold above v_leak "
            f"({ext['th_min']:.4g}) is {s * ext['th_min']:.3g} < 1 integer unit")
    if ext["w"] > 0 and s * ext["w"] < 0.5:
        add(layer.name, "weight",
            f"int8 weights vanish: the thresholds/biases (int16, <= {spec.state_max}) allow "
            f"a scale of {s:.4g} per unit, at which the largest weight of this layer "
            f"({ext['w']:.4g} in membrane units) rounds to 0")


def _latency(net: Network, position: dict[str, int], integration: str) -> None:
    """Steps each layer lags the reference: a forward edge from a hidden neuron costs Xylo one
    extra step (its spikes are delivered at the next step); a recurrent edge already carries
    the previous step in the reference."""
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


def _notes(net: Network, sem: Semantics) -> None:
    notes = net.notes
    for layer in net.layers:
        if layer.v_th is not None:
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
