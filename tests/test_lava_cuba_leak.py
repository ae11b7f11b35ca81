"""A ``CubaLIF`` whose ``v_leak`` differs from ``v_reset``, and a ``CubaLI`` read-out with
``v_leak != 0``, on the Lava targets (docs/targets/lava.md, "Latency").

- CubaLIF: the leak ``c_mem * (v_leak - v_reset)`` is a constant on ``v`` (Lava's ``u`` filters
  its input), Lava's neuron bias; it acts in the idle steps before the population's first real
  step too, so Lava's initial ``v`` is the one those steps (decay and bias) bring to the start:
  ``lava-float`` equals the float64 reference spike for spike at depth 1 and 2, per-neuron
  values, ``initial_state`` 'leak' and 'zero'; ``loihi`` (latency-free, starting from the idle
  steps' integer result) equals ``lava-fixed`` bit for bit; without the leak (``v_leak =
  v_reset``) the same graph spikes differently;
- CubaLI read-out (``initial_state`` 'zero'): read as ``v - v_leak``, starting at ``-v_leak``;
  ``lava-float`` within float64 rounding of the reference;
- the netx artifact refuses the leak's bias (its reset cancels the idle steps, not the start).
"""

from __future__ import annotations

import nir
import numpy as np
import torch

import nrf_nir
from nrf_nir.targets.lava.netx import netx_problems
from nrf_nir.targets.lava.plan import fixed_v_init, float_idle_v, float_v_init, lava_decay_v
from tests.helpers import on_the_three_lava_targets
from tests.test_target_lava import chain, linear, needs_lava, spikes

T, B = 30, 2


def leaky_cuba(n: int, rng: np.random.Generator, leak: bool = True) -> nir.CubaLIF:
    """A CubaLIF with per-neuron ``v_leak`` (``leak=False``: equal to ``v_reset``),
    ``v_reset`` and thresholds."""
    v_reset = rng.uniform(-0.3, 0.1, n)
    return nir.CubaLIF(tau_syn=np.full(n, 0.004), tau_mem=np.full(n, 0.008), r=np.ones(n),
                       v_leak=rng.uniform(0.3, 0.7, n) if leak else v_reset,
                       v_threshold=rng.uniform(0.9, 1.2, n), v_reset=v_reset,
                       w_in=np.ones(n))


def two_cuba(seed: int = 0, leak: bool = True, **meta: object) -> nir.NIRGraph:
    """input -> Linear -> CubaLIF (depth 1) -> Linear -> CubaLIF (depth 2)."""
    rng = np.random.default_rng(seed)
    return chain(linear(rng, 6, 5, 3), leaky_cuba(6, rng, leak), linear(rng, 4, 6, 5),
                 leaky_cuba(4, rng, leak), shape=(5,), **meta)


def cuba_readout(seed: int = 0, v_leak: float = 0.6) -> nir.NIRGraph:
    """input -> Linear -> CubaLIF -> Linear -> CubaLI (per-neuron ``v_leak`` around
    ``v_leak``), initial_state 'zero'."""
    rng = np.random.default_rng(seed)
    n = 3
    li = nir.CubaLI(tau_syn=np.full(n, 0.004), tau_mem=np.full(n, 0.01), r=np.ones(n),
                    v_leak=v_leak * rng.uniform(0.5, 1.5, n), w_in=np.ones(n))
    return chain(linear(rng, 6, 5, 3), leaky_cuba(6, rng, leak=False), linear(rng, n, 6, 1),
                 li, shape=(5,), initial_state="zero")


def names(g: nir.NIRGraph) -> tuple[str, ...]:
    return tuple(k for k, v in g.nodes.items() if isinstance(v, nir.CubaLIF))


