"""The model zoo (nrf_nir.models): committed checkpoints load, export, run in the reference with
the same decisions as the Norse / PyTorch model, and meet their metric targets; the dataset
loaders read files the tests write; unexpressible models fail with one error naming the
modules. No training here beyond a few steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir import models
from nrf_nir.cases import Case
from nrf_nir.errors import NIRError, UnsupportedError
from nrf_nir.models import _common

COMMITTED = [n for n in models.names() if models.has_checkpoint(n)]
#: Unshipped recordings beside the checkout (tests only; the product reads $NRF_NIR_DATA).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def one_thread():
    """Small CPU models run fastest on one thread (and the machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_names_and_info():
    names = models.names()
    assert names[:2] == ["poker-dvs", "first-spike"] and "first-spike-adlif" in names
    assert names.index("time-surface") > names.index("first-spike")
    for name in models.names():
        info = models.info(name)
        assert info["decode"] in ("max", "count", "first", None)
        assert info["input_shape"] == list(models.build(name, pretrained=False).input_shape)
    with pytest.raises(NIRError, match="unknown zoo model"):
        models.spec("no-such-model")


@pytest.mark.parametrize("name", COMMITTED)
def test_checkpoint_is_small_and_loads_weights_only(name):
    path = _common.checkpoint_path(name)
    assert path.stat().st_size <= 2 * 1024 * 1024
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    module = models.build(name)
    own = models.checkpoint_state(name, module)
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k


@pytest.mark.parametrize("name", COMMITTED)
def test_reference_reproduces_the_model(name):
    """Exported graph in the reference: same outputs bit for bit and the same decisions (so
    the same accuracy) as the Norse module on a small held-out batch."""
    s = models.spec(name)
    module = models.build(name)
    graph = models.export(name)
    assert graph.metadata["dt"] == pytest.approx(module.dt)
    x, y = s.generate(16, getattr(s, "T_TEST", s.T_EVAL), seed=777)
    with torch.no_grad():
        want = module(x)
    got = nrf_nir.run(graph, x, device="cpu")["output"]
    assert got.shape == want.shape
    assert torch.equal(got, want)
    if s.DECODE is not None:
        d_want, d_got = _common.decisions(want, s.DECODE), _common.decisions(got, s.DECODE)
        assert torch.equal(d_want, d_got)


@pytest.mark.parametrize("name", COMMITTED)
def test_metric_target_met(name):
    result = models.evaluate(name, **models.spec(name).QUICK_EVAL)
    assert result["passed"], result


def test_conformance_cases():
    cases = models.conformance_cases(T=20, B=2)
    assert [c.name for c in cases] == [f"model/{n}" for n in COMMITTED]
    for case in cases:
        x = case.inputs["input"]
        assert x.dtype == np.float32 and x.shape[:2] == (20, 2)
        assert case.decode in ("max", "count", "first", None)
        assert isinstance(case, Case)
        nrf_nir.validate(case.graph)


def test_the_suite_finds_the_zoo_cases_through_the_case_registry():
    from nrf_nir.cases import providers
    from nrf_nir.conformance.cases import model_cases

    assert "zoo" in providers()
    assert [c.name for c in model_cases(T=5, B=1)] == [f"model/{n}" for n in COMMITTED]


def test_the_exporters_build_a_zoo_model_by_name(monkeypatch):
    from nrf_nir import plugins
    from nrf_nir.exporters.checkpoint import build_module

    name = COMMITTED[0]
    built, want = build_module(name).state_dict(), models.build(name).state_dict()
    assert list(built) == list(want) and all(torch.equal(built[k], want[k]) for k in want)
    with pytest.raises(NIRError, match="unknown zoo model 'no-such-model'"):
        build_module("no-such-model")
    monkeypatch.setattr(plugins, "ZOO_BUILDER", "nrf_nir.no_such_zoo:build")
    with pytest.raises(NIRError, match="the model zoo is not available; pass a factory"):
        build_module(name)


def test_train_runs_a_few_steps(tmp_path):
    for name in COMMITTED[:1]:
        result = models.train(name, steps=2, show_progress=False, path=str(tmp_path / "m.pt"),
                              eval_n=8)
        assert (tmp_path / "m.pt").exists()
        assert result["evaluation"]["metric"] in result["evaluation"]


# --------------------------------------------------------------------------------------------
# POKER-DVS


def test_poker_dvs_generator_is_seeded_and_balanced():
    from nrf_nir.models import poker_dvs

    x1, y1 = poker_dvs.generate(8, 10, seed=3)
    x2, y2 = poker_dvs.generate(8, 10, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (10, 8, 2, 35, 35) and x1.dtype == torch.float32
    assert 0.002 < float(x1.mean()) < 0.05  # sparse events
    assert not torch.equal(x1, poker_dvs.generate(8, 10, seed=4)[0])
    _, y = poker_dvs.generate(400, 1, seed=0)
    assert np.bincount(y.numpy(), minlength=4).min() > 60


def test_poker_dvs_tonic_loader(tmp_path):
    from nrf_nir.models import poker_dvs

    rng = np.random.default_rng(0)
    written = {}
    for split in ("pips_train", "pips_test"):
        for label in ("cl", "di", "he", "sp"):
            folder = tmp_path / "POKERDVS" / split / label
            folder.mkdir(parents=True)
            for k in range(2):
                n = 50
                ev = np.stack([np.sort(rng.integers(0, 5000, n)), rng.integers(0, 35, n),
                               rng.integers(0, 35, n), rng.integers(0, 2, n)], 1)
                np.save(folder / f"{label}{k}.npy", ev)
                written[(split, label, k)] = ev
    train = poker_dvs.load_tonic(tmp_path, train=True)
    test = poker_dvs.load_tonic(tmp_path / "POKERDVS", train=False)
    assert len(train) == len(test) == 8
    # class folders in name order (cl, di, he, sp), labels in tonic's order (cl, he, di, sp)
    assert [lbl for _, lbl in train] == [0, 0, 2, 2, 1, 1, 3, 3]
    events, label = train[4]  # he0
    ev = written[("pips_train", "he", 0)]
    assert label == 1 and events.dtype.names == ("t", "x", "y", "p")
    assert np.array_equal(events["t"], ev[:, 0]) and np.array_equal(events["p"], ev[:, 3])

    frames = poker_dvs.to_frames(events, time_window=1000)
    t = ev[:, 0]
    n = int(np.floor((t[-1] - t[0] - 1000) / 1000) + 1)
    assert frames.shape == (n, 2, 35, 35)
    k = (t - t[0]) // 1000
    keep = k < n
    assert frames.sum() == keep.sum()
    first = ev[k == 0]
    f0 = np.zeros((2, 35, 35))
    np.add.at(f0, (first[:, 3], first[:, 2], first[:, 1]), 1)
    assert np.array_equal(frames[0], f0)
    # frames feed the model directly
    module = models.build("poker-dvs", pretrained=False)
    assert module(torch.from_numpy(frames[:, None])).shape == (n, 1, 4)

    with pytest.raises(NIRError, match="POKER-DVS"):
        poker_dvs.load_tonic(tmp_path / "nothing")
    bad = tmp_path / "bad" / "pips_train" / "xx"
    bad.mkdir(parents=True)
    np.save(bad / "a.npy", np.zeros((3, 4), np.int64))
    with pytest.raises(NIRError, match="unknown class"):
        poker_dvs.load_tonic(tmp_path / "bad")


# --------------------------------------------------------------------------------------------
# First-spike coding


def test_first_spike_generator_and_time_decoding():
    from nrf_nir.models import first_spike

    x, y = first_spike.generate(16, 100, seed=1)
    assert x.shape == (100, 16, 70) and set(np.unique(x.numpy())) <= {0.0, 1.0}
    assert torch.equal(x, first_spike.generate(16, 100, seed=1)[0])
    z = torch.zeros(5, 1, 3)
    z[2, 0, 0] = z[4, 0, 0] = z[1, 0, 2] = 1
    assert first_spike.first_spike_times(z).tolist() == [[2.0, 5.0, 1.0]]
    assert _common.decisions(z, "first").tolist() == [2]


def test_shd_loader(tmp_path):
    import h5py

    from nrf_nir.models import first_spike

    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0, 1.2, n)) for n in (30, 0, 55)]
    units = [rng.integers(0, 700, t.size) for t in times]
    path = tmp_path / "shd_test.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("spikes")
        g.create_dataset("times", data=np.array(times, dtype=object),
                         dtype=h5py.vlen_dtype(np.float32))
        g.create_dataset("units", data=np.array(units, dtype=object),
                         dtype=h5py.vlen_dtype(np.uint16))
        f.create_dataset("labels", data=np.array([3, 0, 19], dtype=np.uint16))
        f.create_group("extra").create_dataset("speaker", data=np.array([1, 2, 3]))
    t, u, labels = first_spike.load_shd(path)
    assert labels.tolist() == [3, 0, 19]
    assert [a.size for a in t] == [30, 0, 55]
    assert np.allclose(t[2], times[2].astype(np.float32)) and np.array_equal(u[0], units[0])
    frames = first_spike.to_frames(t, u, T=100, dt=0.01)
    assert frames.shape == (100, 3, 70)
    k = 2
    step = np.floor(t[k] / 0.01).astype(int)
    keep = step < 100
    want = np.zeros((100, 70), np.float32)
    want[step[keep], u[k][keep] // 10] = 1
    assert np.array_equal(frames[:, k].numpy(), want)
    assert frames[:, 1].sum() == 0
    module = models.build("first-spike", pretrained=False)
    assert module(frames).shape == (100, 3, 10)

    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("labels", data=np.zeros(2))
    with pytest.raises(NIRError, match="not an SHD file"):
        first_spike.load_shd(bad)
    (tmp_path / "junk.h5").write_text("junk")
    with pytest.raises(NIRError, match="HDF5"):
        first_spike.load_shd(tmp_path / "junk.h5")


def test_adlif_exports_the_recurrent_li_adaptation_path():
    """The committed AdLIF classifier: each AdLIF layer is a nested graph whose adaptation is a
    recurrent LI path (LIF -> Scale(b / c_w) -> LI(tau_w) -> Scale(-1) -> LIF, a back edge),
    and the adaptation is active on held-out data, so the bit-exact reproduction covers it."""
    from nrf_nir.models import first_spike_adlif as adlif

    module = models.build("first-spike-adlif")
    cell = module.layers.lif1
    graph = models.export("first-spike-adlif")
    assert [type(n).__name__ for n in graph.nodes.values()] == [
        "Input", "Affine", "NIRGraph", "Affine", "CubaLIF", "Output"]
    sub = graph.nodes["lif1"]
    assert {k: type(n).__name__ for k, n in sub.nodes.items()} == {
        "input": "Input", "lif": "LIF", "b": "Scale", "adapt": "LI", "negate": "Scale",
        "output": "Output"}
    assert sub.edges[:2] == [("input", "lif"), ("negate", "lif")]  # LIF input: x + (-w)
    assert {("lif", "b"), ("b", "adapt"), ("adapt", "negate"), ("lif", "output")} <= set(
        sub.edges)
    c_w = adlif.DT / adlif.TAU_W
    assert np.allclose(sub.nodes["adapt"].tau, adlif.TAU_W)
    assert np.allclose(sub.nodes["lif"].tau, adlif.TAU_MEM)
    assert np.array_equal(sub.nodes["negate"].scale, -np.ones(adlif.HIDDEN))
    b = cell.b.detach().clamp(0, 2).numpy()
    assert np.allclose(sub.nodes["b"].scale, b / c_w, rtol=1e-6)
    assert (b > 0).sum() >= 8  # training kept adaptation in part of the layer
    checked = nrf_nir.validate(graph)
    assert ("lif1.negate", "lif1.lif") in checked.back  # w of the previous step

    x, _ = adlif.generate(16, 100, seed=777)
    with torch.no_grad():
        want, hidden = module(x, record=True)
    out = nrf_nir.run(graph, x, device="cpu", record=["lif1.lif", "lif1.adapt"])
    assert torch.equal(out["output"], want) and torch.equal(out["lif1.lif"], hidden["lif1"])
    assert float(out["lif1.adapt"].abs().max()) > 0.1  # the adaptation current is used
    with torch.no_grad():
        cell.b.zero_()
        _, no_adapt = module(x, record=True)
    assert not torch.equal(no_adapt["lif1"], hidden["lif1"])  # ... and changes spikes


def test_adlif_subthreshold_coupling_is_refused_by_name():
    from nrf_nir.models import first_spike_adlif as adlif

    module = adlif.build(a=0.2)
    x, _ = adlif.generate(2, 5, seed=0)
    assert module(x).shape == (5, 2, 10)  # it runs in PyTorch ...
    with pytest.raises(UnsupportedError, match="a\\*v") as info:  # ... but has no NIR form
        models.export("first-spike-adlif", module)
    assert info.value.node == "lif1" and info.value.field == "a"
    assert "node 'lif1', field 'a'" in str(info.value)


def test_adlif_cell_hand_checked_trace():
    """Five steps of one AdLIF neuron, computed by hand: dt = 1, c_m = 1/2, c_w = 1/4, b = 1/2
    (the NIR Scale is b / c_w = 2), v_th = 1, constant input 1.6. The paper's form holds:
    w = (1 - c_w) w + b z. Adaptation delays the second spike from step 4 to step 5."""
    from nrf_nir.models import first_spike_adlif as adlif

    cell = adlif.AdLIFCell(1, tau_mem=2.0, tau_w=4.0, v_th=1.0, b=0.5, dt=1.0)
    x = torch.full((1, 1), 1.6)
    state, zs, vs, ws = None, [], [], []
    with torch.no_grad():
        for _ in range(5):
            z, state = cell(x, state)
            zs.append(float(z))
            vs.append(float(state[0]))
            ws.append(float(state[1]))
    # v before reset: 0.8, 1.2 (spike), 0.55, 0.8875, 1.103125 (spike)
    assert zs == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert vs == pytest.approx([0.8, 0.0, 0.55, 0.8875, 0.0])
    assert ws == pytest.approx([0.0, 0.5, 0.375, 0.28125, 0.7109375])
    assert ws[2] == pytest.approx(0.75 * ws[1]) and ws[4] == pytest.approx(0.75 * ws[3] + 0.5)
    # without adaptation it spikes at steps 2 and 4
    free = adlif.AdLIFCell(1, tau_mem=2.0, tau_w=4.0, b=0.0, dt=1.0)
    state, zs_free = None, []
    with torch.no_grad():
        for _ in range(5):
            z, state = free(x, state)
            zs_free.append(float(z))
    assert zs_free == [0.0, 1.0, 0.0, 1.0, 0.0]
    # the same cell exported alone: the reference reproduces the trace bit for bit
    net = _common.Stepper([("adlif", cell)], (1,), dt=1.0)
    graph = nrf_nir.export(net, torch.zeros(1, 1))
    assert graph.metadata["dt"] == 1.0
    xs = torch.full((5, 1, 1), 1.6)
    out = nrf_nir.run(graph, xs, device="cpu", record=["adlif.lif.v", "adlif.adapt.v"])
    assert out["output"].flatten().tolist() == zs
    assert out["adlif.lif.v"].flatten().tolist() == vs
    assert out["adlif.adapt.v"].flatten().tolist() == ws


# --------------------------------------------------------------------------------------------
# First-spike coding on Xylo (first-spike-xylo)


def test_first_spike_xylo_generator_gives_integer_counts_on_16_channels():
    from nrf_nir.models import first_spike
    from nrf_nir.models import first_spike_xylo as fsx

    x, y = fsx.generate(32, 100, seed=3)
    assert x.shape == (100, 32, 16) and x.dtype == torch.float32
    assert torch.equal(x, torch.round(x)) and 0 <= float(x.min()) and float(x.max()) <= 15
    assert set(y.tolist()) <= set(range(8))
    assert torch.equal(x, fsx.generate(32, 100, seed=3)[0])
    # the 70 source channels summed in groups of 4-5 neighbours, every event kept
    raw, labels = first_spike.generate(32, 100, seed=3, labels=y.numpy())
    assert torch.equal(labels, y) and torch.equal(x, fsx.to_channels(raw))
    assert float(x.sum()) == float(raw.sum())
    assert set(np.bincount(fsx.GROUP).tolist()) == {4, 5} and np.all(np.diff(fsx.GROUP) >= 0)


def test_first_spike_xylo_passes_xylos_design_rules_and_quantizes_losslessly():
    graph = models.export("first-spike-xylo")
    assert [type(n).__name__ for n in graph.nodes.values()] == [
        "Input", "Linear", "LI", "LIF", "Linear", "LI", "LIF", "Output"]
    assert graph.metadata["reset"] == "subtract"
    assert nrf_nir.check(graph, "xylo") == []
    low = nrf_nir.lower(graph, "xylo")
    report = low.backend.report["quantization"]
    assert report["resources"]["inputs"] == [16, 16] and report["resources"]["outputs"] == [8, 8]
    for layer in report["layers"]:
        # time constants dt * 2**k: Xylo's bit-shift decays are exact; weights on the int8 grid
        assert layer["tau_mem"]["max_abs_relative_error"] == 0.0
        assert [s["tau"]["max_abs_relative_error"] for s in layer["synapses"]] == [0.0]
        assert layer["weights"]["relative_rms_error"] < 1e-6
        assert layer["weights"]["zeroed"] == layer["weights"]["clipped"] == 0


def test_first_spike_xylo_accuracy_on_xylo_within_one_point_of_the_reference():
    """Issue 6: decisions of the Xylo emulator (default quantization, latency aligned) on 512
    held-out samples; measured: accuracy 0.877 on both, agreement 1.0."""
    from nrf_nir.metrics import decisions
    from nrf_nir.models import first_spike_xylo as fsx

    graph = models.export("first-spike-xylo")
    x, y = fsx.generate(512, fsx.T_EVAL, seed=fsx.EVAL_SEED)
    ref = nrf_nir.run(graph, x, device="cpu")["output"]
    got = nrf_nir.run(graph, x, target="xylo", align_latency=True)["output"]
    d_ref, d_xylo = decisions(ref, "first"), decisions(got, "first")
    acc_ref = float((d_ref == y).float().mean())
    acc_xylo = float((d_xylo == y).float().mean())
    assert acc_ref >= fsx.TARGET
    assert abs(acc_xylo - acc_ref) <= 0.01, (acc_ref, acc_xylo)
    assert float((d_ref == d_xylo).float().mean()) >= 0.99


def test_first_spike_xylo_xylosim_equals_the_emulator():
    """The trained zoo model on Xylo: XyloSim and our emulator agree on every integer state
    (hidden and output spikes, membranes, both currents) at every step, and the targets'
    decoded outputs are equal."""
    from nrf_nir.models import first_spike_xylo as fsx
    from nrf_nir.targets.xylo.emulator import RECORDABLE

    graph = models.export("first-spike-xylo")
    try:
        sim = nrf_nir.lower(graph, "xylosim")
        from nrf_nir.targets.xylo.xylosim_engine import run_xylosim
    except (NIRError, ImportError) as exc:
        pytest.skip(f"xylosim unavailable: {exc}")
    x, _ = fsx.generate(4, fsx.T_EVAL, seed=5)
    emu = nrf_nir.lower(graph, "xylo")
    packed = emu.backend.pack({"input": x})
    want = emu.backend.emulator.run(packed, record=RECORDABLE)
    got = run_xylosim(emu.backend.config, packed.numpy(), record=RECORDABLE)
    assert float(want["spikes"].sum()) > 0 and float(want["spikes_out"].sum()) > 0
    for key in ("spikes_out", *RECORDABLE):
        assert np.array_equal(want[key].numpy(), got[key]), key
    a = emu.run({"input": x}, record=("lif1", "lif1.v"))
    b = sim.run({"input": x}, record=("lif1", "lif1.v"))
    for key in ("output", "lif1", "lif1.v"):
        assert torch.equal(a[key].float(), b[key].float()), key


# --------------------------------------------------------------------------------------------
# Time surfaces


def test_time_surface_generator_has_the_file_statistics():
    from nrf_nir.models import time_surface

    x, bands = time_surface.generate(2, 500, seed=0, shuffle_bands=False)
    assert x.shape == (500, 2, 1, 50, 50) and bands.tolist() == [[0, 1, 2], [0, 1, 2]]
    assert torch.equal(x, time_surface.generate(2, 500, seed=0, shuffle_bands=False)[0])
    per_frame = [float(x[:, :, 0, lo:hi].sum(dim=(2, 3)).mean()) for lo, hi in
                 time_surface.BANDS]
    # 2404_circle.dat: 5.0, 15.9 and 30.9 events per frame; 2.08% of the pixels
    assert per_frame == pytest.approx([5.0, 15.9, 30.9], rel=0.15)
    assert float(x.mean()) == pytest.approx(0.0208, rel=0.1)
    _, shuffled = time_surface.generate(6, 5, seed=1)
    assert all(sorted(b) == [0, 1, 2] for b in shuffled.tolist())


def test_time_surface_on_the_real_file():
    from nrf_nir.models import time_surface

    # the recording is not shipped: read it from $NRF_NIR_DATA, else from the data folder beside
    # the checkout when it is there
    path = time_surface.circle_path() or SHARED_DATA / "2404_circle.dat"
    if not path.exists():
        pytest.skip(f"{path} is not there (the time-surface data is not shipped)")
    frames = time_surface.load_circle(path)
    assert frames.shape == (500, 1, 1, 50, 50) and float(frames.sum()) == 25948
    module = models.build("time-surface")
    with torch.no_grad():
        z = module(frames)
    counts = time_surface.band_counts(z)[0]  # [channel, band]; slow disk on top
    for channel in range(3):
        own = counts[channel, channel]
        assert own > 0 and all(own > counts[channel, b] for b in range(3) if b != channel), counts
    graph = models.export("time-surface")
    got = nrf_nir.run(graph, frames[:200], device="cpu")["output"]
    assert torch.equal(got, z[:200])


def test_time_surface_missing_file_is_a_clear_error(tmp_path):
    from nrf_nir.models import time_surface

    with pytest.raises(NIRError, match="not shipped"):
        time_surface.load_circle(tmp_path / "2404_circle.dat")


def test_time_surface_data_comes_only_from_nrf_nir_data(tmp_path, monkeypatch):
    """The product never looks outside its checkout: the folder is $NRF_NIR_DATA or nothing."""
    from nrf_nir.models import time_surface

    monkeypatch.delenv("NRF_NIR_DATA", raising=False)
    assert time_surface.circle_path() is None
    with pytest.raises(NIRError, match="NRF_NIR_DATA"):
        time_surface.load_circle()
    monkeypatch.setenv("NRF_NIR_DATA", str(tmp_path))
    assert time_surface.circle_path() == tmp_path / "2404_circle.dat"
    frames = torch.zeros(500, 50, 50)
    frames[0, 1, 2] = 1.0
    torch.save(frames, tmp_path / "2404_circle.dat")
    assert time_surface.load_circle().shape == (500, 1, 1, 50, 50)


# --------------------------------------------------------------------------------------------
# TTS-VQVAE encoder


def test_tts_full_model_export_names_every_unsupported_module():
    from nrf_nir.models import tts_encoder

    full = tts_encoder.build_full()
    with pytest.raises(UnsupportedError) as info:
        nrf_nir.export(full, torch.zeros(1, 1, 16, 16))
    message = str(info.value)
    for path, kind in [("encoder.attn", "AttnBlockSnn"), ("encoder.attn.norm", "GroupNorm"),
                       ("encoder.norm_out", "GroupNorm"), ("encoder.gate", "LIFGate"),
                       ("quantize", "VectorQuantizerSnn"), ("quantize.embedding", "Embedding"),
                       ("decoder.up1", "ConvTranspose2d"), ("decoder.norm_out", "GroupNorm")]:
        assert f"{path} ({kind}" in message, (path, message)
    # the expressible encoder blocks are not listed, and they export
    assert "encoder.blocks" not in message
    graph = models.export("tts-encoder")
    assert [type(n).__name__ for n in graph.nodes.values()] == [
        "Input", "Conv2d", "LIF", "Conv2d", "LIF", "Conv2d", "LIF", "Output"]
    lif = graph.nodes["lif_in"]
    assert np.allclose(lif.tau, 2e-3) and np.allclose(lif.v_threshold, 0.5)
    assert np.allclose(lif.v_reset, 0.0) and graph.metadata["reset"] == "value"


def test_tts_encoder_shares_the_full_models_weights():
    from nrf_nir.models import tts_encoder

    enc = models.build("tts-encoder")
    assert enc is enc.full.encoder.blocks
    x, img = tts_encoder.generate(3, 4, seed=5)
    assert x.shape == (4, 3, 1, 16, 16) and torch.equal(x[0], img) and torch.equal(x[3], img)
    with torch.no_grad():
        rec, _ = enc.full(x)
        spikes = enc(x)
    assert rec.shape == img.shape and spikes.shape == (4, 3, 32, 4, 4)
    assert 0 < float(spikes.mean()) < 1


# --------------------------------------------------------------------------------------------
# NRF


def test_nrf_generator():
    from nrf_nir.models import nrf

    x, centres = nrf.generate(4, 12, seed=2)
    assert x.shape == (12, 4, 2, 64, 64) and centres.shape == (12, 4, 1, 2)
    assert torch.equal(x, nrf.generate(4, 12, seed=2)[0])
    assert float(centres.abs().max()) < 1
    # events lie around the shape: the event centroid is near the shape centre
    x, centres = nrf.generate(4, 12, seed=2, noise=0.0)
    ev = x[-8:].sum(dim=(0, 2))  # [B, 64, 64]
    yy, xx = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="ij")
    cx = (ev * xx).sum(dim=(1, 2)) / ev.sum(dim=(1, 2))
    cy = (ev * yy).sum(dim=(1, 2)) / ev.sum(dim=(1, 2))
    want = (centres[-1, :, 0] + 1) / 2 * 64
    assert torch.allclose(cx, want[:, 0], atol=6) and torch.allclose(cy, want[:, 1], atol=6)
    x3, c3 = nrf.generate(2, 3, seed=0, shapes=3)
    assert c3.shape == (3, 2, 3, 2)


