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

``quantize`` composes the steps: the range search (:func:`search_range`,
:func:`weight_shifts`, :func:`settle_scale`), the rounding (:func:`round_weights`,
:func:`round_thresholds`, :func:`round_biases`, placed by :func:`quantize_layer` into
:class:`IntegerArrays`) and the report (:func:`layer_report`, :func:`network_layout`,
:func:`quantization_report`).

``calibrate`` picks the ``headroom`` that maximises spike agreement with the reference on
calibration inputs (windowed F1 of the latency-aligned outputs, run on the emulator).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nrf_nir.chips import XYLO_DEFAULT_HEADROOM
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

#: The quantizer's default headroom (public in ``nrf_nir.chips``; importable here too).
DEFAULT_HEADROOM = XYLO_DEFAULT_HEADROOM
CALIBRATION_HEADROOMS = (1.0, 1.5, 2.0, 3.0, 4.0, 8.0, 16.0, 64.0)
#: Xylo's weight matrices: input, recurrent, readout.
MATRICES = ("in", "rec", "out")


def weight_matrix(layer: Layer, net: Network, src: str) -> str:
    """The matrix (``in``, ``rec`` or ``out``) that holds the weights from source ``src`` to
    ``layer``."""
    if layer.role == "output":
        return "out"
    return "in" if net.source_kind(src) == "input" else "rec"


# --------------------------------------------------------------------------------------------
# quantization: the steps, composed
# --------------------------------------------------------------------------------------------


def quantize(net: Network, *, headroom: float = DEFAULT_HEADROOM,
             spec: XyloSpec = SPEC) -> tuple[XyloConfig, dict[str, Any]]:
    """The integer configuration of ``net`` and the quantization report."""
    if not (headroom >= 1.0 and math.isfinite(headroom)):
        raise NIRError(f"headroom must be a number >= 1, got {headroom!r}", field="headroom")
    ranges = {layer.name: search_range(layer, net, headroom, spec) for layer in net.layers}
    shifts = weight_shifts(ranges.values(), spec)
    for lrange in ranges.values():
        lrange.scale, lrange.limited_by = settle_scale(lrange, shifts, spec)
    arrays = IntegerArrays.empty(net.n_in, net.n_hidden, net.n_out)
    layer_reports = []
    for layer in net.layers:
        ints = quantize_layer(layer, net, ranges[layer.name], shifts, spec, arrays)
        layer_reports.append(layer_report(layer, net, ranges[layer.name], ints))
    cfg = arrays.config(shifts, net.dt, network_layout(net, ranges), spec)
    cfg.validate(spec)
    return cfg, quantization_report(net, headroom, shifts, arrays, layer_reports, spec)


# --------------------------------------------------------------------------------------------
# the range search
# --------------------------------------------------------------------------------------------


@dataclass
class LayerRange:
    """One layer's range search, all per neuron ``[n]`` unless said otherwise.

    dash_mem: membrane decay shifts; dash_syn: one array of shifts per synapse; a_mem:
    ``2**-dash_mem``; factors: per synapse, integer weight per unit float weight and unit
    scale; extent: matrix (``in``/``rec``/``out``) -> largest ``|factor * w|`` (integer units
    per unit scale); beta: membrane bias per unit scale; limits: what bounds the scale
    (``weights``, ``bias``, ``threshold`` or ``membrane``) -> the largest scale it allows;
    s_max: the smallest limit (1.0 without any); scale and limited_by: the scale chosen once
    the weight shifts are known (:func:`settle_scale`) and what set it.
    """

    dash_mem: np.ndarray
    dash_syn: list[np.ndarray]
    a_mem: np.ndarray
    factors: list[np.ndarray]
    extent: dict[str, float]
    beta: np.ndarray
    limits: dict[str, float]
    s_max: float
    scale: float = math.nan
    limited_by: str = ""


