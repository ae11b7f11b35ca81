"""The ``lava-fixed`` artifact: a lava-dl ``netx`` HDF5 network (and how to load it).

Layout (what ``lava.lib.dl.netx.hdf5.Network`` 0.6.0 reads; slayer's ``export_hdf5`` writes
the same)::

    layer/{i}/type       b"dense", or b"dense_rec" for a population with its own loop
    layer/{i}/shape      [n]
    layer/{i}/weight     [n, n_src] integers (Lava's effective 8-bit weights)
    layer/{i}/weight_rec [n, n] integers (dense_rec only)
    layer/{i}/bias       [n] integers (only when nonzero): netx's bias_mant, bias_exp = 6

A convolution (a layer with a ``conv`` synapse; pooling already folded in by the plan)::

    layer/{i}/type       b"conv"
    layer/{i}/shape      [C, H, W] (netx reverses it to its (W, H, C))
    layer/{i}/weight     [C_out, C_in/groups, kh, kw] integers (PyTorch's layout; netx flips
                         and transposes it to Lava's Conv weight, as lava-fixed does)
    layer/{i}/stride, padding, dilation  [h, w];  groups  integer
    layer/{i}/bias       [W, H, C] integers, per neuron (only when nonzero)

A network that starts with a convolution starts with ``layer/0/type = b"input"`` and its
``shape`` ``[C, H, W]`` (no neuron): netx's input is then ``(W, H, C)``, and its spikes are fed
in that order (``run_netx``). A dense layer after a convolution is preceded by a
``b"flatten"`` layer: netx flattens ``(W, H, C)`` transposed, i.e. our ``[C, H, W]`` C order.
    layer/{i}/neuron/    type b"CUBA", iDecay = du + 1, vDecay = dv, vThMant = vth,
                         refDelay 1, gradedSpike False

netx maps ``du = iDecay - 1``, ``dv = vDecay``, ``vth = vThMant``, ``bias_exp = 6``; its
``optimize_weight_bits`` re-encodes the integer weights exactly (every value is already a
Loihi weight; a recurrent layer's two matrices share one sign mode). The constant input that
``lava-fixed`` gives a LIF/IF/LI/I layer through a timed Dense equals netx's neuron bias (``u``
keeps only this step's input when ``du = 4095``), but a neuron bias acts from Lava step 1,
before the layer's first real step: load the network with ``reset_interval`` (any value above
the run length) and ``reset_offset=1`` so that netx's ``LIFReset`` zeroes layer ``i`` at step
``i + 2``, its first real step. Then netx's spikes equal ``lava-fixed``'s, with the same latency
(one step per layer). A read-out last layer (``vThMant = 2**17``: never fires) is read by a
``Monitor`` on its ``v`` (``lava.json["readout"]``).

A CubaLIF/CubaLI layer's constant input (an Affine bias: it enters the synaptic current, and
netx's neuron bias enters v) is the weight of an always-on channel, quantized so by
``plan.quantize`` for every target: one more column of the layer's weight, fed by one more
neuron of the previous layer (zero weights in, neuron bias ``vth + 1``: it fires every step;
``plan.quantize`` keeps that layer's ``vth <= 4094``) or, for the first layer, by one more
input channel that is 1 at every step (``lava.json["input"]``).

Inputs are binary spikes; with the option ``input_scale`` they are graded payloads
``round(x * input_scale)`` (netx's ``input_message_bits = 24``, ``lava.json["load"]``), and the
first layer's weights are those ``plan.quantize`` divided by ``input_scale``.

Synaptic delays (the graph's ``Delay`` nodes; a chain has no alignment delays) are a dense
layer's ``delay`` ``[n, n_src]`` (netx builds a ``DelayDense``, as ``lava-fixed`` does); refused
beyond 62 steps (netx clamps), into a ``dense_rec`` layer (netx gives the recurrent synapse
the same delays), and after a layer with a positive neuron bias (spikes it causes before its
layer's reset would arrive after the delayed layer's reset: measured, with biases above the
threshold).

Not representable (``write_artifact`` refuses, naming the layer): several Input nodes (netx has
one input layer), a loop through several populations (netx's only loop is a layer's own
``dense_rec``), a layer with several inputs or not fed by the previous one (also a node split
into populations of one time constant each), outputs other than the last layer, a read-out
before the last layer, a CubaLIF/CubaLI constant input whose always-on neuron would sit in a
convolution layer, a membrane that starts away from ``v_reset`` (netx's neuron has no initial
state).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nrf_nir.atomic import atomic_folder, write_atomic
from nrf_nir.errors import NIRError

from .common import LavaProgram
from .plan import (
    ALWAYS_ON_VTH_MAX,
    BIAS_MAX,
    FixedLayer,
    FixedPlan,
    bias_as_weight,
    layer_groups,
)

#: ``reset_interval`` to pass to netx: larger than any run (each layer resets once).
RESET_INTERVAL = 2**30
#: netx builds a delayed dense layer with ``max_delay = 62`` and clamps larger delays.
NETX_MAX_DELAY = 62
NETX_FILE = "network.net"


def netx_problems(fixed: FixedPlan) -> list[str]:
    """Why ``fixed`` cannot be written as a netx network (empty: it can). Several Input nodes,
    a delayed own loop, a subtract-reset (ATRLIF) layer or a loop through several populations
    is the one reason given when there is one."""
    if len(fixed.plan.inputs) > 1:
        return [f"{len(fixed.plan.inputs)} Input nodes ({', '.join(fixed.plan.inputs)}): a netx "
                "network has one input layer"]
    for fl in fixed.layers:
        own = [s for s in fl.inputs if s.source == fixed.plan.index[fl.name]]
        if own:
            return [f"layer {fl.name!r}: its own loop through a Delay is a synaptic delay "
                    "from the layer to itself; netx's dense_rec has no delays"]
    subtract = [fl.name for fl in fixed.layers if fl.subtract]
    if subtract:
        return [f"layer {subtract[0]!r}: subtract reset, Lava's ATRLIF; netx 0.6.0 builds CUBA "
                "(LOIHI), SDNN and RF neurons, no ATRLIF"]
    loops = [g for g in layer_groups(fixed.layers, set(range(len(fixed.layers)))) if len(g) > 1]
    if loops:
        names = [fixed.layers[k].name for k in loops[0]]
        return [f"a loop through several populations ({' -> '.join([*names, names[0]])}): netx "
                "networks are feed-forward chains of layers (a loop only as one layer's own "
                "dense_rec)"]
    problems = []
    plan = fixed.plan
    for k, fl in enumerate(fixed.layers):
        kind = plan.layers[k].kind
        if len(fl.inputs) != 1 or fl.source != k - 1:
            problems.append(f"layer {fl.name!r}: netx networks are chains; this layer's input "
                            "is not the previous layer")
        if fl.w_rec is not None and fl.w_rec.shape != (fl.n, fl.n):
            problems.append(f"layer {fl.name!r}: recurrent weights of shape {fl.w_rec.shape}")
        if kind in ("CubaLIF", "CubaLI") and np.any(fl.bias != 0):
            if not bias_as_weight(plan.layers[k]):
                problems.append(f"layer {fl.name!r}: {kind} with a constant input (Affine "
                                "bias) and not one dense input: it enters the synaptic current, "
                                "and netx's only constant, the neuron bias, enters v (no exact "
                                "netx form)")
            elif k > 0 and fixed.layers[k - 1].inputs[0].kind == "conv":
                problems.append(f"layer {fl.name!r}: its constant input needs an always-on "
                                f"neuron in {fixed.layers[k - 1].name!r}, a convolution layer "
                                "(netx cannot add a neuron to its grid)")
            elif k > 0 and fixed.layers[k - 1].vth > ALWAYS_ON_VTH_MAX:
                problems.append(f"layer {fl.name!r}: its constant input needs an always-on "
                                f"neuron in {fixed.layers[k - 1].name!r}, whose threshold "
                                f"mantissa {fixed.layers[k - 1].vth} (forced by the option vth) "
                                f"exceeds {ALWAYS_ON_VTH_MAX}: a 13-bit neuron bias cannot "
                                "fire it every step")
        if kind in ("LIF", "IF") and plan.layers[k].du < 1 and np.any(fl.bias != 0):
            problems.append(f"layer {fl.name!r}: a constant input into the current of an LI "
                            "synapse (Lava's u); netx's only constant, the neuron bias, enters v")
        if fl.readout and k != len(fixed.layers) - 1:
            problems.append(f"layer {fl.name!r}: a read-out (non-spiking) layer sends no spikes "
                            "to the next netx layer")
        if np.any(np.abs(fl.bias) > BIAS_MAX):
            problems.append(f"layer {fl.name!r}: bias beyond 13 bits")
        leak = fl.v_bias is not None and bool(np.any(fl.v_bias))
        if fl.v_init is not None and np.any(fl.v_init) and not leak:
            problems.append(f"layer {fl.name!r}: the membrane starts away from v_reset; netx's "
                            "neuron has no initial state (and its reset zeroes v at the first "
                            "real step)")
        if leak:
            problems.append(f"layer {fl.name!r}: its leak (v_leak != v_reset, u filtering the "
                            "input) is a neuron bias on v with an initial v that offsets its "
                            "idle steps; netx's neuron has no initial state, and nrf-nir writes "
                            "netx's neuron bias only as a LIF's constant input")
        if not np.any(fl.w_ff):
            problems.append(f"layer {fl.name!r}: all-zero weights (netx cannot encode them)")
        problems.extend(_delay_problems(fixed, k))
        syn = fl.inputs[0]
        if syn.kind == "conv":
            assert syn.geometry is not None
            prev = fixed.layers[k - 1].inputs[0] if k > 0 else None
            if prev is not None and prev.kind != "conv":
                problems.append(f"layer {fl.name!r}: a convolution after a dense layer (netx "
                                "feeds a convolution only from the input or a convolution)")
            if fl.w_rec is not None:
                problems.append(f"layer {fl.name!r}: a convolution layer with a recurrent loop")
    split = [name for name, ks in plan.nodes.items() if len(ks) > 1]
    if split:
        problems.append(f"{', '.join(repr(n) for n in split)}: split into populations of one "
                        "time constant each, which netx's chain of layers cannot hold")
    last = len(fixed.layers) - 1
    for name, ks in plan.outputs.items():
        if ks != [last]:
            problems.append(f"output {name!r} reads layer(s) "
                            f"{', '.join(repr(fixed.layers[k].name) for k in ks)}; netx's "
                            "output is its last layer")
    return problems


def _delay_problems(fixed: FixedPlan, k: int) -> list[str]:
    """Why layer ``k``'s synaptic delays (the graph's ``Delay`` nodes; a netx chain has no
    alignment delays) have no netx form (empty: none, or they have one)."""
    fl = fixed.layers[k]
    if not fl.inputs or not np.any(fl.inputs[0].delay):
        return []
    steps = np.broadcast_to(np.asarray(fl.inputs[0].delay, dtype=np.int64), fl.w_ff.shape)
    got = []
    if fl.w_rec is not None:
        got.append(f"layer {fl.name!r}: a delayed input into a population with its own loop "
                   "(netx's dense_rec gives its recurrent synapse the input's delays)")
    if int(steps.max()) > NETX_MAX_DELAY:
        got.append(f"layer {fl.name!r}: a synaptic delay of {int(steps.max())} steps (netx "
                   f"clamps delays to {NETX_MAX_DELAY})")
    # a positive neuron bias (an always-on neuron's too) acts before its layer's first real
    # step; the spikes it may cause then, and those they cause downstream, are cancelled by
    # netx's reset of the next layer only when they arrive undelayed
    biased = [fixed.layers[j].name for j in range(k)
              if _feeds_always_on(fixed, j) or (not bias_as_weight(fixed.plan.layers[j])
                                                and np.any(fixed.layers[j].bias > 0))]
    if biased:
        got.append(f"layer {fl.name!r}: a delayed input after a layer with a positive neuron "
                   f"bias ({', '.join(repr(n) for n in biased)}): netx's bias acts before the "
                   "layer's first real step, and spikes it causes then would arrive after this "
                   "layer's reset")
    return got


def _delay_array(fl: FixedLayer, shape: tuple[int, ...]) -> np.ndarray | None:
    """A dense layer's netx ``delay`` ``shape`` (its ``weight``'s: the always-on channel's
    column and neuron, when there, get delay 0), or None when it has no delay."""
    syn = fl.inputs[0]
    if not np.any(syn.delay):
        return None
    steps = np.broadcast_to(np.asarray(syn.delay, dtype=np.int64), syn.weight.shape)
    return np.pad(steps, ((0, shape[0] - steps.shape[0]), (0, shape[1] - steps.shape[1])))


def _refuse_problems(fixed: FixedPlan) -> None:
    problems = netx_problems(fixed)
    if problems:
        raise NIRError("the network cannot be written as a lava-dl netx HDF5 file: "
                       + "; ".join(problems), field="target")


def always_on_input(fixed: FixedPlan) -> bool:
    """Whether the netx network takes one more input channel, 1 at every step: the constant
    input of its first layer (a CubaLIF/CubaLI fed by the input) as an always-on channel."""
    return bias_as_weight(fixed.plan.layers[0])


def input_message_bits(fixed: FixedPlan) -> int:
    """netx's ``input_message_bits``: 24 (graded payloads) with an ``input_scale``, else 0
    (binary spikes)."""
    return 0 if fixed.input_scale is None else 24


def _dense_arrays(fixed: FixedPlan, k: int
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Dense layer ``k``'s netx ``weight``, ``weight_rec`` and neuron ``bias``, with the
    always-on channels: a CubaLIF/CubaLI constant input becomes the weight column of an
    always-on channel (the extra input channel, or one more neuron of the previous layer, which
    a neuron bias of ``vth + 1`` fires every step); such a neuron is one more row here."""
    plan = fixed.plan
    fl: FixedLayer = fixed.layers[k]
    weight = fl.w_ff.astype(np.int64)
    w_rec = None if fl.w_rec is None else fl.w_rec.astype(np.int64)
    bias = fl.bias.astype(np.int64)
    if bias_as_weight(plan.layers[k]):  # one more input column, the always-on channel's
        weight = np.concatenate([weight, bias[:, None]], axis=1)
        bias = np.zeros(fl.n, dtype=np.int64)
    if _feeds_always_on(fixed, k):  # one more neuron: fires every step
        weight = np.concatenate([weight, np.zeros((1, weight.shape[1]), np.int64)])
        bias = np.concatenate([bias, [fl.vth + 1]])
        if w_rec is not None:
            w_rec = np.pad(w_rec, ((0, 1), (0, 1)))
    return weight, w_rec, bias


