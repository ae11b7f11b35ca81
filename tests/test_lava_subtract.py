"""Subtract reset (``reset = "subtract"``: ``v -= v_th - v_reset`` where a spike fired) on the
Lava targets (docs/targets/lava.md, "Subtract reset").

- Lava 0.10's ``ATRLIF`` with a constant threshold (``delta_theta = theta_step = 0``) and
  ``delta_r = delta_v`` holds ``w = v - r`` as one leaky membrane; it fires at ``w >= theta_0``
  and then subtracts ``2 * theta_0``. With ``theta_0 = theta/2`` and ``w = v' - theta/2``
  (start and neuron bias shifted) it is the reference's subtract reset: LIF (depth 1) and
  CubaLIF (depth 2) with per-neuron values, ``gt`` and ``ge``: ``lava-float`` equals the
  float64 reference spike for spike, ``loihi`` (the emulator's ATRLIF model) equals
  ``lava-fixed`` (``PyATRLIFModelFixed``) bit for bit; with reset 'value' the same graph spikes
  differently;
- the plan's ATRLIF population: ``theta_0`` (``gt``: the successor of ``theta/2``), the start
  and the bias shifted by ``theta/2``; fixed point: an even threshold mantissa ``2 * theta_0``;
- refused in numbers: an IF in fixed point (its ``r`` never decays), an odd forced ``vth``;
  the netx artifact (no ATRLIF neuron in netx), in one line.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.errors import NIRError
from nrf_nir.targets.lava.netx import netx_problems
from tests.helpers import on_the_three_lava_targets
from tests.test_lava_graph_passes import plan_of
from tests.test_target_lava import chain, linear, needs_lava, spikes

T, B = 40, 2


def lif_per_neuron(n: int, rng: np.random.Generator) -> nir.LIF:
    """A LIF with per-neuron time constants, ``r``, thresholds and ``v_reset`` (v_leak = 0)."""
    return nir.LIF(tau=np.full(n, 0.01), r=rng.uniform(0.8, 1.2, n), v_leak=np.zeros(n),
                   v_threshold=rng.uniform(0.5, 1.0, n), v_reset=rng.uniform(-0.2, 0.0, n))


def cuba_per_neuron(n: int, rng: np.random.Generator) -> nir.CubaLIF:
    """A CubaLIF with per-neuron ``r``, ``w_in``, thresholds and ``v_reset`` (v_leak = 0)."""
    return nir.CubaLIF(tau_syn=np.full(n, 0.004), tau_mem=np.full(n, 0.008),
                       r=rng.uniform(0.8, 1.2, n), v_leak=np.zeros(n),
                       v_threshold=rng.uniform(0.5, 1.0, n), v_reset=rng.uniform(-0.2, 0.0, n),
                       w_in=rng.uniform(0.8, 1.2, n))


def two_layers(reset: str = "subtract", threshold: str = "gt", seed: int = 0) -> nir.NIRGraph:
    """input -> Linear -> LIF 'n1' (depth 1) -> Linear -> CubaLIF 'n3' (depth 2)."""
    rng = np.random.default_rng(seed)
    return chain(linear(rng, 6, 5, 3.0), lif_per_neuron(6, rng), linear(rng, 4, 6, 4.0),
                 cuba_per_neuron(4, rng), shape=(5,), reset=reset, threshold=threshold)


def test_plan_holds_w_as_v_minus_half_theta():
    """Without Lava: the ATRLIF population's threshold, start and bias (float-Lava units: per
    neuron thresholds divided out, theta = 1)."""
    for threshold, vth in (("ge", 0.5), ("gt", float(np.nextafter(0.5, 1.0)))):
        g = two_layers(threshold=threshold)
        plan = plan_of(g, "lava-float")
        for layer in plan.layers:
            node = g.nodes[layer.name]
            theta = node.v_threshold - node.v_reset
            assert layer.subtract and layer.theta == 1.0
            assert layer.vth == vth
            # v' = v - v_reset starts at -v_reset; divided by theta (sigma); w = v' - 1/2
            assert layer.v_start is not None
            np.testing.assert_allclose(layer.v_start, -node.v_reset / theta - 0.5, rtol=1e-15)
            # the bias -dv/2 (a CubaLIF's also holds its leak dv * (v_leak - v_reset) / theta;
            # a LIF's leak is its constant input)
            leak = -node.v_reset / theta if isinstance(node, nir.CubaLIF) else 0.0
            assert layer.v_bias is not None
            np.testing.assert_allclose(layer.v_bias, layer.dv * (leak - 0.5), rtol=1e-14)
        assert any("ATRLIF" in p for p in plan.passes)
    value = plan_of(two_layers(reset="value"), "lava-float")
    assert not any(layer.subtract for layer in value.layers)
    assert value.layers[0].vth == 1.0


def test_fixed_point_threshold_is_even_theta_0():
    """Without Lava: the quantized ATRLIF populations hold ``theta_0`` (``vth``), half an even
    threshold mantissa; the start is ``-theta_0 << 6`` before the idle steps."""
    fixed = nrf_nir.lower(two_layers(), "loihi").backend.fixed
    for fl in fixed.layers:
        assert fl.subtract and 1 <= fl.vth <= 4095
        assert fl.report["vth_mant"] == 2 * fl.vth
        assert "ATRLIF" in fl.report["threshold_compare"]
        assert fl.v_bias is not None and np.all(fl.v_bias < 0)   # -dv * theta/2 dominates
    with pytest.raises(NIRError, match="even threshold mantissa"):
        nrf_nir.lower(two_layers(), "loihi", vth=301)


@needs_lava
@pytest.mark.parametrize("threshold", ["gt", "ge"])
def test_subtract_on_the_three_lava_targets(threshold):
    g = two_layers(threshold=threshold)
    x = spikes((T, B, 5), rate=0.4)
    record = ("n1",)
    ref, emu = on_the_three_lava_targets(g, x, record)
    assert 20 < int(ref["n1"].sum()) < T * B * 6 - 20   # the hidden layer fires and rests
    assert int(ref["output"].sum()) > 10
    assert float((emu["n1"] == ref["n1"]).double().mean()) > 0.95   # 8-bit weights
    # the reset matters: with reset 'value' the reference spikes differently
    zero = nrf_nir.run(two_layers(reset="value", threshold=threshold), x, target="reference",
                       dtype="float64", record=record)
    assert not torch.equal(zero["n1"], ref["n1"])
    assert not torch.equal(zero["output"], ref["output"])


def test_refusals_in_numbers():
    """An IF in fixed point (``lava-float`` maps it); the netx artifact, in one line."""
    rng = np.random.default_rng(1)
    n = 3
    if_sub = chain(linear(rng, n, 4, 1.0), nir.IF(r=np.full(n, 100.0), v_threshold=np.ones(n),
                                                  v_reset=np.zeros(n)), reset="subtract")
    found = [v for v in nrf_nir.check(if_sub, "loihi") if v.field == "reset"]
    assert [v.node for v in found] == ["n1"]
    assert "never decays" in found[0].message and "16 at theta_0 = 4095" in found[0].message
    assert nrf_nir.check(if_sub, "lava-float") == []
    problems = netx_problems(nrf_nir.lower(two_layers(), "loihi").backend.fixed)
    assert len(problems) == 1 and "no ATRLIF" in problems[0], problems
