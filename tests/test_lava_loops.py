"""Loops through several neuron populations on the Lava targets (docs/targets/lava.md,
"Latency").

- in the reference a loop closes in (back edges on it) + (its ``Delay`` steps) steps; in Lava
  in one step per Dense hop plus its synaptic delays. Where the reference's loop is not
  shorter, the connection back gets the ``DelayDense`` delay that makes up the difference:
  ``lava-float`` equals the float64 reference spike for spike, ``loihi`` equals ``lava-fixed``
  bit for bit (every population recorded), and the loop carries spikes (the graph without its
  connection back spikes differently);
- where the reference's loop is shorter, ``check`` refuses it (field ``edges``), naming the
  nodes and both latencies in steps;
- the netx artifact (feed-forward chains) refuses a loop through several populations.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.targets import get
from nrf_nir.targets.lava.emulator import LoihiEmulator
from tests.test_target_lava import LAVA_ERROR, graph, lif, linear, needs_lava, spikes

DT = 1e-3
T, B = 30, 2


def loop(delay: int | list[int] | None, populations: int = 2, back: bool = True,
         forward_delay: int | None = None, seed: int = 0) -> nir.NIRGraph:
    """input -> w0 -> a -> b [-> c] -> output, and the connection back from the last
    population into ``a`` through ``w_back`` and (``delay`` not None) ``Delay(delay steps)``
    (a list: per element of ``a``);
    ``back=False`` leaves the connection back out; ``forward_delay``: a Delay between ``a``
    and ``w1``."""
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c"][:populations]
    sizes = {"a": 6, "b": 5, "c": 4}
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array([5])),
                                     "w0": linear(rng, 6, 5, 20)}
    edges = [("input", "w0"), ("w0", "a")]
    for j, name in enumerate(names):
        nodes[name] = lif(sizes[name])
        if j + 1 < len(names):
            nxt = names[j + 1]
            nodes[f"w{j + 1}"] = linear(rng, sizes[nxt], sizes[name], 25)
            if j == 0 and forward_delay is not None:
                nodes["fd"] = nir.Delay(delay=np.full(sizes[name], forward_delay * DT))
                edges += [(name, "fd"), ("fd", f"w{j + 1}")]
            else:
                edges.append((name, f"w{j + 1}"))
            edges.append((f"w{j + 1}", nxt))
    last = names[-1]
    nodes["output"] = nir.Output(None)
    edges.append((last, "output"))
    if back:
        nodes["w_back"] = linear(rng, 6, sizes[last], 25)
        edges.append((last, "w_back"))
        if delay is None:
            edges.append(("w_back", "a"))
        else:
            nodes["d"] = nir.Delay(delay=np.broadcast_to(np.asarray(delay) * DT, (6,)).copy())
            edges += [("w_back", "d"), ("d", "a")]
    return graph(nodes, edges)


CASES = {"a-b-delay1": loop(1), "a-b-delay3": loop(3), "a-b-c-delay2": loop(2, 3),
         "a-b-delay1-4-per-neuron": loop([1, 2, 3, 1, 2, 4])}


def test_the_connection_back_gets_the_missing_delay():
    """Depths over the feed-forward graph (a 1, b 2, c 3); the connection back from the last
    population into ``a`` is a synapse of a later layer with back edge 1 and the Lava delay
    ``depth(a) - depth(last) - 1 + 1 + Delay``: 0 for ``a -> b -> Delay(1)``, 2 for
    ``Delay(3)``, 0 for ``a -> b -> c -> Delay(2)``."""
    for name, want in (("a-b-delay1", 0), ("a-b-delay3", 2), ("a-b-c-delay2", 0),
                       ("a-b-delay1-4-per-neuron", np.tile([[0], [1], [2], [0], [1], [3]],
                                                           (1, 5)))):
        report = nrf_nir.check(CASES[name], "loihi")
        assert report == [], (name, report)
        assert any("back into 'a'" in p for p in report.analysis.passes), report.analysis.passes
        plan = nrf_nir.lower(CASES[name], "loihi").backend.plan
        a = plan.layers[plan.index["a"]]
        assert [ly.depth for ly in plan.layers] == list(range(1, len(plan.layers) + 1))
        (syn,) = [s for s in a.inputs if s.source >= 0]
        assert syn.source == len(plan.layers) - 1 and syn.back == 1
        np.testing.assert_array_equal(syn.delay, want)
    # a Delay on the forward connection a -> b adds to both latencies alike: with Delay(1) on
    # the connection back the loop closes in 3 + 1 + 1 = 5 reference and 2 + 3 Lava steps
    plan = nrf_nir.lower(loop(1, forward_delay=3), "loihi").backend.plan
    assert [s.delay for s in plan.layers[plan.index["b"]].inputs] == [3]
    assert [s.delay for s in plan.layers[plan.index["a"]].inputs if s.source >= 0] == [0]


@needs_lava
@pytest.mark.parametrize("name", list(CASES))
def test_loop_on_the_three_lava_targets(name):
    g = CASES[name]
    x = spikes((T, B, 5), seed=1)
    record = tuple(k for k in ("a", "b", "c") if k in g.nodes)
    ref = nrf_nir.run(g, x, target="reference", dtype="float64", record=record)
    got = nrf_nir.lower(g, "lava-float", dtype="float64").run(x, record=record)
    for key in ref:
        assert torch.equal(got[key], ref[key]), (
            f"{key}: {int((got[key] != ref[key]).sum())} of {ref[key].numel()} differ")
    assert float(ref["output"].sum()) > 0
    # the loop carries spikes: without the connection back, a spikes differently
    plain = nrf_nir.run(loop(None, len(record), back=False), x, target="reference",
                        dtype="float64", record=("a",))
    assert not torch.equal(plain["a"], ref["a"])
    fixed = nrf_nir.lower(g, "lava-fixed").run(x, record=record)
    emu = nrf_nir.lower(g, "loihi").run(x, record=record)
    assert set(fixed) == set(emu)
    for key in fixed:
        assert torch.equal(fixed[key], emu[key]), key
    assert float((emu["output"] == ref["output"]).float().mean()) > 0.9


def test_loihi_steps_the_loop_together():
    """Without Lava: the emulator's loop follows the reference (fixed point: nearly every
    spike entry equal), its connection back matters (cut, ``a`` spikes differently), and
    the time chunking of its inputs from outside the loop changes nothing."""
    x = spikes((T, B, 5), seed=2)
    for g in CASES.values():
        ref = nrf_nir.run(g, x, target="reference", dtype="float64", record=("a",))
        emu = nrf_nir.lower(g, "loihi").run(x, record=("a",))
        cut = nrf_nir.lower(loop(None, 3 if "c" in g.nodes else 2, back=False),
                            "loihi").run(x, record=("a",))
        assert float((emu["a"] == ref["a"]).float().mean()) > 0.9
        assert not torch.equal(emu["a"], cut["a"])
    # time chunks of the products from outside the loop (here: 1 step) change nothing
    emulator = LoihiEmulator(nrf_nir.lower(CASES["a-b-delay3"], "loihi").backend.fixed)
    whole = emulator.run(torch.as_tensor(x))
    emulator.chunk_elements = 1
    stepped = emulator.run(torch.as_tensor(x))
    assert all(torch.equal(whole[k], stepped[k]) for k in whole)


def _edges(g: nir.NIRGraph) -> dict[str, str]:
    return {v.node: v.message for v in nrf_nir.check(g, "loihi") if v.field == "edges"}


def test_a_loop_the_reference_closes_sooner_is_refused_with_its_latencies():
    """No Delay (or 0 steps): ``a -> b -> a`` closes in 1 reference step and 2 Lava steps;
    ``a -> b -> c -> Delay(1) -> a`` in 2 and 3; ``a -> Delay(3) -> b -> a`` in 4 and 5 (a
    Delay on a forward connection delays Lava as much as the reference)."""
    for g in (loop(None), loop(0)):
        msg = _edges(g)["a"]
        assert "the loop a -> b -> a closes in 1 step in the reference and in 2 Lava steps " \
               "(one per Dense hop)" in msg, msg
        assert "a Delay of >= 1 step on the connection from 'b' back into 'a'" in msg, msg
    msg = _edges(loop(1, 3))["a"]
    assert "the loop a -> b -> c -> a closes in 2 steps in the reference and in 3 Lava " \
           "steps" in msg, msg
    assert "a Delay of >= 2 steps on the connection from 'c' back into 'a'" in msg, msg
    msg = _edges(loop(None, forward_delay=3))["a"]
    assert "closes in 4 steps in the reference and in 5 Lava steps (one per Dense hop, plus " \
           "3 step(s) of synaptic delay)" in msg, msg
    assert "a Delay of >= 1 step on the connection from 'b' back into 'a'" in msg, msg


def test_netx_refuses_a_loop_through_several_populations(tmp_path):
    from nrf_nir.targets.lava.netx import netx_problems

    fixed = nrf_nir.lower(CASES["a-b-delay1"], "loihi").backend.fixed
    assert netx_problems(fixed) == [
        "a loop through several populations (a -> b -> a): netx networks are feed-forward "
        "chains of layers (a loop only as one layer's own dense_rec)"]
    if LAVA_ERROR is None:
        with pytest.raises(nrf_nir.NIRError, match="a loop through several populations"):
            get("lava-fixed").artifact(nrf_nir.lower(CASES["a-b-delay1"], "lava-fixed").backend,
                                       tmp_path / "out")
        assert not (tmp_path / "out").exists()