def search_range(layer: Layer, net: Network, headroom: float, spec: XyloSpec) -> LayerRange:
    """Decays, weight factors and the largest scale ``s`` that keeps ``layer`` within the
    chip's ranges: int8 weights at the largest shift, int16 biases, and the largest threshold
    above ``v_leak`` (membrane readouts: the largest steady ``|v - v_leak|`` when every source
    fires every step) at ``state_max / headroom``."""
    dm, ds = layer_dashes(layer, spec)
    a_mem = np.exp2(-dm.astype(np.float64))
    factors = [synapse_factor(syn, a_mem, d) for syn, d in zip(layer.synapses, ds, strict=True)]
    ext: dict[str, float] = {}
    for syn, f in zip(layer.synapses, factors, strict=True):
        for src, w in syn.blocks.items():
            m = weight_matrix(layer, net, src)
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
        vmax = np.abs(beta / a_mem)
        for syn in layer.synapses:
            for w in syn.blocks.values():
                vmax = vmax + np.abs(syn.gain[:, None] * w).sum(axis=1)
        limits["membrane"] = spec.state_max / (headroom * max(float(vmax.max()), 1e-300))
    return LayerRange(dash_mem=dm, dash_syn=ds, a_mem=a_mem, factors=factors, extent=ext,
                      beta=beta, limits=limits, s_max=min(limits.values(), default=1.0))


def weight_shifts(ranges: Iterable[LayerRange], spec: XyloSpec) -> dict[str, int]:
    """One left shift per weight matrix (``in``, ``rec``, ``out``): the smallest (at most
    ``max_weight_shift``) that holds, in int8, the largest weight of every layer it feeds at
    that layer's ``s_max``."""
    ranges = list(ranges)
    shifts: dict[str, int] = {}
    for m in MATRICES:
        need = max((r.s_max * r.extent[m] for r in ranges if m in r.extent), default=0.0)
        if need <= spec.weight_max:
            shifts[m] = 0
        else:
            shifts[m] = int(min(spec.max_weight_shift,
                                math.ceil(math.log2(need / spec.weight_max) - 1e-12)))
    return shifts


def settle_scale(lrange: LayerRange, shifts: Mapping[str, int],
                 spec: XyloSpec) -> tuple[float, str]:
    """A layer's scale once the shifts are chosen: ``s_max``, lowered where a matrix's shift
    cannot hold the layer's weights at it; and what limits it (a ``limits`` key, ``weights
    (m, shift k)`` or ``none``)."""
    s = lrange.s_max
    limited = min(lrange.limits, key=lrange.limits.__getitem__) if lrange.limits else "none"
    for m, e in lrange.extent.items():
        cap = spec.weight_max * 2 ** shifts[m] / e
        if cap < s:
            s, limited = cap, f"weights ({m}, shift {shifts[m]})"
    return s, limited


# --------------------------------------------------------------------------------------------
# the rounding
# --------------------------------------------------------------------------------------------


def round_weights(exact: np.ndarray, spec: XyloSpec) -> tuple[np.ndarray, np.ndarray]:
    """Weights in LSBs of their matrix (after its shift) rounded to the nearest integer and
    clipped to int8: the integers (int64) and where they were clipped."""
    q = np.rint(exact)
    clipped = (q < spec.weight_min) | (q > spec.weight_max)
    return np.clip(q, spec.weight_min, spec.weight_max).astype(np.int64), clipped


def round_thresholds(theta: np.ndarray, threshold: str, spec: XyloSpec) -> np.ndarray:
    """Integer thresholds (int64) for exact ones ``theta`` (integer units above rest): the
    reference spikes on ``v > v_th`` (``gt``: ``floor(theta) + 1``) or ``v >= v_th`` (``ge``:
    ``ceil(theta)``); Xylo spikes on ``v >= threshold``; clipped to ``1..state_max``."""
    tq = np.ceil(theta) if threshold == "ge" else np.floor(theta) + 1.0
    return np.clip(tq, 1, spec.state_max).astype(np.int64)


def round_biases(beta: np.ndarray, spec: XyloSpec) -> tuple[np.ndarray, int]:
    """Biases (integer units per step) rounded to the nearest integer and clipped to int16:
    the integers (int64) and how many were clipped."""
    bq = np.rint(beta)
    clipped = int(np.count_nonzero((bq < spec.state_min) | (bq > spec.state_max)))
    return np.clip(bq, spec.state_min, spec.state_max).astype(np.int64), clipped


