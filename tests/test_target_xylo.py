"""The Xylo targets (docs/targets/xylo.md).

- the ``xylo`` emulator equals SynSense's XyloSim bit for bit (spikes and every integer
  state, every step) on random integer configurations (saturating ones included) and on
  random valid graphs lowered by our quantizer;
- ``check`` names the node and the limit of every design rule it enforces;
- quantization reports tau, weight and threshold errors;
- the artifact round-trips: loaded from disk and run in XyloSim, it gives the same spikes;
- agreement with the float reference is measured and sane.
"""

from __future__ import annotations

import json
import math
import sys

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.errors import NIRError
from nrf_nir.validate import Identity

pytest.importorskip("xylosim")
pytest.importorskip("rockpool")
from nrf_nir.metrics import count_correlation, spike_agreement, windowed_f1  # noqa: E402
from nrf_nir.targets.xylo import XyloConfig, XyloEmulator, run_xylosim  # noqa: E402

DT = 1e-3
STATES = ("spikes", "v", "i", "i2", "v_out", "i_out")


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------

def cuba(n: int, tau_syn: float = 0.004, tau_mem: float = 0.008, v_th: float = 1.0,
         v_leak: float = 0.0) -> nir.CubaLIF:
    return nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem),
                       r=np.ones(n), v_leak=np.full(n, v_leak), v_threshold=np.full(n, v_th),
                       v_reset=np.full(n, v_leak))


def lif(n: int, tau: float = 0.008, v_th: float = 1.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n),
                   v_threshold=np.full(n, v_th), v_reset=np.zeros(n))


def li(n: int, tau: float = 0.004) -> nir.LI:
    return nir.LI(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n))


def graph(nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]], shape=(8,),
          **meta: object) -> nir.NIRGraph:
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array(shape)), **nodes,
                            "output": nir.Output(output_type=None)},
                     edges=edges, type_check=False)
    g.metadata = {"dt": DT, **meta}
    return g


def ff(n_in: int = 8, nh: int = 24, no: int = 3, seed: int = 0, out=None,
       **meta: object) -> nir.NIRGraph:
    """input -> Affine -> CubaLIF nh -> Linear -> CubaLIF no (or ``out``) -> output."""
    rng = np.random.default_rng(seed)
    return graph({"w1": nir.Affine(weight=rng.normal(0.2, 1.5, (nh, n_in)),
                                   bias=rng.normal(0, 0.02, nh)),
                  "h": cuba(nh),
                  "w2": nir.Linear(weight=rng.normal(0.1, 2.0 / np.sqrt(nh), (no, nh))),
                  "o": out if out is not None else cuba(no)},
                 [("input", "w1"), ("w1", "h"), ("h", "w2"), ("w2", "o"), ("o", "output")],
                 shape=(n_in,), **meta)


def spikes(T: int, B: int, n: int, rate: float = 0.1, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((T, B, n)) < rate).astype(np.float32)


def random_config(rng: np.random.Generator, nin: int, nh: int, no: int, *,
                  saturate: bool, two: bool) -> XyloConfig:
    def w(*shape: int) -> np.ndarray:
        return (rng.integers(-128, 128, shape) * (rng.random(shape) < 0.5)).astype(np.int8)

    win, wrec = w(nin, nh, 2), w(nh, nh, 2)
    if not two:
        win[:, :, 1] = 0
        wrec[:, :, 1] = 0
    return XyloConfig(
        weights_in=win, weights_rec=wrec, weights_out=w(nh, no),
        dash_mem=rng.integers(0, 9, nh).astype(np.uint8),
        dash_syn=rng.integers(0, 9, nh).astype(np.uint8),
        dash_syn2=rng.integers(0, 9, nh).astype(np.uint8),
        dash_mem_out=rng.integers(0, 9, no).astype(np.uint8),
        dash_syn_out=rng.integers(0, 9, no).astype(np.uint8),
        threshold=rng.integers(1, 3000 if saturate else 30000, nh).astype(np.int16),
        threshold_out=rng.integers(1, 30000, no).astype(np.int16),
        bias=rng.integers(-400, 400, nh).astype(np.int16),
        bias_out=rng.integers(-400, 400, no).astype(np.int16),
        weight_shift_in=int(rng.integers(0, 8)), weight_shift_rec=int(rng.integers(0, 8)),
        weight_shift_out=int(rng.integers(0, 8)), dt=DT)


