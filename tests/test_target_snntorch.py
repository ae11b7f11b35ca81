"""The snntorch target and dialect (targets/snntorch.py, docs/targets/snntorch.md).

Agreement is measured per step and per neuron: the fraction of ``[T, B, n]`` spike entries
equal to the reference's. snnTorch computes ``beta*mem + input`` where the contract computes
``v + c*((r*x + v_leak) - v)``: the same equation in another floating-point order, so a spike
may flip where a membrane lies within a rounding error of its threshold; where the operations
are the same (``I``, ``IF`` with a value reset) the results are asserted bit for bit.

``python tests/test_target_snntorch.py`` prints the table of docs/targets/snntorch.md
(this target and snnTorch's own importer, measured against the reference).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import warnings
from collections.abc import Callable

import nir
import numpy as np
import pytest
import torch

snn = pytest.importorskip("snntorch")

import nrf_nir  # noqa: E402
from nrf_nir.dialects import normalize  # noqa: E402
from nrf_nir.semantics import read_semantics  # noqa: E402

# The device is pinned to CPU: agreement numbers are CPU numbers (docs/targets/snntorch.md).
CPU = "cpu"
T, B = 300, 8

# Spikes of the two sides may differ only where float rounding decides a threshold crossing.
# Measured: at most 1 flip in 1.6M spike entries per node case (see the doc's table).
ROUNDING = 0.999


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small per-step tensors: intra-op threads only contend (on a shared 2-core machine this
    module ran 5x slower with them). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# builders (local: the suite's helpers module is shadowed when some package installs "tests")
# --------------------------------------------------------------------------------------------

def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _inputs(n_in: int, seed: int, rate: float = 0.3, steps: int = T) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, B, n_in, generator=g) < rate).float()


def _graph(neuron: nir.NIRNode, *, n: int, n_in: int = 10, gain: float = 3.0, seed: int = 0,
           loop: nir.NIRNode | str | None = None, dt: float | None = 1e-3,
           **meta: object) -> nir.NIRGraph:
    """input -> fc (Affine) -> neuron [<-> loop] -> output."""
    rng = _rng(seed)
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type=np.array([n_in])),
        "fc": nir.Affine(weight=rng.normal(0, gain / np.sqrt(n_in), (n, n_in)),
                         bias=rng.normal(0, 0.1, n)),
        "lif": neuron,
        "output": nir.Output(output_type=np.array([n]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    if loop == "self":
        edges.append(("lif", "lif"))
    elif loop is not None:
        assert isinstance(loop, nir.NIRNode)
        nodes["w_rec"] = loop
        edges += [("lif", "w_rec"), ("w_rec", "lif")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    graph.metadata = dict(meta)
    if dt is not None:
        graph.metadata["dt"] = dt
    return graph


def _full(n: int, value: float) -> np.ndarray:
    return np.full(n, float(value))


def lif(n: int, *, tau: float = 0.01, r: float = 1.0, v_leak: float = 0.0, v_th: float = 1.0,
        v_reset: float = 0.0) -> nir.LIF:
    return nir.LIF(tau=_full(n, tau), r=_full(n, r), v_leak=_full(n, v_leak),
                   v_threshold=_full(n, v_th), v_reset=_full(n, v_reset))


def lif_per_neuron(n: int, seed: int = 1) -> nir.LIF:
    rng = _rng(seed)
    return nir.LIF(tau=rng.uniform(0.002, 0.02, n), r=rng.uniform(0.5, 2.0, n),
                   v_leak=rng.uniform(-0.2, 0.2, n), v_threshold=rng.uniform(0.5, 1.5, n),
                   v_reset=rng.uniform(-0.3, 0.1, n))


def cuba(n: int, *, tau_syn: float = 0.005, tau_mem: float = 0.01, r: float = 1.0,
         v_th: float = 1.0, v_reset: float = 0.0, w_in: float = 1.0) -> nir.CubaLIF:
    return nir.CubaLIF(tau_syn=_full(n, tau_syn), tau_mem=_full(n, tau_mem), r=_full(n, r),
                       v_leak=np.zeros(n), v_threshold=_full(n, v_th),
                       v_reset=_full(n, v_reset), w_in=_full(n, w_in))


def cuba_per_neuron(n: int, seed: int = 2) -> nir.CubaLIF:
    rng = _rng(seed)
    return nir.CubaLIF(tau_syn=rng.uniform(0.002, 0.01, n), tau_mem=rng.uniform(0.005, 0.02, n),
                       r=rng.uniform(0.5, 2.0, n), v_leak=rng.uniform(-0.2, 0.2, n),
                       v_threshold=rng.uniform(0.5, 1.5, n), v_reset=rng.uniform(-0.3, 0.1, n),
                       w_in=rng.uniform(0.5, 2.0, n))


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a == b).double().mean().item()


def _both(graph: nir.NIRGraph, x: torch.Tensor, **kw: object) -> tuple[dict, dict]:
    ref = nrf_nir.run(graph, x, device=CPU, **kw)  # type: ignore[arg-type]
    ours = nrf_nir.run(graph, x, target="snntorch", device=CPU, **kw)  # type: ignore[arg-type]
    return ref, ours


# --------------------------------------------------------------------------------------------
# node-level agreement with the reference
# --------------------------------------------------------------------------------------------

N = 32

NODE_CASES: dict[str, Callable[[], nir.NIRNode]] = {
    "LIF scalar": lambda: lif(N),
    "LIF r, v_leak, v_reset": lambda: lif(N, tau=0.005, r=2.0, v_leak=0.3, v_reset=-0.2),
    "LIF per-neuron": lambda: lif_per_neuron(N),
    "CubaLIF scalar": lambda: cuba(N),
    "CubaLIF per-neuron": lambda: cuba_per_neuron(N),
    "IF": lambda: nir.IF(r=_full(N, 300.0), v_threshold=_full(N, 1.0), v_reset=_full(N, 0.0)),
}


@pytest.mark.parametrize("reset", ["value", "subtract"])
@pytest.mark.parametrize("threshold", ["gt", "ge"])
@pytest.mark.parametrize("integration", ["euler", "exponential"])
@pytest.mark.parametrize("case", list(NODE_CASES))
def test_spiking_node_agrees_with_reference(case, integration, threshold, reset):
    graph = _graph(NODE_CASES[case](), n=N, seed=list(NODE_CASES).index(case), reset=reset,
                   threshold=threshold, integration=integration)
    assert nrf_nir.check(graph, "snntorch") == []
    x = _inputs(10, seed=3)
    ref, ours = _both(graph, x)
    assert ref["output"].mean() > 0.01  # the neurons fire
    measured = agreement(ref["output"], ours["output"])
    if case == "IF" and reset == "value":
        # Leaky(beta=1) with the delayed zero reset computes the reference's very operations
        assert torch.equal(ref["output"], ours["output"])
    else:
        # beta*mem + c*r*x (snnTorch) vs v + c*((r*x + v_leak) - v) (reference): rounding only
        assert measured >= ROUNDING, measured


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float64_and_float32_agree(dtype):
    graph = _graph(lif_per_neuron(N), n=N, reset="subtract")
    ref, ours = _both(graph, _inputs(10, seed=4), dtype=dtype)
    assert ours["output"].dtype == getattr(torch, dtype)
    assert agreement(ref["output"], ours["output"]) >= ROUNDING


@pytest.mark.parametrize("integration", ["euler", "exponential"])
@pytest.mark.parametrize("kind", ["I", "LI", "CubaLI"])
def test_non_spiking_nodes_track_the_reference(kind, integration):
    n = 16
    node = {"I": nir.I(r=_full(n, 50.0)),
            "LI": nir.LI(tau=_full(n, 0.01), r=_full(n, 2.0), v_leak=_full(n, 0.1)),
            "CubaLI": nir.CubaLI(tau_syn=_full(n, 0.005), tau_mem=_full(n, 0.01),
                                 r=_full(n, 2.0), v_leak=_full(n, 0.1), w_in=_full(n, 1.5))}[kind]
    ref, ours = _both(_graph(node, n=n, integration=integration), _inputs(10, seed=5))
    if kind == "I":  # Leaky(beta=1): 1*mem + (dt*r)*x is the reference's v + (dt*r)*x
        assert torch.equal(ref["output"], ours["output"])
    else:  # membranes, not spikes: equal within float32 rounding
        torch.testing.assert_close(ours["output"], ref["output"], rtol=1e-5, atol=1e-5)


def test_recorded_states_are_the_references_variables():
    graph = _graph(cuba_per_neuron(N), n=N, reset="subtract")
    rec = ("lif.v", "lif.i", "fc")
    ref, ours = _both(graph, _inputs(10, seed=6), record=rec)
    assert agreement(ref["output"], ours["output"]) >= ROUNDING
    assert torch.equal(ref["fc"], ours["fc"])
    for key in ("lif.v", "lif.i"):  # converted back from snnTorch's mem/syn: rounding only
        torch.testing.assert_close(ours[key], ref[key], rtol=1e-4, atol=1e-4)
    with pytest.raises(nrf_nir.NIRError, match="cannot record"):
        nrf_nir.run(graph, _inputs(10, seed=6), target="snntorch", record=("lif.w",))


# --------------------------------------------------------------------------------------------
# recurrent patterns: RLeaky / RSynaptic and the module's own back edges
# --------------------------------------------------------------------------------------------

def _loop(kind: str, n: int, seed: int = 7) -> nir.NIRNode | str:
    rng = _rng(seed)
    if kind == "Linear":
        return nir.Linear(weight=rng.normal(0, 0.5, (n, n)))
    if kind == "Affine":
        return nir.Affine(weight=rng.normal(0, 0.5, (n, n)), bias=rng.normal(0, 0.1, n))
    if kind == "Scale":
        return nir.Scale(scale=rng.normal(0, 0.5, n))
    return "self"


def _snn_modules(graph: nir.NIRGraph, **options: object) -> list[str]:
    lowered = nrf_nir.lower(graph, "snntorch", device=CPU, **options)
    return [type(m.neuron).__name__ for m in lowered.backend.layers if hasattr(m, "neuron")]


@pytest.mark.parametrize("reset", ["value", "subtract"])
@pytest.mark.parametrize("loop", ["Linear", "Affine", "Scale", "self"])
@pytest.mark.parametrize("neuron", ["LIF", "CubaLIF"])
def test_recurrent_loops(neuron, loop, reset):
    node = lif_per_neuron(N) if neuron == "LIF" else cuba_per_neuron(N)
    graph = _graph(node, n=N, loop=_loop(loop, N), reset=reset)
    x = _inputs(10, seed=8)
    record = () if loop == "self" else ("w_rec",)
    ref, ours = _both(graph, x, record=record)
    assert ref["output"].mean() > 0.01
    assert agreement(ref["output"], ours["output"]) >= ROUNDING
    if record:
        torch.testing.assert_close(ours["w_rec"], ref["w_rec"], rtol=1e-5, atol=1e-5)
    unfused = nrf_nir.run(graph, x, target="snntorch", device=CPU, fuse=False)
    assert agreement(ref["output"], unfused["output"]) >= ROUNDING
    modules = _snn_modules(graph)
    fusable = loop != "Affine" and not (neuron == "CubaLIF" and reset == "value")
    recurrent_class = "RLeaky" if neuron == "LIF" else "RSynaptic"
    plain_class = "Leaky" if neuron == "LIF" else "Synaptic"
    assert modules == [recurrent_class if fusable else plain_class]


def test_nested_recurrent_graph_and_multilayer():
    rng = _rng(9)
    n_in, n = 6, 24
    sub = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_in])),
               "w_in": nir.Linear(weight=rng.normal(0, 2 / np.sqrt(n_in), (n, n_in))),
               "lif": cuba(n, w_in=1.3),
               "w_rec": nir.Linear(weight=rng.normal(0, 1 / np.sqrt(n), (n, n))),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
               ("lif", "output")], type_check=False)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_in])), "rnn": sub,
               "fc": nir.Affine(weight=rng.normal(0, 1, (8, n)), bias=rng.normal(0, 0.1, 8)),
               "lif2": lif(8, tau=0.005, v_reset=-0.1),
               "delay": nir.Delay(delay=np.array([0.0, 1e-3, 2e-3, 5e-3] * 2)),
               "readout": nir.Linear(weight=rng.normal(0, 1, (3, 8))),
               "li": nir.LI(tau=_full(3, 0.02), r=np.ones(3), v_leak=np.zeros(3)),
               "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "rnn"), ("rnn", "fc"), ("fc", "lif2"), ("lif2", "delay"),
               ("delay", "readout"), ("readout", "li"), ("li", "output")], type_check=False)
    for reset in ("value", "subtract"):
        graph.metadata = {"dt": 1e-3, "reset": reset}
        ref, ours = _both(graph, _inputs(n_in, seed=10), record=("rnn.lif", "lif2"))
        for key in ("rnn.lif", "lif2"):
            assert ref[key].mean() > 0.01
            assert agreement(ref[key], ours[key]) >= ROUNDING, key
        torch.testing.assert_close(ours["output"], ref["output"], rtol=1e-4, atol=1e-4)


def test_convolutional_graph():
    rng = _rng(11)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2, 8, 8])),
               "conv": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 2.0, (4, 2, 3, 3)),
                                  stride=1, padding=1, dilation=1, groups=1,
                                  bias=rng.normal(0, 0.1, 4)),
               "lif": nir.LIF(tau=rng.uniform(0.005, 0.02, (4, 1, 1)), r=np.ones((4, 1, 1)),
                              v_leak=np.zeros((4, 1, 1)), v_threshold=np.ones((4, 1, 1)),
                              v_reset=np.zeros((4, 1, 1))),  # per channel
               "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                     padding=np.array([0, 0])),
               "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0,
                                   end_dim=-1),
               "fc": nir.Affine(weight=rng.normal(0, 1.0, (5, 64)), bias=np.zeros(5)),
               "out": cuba(5, v_th=0.5),
               "thr": nir.Threshold(threshold=np.array(0.5)),
               "output": nir.Output(output_type=np.array([5])),
               "spikes": nir.Output(output_type=np.array([4, 8, 8]))},
        edges=[("input", "conv"), ("conv", "lif"), ("lif", "pool"), ("pool", "flat"),
               ("flat", "fc"), ("fc", "out"), ("out", "thr"), ("thr", "output"),
               ("lif", "spikes")], type_check=False)
    graph.metadata = {"dt": 1e-3, "reset": "subtract"}
    x = (torch.rand(100, B, 2, 8, 8, generator=torch.Generator().manual_seed(12)) < 0.3).float()
    ref, ours = _both(graph, x)
    for key in ("output", "spikes"):
        assert ref[key].mean() > 0.01
        assert agreement(ref[key], ours[key]) >= ROUNDING, key


def test_chunked_and_stepwise_runs_agree():
    graph = _graph(lif_per_neuron(N), n=N, reset="subtract")
    x = _inputs(10, seed=13)
    one = nrf_nir.run(graph, x, target="snntorch", device=CPU)["output"]
    step = nrf_nir.run(graph, x, target="snntorch", device=CPU, stepwise=True)["output"]
    chunks = nrf_nir.run(graph, x, target="snntorch", device=CPU, chunk_bytes=4096)["output"]
    assert agreement(one, step) >= ROUNDING and agreement(one, chunks) >= ROUNDING
    with pytest.raises(nrf_nir.NIRError, match="unknown option"):
        nrf_nir.lower(graph, "snntorch", bogus=1)


# --------------------------------------------------------------------------------------------
# check: inexpressible graphs
# --------------------------------------------------------------------------------------------

def _violations(graph: nir.NIRGraph) -> set[tuple[str | None, str | None]]:
    return {(v.node, v.field) for v in nrf_nir.check(graph, "snntorch")}


def test_check_lists_what_snntorch_cannot_express():
    # Euler with dt > tau: beta = 1 - dt/tau < 0, which snnTorch clamps
    fast = _graph(cuba(4, tau_syn=5e-4, tau_mem=2e-3), n=4, dt=1e-3)
    assert _violations(fast) == {("lif", "tau_syn")}
    fast.metadata["integration"] = "exponential"  # exp(-dt/tau) is always in (0, 1)
    assert _violations(fast) == set()
    assert _violations(_graph(lif(4, tau=5e-4), n=4)) == {("lif", "tau")}
    # value reset, initial membrane (v_leak) above threshold: snnTorch resets it at step 1
    high = _graph(lif(4, v_leak=1.5), n=4)
    assert _violations(high) == {("lif", "v_leak")}
    high.metadata["initial_state"] = "zero"
    assert _violations(high) == set()
    high.metadata.update(initial_state="leak", reset="subtract")  # compensated: fine
    assert _violations(high) == set()
    # CubaLIF value reset with v_th < v_reset (Synaptic's immediate reset re-fires at 0)
    low = _graph(cuba(4, v_th=-0.5), n=4, initial_state="zero")
    assert _violations(low) == {("lif", "v_threshold")}  # also: starts above threshold
    assert _violations(_graph(cuba(4, v_th=-0.5), n=4)) == \
        {("lif", "v_threshold"), ("lif", "v_leak")}
    assert _violations(_graph(cuba(4, v_th=0.0, v_reset=-0.2), n=4)) == set()
    assert _violations(_graph(cuba(4, v_th=0.0, v_reset=0.0), n=4, threshold="ge")) == \
        {("lif", "v_threshold"), ("lif", "v_leak")}
    assert _violations(_graph(cuba(4, v_th=-0.5), n=4, reset="subtract")) == set()
    # lower refuses with the list; the reference still runs it
    with pytest.raises(nrf_nir.NIRError, match="'tau_syn'"):
        nrf_nir.lower(_graph(cuba(4, tau_syn=5e-4), n=4), "snntorch")
    assert nrf_nir.check(_graph(cuba(4, tau_syn=5e-4), n=4), "reference") == []
    v = nrf_nir.check(_graph(lif(4, tau=5e-4), n=4), "snntorch")[0]
    assert v.target == "snntorch" and "beta" in v.message


def test_low_threshold_lif_value_reset_falls_back_from_rleaky():
    node = lif(N, v_th=-0.2, v_reset=0.0, v_leak=-0.5)  # v_th < v_reset: Leaky's delayed reset
    graph = _graph(node, n=N, loop=_loop("Linear", N))
    assert _violations(graph) == set()
    assert _snn_modules(graph) == ["Leaky"]
    ref, ours = _both(graph, _inputs(10, seed=14))
    assert agreement(ref["output"], ours["output"]) >= ROUNDING


# --------------------------------------------------------------------------------------------
# the dialect: files written by snntorch.export_nir.export_to_nir
# --------------------------------------------------------------------------------------------

class _Net(torch.nn.Module):
    """fc -> <kind> -> fc2 -> Leaky; returns (output spikes, hidden spikes)."""

    def __init__(self, kind: str, reset: str = "subtract", n: int = 20, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = torch.nn.Linear(10, n)
        with torch.no_grad():
            self.fc.weight.mul_(3)
        th = torch.rand(n) + 0.5  # per-neuron tensors: nir 1.0.8's type check needs them

        def rand(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(n) * (hi - lo) + lo

        common = {"threshold": th, "reset_mechanism": reset}
        if kind == "Leaky":
            self.hidden = snn.Leaky(beta=rand(0.45, 0.95), **common)
        elif kind == "Synaptic":
            self.hidden = snn.Synaptic(alpha=rand(0.3, 0.8), beta=rand(0.45, 0.95), **common)
        elif kind == "RLeaky":
            self.hidden = snn.RLeaky(beta=rand(0.45, 0.95), linear_features=n, **common)
        elif kind == "RLeaky one-to-one":
            self.hidden = snn.RLeaky(beta=rand(0.45, 0.95), all_to_all=False, V=torch.randn(n),
                                     **common)
        elif kind == "RSynaptic":
            self.hidden = snn.RSynaptic(alpha=rand(0.3, 0.8), beta=rand(0.45, 0.95),
                                        linear_features=n, **common)
        self.fc2 = torch.nn.Linear(n, 4)
        with torch.no_grad():
            self.fc2.weight.mul_(3)
        self.out = snn.Leaky(beta=torch.full((4,), 0.9), threshold=torch.full((4,), 0.5),
                             reset_mechanism=reset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spk = self.hidden(self.fc(x))[0]
        self.last_hidden = spk
        return self.out(self.fc2(spk))[0]


def _export_and_simulate(kind: str, x: torch.Tensor, reset: str = "subtract"):
    from snntorch.export_nir import export_to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(_Net(kind, reset), x[0, :1], ignore_dims=[0])
    net = _Net(kind, reset)  # fresh state, same parameters
    outs, hidden = [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            outs.append(net(x[t]))
            hidden.append(net.last_hidden)
    return graph, torch.stack(outs), torch.stack(hidden)


def _hidden_name(graph: nir.NIRGraph) -> str:
    flat = nrf_nir.validate(graph).flat
    names = [n for n, node in flat.nodes.items()
             if isinstance(node, (nir.LIF, nir.CubaLIF)) and n != "out"]
    return names[0]


EXPORTS = ["Leaky", "Synaptic", "RLeaky", "RLeaky one-to-one", "RSynaptic"]


def test_export_needs_ignore_dims_and_per_neuron_tensors():
    """snnTorch 1.0.0 + nir 1.0.8, measured: export_to_nir's final
    infer_types() fails without ignore_dims=[0] (the batch axis stays in the input type), and
    scalar beta/threshold give 0-d parameters: a LIF typed [] (type mismatch), or rejected by
    nir's LIF beside per-neuron ones."""
    from snntorch.export_nir import export_to_nir

    def model(beta: object, threshold: object) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(4, 3),
                                   snn.Leaky(beta=beta, threshold=threshold, init_hidden=True))

    sample = torch.zeros(1, 4)
    per_neuron = (torch.full((3,), 0.9), torch.ones(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="type mismatch"):
            export_to_nir(model(*per_neuron), sample)
        with pytest.raises(ValueError, match=r"type mismatch: .*\[\]"):  # 0-d LIF type
            export_to_nir(model(0.9, 1.0), sample, ignore_dims=[0])
        with pytest.raises(AssertionError, match="same shape"):  # 0-d beta, 1-d threshold
            export_to_nir(model(0.9, torch.ones(3)), sample, ignore_dims=[0])
        graph = export_to_nir(model(*per_neuron), sample, ignore_dims=[0])
    assert graph.metadata == {}  # no dt, no reset: the dialect must assume them


@pytest.mark.parametrize("writer", ["nir.write", "nrf_nir.save"])
@pytest.mark.parametrize("kind", EXPORTS)
def test_exported_snntorch_models_reproduce_in_the_reference(kind, writer, tmp_path):
    x = _inputs(10, seed=20, steps=200)
    raw, want, want_hidden = _export_and_simulate(kind, x)
    before = copy.deepcopy(raw.metadata)
    path = tmp_path / "model.nir"
    if writer == "nir.write":
        nir.write(str(path), raw)
    else:
        nrf_nir.save(raw, path, validate=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = nrf_nir.load(path)
    assert any(str(w.message).startswith("snntorch dialect") for w in caught)
    assert raw.metadata == before  # normalize returns a new graph
    sem = read_semantics(graph)
    assert (sem.dt, sem.reset, sem.initial_state, sem.producer) == \
        (1e-4, "subtract", "zero", "snntorch")
    hidden = _hidden_name(graph)
    ref = nrf_nir.run(graph, x, device=CPU, record=(hidden,))
    assert want_hidden.mean() > 0.01 and want.mean() > 0.01
    # c*r = (dt*(1/tau))*(tau/dt) is 1 only within float32 rounding: a rare flip
    assert agreement(ref[hidden], want_hidden) >= ROUNDING
    assert agreement(ref["output"], want) >= ROUNDING
    # and the normalised graph runs on this target too (the round trip back to snnTorch)
    ours = nrf_nir.run(graph, x, target="snntorch", device=CPU)
    assert agreement(ours["output"], want) >= ROUNDING
    # a file saved after normalisation is canonical: no dialect applied again
    again = tmp_path / "again.nir"
    nrf_nir.save(graph, again)
    assert normalize(nrf_nir.load(again, dialect="none")).dialect is None


@pytest.mark.parametrize("kind", ["RLeaky", "RLeaky one-to-one", "RSynaptic"])
def test_nested_recurrent_subgraphs_as_export_nir_writes_them(kind):
    """export_nir writes RLeaky/RSynaptic as a nested NIRGraph; nirtorch 2.6 flattens it into
    dotted names. The nested form (older nirtorch, hand assembly) must load the same."""
    from snntorch.export_nir import _extract_snntorch_module as extract

    x = _inputs(10, seed=24, steps=200)
    _, want, want_hidden = _export_and_simulate(kind, x)
    net = _Net(kind)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([10])), "fc": extract(net.fc),
               "hidden": extract(net.hidden), "fc2": extract(net.fc2), "out": extract(net.out),
               "output": nir.Output(output_type=np.array([4]))},
        edges=[("input", "fc"), ("fc", "hidden"), ("hidden", "fc2"), ("fc2", "out"),
               ("out", "output")], type_check=False)
    assert isinstance(graph.nodes["hidden"], nir.NIRGraph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = normalize(graph)
    assert result.dialect == "snntorch"
    assert any("recurrent bias" in note for note in result.notes) == (kind != "RLeaky one-to-one")
    ref = nrf_nir.run(result.graph, x, device=CPU, record=("hidden.lif",))
    assert agreement(ref["hidden.lif"], want_hidden) >= ROUNDING
    assert agreement(ref["output"], want) >= ROUNDING


def test_exported_zero_reset_leaky_with_the_dialect_option():
    from nrf_nir.dialect_snntorch import SnnTorchDialect

    x = _inputs(10, seed=21, steps=200)
    raw, want, _ = _export_and_simulate("Leaky", x, reset="zero")
    graph, notes = SnnTorchDialect(reset="zero").normalize(raw)
    assert read_semantics(graph).reset == "value"
    assert agreement(nrf_nir.run(graph, x, device=CPU)["output"], want) >= ROUNDING
    # zero-reset Synaptic drops the step after a spike (reset_delay 'on'), the Leaky read-out
    # does not: it holds reset_delay 'off' in its own metadata, said in a note
    raw, want, _ = _export_and_simulate("Synaptic", x, reset="zero")
    graph, notes = SnnTorchDialect(reset="zero").normalize(raw)
    assert read_semantics(graph).reset_delay == "on"
    assert graph.nodes["out"].metadata["reset_delay"] == "off"
    assert any("out 'off'" in note for note in notes)
    for target in ("reference", "snntorch"):
        got = nrf_nir.run(graph, x, device=CPU, target=target)["output"]
        assert agreement(got, want) >= ROUNDING


def test_exported_conv_model_with_a_batch_axis():
    from snntorch.export_nir import export_to_nir

    def model() -> torch.nn.Module:
        torch.manual_seed(3)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3),
            snn.Leaky(beta=torch.full((4, 6, 6), 0.8), threshold=torch.full((4, 6, 6), 0.5),
                      init_hidden=True),
            torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(36, 3),
            snn.Leaky(beta=torch.full((3,), 0.9), threshold=torch.full((3,), 0.3),
                      init_hidden=True))
        with torch.no_grad():
            net[0].weight.mul_(3)
        return net

    x = (torch.rand(100, 4, 1, 8, 8, generator=torch.Generator().manual_seed(22)) < 0.4).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = export_to_nir(model(), x[0, :1], ignore_dims=[0])
    net = model()
    with torch.no_grad():
        want = torch.stack([net(x[t]) for t in range(x.shape[0])])
    # as older exports without ignore_dims wrote it: a batch axis of 1 in the shapes
    raw.nodes["input"] = nir.Input(input_type=np.array([1, 1, 8, 8]))
    raw.nodes["output"] = nir.Output(output_type=np.array([1, 3]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = normalize(raw)
    assert any("batch dimension" in str(w.message) for w in caught)
    assert result.dialect == "snntorch"
    got = nrf_nir.run(result.graph, x, device=CPU)["output"]
    assert want.mean() > 0.01
    assert agreement(got, want) >= ROUNDING


def test_dialect_detection_is_conservative():
    from nrf_nir.dialect_snntorch import DIALECT

    x = _inputs(10, seed=23, steps=20)
    raw, _, _ = _export_and_simulate("Leaky", x)
    assert DIALECT.detect(raw)
    # the same file once normalised (nrf-nir metadata) is not claimed again
    assert DIALECT.detect(DIALECT.normalize(raw)[0]) is None
    # ordinary NIR graphs: r = 1 (not tau/1e-4), or node types snnTorch never exports
    assert DIALECT.detect(_graph(lif(4), n=4, dt=None)) is None
    assert DIALECT.detect(_graph(cuba(4, r=100.0, tau_mem=0.01, tau_syn=0.005), n=4,
                                 dt=None)) is None
    li = nir.LI(tau=_full(4, 1e-3), r=_full(4, 10.0), v_leak=np.zeros(4))
    assert DIALECT.detect(_graph(li, n=4, dt=None)) is None
    snn_like = lif(4, tau=1e-3, r=10.0)
    assert DIALECT.detect(_graph(snn_like, n=4, dt=None))
    assert DIALECT.detect(_graph(snn_like, n=4, dt=1e-3)) is None  # states its own dt


# --------------------------------------------------------------------------------------------
# the doc's table: this target and snnTorch's importer against the reference
# --------------------------------------------------------------------------------------------

IMPORT_DT = 1e-4  # snnTorch's importer hard-codes dt = 1e-4
_TAU = 1e-3


def _importer_cases() -> list[tuple[str, nir.NIRGraph, str]]:
    n, rdt = 20, _TAU / IMPORT_DT  # r = tau/dt: snnTorch's own convention (c*r = 1)
    rng = _rng(30)
    loop = nir.Linear(weight=rng.normal(0, 0.3, (n, n)))
    taus = rng.uniform(5e-4, 2e-3, n)
    return [
        ("LIF, r = tau/dt, value reset", _graph(lif(n, tau=_TAU, r=rdt), n=n, dt=IMPORT_DT),
         "same equations (importer: beta = 1 - dt/tau, zero reset, reset_delay=False)"),
        ("LIF, r = 1, value reset", _graph(lif(n, tau=_TAU, v_th=0.1), n=n, dt=IMPORT_DT),
         "importer divides v_th by r*dt/tau instead of scaling the input: equal (zero reset)"),
        ("LIF, subtract reset", _graph(lif(n, tau=_TAU, r=rdt), n=n, dt=IMPORT_DT,
                                       reset="subtract"),
         "importer always resets to zero"),
        ("LIF, v_reset = -0.2", _graph(lif(n, tau=_TAU, r=rdt, v_reset=-0.2), n=n,
                                       dt=IMPORT_DT),
         "importer ignores v_reset (resets to 0)"),
        ("LIF, v_leak = 0.3", _graph(lif(n, tau=_TAU, r=rdt, v_leak=0.3), n=n, dt=IMPORT_DT),
         "importer refuses v_leak != 0"),
        ("LIF, per-neuron tau", _graph(nir.LIF(
            tau=taus, r=taus / IMPORT_DT, v_leak=np.zeros(n), v_threshold=np.ones(n),
            v_reset=np.zeros(n)), n=n, dt=IMPORT_DT),
         "same equations (per-neuron beta)"),
        ("LIF, per-neuron v_th", _per_neuron_vth(n, rdt),
         "importer refuses per-neuron thresholds"),
        ("LIF, dt = 1e-3 in the file", _graph(lif(n, tau=0.01, r=10.0), n=n, dt=1e-3),
         "importer uses dt = 1e-4 whatever the file says: wrong beta"),
        ("LIF, exponential integration", _graph(lif(n, tau=_TAU, r=rdt), n=n, dt=IMPORT_DT,
                                                integration="exponential"),
         "importer ignores the metadata (Euler beta)"),
        ("CubaLIF, w_in = 1", _graph(cuba(n, tau_syn=5e-4, tau_mem=_TAU, r=rdt), n=n,
                                     dt=IMPORT_DT),
         "importer divides v_th by w_in*dt/tau_syn (it assumes w_in = tau_syn/dt)"),
        ("IF, r = 1", _graph(nir.IF(r=_full(n, 1.0), v_threshold=_full(n, 1e-4),
                                    v_reset=np.zeros(n)), n=n, dt=IMPORT_DT),
         "importer builds Leaky(beta=0.9), which leaks; an IF does not"),
        ("LIF <-> Linear loop (RLeaky)", _graph(lif(n, tau=_TAU, r=rdt), n=n, dt=IMPORT_DT,
                                                loop=loop),
         "importer rewires the loop so the input passes through W_rec (Leaky(W(x + z)))"),
        ("CubaLIF <-> Linear loop (RSynaptic)",
         _graph(cuba(n, tau_syn=5e-4, tau_mem=_TAU, r=rdt, w_in=5.0), n=n, dt=IMPORT_DT,
                loop=copy.deepcopy(loop)),
         "both of the above"),
        ("LI", _graph(nir.LI(tau=_full(n, _TAU), r=_full(n, rdt), v_leak=np.zeros(n)), n=n,
                      dt=IMPORT_DT),
         "importer has no LI (nor I, CubaLI, Delay, Scale, Threshold)"),
    ]


def _per_neuron_vth(n: int, r: float) -> nir.NIRGraph:
    node = lif(n, tau=_TAU, r=r)
    node.v_threshold = _rng(32).uniform(0.5, 1.5, n)
    return _graph(node, n=n, dt=IMPORT_DT)


def _run_importer(graph: nir.NIRGraph, x: torch.Tensor) -> torch.Tensor:
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = import_from_nir(copy.deepcopy(graph))  # it edits the graph in place
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y, state = module(x[t], state)
            # its IF -> Leaky ignores init_hidden=True and returns (spikes, membrane)
            outs.append(y[0] if isinstance(y, tuple) else y)
    return torch.stack(outs)


def importer_table(steps: int = T) -> list[dict[str, object]]:
    """Per case: the reference's firing rate, this target's and snnTorch's importer's
    per-step spike agreement with the reference (the importer: an error string if it
    refuses), and why the importer differs."""
    x = _inputs(10, seed=31, steps=steps)
    rows: list[dict[str, object]] = []
    for name, graph, why in _importer_cases():
        ref = nrf_nir.run(graph, x, device=CPU)["output"]
        ours = nrf_nir.run(graph, x, target="snntorch", device=CPU)["output"]
        if isinstance(graph.nodes["lif"], nir.LI):
            ours_value: object = "equal within 1e-5" if torch.allclose(
                ours, ref, rtol=1e-5, atol=1e-5) else "differs"
        else:
            ours_value = agreement(ref, ours)
        try:
            imported: object = agreement(ref, _run_importer(graph, x))
        except Exception as exc:  # noqa: BLE001 - the importer's refusal is the result
            imported = f"refused ({type(exc).__name__})"
        rows.append({"case": name, "rate": ref.mean().item(), "ours": ours_value,
                     "importer": imported, "why": why})
    return rows


def test_importer_table():
    rows = {row["case"]: row for row in importer_table(steps=200)}
    for name, row in rows.items():
        ours = row["ours"]
        assert ours == "equal within 1e-5" or (isinstance(ours, float) and ours >= ROUNDING), \
            (name, ours)
    # the importer where it agrees, and where it does not (as the doc states)
    assert rows["LIF, r = tau/dt, value reset"]["importer"] == 1.0
    for name in ("LIF, subtract reset", "LIF, dt = 1e-3 in the file", "CubaLIF, w_in = 1",
                 "LIF <-> Linear loop (RLeaky)", "IF, r = 1"):
        value = rows[name]["importer"]
        assert isinstance(value, float) and value < 0.99, (name, value)
    for name in ("LIF, v_leak = 0.3", "LIF, per-neuron v_th", "LI"):
        assert str(rows[name]["importer"]).startswith("refused"), name


def _markdown(rows: list[dict[str, object]]) -> str:
    def fmt(value: object) -> str:
        return f"{100 * value:.3f} %" if isinstance(value, float) else str(value)

    lines = ["| case | reference firing rate | this target | snnTorch importer | why the "
             "importer differs |", "|---|---|---|---|---|"]
    for row in rows:
        rate = "(membrane)" if isinstance(row["ours"], str) else f"{row['rate']:.3f}"
        lines.append(f"| {row['case']} | {rate} | {fmt(row['ours'])} | "
                     f"{fmt(row['importer'])} | {row['why']} |")
    return "\n".join(lines)


def rounding_table(steps: int = 1000, batch: int = 16, n: int = 100) -> list[str]:
    """Spike flips of this target against the reference, per node case and reset, summed
    over gt/ge thresholds and Euler/exponential integration (4 runs of steps*batch*n)."""
    builders: dict[str, Callable[[], nir.NIRNode]] = {
        "LIF scalar": lambda: lif(n),
        "LIF per-neuron (r, v_leak, v_reset)": lambda: lif_per_neuron(n),
        "CubaLIF scalar": lambda: cuba(n),
        "CubaLIF per-neuron (r, v_leak, v_reset, w_in)": lambda: cuba_per_neuron(n),
        "IF": lambda: nir.IF(r=_full(n, 300.0), v_threshold=_full(n, 1.0),
                             v_reset=_full(n, 0.0)),
        "LIF <-> Linear (RLeaky)": lambda: lif_per_neuron(n),
        "CubaLIF <-> Linear (RSynaptic / Synaptic)": lambda: cuba_per_neuron(n),
    }
    x = (torch.rand(steps, batch, 10, generator=torch.Generator().manual_seed(40)) < 0.3)
    lines = ["| case | reset | float32: flips / spike entries | float64 |", "|---|---|---|---|"]
    for k, (name, build) in enumerate(builders.items()):
        for reset in ("value", "subtract"):
            flips = {"float32": 0, "float64": 0}
            total = 0
            for threshold in ("gt", "ge"):
                for integration in ("euler", "exponential"):
                    loop = _loop("Linear", n) if "<->" in name else None
                    graph = _graph(build(), n=n, seed=k, loop=loop, reset=reset,
                                   threshold=threshold, integration=integration)
                    for dtype in flips:
                        ref, ours = _both(graph, x.float(), dtype=dtype)
                        flips[dtype] += int((ref["output"] != ours["output"]).sum())
                    total += ref["output"].numel()
            lines.append(f"| {name} | {reset} | {flips['float32']} / {total:,} | "
                         f"{flips['float64']} / {total:,} |")
    return lines


def export_table(steps: int = 1000) -> list[str]:
    """Exported snnTorch models: the reference (via the dialect) and this target against the
    snnTorch model's own hidden and output spikes."""
    x = _inputs(10, seed=41, steps=steps)
    lines = ["| exported model | hidden layer: reference | output: reference | output: this "
             "target |", "|---|---|---|---|"]
    for kind in EXPORTS:
        raw, want, want_hidden = _export_and_simulate(kind, x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = normalize(raw).graph
        hidden = _hidden_name(graph)
        ref = nrf_nir.run(graph, x, device=CPU, record=(hidden,))
        ours = nrf_nir.run(graph, x, target="snntorch", device=CPU)
        lines.append(f"| {kind} | {100 * agreement(ref[hidden], want_hidden):.4f} % | "
                     f"{100 * agreement(ref['output'], want):.4f} % | "
                     f"{100 * agreement(ours['output'], want):.4f} % |")
    return lines


if __name__ == "__main__":  # regenerate the tables of docs/targets/snntorch.md
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    torch.set_num_threads(1)
    print(_markdown(importer_table()))
    print()
    print("\n".join(rounding_table()))
    print()
    print("\n".join(export_table()))
