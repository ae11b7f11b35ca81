"""The steps of the Xylo target's analysis (``rules.analyse``) and quantization
(``quantize.quantize``), each run on its own: role assignment, chain composition, single
design rules fed a graph or layer that breaks them, the range search on a crafted layer, the
rounding of known values and the report's fields; and the public chip specification
(``nrf_nir.chips``) the target and the zoo share."""

from __future__ import annotations

import math
import subprocess
import sys

import nir
import numpy as np
import pytest

import nrf_nir
from nrf_nir.chips import (
    XYLO_AUDIO2,
    XYLO_DEFAULT_HEADROOM,
    XYLO_SPECS,
    XyloSpec,
    xylo_spec,
)
from nrf_nir.errors import NIRError
from nrf_nir.semantics import Semantics, read_semantics
from nrf_nir.targets.xylo import rules as r
from nrf_nir.targets.xylo.quantize import (
    DEFAULT_HEADROOM,
    IntegerArrays,
    quantize,
    quantize_layer,
    round_biases,
    round_thresholds,
    round_weights,
    search_range,
    settle_scale,
    tau_summary,
    weight_shifts,
)
from nrf_nir.validate import Checked

DT = 1e-3


def lif(n: int, tau: float = 0.008, v_th: float = 1.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=np.full(n, v_th), v_reset=np.zeros(n))


def cuba(n: int, tau_syn: float = 0.004, tau_mem: float = 0.008) -> nir.CubaLIF:
    return nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem), r=np.ones(n),
                       v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))


def li(n: int, tau: float = 0.004) -> nir.LI:
    return nir.LI(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n))


def graph(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]],
          n_in: int = 4) -> nir.NIRGraph:
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([n_in])), **nodes,
                            "output": nir.Output(output_type=None)},
                     edges=edges, type_check=False)
    g.metadata = {"dt": DT}
    return g


def filtered() -> nir.NIRGraph:
    """input -> wa -> h (LIF) and input -> wb -> filt (LI) -> h; h -> w2 -> o -> output."""
    return graph({"wa": nir.Linear(weight=np.ones((3, 4))),
                  "wb": nir.Linear(weight=2 * np.ones((3, 4))), "filt": li(3), "h": lif(3),
                  "w2": nir.Linear(weight=np.ones((2, 3))), "o": cuba(2)},
                 [("input", "wa"), ("wa", "h"), ("input", "wb"), ("wb", "filt"),
                  ("filt", "h"), ("h", "w2"), ("w2", "o"), ("o", "output")])


def feedforward(n_in: int = 4, nh: int = 3, no: int = 2) -> nir.NIRGraph:
    """input -> w1 -> h (CubaLIF) -> w2 -> o (CubaLIF) -> output, unit weights."""
    return graph({"w1": nir.Linear(weight=np.ones((nh, n_in))), "h": cuba(nh),
                  "w2": nir.Linear(weight=np.ones((no, nh))), "o": cuba(no)},
                 [("input", "w1"), ("w1", "h"), ("h", "w2"), ("w2", "o"), ("o", "output")],
                 n_in=n_in)


def prepared(g: nir.NIRGraph) -> tuple[Checked, Semantics, r.Roles]:
    checked = nrf_nir.validate(g)
    return checked, read_semantics(g), r.assign_roles(checked)


def messages(log: r.RuleLog) -> list[tuple[str | None, str | None, str]]:
    return [(v.node, v.field, v.message) for v in log.found]


# --------------------------------------------------------------------------------------------
# analysis: roles and chain composition
# --------------------------------------------------------------------------------------------


def test_role_assignment_finds_filters_neurons_and_sources() -> None:
    _, _, roles = prepared(filtered())
    assert roles.spiking == ["h", "o"]
    assert roles.filters == ["filt"]
    assert roles.neurons == ["h", "o"]
    assert roles.sources == ["input", "h", "o"]
    assert roles.order[roles.position["filt"]] == "filt"


def test_an_li_with_two_successors_is_no_filter() -> None:
    g = filtered()
    g.nodes["extra"] = nir.Linear(weight=np.ones((2, 3)))
    g.edges += [("filt", "extra"), ("extra", "o")]
    _, _, roles = prepared(g)
    assert roles.filters == []
    assert "filt" in roles.neurons


