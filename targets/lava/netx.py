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

Not representable (``write_artifact`` refuses, naming the layer): a layer with several inputs
or not fed by the previous one, outputs other than the last layer, a read-out before the last
layer, and a CubaLIF/CubaLI layer with a constant input (netx's bias adds to v, lava-fixed's to
the synaptic current).
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
from .plan import BIAS_MAX, FixedPlan

#: ``reset_interval`` to pass to netx: larger than any run (each layer resets once).
RESET_INTERVAL = 2**30
NETX_FILE = "network.net"


def netx_problems(fixed: FixedPlan) -> list[str]:
    """Why ``fixed`` cannot be written as a netx network (empty: it can)."""
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
            problems.append(f"layer {fl.name!r}: {kind} with a constant input (Affine bias): "
                            "it enters the synaptic current, and netx's only constant, the "
                            "neuron bias, enters v (no exact netx form)")
        if fl.readout and k != len(fixed.layers) - 1:
            problems.append(f"layer {fl.name!r}: a read-out (non-spiking) layer sends no spikes "
                            "to the next netx layer")
        if np.any(np.abs(fl.bias) > BIAS_MAX):
            problems.append(f"layer {fl.name!r}: bias beyond 13 bits")
        if not np.any(fl.w_ff):
            problems.append(f"layer {fl.name!r}: all-zero weights (netx cannot encode them)")
        syn = fl.inputs[0]
        if syn.kind == "conv":
            assert syn.geometry is not None
            prev = fixed.layers[k - 1].inputs[0] if k > 0 else None
            if prev is not None and prev.kind != "conv":
                problems.append(f"layer {fl.name!r}: a convolution after a dense layer (netx "
                                "feeds a convolution only from the input or a convolution)")
            if fl.w_rec is not None:
                problems.append(f"layer {fl.name!r}: a convolution layer with a recurrent loop")
    last = len(fixed.layers) - 1
    for name, k in plan.outputs.items():
        if k != last:
            problems.append(f"output {name!r} reads layer {fixed.layers[k].name!r}; netx's "
                            "output is its last layer")
    return problems


def _refuse_problems(fixed: FixedPlan) -> None:
    problems = netx_problems(fixed)
    if problems:
        raise NIRError("the network cannot be written as a lava-dl netx HDF5 file: "
                       + "; ".join(problems), field="target")


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
                    g = group(b"dense" if fl.w_rec is None else b"dense_rec")
                    g.create_dataset("shape", data=np.array([fl.n]))
                    g.create_dataset("weight", data=fl.w_ff.astype(np.int64))
                    if fl.w_rec is not None:
                        g.create_dataset("weight_rec", data=fl.w_rec.astype(np.int64))
                    if np.any(fl.bias != 0):
                        g.create_dataset("bias", data=fl.bias.astype(np.int64))
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
    info: dict[str, Any] = {
        "format": "lava-dl netx HDF5 (lava-dl 0.6.0, lava-nc 0.10.0)",
        "file": NETX_FILE,
        "load": (f"lava.lib.dl.netx.hdf5.Network(net_config='{NETX_FILE}', "
                 f"reset_interval={RESET_INTERVAL}, reset_offset=1)"),
        "run_config": "Loihi2SimCfg(select_tag='fixed_pt')",
        "input": {"node": plan.input_name, "shape": list(plan.input_shape),
                  "neurons": plan.n_in, "values": "binary spikes (input_message_bits=0)",
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


def run_netx(path: Path, x: np.ndarray, latency: int, readout: bool = False) -> np.ndarray:
    """Load a netx network with Lava and run ``x`` ``[T, n_in]`` (one sample, flat ``[C, H,
    W]`` where netx's input is a ``(W, H, C)`` grid); spikes ``[T, n_out]`` aligned like
    lava-fixed's (``readout``: the last layer's integer voltage ``v``, read by a Monitor,
    instead). Processes are stopped whatever happens."""
    from lava.lib.dl.netx.hdf5 import Network

    from .runner import LAVA, _stop, children

    T = int(x.shape[0])
    steps = T + latency
    data = np.zeros((x.shape[1], steps), dtype=np.int32)
    data[:, :T] = x.T
    before = children()
    root = None
    try:
        net = Network(net_config=str(path), reset_interval=RESET_INTERVAL, reset_offset=1)
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
