"""The ``norse`` target equals the reference bit for bit (float32, CPU) on every node type,
both reset modes where Norse has them, scalar and per-neuron parameters, recurrent, nested,
multi-input and multi-output graphs and random compositions; and it refuses, naming node and
field, what Norse cannot express (docs/targets/norse.md).

Weights and inputs are ordinary random floats (not dyadic): the norse target runs every matrix
product on the same shapes as the reference, so even those agree bit for bit.
"""

from __future__ import annotations

import subprocess
import sys

import nir
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nrf_nir
from nrf_nir.validate import Identity

pytest.importorskip("norse")
from nrf_nir.targets.norse import NorseNetwork  # noqa: E402

T, B = 200, 8
DT = 1e-3
SPIKING = (nir.IF, nir.LIF, nir.CubaLIF)


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------

def _param(value: float, n: int | tuple[int, ...] | None, rng=None, spread: float = 0.0):
    """A scalar (0-d) parameter when ``n`` is None, else per neuron around ``value``."""
    if n is None:
        return np.asarray(value, dtype=np.float64)
    shape = (n,) if isinstance(n, int) else n
    if rng is None or spread == 0.0:
        return np.full(shape, value, dtype=np.float64)
    return value * (1.0 + spread * rng.uniform(-1, 1, shape))


def neuron(kind: str, n, *, rng=None, tau: float = 0.01, r: float = 1.0, v_leak: float = 0.0,
           v_th: float = 1.0, v_reset: float = 0.0, tau_syn: float = 0.005,
           w_in: float = 1.0, spread: float = 0.0) -> nir.NIRNode:
    """A neuron with scalar (n None) or per-neuron (n int/shape, varied by ``spread``) params."""
    def p(value, vary=True):
        return _param(value, n, rng, spread if vary else 0.0)

    r_ = p(r, vary=r != 1.0)  # r = 1 stays exactly 1 (the Cuba cells need it)
    if kind == "LIF":
        return nir.LIF(tau=p(tau), r=r_, v_leak=p(v_leak), v_threshold=p(v_th),
                       v_reset=p(v_reset, vary=v_reset != 0))
    if kind == "LI":
        return nir.LI(tau=p(tau), r=r_, v_leak=p(v_leak))
    if kind == "IF":
        return nir.IF(r=r_, v_threshold=p(v_th), v_reset=p(v_reset, vary=v_reset != 0))
    if kind == "I":
        return nir.I(r=r_)
    if kind == "CubaLIF":
        return nir.CubaLIF(tau_syn=p(tau_syn), tau_mem=p(tau), r=r_, v_leak=p(v_leak),
                           v_threshold=p(v_th), v_reset=p(v_reset, vary=v_reset != 0),
                           w_in=p(w_in))
    if kind == "CubaLI":
        return nir.CubaLI(tau_syn=p(tau_syn), tau_mem=p(tau), r=r_, v_leak=p(v_leak),
                          w_in=p(w_in))
    raise AssertionError(kind)


def graph(nodes: dict, edges: list, dt: float | None = DT, **meta) -> nir.NIRGraph:
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    g.metadata = dict(meta)
    if dt is not None:
        g.metadata["dt"] = dt
    return g


def chain(shape, *layers, **meta) -> nir.NIRGraph:
    """input -> layers (named l0, l1, ...) -> output."""
    nodes = {"input": nir.Input(input_type=np.array(shape))}
    names = ["input"]
    for k, layer in enumerate(layers):
        nodes[f"l{k}"] = layer
        names.append(f"l{k}")
    nodes["output"] = nir.Output(output_type=None)
    names.append("output")
    return graph(nodes, list(zip(names[:-1], names[1:], strict=True)), **meta)


def dense(n_out: int, n_in: int, rng, gain: float = 2.0, bias: bool = True) -> nir.NIRNode:
    w = rng.normal(0, gain / np.sqrt(n_in), (n_out, n_in))
    if bias:
        return nir.Affine(weight=w, bias=rng.normal(0.2, 0.3, n_out))
    return nir.Linear(weight=w)


def currents(shape, seed: int = 0, mean: float = 1.0, t: int = T, b: int = B) -> np.ndarray:
    """Random float32 input currents ``[t, b, *shape]`` (non-dyadic)."""
    rng = np.random.default_rng(seed)
    return (mean + rng.normal(0, 1.0, (t, b, *shape))).astype(np.float32)


def spikes(shape, seed: int = 0, rate: float = 0.3, t: int = T, b: int = B) -> np.ndarray:
    return (np.random.default_rng(seed).random((t, b, *shape)) < rate).astype(np.float32)


