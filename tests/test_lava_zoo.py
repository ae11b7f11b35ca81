"""The model zoo on the Lava targets (docs/targets/lava.md, "The zoo on Lava").

poker-dvs, first-spike, time-surface, tts-encoder and nrf map to all three Lava targets;
first-spike-adlif and first-spike-xylo are refused, each for its stated reason. On Lava (small
T and B for speed): ``lava-float`` equals the float64 reference (spikes exactly, read-out
voltages within float64 rounding) and ``loihi`` equals ``lava-fixed`` bit for bit. Without
Lava: the fixed-point decisions of poker-dvs and first-spike agree with the float64 reference
(``loihi``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.metrics import decision_agreement
from tests.test_target_lava import needs_lava

models = pytest.importorskip("nrf_nir.models")

RUN = ("poker-dvs", "first-spike", "time-surface", "tts-encoder", "nrf")
#: read-out voltages: agreement with the float64 reference (rounding only), relative to the
#: largest voltage
ROUNDING = 1e-12


def zoo(name: str):
    if not models.has_checkpoint(name):
        pytest.skip(f"zoo model {name!r} has no checkpoint")
    return models.export(name)


def zoo_input(name: str, B: int, T: int, *, integers: bool = False) -> torch.Tensor:
    """``B`` generated samples of ``T`` steps (float64); ``integers``: analog inputs (the
    tts-encoder's images) as graded payloads ``round(255 x)`` for the fixed-point targets."""
    x, _ = models.spec(name).generate(B, T, seed=12_345)
    x = x.to(torch.float64)
    return torch.round(255 * x) if integers and not torch.all(x == torch.round(x)) else x


def test_zoo_maps_to_the_lava_targets_or_is_refused_with_its_reason():
    for name in RUN:
        found = nrf_nir.check(zoo(name), "loihi")
        assert found == [], (name, [str(v) for v in found])
    passes = nrf_nir.check(zoo("nrf"), "loihi").analysis.passes
    assert sum(p.startswith("split LIF 'lif") for p in passes) == 3  # lif1, lif2, lif3
    assert any(p.startswith("fold AvgPool2d 'pool1' into Conv2d 'conv1'") for p in passes)
    # first-spike-xylo's subtract reset maps onto Lava's ATRLIF (tests/test_lava_subtract.py)
    assert nrf_nir.check(zoo("first-spike-xylo"), "loihi") == []
    assert any("ATRLIF" in p for p in
               nrf_nir.check(zoo("first-spike-xylo"), "loihi").analysis.passes)
    found = {(v.node, v.field) for v in nrf_nir.check(zoo("first-spike-adlif"), "loihi")}
    assert ("lif1.lif", "edges") in found  # its adaptation LI loop


@pytest.mark.slow
@pytest.mark.parametrize("name,B,T", [("poker-dvs", 16, 60), ("first-spike", 16, 100)])
def test_fixed_point_decisions_agree_with_the_float_model(name, B, T):
    """The task metric on the fixed-point targets (loihi == lava-fixed): decisions agree with
    the float64 reference on >= 99 % of the samples."""
    g = zoo(name)
    x = zoo_input(name, B, T)
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")["output"]
    got = nrf_nir.run(g, x, target="loihi", dtype="float64")["output"]
    decode = models.spec(name).DECODE
    assert decision_agreement(ref, got, decode) >= 0.99


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("name,B,T", [("poker-dvs", 2, 20), ("first-spike", 2, 40),
                                      ("time-surface", 2, 20), ("tts-encoder", 2, 4),
                                      ("nrf", 1, 10)])
def test_zoo_on_lava(name, B, T):
    g = zoo(name)
    x = zoo_input(name, B, T)
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")
    got = nrf_nir.lower(g, "lava-float", dtype="float64").run(x)
    spiking = models.spec(name).SPIKING if hasattr(models.spec(name), "SPIKING") else True
    for key, r in ref.items():
        assert float(r.abs().sum()) > 0, key
        if spiking:
            assert torch.equal(got[key], r), (
                f"{key}: {int((got[key] != r).sum())} of {r.numel()} differ")
        else:
            assert float((got[key] - r).abs().max()) <= ROUNDING * float(r.abs().max()), key
    xi = zoo_input(name, B, T, integers=True)
    fixed = nrf_nir.lower(g, "lava-fixed", dtype="float64").run(xi)
    emu = nrf_nir.lower(g, "loihi", dtype="float64").run(xi)
    for key in fixed:
        assert torch.equal(fixed[key], emu[key]), key
        assert float(np.abs(fixed[key].numpy()).sum()) > 0, key
