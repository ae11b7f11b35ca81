"""NIR ``Threshold`` on the Lava targets (docs/targets/lava.md, "Mapping").

``z = x > theta`` (``x >= theta`` with ``threshold = "ge"``) keeps no state:

- ``lava-float``: a LIF population with ``du = dv = 1`` (``v = u =`` this step's input, then
  Lava's compare ``v > vth``), spike for spike equal to the float64 reference (alone after
  the Input, as a hidden layer feeding a LIF, with per-neuron thresholds);
- ``lava-fixed``/``loihi``: ``du = dv = 4095`` leaves ``trunc(v / 4096)`` of a non-spiking
  voltage; with an odd threshold mantissa <= 4095, even weights and bias and every input >=
  -4095 a-units that remainder (|r| <= 63) never changes a compare: each step fires exactly
  where its integer input exceeds the mantissa (checked against the quantized input, recorded
  sources included); ``loihi`` equals ``lava-fixed`` bit for bit, and the netx artifact
  reproduces it. Fed by the Input (no bound on graded payloads) it is refused there;
- a different threshold changes the output.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from tests.test_target_lava import LAVA_ERROR, chain, lif, linear, needs_lava, spikes

T, B = 30, 2


def alone(ge: bool = False) -> nir.NIRGraph:
    """input (5) -> Threshold -> output."""
    return chain(nir.Threshold(threshold=np.full(5, 0.5)), shape=(5,),
                 **({"threshold": "ge"} if ge else {}))


def hidden(theta: np.ndarray | float, ge: bool = False, n_hidden: int = 8) -> nir.NIRGraph:
    """input (5) -> Linear -> LIF (n_hidden, 'n1') -> Linear -> Threshold (6, 'n3') -> Linear
    -> LIF (4) -> output."""
    rng = np.random.default_rng(5)
    return chain(linear(rng, n_hidden, 5, 20), lif(n_hidden), linear(rng, 6, n_hidden, 1.0),
                 nir.Threshold(threshold=np.broadcast_to(np.asarray(theta, dtype=np.float64),
                                                         (6,)).copy()),
                 linear(rng, 4, 6, 20), lif(4), shape=(5,),
                 **({"threshold": "ge"} if ge else {}))


def test_threshold_is_a_population_without_state():
    plan = nrf_nir.lower(hidden(0.4), "lava-float").backend.plan
    layer = plan.layers[plan.index["n3"]]
    assert (layer.kind, layer.du, layer.dv, layer.theta) == ("Threshold", 1.0, 1.0, 0.4)
    assert layer.w_rec is None and not np.any(layer.beta)
    ge = nrf_nir.lower(hidden(0.4, ge=True), "lava-float").backend.plan
    assert ge.layers[ge.index["n3"]].vth == np.nextafter(0.4, -np.inf)


@needs_lava
@pytest.mark.parametrize("ge", [False, True])
def test_lava_float_equals_the_reference(ge):
    x = spikes((T, B, 5), seed=7)
    for g, record in ((alone(ge), "n0"), (hidden(0.4, ge), "n3"),
                      (hidden(np.linspace(0.2, 1.2, 6), ge), "n3")):
        ref = nrf_nir.run(g, x, target="reference", dtype="float64", record=(record,))
        got = nrf_nir.lower(g, "lava-float", dtype="float64").run(x, record=(record,))
        for key in ref:
            assert torch.equal(got[key], ref[key]), key
        assert 0 < float(ref[record].mean()) < 1
    # graded inputs equal to the threshold: 'ge' fires there, 'gt' does not
    x = np.random.default_rng(6).integers(0, 3, (T, B, 5)) * 0.25
    ref = nrf_nir.run(alone(ge), x, target="reference", dtype="float64")
    got = nrf_nir.lower(alone(ge), "lava-float", dtype="float64").run(x)
    assert torch.equal(got["output"], ref["output"])
    assert torch.equal(ref["output"], torch.as_tensor(x >= 0.5 if ge else x > 0.5,
                                                      dtype=ref["output"].dtype))


def _fires_where_the_input_exceeds_the_mantissa(g: nir.NIRGraph, x: np.ndarray) -> dict:
    """Run ``g`` on ``loihi`` recording the Threshold ``n3`` and its source ``n1``; assert that
    ``n3`` fires exactly where its integer input (quantized weights times ``n1``'s spikes)
    exceeds its threshold mantissa, step by step (no state); return the outputs."""
    prog = nrf_nir.lower(g, "loihi")
    fixed = prog.backend.fixed
    k = fixed.plan.index["n3"]
    fl = fixed.layers[k]
    assert fl.vth % 2 == 1 and fl.vth <= 4095 and (fl.du, fl.dv) == (4095, 4095)
    (syn,) = fl.inputs
    assert not np.any(syn.weight % 2) and not np.any(fl.bias % 2)
    assert fl.report["threshold_exact"]
    got = prog.run(x, record=("n1", "n3"))
    a = np.einsum("tbj,ij->tbi", got["n1"].numpy().reshape(T, B, -1), syn.weight) + fl.bias
    np.testing.assert_array_equal(got["n3"].numpy().reshape(T, B, -1), (a > fl.vth))
    return got


def test_loihi_threshold_is_stateless():
    """Without Lava: spikes exactly where the quantized input exceeds the mantissa, also where
    many inhibitory inputs force a smaller mantissa (40 sources); a different threshold
    changes the output; fed by the Input it is refused (field ``type``)."""
    x = spikes((T, B, 5), seed=7)
    got = _fires_where_the_input_exceeds_the_mantissa(hidden(0.4), x)
    assert 0 < float(got["n3"].float().mean()) < 1
    other = nrf_nir.lower(hidden(0.8), "loihi").run(x, record=("n3",))
    assert not torch.equal(other["n3"], got["n3"])
    # inputs exactly at the threshold, step after step (x = 1 = theta): an even mantissa equal
    # to the input would keep a positive remainder of a non-spiking step and fire at the next
    at = hidden(1.0)
    at.nodes["n0"] = nir.Linear(weight=np.full((8, 5), 30.0))   # n1 fires most steps
    at.nodes["n2"] = nir.Linear(weight=np.eye(6, 8))
    got = _fires_where_the_input_exceeds_the_mantissa(at, x)
    assert float(got["n1"].float().mean()) > 0.5
    # 400 sources: the weights' largest value (254) would allow inputs far below -4095, so the
    # mantissa (and with it the weights) is smaller
    wide = hidden(0.4, n_hidden=400)
    got = _fires_where_the_input_exceeds_the_mantissa(wide, x)
    assert 0 < float(got["n3"].float().mean()) < 1
    fixed = nrf_nir.lower(wide, "loihi").backend.fixed
    report = fixed.layers[fixed.plan.index["n3"]].report
    assert report["weight_max_abs"] < 200, report
    low = int(report["threshold_exact"].split("inputs >= ")[1].split(" ")[0])
    assert -4095 <= low < -3000, report["threshold_exact"]
    targets = ["loihi"] + (["lava-fixed"] if LAVA_ERROR is None else [])
    for target in targets:
        found = {(v.node, v.field): v.message for v in nrf_nir.check(alone(), target)}
        assert "trunc(v / 4096)" in found.get(("n0", "type"), ""), (target, found)
        found = {(v.node, v.field) for v in nrf_nir.check(hidden(-0.2), target)}
        assert found == {("n3", "threshold")}, (target, found)
    assert nrf_nir.check(hidden(-0.2), "lava-float") == []


@needs_lava
def test_loihi_equals_lava_fixed_on_a_threshold(tmp_path):
    """Bit for bit, and the netx artifact (a Threshold layer as a CUBA layer with the same
    decays and threshold) reproduces ``lava-fixed``'s output spikes."""
    from nrf_nir.targets import get
    from nrf_nir.targets.lava.netx import run_netx

    x = spikes((T, B, 5), seed=7)
    g = hidden(0.4)
    prog = nrf_nir.lower(g, "lava-fixed")
    fixed = prog.run(x, record=("n1", "n3"))
    emu = nrf_nir.lower(g, "loihi").run(x, record=("n1", "n3"))
    assert set(fixed) == set(emu)
    for key in fixed:
        assert torch.equal(fixed[key], emu[key]), key
    ref = nrf_nir.run(g, x, target="reference", dtype="float64", record=("n3",))
    assert float((emu["n3"] == ref["n3"]).float().mean()) > 0.95
    get("lava-fixed").artifact(prog.backend, tmp_path / "out")
    np.testing.assert_array_equal(run_netx(tmp_path / "out" / "network.net", x[:, 0], 3),
                                  fixed["output"][:, 0].numpy().astype(np.int8))
