"""Exported Norse models on the Lava targets and in the lava-dl netx artifact
(docs/targets/lava.md, "Artifact"): a biased Linear, Linear -> LIFRecurrentCell, an LI
read-out, README journey 1's model (its ``LICell`` is a CubaLI fed by a biased Linear: the bias
as an always-on channel, one more neuron of the hidden layer) and a biased Linear -> LICell
(the always-on channel as one more input channel) deploy with ``nrf-nir deploy --target
lava-fixed`` and run in ``lava.lib.dl.netx.hdf5.Network`` to ``lava-fixed``'s outputs
exactly; journey 1's model runs on all three Lava targets; a deploy that netx cannot express
writes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.cli import main
from tests.test_target_lava import LAVA_ERROR, needs_lava, spikes

snn = pytest.importorskip("norse.torch")


def export(model: torch.nn.Module, gain: float = 4.0):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.3, 0.3).mul_(gain)
    return nrf_nir.export(model, torch.zeros(1, 10))


def models() -> dict:
    torch.manual_seed(0)
    return {
        "biased-linear": snn.SequentialState(torch.nn.Linear(10, 20), snn.LIFBoxCell()),
        "linear-recurrent-cell": snn.SequentialState(torch.nn.Linear(10, 20, bias=False),
                                                     snn.LIFRecurrentCell(20, 20)),
        "li-readout": snn.SequentialState(torch.nn.Linear(10, 20), snn.LIFBoxCell(),
                                          torch.nn.Linear(20, 4), snn.LIBoxCell()),
        "journey1": journey1_model(),
        "cuba-readout-first": snn.SequentialState(torch.nn.Linear(10, 4), snn.LICell()),
    }


def journey1_model() -> torch.nn.Module:
    return snn.SequentialState(torch.nn.Linear(10, 20), snn.LIFBoxCell(),
                               torch.nn.Linear(20, 4), snn.LICell())


def journey1():
    return export(journey1_model())


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("name", list(models()))
def test_deployed_netx_equals_lava_fixed(name, tmp_path):
    from nrf_nir.targets.lava.netx import run_netx

    g = export(models()[name])
    nrf_nir.save(g, tmp_path / "model.nir")
    out = tmp_path / "deploy"
    assert main(["deploy", str(tmp_path / "model.nir"), "--target", "lava-fixed", "-o",
                 str(out)]) == 0
    meta = json.loads((out / "lava.json").read_text())
    quant = json.loads((out / "quantization.json").read_text())
    assert quant["passes"] == meta["passes"]
    if name == "linear-recurrent-cell":
        assert any(p.startswith("fold Affine") or p.startswith("fold Linear")
                   for p in meta["passes"]), meta["passes"]
    x = spikes((50, 2, 10), seed=2)
    fixed = nrf_nir.lower(g, "lava-fixed", dtype="float64").run(x)["output"].numpy()
    assert np.abs(fixed).sum() > 0
    readout = meta.get("readout")
    assert (readout is not None) == (name in ("li-readout", "journey1", "cuba-readout-first"))
    always_on = meta["input"]["neurons"] == 11
    assert always_on == (name == "cuba-readout-first")
    if name == "journey1":  # the hidden layer's always-on neuron keeps its threshold low
        layers = quant["layers"]
        assert "vth_capped_for_always_on" in layers[0] and layers[0]["vth_mant"] <= 4094
        assert "bias_as_weight" in layers[1]
    for b in range(2):
        got = run_netx(out / "network.net", x[:, b], meta["latency_steps"],
                       readout=readout is not None, always_on=always_on)
        if readout is not None:
            got = got / (64 * readout["scale"]) + np.asarray(readout["offset"])
        np.testing.assert_array_equal(got, fixed[:, b])


def test_journey1_model_maps_to_every_lava_target():
    g = journey1()
    for target in ("loihi",) + (() if LAVA_ERROR else ("lava-float", "lava-fixed")):
        assert nrf_nir.check(g, target) == [], target
    x = spikes((60, 3, 10), seed=4)
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")["output"]
    emu = nrf_nir.lower(g, "loihi", dtype="float64").run(x)["output"]
    assert float(ref.abs().max()) > 0
    # fixed point: quantization plus the odd hidden spike that flips (0.3 % here)
    assert float((emu - ref).abs().mean() / ref.abs().mean()) < 0.05
    assert torch.equal(emu[-1].argmax(-1), ref[-1].argmax(-1))


@pytest.mark.slow
@needs_lava
def test_journey1_runs_on_lava_and_refused_deploy_writes_nothing(tmp_path):
    g = journey1()
    x = spikes((60, 3, 10), seed=4)
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")["output"]
    got = nrf_nir.lower(g, "lava-float", dtype="float64").run(x)["output"]
    assert float((got - ref).abs().max()) <= 1e-12 * float(ref.abs().max())
    fixed = nrf_nir.lower(g, "lava-fixed", dtype="float64").run(x)["output"]
    emu = nrf_nir.lower(g, "loihi", dtype="float64").run(x)["output"]
    assert torch.equal(fixed, emu)
    # what netx cannot hold: a node split into populations of one time constant each
    g = export(snn.SequentialState(torch.nn.Linear(10, 4), snn.LIFBoxCell(
        snn.LIFBoxParameters(tau_mem_inv=torch.tensor([100.0, 200.0, 100.0, 200.0])))))
    assert nrf_nir.check(g, "lava-fixed") == []
    nrf_nir.save(g, tmp_path / "model.nir")
    out = tmp_path / "deploy"
    assert main(["deploy", str(tmp_path / "model.nir"), "--target", "lava-fixed", "-o",
                 str(out)]) != 0
    assert not out.exists()