def test_chain_composition_multiplies_and_adds_the_stateless_nodes() -> None:
    rng = np.random.default_rng(0)
    w1, b1, w2 = rng.normal(size=(5, 4)), rng.normal(size=5), rng.normal(size=(3, 5))
    g = graph({"a": nir.Affine(weight=w1, bias=b1), "s": nir.Scale(scale=np.full(5, 0.5)),
               "l": nir.Linear(weight=w2), "h": lif(3),
               "w": nir.Linear(weight=np.ones((2, 3))), "o": cuba(2)},
              [("input", "a"), ("a", "s"), ("s", "l"), ("l", "h"), ("h", "w"), ("w", "o"),
               ("o", "output")])
    checked, sem, roles = prepared(g)
    ins = r.compose_chains(checked, roles, sem, r.RuleLog())
    assert ins is not None
    assert list(ins["h"].mats) == ["input"]
    np.testing.assert_allclose(ins["h"].dense("input", 4), w2 @ (0.5 * w1), rtol=1e-12)
    np.testing.assert_allclose(ins["h"].bias, w2 @ (0.5 * b1), rtol=1e-12)
    # an Output fed directly by a neuron receives that neuron through the identity
    assert list(ins["output"].mats) == ["o"]
    np.testing.assert_array_equal(ins["output"].dense("o", 2), np.eye(2))


def test_outputs_map_to_neurons_and_split_the_layers() -> None:
    checked, sem, roles = prepared(feedforward())
    ins = r.compose_chains(checked, roles, sem, r.RuleLog())
    assert ins is not None
    log = r.RuleLog()
    slots = r.map_outputs(checked, roles, ins, log)
    assert [(s.name, s.layer) for s in slots] == [("output", "o")]
    assert r.split_neurons(roles, slots) == (["h"], ["o"])
    assert log.found == []


def test_an_output_behind_a_linear_node_is_refused() -> None:
    g = feedforward()
    g.nodes["ro"] = nir.Linear(weight=np.ones((2, 2)))
    g.edges = [e for e in g.edges if e != ("o", "output")] + [("o", "ro"), ("ro", "output")]
    checked, sem, roles = prepared(g)
    ins = r.compose_chains(checked, roles, sem, r.RuleLog())
    assert ins is not None
    log = r.RuleLog("xylo")
    assert r.map_outputs(checked, roles, ins, log) == []
    assert [(n, f) for n, f, _ in messages(log)] == [("output", "edges")]
    assert "receives o" in log.found[0].message


# --------------------------------------------------------------------------------------------
# analysis: single rules
# --------------------------------------------------------------------------------------------


def test_rule_log_tells_blocking_from_precision_violations() -> None:
    log = r.RuleLog("xylo-imu")
    log.add("a", "v_threshold", "imprecise", lossy=True)
    assert not log.blocking and log.found[0].target == "xylo-imu"
    log.add("b", "shape", "too big")
    assert log.blocking and len(log.lossy) == 1


def test_rule_input_channels_names_the_input_over_the_limit() -> None:
    checked, _, _ = prepared(feedforward(n_in=17))
    log = r.RuleLog()
    r.rule_input_channels(checked, XYLO_AUDIO2, log)
    assert [(n, f) for n, f, _ in messages(log)] == [("input", "shape")]
    assert "17 in total" in log.found[0].message and "> 16" in log.found[0].message
    log = r.RuleLog()
    r.rule_input_channels(checked, XyloSpec(max_inputs=17), log)
    assert log.found == []


def test_rule_composable_refuses_an_unsupported_node_silently() -> None:
    g = feedforward()
    g.nodes["d"] = nir.Delay(delay=np.full(2, 2e-3))
    g.edges = [e for e in g.edges if e != ("o", "output")] + [("o", "d"), ("d", "output")]
    checked, _, roles = prepared(g)
    log = r.RuleLog()
    assert not r.rule_composable(checked, roles, XYLO_AUDIO2, log)
    assert log.found == []  # rule_node_types names the Delay
    r.rule_node_types(checked, log)
    assert [(n, f) for n, f, _ in messages(log)] == [("d", "type")]
    checked, _, roles = prepared(feedforward())
    assert r.rule_composable(checked, roles, XYLO_AUDIO2, r.RuleLog())


def test_rule_neuron_counts_uses_the_spec() -> None:
    checked, _, _ = prepared(feedforward(nh=5, no=2))
    small = XyloSpec(name="tiny", max_hidden=4, max_outputs=1)
    log = r.RuleLog()
    r.rule_neuron_counts(checked, ["h"], ["o"], small, log)
    assert [(n, f) for n, f, _ in messages(log)] == [("h", "shape"), ("o", "shape")]
    assert "> 4, the tiny limit" in log.found[0].message
    log = r.RuleLog()
    r.rule_neuron_counts(checked, ["h"], [], XYLO_AUDIO2, log)
    assert [(n, f) for n, f, _ in messages(log)] == [(None, "nodes")]