def same(g: nir.NIRGraph, x, record=(), dtype=torch.float32, **options) -> dict:
    """Run the reference and the norse target; assert every result is bit for bit equal."""
    want = nrf_nir.run(g, x, dtype=dtype, record=record, device="cpu")
    got = nrf_nir.run(g, x, target="norse", dtype=dtype, record=record, device="cpu",
                      **options)
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        if not torch.equal(got[key], want[key]):
            diff = int((got[key] != want[key]).sum())
            raise AssertionError(f"{key}: {diff} of {want[key].numel()} values differ")
    return want


def active(z: torch.Tensor) -> None:
    """Spike trains that are neither silent nor saturated (so the comparison means something)."""
    rate = float(z.mean())
    assert 0.0 < rate < 1.0, rate


def pairs(violations) -> set[tuple[str | None, str | None]]:
    assert all(v.target == "norse" for v in violations)
    return {(v.node, v.field) for v in violations}


# ---------------------------------------------------------------------------------------------
# neurons, one at a time
# ---------------------------------------------------------------------------------------------

N = 6
RNG = np.random.default_rng(1234)


@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("reset", ["value", "subtract"])
@pytest.mark.parametrize("initial_state", ["leak", "zero"])
def test_lif(per_neuron, reset, initial_state):
    n = N if per_neuron else None
    v_reset = 0.0 if reset == "subtract" else -0.1
    lif = neuron("LIF", n, rng=RNG, tau=0.012, r=1.3, v_leak=0.15, v_th=1.0, v_reset=v_reset,
                 spread=0.3)
    g = chain((N,), lif, reset=reset, initial_state=initial_state)
    out = same(g, currents((N,), seed=1), record=("l0.v",))
    active(out["output"])


@pytest.mark.parametrize("r, v_leak", [(1.0, 0.0), (0.7, 0.3)])
def test_lif_unit_resistance_and_zero_leak(r, v_leak):
    lif = neuron("LIF", N, rng=RNG, tau=0.008, r=r, v_leak=v_leak, spread=0.2)
    out = same(chain((N,), lif), currents((N,), seed=2, mean=1.5), record=("l0.v",))
    active(out["output"])


@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("initial_state", ["leak", "zero"])
def test_li(per_neuron, initial_state):
    li = neuron("LI", N if per_neuron else None, rng=RNG, tau=0.02, r=0.8, v_leak=-0.2,
                spread=0.4)
    same(chain((N,), li, initial_state=initial_state), currents((N,), seed=3), record=("l0.v",))


@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("initial_state", ["leak", "zero"])
@pytest.mark.parametrize("w_in", [1.0, 1.7])
def test_cuba_lif(per_neuron, initial_state, w_in):
    cuba = neuron("CubaLIF", N if per_neuron else None, rng=RNG, tau=0.01, tau_syn=0.004,
                  v_leak=0.1, v_th=0.9, v_reset=-0.05, w_in=w_in, spread=0.3)
    out = same(chain((N,), cuba, initial_state=initial_state), currents((N,), seed=4, mean=2),
               record=("l0.v", "l0.i"))
    active(out["output"])


@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
def test_cuba_li(per_neuron):
    cuba = neuron("CubaLI", N if per_neuron else None, rng=RNG, tau=0.015, tau_syn=0.003,
                  v_leak=0.25, w_in=0.6, spread=0.3)
    same(chain((N,), cuba), currents((N,), seed=5), record=("l0.v", "l0.i"))


@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("r", [1000.0, 37.3])  # r = 1/dt: the input scale dt*r is exactly 1
def test_if(per_neuron, r):
    iaf = neuron("IF", N if per_neuron else None, rng=RNG, r=r, v_th=2.5, v_reset=0.3,
                 spread=0.3)
    out = same(chain((N,), iaf), currents((N,), seed=6, mean=0.5), record=("l0.v",))
    active(out["output"])


@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
def test_i(per_neuron):
    integ = neuron("I", N if per_neuron else None, rng=RNG, r=3.7, spread=0.5)
    same(chain((N,), integ), currents((N,), seed=7, mean=0.0), record=("l0.v",))


def test_per_channel_parameters_broadcast():
    """[C, 1, 1] parameters on a [C, H, W] layer (NumPy broadcasting)."""
    rng = np.random.default_rng(8)
    lif = nir.LIF(tau=rng.uniform(0.005, 0.02, (3, 1, 1)), r=np.ones((3, 1, 1)),
                  v_leak=np.zeros((3, 1, 1)), v_threshold=rng.uniform(0.8, 1.2, (3, 1, 1)),
                  v_reset=np.zeros((3, 1, 1)))
    out = same(chain((3, 4, 5), lif), currents((3, 4, 5), seed=8, t=60))
    active(out["output"])


