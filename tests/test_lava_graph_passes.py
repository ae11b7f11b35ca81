"""The Lava targets' graph passes and read-outs (docs/targets/lava.md, "Graph passes" and
"Read-outs"): folded weight chains, biases moved into the neuron, several feed-forward inputs
(with delays where branches differ in depth), non-spiking LI / CubaLI / I read-outs.

Each Lava-running case checks ``lava-float`` against the float64 reference (spikes equal,
voltages within float64 rounding) and ``loihi`` against ``lava-fixed`` bit for bit.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.semantics import read_semantics
from nrf_nir.targets.lava.plan import analyse
from nrf_nir.validate import validate
from tests.test_target_lava import DT, LAVA_ERROR, cuba, graph, lif, linear, needs_lava, spikes

#: relative agreement of a read-out voltage with the float64 reference (rounding only)
ROUNDING = 1e-12


def plan_of(g: nir.NIRGraph, target: str = "loihi"):
    checked = validate(g)
    plan, found = analyse(checked, read_semantics(checked.graph), target)
    assert found == [], found
    assert plan is not None
    return plan


def li(n, tau=0.02, r=1.0, v_leak=0.0):
    return nir.LI(tau=np.full(n, tau), r=np.full(n, r), v_leak=np.full(n, v_leak))


def cuba_li(n, tau_syn=0.005, tau_mem=0.01, v_leak=0.0, w_in=1.0):
    return nir.CubaLI(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem),
                      r=np.ones(n), v_leak=np.full(n, v_leak), w_in=np.full(n, w_in))


def seq(*nodes, n_in=5, **meta) -> nir.NIRGraph:
    named = {"input": nir.Input(input_type=np.array([n_in]))}
    named.update({f"n{k}": node for k, node in enumerate(nodes)})
    named["output"] = nir.Output(output_type=None)
    names = list(named)
    return graph(named, list(zip(names[:-1], names[1:], strict=True)), **meta)


def compare(g: nir.NIRGraph, x: np.ndarray, record: tuple[str, ...] = ()) -> None:
    """lava-float == reference (spikes exact, voltages within rounding), loihi == lava-fixed."""
    ref = nrf_nir.run(g, x, target="reference", dtype="float64", record=list(record))
    got = nrf_nir.lower(g, "lava-float", dtype="float64").run(x, record=list(record))
    assert set(got) == set(ref)
    plan = plan_of(g)
    readouts = {name for name, ks in plan.read(record).items()
                if plan.layers[ks[0]].readout}
    active = 0.0
    for key in ref:
        if key in readouts:
            scale = float(ref[key].abs().max())
            assert float((got[key] - ref[key]).abs().max()) <= ROUNDING * scale, key
        else:
            assert torch.equal(got[key], ref[key]), (
                f"{key}: {int((got[key] != ref[key]).sum())} of {ref[key].numel()} differ")
        active += float(ref[key].abs().sum())
    assert active > 0
    fixed = nrf_nir.lower(g, "lava-fixed", dtype="float64").run(x, record=list(record))
    emu = nrf_nir.lower(g, "loihi", dtype="float64").run(x, record=list(record))
    for key in fixed:
        assert torch.equal(fixed[key], emu[key]), key


# ---------------------------------------------------------------------------------------------
# folding weight chains
# ---------------------------------------------------------------------------------------------

def fold_cases() -> dict[str, nir.NIRGraph]:
    rng = np.random.default_rng(21)
    scale = nir.Scale(scale=rng.uniform(0.5, 2.0, 6))
    return {
        "linear-linear": seq(linear(rng, 7, 5, 4), linear(rng, 6, 7, 4), lif(6)),
        "affine-linear": seq(nir.Affine(weight=rng.normal(0, 4, (7, 5)),
                                        bias=rng.normal(0, 1, 7)),
                             linear(rng, 6, 7, 4), cuba(6)),
        "scale-linear": seq(nir.Scale(scale=rng.uniform(0.5, 2.0, 5)), linear(rng, 6, 5, 20),
                            lif(6)),
        "linear-scale": seq(linear(rng, 6, 5, 20), scale, lif(6)),
    }


def test_fold_is_one_matrix_product_and_listed():
    g = fold_cases()["affine-linear"]
    plan = plan_of(g)
    (layer,) = plan.layers
    (syn,) = layer.inputs
    w1, b1 = g.nodes["n0"].weight, g.nodes["n0"].bias
    w2 = g.nodes["n1"].weight
    gain = layer.w_ff[:, 0] / (w2 @ w1)[:, 0]
    np.testing.assert_allclose(syn.weight, gain[:, None] * (w2 @ w1), rtol=1e-15)
    np.testing.assert_allclose(layer.beta, gain * (w2 @ b1), rtol=1e-15)
    assert syn.nodes == ("n0", "n1")
    assert any(p.startswith("fold Affine 'n0' -> Linear 'n1'") for p in plan.passes)
    assert any("bias of 'n0'" in p and "synaptic input" in p for p in plan.passes)
    # lower() shows the passes in the quantization report (what the artifact writes)
    rep = nrf_nir.lower(g, "loihi").backend.quantization_report()
    assert rep["passes"] == plan.passes


def test_scale_listed_as_diagonal():
    plan = plan_of(fold_cases()["linear-scale"])
    assert any("fold Linear 'n0' -> Scale 'n1'" in p for p in plan.passes)


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("name", list(fold_cases()))
def test_folded_chains_run_exactly(name):
    compare(fold_cases()[name], spikes((60, 3, 5), seed=3))


def lif_recurrent_cell(rng, n_in=6, n=8, bias=True) -> nir.NIRGraph:
    """Linear (with bias) -> Norse's LIFRecurrentCell as exported (nested: w_in, lif, w_rec)."""
    cell = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n])),
               "w_in": linear(rng, n, n, 3), "lif": cuba(n, tau_syn=0.004),
               "w_rec": linear(rng, n, n, 8), "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
               ("lif", "output")], type_check=False)
    w0 = (nir.Affine(weight=rng.normal(0, 4, (n, n_in)), bias=rng.normal(0, 1, n)) if bias
          else linear(rng, n, n_in, 4))
    return graph({"input": nir.Input(input_type=np.array([n_in])), "fc": w0, "rnn": cell,
                  "output": nir.Output(output_type=None)},
                 [("input", "fc"), ("fc", "rnn"), ("rnn", "output")])


