"""The one graph executor (``nrf_nir.runner``), without any framework: the shared torch
layers (``nrf_nir.layers``) only. Float64 with dyadic
values, so the reference's results are reproduced bit for bit whatever the chunking."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.layers import common_layer
from nrf_nir.runner import GraphRunner, StatefulLayer
from nrf_nir.semantics import Semantics
from nrf_nir.validate import validate

DT = 0.5
F64 = torch.float64


def graph() -> nir.NIRGraph:
    """input -> lin -> sc -> delay -> output, with a back edge delay -> back -> sc, and a
    Threshold on sc."""
    w = np.array([[1.0, -0.5, 0.25], [0.5, 0.5, -1.0]])
    nodes = {
        "input": nir.Input(input_type=np.array([3])),
        "lin": nir.Linear(weight=w),
        "sc": nir.Scale(scale=np.array([1.0, 2.0])),
        "delay": nir.Delay(delay=np.array([DT, 2 * DT])),
        "back": nir.Scale(scale=np.array([0.5, -0.25])),
        "th": nir.Threshold(threshold=np.array([0.5, 0.5])),
        "output": nir.Output(output_type=np.array([2])),
        "spikes": nir.Output(output_type=np.array([2])),
    }
    edges = [("input", "lin"), ("lin", "sc"), ("sc", "delay"), ("delay", "back"),
             ("back", "sc"), ("delay", "output"), ("sc", "th"), ("th", "spikes")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def runner(**options) -> GraphRunner:
    checked, sem = validate(graph()), Semantics(dt=DT)
    device = torch.device("cpu")
    layers = {name: common_layer(node, checked.params[name], checked.in_shapes[name],
                                 checked.out_shapes[name], sem, F64, device)
              for name, node in checked.flat.nodes.items()}
    assert all(layer is not None for layer in layers.values())
    return GraphRunner(checked, sem, layers, dtype=F64, device=device, **options)


def inputs(T: int = 40, B: int = 3) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.as_tensor(rng.integers(-4, 5, (T, B, 3)) / 4.0)


@pytest.mark.parametrize("options", [{}, {"stepwise": True}, {"chunk_bytes": 200},
                                     {"whole_time": True},
                                     {"whole_time": True, "chunk_bytes": 200}])
def test_runner_equals_the_reference(options):
    x = inputs()
    want = nrf_nir.run(graph(), x, dt=DT, dtype=F64, record=("sc", "back"))
    got, _ = runner(**options)(x, record=("sc", "back"))
    assert list(got) == list(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


def test_runner_continues_from_its_state():
    net, x = runner(), inputs()
    full, _ = net(x)
    first, state = net(x[:17])
    second, _ = net(x[17:], state)
    for key in full:
        assert torch.equal(torch.cat([first[key], second[key]]), full[key]), key


def test_hooks_on_a_layer_are_honoured():
    """The runner calls a layer's ``forward`` directly only while nothing hooks into it: a
    forward hook (a module's or a global one) is run, and what it returns is used."""
    net, x = runner(), inputs()
    want, _ = net(x)
    seen: list[int] = []

    def double(module, args, out):
        seen.append(1)
        return out * 2

    handle = net.layer("lin").register_forward_hook(double)
    try:
        got, _ = net(x)
    finally:
        handle.remove()
    assert seen and not torch.equal(got["output"], want["output"])
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.append(2))
    try:
        again, _ = net(x)
    finally:
        handle.remove()
    assert 2 in seen and torch.equal(again["output"], want["output"])


def test_a_continued_run_leaves_the_callers_state_as_it_was():
    """The reference's LIF updates its membrane in place (no copy per chunk): a state handed
    back by the caller is copied once, so the caller can run from it again."""
    lif = nir.LIF(tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2),
                  v_threshold=np.full(2, 1.0), v_reset=np.zeros(2))
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([3])),
                            "lin": nir.Linear(weight=np.ones((2, 3))), "lif": lif,
                            "output": nir.Output(output_type=np.array([2]))},
                     edges=[("input", "lin"), ("lin", "lif"), ("lif", "output")],
                     type_check=False)
    g.metadata = {"dt": 1e-3}
    net = nrf_nir.lower(g).backend
    x = torch.rand(30, 4, 3)
    full, _ = net(x)
    _, state = net(x[:12])
    kept = [v.clone() for v in state.nodes["lif"]]
    second, _ = net(x[12:], state)
    again, _ = net(x[12:], state)
    assert all(torch.equal(a, b) for a, b in zip(kept, state.nodes["lif"], strict=True))
    assert torch.equal(second["output"], full["output"][12:])
    assert torch.equal(again["output"], second["output"])


def test_runner_records_only_node_names_and_states():
    net = runner()
    assert isinstance(net.layer("delay"), StatefulLayer)
    with pytest.raises(nrf_nir.NIRError, match="cannot record 'delay.v'"):
        net(inputs(), record=("delay.v",))
    with pytest.raises(nrf_nir.NIRError, match="cannot record 'nothing'"):
        net(inputs(), record=("nothing",))
