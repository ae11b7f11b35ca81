"""Public specifications of the neuromorphic chips that targets compile for (stdlib only).

The numbers a backend enforces and a model that trains on a chip's grid must agree on: the
Xylo target (``nrf_nir.targets.xylo``) checks and quantizes with these, and a zoo model that
trains on Xylo's weight grid reads them from here, not from the backend's internals.

- :class:`XyloSpec`: limits of one SynSense Xylo chip (sizes, bit widths, decays, spikes per
  step); :data:`XYLO_AUDIO2` (Xylo Audio 2, SYNS61201) is the default;
- :data:`XYLO_SPECS` and :func:`xylo_spec`: every supported Xylo chip, by Rockpool device
  name or alias (:data:`XYLO_CHIP_ALIASES`);
- :data:`XYLO_DEFAULT_HEADROOM`: the Xylo quantizer's default headroom.
"""

from __future__ import annotations

from dataclasses import dataclass

from nrf_nir.errors import NIRError

__all__ = ["XYLO_AUDIO2", "XYLO_CHIP_ALIASES", "XYLO_DEFAULT_HEADROOM", "XYLO_SPECS",
           "XyloSpec", "xylo_spec"]


@dataclass(frozen=True)
class XyloSpec:
    """Limits of one Xylo chip, as XyloSim 0.1.3 (``xylosim.v2``) implements them.

    Bit widths: weights are ``int8`` (``XyloSynapse.weight``), left-shifted by one shift per
    weight matrix (input / recurrent / readout); synaptic currents, membranes, thresholds and
    biases are ``int16`` with saturating additions; decays are bit shifts ``dash`` (4 bits);
    input channels deliver at most 15 events per step, hidden neurons emit at most 31 spikes
    per step, output neurons at most 1. Counts are neurons or channels; ``*_min``/``*_max``
    are integer values; shifts and dashes are bit counts.
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
        """The largest weight magnitude a matrix can hold: ``weight_max << max_weight_shift``
        (integer membrane units per input event)."""
        return self.weight_max << self.max_weight_shift


#: Xylo Audio 2 (SYNS61201): the default Xylo chip.
XYLO_AUDIO2 = XyloSpec()

#: The Xylo chips whose SNN core runs XyloSim's v2 layer, by Rockpool device name. Limits from
#: Rockpool 3.1.0: ``syns63300/xylo_mapper.py`` (496 hidden, 16 outputs) and
#: ``xylo_samna.config_from_specification`` (one synapse per neuron; only the first 128
#: hidden neurons take input weights and only the last 128 drive the readout), and
#: ``syns65302`` likewise (992 hidden, 32 outputs, two synapses). Both simulate with
#: ``syns63300.XyloSim`` on ``xylosim.v2.XyloLayer``, the layer Audio 2 uses. 16 input
#: channels as Audio 2 (Rockpool checks no input count for these two). Xylo v1 (``syns61300``,
#: ``xylosim.v1``) is not included: its layer is another simulator.
XYLO_SPECS: dict[str, XyloSpec] = {
    "syns61201": XYLO_AUDIO2,
    "syns63300": XyloSpec(name="Xylo IMU (SYNS63300)", chip="syns63300", max_hidden=496,
                          max_outputs=16, hidden_synapses=1, max_input_targets=128,
                          max_readout_sources=128),
    "syns65302": XyloSpec(name="Xylo Audio 3 (SYNS65302)", chip="syns65302", max_hidden=992,
                          max_outputs=32, max_input_targets=128, max_readout_sources=128),
}

#: Other names for the Xylo chips (lower case) -> Rockpool device name.
XYLO_CHIP_ALIASES: dict[str, str] = {
    "audio2": "syns61201", "xylo-audio2": "syns61201", "imu": "syns63300",
    "xylo-imu": "syns63300", "audio3": "syns65302", "xylo-audio3": "syns65302"}

#: The Xylo quantizer's default headroom: each layer's scale puts its largest threshold above
#: ``v_leak`` at no more than ``state_max / headroom`` integer units (membrane readouts: the
#: largest steady membrane), so a membrane can rise ``headroom`` thresholds before int16
#: saturates.
XYLO_DEFAULT_HEADROOM = 2.0


def xylo_spec(chip: str | XyloSpec | None) -> XyloSpec:
    """The limits of ``chip``: a Rockpool device name such as ``syns63300``, an alias
    (``audio2``, ``imu``, ``audio3``, case-insensitive) or a spec itself; None is Xylo Audio 2.
    Raises :class:`~nrf_nir.errors.NIRError` (field ``chip``) for an unknown name."""
    if chip is None:
        return XYLO_AUDIO2
    if isinstance(chip, XyloSpec):
        return chip
    key = XYLO_CHIP_ALIASES.get(str(chip).lower(), str(chip).lower())
    if key not in XYLO_SPECS:
        known = ", ".join([*XYLO_SPECS, *XYLO_CHIP_ALIASES])
        raise NIRError(f"unknown Xylo chip {chip!r}; known: {known}", field="chip")
    return XYLO_SPECS[key]
