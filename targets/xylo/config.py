"""The integer Xylo configuration: what XyloSim (and the chip) runs, and its file format.

Arrays follow ``rockpool.devices.xylo.syns61201.XyloSim.from_specification`` exactly:

==================  ===============  =====================================================
field               shape / dtype    meaning
==================  ===============  =====================================================
weights_in          [Nin, Nh, 2] i8  input channel -> hidden neuron, synapse 1 / 2
weights_rec         [Nh, Nh, 2] i8   hidden (pre) -> hidden (post), synapse 1 / 2
weights_out         [Nh, No] i8      hidden -> output neuron (one synapse)
weight_shift_in     int 0..7         every input weight is used as ``w << shift``
weight_shift_rec    int 0..7         (recurrent weights)
weight_shift_out    int 0..7         (readout weights)
dash_mem            [Nh] u8 0..15    membrane decay ``v -= max(v >> dash, sign(v))``
dash_syn            [Nh] u8 0..15    synapse 1 decay (dash 0 zeroes the current)
dash_syn2           [Nh] u8 0..15    synapse 2 decay
dash_mem_out        [No] u8          output membrane decay
dash_syn_out        [No] u8          output synapse decay
threshold           [Nh] i16 >= 1    spike while ``v >= threshold`` (subtract, <= 31/step)
threshold_out       [No] i16 >= 1    (output neurons: at most 1 spike per step)
bias                [Nh] i16         added to the membrane every step
bias_out            [No] i16
dt                  float seconds    the time step the decays were chosen for
==================  ===============  =====================================================

``layout`` (JSON) maps the NIR graph onto these indices: ``inputs`` (Input node, shape, first
channel), ``hidden`` and ``output_layers`` (neuron node, first index, size, shape, readout,
``scale`` = integer units per unit of ``v - v_leak``, ``v_leak``, ``lag`` in steps) and
``outputs`` (Output node -> neuron node). ``chip`` names the chip whose limits apply
(``nrf_nir.chips.XYLO_SPECS``: ``syns61201`` Audio 2, ``syns63300`` IMU, ``syns65302`` Audio 3).

On disk (``save`` / ``load``): ``xylo_config.npz`` holds the arrays, ``xylo_config.json`` the
format version, the scalars, the layout and a description of every array.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nrf_nir.atomic import atomic_folder
from nrf_nir.chips import XYLO_AUDIO2, XyloSpec, xylo_spec
from nrf_nir.errors import NIRError

FORMAT = "nrf-nir/xylo-config"
FORMAT_VERSION = 1
NPZ_NAME = "xylo_config.npz"
JSON_NAME = "xylo_config.json"

ARRAYS: dict[str, str] = {
    "weights_in": "int8 [Nin, Nh, 2]: input channel -> hidden neuron, synapse 1/2",
    "weights_rec": "int8 [Nh, Nh, 2]: hidden pre -> hidden post, synapse 1/2",
    "weights_out": "int8 [Nh, No]: hidden -> output neuron",
    "dash_mem": "uint8 [Nh]: hidden membrane bit-shift decay",
    "dash_syn": "uint8 [Nh]: hidden synapse-1 bit-shift decay",
    "dash_syn2": "uint8 [Nh]: hidden synapse-2 bit-shift decay",
    "dash_mem_out": "uint8 [No]: output membrane bit-shift decay",
    "dash_syn_out": "uint8 [No]: output synapse bit-shift decay",
    "threshold": "int16 [Nh]: hidden thresholds (>= 1)",
    "threshold_out": "int16 [No]: output thresholds (>= 1)",
    "bias": "int16 [Nh]: hidden membrane bias per step",
    "bias_out": "int16 [No]: output membrane bias per step",
}
SCALARS = ("weight_shift_in", "weight_shift_rec", "weight_shift_out")


@dataclass
class XyloConfig:
    """An integer Xylo network (see the module docstring for every field)."""

    weights_in: np.ndarray
    weights_rec: np.ndarray
    weights_out: np.ndarray
    dash_mem: np.ndarray
    dash_syn: np.ndarray
    dash_syn2: np.ndarray
    dash_mem_out: np.ndarray
    dash_syn_out: np.ndarray
    threshold: np.ndarray
    threshold_out: np.ndarray
    bias: np.ndarray
    bias_out: np.ndarray
    weight_shift_in: int = 0
    weight_shift_rec: int = 0
    weight_shift_out: int = 0
    dt: float = 1e-3
    layout: dict[str, Any] = field(default_factory=dict)
    #: the chip whose limits apply (a key of ``nrf_nir.chips.XYLO_SPECS``)
    chip: str = XYLO_AUDIO2.chip

    @property
    def n_in(self) -> int:
        return int(self.weights_in.shape[0])

    @property
    def n_hidden(self) -> int:
        return int(self.weights_rec.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.weights_out.shape[1])

    @property
    def has_bias(self) -> bool:
        return bool(np.any(self.bias) or np.any(self.bias_out))

    def validate(self, spec: XyloSpec | None = None) -> None:
        """Raise NIRError naming the field when a value is outside the chip's ranges
        (``spec``: default the limits of ``self.chip``)."""
        spec = xylo_spec(self.chip) if spec is None else spec
        nin, nh, no = self.weights_in.shape[0], self.weights_rec.shape[0], \
            self.weights_out.shape[1]
        shapes = {"weights_in": (nin, nh, 2), "weights_rec": (nh, nh, 2),
                  "weights_out": (nh, no), "dash_mem": (nh,), "dash_syn": (nh,),
                  "dash_syn2": (nh,), "threshold": (nh,), "bias": (nh,),
                  "dash_mem_out": (no,), "dash_syn_out": (no,), "threshold_out": (no,),
                  "bias_out": (no,)}
        for name, shape in shapes.items():
            arr = np.asarray(getattr(self, name))
            if arr.shape != shape:
                raise NIRError(f"must have shape {shape}, got {arr.shape}", field=name)
            if arr.dtype.kind not in "iu":
                raise NIRError(f"must be integers, got {arr.dtype}", field=name)

        def rng(name: str, lo: int, hi: int) -> None:
            arr = np.asarray(getattr(self, name))
            if arr.size and (arr.min() < lo or arr.max() > hi):
                raise NIRError(f"values must lie in [{lo}, {hi}], got [{arr.min()}, "
                               f"{arr.max()}]", field=name)

        for name in ("weights_in", "weights_rec", "weights_out"):
            rng(name, spec.weight_min, spec.weight_max)
        for name in ("dash_mem", "dash_syn", "dash_syn2", "dash_mem_out", "dash_syn_out"):
            rng(name, 0, spec.dash_max)
        for name in ("threshold", "threshold_out"):
            rng(name, 1, spec.state_max)
        for name in ("bias", "bias_out"):
            rng(name, spec.state_min, spec.state_max)
        for name in SCALARS:
            value = getattr(self, name)
            if int(value) != value or not 0 <= value <= spec.max_weight_shift:
                raise NIRError(f"must be an integer in [0, {spec.max_weight_shift}], got "
                               f"{value}", field=name)
        if nin > spec.max_inputs or nh > spec.max_hidden or no > spec.max_outputs:
            raise NIRError(f"{nin} inputs, {nh} hidden, {no} output neurons exceed "
                           f"{spec.name} ({spec.max_inputs}, {spec.max_hidden}, "
                           f"{spec.max_outputs})", field="shape")
        if not np.isfinite(self.dt) or self.dt <= 0:
            raise NIRError(f"dt must be > 0 seconds, got {self.dt}", field="dt")
        if spec.hidden_synapses < 2 and (np.any(self.weights_in[:, :, 1])
                                         or np.any(self.weights_rec[:, :, 1])):
            raise NIRError(f"{spec.name} hidden neurons have one synapse: synapse-2 weights "
                           "must be 0", field="weights_in" if np.any(self.weights_in[:, :, 1])
                           else "weights_rec")
        if spec.max_input_targets is not None and np.any(
                self.weights_in[:, spec.max_input_targets:]):
            raise NIRError(f"on {spec.name} only the first {spec.max_input_targets} hidden "
                           "neurons take input weights", field="weights_in")
        if spec.max_readout_sources is not None and np.any(
                self.weights_out[:max(0, nh - spec.max_readout_sources)]):
            raise NIRError(f"on {spec.name} only the last {spec.max_readout_sources} hidden "
                           "neurons drive the readout", field="weights_out")

    def specification(self) -> dict[str, Any]:
        """Keyword arguments of Rockpool's ``XyloSim.from_specification`` (and of
        ``config_from_specification``, which also takes ``bias_hidden``)."""
        return {
            "weights_in": self.weights_in.astype(np.int8),
            "weights_rec": self.weights_rec.astype(np.int8),
            "weights_out": self.weights_out.astype(np.int8),
            "dash_mem": self.dash_mem.astype(np.int64),
            "dash_syn": self.dash_syn.astype(np.int64),
            "dash_syn_2": self.dash_syn2.astype(np.int64),
            "dash_mem_out": self.dash_mem_out.astype(np.int64),
            "dash_syn_out": self.dash_syn_out.astype(np.int64),
            "threshold": self.threshold.astype(np.int64),
            "threshold_out": self.threshold_out.astype(np.int64),
            "bias": self.bias.astype(np.int64),
            "bias_out": self.bias_out.astype(np.int64),
            "weight_shift_in": int(self.weight_shift_in),
            "weight_shift_rec": int(self.weight_shift_rec),
            "weight_shift_out": int(self.weight_shift_out),
            "dt": float(self.dt),
        }

    # ------------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> list[Path]:
        """Write ``xylo_config.npz`` and ``xylo_config.json`` into ``directory``, both or
        neither (``nrf_nir.atomic.atomic_folder``); return their paths."""
        d = Path(directory)
        arrays = {name: np.asarray(getattr(self, name)) for name in ARRAYS}
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "arrays_file": NPZ_NAME,
            "arrays": {name: {"description": desc, "shape": list(arrays[name].shape),
                              "dtype": str(arrays[name].dtype)}
                       for name, desc in ARRAYS.items()},
            "dt": float(self.dt),
            **{name: int(getattr(self, name)) for name in SCALARS},
            "has_bias": self.has_bias,
            "n_in": self.n_in, "n_hidden": self.n_hidden, "n_out": self.n_out,
            "chip": self.chip, "chip_name": xylo_spec(self.chip).name,
            "layout": _jsonable(self.layout),
        }
        with atomic_folder(d) as tmp:
            with open(tmp / NPZ_NAME, "wb") as f:
                named: dict[str, Any] = arrays  # mypy matches ** against allow_pickle too
                np.savez_compressed(f, **named)
            (tmp / JSON_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        return [d / NPZ_NAME, d / JSON_NAME]

    @classmethod
    def load(cls, path: str | Path) -> XyloConfig:
        """Read a configuration written by ``save`` (the directory or its JSON file)."""
        p = Path(path)
        js = p / JSON_NAME if p.is_dir() else p
        try:
            meta = json.loads(js.read_text())
        except (OSError, ValueError) as exc:
            raise NIRError(f"cannot read a Xylo configuration: {exc}", file=str(js)) from None
        if meta.get("format") != FORMAT:
            raise NIRError(f"not a Xylo configuration (format {meta.get('format')!r})",
                           file=str(js))
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise NIRError(f"format version {meta['format_version']} is newer than this "
                           f"reader ({FORMAT_VERSION})", file=str(js))
        with np.load(js.parent / meta.get("arrays_file", NPZ_NAME)) as data:
            arrays = {name: np.asarray(data[name]) for name in ARRAYS}
        fields: dict[str, Any] = {**arrays, **{name: int(meta[name]) for name in SCALARS}}
        cfg = cls(**fields, dt=float(meta["dt"]), layout=meta.get("layout", {}),
                  chip=str(meta.get("chip", XYLO_AUDIO2.chip)))
        cfg.validate()
        return cfg


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