def test_rule_output_edges_refuses_inputs_at_output_neurons() -> None:
    g = graph({"w": nir.Linear(weight=np.ones((2, 4))), "o": cuba(2)},
              [("input", "w"), ("w", "o"), ("o", "output")])
    checked, sem, roles = prepared(g)
    ins = r.compose_chains(checked, roles, sem, r.RuleLog())
    assert ins is not None
    log = r.RuleLog()
    r.rule_output_edges(checked, roles, ins, ["o"], log)
    assert [(n, f) for n, f, _ in messages(log)] == [("o", "edges")]
    assert "not from input channels" in log.found[0].message


def built_layer(g: nir.NIRGraph, name: str, role: str = "hidden") -> tuple[Checked, r.Layer]:
    checked, sem, roles = prepared(g)
    ins = r.compose_chains(checked, roles, sem, r.RuleLog())
    assert ins is not None
    return checked, r.build_layer(name, role, checked, sem, ins, roles.filters, DT)


def test_build_layer_gives_a_direct_and_a_filter_synapse() -> None:
    _, layer = built_layer(filtered(), "h")
    assert [(s.kind, s.node) for s in layer.synapses] == [("direct", "h"), ("filter", "filt")]
    direct, filt = layer.synapses
    assert direct.c is None and set(direct.blocks) == {"input"}
    np.testing.assert_array_equal(filt.blocks["input"], 2 * np.ones((3, 4)))
    assert filt.c is not None
    np.testing.assert_allclose(filt.c, DT / 0.004)
    np.testing.assert_allclose(layer.c_mem, DT / 0.008)


def test_rule_membrane_decay_refuses_a_long_tau() -> None:
    g = feedforward()
    g.nodes["h"] = cuba(3, tau_mem=2 ** 16 * DT)
    _, layer = built_layer(g, "h")
    log = r.RuleLog()
    assert not r.rule_membrane_decay(layer, DT, XYLO_AUDIO2, log)
    assert [(n, f) for n, f, _ in messages(log)] == [("h", "tau_mem")]
    assert "dash = 16 > 15" in log.found[0].message
    assert r.rule_membrane_decay(layer, DT, XyloSpec(dash_max=16), r.RuleLog())


def test_rule_synaptic_decay_refuses_dash_zero_and_names_the_filter() -> None:
    g = filtered()
    g.nodes["filt"] = li(3, tau=DT)  # c = 1: dash 0
    checked, layer = built_layer(g, "h")
    log = r.RuleLog()
    assert not r.rule_synaptic_decays(layer, checked, DT, XYLO_AUDIO2, log)
    assert [(n, f) for n, f, _ in messages(log)] == [("filt", "tau")]
    assert "dash = 0" in log.found[0].message
    log = r.RuleLog()
    assert r.rule_synaptic_decay("x", "tau", np.array([4 * DT]), np.array([0.25]), DT,
                                 XYLO_AUDIO2, log)
    assert log.found == []


def test_rule_threshold_above_leak() -> None:
    _, layer = built_layer(feedforward(), "h")
    assert r.rule_threshold_above_leak(layer, r.RuleLog())
    layer.v_th = np.array([1.0, 0.0, 1.0])
    log = r.RuleLog()
    assert not r.rule_threshold_above_leak(layer, log)
    assert [(n, f) for n, f, _ in messages(log)] == [("h", "v_threshold")]


def test_rule_synapse_count_and_ranges_on_one_layer() -> None:
    _, layer = built_layer(filtered(), "h")
    log = r.RuleLog()
    r.rule_synapse_count(layer, XYLO_SPECS["syns63300"], log)  # IMU: one synapse
    assert [(n, f) for n, f, _ in messages(log)] == [("h", "edges")]
    assert "needs 2 synaptic currents" in log.found[0].message
    r.rule_synapse_count(layer, XYLO_AUDIO2, log)
    assert len(log.found) == 1
    layer.v_th = np.full(3, 1e9)  # int16 thresholds: weights round to 0
    log = r.RuleLog()
    r.rule_ranges(layer, XYLO_AUDIO2, log)
    assert [(n, f) for n, f, _ in messages(log)] == [("h", "weight")]
    assert log.lossy == log.found and not log.blocking