def _feeds_always_on(fixed: FixedPlan, k: int) -> bool:
    """Whether layer ``k`` holds the always-on neuron of the next layer's constant input."""
    return k + 1 < len(fixed.layers) and bias_as_weight(fixed.plan.layers[k + 1])


def write_netx(fixed: FixedPlan, path: Path) -> None:
    """Write ``fixed`` as a netx HDF5 file at ``path`` (atomically)."""
    _refuse_problems(fixed)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            layers = f.create_group("layer")
            index = 0

            def group(kind: bytes) -> h5py.Group:
                nonlocal index
                g = layers.create_group(str(index))
                g.create_dataset("type", (1,), "S10", [kind])
                index += 1
                return g

            first = fixed.layers[0].inputs[0].geometry
            if first is not None:
                group(b"input").create_dataset("shape", data=np.array(first.in_shape))
            for k, fl in enumerate(fixed.layers):
                geo = fl.inputs[0].geometry
                if geo is None and k > 0 and fixed.layers[k - 1].inputs[0].geometry is not None:
                    group(b"flatten")
                if geo is not None:
                    g = group(b"conv")
                    g.create_dataset("shape", data=np.array(geo.out_shape))
                    g.create_dataset("weight", data=fl.w_ff.astype(np.int64))
                    g.create_dataset("stride", data=np.array(geo.stride))
                    g.create_dataset("padding", data=np.array([p for p, _ in geo.padding]))
                    g.create_dataset("dilation", data=np.array(geo.dilation))
                    g.create_dataset("groups", data=geo.groups)
                    if np.any(fl.bias != 0):
                        g.create_dataset("bias", data=fl.bias.reshape(geo.out_shape)
                                         .transpose(2, 1, 0).astype(np.int64))
                else:
                    weight, w_rec, bias = _dense_arrays(fixed, k)
                    g = group(b"dense" if w_rec is None else b"dense_rec")
                    g.create_dataset("shape", data=np.array([weight.shape[0]]))
                    g.create_dataset("weight", data=weight)
                    if w_rec is not None:
                        g.create_dataset("weight_rec", data=w_rec)
                    if np.any(bias != 0):
                        g.create_dataset("bias", data=bias)
                    delay = _delay_array(fl, weight.shape)
                    if delay is not None:
                        g.create_dataset("delay", data=delay)
                g.create_dataset("neuron/type", (1,), "S10", [b"CUBA"])
                g.create_dataset("neuron/iDecay", data=fl.du + 1)
                g.create_dataset("neuron/vDecay", data=fl.dv)
                g.create_dataset("neuron/vThMant", data=fl.vth)
                g.create_dataset("neuron/refDelay", data=1)
                g.create_dataset("neuron/gradedSpike", data=False)

    write_atomic(path, write)