def assert_same(a: dict, b: dict, keys=("spikes_out", *STATES)) -> None:
    for key in keys:
        x = a[key].cpu().numpy() if isinstance(a[key], torch.Tensor) else a[key]
        y = b[key].cpu().numpy() if isinstance(b[key], torch.Tensor) else b[key]
        if not np.array_equal(x, y):
            t, s, n = np.argwhere(x != y)[0]
            raise AssertionError(f"{key} differs first at step {t}, sample {s}, neuron {n}: "
                                 f"{x[t, s, n]} != {y[t, s, n]}")


# ---------------------------------------------------------------------------------------------
# bit-exactness against XyloSim
# ---------------------------------------------------------------------------------------------

ENGINES = ["kernel", "torch"]


def test_kernel_is_the_cpu_default() -> None:
    """With numba installed (the test extras), CPU emulation runs the compiled kernel."""
    rng = np.random.default_rng(0)
    cfg = random_config(rng, 4, 5, 2, saturate=False, two=False)
    assert XyloEmulator(cfg, device="cpu").engine == "kernel"
    with pytest.raises(NIRError, match="engine"):
        XyloEmulator(cfg, device="cpu", engine="fast")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(6))
def test_emulator_equals_xylosim_on_random_configs(seed: int, engine: str) -> None:
    """Random integer configurations, saturating or not, one or two synapses, every dash
    including 0, biases, any shift, inputs above 15 events: all states equal every step,
    with either engine (the compiled kernel and the batched torch operations)."""
    rng = np.random.default_rng(seed)
    cfg = random_config(rng, int(rng.integers(1, 17)), int(rng.integers(1, 40)),
                        int(rng.integers(1, 9)), saturate=seed % 2 == 0, two=seed < 4)
    x = rng.integers(0, 4, (120, 3, cfg.n_in)) * (rng.random((120, 3, cfg.n_in)) < 0.3)
    x[10:14] = 40  # clamped to 15 by both
    emu = XyloEmulator(cfg, device="cpu", engine=engine)
    assert_same(emu.run(torch.from_numpy(x), record=STATES), run_xylosim(cfg, x, record=STATES))


@pytest.mark.parametrize("engine", ENGINES)
def test_emulator_replay_handles_saturation_in_order(engine: str) -> None:
    """A current that saturates and comes back: only an event-by-event order gives XyloSim's
    value (+127<<7 four times, then -128<<7 four times, starting from 0)."""
    nin, nh = 8, 1
    win = np.zeros((nin, nh, 2), np.int8)
    win[:4, 0, 0] = 127
    win[4:, 0, 0] = -128
    cfg = XyloConfig(weights_in=win, weights_rec=np.zeros((nh, nh, 2), np.int8),
                     weights_out=np.ones((nh, 1), np.int8),
                     dash_mem=np.full(nh, 4, np.uint8), dash_syn=np.full(nh, 4, np.uint8),
                     dash_syn2=np.ones(nh, np.uint8), dash_mem_out=np.ones(1, np.uint8),
                     dash_syn_out=np.ones(1, np.uint8), threshold=np.full(nh, 30000, np.int16),
                     threshold_out=np.full(1, 100, np.int16), bias=np.zeros(nh, np.int16),
                     bias_out=np.zeros(1, np.int16), weight_shift_in=7, dt=DT)
    x = np.zeros((3, 1, nin), np.int64)
    x[0] = 1
    emu = XyloEmulator(cfg, device="cpu", engine=engine)
    a = emu.run(torch.from_numpy(x), record=STATES)
    assert engine == "kernel" or emu.stats["replayed"] >= 1
    b = run_xylosim(cfg, x, record=STATES)
    assert_same(a, b)
    sat = 32767 - 4 * 16384  # saturates at 32767, then four negative events
    assert b["i"][0, 0, 0] == sat - (sat >> 4)


