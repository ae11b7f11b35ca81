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
- the netx artifact (feed-forward chains) refuses a loop through several populations;
- a neuron's own loop maps where it joins populations of different time constants (blocks
  between them: connections back of delay 0) and through a ``Delay`` (a ``DelayDense`` from
  the population to itself): ``lava-float`` spike for spike, ``loihi`` bit for bit with
  ``lava-fixed``, each loop changing the spikes.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.targets import get
from nrf_nir.targets.lava.emulator import LoihiEmulator
from tests import helpers
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
    ref, emu = helpers.on_the_three_lava_targets(g, x, record)
    assert float(ref["output"].sum()) > 0
    # the loop carries spikes: without the connection back, a spikes differently
    plain = nrf_nir.run(loop(None, len(record), back=False), x, target="reference",
                        dtype="float64", record=("a",))
    assert not torch.equal(plain["a"], ref["a"])
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


# ---------------------------------------------------------------------------------------------
# a neuron's own loop: across its populations of different time constants, or through a Delay
# ---------------------------------------------------------------------------------------------

TAUS = np.array([0.01, 0.02, 0.01, 0.03, 0.02, 0.01])   # "a": 3 populations (3, 2, 1 neurons)


def own_loops(delay: list[int] | None = (1, 2, 3, 0, 4), cut: str = "") -> nir.NIRGraph:
    """input -> w0 -> a -> w1 -> b -> output: ``a`` (per-neuron time constants ``TAUS``) has
    its own loop ``a -> wa -> a`` joining its populations; ``b`` its own loop through
    ``Delay(delay steps)`` per source element, ``b -> d -> wb -> b`` (None: no Delay).
    ``cut``: "a" or "b" leaves that loop out."""
    rng = np.random.default_rng(3)
    a = nir.LIF(tau=TAUS, r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.ones(6),
                v_reset=np.zeros(6))
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type=np.array([5])), "w0": linear(rng, 6, 5, 20), "a": a,
        "wa": linear(rng, 6, 6, 30), "w1": linear(rng, 5, 6, 25), "b": lif(5),
        "wb": linear(rng, 5, 5, 30), "output": nir.Output(None)}
    edges = [("input", "w0"), ("w0", "a"), ("a", "w1"), ("w1", "b"), ("b", "output")]
    if cut:
        del nodes[f"w{cut}"]
    if cut != "a":
        edges += [("a", "wa"), ("wa", "a")]
    if cut != "b" and delay is None:
        edges += [("b", "wb"), ("wb", "b")]
    elif cut != "b":
        nodes["d"] = nir.Delay(delay=np.asarray(delay, dtype=np.float64) * DT)
        edges += [("b", "d"), ("d", "wb"), ("wb", "b")]
    return graph(nodes, edges)


def test_own_loops_map_as_connections_between_populations_and_to_itself():
    """``a``'s loop: its blocks between populations are synapses of delay 0 from the other
    populations (back edge 1), the blocks within a population its recurrent Dense; ``b``'s
    loop through a Delay: a synapse from ``b`` to itself with the Delay's steps per source
    element (column) as DelayDense delays (back edge 1 + Delay: the reference's latency)."""
    report = nrf_nir.check(own_loops(), "loihi")
    assert report == [], report
    passes = report.analysis.passes
    assert any("the own loop of 'a' joins its populations" in p for p in passes), passes
    assert any("the own loop of 'b' through Delay 'd'" in p for p in passes), passes
    plan = nrf_nir.lower(own_loops(), "loihi").backend.plan
    idx = plan.index
    a_parts = [idx["a/0"], idx["a/1"], idx["a/2"]]
    for k in a_parts:
        layer = plan.layers[k]
        assert layer.w_rec is not None
        back = [s for s in layer.inputs if s.source in a_parts]
        assert {s.source for s in back} == set(a_parts) - {k}
        assert all(s.back == 1 and s.delay == 0 and s.node_delay == 0 for s in back)
    b = plan.layers[idx["b"]]
    assert b.w_rec is None
    (own,) = [s for s in b.inputs if s.source == idx["b"]]
    assert own.back == 1
    np.testing.assert_array_equal(own.delay, np.tile([1, 2, 3, 0, 4], (5, 1)))
    np.testing.assert_array_equal(own.node_delay, own.delay)


def test_loihi_steps_own_loops_like_the_reference():
    """Without Lava: the emulator follows the reference on both loops (fixed point: nearly
    every spike entry equal) and each loop matters (cut, its population spikes differently;
    a uniform Delay of 2 instead of the per-element one changes ``b``)."""
    x = spikes((T, B, 5), seed=4)
    ref = nrf_nir.run(own_loops(), x, target="reference", dtype="float64", record=("a", "b"))
    emu = nrf_nir.lower(own_loops(), "loihi").run(x, record=("a", "b"))
    for key in ("a", "b"):
        assert float((emu[key] == ref[key]).float().mean()) > 0.9, key
        assert float(ref[key].sum()) > 0
    for cut in ("a", "b"):
        other = nrf_nir.lower(own_loops(cut=cut), "loihi").run(x, record=(cut,))
        assert not torch.equal(other[cut], emu[cut]), cut
    uniform = nrf_nir.lower(own_loops([2] * 5), "loihi").run(x, record=("b",))
    assert not torch.equal(uniform["b"], emu["b"])


@needs_lava
def test_own_loops_on_the_three_lava_targets():
    g = own_loops()
    x = spikes((T, B, 5), seed=4)
    helpers.on_the_three_lava_targets(g, x, ("a", "b"))


def test_own_loop_refusals():
    """Still refused: a bias on an own loop through a Delay (the reference's delay line starts
    with zeros, a Lava constant input at the first step), and the netx artifact of a delayed
    own loop (netx's dense_rec has no delays: one line, nothing written)."""
    from nrf_nir.targets.lava.netx import netx_problems

    g = own_loops()
    g.nodes["wb"] = nir.Affine(weight=g.nodes["wb"].weight, bias=np.full(5, 0.5))
    found = {v.node: v.message for v in nrf_nir.check(g, "loihi") if v.field == "delay"}
    assert "bias of 'wb' in the own loop of 'b'" in found.get("d", ""), found
    rng = np.random.default_rng(0)
    delayed = graph({"input": nir.Input(input_type=np.array([3])), "w0": linear(rng, 3, 3, 20),
                     "a": lif(3), "d": nir.Delay(delay=np.full(3, 2 * DT)),
                     "wr": linear(rng, 3, 3, 20), "output": nir.Output(None)},
                    [("input", "w0"), ("w0", "a"), ("a", "d"), ("d", "wr"), ("wr", "a"),
                     ("a", "output")])
    fixed = nrf_nir.lower(delayed, "loihi").backend.fixed
    assert netx_problems(fixed) == [
        "layer 'a': its own loop through a Delay is a synaptic delay from the layer to itself; "
        "netx's dense_rec has no delays"]
    # an own loop joining populations of different time constants: a loop through them
    split = netx_problems(nrf_nir.lower(own_loops(None), "loihi").backend.fixed)
    assert len(split) == 1 and split[0].startswith("a loop through several populations (a/0 "), \
        split