def write_artifact(prog: LavaProgram, directory: Path) -> list[Path]:
    """``network.net`` (netx HDF5), ``lava.json`` (how to load and run it) and
    ``quantization.json`` (the quantization report): all three or none
    (``nrf_nir.atomic.atomic_folder``), refused before anything is written when the network
    has no netx form."""
    fixed = prog.fixed
    if fixed is None:
        raise NIRError("the artifact needs a lava-fixed program", field="target")
    _refuse_problems(fixed)
    plan = fixed.plan
    bits = input_message_bits(fixed)
    values = ("binary spikes (input_message_bits=0)" if fixed.input_scale is None else
              f"graded spike payloads round(x * input_scale), half to even, input_scale = "
              f"{fixed.input_scale:g}, |payload| <= 2**23 - 1 (input_message_bits={bits}); "
              "the first layer's weights hold the 1 / input_scale")
    info: dict[str, Any] = {
        "format": "lava-dl netx HDF5 (lava-dl 0.6.0, lava-nc 0.10.0)",
        "file": NETX_FILE,
        "load": (f"lava.lib.dl.netx.hdf5.Network(net_config='{NETX_FILE}', "
                 f"reset_interval={RESET_INTERVAL}, reset_offset=1"
                 + (f", input_message_bits={bits})" if bits else ")")),
        "run_config": "Loihi2SimCfg(select_tag='fixed_pt')",
        "input": {"node": plan.input_name, "shape": list(plan.input_shape),
                  "neurons": plan.n_in + int(always_on_input(fixed)),
                  "input_scale": fixed.input_scale,
                  "values": values
                  + ("; one more channel, last, that is 1 at every step (the always-on "
                     "channel of the first layer's constant input)"
                     if always_on_input(fixed) else ""),
                  "order": ("netx's (W, H, C): the [C, H, W] input transposed"
                            if fixed.layers[0].inputs[0].geometry is not None
                            else "the input flattened")},
        "outputs": {name: list(plan.out_shapes[name]) for name in plan.outputs},
        "latency_steps": len(fixed.layers),
        "how_to_align": ("run T + latency_steps steps (zero input after T); output step t of "
                         "the graph is Lava step t + latency_steps"),
        "dt": plan.dt,
        "passes": list(plan.passes),
    }
    last = fixed.layers[-1]
    if last.readout:
        info["readout"] = {
            "layer": len(fixed.layers) - 1,
            "read": ("Monitor().probe(net.layers[-1].neuron.v, steps): the last layer never "
                     "fires (vThMant << 6 = 2**23 exceeds its 24-bit v); read its voltage"),
            "to_graph_units": "v / (64 * scale) + offset, per neuron",
            "scale": last.scale,
            "offset": (np.zeros(last.n) if last.v_offset is None
                       else last.v_offset).tolist(),
        }
    quantization = json.dumps(prog.quantization_report(), indent=2) + "\n"
    with atomic_folder(directory) as tmp:
        write_netx(fixed, tmp / NETX_FILE)
        (tmp / "lava.json").write_text(json.dumps(info, indent=2) + "\n")
        (tmp / "quantization.json").write_text(quantization)
    return [directory / NETX_FILE, directory / "lava.json", directory / "quantization.json"]


