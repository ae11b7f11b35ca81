"""The reference target: nrf-nir's own simulator (the contract every target is judged by)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from nrf_nir.reference import Program
from nrf_nir.semantics import Semantics
from nrf_nir.targets import Options, Violation, option_bool, option_int, parse_options
from nrf_nir.validate import Checked

#: The options of ``lower`` (``nrf_nir.reference.Program``'s): ``chunk_bytes`` (bytes of node
#: outputs per chunk of time steps), ``stepwise`` (one step per chunk), ``fused`` (the compiled
#: CPU neuron kernel of ``nrf_nir.fused``), ``progress`` (a progress bar over time steps).
OPTIONS = {"chunk_bytes": option_int(low=1), "stepwise": option_bool, "fused": option_bool,
           "progress": option_bool}


class ReferenceTarget:
    name = "reference"
    progress = True  # takes the option progress (a progress bar over time steps)
    description = "batched PyTorch reference simulator (CUDA when present, else CPU)"

    def check(self, checked: Checked, semantics: Semantics,
              options: Options | None = None) -> list[Violation]:
        return []  # runs every valid graph

    def lower(self, checked: Checked, semantics: Semantics, options: Options) -> Program:
        extra = parse_options(options, OPTIONS, self.name)
        return Program(checked, semantics, dtype=options.dtype, device=options.device, **extra)

    def run(self, lowered: Program, inputs: Mapping[str, Tensor],
            record: tuple[str, ...]) -> dict[str, Tensor]:
        moved = {k: v.to(device=lowered.device, dtype=lowered.dtype) for k, v in inputs.items()}
        return lowered.run(moved, record)


TARGET = ReferenceTarget()