def _graph_cases() -> dict[str, nir.NIRGraph]:
    rng = np.random.default_rng(3)
    n_in, nh = 10, 30
    rec = graph({"w_in": nir.Linear(weight=rng.normal(0.3, 1.5, (nh, n_in))),
                 "rnn": cuba(nh, tau_syn=0.003, tau_mem=0.01),
                 "w_rec": nir.Linear(weight=rng.normal(0, 0.4, (nh, nh))),
                 "w_out": nir.Linear(weight=rng.normal(0.1, 0.6, (4, nh))),
                 "o": cuba(4)},
                [("input", "w_in"), ("w_in", "rnn"), ("rnn", "w_rec"), ("w_rec", "rnn"),
                 ("rnn", "w_out"), ("w_out", "o"), ("o", "output")], shape=(n_in,))
    # two synaptic time constants: an LIF fed directly and through an LI filter
    two = graph({"wa": nir.Linear(weight=rng.normal(0.3, 1.5, (nh, n_in))),
                 "wb": nir.Linear(weight=rng.normal(0.3, 1.5, (nh, n_in))),
                 "filt": li(nh, 0.006), "h": lif(nh, 0.016),
                 "w2": nir.Affine(weight=rng.normal(0.2, 0.6, (3, nh)), bias=np.full(3, 0.1)),
                 "o": lif(3, 0.004)},
                [("input", "wa"), ("wa", "h"), ("input", "wb"), ("wb", "filt"),
                 ("filt", "h"), ("h", "w2"), ("w2", "o"), ("o", "output")], shape=(n_in,))
    # two hidden layers and a membrane readout (CubaLI)
    deep = graph({"w1": nir.Linear(weight=rng.normal(0.3, 1.5, (20, n_in))), "h1": cuba(20),
                  "w2": nir.Linear(weight=rng.normal(0.2, 0.8, (16, 20))), "h2": cuba(16),
                  "w3": nir.Linear(weight=rng.normal(0.0, 0.5, (2, 16))),
                  "o": nir.CubaLI(tau_syn=np.full(2, 0.004), tau_mem=np.full(2, 0.016),
                                  r=np.ones(2), v_leak=np.zeros(2))},
                 [("input", "w1"), ("w1", "h1"), ("h1", "w2"), ("w2", "h2"), ("h2", "w3"),
                  ("w3", "o"), ("o", "output")], shape=(n_in,))
    # a 2-D input through a small convolution, flattened to dense weights
    conv = graph({"c": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0.3, 1.0, (2, 1, 3, 3)),
                                  stride=1, padding=1, dilation=1, groups=1,
                                  bias=np.zeros(2)),
                  "h": cuba(32), "f": nir.Flatten(start_dim=0, end_dim=-1,
                                                   input_type={"input": np.array([2, 4, 4])}),
                  "w": nir.Linear(weight=rng.normal(0.1, 0.5, (2, 32))), "o": cuba(2)},
                 [("input", "c"), ("c", "f"), ("f", "h"), ("h", "w"), ("w", "o"),
                  ("o", "output")], shape=(1, 4, 4))
    # two Input nodes (4 + 6 channels) and two Output nodes on one output layer
    multi = nir.NIRGraph(
        nodes={"a": nir.Input(input_type=np.array([4])), "b": nir.Input(input_type=np.array([6])),
               "wa": nir.Linear(weight=rng.normal(0.3, 1.5, (12, 4))),
               "wb": nir.Linear(weight=rng.normal(0.3, 1.5, (12, 6))), "h": cuba(12),
               "w": nir.Linear(weight=rng.normal(0.2, 0.8, (3, 12))), "o": cuba(3),
               "out1": nir.Output(output_type=None), "out2": nir.Output(output_type=None)},
        edges=[("a", "wa"), ("b", "wb"), ("wa", "h"), ("wb", "h"), ("h", "w"), ("w", "o"),
               ("o", "out1"), ("o", "out2")], type_check=False)
    multi.metadata = {"dt": DT}
    return {"feedforward": ff(), "recurrent": rec, "two_synapses": two, "deep_readout": deep,
            "conv": conv, "multi_io": multi}


