"""The Lava targets (docs/targets/lava.md).

- ``lava-float`` equals the float64 reference spike for spike on node-level cases (LIF, IF,
  CubaLIF; biases, v_leak, v_reset shift, per-neuron thresholds, exponential integration,
  'ge' thresholds, recurrent loops, several layers and outputs), after translation and with
  Lava's one-step-per-Dense latency removed;
- ``loihi`` (our emulator) equals ``lava-fixed`` bit for bit on random networks, and a plain
  numpy transcription of Lava's fixed-point equations;
- ``check`` names node and field of what Lava cannot run;
- every Lava run stops its processes, also when it raises or is interrupted;
- the netx HDF5 artifact loads in lava-dl and reproduces ``lava-fixed``'s spikes.

Lava-dependent tests are skipped, with the import error as the reason, when Lava (installed by
``scripts/install_lava.py``) cannot be imported.
"""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.targets import get
from nrf_nir.targets.lava.plan import Synapse, quantize
from tests import helpers

try:
    from nrf_nir.targets.lava import runner
    from nrf_nir.targets.lava.netx import run_netx

    LAVA_ERROR = None
except Exception as exc:  # noqa: BLE001 - any import failure means: no Lava here
    runner = None  # type: ignore[assignment]
    LAVA_ERROR = f"{type(exc).__name__}: {exc}"

if LAVA_ERROR:
    print(f"\n[test_target_lava] Lava tests skipped: lava cannot be imported ({LAVA_ERROR})")
needs_lava = pytest.mark.skipif(LAVA_ERROR is not None,
                                reason=f"lava cannot be imported: {LAVA_ERROR}")

DT = 1e-3


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------

def graph(nodes: dict, edges: list, **meta) -> nir.NIRGraph:
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    g.metadata = {"dt": DT, **meta}
    return g


def chain(*nodes, shape=(4,), **meta) -> nir.NIRGraph:
    return helpers.chain(*nodes, shape=shape, dt=DT, **meta)


def lif(n, tau=0.01, v_th=1.0, v_reset=0.0, v_leak=0.0, r=1.0, rng=None, spread=0.0):
    def p(v, vary=True):
        if rng is None or not vary or spread == 0:
            return np.full(n, v, dtype=np.float64)
        return v * (1 + spread * rng.uniform(-1, 1, n))
    return nir.LIF(tau=np.full(n, tau), r=p(r), v_leak=np.full(n, v_leak),
                   v_threshold=p(v_th), v_reset=np.full(n, v_reset))


def cuba(n, tau_syn=0.005, tau_mem=0.01, v_th=1.0, w_in=1.0, r=1.0, v_leak=0.0, v_reset=0.0):
    return nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem),
                       r=np.full(n, r), v_leak=np.full(n, v_leak),
                       v_threshold=np.full(n, v_th), v_reset=np.full(n, v_reset),
                       w_in=np.full(n, w_in))


def affine(rng, n_out, n_in, scale, bias=0.0):
    return nir.Affine(weight=rng.normal(0, scale, (n_out, n_in)),
                      bias=rng.normal(0, bias, n_out) if bias else np.zeros(n_out))


def linear(rng, n_out, n_in, scale):
    return nir.Linear(weight=rng.normal(0, scale, (n_out, n_in)))


def spikes(shape, rate=0.3, seed=0):
    return (np.random.default_rng(seed).random(shape) < rate).astype(np.float64)