@dataclass
class IntegerArrays:
    """The integer configuration being filled, int64 until :meth:`config` casts it: weights
    ``w_in [Nin, Nhid, 2]``, ``w_rec [Nhid, Nhid, 2]``, ``w_out [Nhid, Nout]``; per hidden
    neuron ``dash_mem``, ``dash_syn``, ``dash_syn2``, ``threshold``, ``bias``; per output
    neuron ``dash_mem_out``, ``dash_syn_out``, ``threshold_out``, ``bias_out``."""

    w_in: np.ndarray
    w_rec: np.ndarray
    w_out: np.ndarray
    dash_mem: np.ndarray
    dash_syn: np.ndarray
    dash_syn2: np.ndarray
    dash_mem_out: np.ndarray
    dash_syn_out: np.ndarray
    threshold: np.ndarray
    threshold_out: np.ndarray
    bias: np.ndarray
    bias_out: np.ndarray

    @classmethod
    def empty(cls, nin: int, nh: int, no: int) -> IntegerArrays:
        """No weights, membrane dash 0, synaptic dash 1, thresholds 1, no bias."""
        return cls(w_in=np.zeros((nin, nh, 2), np.int64), w_rec=np.zeros((nh, nh, 2), np.int64),
                   w_out=np.zeros((nh, no), np.int64), dash_mem=np.zeros(nh, np.int64),
                   dash_syn=np.ones(nh, np.int64), dash_syn2=np.ones(nh, np.int64),
                   dash_mem_out=np.zeros(no, np.int64), dash_syn_out=np.ones(no, np.int64),
                   threshold=np.ones(nh, np.int64), threshold_out=np.ones(no, np.int64),
                   bias=np.zeros(nh, np.int64), bias_out=np.zeros(no, np.int64))

    def config(self, shifts: Mapping[str, int], dt: float, layout: dict[str, Any],
               spec: XyloSpec) -> XyloConfig:
        """The configuration in Xylo's integer types (unvalidated)."""
        return XyloConfig(
            weights_in=self.w_in.astype(np.int8), weights_rec=self.w_rec.astype(np.int8),
            weights_out=self.w_out.astype(np.int8),
            dash_mem=self.dash_mem.astype(np.uint8), dash_syn=self.dash_syn.astype(np.uint8),
            dash_syn2=self.dash_syn2.astype(np.uint8),
            dash_mem_out=self.dash_mem_out.astype(np.uint8),
            dash_syn_out=self.dash_syn_out.astype(np.uint8),
            threshold=self.threshold.astype(np.int16),
            threshold_out=self.threshold_out.astype(np.int16),
            bias=self.bias.astype(np.int16), bias_out=self.bias_out.astype(np.int16),
            weight_shift_in=shifts["in"], weight_shift_rec=shifts["rec"],
            weight_shift_out=shifts["out"], dt=dt, layout=layout, chip=spec.chip)


@dataclass
class WeightErrors:
    """Rounding statistics of a layer's weights: sums of squares of the exact weights and of
    the rounding errors (in LSBs), nonzero float weights, those rounded to 0, clipped ones."""

    float_sq: float = 0.0
    err_sq: float = 0.0
    nonzero: int = 0
    zeroed: int = 0
    clipped: int = 0

    @property
    def relative_rms(self) -> float:
        """RMS rounding error relative to the RMS exact weight (0 without weights)."""
        return math.sqrt(self.err_sq / self.float_sq) if self.float_sq else 0.0


@dataclass
class LayerIntegers:
    """A layer's rounding: weight statistics; exact (``theta``, None for a readout) and
    integer thresholds; exact (``beta``) and integer biases, and how many were clipped; all
    per neuron in integer units."""

    weights: WeightErrors
    theta: np.ndarray | None
    threshold: np.ndarray
    beta: np.ndarray
    bias: np.ndarray
    bias_clipped: int