def test_linear_into_recurrent_cell_is_folded():
    rng = np.random.default_rng(3)
    g = lif_recurrent_cell(rng)
    for target in ("loihi",) + (() if LAVA_ERROR else ("lava-float", "lava-fixed")):
        assert nrf_nir.check(g, target) == [], target
    plan = plan_of(g)
    assert [ly.name for ly in plan.layers] == ["rnn.lif"]
    assert plan.layers[0].w_rec is not None
    assert any("fold Affine 'fc' -> Linear 'rnn.w_in'" in p for p in plan.passes)


@pytest.mark.slow
@needs_lava
def test_linear_into_recurrent_cell_runs_exactly():
    compare(lif_recurrent_cell(np.random.default_rng(4)), spikes((60, 3, 6), seed=5))


# ---------------------------------------------------------------------------------------------
# several feed-forward inputs
# ---------------------------------------------------------------------------------------------

def two_sources(rng, deeper: bool) -> nir.NIRGraph:
    """input -> a -> c and input -> b -> c (same depth); ``deeper``: input -> a -> a2 -> c,
    so that b's input must wait one step (a DelayDense)."""
    nodes = {"input": nir.Input(input_type=np.array([5])),
             "wa": linear(rng, 6, 5, 25), "a": lif(6),
             "wb": linear(rng, 4, 5, 25), "b": cuba(4),
             "wac": nir.Linear(weight=np.abs(rng.normal(0, 6, (3, 6)))),
             "wbc": nir.Linear(weight=np.abs(rng.normal(0, 6, (3, 4)))), "c": lif(3),
             "output": nir.Output(output_type=None), "hidden_b": nir.Output(output_type=None)}
    edges = [("input", "wa"), ("wa", "a"), ("input", "wb"), ("wb", "b"), ("b", "wbc"),
             ("wbc", "c"), ("c", "output"), ("b", "hidden_b")]
    if deeper:
        nodes.update({"wa2": linear(rng, 6, 6, 25), "a2": lif(6)})
        edges += [("a", "wa2"), ("wa2", "a2"), ("a2", "wac"), ("wac", "c")]
    else:
        edges += [("a", "wac"), ("wac", "c")]
    return graph(nodes, edges)


