"""The ``sinabs`` target: Sinabs 3.1.3 layers equal to the reference bit for bit on what its
check accepts (node cases, several spikes per step, the membrane floor, Sinabs's own files),
and one-line refusals of what Sinabs cannot express."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest

import nrf_nir
from nrf_nir import targets
from nrf_nir.semantics import Semantics, write_semantics
from tests.helpers import chain

torch = pytest.importorskip("torch")
pytest.importorskip("sinabs.layers")
from nrf_nir.conformance.cases import node_cases  # noqa: E402
from nrf_nir.conformance.runner import run_suite  # noqa: E402
from tests.test_dialect_sinabs import export, sinabs_forward  # noqa: E402

N_IN, N = 6, 8


def _graph(kind: str, *, v_reset: float = 0.0, **semantics: object) -> nir.NIRGraph:
    """input -> Affine (strong, mixed-sign weights) -> one neuron node -> output."""
    rng = np.random.default_rng(3)
    n = N
    fc = nir.Affine(weight=rng.normal(0.1, 1.0, (n, N_IN)), bias=rng.normal(0, 0.1, n))
    v_th = rng.uniform(0.5, 1.0, n)
    if kind == "IF":
        neuron: nir.NIRNode = nir.IF(r=np.full(n, 1000.0), v_threshold=v_th,
                                     v_reset=np.full(n, v_reset))
    elif kind == "LIF":
        neuron = nir.LIF(tau=rng.uniform(0.005, 0.02, n), r=rng.uniform(8.0, 12.0, n),
                         v_leak=rng.uniform(-0.1, 0.1, n), v_threshold=v_th,
                         v_reset=np.full(n, v_reset))
    elif kind == "LI":
        neuron = nir.LI(tau=rng.uniform(0.005, 0.02, n), r=np.ones(n), v_leak=np.zeros(n))
    else:
        neuron = nir.CubaLIF(tau_syn=np.full(n, 0.005), tau_mem=np.full(n, 0.01), r=np.ones(n),
                             v_leak=np.zeros(n), v_threshold=v_th, v_reset=np.zeros(n))
    graph = chain(fc, neuron, shape=(N_IN,), dt=None)
    return write_semantics(graph, Semantics(dt=1e-3, **semantics))  # type: ignore[arg-type]


def _spikes(seed: int = 0, T: int = 120, B: int = 4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, N_IN, generator=gen) < 0.3).float() * 2.0


def test_registered_and_described():
    assert "sinabs" in targets.registered() and "sinabs" in targets.available()
    ok, text = targets.describe("sinabs")
    assert ok and text.startswith("Sinabs 3.1.3 layers") and text == targets.get(
        "sinabs").description


def test_node_cases_as_the_manifest_says():
    """Every node case on the target meets conformance/manifests/sinabs.toml."""
    results = run_suite(node_cases(T=40, B=2), ["sinabs"], workers=1, progress=False)
    assert [(r.case, r.status, r.message) for r in results if not r.ok] == []
    statuses = {r.case: r.status for r in results}
    assert statuses["node/IF/subtract"] == statuses["node/LI/exponential"] == "pass"
    assert statuses["node/CubaLIF/scalar"] == "unsupported"


FIRING = [  # (node, semantics): each combination of the keys Sinabs computes natively
    ("IF", {"spikes": "multi", "threshold": "ge", "reset": "subtract",
            "membrane_floor": "minus_threshold"}),
    ("IF", {"spikes": "multi", "threshold": "ge", "reset": "value"}),
    ("IF", {"spikes": "single", "threshold": "gt", "reset": "subtract",
            "membrane_floor": "minus_threshold"}),
    ("IF", {"spikes": "single", "threshold": "ge", "reset": "value",
            "membrane_floor": "minus_threshold"}),
    ("LIF", {"spikes": "multi", "threshold": "ge", "reset": "subtract",
             "integration": "exponential", "membrane_floor": "minus_threshold"}),
    ("LIF", {"spikes": "multi", "threshold": "ge", "reset": "subtract",
             "integration": "exponential", "initial_state": "zero"}),
    ("LIF", {"spikes": "single", "threshold": "gt", "reset": "value",
             "integration": "exponential", "membrane_floor": "minus_threshold"}),
    ("LI", {"integration": "exponential", "initial_state": "leak"}),
]


@pytest.mark.parametrize(("kind", "semantics"), FIRING)
def test_firing_semantics_are_bit_exact(kind, semantics):
    graph = _graph(kind, **semantics)
    assert nrf_nir.check(graph, "sinabs") == []
    x = _spikes()
    record = () if kind == "LI" else ("n1.v",)
    want = nrf_nir.run(graph, x, device="cpu", record=record)
    got = nrf_nir.run(graph, x, target="sinabs", device="cpu", record=record)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    out = want["output"]
    if kind != "LI":
        assert 0.02 < float((out > 0).float().mean()) < 0.7
    if semantics.get("spikes") == "multi":
        assert float(out.max()) >= 2  # several spikes in one step happened
    if semantics.get("membrane_floor"):
        v_th = torch.as_tensor(graph.nodes["n1"].v_threshold, dtype=torch.float32)
        assert bool((want["n1.v"] == -v_th).any())  # the floor was reached


def test_float64_stepwise_and_a_recurrent_loop():
    graph = _graph("LIF", spikes="multi", threshold="ge", reset="subtract",
                   integration="exponential", membrane_floor="minus_threshold")
    x = _spikes(1, T=50)
    want = nrf_nir.run(graph, x, device="cpu", dtype="float64")["output"]
    got = nrf_nir.run(graph, x, target="sinabs", device="cpu", dtype="float64",
                      stepwise=True)["output"]
    assert got.dtype == torch.float64 and torch.equal(got, want)
    loop = _graph("IF", spikes="multi", threshold="ge", reset="subtract")
    loop.nodes["rec"] = nir.Linear(weight=np.random.default_rng(4).normal(0, 0.3, (N, N)))
    loop.edges = [*loop.edges, ("n1", "rec"), ("rec", "n1")]
    assert torch.equal(nrf_nir.run(loop, x, target="sinabs", device="cpu")["output"],
                       nrf_nir.run(loop, x, device="cpu")["output"])


@pytest.mark.parametrize("name", ["iafsqueeze-conv", "lif"])
def test_sinabs_files_run_on_sinabs_as_sinabs_runs_them(tmp_path, name):
    net, x, squeezed = export(name, tmp_path / "net.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = nrf_nir.load(tmp_path / "net.nir")
    got = nrf_nir.run(graph, x, target="sinabs", device="cpu")["output"]
    want = sinabs_forward(net, x, squeezed)
    assert float((want > 0).float().mean()) > 0.05
    assert torch.equal(got, want)


REFUSALS = [
    (lambda: _graph("CubaLIF"), "n1", "type", "synaptic current decays before the membrane"),
    (lambda: _graph("IF", v_reset=-0.1), "n1", "v_reset", "MembraneReset adds reset_value"),
    (lambda: _graph("IF", spikes="multi"), "n1", "threshold", "MultiSpike counts trunc(v/v_th)"),
    (lambda: _graph("LIF", v_reset=-0.1, spikes="multi", threshold="ge", reset="subtract"),
     "n1", "v_reset", "counts multiples of v_th from 0"),
    (lambda: _graph("LIF", reset_delay="on"), None, "reset_delay", "reset_delay = 'on'"),
]


@pytest.mark.parametrize(("graph", "node", "field", "words"), REFUSALS)
def test_refusals_are_one_line_each(graph, node, field, words):
    g = graph()
    found = nrf_nir.check(g, "sinabs")
    assert len(found) == 1
    (v,) = found
    assert (v.target, v.node, v.field) == ("sinabs", node, field) and words in v.message
    assert "\n" not in str(v)
    with pytest.raises(nrf_nir.NIRError, match="cannot run this graph"):
        nrf_nir.lower(g, "sinabs", device="cpu")


def test_unknown_option_is_refused():
    with pytest.raises(nrf_nir.NIRError, match="unknown option.*surrogate"):
        nrf_nir.lower(_graph("IF"), "sinabs", device="cpu", surrogate="super")