def quantize_layer(layer: Layer, net: Network, lrange: LayerRange, shifts: Mapping[str, int],
                   spec: XyloSpec, arrays: IntegerArrays) -> LayerIntegers:
    """Round ``layer`` at its settled scale and write it into ``arrays``: weights into the
    rows of their sources and the columns of its neurons (synapse ``k`` into slot ``k`` of
    ``w_in``/``w_rec``), decays, thresholds (readouts: ``state_max``) and biases."""
    s = lrange.scale
    lo, hi = layer.offset, layer.offset + layer.n
    in_off = {slot.name: slot.offset for slot in net.inputs}
    hid_off = {la.name: la.offset for la in net.hidden}
    stats = WeightErrors()
    for k, (syn, f) in enumerate(zip(layer.synapses, lrange.factors, strict=True)):
        for src, w in syn.blocks.items():
            m = weight_matrix(layer, net, src)
            exact = s * f[:, None] * w / 2 ** shifts[m]  # [n, n_src] in weight LSBs
            q, clipped = round_weights(exact, spec)
            stats.float_sq += float(np.sum(exact ** 2))
            stats.err_sq += float(np.sum((q - exact) ** 2))
            stats.nonzero += int(np.count_nonzero(w))
            stats.zeroed += int(np.count_nonzero((w != 0) & (q == 0)))
            stats.clipped += int(np.count_nonzero(clipped))
            if m == "out":
                so = hid_off[src]
                arrays.w_out[so:so + w.shape[1], lo:hi] = q.T
            elif m == "in":
                so = in_off[src]
                arrays.w_in[so:so + w.shape[1], lo:hi, k] = q.T
            else:
                so = hid_off[src]
                arrays.w_rec[so:so + w.shape[1], lo:hi, k] = q.T
    beta = s * lrange.beta
    bias, bias_clipped = round_biases(beta, spec)
    theta = s * (layer.v_th - layer.v_leak) if layer.v_th is not None else None
    threshold = (round_thresholds(theta, net.semantics.threshold, spec) if theta is not None
                 else np.full(layer.n, spec.state_max, np.int64))
    if layer.role == "hidden":
        arrays.dash_mem[lo:hi] = lrange.dash_mem
        arrays.dash_syn[lo:hi] = lrange.dash_syn[0]
        if len(lrange.dash_syn) > 1:
            arrays.dash_syn2[lo:hi] = lrange.dash_syn[1]
        arrays.threshold[lo:hi], arrays.bias[lo:hi] = threshold, bias
    else:
        arrays.dash_mem_out[lo:hi] = lrange.dash_mem
        arrays.dash_syn_out[lo:hi] = lrange.dash_syn[0]
        arrays.threshold_out[lo:hi], arrays.bias_out[lo:hi] = threshold, bias
    return LayerIntegers(stats, theta, threshold, beta, bias, bias_clipped)


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------


def tau_summary(target: np.ndarray, dash: np.ndarray, dt: float, integration: str,
                limit: int = 16) -> dict[str, Any]:
    """How well the decay shifts ``dash`` implement the time constants ``target`` (s, per
    neuron): relative errors (max, mean), the dash range and up to ``limit`` distinct
    (tau, dash) pairs with the tau Xylo implements."""
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


def synapse_reports(layer: Layer, lrange: LayerRange, dt: float,
                    integration: str) -> list[dict[str, Any]]:
    """Per synapse: its slot (1 or 2), kind, node and time-constant summary (``direct``: dash
    1)."""
    reports = []
    for k, (syn, d) in enumerate(zip(layer.synapses, lrange.dash_syn, strict=True)):
        entry: dict[str, Any] = {"slot": k + 1, "kind": syn.kind, "node": syn.node}
        if syn.c is not None:
            entry["tau"] = tau_summary(dt / syn.c if integration == "euler"
                                       else -dt / np.log1p(-syn.c), d, dt, integration)
        else:
            entry["dash"] = 1
        reports.append(entry)
    return reports