# ---------------------------------------------------------------------------------------------
# stateless nodes and delays
# ---------------------------------------------------------------------------------------------

def test_dense_scale_threshold():
    rng = np.random.default_rng(10)
    g = chain((5,), dense(7, 5, rng), nir.Scale(scale=rng.normal(1, 0.5, 7)),
              nir.Linear(weight=rng.normal(0, 1, (4, 7))),
              nir.Threshold(threshold=rng.normal(0, 0.5, 4)))
    active(same(g, currents((5,), seed=10))["output"])


@pytest.mark.parametrize("threshold", ["gt", "ge"])
def test_threshold_node_both_comparisons(threshold):
    """A Threshold node is a torch module, so 'ge' is expressible there; integer-valued inputs
    hit the threshold exactly."""
    g = chain((4,), nir.Threshold(threshold=np.array([0.0, 1.0, 2.0, -1.0])),
              threshold=threshold)
    x = np.random.default_rng(11).integers(-2, 3, (50, B, 4)).astype(np.float32)
    assert nrf_nir.check(g, "norse") == []
    same(g, x)


@pytest.mark.parametrize("padding, stride, dilation, groups", [
    (1, 1, 1, 1), ("same", 1, 1, 2), ("valid", 2, 1, 1), (2, 1, 2, 2), ((1, 0), (2, 1), 1, 1)])
def test_conv2d_pool_flatten(padding, stride, dilation, groups):
    rng = np.random.default_rng(12)
    conv = nir.Conv2d(input_shape=None, weight=rng.normal(0, 0.6, (4, 4 // groups, 3, 3)),
                      stride=stride, padding=padding, dilation=dilation, groups=groups,
                      bias=rng.normal(0.3, 0.2, 4))
    lif = nir.LIF(tau=np.full((4, 1, 1), 0.01), r=np.ones((4, 1, 1)), v_leak=np.zeros((4, 1, 1)),
                  v_threshold=np.ones((4, 1, 1)), v_reset=np.zeros((4, 1, 1)))
    g = chain((4, 9, 9), conv, lif, nir.SumPool2d(kernel_size=2, stride=1, padding=0),
              nir.AvgPool2d(kernel_size=2, stride=2, padding=1),
              nir.Flatten(start_dim=0, end_dim=-1, input_type=None))
    out = same(g, currents((4, 9, 9), seed=12, t=60), record=("l1",))
    active(out["l1"])


def test_conv1d_without_bias():
    rng = np.random.default_rng(13)
    conv = nir.Conv1d(input_shape=None, weight=rng.normal(0, 0.7, (3, 2, 5)), stride=1,
                      padding="same", dilation=1, groups=1, bias=np.zeros(3))
    g = chain((2, 10), conv, neuron("CubaLIF", (3, 1), v_th=0.5),
              nir.Flatten(start_dim=0, end_dim=1, input_type=None))
    active(same(g, currents((2, 10), seed=13, t=100))["output"])


@pytest.mark.parametrize("delay", [np.array(0.003), np.array([0.0, 0.001, 0.004, 0.0025])])
def test_delay(delay):
    g = chain((4,), nir.Delay(delay=delay), neuron("LIF", 4))
    same(g, currents((4,), seed=14), record=("l0",))


# ---------------------------------------------------------------------------------------------
# graph structure
# ---------------------------------------------------------------------------------------------

def recurrent_cell(kind: str, n_in: int, n: int, rng) -> nir.NIRGraph:
    """LIFRecurrentCell-like subgraph: input -> w_in -> neuron -> output, neuron -> w_rec ->
    neuron (the recurrent edge carries the previous step's spikes)."""
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_in])),
               "w_in": nir.Linear(weight=rng.normal(0, 2 / np.sqrt(n_in), (n, n_in))),
               "lif": neuron(kind, n, rng=rng, v_th=1.0, spread=0.2),
               "w_rec": nir.Linear(weight=rng.normal(0, 1.0, (n, n))),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
               ("lif", "output")],
        type_check=False)