def test_nrf_full_size_backbone_exports_and_runs_the_head_does_not():
    """The paper's full-size architecture (2 x 300 x 300, 4 x 192 receptive fields): the
    backbone exports and the reference reproduces it (T = 2); the head is refused by name."""
    from nrf_nir.models import nrf

    full = nrf.build_full()
    with pytest.raises(UnsupportedError) as info:
        nrf_nir.export(full, torch.zeros(1, 2, 300, 300))
    message = str(info.value)
    for part in ("head (NRFHead", "head.deconv (ConvTranspose2d)", "head.relu (ReLU)",
                 "head.dsnt (DSNT)"):
        assert part in message, message
    assert "backbone" not in message
    graph = nrf_nir.export(full.backbone, torch.zeros(1, 2, 300, 300))
    convs = [n for n in graph.nodes.values() if type(n).__name__ == "Conv2d"]
    assert [tuple(c.weight.shape) for c in convs] == [
        (768, 2, 9, 9), (768, 192, 7, 7), (12, 192, 5, 5), (3, 12, 1, 1)]
    lif1 = graph.nodes["lif1"]
    assert np.allclose(1 / lif1.tau[:, 0, 0][::192], nrf.TAU_INV)
    assert np.allclose(lif1.v_threshold, 0.1)
    x = (torch.rand(2, 1, 2, 300, 300, generator=torch.Generator().manual_seed(0)) < 0.05)
    x = x.float()
    with torch.no_grad():
        want = full.backbone(x)
    got = nrf_nir.run(graph, x, device="cpu")["output"]
    assert torch.equal(got, want) and want.shape == (2, 1, 3, 37, 37)


