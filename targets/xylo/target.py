"""The ``xylo`` (our integer emulator) and ``xylosim`` (SynSense's XyloSim) targets.

Both lower a graph the same way (``rules.analyse`` -> ``quantize.quantize`` -> an integer
``XyloConfig``) and differ only in the engine that runs it; they agree bit for bit.

Target options (``nrf_nir.lower(graph, "xylo", **options)``):

- ``headroom`` (float >= 1, default 2): thresholds use at most ``32767 / headroom``;
- ``calibration``: inputs (one ``[T, B, *shape]`` array or a dict per Input node) on which
  the headroom that best matches the reference is picked (``calibration_headrooms`` lists
  the candidates);
- ``align_latency`` (bool, default False): shift each output back by the steps Xylo runs
  behind the reference (one per hop from a hidden neuron), zero-filling the end;
- ``chunk`` (emulator): time steps of input currents per matrix product;
- ``progress`` (bool, default False): progress bars on stderr for the calibration (the
  reference run in steps, then the candidate headrooms) and for each run (the emulator's
  compiled kernel and XyloSim: samples; the emulator's torch engine: steps).

``run`` takes event counts (non-negative integers; more than 15 per step count as 15) and
returns each Output node's spikes (membrane readouts: ``v_int / scale + v_leak``) as
``[T, B, *shape]`` in the run dtype. ``record`` accepts a neuron node name (its spike counts)
and ``"<neuron>.v"``, ``".i"``, ``".i2"`` (raw int32 membrane and synaptic currents).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nrf_nir.chips import XYLO_AUDIO2, XYLO_DEFAULT_HEADROOM, XYLO_SPECS, XyloSpec
from nrf_nir.errors import NIRError
from nrf_nir.reference import default_device, resolve_dtype
from nrf_nir.semantics import Semantics
from nrf_nir.targets import (
    Findings,
    Options,
    Violation,
    bad_option,
    findings,
    option_bool,
    option_float,
    option_int,
    parse_options,
    refuse,
)
from nrf_nir.validate import Checked

from .config import XyloConfig
from .emulator import XyloEmulator
from .quantize import CALIBRATION_HEADROOMS, calibrate, quantize
from .rules import Network, analyse


def _calibration(name: str, value: Any) -> Any:
    """The option ``calibration``: input arrays (one ``[T, B, ...]`` array, or a mapping from
    Input node name to one; checked against the graph when used), or None."""
    if isinstance(value, (str, bytes, bool, int, float)):
        raise bad_option(name, "input arrays (one [T, B, ...] array or a mapping from Input "
                         "node name to one, given from Python)", value)
    return value


def _headrooms(name: str, value: Any) -> tuple[float, ...]:
    """The option ``calibration_headrooms``: a non-empty sequence of finite numbers >= 1."""
    sequence = isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray)
                                                     and value.ndim == 1)
    if not sequence or len(value) == 0:
        raise bad_option(name, "a non-empty sequence of finite numbers >= 1", value)
    check = option_float(1.0)
    return tuple(check(name, v) for v in value)


#: The options of ``lower``, each with the check of its value.
OPTIONS = {"headroom": option_float(1.0), "calibration": _calibration,
           "calibration_headrooms": _headrooms, "align_latency": option_bool,
           "chunk": option_int(low=1), "progress": option_bool}


def rules(spec: XyloSpec = XYLO_AUDIO2) -> tuple[str, ...]:
    """The design rules ``check`` applies for ``spec``, in words (for reports)."""
    out = [
        f"input channels <= {spec.max_inputs} (all Input nodes together, flattened)",
        f"hidden neurons <= {spec.max_hidden}, output neurons <= {spec.max_outputs}",
        f"synaptic currents per neuron: hidden <= {spec.hidden_synapses}, output <= "
        f"{spec.output_synapses}",
        "node types: Linear/Affine/Conv/pooling/Scale/Flatten/Identity (composed into dense "
        "weights), LIF/CubaLIF, LI synaptic filters, LI/CubaLI readouts",
        "outputs are output neurons fed only by hidden neurons; inputs feed hidden neurons "
        "only",
        f"membrane decays: dash = round(log2(tau/dt)) <= {spec.dash_max}; synaptic decays "
        f"1 <= dash <= {spec.dash_max}",
        "int8 weights (shift <= 7) and int16 thresholds/biases can hold each layer's scale",
        "thresholds above v_leak",
    ]
    if spec.max_input_targets is not None:
        out.append(f"only the first {spec.max_input_targets} hidden neurons take input "
                   "weights (hidden layers are allocated in schedule order)")
    if spec.max_readout_sources is not None:
        out.append(f"only the last {spec.max_readout_sources} hidden neurons drive the "
                   "output neurons")
    return tuple(out)


@dataclass
class XyloLowered:
    """A graph lowered to Xylo: the integer configuration and how to run it."""

    target: str
    config: XyloConfig
    report: dict[str, Any]
    network: Network | None = None
    dtype: torch.dtype = torch.float32
    device: torch.device = field(default_factory=default_device)
    align_latency: bool = False
    chunk: int = 256
    progress: bool = False
    _emulator: XyloEmulator | None = None
    _sim: Any = None

    @property
    def emulator(self) -> XyloEmulator:
        if self._emulator is None:
            self._emulator = XyloEmulator(self.config, device=self.device, chunk=self.chunk,
                                          spec=XYLO_SPECS[self.config.chip])
        return self._emulator

    def pack(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The Input nodes' ``[T, B, *shape]`` tensors as Xylo's ``[T, B, Nin]`` counts."""
        return pack_inputs(self.config, inputs)

    def run_raw(self, x: Tensor, record: tuple[str, ...] = ()) -> dict[str, Tensor]:
        """Run packed counts on this target's engine; raw integer results."""
        if self.target == "xylosim":
            from .xylosim_engine import build, run_xylosim

            if self._sim is None:
                self._sim = build(self.config)
            raw = run_xylosim(self.config, x.cpu().numpy(), record=record, sim=self._sim,
                              progress=self.progress)
            return {k: torch.from_numpy(v) for k, v in raw.items()}
        return self.emulator.run(x, record=record, progress=self.progress)