def test_several_inputs_one_synapse_each():
    rng = np.random.default_rng(8)
    plan = plan_of(two_sources(rng, deeper=False))
    c = plan.layers[plan.index["c"]]
    assert sorted(s.source for s in c.inputs) == sorted([plan.index["a"], plan.index["b"]])
    assert all(s.delay == 0 for s in c.inputs)
    assert any(p.startswith("sum 2 feed-forward inputs into 'c'") for p in plan.passes)
    plan = plan_of(two_sources(rng, deeper=True))
    c = plan.layers[plan.index["c"]]
    delays = {plan.layers[s.source].name: s.delay for s in c.inputs}
    assert delays == {"a2": 0, "b": 1} and c.depth == 3
    assert any("delay the input from 'b' into 'c' by 1" in p for p in plan.passes)


def test_delay_beyond_loihi_is_refused():
    rng = np.random.default_rng(9)
    nodes = {"input": nir.Input(input_type=np.array([3])), "w": linear(rng, 3, 3, 1),
             "direct": linear(rng, 3, 3, 1), "end": lif(3), "output": nir.Output(None)}
    edges = [("input", "direct"), ("direct", "end"), ("end", "output")]
    prev = "input"
    for k in range(65):  # a chain 65 populations deep
        nodes[f"w{k}"], nodes[f"l{k}"] = linear(rng, 3, 3, 1), lif(3)
        edges += [(prev, f"w{k}"), (f"w{k}", f"l{k}")]
        prev = f"l{k}"
    edges += [(prev, "w"), ("w", "end")]
    found = nrf_nir.check(graph(nodes, edges), "loihi")
    assert [(v.node, v.field) for v in found] == [("end", "edges")]
    assert "at most 63" in found[0].message


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("deeper", [False, True])
def test_several_inputs_run_exactly(deeper):
    g = two_sources(np.random.default_rng(10), deeper)
    compare(g, spikes((60, 3, 5), seed=6), record=("a", "b", "c"))


# ---------------------------------------------------------------------------------------------
# read-outs: LI, CubaLI, I
# ---------------------------------------------------------------------------------------------

def readout_cases() -> dict[str, tuple[nir.NIRGraph, dict]]:
    rng = np.random.default_rng(12)

    def aff(n_out, n_in, s=3.0, b=0.5):
        return nir.Affine(weight=rng.normal(0, s, (n_out, n_in)), bias=rng.normal(0, b, n_out))

    return {
        "li": (seq(aff(4, 5), li(4, v_leak=0.3)), {}),
        "li-zero-init": (seq(aff(4, 5), li(4, v_leak=0.3)), {"initial_state": "zero"}),
        "li-exponential": (seq(aff(4, 5), li(4, r=2.0)), {"integration": "exponential"}),
        "cuba-li": (seq(aff(4, 5), cuba_li(4, v_leak=-0.2, w_in=1.5)), {}),
        "i": (seq(aff(4, 5), nir.I(r=np.full(4, 50.0))), {}),
        "lif-then-li": (seq(aff(7, 5, 25, 2.0), lif(7), linear(rng, 3, 7, 1), cuba_li(3)), {}),
    }


def _readout(name):
    g, meta = readout_cases()[name]
    g.metadata.update(meta)
    return g


def test_readouts_are_planned_as_voltages():
    plan = plan_of(_readout("li"))
    (layer,) = plan.layers
    assert layer.readout and layer.vth == np.inf
    np.testing.assert_array_equal(layer.v_offset, np.full(4, 0.3))  # the v - v_leak shift
    fixed = nrf_nir.lower(_readout("li"), "loihi").backend.fixed
    assert fixed.layers[0].vth << 6 > 2**23 - 1  # never fires
    assert "readout" in fixed.report()["layers"][0]


