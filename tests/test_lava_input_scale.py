"""Analog inputs on the fixed-point Lava targets (docs/targets/lava.md, "Analog inputs"): the
option ``input_scale`` sends each input ``x`` as the integer payload ``round(x * input_scale)``
(half to even) and divides the weights of the synapses fed by the Input by it before
quantization. ``loihi`` equals ``lava-fixed`` bit for bit on analog inputs (dense and
convolution), the netx artifact of such a network runs in netx to ``lava-fixed``'s spikes, a
large scale makes the fixed point match the float reference on a case whose weights and decay
are exact in fixed point, and each misuse is one error naming node and field."""

from __future__ import annotations

import json
import math

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.errors import NIRError
from nrf_nir.targets import get
from nrf_nir.targets.lava.common import PAYLOAD_MAX, input_payloads
from nrf_nir.targets.lava.plan import quantize
from tests import helpers
from tests.test_target_lava import needs_lava


def analog(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Inputs uniform in [0, 1), float64 (an image's range)."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def dense_net() -> nir.NIRGraph:
    """input 5 -> Linear 6x5 -> LIF 6 (tau 5 ms)."""
    rng = np.random.default_rng(0)
    return helpers.chain(nir.Linear(weight=rng.normal(0, 3, (6, 5))), helpers.lif(6, tau=0.005),
                         shape=(5,))


def conv_net() -> nir.NIRGraph:
    """input [2, 6, 6] -> Conv2d 2->3 3x3 (stride 2, padding 1, bias) -> LIF [3, 3, 3]."""
    rng = np.random.default_rng(1)
    conv = nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0, 1.5, (3, 2, 3, 3)), stride=2,
                      padding=1, dilation=1, groups=1, bias=rng.normal(0, 0.1, 3))
    shape = (3, 3, 3)
    lif = nir.LIF(tau=np.full(shape, 0.005), r=np.ones(shape), v_leak=np.zeros(shape),
                  v_threshold=np.ones(shape), v_reset=np.zeros(shape))
    return helpers.chain(conv, lif, shape=(2, 6, 6))


def two_layers() -> nir.NIRGraph:
    rng = np.random.default_rng(2)
    return helpers.chain(nir.Linear(weight=rng.normal(0, 3, (6, 5))), helpers.lif(6),
                         nir.Linear(weight=rng.normal(0, 1, (3, 6))), helpers.lif(3), shape=(5,))


def test_quantize_divides_only_the_input_weights_and_reports_the_scale():
    plan = nrf_nir.check(two_layers(), "loihi").analysis
    plain, scaled = quantize(plan), quantize(plan, input_scale=255.0)
    first = scaled.layers[0]
    w = plan.layers[0].w_ff / 255.0  # the float weights the payloads meet
    assert np.max(np.abs(first.w_ff / first.scale - w)) <= 1.01 / first.scale  # rounding only
    assert not np.array_equal(first.w_ff, plain.layers[0].w_ff)
    assert np.array_equal(scaled.layers[1].w_ff, plain.layers[1].w_ff)  # fed by a layer
    assert scaled.report()["input"]["input_scale"] == 255.0
    assert "round(x * input_scale)" in scaled.report()["input"]["payload"]
    assert plain.report()["input"]["input_scale"] is None
    report = nrf_nir.lower(two_layers(), "loihi", input_scale=255).backend.quantization_report()
    assert report["input"]["input_scale"] == 255.0


def test_payloads_round_half_to_even():
    prog = nrf_nir.lower(dense_net(), "loihi", input_scale=2).backend
    x = torch.tensor([0.25, 0.75, 1.25, -0.25, -0.75, 0.3], dtype=torch.float32)
    assert input_payloads(prog, x).tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, 1.0]