def pack_inputs(config: XyloConfig, inputs: Mapping[str, Tensor]) -> Tensor:
    parts = []
    for slot in config.layout["inputs"]:
        if slot["name"] not in inputs:
            raise NIRError("missing input", node=slot["name"], field="inputs")
        x = torch.as_tensor(inputs[slot["name"]])
        parts.append(x.reshape(x.shape[0], x.shape[1], -1))
    x = torch.cat(parts, 2) if len(parts) > 1 else parts[0]
    if x.is_floating_point() and not torch.equal(x, torch.round(x)):
        raise NIRError("Xylo inputs are event counts per step and channel: non-negative "
                       "integers (a spike is 1)", node=config.layout["inputs"][0]["name"],
                       field="inputs")
    if x.numel() and float(x.min()) < 0:
        raise NIRError("Xylo inputs are event counts: they cannot be negative",
                       node=config.layout["inputs"][0]["name"], field="inputs")
    return x.to(torch.int32)


def shift(x: Tensor, steps: int) -> Tensor:
    """``y[t] = x[t + steps]`` (zeros after the end): undo a latency of ``steps``."""
    if steps <= 0:
        return x
    y = torch.zeros_like(x)
    if steps < x.shape[0]:
        y[: x.shape[0] - steps] = x[steps:]
    return y


def decode_outputs(config: XyloConfig, raw: Mapping[str, Tensor], *,
                   align_latency: bool = False, dtype: torch.dtype = torch.float32
                   ) -> dict[str, Tensor]:
    """Output node -> ``[T, B, *shape]``: output spikes, or membrane readouts decoded to
    ``v_int / scale + v_leak``; shifted back by the layer's lag when ``align_latency``."""
    layers = {la["name"]: la for la in config.layout["output_layers"]}
    result = {}
    for out in config.layout["outputs"]:
        la = layers[out["layer"]]
        lo, hi = la["offset"], la["offset"] + la["size"]
        if la["readout"] == "spikes":
            y = raw["spikes_out"][:, :, lo:hi].to(dtype)
        else:
            v = raw["v_out"][:, :, lo:hi].to(torch.float64)
            leak = torch.as_tensor(np.asarray(la["v_leak"], np.float64), device=v.device)
            y = (v / la["scale"] + leak).to(dtype)
        if align_latency:
            y = shift(y, int(la["lag"]))
        result[out["name"]] = y.reshape(y.shape[0], y.shape[1], *out["shape"])
    return result