@pytest.mark.parametrize("case", list(_graph_cases()))
def test_xylo_equals_xylosim_on_lowered_graphs(case: str) -> None:
    g = _graph_cases()[case]
    assert nrf_nir.check(g, "xylo") == []
    rng = np.random.default_rng(1)
    x = {name: (rng.random((150, 3, *shape)) < 0.15).astype(np.float32)
         for name, shape in nrf_nir.validate(g).input_shapes.items()}
    emu = nrf_nir.lower(g, "xylo")
    sim = nrf_nir.lower(g, "xylosim")
    cfg = emu.backend.config
    packed = emu.backend.pack({k: torch.from_numpy(v) for k, v in x.items()})
    assert_same(emu.backend.emulator.run(packed, record=STATES),
                run_xylosim(cfg, packed.numpy(), record=STATES))
    names = [la["name"] for la in cfg.layout["hidden"]]
    record = tuple(f"{n}.{s}" for n in names for s in ("v", "i")) + tuple(names)
    a, b = emu.run(x, record=record), sim.run(x, record=record)
    outputs = set(nrf_nir.validate(g).flat.outputs)
    assert set(a) == set(b) == {*outputs, *record}
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert all(float(a[o].abs().sum()) > 0 for o in outputs)  # something happens


def test_xylosim_import_never_touches_samna() -> None:
    from nrf_nir.targets.xylo.xylosim_engine import xylosim_class

    assert xylosim_class().__name__ == "XyloSim"
    assert not any(name == "samna" or name.startswith("samna.") for name in sys.modules)


# ---------------------------------------------------------------------------------------------
# design rules
# ---------------------------------------------------------------------------------------------

def violations(g: nir.NIRGraph, target: str = "xylo") -> list:
    return nrf_nir.check(g, target)


def expect(g: nir.NIRGraph, node: str | None, *words: str) -> None:
    found = violations(g)
    assert found, "expected a violation"
    hits = [v for v in found if v.node == node and all(w in v.message for w in words)]
    assert hits, f"no violation on {node!r} with {words}: {[str(v) for v in found]}"
    with pytest.raises(NIRError, match="cannot run"):
        nrf_nir.lower(g, "xylo")


def test_rule_input_channels() -> None:
    expect(ff(n_in=17), "input", "17", "16")


def test_rule_hidden_neurons() -> None:
    expect(ff(nh=1001), "h", "1001", "1000")


def test_rule_output_neurons() -> None:
    expect(ff(no=9), "o", "9", "8")


def test_rule_two_synapses_per_hidden_neuron() -> None:
    rng = np.random.default_rng(0)
    nodes = {f"w{k}": nir.Linear(weight=rng.normal(0, 1, (6, 8))) for k in range(3)}
    nodes.update({"f1": li(6, 0.004), "f2": li(6, 0.008), "h": lif(6),
                  "w": nir.Linear(weight=np.ones((2, 6))), "o": cuba(2)})
    g = graph(nodes, [("input", "w0"), ("w0", "h"), ("input", "w1"), ("w1", "f1"),
                      ("f1", "h"), ("input", "w2"), ("w2", "f2"), ("f2", "h"), ("h", "w"),
                      ("w", "o"), ("o", "output")])
    expect(g, "h", "3 synaptic currents", "2")


def test_rule_membrane_tau_too_long() -> None:
    expect(ff(out=cuba(3, tau_mem=2 ** 16 * DT)), "o", "dash", "15")


def test_rule_synaptic_tau_too_short() -> None:
    expect(ff(out=cuba(3, tau_syn=DT)), "o", "dash = 0", "tau >=")


def test_rule_unsupported_node() -> None:
    g = ff()
    g.nodes["d"] = nir.Delay(delay=np.full(3, 2e-3))
    g.edges = [e for e in g.edges if e != ("o", "output")] + [("o", "d"), ("d", "output")]
    expect(g, "d", "Delay", "no Xylo equivalent")


def test_rule_input_cannot_reach_output_neurons() -> None:
    g = graph({"w": nir.Linear(weight=np.ones((3, 8))), "o": cuba(3)},
              [("input", "w"), ("w", "o"), ("o", "output")])
    expect(g, "o", "only from hidden neurons", "input")