def test_initial_v_reaches_the_start_through_the_idle_steps():
    """Without Lava: the float initial v lands on the start after ``depth`` idle steps ``v *
    (1 - dv) + 0 + bias`` (Lava's float LIF); the integer one (bisection over Lava's monotone
    integer idle step with the bias) is the closest reachable; the emulator starts there."""
    for meta in ({}, {"initial_state": "zero"}):
        prog = nrf_nir.lower(two_cuba(**meta), "loihi")
        plan, fixed = prog.backend.plan, prog.backend.fixed
        assert [ly.depth for ly in plan.layers] == [1, 2]
        for ly, fl in zip(plan.layers, fixed.layers, strict=True):
            assert ly.v_bias is not None and np.all(ly.v_bias != 0) and ly.v_init is not None
            start = np.zeros(ly.n) if ly.v_start is None else ly.v_start
            np.testing.assert_allclose(
                float_idle_v(ly.v_init, ly.dv, ly.depth, ly.v_bias)[-1], start,
                rtol=0, atol=2.3e-16 * float(np.max(np.abs(ly.v_bias)) + 1))
            assert fl.v_bias is not None and fl.v_init is not None and fl.v_start is not None
            np.testing.assert_array_equal(fl.v_bias, np.round(fl.scale * ly.v_bias))
            want = np.round(64 * fl.scale * start).astype(np.int64)
            got = lava_decay_v(fl.v_init, fl.dv, fl.depth, fl.v_bias)
            np.testing.assert_array_equal(fl.v_start, got)
            for step in (-2, -1, 1, 2):   # no integer nearby lands closer
                near = lava_decay_v(fl.v_init + step, fl.dv, fl.depth, fl.v_bias)
                assert np.all(np.abs(near - want) >= np.abs(got - want))
    # exhaustively on a small range, with a negative and a positive bias
    for bias in (-7, 5):
        b = np.full(1, bias)
        starts = np.arange(-300, 301, dtype=np.int64)
        got = lava_decay_v(fixed_v_init(starts, 2000, 3, b), 2000, 3, b)
        every = np.unique(lava_decay_v(np.arange(-20000, 20001, dtype=np.int64), 2000, 3, b))
        assert every[0] < starts[0] and every[-1] > starts[-1]
        at = np.clip(np.searchsorted(every, starts), 1, every.size - 1)
        best = np.minimum(np.abs(every[at] - starts), np.abs(every[at - 1] - starts))
        np.testing.assert_array_equal(np.abs(got - starts), best)
    x = float_v_init(np.array([0.25, -0.1]), 0.3, 2, np.array([0.2, -0.05]))
    assert np.array_equal(float_idle_v(x, 0.3, 2, np.array([0.2, -0.05]))[-1], [0.25, -0.1])


def test_idle_steps_that_would_cross_the_threshold_are_refused():
    """Start 0.9 above v_reset, the leak pulling down to 1.1 below it, ``c = 0.5``: Lava's v
    comes down to the start through the idle steps, from 2.9 (one idle step: below the
    threshold 1 after it) or 6.9 (two: 2.9 after the first, which would fire)."""
    rng = np.random.default_rng(2)
    n = 3
    hot = nir.CubaLIF(tau_syn=np.full(n, 0.004), tau_mem=np.full(n, 0.002), r=np.ones(n),
                      v_leak=np.full(n, -2.0), v_threshold=np.full(n, 0.1),
                      v_reset=np.full(n, -0.9), w_in=np.ones(n))
    g = chain(linear(rng, n, 3, 1), hot, linear(rng, n, n, 1), hot, shape=(3,),
              initial_state="zero")
    got = [(v.node, v.field) for v in nrf_nir.check(g, "loihi")]
    assert got == [("n3", "v_reset")], got


def test_netx_refuses_the_leak_bias():
    fixed = nrf_nir.lower(two_cuba(initial_state="zero"), "loihi").backend.fixed
    problems = netx_problems(fixed)
    assert any("leak" in p and "neuron bias" in p for p in problems), problems


