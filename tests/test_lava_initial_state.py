"""Neurons whose membrane starts away from ``v_reset`` on the Lava targets (docs/targets/lava.md,
"Latency"): a LIF with ``initial_state = "leak"`` and ``v_leak != v_reset``, an IF with
``v_reset != 0`` (it starts at 0).

- Lava's initial ``v`` is the shifted start ``v0 - v_reset`` divided by the decay of the
  ``depth`` idle Lava steps before the population's first real step: ``lava-float`` equals the
  float64 reference spike for spike at depth 1 and 2, and the start matters (forced to
  ``v_reset`` the same graph spikes differently);
- fixed point: the integer initial ``v`` whose idle decays land closest to the scaled start;
  ``loihi`` (latency-free) starts from those decays and equals ``lava-fixed`` bit for bit;
- a start that the idle decays would carry above the threshold (Lava would fire before the
  reference's first step) is refused (``v_reset``);
- the netx artifact refuses such a network (netx's neuron has no initial state).
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.errors import NIRError
from nrf_nir.targets.lava.netx import netx_problems
from nrf_nir.targets.lava.plan import fixed_v_init, float_v_init, lava_decay_v
from tests.test_target_lava import chain, linear, needs_lava, spikes

T, B = 40, 2


def leaky(n: int, rng: np.random.Generator, tau: float = 0.01) -> nir.LIF:
    """A LIF whose per-neuron ``v_leak`` (its start, ``initial_state = "leak"``) differs from
    its per-neuron ``v_reset``."""
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, 1.0), v_leak=rng.uniform(0.3, 0.8, n),
                   v_threshold=rng.uniform(0.9, 1.2, n), v_reset=rng.uniform(-0.4, 0.1, n))


def two_leaky(seed: int = 0) -> nir.NIRGraph:
    """input -> Linear -> LIF (depth 1) -> Linear -> LIF (depth 2), both starting at v_leak."""
    rng = np.random.default_rng(seed)
    return chain(linear(rng, 6, 5, 8), leaky(6, rng), linear(rng, 4, 6, 10), leaky(4, rng),
                 shape=(5,))


def if_graph(seed: int = 0) -> nir.NIRGraph:
    """input -> Linear -> IF with v_reset != 0 (it starts at 0)."""
    rng = np.random.default_rng(seed)
    n = 5
    return chain(linear(rng, n, 4, 1.0),
                 nir.IF(r=np.full(n, 100.0), v_threshold=np.full(n, 1.0),
                        v_reset=rng.uniform(-0.8, -0.2, n)), shape=(4,))


def hidden(g: nir.NIRGraph) -> tuple[str, ...]:
    return tuple(k for k, v in g.nodes.items() if isinstance(v, nir.LIF | nir.IF))


def test_initial_v_decays_to_the_start():
    """Without Lava: the float initial v lands on the start after ``depth`` idle products
    ``v * (1 - dv)`` (as Lava's float LIF computes them); the integer one is the closest
    reachable by Lava's fixed-point decay, and the emulator's start is its k-fold decay."""
    plan = nrf_nir.lower(two_leaky(), "loihi").backend.plan
    assert [ly.depth for ly in plan.layers] == [1, 2]
    for ly in plan.layers:
        assert ly.v_start is not None and ly.v_init is not None
        v = ly.v_init
        for _ in range(ly.depth):
            v = v * (1 - ly.dv) + 0.0 + 0.0
        # exact where a value lands on the start (a product into a smaller binade may skip
        # it: then the closest, within float64 rounding)
        np.testing.assert_allclose(v, ly.v_start, rtol=2.3e-16, atol=0)
        assert np.all(np.abs(ly.v_init) > np.abs(ly.v_start))
    assert np.array_equal(float_v_init(np.array([0.3]), 0.0, 3), [0.3])  # IF: no decay
    fixed = nrf_nir.lower(two_leaky(), "loihi").backend.fixed
    for fl, ly in zip(fixed.layers, plan.layers, strict=True):
        want = np.round(64 * fl.scale * ly.v_start).astype(np.int64)
        assert fl.v_init is not None and fl.v_start is not None
        np.testing.assert_array_equal(fl.v_start, lava_decay_v(fl.v_init, fl.dv, fl.depth))
        err = np.abs(fl.v_start - want)
        for step in (-2, -1, 1, 2):  # no integer nearby lands closer
            near = lava_decay_v(fl.v_init + step, fl.dv, fl.depth)
            assert np.all(np.abs(near - want) >= err)
    # exhaustively on a small range: the closest k-fold decay, with Lava's truncation
    starts = np.arange(-300, 301, dtype=np.int64)
    got = lava_decay_v(fixed_v_init(starts, 2000, 3), 2000, 3)
    every = lava_decay_v(np.arange(-3000, 3001, dtype=np.int64), 2000, 3)
    best = np.min(np.abs(every[None, :] - starts[:, None]), axis=1)
    np.testing.assert_array_equal(np.abs(got - starts), best)


def test_a_start_decayed_back_above_the_threshold_is_refused():
    """``v_leak`` 0.95 below a threshold of 1, ``c = 0.5``: at depth 2 Lava's initial v would be
    3.8 and fire in the idle steps; at depth 1 it is 1.9, 0.95 after the idle step: runs."""
    rng = np.random.default_rng(1)

    def near(n: int) -> nir.LIF:
        return nir.LIF(tau=np.full(n, 0.002), r=np.ones(n), v_leak=np.full(n, 0.95),
                       v_threshold=np.ones(n), v_reset=np.zeros(n))

    deep = chain(linear(rng, 3, 3, 1), near(3), linear(rng, 3, 3, 1), near(3), shape=(3,))
    got = [(v.node, v.field) for v in nrf_nir.check(deep, "loihi")]
    assert got == [("n3", "v_reset")], got
    assert nrf_nir.check(chain(linear(rng, 3, 3, 1), near(3), shape=(3,)), "loihi") == []


def test_netx_refuses_an_initial_state():
    fixed = nrf_nir.lower(if_graph(), "loihi").backend.fixed
    problems = netx_problems(fixed)
    assert len(problems) == 1 and "no initial state" in problems[0], problems


@needs_lava
def test_leak_start_at_depth_1_and_2_on_the_lava_targets():
    g = two_leaky()
    x = spikes((T, B, 5), seed=1)
    record = hidden(g)
    ref = nrf_nir.run(g, x, target="reference", dtype="float64", record=record)
    prog = nrf_nir.lower(g, "lava-float", dtype="float64")
    got = prog.run(x, record=record)
    for key in ("output", *record):
        assert float(ref[key].sum()) > 0, key
        assert torch.equal(got[key], ref[key]), key
    fixed = nrf_nir.lower(g, "lava-fixed").run(x, record=record)
    emu = nrf_nir.lower(g, "loihi").run(x, record=record)
    for key in ("output", *record):
        assert torch.equal(fixed[key], emu[key]), key
    # the start matters: forced to v_reset (Lava's own 0), the same graph spikes differently
    for ly in prog.backend.plan.layers:
        ly.v_start = None
    forced = prog.run(x, record=record)
    assert not torch.equal(forced[record[0]], ref[record[0]])
    assert not torch.equal(forced["output"], ref["output"])


@needs_lava
def test_if_with_v_reset_on_the_lava_targets(tmp_path):
    g = if_graph()
    x = spikes((T, B, 4), seed=2)
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")
    assert float(ref["output"].sum()) > 0
    got = nrf_nir.lower(g, "lava-float", dtype="float64").run(x)
    assert torch.equal(got["output"], ref["output"])
    prog = nrf_nir.lower(g, "lava-fixed")
    emu = nrf_nir.lower(g, "loihi")
    assert torch.equal(prog.run(x)["output"], emu.run(x)["output"])
    assert float((emu.run(x)["output"] == ref["output"]).float().mean()) > 0.9
    for fl in emu.backend.fixed.layers:  # started at v_reset, the IF spikes differently
        fl.v_init = None
    assert not torch.equal(emu.run(x)["output"], ref["output"])
    # the artifact: refused, nothing written
    from nrf_nir.targets.lava.netx import write_artifact

    out = tmp_path / "out"
    with pytest.raises(NIRError, match="no initial state"):
        write_artifact(prog.backend, out)
    assert not out.exists()