@pytest.mark.parametrize("kind", ["CubaLIF", "LIF", "IF"])
def test_nested_recurrent_cell(kind):
    rng = np.random.default_rng(20)
    g = graph({"input": nir.Input(input_type=np.array([5])),
               "rnn": recurrent_cell(kind, 5, 10, rng),
               "readout": nir.Linear(weight=rng.normal(0, 1, (3, 10))),
               "li": neuron("CubaLI", 3),
               "output": nir.Output(output_type=np.array([3]))},
              [("input", "rnn"), ("rnn", "readout"), ("readout", "li"), ("li", "output")])
    if kind == "IF":
        g.nodes["rnn"].nodes["lif"] = neuron("IF", 10, r=1000.0, v_th=1.0)
    out = same(g, currents((5,), seed=20, mean=0.5),
               record=("rnn.lif", "rnn.lif.v", "li.v", "li.i", "rnn.w_rec"))
    active(out["rnn.lif"])


def test_self_loop_and_loop_through_delay():
    """A neuron feeding itself directly, and a loop lif -> delay -> scale -> lif."""
    rng = np.random.default_rng(21)
    g = graph({"input": nir.Input(input_type=np.array([4])),
               "w": dense(4, 4, rng),
               "a": neuron("CubaLIF", 4, rng=rng, v_th=0.8, spread=0.2),
               "b": neuron("LIF", 4, rng=rng, r=4.0, spread=0.2),
               "d": nir.Delay(delay=np.array([0.0, 0.001, 0.002, 0.005])),
               "s": nir.Scale(scale=np.array([-0.5, 0.7, -1.2, 0.3])),
               "out_a": nir.Output(output_type=np.array([4])),
               "out_b": nir.Output(output_type=np.array([4]))},
              [("input", "w"), ("w", "a"), ("a", "a"), ("a", "b"), ("b", "d"), ("d", "s"),
               ("s", "b"), ("a", "out_a"), ("b", "out_b")])
    out = same(g, currents((4,), seed=21, mean=0.3), record=("a.v", "a.i", "b.v", "d"))
    active(out["out_a"])
    active(out["out_b"])


def test_cuba_current_jumps_once_per_edge_in_edge_order():
    """Three edges into a CubaLIF: ``i = ((i + a) + b) + c``.  The same graph with the edges
    summed first (an Identity in between: ``i + ((a + b) + c)``) differs, so the test can tell
    the two orders apart."""
    rng = np.random.default_rng(22)
    sources = {f"w{k}": dense(5, 3, rng, gain=3.0) for k in range(3)}
    per_edge = graph({"input": nir.Input(input_type=np.array([3])), **sources,
                      "c": neuron("CubaLIF", 5, rng=rng, w_in=1.3, spread=0.2),
                      "output": nir.Output(output_type=np.array([5]))},
                     [("input", "w0"), ("input", "w1"), ("input", "w2"), ("w2", "c"),
                      ("w0", "c"), ("w1", "c"), ("c", "output")])
    x = currents((3,), seed=22, mean=0.2)
    out = same(per_edge, x, record=("c.v", "c.i"))
    active(out["output"])
    merge = Identity(input_type={"input": np.array([5])})
    summed = graph({**per_edge.nodes, "sum": merge},
                   [("input", "w0"), ("input", "w1"), ("input", "w2"), ("w2", "sum"),
                    ("w0", "sum"), ("w1", "sum"), ("sum", "c"), ("c", "output")])
    other = same(summed, x, record=("c.i",))
    assert not torch.equal(other["c.i"], out["c.i"])


def test_multi_input_multi_output():
    rng = np.random.default_rng(23)
    g = graph({"x1": nir.Input(input_type=np.array([3])),
               "x2": nir.Input(input_type=np.array([2, 2])),
               "flat": nir.Flatten(start_dim=0, end_dim=1, input_type=None),
               "w1": dense(6, 3, rng), "w2": dense(6, 4, rng, bias=False),
               "lif": neuron("LIF", 6, rng=rng, v_leak=0.1, spread=0.3),
               "cuba": neuron("CubaLI", 6, rng=rng, spread=0.3),
               "y1": nir.Output(output_type=np.array([6])),
               "y2": nir.Output(output_type=np.array([6]))},
              [("x1", "w1"), ("x2", "flat"), ("flat", "w2"), ("w1", "lif"), ("w2", "lif"),
               ("lif", "cuba"), ("w2", "cuba"), ("lif", "y1"), ("cuba", "y2")])
    x = {"x1": currents((3,), seed=23), "x2": spikes((2, 2), seed=24)}
    out = same(g, x, record=("w2",))
    active(out["y1"])