def _parse_record(config: XyloConfig, record: tuple[str, ...]
                  ) -> dict[str, tuple[str, int, int, list[int]]]:
    """record name -> (raw key, first index, size, node shape)."""
    hidden = {la["name"]: la for la in config.layout["hidden"]}
    outs = {la["name"]: la for la in config.layout["output_layers"]}
    parsed: dict[str, tuple[str, int, int, list[int]]] = {}
    for key in record:
        node, _, state = key.rpartition(".")
        if key in hidden or key in outs:
            node, state = key, ""
        la = hidden.get(node) or outs.get(node)
        is_out = node in outs
        table = {"": "spikes_out" if is_out else "spikes", "v": "v_out" if is_out else "v",
                 "i": "i_out" if is_out else "i", "i2": None if is_out else "i2"}
        raw = table.get(state)
        if la is None or raw is None:
            raise NIRError(f"cannot record {key!r} on Xylo: record a neuron node (hidden: "
                           f"{', '.join(hidden) or 'none'}; output: {', '.join(outs)}) or "
                           "'<neuron>.v', '.i', '.i2' (hidden only)", node=key, field="record")
        parsed[key] = (raw, la["offset"], la["size"], la["shape"])
    return parsed


class XyloTarget:
    """One Xylo chip (``spec``) on one engine: ``emulator`` (ours) or ``xylosim``."""

    progress = True  # takes the option progress (progress bars: calibration, runs)
    #: Firing semantics run besides the defaults (``nrf_nir.targets.semantics_violations``).
    #: Xylo fires ``while v >= threshold`` (subtracting it each time): up to 31 events per
    #: step in a hidden neuron, one in an output neuron, whichever ``spikes`` the graph states;
    #: both values run, as approximately as the quantization (``rules.add_notes`` says where).
    SEMANTICS: dict[str, tuple[str, ...]] = {"spikes": ("single", "multi")}

    def __init__(self, name: str, spec: XyloSpec = XYLO_AUDIO2, engine: str = "emulator") -> None:
        self.name, self.spec, self.engine = name, spec, engine
        if engine == "emulator":
            self.description = (f"{spec.name}: design rules, int8/int16 quantization, "
                                "batched integer emulator (bit-exact with XyloSim)")
        else:
            self.description = (f"{spec.name} via SynSense XyloSim 0.1.3 (Rockpool 3.1.0): "
                                "same design rules, quantization and results as our emulator")

    def check(self, checked: Checked, semantics: Semantics,
              options: Options | None = None) -> list[Violation]:
        """Design-rule violations; the mapped network (when one exists) is the analysis
        ``lower`` reuses."""
        net, found = analyse(checked, semantics, target=self.name, spec=self.spec)
        return Findings(found, net)

    def lower(self, checked: Checked, semantics: Semantics, options: Options) -> XyloLowered:
        """strict=False: lower what the target can run; violations that make running impossible
        still raise. Xylo runs with the precision violations (int8 weights or int16 thresholds
        that cannot resolve a layer's scale: quantization rounds and clips them), listed in
        the report's ``design_rules``; every other violation leaves no mapping and raises."""
        extra = parse_options(options, OPTIONS, self.name)
        if self.engine == "xylosim":
            from .xylosim_engine import xylosim_class

            try:
                xylosim_class()  # fail now, with a clear message, when it is not installed
            except ImportError as exc:
                raise NIRError(str(exc), field="target") from None
        found = findings(self, checked, semantics, options)
        net = found.analysis
        if net is None:  # no mapping (a violation makes running impossible), or no analysis
            refuse(self.name, found)
            net, again = analyse(checked, semantics, target=self.name, spec=self.spec)
            refuse(self.name, again)  # a check result without its analysis: map it now
            assert net is not None  # analyse maps whatever it finds no violation in
        elif found and options.violations is None:
            refuse(self.name, found)  # a direct call of lower keeps refusing
        device = torch.device(options.device) if options.device is not None \
            else default_device()
        headroom = float(extra.get("headroom", XYLO_DEFAULT_HEADROOM))
        scores = None
        progress = bool(extra.get("progress", False))
        if extra.get("calibration") is not None:
            headroom, scores = self._calibrate(checked, semantics, net, extra, device,
                                               progress)
        config, qreport = quantize(net, headroom=headroom, spec=self.spec)
        report = {
            "target": self.name, "chip": self.spec.name,
            "design_rules": {"rules": list(rules(self.spec)),
                             "violations": [str(v) for v in found]},
            "quantization": qreport,
            "calibration": scores,
        }
        return XyloLowered(self.engine, config, report, net, resolve_dtype(options.dtype),
                           device, bool(extra.get("align_latency", False)),
                           int(extra.get("chunk", 256)), progress)

    def _calibrate(self, checked: Checked, semantics: Semantics, net: Network,
                   extra: dict[str, Any], device: torch.device, progress: bool = False
                   ) -> tuple[float, list[dict[str, Any]]]:
        from nrf_nir.api import prepare_inputs
        from nrf_nir.reference import Program

        calib = prepare_inputs(checked, extra["calibration"], torch.float64)
        reference = Program(checked, semantics, dtype=torch.float64,
                            device=torch.device("cpu"), progress=progress).run(calib)
        reference = {k: v for k, v in reference.items() if k in checked.flat.outputs}
        probe, _ = quantize(net, spec=self.spec)
        x = pack_inputs(probe, calib)
        candidates = tuple(extra.get("calibration_headrooms", CALIBRATION_HEADROOMS))
        return calibrate(net, reference, x, candidates=candidates, device=device,
                         spec=self.spec, progress=progress)

    def run(self, lowered: XyloLowered, inputs: Mapping[str, Tensor],
            record: tuple[str, ...]) -> dict[str, Tensor]:
        cfg = lowered.config
        x = lowered.pack(inputs)
        recs = _parse_record(cfg, tuple(record))
        keys = {raw for raw, *_ in recs.values() if raw != "spikes_out"}
        if any(la["readout"] == "vmem" for la in cfg.layout["output_layers"]):
            keys.add("v_out")
        raw = lowered.run_raw(x, tuple(sorted(keys)))
        out = decode_outputs(cfg, raw, align_latency=lowered.align_latency,
                             dtype=lowered.dtype)
        for key, (rk, lo, size, shape) in recs.items():
            val = raw[rk][:, :, lo:lo + size]
            if rk in ("spikes", "spikes_out"):
                val = val.to(lowered.dtype)
            out[key] = val.reshape(val.shape[0], val.shape[1], *shape)
        return out

    def artifact(self, lowered: XyloLowered, directory: str | Path) -> list[Path]:
        from .artifact import write_artifact

        return write_artifact(lowered, directory)

    def changes(self, lowered: XyloLowered) -> list[str]:
        """The lossy changes of this deployment, one line each (``nrf-nir deploy`` prints
        them and writes them to ``deploy.json``)."""
        from .artifact import changes
        from .config import _jsonable

        return changes(_jsonable(lowered.report))


TARGET = XyloTarget("xylo")
XYLOSIM_TARGET = XyloTarget("xylosim", engine="xylosim")
IMU_TARGET = XyloTarget("xylo-imu", XYLO_SPECS["syns63300"])
AUDIO3_TARGET = XyloTarget("xylo-audio3", XYLO_SPECS["syns65302"])
XYLOSIM_IMU_TARGET = XyloTarget("xylosim-imu", XYLO_SPECS["syns63300"], engine="xylosim")
XYLOSIM_AUDIO3_TARGET = XyloTarget("xylosim-audio3", XYLO_SPECS["syns65302"], engine="xylosim")