def layer_report(layer: Layer, net: Network, lrange: LayerRange,
                 ints: LayerIntegers) -> dict[str, Any]:
    """The report of one layer: layout, scale and its limit, weight/threshold/bias rounding
    errors, time constants of the membrane and of each synapse."""
    dt, integration = net.dt, net.semantics.integration
    tq, bq, theta = ints.threshold, ints.bias, ints.theta
    return {
        "name": layer.name, "type": layer.node_type, "role": layer.role,
        "neurons": layer.n, "first_index": layer.offset, "readout": layer.readout,
        "lag_steps": layer.lag,
        "scale": lrange.scale, "scale_limited_by": lrange.limited_by,
        "weights": {"relative_rms_error": ints.weights.relative_rms,
                    "nonzero": ints.weights.nonzero, "zeroed": ints.weights.zeroed,
                    "clipped": ints.weights.clipped},
        "threshold": (None if theta is None else
                      {"min": int(tq.min()), "max": int(tq.max()),
                       "max_relative_error": float(np.max(np.abs(tq - theta) / theta))}),
        "bias": {"min": int(bq.min()), "max": int(bq.max()), "clipped": ints.bias_clipped,
                 "max_abs_error": float(np.max(np.abs(bq - ints.beta)))
                 if ints.bias_clipped == 0 else None},
        "tau_mem": tau_summary(layer.tau_mem, lrange.dash_mem, dt, integration),
        "synapses": synapse_reports(layer, lrange, dt, integration),
    }


def network_layout(net: Network, ranges: Mapping[str, LayerRange]) -> dict[str, Any]:
    """The configuration's ``layout``: input slots, hidden and output layers (with their
    scales), Output nodes and the semantics, as JSON-ready values."""
    return {
        "inputs": [{"name": s.name, "shape": list(s.shape), "offset": s.offset,
                    "size": s.size} for s in net.inputs],
        "hidden": [_layout_layer(la, ranges[la.name].scale) for la in net.hidden],
        "output_layers": [_layout_layer(la, ranges[la.name].scale) for la in net.output_layers],
        "outputs": [{"name": o.name, "layer": o.layer, "shape": list(o.shape)}
                    for o in net.outputs],
        "semantics": {"dt": net.dt, "integration": net.semantics.integration,
                      "threshold": net.semantics.threshold, "reset": net.semantics.reset,
                      "initial_state": net.semantics.initial_state},
    }


def _layout_layer(layer: Layer, scale: float) -> dict[str, Any]:
    return {"name": layer.name, "type": layer.node_type, "offset": layer.offset,
            "size": layer.n, "shape": list(layer.shape), "readout": layer.readout,
            "scale": scale, "v_leak": layer.v_leak.tolist(), "lag": layer.lag,
            "synapses": [s.kind for s in layer.synapses]}


def quantization_report(net: Network, headroom: float, shifts: Mapping[str, int],
                        arrays: IntegerArrays, layers: list[dict[str, Any]],
                        spec: XyloSpec) -> dict[str, Any]:
    """The quantization report: headroom, weight shifts, resources used of the chip's, the
    per-layer reports and the network's notes."""
    return {
        "headroom": headroom,
        "weight_shifts": {"in": shifts["in"], "rec": shifts["rec"], "out": shifts["out"]},
        "resources": {"inputs": [net.n_in, spec.max_inputs],
                      "hidden": [net.n_hidden, spec.max_hidden],
                      "outputs": [net.n_out, spec.max_outputs],
                      "synapse2_used": bool(np.any(arrays.w_in[:, :, 1])
                                            or np.any(arrays.w_rec[:, :, 1]))},
        "layers": layers,
        "notes": list(net.notes),
    }


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------


def calibrate(net: Network, reference: Mapping[str, Tensor], inputs: Tensor, *,
              candidates: Sequence[float] = CALIBRATION_HEADROOMS, window: int = F1_WINDOW,
              spec: XyloSpec = SPEC, device: Any = None, progress: bool = False
              ) -> tuple[float, list[dict[str, Any]]]:
    """The ``headroom`` among ``candidates`` whose quantization agrees best with the
    reference outputs ``reference`` (Output node -> ``[T, B, ...]``) on the packed input
    counts ``inputs`` (``[T, B, Nin]``); returns it and the score of every candidate.
    ``progress``: a progress bar (candidates) on stderr.

    Score: mean over outputs of the windowed F1 (+-``window`` steps, default ``F1_WINDOW``)
    of the latency-aligned spikes (membrane readouts: Pearson correlation of the decoded
    membrane, 0 where undefined)."""
    from .emulator import XyloEmulator
    from .target import decode_outputs

    scores = []
    best, best_score = None, -math.inf
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(candidates), unit="headroom", desc="calibrate", leave=False)
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
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    assert best is not None
    return best, scores