def test_float64_stepwise_and_small_chunks():
    rng = np.random.default_rng(25)
    g = graph({"input": nir.Input(input_type=np.array([5])),
               "rnn": recurrent_cell("CubaLIF", 5, 8, rng),
               "w": dense(3, 8, rng), "lif": neuron("LIF", 3),
               "output": nir.Output(output_type=np.array([3]))},
              [("input", "rnn"), ("rnn", "w"), ("w", "lif"), ("lif", "output")])
    x = currents((5,), seed=25, t=60)
    same(g, x, dtype=torch.float64, record=("rnn.lif.v",))
    # stepwise / chunked runs compare with the reference run the same way
    want = nrf_nir.run(g, x, stepwise=True)
    assert torch.equal(nrf_nir.run(g, x, target="norse", stepwise=True)["output"],
                       want["output"])
    want = nrf_nir.run(g, x, chunk_bytes=4096)
    assert torch.equal(nrf_nir.run(g, x, target="norse", chunk_bytes=4096)["output"],
                       want["output"])


def test_module_continues_from_its_state():
    """``NorseNetwork`` is an nn.Module: two calls passing the state equal one call (spike
    inputs and dyadic weights keep the products exact whatever the number of rows)."""
    rng = np.random.default_rng(26)
    w = np.round(rng.normal(0, 1, (4, 3)) * 8) / 8
    g = chain((3,), nir.Linear(weight=w), neuron("CubaLIF", 4, v_th=0.3))
    lowered = nrf_nir.lower(g, "norse", device="cpu")
    net = lowered.backend
    assert isinstance(net, NorseNetwork) and isinstance(net, torch.nn.Module)
    x = torch.as_tensor(spikes((3,), seed=26, t=80))
    full, _ = net(x)
    first, state = net(x[:30])
    second, _ = net(x[30:], state)
    assert torch.equal(torch.cat([first["output"], second["output"]]), full["output"])
    assert torch.equal(full["output"], nrf_nir.run(g, x)["output"])


def test_record_errors_and_unknown_option():
    g = chain((3,), neuron("LIF", 3))
    with pytest.raises(nrf_nir.NIRError, match="cannot record"):
        nrf_nir.run(g, currents((3,), t=5), target="norse", record=("l0.i",))
    with pytest.raises(nrf_nir.NIRError, match="unknown option"):
        nrf_nir.run(g, currents((3,), t=5), target="norse", chunks=3)


