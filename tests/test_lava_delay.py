"""NIR ``Delay`` on the Lava targets as synaptic delay (docs/targets/lava.md, "Delay").

- a Delay between a neuron (or the Input) and the neuron it feeds is the synaptic delay of
  that connection (a Lava ``DelayDense``): uniform, per source element (before the weight map),
  per target element (after it), added to the delay that aligns branches of different depth;
- ``lava-float`` equals the float64 reference spike for spike, ``loihi`` equals ``lava-fixed``
  bit for bit (hidden layers too), and the delay changes the output (so ignoring it fails);
- the ``loihi`` emulator delays exactly like the reference's delay line (zeros first), with
  no Lava installed;
- what has no synaptic-delay form is refused, naming the Delay node and the field ``delay``;
- the netx artifact holds the delays and runs in netx to ``lava-fixed``'s spikes.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.targets import get
from tests import helpers
from tests.test_target_lava import (
    LAVA_ERROR,
    affine,
    chain,
    graph,
    lif,
    linear,
    needs_lava,
    spikes,
)

DT = 1e-3
T, B = 40, 2


def steps(*d: int) -> np.ndarray:
    """Delays in seconds of ``d`` steps of :data:`DT`."""
    return np.array(d, dtype=np.float64) * DT


def hidden_chain(delay: nir.Delay, after: bool = False, seed: int = 0) -> nir.NIRGraph:
    """input -> Linear -> LIF(6) -> [Delay] -> Linear -> [Delay] -> LIF(4) (the Delay before
    the second weight map, or after it)."""
    rng = np.random.default_rng(seed)
    w1, w2 = linear(rng, 6, 5, 20), linear(rng, 4, 6, 25)
    if after:
        return chain(w1, lif(6), w2, delay, lif(4), shape=(5,))
    return chain(w1, lif(6), delay, w2, lif(4), shape=(5,))


def branches(seed: int = 0) -> nir.NIRGraph:
    """input -> a -> b (depth 2) and input -> Delay(2 steps) -> b: the delayed branch also
    waits one step for the deeper one (alignment 1 + Delay 2 = 3 Lava steps)."""
    rng = np.random.default_rng(seed)
    return graph({"input": nir.Input(input_type=np.array([5])), "w0": linear(rng, 6, 5, 20),
                  "a": lif(6), "w1": linear(rng, 4, 6, 25),
                  "d": nir.Delay(delay=np.full(5, 2 * DT)), "w2": linear(rng, 4, 5, 25),
                  "b": lif(4), "output": nir.Output(None)},
                 [("input", "w0"), ("w0", "a"), ("a", "w1"), ("w1", "b"), ("input", "d"),
                  ("d", "w2"), ("w2", "b"), ("b", "output")])


def delay_cases() -> dict[str, nir.NIRGraph]:
    rng = np.random.default_rng(3)
    return {
        # (a) uniform, between two populations
        "uniform": hidden_chain(nir.Delay(delay=np.full(6, 3 * DT))),
        # (b) per source element (before the weight map)
        "per-source": hidden_chain(nir.Delay(delay=steps(0, 1, 2, 3, 5, 2))),
        # per target element (after the weight map)
        "per-target": hidden_chain(nir.Delay(delay=steps(1, 0, 2, 4)), after=True),
        # (c) from the Input, per element
        "from-input": chain(nir.Delay(delay=steps(0, 1, 2, 3, 4)), linear(rng, 4, 5, 25),
                            lif(4), shape=(5,)),
        # a Delay plus the alignment of two branches of different depth
        "with-alignment": branches(),
        # per input element before a convolution: the path becomes one dense matrix
        "conv": chain(nir.Delay(delay=rng.integers(0, 3, (2, 6, 6)) * DT),
                      nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0, 1, (2, 2, 3, 3)),
                                 stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(2)),
                      nir.LIF(tau=np.full((2, 6, 6), 0.01), r=np.full((2, 6, 6), 3.0),
                              v_leak=np.zeros((2, 6, 6)), v_threshold=np.ones((2, 6, 6)),
                              v_reset=np.zeros((2, 6, 6))), shape=(2, 6, 6)),
    }


CASES = delay_cases()


def without_delays(g: nir.NIRGraph) -> nir.NIRGraph:
    """``g`` with every Delay set to 0 steps (an identity)."""
    nodes = {k: (nir.Delay(delay=np.zeros_like(v.delay)) if isinstance(v, nir.Delay) else v)
             for k, v in g.nodes.items()}
    out = nir.NIRGraph(nodes=nodes, edges=list(g.edges), type_check=False)
    out.metadata = dict(g.metadata)
    return out


def neurons(g: nir.NIRGraph) -> list[str]:
    return [k for k, v in g.nodes.items() if isinstance(v, nir.LIF)]


def input_shape(g: nir.NIRGraph) -> tuple[int, ...]:
    return tuple(int(s) for s in g.nodes["input"].input_type["input"])


@needs_lava
@pytest.mark.parametrize("name", list(CASES))
def test_delay_on_the_three_lava_targets(name):
    g = CASES[name]
    report = nrf_nir.check(g, "lava-float")
    assert report == []
    assert any(p.startswith("Delay ") for p in report.analysis.passes), report.analysis.passes
    x = spikes((T, B, *input_shape(g)), seed=1)
    ref, emu = helpers.on_the_three_lava_targets(g, x, tuple(neurons(g)))
    assert float(ref["output"].sum()) > 0
    # the delay matters: the same graph without it spikes differently
    plain = nrf_nir.run(without_delays(g), x, target="reference", dtype="float64")
    assert not torch.equal(plain["output"], ref["output"])
    assert float((emu["output"] == ref["output"]).float().mean()) > 0.9


def test_synapse_delays_in_the_plan():
    """The node delay per synapse (rows, columns) and its sum with the alignment delay."""
    plan = nrf_nir.lower(CASES["per-source"], "loihi").backend.plan
    syn = plan.layers[1].inputs[0]
    np.testing.assert_array_equal(syn.node_delay, np.tile([0, 1, 2, 3, 5, 2], (4, 1)))
    plan = nrf_nir.lower(CASES["per-target"], "loihi").backend.plan
    np.testing.assert_array_equal(plan.layers[1].inputs[0].node_delay,
                                  np.tile([[1], [0], [2], [4]], (1, 6)))
    plan = nrf_nir.lower(CASES["uniform"], "loihi").backend.plan
    assert plan.layers[1].inputs[0].node_delay == 3 == plan.layers[1].inputs[0].delay
    plan = nrf_nir.lower(CASES["with-alignment"], "loihi").backend.plan
    b = plan.layers[plan.index["b"]]
    by_source = {(-1 if s.source < 0 else s.source): s for s in b.inputs}
    assert by_source[-1].node_delay == 2 and by_source[-1].delay == 3
    assert by_source[plan.index["a"]].delay == 0
    # per element between a Linear and a Scale (diagonal): one delay per synapse, the rows'
    rng = np.random.default_rng(5)
    g = chain(linear(rng, 6, 5, 20), lif(6), linear(rng, 6, 6, 20),
              nir.Delay(delay=steps(0, 1, 2, 3, 5, 2)), nir.Scale(scale=np.arange(1.0, 7.0)),
              lif(6), shape=(5,))
    plan = nrf_nir.lower(g, "loihi").backend.plan
    np.testing.assert_array_equal(plan.layers[1].inputs[0].node_delay,
                                  np.tile([[0], [1], [2], [3], [5], [2]], (1, 6)))


def test_loihi_delays_like_the_reference_delay_line():
    """Without Lava: Input -> Delay(per element) -> Linear -> LIF on ``loihi`` equals
    Linear -> LIF on the input shifted per element by hand (zeros first)."""
    rng = np.random.default_rng(2)
    w = linear(rng, 4, 5, 25)
    d = [0, 1, 2, 3, 7]
    g = chain(nir.Delay(delay=steps(*d)), w, lif(4), shape=(5,))
    x = spikes((T, 3, 5), seed=4)
    shifted = np.zeros_like(x)
    for j, k in enumerate(d):
        shifted[k:, :, j] = x[:T - k, :, j]
    got = nrf_nir.lower(g, "loihi").run(x)["output"]
    want = nrf_nir.lower(chain(w, lif(4), shape=(5,)), "loihi").run(shifted)["output"]
    assert torch.equal(got, want)
    assert float(got.sum()) > 0
    assert not torch.equal(got, nrf_nir.lower(chain(w, lif(4), shape=(5,)), "loihi")
                           .run(x)["output"])


def test_emulator_weights_of_one_column():
    """A weight matrix ``[n, 1]`` (one delay's columns) multiplies exactly (``_int_mm`` reads
    a ``[1, n]`` operand with strides ``(1, 1)`` wrongly: the emulator packs it)."""
    from nrf_nir.targets.lava.emulator import _Weights

    w = _Weights(torch.as_tensor(np.array([[3], [-4], [5], [-6]], dtype=np.int64)))
    x = torch.as_tensor(np.random.default_rng(0).integers(0, 2, (40, 1)), dtype=torch.float64)
    assert torch.equal(w.matmul(x, 1.0).long(), x.long() @ w.w.T)


def _delay_violations(g: nir.NIRGraph) -> dict[str, str]:
    return {v.node: v.message for v in nrf_nir.check(g, "loihi") if v.field == "delay"}


def test_refusals_name_the_delay_node_and_field():
    rng = np.random.default_rng(0)
    non_integer = chain(nir.Delay(delay=np.full(5, 1.5 * DT)), linear(rng, 4, 5, 1), lif(4),
                        shape=(5,))
    too_large = chain(nir.Delay(delay=np.full(5, 64 * DT)), linear(rng, 4, 5, 1), lif(4),
                      shape=(5,))
    folding = chain(linear(rng, 6, 5, 20), lif(6), linear(rng, 6, 6, 1),
                    nir.Delay(delay=steps(0, 1, 2, 3, 5, 2)), linear(rng, 4, 6, 1), lif(4),
                    shape=(5,))
    biased = chain(affine(rng, 4, 5, 1, bias=1.0), nir.Delay(delay=np.full(4, 2 * DT)), lif(4),
                   shape=(5,))
    aligned = branches()
    aligned.nodes["d"] = nir.Delay(delay=np.full(5, 63 * DT))
    # an own loop through a Delay maps (tests/test_lava_loops.py); with a bias it is refused
    loop = graph({"input": nir.Input(input_type=np.array([3])), "w0": linear(rng, 3, 3, 1),
                  "a": lif(3), "d": nir.Delay(delay=np.full(3, 2 * DT)),
                  "wr": affine(rng, 3, 3, 1, bias=1.0), "output": nir.Output(None)},
                 [("input", "w0"), ("w0", "a"), ("a", "d"), ("d", "wr"), ("wr", "a"),
                  ("a", "output")])
    for g, node, words in [(non_integer, "n0", "1.5 steps"), (too_large, "n0", "64 steps"),
                           (folding, "n3", "fold into one weight matrix"),
                           (biased, "n1", "bias of 'n0'"), (aligned, "d", "align"),
                           (loop, "d", "in the own loop of 'a'")]:
        found = _delay_violations(g)
        assert node in found and words in found[node], (node, found)
    # what refuses on loihi refuses on the Lava targets alike (one planner)
    if LAVA_ERROR is None:
        assert "n3" in {v.node for v in nrf_nir.check(folding, "lava-fixed")}


@needs_lava
def test_netx_artifact_with_delays(tmp_path):
    import h5py

    from nrf_nir.targets.lava.netx import run_netx

    g = CASES["per-source"]
    prog = nrf_nir.lower(g, "lava-fixed")
    get("lava-fixed").artifact(prog.backend, tmp_path / "out")
    with h5py.File(tmp_path / "out" / "network.net") as f:
        np.testing.assert_array_equal(f["layer/1/delay"][()],
                                      np.tile([0, 1, 2, 3, 5, 2], (4, 1)))
        assert "delay" not in f["layer/0"]
    x = spikes((T, B, 5), seed=1)
    fixed = prog.run(x)["output"].numpy().astype(np.int8)
    assert fixed.sum() > 0
    for b in range(B):
        np.testing.assert_array_equal(run_netx(tmp_path / "out" / "network.net", x[:, b], 2),
                                      fixed[:, b])
    # after a layer with a positive neuron bias (acting before netx's reset), nothing written
    rng = np.random.default_rng(1)
    biased = chain(affine(rng, 6, 5, 20, bias=40.0), lif(6), nir.Delay(delay=np.full(6, 3 * DT)),
                   linear(rng, 4, 6, 25), lif(4), shape=(5,))
    with pytest.raises(nrf_nir.NIRError, match="positive neuron bias"):
        get("lava-fixed").artifact(nrf_nir.lower(biased, "lava-fixed").backend,
                                   tmp_path / "biased")
    assert not (tmp_path / "biased").exists()