def test_readout_limits_are_violations():
    rng = np.random.default_rng(13)
    # an LI synapse starting at v_leak != 0: Lava's u would have to hold it through the idle
    # steps (a CubaLI read-out's leak runs: tests/test_lava_cuba_leak.py)
    found = {(v.node, v.field) for v in nrf_nir.check(
        seq(linear(rng, 4, 5, 1), li(4, v_leak=0.2), linear(rng, 3, 4, 1), lif(3)), "loihi")}
    assert ("n1", "v_leak") in found
    found = {(v.node, v.field) for v in nrf_nir.check(
        seq(linear(rng, 4, 5, 1), li(4), linear(rng, 3, 4, 1), cuba(3)), "loihi")}
    assert ("n1", "edges") in found  # a non-spiking neuron sends no spikes (not a LIF's current)


def test_loihi_readout_is_close_to_the_reference():
    g = _readout("lif-then-li")
    x = spikes((80, 4, 5), seed=7)
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")["output"]
    got = nrf_nir.lower(g, "loihi", dtype="float64").run(x)["output"]
    err = float((got - ref).abs().max() / ref.abs().max())
    assert 0 < err < 0.05, err


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("name", list(readout_cases()))
def test_readouts_run_exactly(name):
    compare(_readout(name), spikes((60, 3, 5), seed=8))


# ---------------------------------------------------------------------------------------------
# an LI synapse in front of a LIF / IF: the population's current
# ---------------------------------------------------------------------------------------------

def li_synapse_cases() -> dict[str, nir.NIRGraph]:
    rng = np.random.default_rng(14)
    return {
        # Linear -> LI -> LIF (the LI directly in front)
        "li-lif": seq(linear(rng, 6, 5, 6), li(6, tau=0.004, r=2.0), lif(6)),
        # Affine -> LI -> Linear -> IF (a weight between; the Affine bias filtered by the LI)
        "li-linear-if": seq(nir.Affine(weight=rng.normal(0, 4, (6, 5)),
                                       bias=rng.normal(0, 0.5, 6)),
                            li(6, tau=0.005), linear(rng, 4, 6, 2),
                            nir.IF(r=np.full(4, 200.0), v_threshold=np.ones(4),
                                   v_reset=np.zeros(4))),
    }


def test_li_synapse_becomes_the_current():
    g = li_synapse_cases()["li-lif"]
    plan = plan_of(g)
    (layer,) = plan.layers
    assert layer.name == "n2" and layer.du == pytest.approx(DT / 0.004)
    assert any("LI 'n1' in front of 'n2'" in p for p in plan.passes)
    fl = nrf_nir.lower(g, "loihi").backend.fixed.layers[0]
    assert fl.du == round(4096 * DT / 0.004) - 1
    # what an LI synapse cannot be
    rng = np.random.default_rng(15)
    bad = {
        ("n1", "v_leak"): seq(linear(rng, 4, 5, 1), li(4, v_leak=0.1), lif(4)),
        ("n1", "edges"): seq(linear(rng, 4, 5, 1), li(4), cuba(4)),  # two synaptic filters
    }
    for (node, fld), g in bad.items():
        assert (node, fld) in {(v.node, v.field) for v in nrf_nir.check(g, "loihi")}


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("name", list(li_synapse_cases()))
def test_li_synapse_runs_exactly(name):
    compare(li_synapse_cases()[name], spikes((60, 3, 5), seed=9))


# ---------------------------------------------------------------------------------------------
# per-neuron time constants: a population per decay
# ---------------------------------------------------------------------------------------------

def cycle(n, values):
    """``values`` repeated over ``n`` neurons (interleaved: no population is contiguous)."""
    return np.resize(np.asarray(values, dtype=np.float64), n)


def lif_taus(n, taus, rng=None, v_th=1.0):
    v_threshold = np.full(n, v_th) if rng is None else v_th * rng.uniform(0.7, 1.3, n)
    return nir.LIF(tau=cycle(n, taus), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=v_threshold, v_reset=np.zeros(n))


