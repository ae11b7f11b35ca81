"""Quantization of an analysed network (``rules.Network``) into an integer ``XyloConfig``.

Our own quantizer (Rockpool's ``global_quantize``/``channel_quantize`` scale the output bias
wrongly, zero hidden biases and mutate their input). For each neuron layer:

1. **Decays, per neuron**: ``dash = round(log2(1/c))`` where ``c`` is the reference's decay
   fraction per step (``dt/tau`` for Euler, ``1 - exp(-dt/tau)`` for exponential
   integration), i.e. ``round(log2(tau/dt))``; membranes 0..15, synapses 1..15 (dash 0 would
   zero the current). The time constant Xylo then implements and its relative error are
   reported per neuron.
2. **Gains**: every integer weight is ``s * factor * w`` with
   ``factor = gain * a_syn * a_mem / (1 - a_syn)``, ``a = 2**-dash``: the steady-state
   (DC) response of each Xylo synapse and membrane equals the reference's, so a rate code
   survives the tau rounding. ``s`` is the layer's scale: integer membrane units per unit of
   ``v - v_leak``.
3. **Scale per layer**: the largest ``s`` such that the largest threshold above ``v_leak``
   fits ``32767 / headroom`` (membrane readouts: the largest possible steady membrane), the
   biases fit int16 and the weights fit int8 with a shift of at most 7; then one left-shift
   per weight matrix (input, recurrent, readout: Xylo has one each) is chosen as the
   smallest that holds every layer it feeds at that scale.
4. **Rounding**: weights ``rint(s*factor*w / 2**shift)`` clipped to int8; thresholds
   ``floor(s*theta) + 1`` (reference spikes on ``v > v_th``) or ``ceil(s*theta)`` (``ge``),
   at least 1; biases ``rint(s * a_mem * steady offset)`` clipped to int16.

``calibrate`` picks the ``headroom`` that maximises spike agreement with the reference on
calibration inputs (windowed F1 of the latency-aligned outputs, run on the emulator).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nrf_nir.errors import NIRError
from nrf_nir.metrics import F1_WINDOW, pearson, windowed_f1

from .config import XyloConfig
from .rules import (
    SPEC,
    Layer,
    Network,
    XyloSpec,
    effective_tau,
    layer_bias,
    layer_dashes,
    synapse_factor,
)

DEFAULT_HEADROOM = 2.0
CALIBRATION_HEADROOMS = (1.0, 1.5, 2.0, 3.0, 4.0, 8.0, 16.0, 64.0)


def _matrix(layer: Layer, net: Network, src: str) -> str:
    if layer.role == "output":
        return "out"
    return "in" if net.source_kind(src) == "input" else "rec"


def _tau_summary(target: np.ndarray, dash: np.ndarray, dt: float, integration: str,
                 limit: int = 16) -> dict[str, Any]:
    eff = effective_tau(dash, dt, integration)
    rel = eff / target - 1.0
    pairs = sorted({(float(t), int(d)) for t, d in zip(target, dash, strict=True)})
    table = [{"tau": t, "dash": d, "tau_xylo": float(effective_tau(np.array([d]), dt,
                                                                   integration)[0]),
              "relative_error": float(effective_tau(np.array([d]), dt, integration)[0] / t
                                      - 1.0)}
             for t, d in pairs[:limit]]
    return {"max_abs_relative_error": float(np.max(np.abs(rel))),
            "mean_abs_relative_error": float(np.mean(np.abs(rel))),
            "dash_min": int(dash.min()), "dash_max": int(dash.max()),
            "values": table, "distinct": len(pairs)}


def quantize(net: Network, *, headroom: float = DEFAULT_HEADROOM,
             spec: XyloSpec = SPEC) -> tuple[XyloConfig, dict[str, Any]]:
    """The integer configuration of ``net`` and the quantization report."""
    if not (headroom >= 1.0 and math.isfinite(headroom)):
        raise NIRError(f"headroom must be a number >= 1, got {headroom!r}", field="headroom")
    dt, integration = net.dt, net.semantics.integration
    nin, nh, no = net.n_in, net.n_hidden, net.n_out
    in_off = {s.name: s.offset for s in net.inputs}
    hid_off = {la.name: la.offset for la in net.hidden}

    # ---- per layer: dashes, factors, extents per matrix
    info: dict[str, dict[str, Any]] = {}
    for layer in net.layers:
        dm, ds = layer_dashes(layer, spec)
        a_mem = np.exp2(-dm.astype(np.float64))
        factors = [synapse_factor(syn, a_mem, d) for syn, d in zip(layer.synapses, ds,
                                                                     strict=True)]
        ext: dict[str, float] = {}
        for syn, f in zip(layer.synapses, factors, strict=True):
            for src, w in syn.blocks.items():
                m = _matrix(layer, net, src)
                if w.size:
                    ext[m] = max(ext.get(m, 0.0), float(np.max(np.abs(f[:, None] * w))))
        beta = layer_bias(layer, a_mem, ds)
        limits: dict[str, float] = {}
        wmax = max(ext.values(), default=0.0)
        if wmax > 0:
            limits["weights"] = spec.max_shifted_weight / wmax
        if np.any(beta):
            limits["bias"] = spec.state_max / float(np.max(np.abs(beta)))
        if layer.v_th is not None:
            limits["threshold"] = spec.state_max / (headroom * float(np.max(layer.v_th
                                                                         - layer.v_leak)))
        else:
            # a membrane readout: the largest steady |v - v_leak| when every source fires
            # every step, plus the constant offset
            vmax = np.abs(beta / a_mem)
            for syn in layer.synapses:
                for w in syn.blocks.values():
                    vmax = vmax + np.abs(syn.gain[:, None] * w).sum(axis=1)
            limits["membrane"] = spec.state_max / (headroom * max(float(vmax.max()), 1e-300))
        info[layer.name] = {"dm": dm, "ds": ds, "a_mem": a_mem, "factors": factors,
                            "ext": ext, "beta": beta, "limits": limits,
                            "s_max": min(limits.values(), default=1.0)}

    # ---- one shift per weight matrix, then each layer's scale
    shifts: dict[str, int] = {}
    for m in ("in", "rec", "out"):
        need = max((i["s_max"] * i["ext"][m] for i in info.values() if m in i["ext"]),
                   default=0.0)
        if need <= spec.weight_max:
            shifts[m] = 0
        else:
            shifts[m] = int(min(spec.max_weight_shift,
                                math.ceil(math.log2(need / spec.weight_max) - 1e-12)))
    for i in info.values():
        s = i["s_max"]
        limited = min(i["limits"], key=i["limits"].get) if i["limits"] else "none"
        for m, e in i["ext"].items():
            cap = spec.weight_max * 2 ** shifts[m] / e
            if cap < s:
                s, limited = cap, f"weights ({m}, shift {shifts[m]})"
        i["s"], i["limited_by"] = s, limited

    # ---- integers
    w_in = np.zeros((nin, nh, 2), np.int64)
    w_rec = np.zeros((nh, nh, 2), np.int64)
    w_out = np.zeros((nh, no), np.int64)
    dash_mem = np.zeros(nh, np.int64)
    dash_syn = np.ones(nh, np.int64)
    dash_syn2 = np.ones(nh, np.int64)
    dash_mem_out = np.zeros(no, np.int64)
    dash_syn_out = np.ones(no, np.int64)
    thr = np.ones(nh, np.int64)
    thr_out = np.ones(no, np.int64)
    bias = np.zeros(nh, np.int64)
    bias_out = np.zeros(no, np.int64)
    report_layers = []
    for layer in net.layers:
        i = info[layer.name]
        s = i["s"]
        lo, hi = layer.offset, layer.offset + layer.n
        wstats = {"float_sq": 0.0, "err_sq": 0.0, "nonzero": 0, "zeroed": 0, "clipped": 0}
        syn_reports = []
        for k, (syn, f, d) in enumerate(zip(layer.synapses, i["factors"], i["ds"],
                                            strict=True)):
            for src, w in syn.blocks.items():
                m = _matrix(layer, net, src)
                unit = 2 ** shifts[m]
                exact = s * f[:, None] * w / unit  # [n, n_src] in weight LSBs
                q = np.rint(exact)
                clipped = (q < spec.weight_min) | (q > spec.weight_max)
                q = np.clip(q, spec.weight_min, spec.weight_max).astype(np.int64)
                wstats["float_sq"] += float(np.sum(exact ** 2))
                wstats["err_sq"] += float(np.sum((q - exact) ** 2))
                wstats["nonzero"] += int(np.count_nonzero(w))
                wstats["zeroed"] += int(np.count_nonzero((w != 0) & (q == 0)))
                wstats["clipped"] += int(np.count_nonzero(clipped))
                if m == "out":
                    so = hid_off[src]
                    w_out[so:so + w.shape[1], lo:hi] = q.T
                elif m == "in":
                    so = in_off[src]
                    w_in[so:so + w.shape[1], lo:hi, k] = q.T
                else:
                    so = hid_off[src]
                    w_rec[so:so + w.shape[1], lo:hi, k] = q.T
            entry: dict[str, Any] = {"slot": k + 1, "kind": syn.kind, "node": syn.node}
            if syn.c is not None:
                entry["tau"] = _tau_summary(dt / syn.c if integration == "euler"
                                            else -dt / np.log1p(-syn.c), d, dt, integration)
            else:
                entry["dash"] = 1
            syn_reports.append(entry)
        beta = s * i["beta"]
        bq = np.rint(beta)
        b_clipped = int(np.count_nonzero((bq < spec.state_min) | (bq > spec.state_max)))
        bq = np.clip(bq, spec.state_min, spec.state_max).astype(np.int64)
        if layer.v_th is not None:
            theta = s * (layer.v_th - layer.v_leak)
            tq = (np.ceil(theta) if net.semantics.threshold == "ge"
                  else np.floor(theta) + 1.0)
            tq = np.clip(tq, 1, spec.state_max).astype(np.int64)
            th_err = float(np.max(np.abs(tq - theta) / theta))
        else:
            tq = np.full(layer.n, spec.state_max, np.int64)
            theta, th_err = None, None
        if layer.role == "hidden":
            dash_mem[lo:hi] = i["dm"]
            dash_syn[lo:hi] = i["ds"][0]
            if len(i["ds"]) > 1:
                dash_syn2[lo:hi] = i["ds"][1]
            thr[lo:hi], bias[lo:hi] = tq, bq
        else:
            dash_mem_out[lo:hi] = i["dm"]
            dash_syn_out[lo:hi] = i["ds"][0]
            thr_out[lo:hi], bias_out[lo:hi] = tq, bq
        rms = math.sqrt(wstats["err_sq"] / wstats["float_sq"]) if wstats["float_sq"] else 0.0
        report_layers.append({
            "name": layer.name, "type": layer.node_type, "role": layer.role,
            "neurons": layer.n, "first_index": layer.offset, "readout": layer.readout,
            "lag_steps": layer.lag,
            "scale": s, "scale_limited_by": i["limited_by"],
            "weights": {"relative_rms_error": rms, "nonzero": wstats["nonzero"],
                        "zeroed": wstats["zeroed"], "clipped": wstats["clipped"]},
            "threshold": (None if theta is None else
                          {"min": int(tq.min()), "max": int(tq.max()),
                           "max_relative_error": th_err}),
            "bias": {"min": int(bq.min()), "max": int(bq.max()), "clipped": b_clipped,
                     "max_abs_error": float(np.max(np.abs(np.clip(bq, spec.state_min,
                                                                  spec.state_max) - beta)))
                     if b_clipped == 0 else None},
            "tau_mem": _tau_summary(layer.tau_mem, i["dm"], dt, integration),
            "synapses": syn_reports,
        })

    layout = {
        "inputs": [{"name": s.name, "shape": list(s.shape), "offset": s.offset,
                    "size": s.size} for s in net.inputs],
        "hidden": [_layout_layer(la, info[la.name]["s"]) for la in net.hidden],
        "output_layers": [_layout_layer(la, info[la.name]["s"]) for la in net.output_layers],
        "outputs": [{"name": o.name, "layer": o.layer, "shape": list(o.shape)}
                    for o in net.outputs],
        "semantics": {"dt": dt, "integration": integration,
                      "threshold": net.semantics.threshold, "reset": net.semantics.reset,
                      "initial_state": net.semantics.initial_state},
    }
    cfg = XyloConfig(
        weights_in=w_in.astype(np.int8), weights_rec=w_rec.astype(np.int8),
        weights_out=w_out.astype(np.int8),
        dash_mem=dash_mem.astype(np.uint8), dash_syn=dash_syn.astype(np.uint8),
        dash_syn2=dash_syn2.astype(np.uint8), dash_mem_out=dash_mem_out.astype(np.uint8),
        dash_syn_out=dash_syn_out.astype(np.uint8),
        threshold=thr.astype(np.int16), threshold_out=thr_out.astype(np.int16),
        bias=bias.astype(np.int16), bias_out=bias_out.astype(np.int16),
        weight_shift_in=shifts["in"], weight_shift_rec=shifts["rec"],
        weight_shift_out=shifts["out"], dt=dt, layout=layout, chip=spec.chip)
    cfg.validate(spec)
    report = {
        "headroom": headroom,
        "weight_shifts": {"in": shifts["in"], "rec": shifts["rec"], "out": shifts["out"]},
        "resources": {"inputs": [nin, spec.max_inputs], "hidden": [nh, spec.max_hidden],
                      "outputs": [no, spec.max_outputs],
                      "synapse2_used": bool(np.any(w_in[:, :, 1]) or np.any(w_rec[:, :, 1]))},
        "layers": report_layers,
        "notes": list(net.notes),
    }
    return cfg, report


def _layout_layer(layer: Layer, scale: float) -> dict[str, Any]:
    return {"name": layer.name, "type": layer.node_type, "offset": layer.offset,
            "size": layer.n, "shape": list(layer.shape), "readout": layer.readout,
            "scale": scale, "v_leak": layer.v_leak.tolist(), "lag": layer.lag,
            "synapses": [s.kind for s in layer.synapses]}


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------


def calibrate(net: Network, reference: Mapping[str, Tensor], inputs: Tensor, *,
              candidates: Sequence[float] = CALIBRATION_HEADROOMS, window: int = F1_WINDOW,
              spec: XyloSpec = SPEC, device: Any = None) -> tuple[float, list[dict[str, Any]]]:
    """The ``headroom`` among ``candidates`` whose quantization agrees best with the
    reference outputs ``reference`` (Output node -> ``[T, B, ...]``) on the packed input
    counts ``inputs`` (``[T, B, Nin]``); returns it and the score of every candidate.

    Score: mean over outputs of the windowed F1 (+-``window`` steps, default ``F1_WINDOW``)
    of the latency-aligned spikes (membrane readouts: Pearson correlation of the decoded
    membrane, 0 where undefined)."""
    from .emulator import XyloEmulator
    from .target import decode_outputs

    scores = []
    best, best_score = None, -math.inf
    for h in candidates:
        cfg, _ = quantize(net, headroom=h, spec=spec)
        emu = XyloEmulator(cfg, device=device, spec=spec)
        raw = emu.run(inputs, record=("v_out",))
        outs = decode_outputs(cfg, raw, align_latency=True)
        parts = []
        for name, ref in reference.items():
            got = outs[name].to(torch.float64).cpu()
            want = ref.to(torch.float64).cpu()
            layer = next(la for la in cfg.layout["output_layers"]
                         if la["name"] == next(o["layer"] for o in cfg.layout["outputs"]
                                               if o["name"] == name))
            if layer["readout"] == "spikes":
                parts.append(windowed_f1(got, want, window))
            else:
                c = pearson(got, want)
                parts.append(0.0 if c is None else c)
        score = float(np.mean(parts)) if parts else 0.0
        scores.append({"headroom": h, "score": score})
        if score > best_score:
            best, best_score = h, score
    assert best is not None
    return best, scores