# --------------------------------------------------------------------------------------------
# The `zoo` subcommand (models.cli.add_parser, wired into nrf-nir's CLI)


def _zoo_cli(argv):
    import argparse

    from nrf_nir.models import cli

    parser = argparse.ArgumentParser(prog="nrf-nir")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_zoo_cli(tmp_path, capsys):
    assert _zoo_cli(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in models.names():
        assert name in out
    out_file = tmp_path / "poker.nir"
    assert _zoo_cli(["zoo", "export", "first-spike", "-o", str(out_file)]) == 0
    graph = nrf_nir.load(out_file)
    assert graph.metadata["dt"] == pytest.approx(0.01)
    assert _zoo_cli(["zoo", "eval", "first-spike", "--n", "64", "--json"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
    with pytest.raises(NIRError, match="unknown zoo model"):
        _zoo_cli(["zoo", "eval", "nope"])
    with pytest.raises(NIRError, match="--n"):
        _zoo_cli(["zoo", "eval", "first-spike", "--n", "0"])
    assert _zoo_cli(["zoo", "train", "first-spike", "--steps", "2", "--no-progress",
                     "-o", str(tmp_path / "fs.pt")]) in (0, 1)
    assert (tmp_path / "fs.pt").exists()
    with pytest.raises(NIRError, match="no --steps"):
        _zoo_cli(["zoo", "train", "time-surface", "--steps", "3"])
