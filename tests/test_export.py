"""Norse / PyTorch export: every supported module, random compositions, round trips, CLI.

Spike-exactness: the original Norse module stepped over time and the reference on the exported
graph give the same outputs, bit for bit, in float32 on CPU (T = 200, B = 8).
"""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import nir
import norse.torch as snn
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import nrf_nir
from nrf_nir.cli import main
from nrf_nir.errors import NIRError, UnsupportedError
from nrf_nir.functional import Firing  # noqa: F401  (import check: core stays importable)

T, B = 200, 8


def run_norse(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Step the original module over time, as a Norse user does."""
    state = None
    outs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y = module(x[t], state) if isinstance(module, snn.SequentialState) else module(x[t])
            if isinstance(y, tuple):
                y, state = y
            outs.append(y)
    return torch.stack(outs)


def assert_exact(module: nn.Module, x: torch.Tensor, tmp_path=None) -> nir.NIRGraph:
    """Original Norse module == reference on the exported graph == Norse target on the
    re-loaded file, every value of every step."""
    graph = nrf_nir.export(module, x[0])
    want = run_norse(module, x)
    got = nrf_nir.run(graph, x, device="cpu")["output"]
    assert got.shape == want.shape
    mismatch = (got != want).sum().item()
    assert mismatch == 0, f"reference: {mismatch} of {want.numel()} values differ"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp_path or tmp) / "m.nir"
        nrf_nir.save(graph, path)
        loaded = nrf_nir.load(path)
    target = nrf_nir.run(loaded, x, target="norse", device="cpu")["output"]
    mismatch = (target != want).sum().item()
    assert mismatch == 0, f"norse target: {mismatch} of {want.numel()} values differ"
    return graph


def spikes(*shape: int, rate: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < rate).float()


def scaled_linear(n_in: int, n_out: int, bias: bool = True, gain: float = 4.0) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        layer.weight.mul_(gain)
    return layer


def per_neuron(n: int, low: float, high: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, generator=g)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


CELLS = {
    "LIFBoxCell": lambda n: snn.LIFBoxCell(),
    "LIFBoxCell-per-neuron": lambda n: snn.LIFBoxCell(snn.LIFBoxParameters(
        tau_mem_inv=per_neuron(n, 50, 300, 1), v_th=per_neuron(n, 0.3, 1.0, 2),
        v_leak=per_neuron(n, -0.2, 0.2, 3), v_reset=per_neuron(n, -0.3, 0.1, 4))),
    "LIFBoxCell-subtract": lambda n: snn.LIFBoxCell(snn.LIFBoxParameters(
        reset_method=snn.functional.reset.reset_subtract, v_th=torch.as_tensor(0.5))),
    "LIFCell": lambda n: snn.LIFCell(),
    "LIFCell-per-neuron": lambda n: snn.LIFCell(snn.LIFParameters(
        tau_syn_inv=per_neuron(n, 100, 400, 5), tau_mem_inv=per_neuron(n, 50, 200, 6),
        v_th=per_neuron(n, 0.2, 0.8, 7), v_leak=per_neuron(n, -0.1, 0.1, 8))),
    "LIBoxCell": lambda n: snn.LIBoxCell(),
    "LICell": lambda n: snn.LICell(),
    "IAFCell": lambda n: snn.IAFCell(snn.IAFParameters(v_th=torch.as_tensor(2.0))),
    "LIF": lambda n: snn.LIF(),
    "LI": lambda n: snn.LI(),
}


@pytest.mark.parametrize("name", list(CELLS))
def test_each_neuron_module_is_spike_exact(name, tmp_path):
    n = 16
    cell = CELLS[name](n)
    time_module = name in ("LIF", "LI")
    layer = snn.Lift(scaled_linear(10, n)) if time_module else scaled_linear(10, n)
    model = snn.SequentialState(layer, cell)
    x = spikes(T, B, 10)
    if time_module:
        graph = nrf_nir.export(model, x[0])
        with torch.no_grad():
            want, _ = model(x)
        got = nrf_nir.run(graph, x, device="cpu")["output"]
        assert torch.equal(got, want)
        assert torch.equal(nrf_nir.run(graph, x, target="norse", device="cpu")["output"], want)
    else:
        graph = assert_exact(model, x, tmp_path)
    if name.endswith("subtract"):
        assert graph.metadata["reset"] == "subtract"
    if name in ("LIFBoxCell", "LIFCell", "LIF"):
        assert nrf_nir.run(graph, x)["output"].sum() > 0  # the case is not trivially silent


def test_per_neuron_parameters_stay_arrays():
    n = 8
    model = snn.SequentialState(nn.Linear(3, n), CELLS["LIFCell-per-neuron"](n))
    graph = nrf_nir.export(model, torch.zeros(1, 3))
    node = graph.nodes["1"]
    assert isinstance(node, nir.CubaLIF)
    assert node.tau_mem.shape == (n,) and len(np.unique(node.tau_mem)) == n
    np.testing.assert_allclose(node.tau_mem, 1.0 / model[1].p.tau_mem_inv.numpy(), rtol=1e-7)
    assert graph.metadata["dt"] == 1e-3


@pytest.mark.parametrize("cell", ["LIFRecurrentCell", "LIFRecurrent"])
def test_recurrent_cells_are_spike_exact(cell):
    rec = getattr(snn, cell)(12, 20, autapses=cell == "LIFRecurrent")
    with torch.no_grad():
        rec.input_weights.mul_(3.0)
        rec.recurrent_weights.mul_(2.0)
    x = spikes(T, B, 12)
    readout = snn.LI() if cell == "LIFRecurrent" else snn.LICell()
    model = snn.SequentialState(rec, nn.Linear(20, 4), readout)
    if cell == "LIFRecurrent":
        graph = nrf_nir.export(model, x[0])
        with torch.no_grad():
            want, _ = model(x)
        assert torch.equal(nrf_nir.run(graph, x, device="cpu")["output"], want)
        assert torch.equal(nrf_nir.run(graph, x, target="norse", device="cpu")["output"], want)
    else:
        graph = assert_exact(model, x)
    sub = graph.nodes["0"]
    assert isinstance(sub, nir.NIRGraph)
    assert ("w_rec", "lif") in [tuple(e) for e in sub.edges]
    spikes_out = nrf_nir.run(graph, x, record=("0.lif",))["0.lif"]
    assert spikes_out.sum() > 0


def test_conv_pool_flatten_network_is_spike_exact(tmp_path):
    model = snn.SequentialState(
        nn.Conv2d(2, 4, 3, padding=1, bias=False), snn.LIFBoxCell(),
        nn.AvgPool2d(2), nn.Conv2d(4, 8, 3, stride=2), snn.LIFCell(),
        nn.Flatten(), nn.Linear(8 * 3 * 3, 5), snn.LICell())
    with torch.no_grad():
        for m in model:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(4.0)
    x = spikes(60, 4, 2, 16, 16)
    assert_exact(model, x, tmp_path)


def test_conv1d_nested_sequential_identity_and_lift():
    inner = nn.Sequential(nn.Conv1d(3, 5, 3, padding=1), nn.Identity())
    model = snn.SequentialState(snn.Lift(inner), snn.LIF(), snn.Lift(nn.Flatten()),
                                snn.Lift(nn.Linear(5 * 11, 3)), snn.LI())
    with torch.no_grad():
        inner[0].weight.mul_(5.0)
    x = spikes(80, 4, 3, 11)
    graph = nrf_nir.export(model, x[0])
    with torch.no_grad():
        want, _ = model(x)
    assert torch.equal(nrf_nir.run(graph, x, device="cpu")["output"], want)
    assert torch.equal(nrf_nir.run(graph, x, target="norse", device="cpu")["output"], want)


LAYERS = st.lists(st.sampled_from(["LIFBoxCell", "LIFCell", "LIBoxCell", "LICell", "IAFCell",
                                   "LIFRecurrentCell"]), min_size=1, max_size=4)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(LAYERS, st.integers(0, 10_000), st.booleans())
def test_random_compositions_are_spike_exact(layers, seed, bias):
    torch.manual_seed(seed)
    modules: list[nn.Module] = []
    width = 6
    for kind in layers:
        n = int(torch.randint(3, 12, ()).item())
        if kind == "LIFRecurrentCell":
            rec = snn.LIFRecurrentCell(width, n)
            with torch.no_grad():
                rec.input_weights.mul_(3.0)
            modules.append(rec)
        else:
            modules += [scaled_linear(width, n, bias=bias), CELLS[kind](n)]
        width = n
    model = snn.SequentialState(*modules)
    x = spikes(T, B, 6, seed=seed)
    assert_exact(model, x)


def test_round_trip_export_save_load_export_is_stable(tmp_path):
    model = snn.SequentialState(nn.Linear(5, 7), CELLS["LIFBoxCell-per-neuron"](7),
                                snn.LIFRecurrentCell(7, 4), nn.Linear(4, 2, bias=False),
                                snn.LICell())
    first = nrf_nir.export(model, torch.zeros(2, 5))
    nrf_nir.save(first, tmp_path / "a.nir")
    loaded = nrf_nir.load(tmp_path / "a.nir")
    nrf_nir.save(loaded, tmp_path / "b.nir")
    second = nrf_nir.load(tmp_path / "b.nir")

    def flat(g: nir.NIRGraph, prefix: str = "") -> dict[str, np.ndarray]:
        out = {}
        for name, node in g.nodes.items():
            if isinstance(node, nir.NIRGraph):
                out.update(flat(node, f"{prefix}{name}."))
                continue
            for key, value in vars(node).items():
                if isinstance(value, np.ndarray):
                    out[f"{prefix}{name}.{key}"] = value
        return out

    a, b = flat(first), flat(second)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert {k: str(v) for k, v in first.metadata.items()} == {
        k: str(v) for k, v in second.metadata.items()}


class Gate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lif = snn.LIFBoxCell()
        self.norm = nn.GroupNorm(2, 4)

    def forward(self, x):  # pragma: no cover - never run: the export refuses it
        return x * self.lif(self.norm(x))[0]


def test_unsupported_modules_are_all_listed_with_paths():
    model = nn.Sequential(nn.Linear(4, 4), nn.GroupNorm(2, 4), nn.Sequential(
        nn.MultiheadAttention(4, 2), nn.ConvTranspose2d(4, 4, 3)), Gate())
    with pytest.raises(UnsupportedError) as err:
        nrf_nir.export(model, torch.zeros(1, 4))
    msg = str(err.value)
    for expected in ("1 (GroupNorm)", "2.0 (MultiheadAttention)", "2.1 (ConvTranspose2d)",
                     "3 (Gate: custom forward code)", "3.norm (GroupNorm)"):
        assert expected in msg
    assert "3.lif" not in msg  # supported children are not listed


def test_to_nir_sequence_hook_exports_custom_modules():
    class Net(nn.Module):
        input_shape = (6,)

        def __init__(self) -> None:
            super().__init__()
            self.fc = scaled_linear(6, 5)
            self.lif = snn.LIFBoxCell()

        def forward(self, x, state=None):
            return self.lif(self.fc(x), state)

        def to_nir_sequence(self) -> nn.Module:
            return snn.SequentialState(self.fc, self.lif)

    net = Net()
    x = spikes(T, B, 6)
    graph = nrf_nir.export(net, x[0])
    state, outs = None, []
    with torch.no_grad():
        for t in range(T):
            y, state = net(x[t], state)
            outs.append(y)
    assert torch.equal(nrf_nir.run(graph, x, device="cpu")["output"], torch.stack(outs))


def test_dt_is_taken_from_cells_and_conflicts_are_refused():
    model = snn.SequentialState(nn.Linear(3, 3), snn.LIFBoxCell(dt=5e-4))
    assert nrf_nir.export(model, torch.zeros(1, 3)).metadata["dt"] == 5e-4
    with pytest.raises(NIRError, match="differs from the cells"):
        nrf_nir.export(model, torch.zeros(1, 3), dt=1e-3)
    mixed = snn.SequentialState(nn.Linear(3, 3), snn.LIFBoxCell(dt=5e-4), nn.Linear(3, 3),
                                snn.LIFBoxCell(dt=1e-3))
    with pytest.raises(NIRError, match="different time steps"):
        nrf_nir.export(mixed, torch.zeros(1, 3))


def test_iaf_with_nonzero_reset_is_refused():
    model = snn.SequentialState(nn.Linear(3, 3), snn.IAFCell(snn.IAFParameters(
        v_reset=torch.as_tensor(0.2))))
    with pytest.raises(UnsupportedError, match="v_reset"):
        nrf_nir.export(model, torch.zeros(1, 3))


# ------------------------------------------------------------------------------- CLI and files


FACTORY = "tests.test_export:small_model"


def small_model() -> nn.Module:
    torch.manual_seed(3)
    model = snn.SequentialState(scaled_linear(4, 6), snn.LIFBoxCell(), nn.Linear(6, 2),
                                snn.LICell())
    model.input_shape = (4,)  # type: ignore[attr-defined]
    return model


def test_cli_export_from_factory(tmp_path, capsys):
    out = tmp_path / "m.nir"
    assert main(["export", FACTORY, "-o", str(out)]) == 0
    graph = nrf_nir.load(out)
    x = spikes(100, 3, 4)
    assert torch.equal(nrf_nir.run(graph, x, device="cpu")["output"],
                       run_norse(small_model(), x))


def test_cli_export_from_state_dict_and_lightning_ckpt(tmp_path):
    trained = small_model()
    with torch.no_grad():
        trained[0].weight.mul_(1.7)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()},
                "epoch": 3}, tmp_path / "w.ckpt")
    x = spikes(100, 3, 4)
    want = run_norse(trained, x)
    for name in ("w.pt", "w.ckpt"):
        out = tmp_path / f"{name}.nir"
        assert main(["export", str(tmp_path / name), "--model", FACTORY, "-o", str(out),
                     "--input-shape", "4"]) == 0
        got = nrf_nir.run(nrf_nir.load(out), x, device="cpu")["output"]
        assert torch.equal(got, want), name


def test_cli_export_errors(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.pt", "wb") as handle:
        torch.save({"w": Evil()}, handle)
    assert main(["export", str(tmp_path / "evil.pt"), "--model", FACTORY, "-o",
                 str(tmp_path / "o.nir")]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "pwned" not in capsys.readouterr().out

    torch.save({"0.weight": torch.zeros(6, 4), "extra": torch.zeros(1)}, tmp_path / "bad.pt")
    assert main(["export", str(tmp_path / "bad.pt"), "--model", FACTORY, "-o",
                 str(tmp_path / "o.nir")]) == 2
    err = capsys.readouterr().err
    assert "missing keys: 0.bias" in err and "unexpected keys: extra" in err

    torch.save({k: torch.zeros(1) for k in small_model().state_dict()}, tmp_path / "shape.pt")
    assert main(["export", str(tmp_path / "shape.pt"), "--model", FACTORY, "-o",
                 str(tmp_path / "o.nir")]) == 2
    assert "wrong shapes" in capsys.readouterr().err

    assert main(["export", "no.such.module:f", "-o", str(tmp_path / "o.nir")]) == 2
    assert "cannot import" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "bad.pt"), "-o", str(tmp_path / "o.nir")]) == 2
    assert "--model" in capsys.readouterr().err
    assert not (tmp_path / "o.nir").exists()
    assert pickle  # (module used by the Evil payload check)


def test_custom_module_exports_itself_with_to_nir_graph():
    """The exporter's hook for custom modules (used by the zoo's AdLIF cell)."""
    from nrf_nir.exporters import NIRFragment

    class Doubler(nn.Module):
        def forward(self, x):
            return 2 * x

        def to_nir_graph(self, sample, path):
            return NIRFragment(nir.Scale(scale=np.full(tuple(sample.shape[1:]), 2.0)),
                               self(sample))

    net = nn.Sequential(nn.Linear(3, 4), Doubler())
    graph = nrf_nir.export(net, torch.zeros(1, 3))
    assert [type(n).__name__ for n in graph.nodes.values()] == [
        "Input", "Affine", "Scale", "Output"]
    x = torch.rand(5, 2, 3)
    with torch.no_grad():
        want = net(x)
    assert torch.equal(nrf_nir.run(graph, x, dt=1e-3, device="cpu")["output"], want)

    class Broken(nn.Module):
        def forward(self, x):
            return x

        def to_nir_graph(self, sample, path):
            return "not a fragment"

    with pytest.raises(NIRError, match="must return an NIRFragment"):
        nrf_nir.export(nn.Sequential(nn.Linear(3, 4), Broken()), torch.zeros(1, 3))