def test_rule_expansion_on_a_chip_with_expansion_neurons() -> None:
    checked, sem, roles = prepared(feedforward(nh=200))
    ins = r.compose_chains(checked, roles, sem, r.RuleLog())
    assert ins is not None
    outputs = r.map_outputs(checked, roles, ins, r.RuleLog())
    layers = [r.build_layer(n, role, checked, sem, ins, roles.filters, DT)
              for n, role in (("h", "hidden"), ("o", "output"))]
    net = r.assign_layout(checked, sem, DT, layers[:1], layers[1:], outputs)
    assert [(s.name, s.offset, s.size) for s in net.inputs] == [("input", 0, 4)]
    assert (layers[0].offset, layers[1].offset) == (0, 0)
    log = r.RuleLog()
    r.rule_expansion(net, {"input"}, XYLO_SPECS["syns63300"], log)
    assert [(n, f) for n, f, _ in messages(log)] == [("h", "edges"), ("h", "edges")]
    assert "first 128" in log.found[0].message and "last 128" in log.found[1].message
    log = r.RuleLog()
    r.rule_expansion(net, {"input"}, XYLO_AUDIO2, log)
    assert log.found == []


def test_latency_counts_hops_from_hidden_neurons() -> None:
    checked, sem, _ = prepared(feedforward())
    net, found = r.analyse(checked, sem)
    assert net is not None and found == []
    for layer in net.layers:
        layer.lag = -1
    r.assign_latency(net, r.assign_roles(checked).position)
    assert [(la.name, la.lag) for la in net.layers] == [("h", 0), ("o", 1)]


# --------------------------------------------------------------------------------------------
# quantization: range search, rounding, report
# --------------------------------------------------------------------------------------------


def crafted() -> r.Network:
    """One hidden layer of 2 neurons (membrane and synapse decay 1/2 per step: dash 1, unit
    gain) fed by 2 input channels with weights [[2, -4], [1, 0]]: weight factor
    ``1 * 0.5 * 0.5 / (1 - 0.5) = 0.5``, so the largest ``|factor * w|`` is 2."""
    w = np.array([[2.0, -4.0], [1.0, 0.0]])
    syn = r.Synapse("current", "h", np.full(2, 0.5), np.ones(2), {"input": w}, np.zeros(2),
                    np.zeros(2))
    layer = r.Layer(name="h", node_type="CubaLIF", role="hidden", shape=(2,), n=2,
                    c_mem=np.full(2, 0.5), tau_mem=np.full(2, 2 * DT), v_leak=np.zeros(2),
                    v_th=np.array([1.0, 2.0]), v_reset=np.zeros(2), synapses=[syn])
    return r.Network(dt=DT, semantics=Semantics(dt=DT), inputs=[r.InputSlot("input", (2,), 0, 2)],
                     hidden=[layer], output_layers=[], outputs=[])


def test_range_search_on_a_crafted_layer() -> None:
    net = crafted()
    found = search_range(net.hidden[0], net, 2.0, XYLO_AUDIO2)
    assert list(found.dash_mem) == [1, 1] and [list(d) for d in found.dash_syn] == [[1, 1]]
    np.testing.assert_array_equal(found.factors[0], [0.5, 0.5])
    assert found.extent == {"in": 2.0}
    # weights: 127 * 2**7 / 2 = 8128; thresholds: 32767 / (2 * 2) = 8191.75
    assert found.limits == {"weights": 8128.0, "threshold": 32767 / 4}
    assert found.s_max == 8128.0
    # headroom 4 lets the threshold limit the scale
    assert search_range(net.hidden[0], net, 4.0, XYLO_AUDIO2).s_max == 32767 / 8


def test_weight_shifts_and_settled_scale() -> None:
    net = crafted()
    found = search_range(net.hidden[0], net, 2.0, XYLO_AUDIO2)
    shifts = weight_shifts([found], XYLO_AUDIO2)
    assert shifts == {"in": 7, "rec": 0, "out": 0}  # 8128 * 2 / 127 = 2**7
    assert settle_scale(found, shifts, XYLO_AUDIO2) == (8128.0, "weights")
    # a smaller shift caps the scale at what int8 holds: 127 * 2**2 / 2
    assert settle_scale(found, {"in": 2}, XYLO_AUDIO2) == (254.0, "weights (in, shift 2)")


def test_rounding_of_known_values() -> None:
    ints, clipped = round_weights(np.array([0.5, 1.5, -0.5, 127.4, 127.6, -128.6]),
                                    XYLO_AUDIO2)
    assert ints.tolist() == [0, 2, 0, 127, 127, -128]  # half to even, clipped to int8
    assert clipped.tolist() == [False, False, False, False, True, True]
    theta = np.array([3.0, 3.2, 0.2, 40000.0])
    assert round_thresholds(theta, "gt", XYLO_AUDIO2).tolist() == [4, 4, 1, 32767]
    assert round_thresholds(theta, "ge", XYLO_AUDIO2).tolist() == [3, 4, 1, 32767]
    biases, n_clipped = round_biases(np.array([1.5, 2.5, -0.4, 40000.0, -40000.0]),
                                       XYLO_AUDIO2)
    assert biases.tolist() == [2, 2, 0, 32767, -32768] and n_clipped == 2