def test_rule_output_neurons_drive_nothing_else() -> None:
    g = ff()
    g.nodes["back"] = nir.Linear(weight=np.ones((24, 3)))
    g.edges += [("o", "back"), ("back", "h")]
    expect(g, "o", "drive no other neuron")


def test_rule_outputs_are_neurons() -> None:
    g = ff()
    g.nodes["ro"] = nir.Linear(weight=np.ones((2, 3)))
    g.edges = [e for e in g.edges if e != ("o", "output")] + [("o", "ro"), ("ro", "output")]
    expect(g, "output", "fed directly")


def test_rule_hidden_neurons_spike() -> None:
    rng = np.random.default_rng(0)
    g = graph({"w1": nir.Linear(weight=rng.normal(0, 1, (6, 8))), "h": li(6),
               "w2": nir.Linear(weight=np.ones((2, 6))), "o": cuba(2)},
              [("input", "w1"), ("w1", "h"), ("h", "w2"), ("w2", "o"), ("o", "output")])
    expect(g, "h", "LI", "hidden neurons spike")


def test_rule_threshold_above_leak() -> None:
    expect(ff(out=cuba(3, v_th=-0.5)), "o", "above v_leak")


def test_rule_int_ranges_weights_vs_threshold() -> None:
    expect(ff(out=cuba(3, v_th=1e9)), "o", "int8 weights vanish")


def test_rule_dt_required() -> None:
    g = ff()
    del g.metadata["dt"]
    assert any(v.field == "dt" for v in violations(g))


def test_rule_large_convolution_refused() -> None:
    g = graph({"c": nir.Conv2d(input_shape=(300, 300), weight=np.ones((4, 2, 9, 9)), stride=1,
                               padding=4, dilation=1, groups=1, bias=np.zeros(4)),
               "h": cuba(1), "o": cuba(1)},
              [("input", "c"), ("c", "h"), ("h", "o"), ("o", "output")], shape=(2, 300, 300))
    found = violations(g)
    assert any(v.node == "input" and "16" in v.message for v in found)
    assert any(v.node == "h" and "1000" in v.message for v in found)


def test_check_passes_on_both_targets() -> None:
    assert violations(ff(), "xylo") == violations(ff(), "xylosim") == []


# ---------------------------------------------------------------------------------------------
# quantization report
# ---------------------------------------------------------------------------------------------

def test_quantization_reports_tau_weight_and_threshold_errors() -> None:
    g = ff(out=cuba(3, tau_syn=0.003, tau_mem=0.011))
    report = nrf_nir.lower(g, "xylo").backend.report["quantization"]
    layers = {la["name"]: la for la in report["layers"]}
    h, o = layers["h"], layers["o"]
    # powers of two times dt are exact
    assert h["tau_mem"]["max_abs_relative_error"] == 0.0
    assert h["synapses"][0]["tau"]["max_abs_relative_error"] == 0.0
    # 11 ms -> dash round(log2 11) = 3 -> 8 ms; 3 ms -> dash 2 -> 4 ms
    assert o["tau_mem"]["values"][0]["dash"] == 3
    assert math.isclose(o["tau_mem"]["max_abs_relative_error"], 3 / 11)
    syn = o["synapses"][0]["tau"]["values"][0]
    assert syn["dash"] == 2 and math.isclose(syn["relative_error"], 1 / 3)
    for la in (h, o):
        assert 0 < la["weights"]["relative_rms_error"] < 0.05
        assert la["threshold"]["max_relative_error"] < 1e-3
        assert la["scale"] > 0 and la["scale_limited_by"]
    assert report["resources"]["hidden"] == [24, 1000]
    assert any("subtracts the threshold" in n for n in report["notes"])
    assert any("behind the reference" in n for n in report["notes"])


def test_lif_without_current_maps_to_dash_one_and_charge() -> None:
    g = ff(out=lif(3, 0.004))
    low = nrf_nir.lower(g, "xylo")
    cfg = low.backend.config
    assert list(cfg.dash_syn_out) == [1, 1, 1]
    assert list(cfg.dash_mem_out) == [2, 2, 2]
    assert any("no synaptic current" in n for n in low.backend.report["quantization"]["notes"])


# ---------------------------------------------------------------------------------------------
# artifact
# ---------------------------------------------------------------------------------------------