def test_a_large_scale_matches_the_float_reference():
    """Weights that are multiples of 1/4 and a decay of 1/4 per step (tau = 4 dt) are exact in
    fixed point, so only the input rounding differs: at input_scale 2**12 every spike equals
    the float64 reference's; at 4 (payloads 0..4) some differ."""
    rng = np.random.default_rng(1)
    g = helpers.chain(nir.Linear(weight=rng.integers(-6, 7, (8, 5)) / 4.0),
                      helpers.lif(8, tau=0.004), shape=(5,))
    x = analog((40, 3, 5), seed=1)
    ref = nrf_nir.run(g, x, dtype="float64")["output"]
    assert int(ref.sum()) > 20
    fine = nrf_nir.run(g, x, target="loihi", dtype="float64", input_scale=2**12)["output"]
    coarse = nrf_nir.run(g, x, target="loihi", dtype="float64", input_scale=4)["output"]
    assert torch.equal(fine, ref)
    assert not torch.equal(coarse, ref)


def test_analog_inputs_without_the_option_are_refused_naming_it():
    x = analog((5, 1, 5), seed=0)
    with pytest.raises(NIRError, match="input_scale=255") as err:
        nrf_nir.run(dense_net(), x, target="loihi")
    assert (err.value.node, err.value.field) == ("input", "inputs")
    got = nrf_nir.run(dense_net(), torch.round(3 * x), target="loihi")["output"]  # integers run
    assert got.shape == (5, 1, 6)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "x", True])
def test_bad_scales_are_refused(bad):
    with pytest.raises(NIRError, match="positive finite") as err:
        nrf_nir.lower(dense_net(), "loihi", input_scale=bad)
    assert (err.value.node, err.value.field) == ("input", "input_scale")


def test_payloads_beyond_24_bits_are_refused():
    x = analog((5, 1, 5), seed=0)
    x[0, 0, 0] = 1.0
    with pytest.raises(NIRError, match="24-bit") as err:
        nrf_nir.run(dense_net(), x, target="loihi", input_scale=2.0**23)
    assert (err.value.node, err.value.field) == ("input", "input_scale")
    top = torch.full((2, 1, 5), float(PAYLOAD_MAX + 1))
    with pytest.raises(NIRError, match="24-bit") as err:
        nrf_nir.run(dense_net(), top, target="loihi")
    assert err.value.field == "inputs"
    ok = nrf_nir.run(dense_net(), top - 1, target="loihi")["output"]  # the largest payload runs
    assert ok.shape == (2, 1, 6)


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("name", ["dense", "conv"])
def test_lava_fixed_loihi_and_netx_agree_on_analog_inputs(name, tmp_path):
    from nrf_nir.targets.lava.netx import run_netx

    g, shape, scale = {"dense": (dense_net(), (5,), 255), "conv": (conv_net(), (2, 6, 6), 100)}[
        name]
    x = analog((20, 2, *shape), seed=3)
    with pytest.raises(NIRError, match="input_scale"):
        nrf_nir.run(g, x, target="lava-fixed")
    lowered = nrf_nir.lower(g, "lava-fixed", dtype="float64", input_scale=scale)
    fixed = lowered.run(x)["output"]
    emu = nrf_nir.run(g, x, target="loihi", dtype="float64", input_scale=scale)["output"]
    assert int(fixed.sum()) > 10
    assert torch.equal(fixed, emu)
    get("lava-fixed").artifact(lowered.backend, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "lava.json").read_text())
    assert meta["input"]["input_scale"] == scale
    assert "round(x * input_scale)" in meta["input"]["values"]
    assert "input_message_bits=24" in meta["load"]
    quant = json.loads((tmp_path / "out" / "quantization.json").read_text())
    assert quant["input"]["input_scale"] == scale
    payloads = torch.round(x[:, 0].reshape(20, -1) * scale).numpy()
    got = run_netx(tmp_path / "out" / "network.net", payloads, meta["latency_steps"],
                   input_message_bits=24)
    assert np.array_equal(got, fixed[:, 0].reshape(20, -1).numpy().astype(np.int8))