def recurrent(rng, n_in=5, n=6, bias=False):
    """input -> w_in -> lif <-> w_rec, lif -> output (the LIFRecurrentCell pattern)."""
    w_rec = (nir.Affine(weight=rng.normal(0, 15, (n, n)), bias=rng.normal(0, 1, n)) if bias
             else nir.Linear(weight=rng.normal(0, 15, (n, n))))
    return graph({"input": nir.Input(input_type=np.array([n_in])),
                  "w_in": linear(rng, n, n_in, 40), "lif": cuba(n, tau_syn=0.004),
                  "w_rec": w_rec, "output": nir.Output(output_type=None)},
                 [("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                  ("lif", "output")])


def two_layers(rng, out_hidden=False, n_in=6, h=7, n_out=4):
    nodes = {"input": nir.Input(input_type=np.array([n_in])),
             "fc1": affine(rng, h, n_in, 25, bias=2.0), "lif1": lif(h),
             "fc2": linear(rng, n_out, h, 30), "lif2": cuba(n_out, tau_mem=0.02),
             "output": nir.Output(output_type=None)}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("lif2", "output")]
    if out_hidden:
        nodes["hidden"] = nir.Output(output_type=None)
        edges.append(("lif1", "hidden"))
    return graph(nodes, edges)


def float_cases() -> dict:
    rng = np.random.default_rng(7)
    return {
        # name: (graph, input kind)
        "lif_affine_bias": (chain(affine(rng, 5, 4, 20, bias=3.0), lif(5)), "spikes"),
        "lif_graded_input": (chain(linear(rng, 5, 4, 8), lif(5, tau=0.02)), "real"),
        "lif_v_leak": (chain(linear(rng, 5, 4, 15), lif(5, v_leak=0.4, v_reset=0.4, v_th=1.2)),
                       "spikes"),
        "lif_v_leak_zero_init": (chain(linear(rng, 5, 4, 15), lif(5, v_leak=0.6)),
                                 "spikes", {"initial_state": "zero"}),
        "lif_per_neuron_vth_r": (chain(linear(rng, 5, 4, 20),
                                       lif(5, v_th=1.0, r=1.5, rng=rng, spread=0.5)), "spikes"),
        "lif_direct_input": (chain(lif(4, r=30.0)), "real"),
        "if": (chain(linear(rng, 5, 4, 1.0), nir.IF(r=np.full(5, 100.0), v_threshold=np.ones(5),
                                                    v_reset=np.zeros(5))), "spikes"),
        "cuba": (chain(linear(rng, 5, 4, 40), cuba(5, w_in=1.3, r=0.8)), "spikes"),
        "cuba_affine_bias": (chain(affine(rng, 5, 4, 30, bias=20.0), cuba(5)), "spikes"),
        "exponential": (chain(affine(rng, 5, 4, 30, bias=5.0), cuba(5)), "spikes",
                        {"integration": "exponential"}),
        "ge_threshold": (chain(linear(rng, 5, 4, 20), lif(5)), "spikes", {"threshold": "ge"}),
        "flatten": (graph({"input": nir.Input(input_type=np.array([2, 2, 2])),
                           "flat": nir.Flatten(start_dim=0, end_dim=-1,
                                               input_type={"input": np.array([2, 2, 2])}),
                           "fc": affine(rng, 5, 8, 20, bias=1.0), "lif": lif(5),
                           "output": nir.Output(output_type=None)},
                          [("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")]),
                    "spikes"),
        "recurrent": (recurrent(rng, bias=True), "spikes"),
        "two_layers_two_outputs": (two_layers(rng, out_hidden=True), "spikes"),
    }


def inputs_for(g: nir.NIRGraph, kind: str, T: int = 60, B: int = 3, seed: int = 1):
    shape = tuple(int(s) for s in g.nodes["input"].input_type["input"])
    if kind == "real":
        return np.random.default_rng(seed).uniform(0, 1, (T, B, *shape))
    return spikes((T, B, *shape), seed=seed)


def with_meta(case):
    g, kind = case[0], case[1]
    if len(case) > 2:
        g.metadata.update(case[2])
    return g, kind


# ---------------------------------------------------------------------------------------------
# lava-float == reference
# ---------------------------------------------------------------------------------------------

CASES = float_cases()


@needs_lava
@pytest.mark.parametrize("name", list(CASES))
def test_lava_float_equals_reference(name):
    g, kind = with_meta(CASES[name])
    assert nrf_nir.check(g, "lava-float") == []
    x = inputs_for(g, kind)
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")
    got = nrf_nir.lower(g, "lava-float", dtype="float64").run(x)
    assert set(got) == set(ref)
    total = 0.0
    for key in ref:
        assert got[key].shape == ref[key].shape
        assert torch.equal(got[key], ref[key]), (
            f"{key}: {int((got[key] != ref[key]).sum())} of {ref[key].numel()} differ")
        total += float(ref[key].sum())
    assert total > 0, "the case must spike to mean anything"


# ---------------------------------------------------------------------------------------------
# loihi == lava-fixed, bit for bit
# ---------------------------------------------------------------------------------------------

def random_network(seed: int) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    if seed % 3 == 0:
        return recurrent(rng, bias=False)
    if seed % 3 == 1:
        return two_layers(rng, out_hidden=True)
    n = int(rng.integers(3, 9))
    return chain(affine(rng, n, 5, float(rng.uniform(5, 40)), bias=2.0),
                 lif(n, tau=float(rng.uniform(0.003, 0.03)), v_th=float(rng.uniform(0.5, 2))),
                 linear(rng, 3, n, 30), cuba(3, tau_syn=float(rng.uniform(0.002, 0.01))),
                 shape=(5,))


@needs_lava
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loihi_bit_exact_with_lava_fixed(seed):
    g = random_network(seed)
    assert nrf_nir.check(g, "lava-fixed") == [] and nrf_nir.check(g, "loihi") == []
    neurons = [n for n, node in g.nodes.items() if isinstance(node, nir.LIF | nir.CubaLIF)]
    x = spikes((80, 3, int(g.nodes["input"].input_type["input"][0])), seed=seed + 10)
    fixed = nrf_nir.lower(g, "lava-fixed").run(x, record=neurons)
    emu = nrf_nir.lower(g, "loihi").run(x, record=neurons)
    assert set(fixed) == set(emu)
    for key in fixed:
        assert torch.equal(fixed[key], emu[key]), key
    assert sum(float(v.sum()) for v in fixed.values()) > 0
    # and the fixed-point run stays close to the reference
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")
    agree = float((ref["output"] == emu["output"]).float().mean())
    assert agree > 0.9, agree


def _numpy_layer(x, w, bias, du, dv, vth):
    """Lava's fixed-point CUBA LIF (``PyLifModelBitAcc``, docs/targets/lava.md), transcribed
    literally (one layer, no latency)."""
    T, B, _ = x.shape
    n = w.shape[0]
    u = np.zeros((B, n), dtype=np.int64)
    v = np.zeros((B, n), dtype=np.int64)
    out = np.zeros((T, B, n), dtype=np.int8)

    def decay(s, d):
        p = s * (4096 - d)
        return np.sign(p) * (np.abs(p) >> 12)

    for t in range(T):
        a = x[t].astype(np.int64) @ w.T + bias
        u = decay(u, du + 1) + (a << 6)
        u = np.where(u > 2**23, u - 2**24, u)
        u = np.where(u <= -(2**23), u + 2**24, u)
        v = np.clip(decay(v, dv) + u, -(2**23 - 1), 2**23 - 1)
        s = v > (vth << 6)
        v[s] = 0
        out[t] = s
    return out


def test_loihi_emulator_matches_the_equations():
    rng = np.random.default_rng(3)
    g = chain(affine(rng, 6, 4, 30, bias=3.0), cuba(6, tau_syn=0.003, tau_mem=0.02), shape=(4,))
    prog = nrf_nir.lower(g, "loihi")
    fl = prog.backend.fixed.layers[0]
    x = spikes((120, 4, 4), seed=5)
    want = _numpy_layer(x, fl.w_ff, fl.bias, fl.du, fl.dv, fl.vth)
    got = prog.run(x)["output"].numpy().astype(np.int8)
    assert want.sum() > 0
    np.testing.assert_array_equal(got, want)


def test_loihi_wraps_and_saturates_like_lava():
    """Forced tiny threshold mantissa: huge weights drive u past 24 bits (wrap) and v to its
    clip; the emulator must still equal the transcription."""
    rng = np.random.default_rng(4)
    g = chain(linear(rng, 5, 4, 10), cuba(5, tau_syn=1e3, tau_mem=1e3, w_in=1e6), shape=(4,))
    prog = nrf_nir.lower(g, "loihi", vth=131071)  # weights clip at 8 bits, du = 0
    fl = prog.backend.fixed.layers[0]
    assert fl.du == 0 and prog.backend.quantization_report()["layers"][0]["weights_clipped"]
    x = np.ones((400, 2, 4))
    x[::7] = 0
    want = _numpy_layer(x, fl.w_ff, fl.bias, fl.du, fl.dv, fl.vth)
    emu = prog.backend.options["emulator"]
    res = emu.run(torch.from_numpy(x), record_state=True)
    np.testing.assert_array_equal(res[0].numpy(), want)
    u = res[(0, "u")]
    assert int(u.max()) > 2**22 and int(u.min()) < -(2**22)  # u wrapped around 24 bits
    assert int(res[(0, "v")].abs().max()) == 2**23 - 1  # v saturated


def test_quantization_report_and_limits():
    rng = np.random.default_rng(5)
    g = two_layers(rng)
    prog = nrf_nir.lower(g, "loihi")
    rep = prog.backend.quantization_report()
    assert [r["name"] for r in rep["layers"]] == ["lif1", "lif2"]
    for r, fl in zip(rep["layers"], prog.backend.fixed.layers, strict=True):
        assert 1 <= r["vth_mant"] <= 2**17 - 1
        assert 0 <= fl.du <= 4095 and 0 <= fl.dv <= 4095
        assert fl.w_ff.min() >= -256 and fl.w_ff.max() <= 255
        if r["weight_sign_mode"] == "mixed":
            assert np.all(fl.w_ff % 2 == 0)
        assert np.abs(fl.bias).max() <= 4095
        assert r["weight_rel_error_max"] < 0.02
    assert rep["layers"][0]["du"] == 4095  # LIF: u keeps only this step's input


# ---------------------------------------------------------------------------------------------
# check()
# ---------------------------------------------------------------------------------------------

def _violations(g, target="lava-float"):
    return {(v.node, v.field) for v in nrf_nir.check(g, target)}


def test_check_names_node_and_field():
    rng = np.random.default_rng(0)
    conv = nir.Conv1d(input_shape=4, weight=np.ones((1, 1, 2)), stride=1, padding=0,
                      dilation=1, groups=1, bias=np.zeros(1))
    li = nir.LI(tau=np.full(4, 0.01), r=np.ones(4), v_leak=np.zeros(4))
    lif_taus = nir.LIF(tau=np.array([0.01, 0.02, 0.03]), r=np.ones(3), v_leak=np.zeros(3),
                       v_threshold=np.ones(3), v_reset=np.zeros(3))
    cuba_taus = nir.CubaLIF(tau_syn=np.array([0.01, 0.02, 0.03]), tau_mem=np.full(3, 0.01),
                            r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3),
                            v_reset=np.zeros(3))
    cases = [
        # a start away from v_reset runs (tests/test_lava_initial_state.py), unless the idle
        # steps before the first real one would carry it across the threshold
        (("n1", "v_reset"), chain(linear(rng, 3, 4, 1), lif(3, v_leak=1.5))),
        # an LI synapse (Lava's u) starting at v_leak != 0: u has no constant to hold it
        # through the idle steps (a CubaLIF's leak maps: tests/test_lava_cuba_leak.py)
        (("n1", "v_leak"), chain(linear(rng, 3, 4, 1),
                                 nir.LI(tau=np.full(3, 0.01), r=np.ones(3),
                                        v_leak=np.full(3, 0.2)),
                                 linear(rng, 3, 3, 1), lif(3))),
        (("n1", "v_threshold"), chain(linear(rng, 3, 4, 1), lif(3, v_th=-1.0))),
        # a Threshold on lava-float: tests/test_lava_threshold.py; per-neuron thresholds not
        # all positive cannot be divided out
        (("n0", "threshold"), chain(nir.Threshold(threshold=np.array([0.5, -0.5, 1.0, 2.0])))),
        (("n0", "edges"), chain(li, cuba(4))),  # a non-spiking neuron feeding a neuron
        # an LI synapse with per-neuron time constants (one du per population); a loop joining
        # neurons of different time constants maps (tests/test_lava_loops.py)
        (("li", "tau"), graph({"input": nir.Input(input_type=np.array([4])),
                               "w_in": linear(rng, 3, 4, 1),
                               "li": nir.LI(tau=np.array([0.01, 0.02, 0.03]), r=np.ones(3),
                                            v_leak=np.zeros(3)),
                               "w": linear(rng, 3, 3, 1), "lif": lif(3),
                               "output": nir.Output(None)},
                              [("input", "w_in"), ("w_in", "li"), ("li", "w"), ("w", "lif"),
                               ("lif", "output")])),
        (("n0", "edges"), chain(linear(rng, 3, 4, 1))),  # a weight straight into the Output
        # one to one without a weight, too wide for a diagonal Dense (3000 x 3000)
        (("input", "edges"), chain(lif(3000), shape=(3000,))),
        (("n0", "edges"), chain(conv, shape=(1, 4))),  # a Conv straight into the Output
    ]
    for (node, fld), g in cases:
        found = _violations(g)
        assert (node, fld) in found, (node, fld, found)
    # subtract reset maps (ATRLIF, tests/test_lava_subtract.py), except an IF in fixed point
    sub = chain(linear(rng, 3, 4, 1), nir.IF(r=np.ones(3), v_threshold=np.ones(3),
                                             v_reset=np.zeros(3)), reset="subtract")
    assert ("n1", "reset") not in _violations(sub)
    assert ("n1", "reset") in _violations(sub, "loihi")
    # per-neuron time constants alone: split into populations (tests/test_lava_graph_passes.py)
    assert _violations(chain(linear(rng, 3, 4, 1), lif_taus)) == set()
    assert _violations(chain(linear(rng, 3, 4, 1), cuba_taus)) == set()
    # two inputs
    g2 = graph({"a": nir.Input(input_type=np.array([2])), "b": nir.Input(input_type=np.array([2])),
                "l": lif(2), "output": nir.Output(output_type=None)},
               [("a", "l"), ("b", "l"), ("l", "output")])
    assert _violations(g2) == set()  # several Inputs map (tests/test_lava_inputs.py)
    # a loop through two neurons
    g3 = graph({"input": nir.Input(input_type=np.array([3])), "w0": linear(rng, 3, 3, 1),
                "a": lif(3), "wab": linear(rng, 3, 3, 1), "b": lif(3),
                "wba": linear(rng, 3, 3, 1), "output": nir.Output(output_type=None)},
               [("input", "w0"), ("w0", "a"), ("a", "wab"), ("wab", "b"), ("b", "wba"),
                ("wba", "a"), ("b", "output")])
    assert any(f == "edges" for _, f in _violations(g3))
    # what runs has no violation on any of the three targets
    for target in ("lava-float", "lava-fixed", "loihi"):
        if target != "loihi" and LAVA_ERROR:
            continue
        assert nrf_nir.check(two_layers(rng), target) == []
    with pytest.raises(nrf_nir.NIRError, match="subtract"):
        nrf_nir.lower(sub, "loihi")


def test_registry_and_inputs():
    assert get("loihi").name == "loihi"
    rng = np.random.default_rng(1)
    prog = nrf_nir.lower(chain(linear(rng, 3, 4, 10), lif(3)), "loihi")
    with pytest.raises(nrf_nir.NIRError, match="integer"):
        prog.run(np.full((5, 1, 4), 0.5))
    with pytest.raises(nrf_nir.NIRError, match="record"):
        prog.run(spikes((5, 1, 4)), record=["n0"])


# ---------------------------------------------------------------------------------------------
# processes: none left behind
# ---------------------------------------------------------------------------------------------

@needs_lava
def test_no_process_left_behind():
    rng = np.random.default_rng(2)
    g = two_layers(rng)
    prog = nrf_nir.lower(g, "lava-fixed")
    spec = get("lava-fixed").spec(prog.backend)
    x = spikes((20, 2, 6), seed=3)
    before = runner.children()
    runner.run_network(spec, x, {1})
    assert runner.children() == before

    def boom():
        raise RuntimeError("injected failure after the run started")

    with pytest.raises(RuntimeError, match="injected"):
        runner.run_network(spec, x, {1}, _after_run=boom)
    assert runner.children() == before

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_network(spec, x, {1}, _after_run=interrupt)
    assert runner.children() == before

    calls = []

    def interrupt_mid_run():  # called while Lava's run is in progress
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_network(spec, spikes((3000, 2, 6), seed=3), {1},
                           _while_running=interrupt_mid_run)
    assert len(calls) == 3 and runner.children() == before

    # a failure inside a Lava process (a model raising mid-run: Lava alone would hang)
    bad = runner.NetSpec(spec.tag, spec.n_in, [runner.LayerSpec(
        n=3, inputs=[Synapse(-1, np.ones((3, 6), dtype=np.int64))], depth=1, w_rec=None,
        bias=np.zeros(3), du=0, dv=0, vth=np.array([1, 2]))])  # vth of the wrong shape
    with pytest.raises(runner.LavaRunError, match="broadcast"):
        runner.run_network(bad, x, {0})
    assert runner.children() == before


# ---------------------------------------------------------------------------------------------
# artifact: netx HDF5
# ---------------------------------------------------------------------------------------------

@needs_lava
def test_netx_artifact_reproduces_lava_fixed(tmp_path):
    rng = np.random.default_rng(11)
    g = chain(affine(rng, 6, 5, 25, bias=2.0), lif(6), linear(rng, 4, 6, 30),
              cuba(4, tau_mem=0.02), shape=(5,))
    nrf_nir.save(g, tmp_path / "net.nir")
    out = tmp_path / "deploy"
    from nrf_nir.cli import main

    assert main(["deploy", str(tmp_path / "net.nir"), "--target", "lava-fixed", "-o",
                 str(out)]) == 0
    meta = json.loads((out / "lava.json").read_text())
    assert meta["latency_steps"] == 2
    assert (out / "network.net").is_file() and (out / "quantization.json").is_file()
    x = spikes((60, 2, 5), seed=4)
    fixed = nrf_nir.lower(g, "lava-fixed").run(x)["output"].numpy().astype(np.int8)
    assert fixed.sum() > 0
    for b in range(2):
        np.testing.assert_array_equal(run_netx(out / "network.net", x[:, b], 2), fixed[:, b])
    # what netx cannot express is refused by name, and nothing is written: a node split into
    # populations of one time constant each
    two_taus = lif(4)
    two_taus.tau = np.array([0.01, 0.02, 0.01, 0.02])
    prog = nrf_nir.lower(chain(affine(rng, 4, 5, 25, bias=2.0), two_taus, shape=(5,)),
                         "lava-fixed")
    with pytest.raises(nrf_nir.NIRError, match="split into populations"):
        get("lava-fixed").artifact(prog.backend, tmp_path / "split")
    assert not (tmp_path / "split").exists()


def test_quantize_is_shared():
    """lava-fixed and loihi use one quantization (same function, same numbers)."""
    rng = np.random.default_rng(6)
    g = two_layers(rng)
    a = nrf_nir.lower(g, "loihi").backend.fixed
    b = quantize(a.plan)
    for la, lb in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(la.w_ff, lb.w_ff)
        assert (la.du, la.dv, la.vth) == (lb.du, lb.dv, lb.vth)


def test_loihi_time_chunks_do_not_change_results():
    rng = np.random.default_rng(8)
    g = recurrent(rng, bias=True)
    prog = nrf_nir.lower(g, "loihi")
    emu = prog.backend.options["emulator"]
    x = torch.from_numpy(spikes((90, 3, 5), seed=2))
    whole = emu.run(x)
    emu.chunk_elements = 7  # one step per chunk
    try:
        stepped = emu.run(x)
    finally:
        emu.chunk_elements = 1 << 23
    assert whole[0].sum() > 0 and torch.equal(whole[0], stepped[0])


@needs_lava
def test_constant_input_needs_no_matrix_of_the_population_size(monkeypatch):
    """A biased population gets its constant input from a source wired into its ``a_in``:
    the Dense processes built are the synapses only (the zoo's tts-encoder on lava-float,
    16 samples side by side, once built a 32768x53248 identity-selection Dense: 13 GiB), and
    the spikes equal the float64 reference."""
    rng = np.random.default_rng(12)
    g = chain(affine(rng, 40, 5, 20, bias=3.0), lif(40), affine(rng, 6, 40, 8, bias=1.0),
              lif(6), shape=(5,))
    built: list[tuple[int, ...]] = []
    dense = runner.LAVA["Dense"]

    def recording(**kw):
        built.append(tuple(np.shape(kw["weights"])))
        return dense(**kw)

    monkeypatch.setitem(runner.LAVA, "Dense", recording)
    x = spikes((30, 4, 5), seed=3)
    got = nrf_nir.lower(g, "lava-float", dtype="float64", copies=4).run(x)["output"]
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")["output"]
    assert float(ref.sum()) > 0 and torch.equal(got, ref)
    assert sorted(built) == [(24, 160), (160, 20)]  # 4 copies of the two synapses