def test_artifact_round_trip_in_xylosim(tmp_path) -> None:
    g = _graph_cases()["recurrent"]
    low = nrf_nir.lower(g, "xylo")
    paths = nrf_nir.targets.get("xylo").artifact(low.backend, tmp_path / "art")
    names = sorted(p.name for p in paths)
    assert names == ["xylo_config.json", "xylo_config.npz", "xylo_report.json",
                     "xylo_report.md"]
    loaded = XyloConfig.load(tmp_path / "art")
    for field in ("weights_in", "weights_rec", "weights_out", "threshold", "dash_mem",
                  "bias"):
        assert np.array_equal(getattr(loaded, field), getattr(low.backend.config, field))
    x = spikes(120, 2, 10, 0.15, seed=4)
    want = low.run(x)["output"]
    raw = run_xylosim(loaded, x.astype(np.int64))
    assert np.array_equal(raw["spikes_out"], want.numpy().astype(np.int32))
    report = json.loads((tmp_path / "art" / "xylo_report.json").read_text())
    assert report["design_rules"]["violations"] == []
    assert {"tau_mem", "weights", "threshold"} <= set(report["quantization"]["layers"][0])
    assert "Time constants" in (tmp_path / "art" / "xylo_report.md").read_text()


def test_cli_deploy_writes_the_artifact(tmp_path) -> None:
    from nrf_nir.cli import main
    from nrf_nir.io import save

    path = tmp_path / "net.nir"
    save(ff(), path)
    assert main(["deploy", str(path), "--target", "xylo", "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "xylo_config.npz").exists()
    assert XyloConfig.load(tmp_path / "out").n_hidden == 24


# ---------------------------------------------------------------------------------------------
# running: inputs, records, latency, agreement with the reference
# ---------------------------------------------------------------------------------------------

def test_inputs_must_be_event_counts() -> None:
    low = nrf_nir.lower(ff(), "xylo")
    with pytest.raises(NIRError, match="event counts"):
        low.run(np.full((5, 1, 8), 0.5, np.float32))
    with pytest.raises(NIRError, match="negative"):
        low.run(np.full((5, 1, 8), -1.0, np.float32))
    with pytest.raises(NIRError, match="cannot record"):
        low.run(np.zeros((5, 1, 8), np.float32), record=("nope",))
    with pytest.raises(NIRError, match="unknown option"):
        nrf_nir.lower(ff(), "xylo", bogus=1)


def test_agreement_with_reference_is_measured_and_sane() -> None:
    g = ff(seed=2, reset="subtract")
    x = spikes(400, 8, 8, 0.1, seed=5)
    ref = nrf_nir.run(g, x, dtype="float64")["output"]
    raw = nrf_nir.run(g, x, target="xylo")["output"]
    aligned = nrf_nir.run(g, x, target="xylo", align_latency=True)["output"]
    assert torch.equal(aligned[:-1], raw[1:])  # one hop from the hidden layer: one step
    exact = spike_agreement(aligned, ref)
    corr = count_correlation(aligned, ref)
    f1 = windowed_f1(aligned, ref, 2)
    print(f"xylo vs reference: spike agreement {exact:.3f}, count correlation {corr}, F1(+-2) "
          f"{f1:.3f}, raw spike agreement {spike_agreement(raw, ref):.3f}")
    assert float(ref.sum()) > 50
    assert corr is not None and corr > 0.9
    assert f1 > 0.7
    assert exact > 0.7
    assert spike_agreement(aligned, ref) >= spike_agreement(raw, ref)


def test_membrane_readout_decodes_to_reference_units() -> None:
    g = _graph_cases()["deep_readout"]
    x = spikes(300, 4, 10, 0.15, seed=6)
    ref = nrf_nir.run(g, x, dtype="float64")["output"]
    out = nrf_nir.run(g, x, target="xylo", align_latency=True)["output"]
    c = np.corrcoef(out.numpy().ravel(), ref.numpy().ravel())[0, 1]
    assert c > 0.8, c


def test_calibration_picks_the_best_headroom() -> None:
    g = ff(seed=2, reset="subtract")
    x = spikes(200, 4, 8, 0.1, seed=7)
    low = nrf_nir.lower(g, "xylo", calibration=x, calibration_headrooms=(1.0, 2.0, 8.0))
    scores = low.backend.report["calibration"]
    assert [s["headroom"] for s in scores] == [1.0, 2.0, 8.0]
    best = max(scores, key=lambda s: s["score"])
    assert low.backend.report["quantization"]["headroom"] == best["headroom"]


def test_identity_and_flatten_pass_through() -> None:
    g = ff()
    g.nodes["id"] = Identity(input_type={"input": np.array([3])})
    g.edges = [e for e in g.edges if e != ("o", "output")] + [("o", "id"), ("id", "output")]
    assert violations(g) == []


# ---------------------------------------------------------------------------------------------
# other chips: Xylo IMU (syns63300) and Xylo Audio 3 (syns65302)
# ---------------------------------------------------------------------------------------------

def _deep(sizes: list[int], n_in: int = 8, no: int = 3, seed: int = 0) -> nir.NIRGraph:
    """input -> CubaLIF sizes[0] -> ... -> CubaLIF sizes[-1] -> CubaLIF no -> output."""
    rng = np.random.default_rng(seed)
    nodes: dict[str, nir.NIRNode] = {}
    edges, prev, width = [], "input", n_in
    for k, n in enumerate([*sizes, no]):
        nodes[f"w{k}"] = nir.Linear(weight=rng.normal(0.3, 1.0, (n, width)))
        nodes[f"h{k}"] = cuba(n)
        edges += [(prev, f"w{k}"), (f"w{k}", f"h{k}")]
        prev, width = f"h{k}", n
    return graph(nodes, [*edges, (prev, "output")], shape=(n_in,))


def _violations(g: nir.NIRGraph, target: str) -> list[tuple[str | None, str | None, str]]:
    return [(v.node, v.field, v.message) for v in nrf_nir.check(g, target)]


def test_chip_limits_differ() -> None:
    """12 output neurons: too many for Audio 2 (8), fine on IMU (16) and Audio 3 (32); 20: fine
    on Audio 3 only; 700 hidden neurons: too many for IMU (496) only."""
    g = _deep([100], no=12)
    assert any("output neurons" in m and "> 8" in m for *_, m in _violations(g, "xylo"))
    assert _violations(g, "xylo-imu") == _violations(g, "xylo-audio3") == []
    g = _deep([100], no=20)
    assert any("> 16" in m and "Xylo IMU" in m for *_, m in _violations(g, "xylo-imu"))
    assert _violations(g, "xylo-audio3") == []
    big = _deep([100, 500, 100])
    found = _violations(big, "xylo-imu")
    assert any(node == "h1" and "> 496" in m and "Xylo IMU" in m for node, _, m in found)
    assert _violations(big, "xylo-audio3") == []


def test_chip_input_and_readout_expansion_rules() -> None:
    """IMU and Audio 3: input weights reach only the first 128 hidden neurons, the readout
    only the last 128; Audio 2 has neither limit."""
    wide_in = _deep([200, 50])
    for target in ("xylo-imu", "xylo-audio3"):
        found = _violations(wide_in, target)
        assert [(n, f) for n, f, _ in found] == [("h0", "edges")], found
        assert "first 128 hidden neurons" in found[0][2]
    wide_out = _deep([50, 200])
    found = _violations(wide_out, "xylo-imu")
    assert [(n, f) for n, f, _ in found] == [("h1", "edges")], found
    assert "last 128 hidden neurons" in found[0][2]
    assert _violations(wide_in, "xylo") == _violations(wide_out, "xylo") == []


def test_imu_has_one_synapse_per_neuron() -> None:
    """An LIF fed directly and through an LI filter needs two synaptic currents: Audio 2 and
    Audio 3 have them, Xylo IMU does not."""
    g = _graph_cases()["two_synapses"]
    assert _violations(g, "xylo") == _violations(g, "xylo-audio3") == []
    found = _violations(g, "xylo-imu")
    assert [(n, f) for n, f, _ in found] == [("h", "edges")]
    assert "have 1" in found[0][2]


@pytest.mark.parametrize("chip", ["syns63300", "syns65302"])
def test_emulator_equals_the_chips_xylosim(chip: str) -> None:
    """Rockpool simulates Xylo IMU and Audio 3 with ``syns63300.XyloSim`` on the same
    ``xylosim.v2`` layer: our emulator equals it on every recorded state, every step (that
    XyloSim records no ``Isyn2``)."""
    rng = np.random.default_rng(3)
    cfg = random_config(rng, 16, 40, 8, saturate=True, two=chip == "syns65302")
    cfg.chip = chip
    x = rng.integers(0, 4, (100, 3, 16)) * (rng.random((100, 3, 16)) < 0.3)
    a = XyloEmulator(cfg, device="cpu").run(torch.from_numpy(x), record=STATES)
    b = run_xylosim(cfg, x, record=STATES)
    assert float(a["spikes"].sum()) > 0 and float(a["spikes_out"].sum()) > 0
    assert_same(a, b, keys=[k for k in ("spikes_out", *STATES) if k != "i2"])
    assert "samna" not in sys.modules


def test_chip_config_validation() -> None:
    rng = np.random.default_rng(0)
    cfg = random_config(rng, 4, 200, 2, saturate=False, two=True)
    cfg.chip = "syns63300"
    with pytest.raises(NIRError, match="one synapse") as err:
        cfg.validate()
    assert err.value.field == "weights_in"
    cfg = random_config(rng, 4, 200, 2, saturate=False, two=False)
    cfg.chip = "syns65302"
    cfg.weights_in[:, 150, 0] = 3
    with pytest.raises(NIRError, match="first 128") as err:
        cfg.validate()
    cfg.weights_in[:, 128:] = 0
    cfg.weights_out[0, 0] = 5
    with pytest.raises(NIRError, match="last 128") as err:
        cfg.validate()
    assert err.value.field == "weights_out"
    cfg.chip = "pollen"
    with pytest.raises(NIRError, match="unknown Xylo chip") as err:
        cfg.validate()
    assert err.value.field == "chip"


def test_imu_deploy_round_trip(tmp_path) -> None:
    """Lowered for Xylo IMU: the configuration names its chip, validates against the IMU's
    limits when loaded, and reproduces the run in the IMU's XyloSim."""
    g = ff(nh=24, no=12)
    low = nrf_nir.lower(g, "xylo-imu")
    assert low.backend.config.chip == "syns63300"
    assert low.backend.report["chip"] == "Xylo IMU (SYNS63300)"
    assert any("first 128" in r for r in low.backend.report["design_rules"]["rules"])
    x = spikes(80, 2, 8, 0.2)
    out = low.run({"input": x})["output"]
    low.backend.config.save(tmp_path)
    cfg = XyloConfig.load(tmp_path)
    assert cfg.chip == "syns63300"
    packed = low.backend.pack({"input": torch.from_numpy(x)})
    sim = run_xylosim(cfg, packed.numpy())
    assert np.array_equal(sim["spikes_out"], out.numpy().astype(np.int32))
    assert float(out.sum()) > 0
    record = ("h", "h.v", "h.i")
    a = nrf_nir.lower(g, "xylosim-imu").run({"input": x}, record=record)
    b = low.run({"input": x}, record=record)
    for key in ("output", *record):
        assert torch.equal(a[key], b[key]), key


def test_kernel_equals_torch_engine_on_many_random_configs() -> None:
    """The two engines on 20 random configurations (1-16 inputs, up to 200 hidden neurons,
    1-8 outputs, one or two synapses, saturating or not, several spikes per step): every
    state equal at every step."""
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        cfg = random_config(rng, int(rng.integers(1, 17)), int(rng.integers(1, 200)),
                            int(rng.integers(1, 9)), saturate=bool(seed % 3 == 0),
                            two=bool(seed % 2))
        x = rng.integers(0, 6, (60, 5, cfg.n_in)) * (rng.random((60, 5, cfg.n_in)) < 0.3)
        a = XyloEmulator(cfg, device="cpu", engine="kernel").run(torch.from_numpy(x),
                                                                 record=STATES)
        b = XyloEmulator(cfg, device="cpu", engine="torch").run(torch.from_numpy(x),
                                                                record=STATES)
        assert_same(a, b)