def run_netx(path: Path, x: np.ndarray, latency: int, readout: bool = False,
             always_on: bool = False, input_message_bits: int = 0) -> np.ndarray:
    """Load a netx network with Lava and run ``x`` ``[T, n_in]`` (one sample, flat ``[C, H,
    W]`` where netx's input is a ``(W, H, C)`` grid); spikes ``[T, n_out]`` aligned like
    lava-fixed's (``readout``: the last layer's integer voltage ``v``, read by a Monitor,
    instead). ``always_on``: append the input channel that is 1 at every step (``lava.json``
    says so). ``input_message_bits``: netx's (24 for the payloads of an ``input_scale``;
    ``x`` then holds the payloads). Processes are stopped whatever happens."""
    if always_on:
        x = np.concatenate([x, np.ones((x.shape[0], 1), dtype=x.dtype)], axis=1)
    from lava.lib.dl.netx.hdf5 import Network

    from .runner import LAVA, _stop, children

    T = int(x.shape[0])
    steps = T + latency
    data = np.zeros((x.shape[1], steps), dtype=np.int32)
    data[:, :T] = x.T
    if always_on:
        data[-1] = 1
    before = children()
    root = None
    try:
        net = Network(net_config=str(path), reset_interval=RESET_INTERVAL, reset_offset=1,
                      input_message_bits=input_message_bits)
        grid = tuple(int(v) for v in net.inp.shape)
        if len(grid) == 3:  # (W, H, C): our [C, H, W] transposed
            W, H, C = grid
            data = np.ascontiguousarray(
                data.reshape(C, H, W, steps).transpose(2, 1, 0, 3).reshape(-1, steps))
        src = LAVA["Source"](data=data)
        root = src
        (src.s_out.reshape(grid) if len(grid) == 3 else src.s_out).connect(net.inp)
        if readout:
            monitor = LAVA["Monitor"]()
            monitor.probe(net.layers[-1].neuron.v, steps)
            src.run(condition=LAVA["RunSteps"](num_steps=steps),
                    run_cfg=LAVA["Loihi2SimCfg"](select_tag="fixed_pt"))
            (v,) = (d["v"] for d in monitor.get_data().values())
            volts = np.asarray(v, dtype=np.int64)
            if volts.ndim == 4:  # (steps, W, H, C) -> [steps, C*H*W]
                volts = volts.transpose(0, 3, 2, 1).reshape(volts.shape[0], -1)
            return volts[latency:latency + T]
        sink = LAVA["Sink"](shape=net.out.shape, buffer=steps)
        net.out.connect(sink.a_in)
        src.run(condition=LAVA["RunSteps"](num_steps=steps),
                run_cfg=LAVA["Loihi2SimCfg"](select_tag="fixed_pt"))
        got = np.asarray(sink.data.get())
        if got.ndim == 4:  # (W, H, C, steps) -> [C*H*W, steps]
            got = got.transpose(2, 1, 0, 3).reshape(-1, got.shape[-1])
        return got[:, latency:latency + T].T.astype(np.int8)
    finally:
        _stop(getattr(root, "_runtime", None), before)