@needs_lava
def test_cuba_leak_on_the_lava_targets():
    """Depth 1 and 2, per-neuron values, initial_state 'leak' and 'zero': lava-float equals
    the reference, loihi equals lava-fixed; without the leak the spikes differ."""
    x = spikes((T, B, 5), rate=0.2, seed=3)
    for meta in ({}, {"initial_state": "zero"}):
        g = two_cuba(**meta)
        record = names(g)
        ref, emu = on_the_three_lava_targets(g, x, record=record)
        for key in ("output", *record):
            assert float(ref[key].sum()) > 0, key
            agree = float((emu[key] == ref[key]).float().mean())
            assert agree > 0.9, (key, agree)
        plain = nrf_nir.run(two_cuba(leak=False, **meta), x, target="lava-float",
                            dtype="float64", record=record)
        for key in ("output", *record):
            assert not torch.equal(plain[key], ref[key]), key


@needs_lava
def test_cuba_readout_with_v_leak_on_the_lava_targets():
    g = cuba_readout()
    x = spikes((T, B, 5), rate=0.2, seed=4)
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")["output"]
    got = nrf_nir.lower(g, "lava-float", dtype="float64").run(x)["output"]
    scale = float(ref.abs().max())
    assert float((got - ref).abs().max()) <= 1e-13 * scale, float((got - ref).abs().max())
    fixed = nrf_nir.lower(g, "lava-fixed").run(x)["output"]
    emu = nrf_nir.lower(g, "loihi").run(x)["output"]
    assert torch.equal(fixed, emu)
    assert float((emu - ref).abs().max()) < 0.05 * scale
    # v_leak matters: with v_leak 0 the read-out differs by far more than the rounding
    plain = nrf_nir.run(cuba_readout(v_leak=0.0), x, target="lava-float", dtype="float64")
    assert float((plain["output"] - ref).abs().max()) > 0.1 * scale


def li_synapse(seed: int = 5, lif_leak: bool = True, li_leak: float = 0.0,
               **meta: object) -> nir.NIRGraph:
    """input -> Linear -> LI (a synapse: Lava's u) -> Linear -> LIF, per-neuron values;
    ``lif_leak``: the LIF's ``v_leak`` differs from ``v_reset`` (a neuron bias: u filters);
    ``li_leak``: the LI's ``v_leak``."""
    rng = np.random.default_rng(seed)
    n = 5
    li = nir.LI(tau=np.full(4, 0.003), r=np.ones(4), v_leak=np.full(4, li_leak))
    v_reset = rng.uniform(-0.3, 0.1, n)
    lif = nir.LIF(tau=np.full(n, 0.01), r=np.ones(n),
                  v_leak=rng.uniform(0.3, 0.7, n) if lif_leak else v_reset,
                  v_threshold=rng.uniform(0.9, 1.2, n), v_reset=v_reset)
    return chain(linear(rng, 4, 4, 3), li, linear(rng, n, 4, 3), lif, shape=(4,), **meta)


def test_an_li_synapse_with_v_leak_runs_from_zero_and_is_refused_from_v_leak():
    assert nrf_nir.check(li_synapse(li_leak=0.4, initial_state="zero"), "loihi") == []
    got = [(v.node, v.field) for v in nrf_nir.check(li_synapse(li_leak=0.4), "loihi")]
    assert got == [("n1", "v_leak")], got


@needs_lava
def test_lif_behind_an_li_synapse_with_leaks_on_the_lava_targets():
    """The LIF's leak (a neuron bias: u is the LI's current) and, from initial_state 'zero',
    the LI's own v_leak (a constant input filtered by u): lava-float equals the reference,
    loihi equals lava-fixed; without either leak the spikes differ."""
    x = spikes((T, B, 4), rate=0.3, seed=6)
    for g, plain in ((li_synapse(), li_synapse(lif_leak=False)),
                     (li_synapse(li_leak=-0.5, initial_state="zero"),
                      li_synapse(li_leak=0.0, initial_state="zero"))):
        ref, _ = on_the_three_lava_targets(g, x)
        assert float(ref["output"].sum()) > 0
        other = nrf_nir.run(plain, x, target="lava-float", dtype="float64")
        assert not torch.equal(other["output"], ref["output"])