def test_import_prints_nothing():
    proc = subprocess.run([sys.executable, "-W", "error", "-c", "import nrf_nir.targets.norse"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr


def test_registered_and_available():
    assert "norse" in nrf_nir.targets.available()


# ---------------------------------------------------------------------------------------------
# what Norse cannot express
# ---------------------------------------------------------------------------------------------

def zoo(r: float = 1.0, v_reset: float = 0.0, **meta) -> nir.NIRGraph:
    """Every neuron kind in parallel branches, one of them inside a subgraph."""
    sub = nir.NIRGraph(nodes={"i": nir.Input(input_type=np.array([3])),
                              "cuba": neuron("CubaLIF", 3, r=r, v_reset=v_reset),
                              "o": nir.Output(output_type=np.array([3]))},
                       edges=[("i", "cuba"), ("cuba", "o")], type_check=False)
    kinds = {"lif": "LIF", "li": "LI", "iaf": "IF", "integ": "I", "culi": "CubaLI"}
    nodes: dict = {"input": nir.Input(input_type=np.array([3])), "g": sub,
                   "th": nir.Threshold(threshold=np.ones(3))}
    edges: list = [("input", "g"), ("input", "th"), ("g", "y_g"), ("th", "y_th")]
    nodes["y_g"] = nir.Output(output_type=np.array([3]))
    nodes["y_th"] = nir.Output(output_type=np.array([3]))
    for name, kind in kinds.items():
        if kind in ("LIF", "IF"):
            nodes[name] = neuron(kind, 3, r=1000.0 if kind == "IF" else 1.0, v_reset=v_reset)
        else:
            nodes[name] = neuron(kind, 3, r=r if kind == "CubaLI" else 1.0)
        nodes[f"y_{name}"] = nir.Output(output_type=np.array([3]))
        edges += [("input", name), (name, f"y_{name}")]
    return graph(nodes, edges, **meta)


def test_default_semantics_have_no_violations():
    g = zoo()
    assert nrf_nir.check(g, "norse") == []
    out = same(g, currents((3,), seed=30))
    active(out["y_lif"])


@pytest.mark.parametrize("meta, expected", [
    ({"integration": "exponential"},
     {("lif", "integration"), ("li", "integration"), ("culi", "integration"),
      ("g.cuba", "integration")}),
    ({"threshold": "ge"},
     {("lif", "threshold"), ("iaf", "threshold"), ("g.cuba", "threshold")}),
    ({"reset": "subtract"}, {("iaf", "reset"), ("g.cuba", "reset")}),
], ids=["exponential", "ge", "subtract"])
def test_semantics_violations(meta, expected):
    g = zoo(**meta)
    violations = nrf_nir.check(g, "norse")
    assert pairs(violations) == expected
    assert all(str(v).startswith("[norse]") for v in violations)
    with pytest.raises(nrf_nir.NIRError, match="cannot run this graph"):
        nrf_nir.run(g, currents((3,), t=5), target="norse")


def test_parameter_violations():
    g = zoo(r=2.0, v_reset=0.5, reset="subtract")
    assert pairs(nrf_nir.check(g, "norse")) == {
        ("iaf", "reset"), ("g.cuba", "reset"), ("g.cuba", "r"), ("culi", "r"),
        ("lif", "v_reset")}
    with pytest.raises(nrf_nir.NIRError, match="v_reset"):
        nrf_nir.run(g, currents((3,), t=5), target="norse")
    # value reset: only the Cuba resistances remain
    assert pairs(nrf_nir.check(zoo(r=2.0, v_reset=0.5), "norse")) == {
        ("g.cuba", "r"), ("culi", "r")}


def test_expressible_corners():
    """Exponential integration touches no IF/I; 'ge' touches no Threshold/LI; a subtract reset
    with v_reset == 0 is Norse's reset_subtract."""
    g = chain((3,), neuron("IF", 3, r=1000.0, v_th=2.0), neuron("I", 3),
              integration="exponential")
    assert nrf_nir.check(g, "norse") == []
    same(g, currents((3,), seed=31, t=50))
    g = chain((3,), neuron("LI", 3), nir.Threshold(threshold=np.full(3, 0.5)), threshold="ge")
    assert nrf_nir.check(g, "norse") == []
    same(g, currents((3,), seed=32, t=50))


# ---------------------------------------------------------------------------------------------
# random compositions
# ---------------------------------------------------------------------------------------------

def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _random_neuron(rng, kinds, n, reset, dt):
    kind = _pick(rng, kinds)
    shape = None if rng.random() < 0.4 else n
    v_reset = 0.0 if reset == "subtract" or rng.random() < 0.5 else float(rng.uniform(-0.3, 0.3))
    cuba = kind.startswith("Cuba")
    return kind, neuron(
        kind, shape, rng=rng, tau=float(rng.uniform(2, 12)) * dt,  # fast: T is short
        # IF/I integrate (dt*r)*x: r of order 1/dt
        r=(1.0 if cuba or rng.random() < 0.4 else float(rng.uniform(0.5, 2.0)))
        * (1.0 / dt if kind in ("IF", "I") else 1.0),
        v_leak=0.0 if rng.random() < 0.5 else float(rng.uniform(-0.2, 0.4)),
        v_th=float(rng.uniform(0.5, 1.5)), v_reset=v_reset,
        tau_syn=float(rng.uniform(1, 5)) * dt,
        w_in=1.0 if rng.random() < 0.5 else float(rng.uniform(0.5, 2.0)), spread=0.3)


@st.composite
def random_network(draw):
    """A random composition of every node type the target supports, under random expressible
    semantics.  Hypothesis draws the seed, T and B; a numpy generator builds the graph."""
    seed = draw(st.integers(0, 2**31 - 1))
    steps, batch = draw(st.integers(10, 40)), draw(st.integers(1, 5))
    rng = np.random.default_rng([seed, steps, batch])
    dt = _pick(rng, [5e-4, 1e-3, 2e-3])
    reset = _pick(rng, ["value", "subtract"])
    meta = {"reset": reset, "initial_state": _pick(rng, ["leak", "zero"]), "threshold": "gt"}
    kinds = ["LIF", "LI", "CubaLI", "I"] + (["IF", "CubaLIF"] if reset == "value" else [])
    spiking_kinds = [k for k in kinds if k in ("LIF", "IF", "CubaLIF")]
    nodes: dict = {}
    edges: list = []
    inputs: dict = {}
    counter = iter(range(1000))

    def add(node, *srcs):
        name = f"n{next(counter)}"
        nodes[name] = node
        edges.extend((s, name) for s in srcs)
        return name

    conv = rng.random() < 0.3
    if conv:  # [C, H, W] front end: conv -> neuron -> pool -> flatten
        c_in = int(rng.integers(1, 3))
        nodes["input"] = nir.Input(input_type=np.array([c_in, 6, 6]))
        inputs["input"] = currents((c_in, 6, 6), seed=seed % 997, mean=0.5, t=steps, b=batch)
        c_out = int(rng.integers(1, 4))
        padding = _pick(rng, [0, 1, "same"])
        cv = nir.Conv2d(input_shape=None, weight=rng.normal(0, 1.0, (c_out, c_in, 3, 3)),
                        stride=1, padding=padding, dilation=1, groups=1,
                        bias=rng.normal(0.3, 0.2, c_out) if rng.random() < 0.7
                        else np.zeros(c_out))
        x = add(cv, "input")
        shape = (c_out, *((6, 6) if padding in (1, "same") else (4, 4)))
        kind, nrn = _random_neuron(rng, spiking_kinds, (c_out, 1, 1), reset, dt)
        x = add(nrn, x)
        pool = (nir.SumPool2d if rng.random() < 0.5 else nir.AvgPool2d)(
            kernel_size=2, stride=2, padding=0)
        x = add(pool, x)
        x = add(nir.Flatten(start_dim=0, end_dim=-1, input_type=None), x)
        prev, prev_n = x, c_out * (shape[1] // 2) * (shape[2] // 2)
    else:
        prev_n = int(rng.integers(1, 5))
        nodes["input"] = nir.Input(input_type=np.array([prev_n]))
        inputs["input"] = currents((prev_n,), seed=seed % 997, mean=0.5, t=steps, b=batch)
        prev = "input"
    second = rng.random() < 0.4
    if second:
        nodes["input2"] = nir.Input(input_type=np.array([2]))
        inputs["input2"] = spikes((2,), seed=seed % 991, t=steps, b=batch)
    outputs = 0
    for k in range(int(rng.integers(1, 4))):
        n = int(rng.integers(1, 7))
        # later layers receive sparse spikes: a larger gain keeps them active
        w = add(dense(n, prev_n, rng, gain=2.5 if k == 0 else 5.0, bias=rng.random() < 0.5),
                prev)
        kind, nrn = _random_neuron(rng, kinds, n, reset, dt)
        structure = _pick(rng, ["plain", "recurrent", "self", "nested", "delayed"])
        srcs = [w]
        if k == 0 and second:
            srcs.append(add(dense(n, 2, rng, bias=False), "input2"))
        if structure == "nested":
            name = f"cell{k}"
            sub = {"x": nir.Input(input_type=np.array([n])), "neuron": nrn,
                   "rec": nir.Linear(weight=rng.normal(0, 1.0, (n, n))),
                   "y": nir.Output(output_type=np.array([n]))}
            sub_edges = [("x", "neuron"), ("neuron", "rec"), ("rec", "neuron"),
                         ("neuron", "y")]
            nodes[name] = nir.NIRGraph(nodes=sub, edges=sub_edges, type_check=False)
            # several edges into the subgraph's Input are summed there
            edges.extend((s, name) for s in srcs)
            x = name
        else:
            x = add(nrn, *srcs)
            if structure == "recurrent":
                edges.append((add(nir.Linear(weight=rng.normal(0, 1.0, (n, n))), x), x))
            elif structure == "self":
                edges.append((x, x))
            elif structure == "delayed":
                d = add(nir.Delay(delay=rng.integers(0, 3, n) * dt), x)
                edges.append((add(nir.Scale(scale=rng.normal(0, 1.0, n)), d), x))
        post = _pick(rng, ["none", "scale", "delay", "threshold"])
        if post == "scale":
            x = add(nir.Scale(scale=rng.normal(1, 0.5, n)), x)
        elif post == "delay":
            x = add(nir.Delay(delay=np.array(int(rng.integers(0, 4)) * dt)), x)
        elif post == "threshold":
            x = add(nir.Threshold(threshold=rng.normal(0.3, 0.3, n)), x)
        if rng.random() < 0.4:
            nodes[f"out{k}"] = nir.Output(output_type=np.array([n]))
            edges.append((x, f"out{k}"))
            outputs += 1
        prev, prev_n = x, n
    nodes["output"] = nir.Output(output_type=np.array([prev_n]))
    edges.append((prev, "output"))
    perm = rng.permutation(len(edges))  # edge order is part of the graph
    g = graph(nodes, [edges[i] for i in perm], dt=dt, **meta)
    return g, inputs


def _state_names(g: nir.NIRGraph, prefix: str = "") -> tuple[str, ...]:
    names: list[str] = []
    for name, node in g.nodes.items():
        if isinstance(node, nir.NIRGraph):
            names += _state_names(node, prefix + name + ".")
        elif isinstance(node, (nir.LIF, nir.LI, nir.IF, nir.I, nir.CubaLIF, nir.CubaLI)):
            names.append(prefix + name + ".v")
            if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
                names.append(prefix + name + ".i")
    return tuple(names)


@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_network())
def test_property_norse_equals_reference(case):
    g, inputs = case
    assert nrf_nir.check(g, "norse") == []
    same(g, inputs, record=_state_names(g))


def test_property_generator_spikes_sometimes():
    """Guard for the property test: most spiking neurons of the 25 draws are neither silent
    nor saturated."""
    rates: list[float] = []

    @settings(max_examples=25, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(random_network())
    def collect(case):
        g, inputs = case
        flat = nrf_nir.validate(g).flat
        names = [n for n, node in flat.nodes.items() if isinstance(node, SPIKING)]
        out = nrf_nir.run(g, inputs, record=names)
        rates.extend(float(out[n].mean()) for n in names)

    collect()
    rates_arr = np.array(rates)
    assert len(rates_arr) >= 15
    assert np.mean((rates_arr > 0.0) & (rates_arr < 1.0)) > 0.6, rates_arr


def test_fine_tune_and_export_again(tmp_path):
    """Import a NIR file into Norse, train its weights (``grad=True``), export it again: the
    re-exported file keeps the nesting, metadata and neurons, carries the trained weights and
    the reference reproduces the trained network bit for bit."""
    rng = np.random.default_rng(0)
    cell = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([6])),
               "lif": nir.CubaLIF(tau_syn=np.full(6, 0.005), tau_mem=np.full(6, 0.01),
                                  r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.ones(6),
                                  v_reset=np.zeros(6)),
               "rec": nir.Linear(weight=rng.normal(0, 0.3, (6, 6))),
               "output": nir.Output(output_type=np.array([6]))},
        edges=[("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")],
        type_check=False)
    g = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([5])),
               "fc": nir.Affine(weight=rng.normal(0.5, 1.0, (6, 5)), bias=np.full(6, 0.1)),
               "rnn": cell,
               "out": nir.Linear(weight=rng.normal(0.2, 0.5, (3, 6))),
               "li": nir.LI(tau=np.full(3, 0.02), r=np.ones(3), v_leak=np.zeros(3)),
               "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "fc"), ("fc", "rnn"), ("rnn", "out"), ("out", "li"), ("li", "output")],
        type_check=False)
    g.metadata = {"dt": 1e-3, "reset": "value"}
    path = tmp_path / "model.nir"
    nrf_nir.save(g, path)
    net = nrf_nir.lower(str(path), "norse", surrogate="super").backend
    x = torch.from_numpy((rng.random((50, 8, 5)) < 0.3).astype(np.float32))
    # the surrogate changes gradients only: the same values as the default spike function
    plain, _ = nrf_nir.lower(str(path), "norse").backend(x, record=("rnn.lif",))
    first, _ = net(x, record=("rnn.lif",))
    assert all(torch.equal(first[k], plain[k]) for k in plain)
    with pytest.raises(nrf_nir.errors.NIRError, match="surrogate"):
        nrf_nir.lower(str(path), "norse", surrogate="magic")
    target = torch.linspace(0, 1, 3)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    before = net.layer("fc").weight.detach().clone()
    losses = []
    for _ in range(5):
        out, _ = net(x, grad=True)
        loss = ((out["output"].mean(dim=(0, 1)) - target) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        assert net.layer("fc").weight.grad is not None
        opt.step()
        losses.append(float(loss.detach()))
    assert not torch.equal(before, net.layer("fc").weight.detach())
    again = net.to_nir()
    assert isinstance(again.nodes["rnn"], nir.NIRGraph) and again.metadata == g.metadata
    assert np.array_equal(again.nodes["fc"].weight, net.layer("fc").weight.detach().numpy())
    assert np.array_equal(again.nodes["rnn"].nodes["rec"].weight,
                          net.layer("rnn.rec").weight.detach().numpy())
    assert np.array_equal(again.nodes["li"].tau, g.nodes["li"].tau)
    assert np.array_equal(again.nodes["rnn"].nodes["lif"].tau_mem, cell.nodes["lif"].tau_mem)
    out_path = tmp_path / "tuned.nir"
    nrf_nir.save(again, out_path)
    with torch.no_grad():
        want, _ = net(x, record=("rnn.lif",))
    got = nrf_nir.run(str(out_path), x, record=("rnn.lif",))
    for key in ("output", "rnn.lif"):
        assert torch.equal(got[key], want[key]), key
    assert float(want["rnn.lif"].sum()) > 0