def test_quantize_layer_places_the_integers() -> None:
    net = crafted()
    found = search_range(net.hidden[0], net, 2.0, XYLO_AUDIO2)
    found.scale, found.limited_by = 8128.0, "weights"
    arrays = IntegerArrays.empty(2, 2, 1)
    ints = quantize_layer(net.hidden[0], net, found, {"in": 7, "rec": 0, "out": 0},
                            XYLO_AUDIO2, arrays)
    # 8128 * 0.5 * w / 2**7 = 31.75 w: [[63.5, -127], [31.75, 0]], stored [source, neuron]
    assert arrays.w_in[:, :, 0].tolist() == [[64, 32], [-127, 0]]
    assert not arrays.w_in[:, :, 1].any()
    assert arrays.threshold.tolist() == [8129, 16257]  # floor(s * v_th) + 1
    assert arrays.dash_mem.tolist() == [1, 1] and arrays.dash_syn.tolist() == [1, 1]
    assert ints.weights.nonzero == 3 and ints.weights.zeroed == 0 and ints.weights.clipped == 0
    exact = np.array([63.5, -127.0, 31.75])
    want = math.sqrt(float(np.sum((np.rint(exact) - exact) ** 2) / np.sum(exact ** 2)))
    assert math.isclose(ints.weights.relative_rms, want)


def test_report_fields() -> None:
    cfg, report = quantize(crafted(), headroom=2.0)
    assert report["headroom"] == 2.0
    assert report["weight_shifts"] == {"in": 7, "rec": 0, "out": 0}
    assert report["resources"] == {"inputs": [2, 16], "hidden": [2, 1000], "outputs": [0, 8],
                                   "synapse2_used": False}
    (layer,) = report["layers"]
    assert (layer["scale"], layer["scale_limited_by"]) == (8128.0, "weights")
    assert layer["threshold"]["min"] == 8129 and layer["threshold"]["max"] == 16257
    assert math.isclose(layer["threshold"]["max_relative_error"], 1 / 8128)
    assert layer["bias"] == {"min": 0, "max": 0, "clipped": 0, "max_abs_error": 0.0}
    assert layer["synapses"][0]["kind"] == "current" and layer["synapses"][0]["slot"] == 1
    assert cfg.weight_shift_in == 7 and cfg.layout["hidden"][0]["scale"] == 8128.0


def test_tau_summary_of_a_rounded_time_constant() -> None:
    # 11 ms at dt = 1 ms: dash round(log2 11) = 3, so Xylo decays as 8 ms (Euler)
    summary = tau_summary(np.array([0.011, 0.008]), np.array([3, 3]), DT, "euler")
    assert summary["dash_min"] == summary["dash_max"] == 3 and summary["distinct"] == 2
    assert math.isclose(summary["max_abs_relative_error"], 3 / 11)
    row = summary["values"][1]
    assert row["tau"] == 0.011 and math.isclose(row["tau_xylo"], 0.008)


def test_quantize_refuses_a_headroom_below_one() -> None:
    with pytest.raises(NIRError, match="headroom"):
        quantize(crafted(), headroom=0.5)


# --------------------------------------------------------------------------------------------
# the public chip specification
# --------------------------------------------------------------------------------------------


def test_chip_specs_by_name_and_alias() -> None:
    assert xylo_spec(None) is XYLO_AUDIO2 and xylo_spec("IMU") is XYLO_SPECS["syns63300"]
    assert xylo_spec("xylo-audio3").max_hidden == 992
    assert XYLO_AUDIO2.max_shifted_weight == 127 * 128
    with pytest.raises(NIRError, match="unknown Xylo chip") as err:
        xylo_spec("pollen")
    assert err.value.field == "chip"
    # the target's names are the same objects
    assert r.SPEC is XYLO_AUDIO2 and r.SPECS is XYLO_SPECS
    assert DEFAULT_HEADROOM == XYLO_DEFAULT_HEADROOM


def test_the_chip_spec_imports_no_framework() -> None:
    script = ("import sys\nimport nrf_nir.chips\n"
              "print(sorted({m.split('.')[0] for m in sys.modules} & "
              "{'torch', 'norse', 'snntorch', 'rockpool', 'xylosim', 'lava', 'numba'}))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"