def tau_cases() -> dict[str, nir.NIRGraph]:
    rng = np.random.default_rng(31)
    w_rec = rng.normal(0, 12, (8, 8))
    w_rec[cycle(8, [0, 1])[:, None] != cycle(8, [0, 1])[None, :]] = 0  # loops within a tau
    return {
        # three taus, per-neuron thresholds; the split node feeds a Linear (a Dense per part)
        "lif-3-taus": seq(linear(rng, 9, 5, 20), lif_taus(9, [0.005, 0.01, 0.02], rng),
                          linear(rng, 4, 9, 15), lif(4)),
        # four (tau_syn, tau_mem) pairs; an Affine bias split with the neurons
        "cuba-taus": seq(nir.Affine(weight=rng.normal(0, 40, (6, 5)),
                                    bias=rng.normal(0, 5, 6)),
                         nir.CubaLIF(tau_syn=np.array([4, 4, 8, 8, 4, 8]) * 1e-3,
                                     tau_mem=np.array([10, 20, 10, 10, 10, 20]) * 1e-3,
                                     r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.ones(6),
                                     v_reset=np.zeros(6), w_in=np.ones(6))),
        # a read-out with two taus: its voltage put together from two populations
        "li-readout-taus": seq(linear(rng, 6, 5, 20), lif(6), linear(rng, 4, 6, 3),
                               nir.LI(tau=cycle(4, [0.005, 0.02]), r=np.ones(4),
                                      v_leak=np.zeros(4))),
        # a loop that stays within each time constant: one recurrent Dense per population
        "recurrent-within": graph({"input": nir.Input(input_type=np.array([5])),
                                   "w_in": linear(rng, 8, 5, 25),
                                   "lif": lif_taus(8, [0.004, 0.02]),
                                   "w_rec": nir.Linear(weight=w_rec),
                                   "output": nir.Output(output_type=None)},
                                  [("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"),
                                   ("w_rec", "lif"), ("lif", "output")]),
    }


def test_per_neuron_time_constants_split_into_populations():
    plan = plan_of(tau_cases()["lif-3-taus"])
    assert [ly.name for ly in plan.layers] == ["n1/0", "n1/1", "n1/2", "n3"]
    for j, tau in enumerate([0.005, 0.01, 0.02]):
        ly = plan.layers[j]
        assert ly.node == "n1" and ly.part.tolist() == [j, j + 3, j + 6]
        assert ly.dv == pytest.approx(DT / tau) and ly.du == 1.0
    assert plan.nodes["n1"] == [0, 1, 2] and plan.outputs == {"output": [3]}
    # the Linear after the split node: one Dense per population, its columns
    w = tau_cases()["lif-3-taus"].nodes["n2"].weight
    syns = plan.layers[3].inputs
    assert [s.source for s in syns] == [0, 1, 2]
    for j, s in enumerate(syns):
        np.testing.assert_allclose(s.weight, plan.layers[3].sigma[:, None] * DT / 0.01
                                   * w[:, j::3], rtol=1e-14)
    assert any(p.startswith("split LIF 'n1' (9 neurons, 3 different time constants) into 3 "
                            "Lava populations with one decay each") for p in plan.passes)
    # four (du, dv) pairs; the bias follows its neurons
    plan = plan_of(tau_cases()["cuba-taus"])
    assert len(plan.layers) == 4
    assert sorted((ly.du, ly.dv) for ly in plan.layers) == sorted(
        {(DT / s, DT / m) for s, m in [(4e-3, 1e-2), (4e-3, 2e-2), (8e-3, 1e-2), (8e-3, 2e-2)]})
    # the loop within each population
    plan = plan_of(tau_cases()["recurrent-within"])
    assert [ly.w_rec.shape for ly in plan.layers] == [(4, 4), (4, 4)]


def test_a_split_node_runs_on_loihi_close_to_the_reference():
    """No Lava needed: the emulator (fixed point) on the split populations follows the
    reference's spikes closely, and the read-out's voltage."""
    for name, g in tau_cases().items():
        x = spikes((80, 3, 5), seed=12)
        ref = nrf_nir.run(g, x, target="reference", dtype="float64")["output"]
        got = nrf_nir.run(g, x, target="loihi", dtype="float64")["output"]
        if name == "li-readout-taus":  # a hidden spike flip moves the voltage for a while
            rmse = float(((got - ref) ** 2).mean().sqrt())
            assert rmse < 0.05 * float(ref.abs().max()), name
        else:
            assert float(ref.sum()) > 0 and float((got == ref).double().mean()) > 0.95, name


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("name", list(tau_cases()))
def test_split_populations_run_exactly(name):
    record = ("n1",) if name in ("lif-3-taus", "cuba-taus") else ()
    compare(tau_cases()[name], spikes((60, 3, 5), seed=13), record=record)
