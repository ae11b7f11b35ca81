"""Conformance cases: small node cases for every NIR node type of docs/semantics.md, with
parameter variations, and model cases. Everything is generated deterministically from seeds.

A case (``nrf_nir.cases.Case``, importable from here too) is a graph plus inputs
``[T, B, *shape]``; the reference's outputs on those inputs are what every target is compared
with. Model cases come from the case providers registered in ``nrf_nir.cases`` (the model zoo's
among them), which this package finds by location and never imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nir
import numpy as np

from nrf_nir.cases import Case, provided_cases
from nrf_nir.semantics import Semantics, write_semantics

DT = 1e-3


def _spikes(rng: np.random.Generator, shape: tuple[int, ...], rate: float = 0.25) -> np.ndarray:
    """Bernoulli spikes, float32; the size (``[T, B, *shape]``) is checked before allocating."""
    from nrf_nir.arrays import check_allocation

    check_allocation(shape, 12, "the generated input [T, B, *shape]", hint="lower --T or --B")
    return (rng.random(shape) < rate).astype(np.float32)


def _vec(rng: np.random.Generator, n: int, low: float, high: float, per_neuron: bool
         ) -> np.ndarray:
    if per_neuron:
        return rng.uniform(low, high, n)
    return np.full(n, (low + high) / 2)


def _neuron(kind: str, n: int, rng: np.random.Generator, per_neuron: bool,
            leak: bool = False) -> nir.NIRNode:
    tau = _vec(rng, n, 0.005, 0.02, per_neuron)
    tau_syn = _vec(rng, n, 0.002, 0.01, per_neuron)
    r = _vec(rng, n, 0.8, 1.2, per_neuron) if per_neuron else np.ones(n)
    v_leak = _vec(rng, n, -0.1, 0.1, per_neuron) if leak else np.zeros(n)
    v_th = _vec(rng, n, 0.5, 1.0, per_neuron)
    v_reset = _vec(rng, n, -0.2, 0.0, per_neuron) if per_neuron else np.zeros(n)
    if kind == "LIF":
        return nir.LIF(tau=tau, r=r, v_leak=v_leak, v_threshold=v_th, v_reset=v_reset)
    if kind == "CubaLIF":
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=v_leak, v_threshold=v_th,
                           v_reset=v_reset, w_in=np.ones(n))
    if kind == "LI":
        return nir.LI(tau=tau, r=r, v_leak=v_leak)
    if kind == "CubaLI":
        return nir.CubaLI(tau_syn=tau_syn, tau_mem=tau, r=r, v_leak=v_leak, w_in=np.ones(n))
    if kind == "IF":
        return nir.IF(r=r * 1000.0 * 0.2, v_threshold=v_th, v_reset=v_reset)
    if kind == "I":
        return nir.I(r=r * 10.0)
    raise ValueError(kind)


def _chain(nodes: list[tuple[str, nir.NIRNode]], in_shape: tuple[int, ...],
           semantics: Semantics) -> nir.NIRGraph:
    named: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(in_shape))}
    named.update(nodes)
    named["output"] = nir.Output(output_type=None)
    names = list(named)
    graph = nir.NIRGraph(nodes=named, edges=list(zip(names[:-1], names[1:], strict=True)),
                         type_check=False)
    return write_semantics(graph, semantics)


def _case(name: str, graph: nir.NIRGraph, rng: np.random.Generator, in_shape: tuple[int, ...],
          T: int, B: int, spiking: bool, tags: tuple[str, ...], rate: float = 0.25) -> Case:
    x = _spikes(rng, (T, B, *in_shape), rate)
    return Case(name, graph, {"input": x}, spiking=spiking, tags=tags)


NEURONS = ("LIF", "CubaLIF", "LI", "CubaLI", "IF", "I")
SPIKING = ("LIF", "CubaLIF", "IF")
LEAKY = ("LIF", "CubaLIF", "LI", "CubaLI")


def _neuron_cases(T: int, B: int, seed: int) -> Iterator[Case]:
    n_in, n = 12, 10
    for kind in NEURONS:
        variants: list[tuple[str, dict[str, Any], bool, bool]] = [
            ("scalar", {}, False, False), ("per-neuron", {}, True, False)]
        if kind in SPIKING:
            variants += [("subtract", {"reset": "subtract"}, False, False),
                         ("subtract-per-neuron", {"reset": "subtract"}, True, False),
                         ("ge", {"threshold": "ge"}, False, False)]
        if kind in LEAKY:
            variants += [("exponential", {"integration": "exponential"}, True, False),
                         ("leak-zero-init", {"initial_state": "zero"}, True, True),
                         ("leak", {}, True, True)]
        for label, sem_kwargs, per_neuron, leak in variants:
            rng = np.random.default_rng([seed, NEURONS.index(kind), len(label)])
            weight = rng.normal(0.0, 3.0 / np.sqrt(n_in), (n, n_in)) * (
                1.0 if kind != "IF" else 0.3)
            if kind in SPIKING:
                weight = np.abs(weight) * 1.5
            graph = _chain([("weight", nir.Affine(weight=weight, bias=rng.normal(0, 0.2, n))),
                            ("neuron", _neuron(kind, n, rng, per_neuron, leak))],
                           (n_in,), Semantics(dt=DT, **sem_kwargs))
            yield _case(f"node/{kind}/{label}", graph, rng, (n_in,), T, B,
                        kind in SPIKING, ("neuron", kind, label))


def _stateless_cases(T: int, B: int, seed: int) -> Iterator[Case]:
    rng = np.random.default_rng([seed, 100])
    sem = Semantics(dt=DT)

    def lif(n: int | tuple[int, ...]) -> nir.LIF:
        shape = (n,) if isinstance(n, int) else n
        return nir.LIF(tau=np.full(shape, 0.01), r=np.ones(shape), v_leak=np.zeros(shape),
                       v_threshold=np.full(shape, 0.5), v_reset=np.zeros(shape))

    from nir.ir.graph import Identity

    specs: list[tuple[str, list[tuple[str, nir.NIRNode]], tuple[int, ...]]] = [
        ("Linear", [("node", nir.Linear(weight=rng.normal(0, 1.0, (6, 8)))), ("lif", lif(6))],
         (8,)),
        ("Affine", [("node", nir.Affine(weight=rng.normal(0, 1.0, (6, 8)),
                                        bias=rng.normal(0, 0.3, 6))), ("lif", lif(6))], (8,)),
        ("Scale", [("node", nir.Scale(scale=rng.uniform(0.5, 2.0, 8))), ("lif", lif(8))], (8,)),
        ("Threshold", [("node", nir.Threshold(threshold=np.full(8, 0.5)))], (8,)),
        ("Identity", [("node", Identity(input_type={"input": np.array([8])})),
                      ("lif", lif(8))], (8,)),
        ("Conv1d", [("node", nir.Conv1d(input_shape=16, weight=rng.normal(0, 1, (4, 2, 3)),
                                        stride=1, padding=1, dilation=1, groups=1,
                                        bias=rng.normal(0, 0.1, 4))), ("lif", lif((4, 16)))],
         (2, 16)),
        ("Conv2d", [("node", nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 1, (4, 2, 3, 3)),
                                        stride=1, padding=1, dilation=1, groups=1,
                                        bias=np.zeros(4))), ("lif", lif((4, 8, 8)))],
         (2, 8, 8)),
        ("Conv2d-stride-groups", [("node", nir.Conv2d(
            input_shape=(9, 9), weight=rng.normal(0, 1, (4, 1, 3, 3)), stride=2, padding=0,
            dilation=1, groups=2, bias=rng.normal(0, 0.1, 4))), ("lif", lif((4, 4, 4)))],
         (2, 9, 9)),
        ("AvgPool2d", [("node", nir.AvgPool2d(kernel_size=np.array([2, 2]),
                                              stride=np.array([2, 2]),
                                              padding=np.array([0, 0]))),
                       ("lif", lif((2, 4, 4)))], (2, 8, 8)),
        ("SumPool2d", [("node", nir.SumPool2d(kernel_size=np.array([2, 2]),
                                              stride=np.array([2, 2]),
                                              padding=np.array([0, 0]))),
                       ("lif", lif((2, 4, 4)))], (2, 8, 8)),
        ("Flatten", [("node", nir.Flatten(input_type=None, start_dim=0, end_dim=-1)),
                     ("fc", nir.Linear(weight=rng.normal(0, 0.5, (5, 32)))), ("lif", lif(5))],
         (2, 4, 4)),
        ("Delay", [("node", nir.Delay(delay=rng.integers(0, 4, 8) * DT)), ("lif", lif(8))],
         (8,)),
    ]
    for name, nodes, shape in specs:
        graph = _chain(nodes, shape, sem)
        yield _case(f"node/{name}", graph, rng, shape, T, B, True, ("stateless", name),
                    rate=0.4)


def _structure_cases(T: int, B: int, seed: int) -> Iterator[Case]:
    rng = np.random.default_rng([seed, 200])
    n_in, n = 8, 12

    def cuba(size: int) -> nir.CubaLIF:
        return nir.CubaLIF(tau_syn=np.full(size, 0.005), tau_mem=np.full(size, 0.01),
                           r=np.ones(size), v_leak=np.zeros(size), v_threshold=np.full(size, 0.6),
                           v_reset=np.zeros(size), w_in=np.ones(size))

    for reset in ("value", "subtract"):
        sub = nir.NIRGraph(
            nodes={"input": nir.Input(input_type=np.array([n_in])),
                   "w_in": nir.Linear(weight=np.abs(rng.normal(0, 1.5, (n, n_in)))),
                   "lif": cuba(n),
                   "w_rec": nir.Linear(weight=rng.normal(0, 0.4, (n, n))),
                   "output": nir.Output(output_type=np.array([n]))},
            edges=[("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                   ("lif", "output")], type_check=False)
        graph = nir.NIRGraph(
            nodes={"input": nir.Input(input_type=np.array([n_in])), "rnn": sub,
                   "readout": nir.Linear(weight=rng.normal(0, 0.5, (3, n))),
                   "li": nir.CubaLI(tau_syn=np.full(3, 0.005), tau_mem=np.full(3, 0.01),
                                    r=np.ones(3), v_leak=np.zeros(3), w_in=np.ones(3)),
                   "output": nir.Output(output_type=np.array([3]))},
            edges=[("input", "rnn"), ("rnn", "readout"), ("readout", "li"), ("li", "output")],
            type_check=False)
        write_semantics(graph, Semantics(dt=DT, reset=reset))
        yield Case(f"node/recurrent-nested/{reset}", graph,
                   {"input": _spikes(rng, (T, B, n_in))}, spiking=False,
                   tags=("recurrent", "nested"))

    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_in])),
               "w": nir.Linear(weight=np.abs(rng.normal(0, 1.5, (n, n_in)))),
               "lif": nir.LIF(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n),
                              v_threshold=np.full(n, 0.6), v_reset=np.zeros(n)),
               "self": nir.Linear(weight=rng.normal(0, 0.3, (n, n))),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "w"), ("w", "lif"), ("lif", "self"), ("self", "lif"),
               ("lif", "output")], type_check=False)
    write_semantics(graph, Semantics(dt=DT))
    yield Case("node/recurrent-LIF", graph, {"input": _spikes(rng, (T, B, n_in))},
               tags=("recurrent",))

    for reset in ("value", "subtract"):  # the shape hardware wants: input -> hidden -> output
        graph = nir.NIRGraph(
            nodes={"input": nir.Input(input_type=np.array([n_in])),
                   "w1": nir.Linear(weight=np.abs(rng.normal(0, 1.2, (24, n_in)))),
                   "hidden": cuba(24),
                   "w2": nir.Linear(weight=rng.normal(0.1, 0.35, (3, 24))),
                   "out": cuba(3),
                   "output": nir.Output(output_type=np.array([3]))},
            edges=[("input", "w1"), ("w1", "hidden"), ("hidden", "w2"), ("w2", "out"),
                   ("out", "output")], type_check=False)
        write_semantics(graph, Semantics(dt=DT, reset=reset))
        yield Case(f"node/two-layer/{reset}", graph, {"input": _spikes(rng, (T, B, n_in))},
                   tags=("two-layer",))

    graph = nir.NIRGraph(
        nodes={"a": nir.Input(input_type=np.array([6])), "b": nir.Input(input_type=np.array([4])),
               "wa": nir.Linear(weight=np.abs(rng.normal(0, 1.5, (n, 6)))),
               "wb": nir.Linear(weight=np.abs(rng.normal(0, 1.5, (n, 4)))),
               "lif": cuba(n),
               "out_spikes": nir.Output(output_type=np.array([n])),
               "li": nir.LI(tau=np.full(n, 0.02), r=np.ones(n), v_leak=np.zeros(n)),
               "out_v": nir.Output(output_type=np.array([n]))},
        edges=[("a", "wa"), ("b", "wb"), ("wa", "lif"), ("wb", "lif"), ("lif", "out_spikes"),
               ("lif", "li"), ("li", "out_v")], type_check=False)
    write_semantics(graph, Semantics(dt=DT))
    yield Case("node/multi-input-output", graph,
               {"a": _spikes(rng, (T, B, 6)), "b": _spikes(rng, (T, B, 4))},
               tags=("multi-io",))


def node_cases(T: int = 100, B: int = 4, seed: int = 0) -> list[Case]:
    """Every node type with its parameter variations, recurrent, nested and multi-I/O graphs."""
    return [*_neuron_cases(T, B, seed), *_stateless_cases(T, B, seed),
            *_structure_cases(T, B, seed)]


def file_case(path: str, T: int = 200, B: int = 8, seed: int = 0, rate: float = 0.2, *,
              dialect: str = "auto", dt: float | None = None) -> Case:
    """A case from a .nir file: seeded Bernoulli spikes of the given rate on every input.
    dialect, dt (seconds): as for ``nrf_nir.load``."""
    from pathlib import Path

    from nrf_nir.io import load
    from nrf_nir.validate import validate

    graph = load(path, dialect=dialect, dt=dt)
    checked = validate(graph)
    rng = np.random.default_rng(seed)
    inputs = {name: _spikes(rng, (T, B, *shape), rate)
              for name, shape in checked.input_shapes.items()}
    return Case(f"file/{Path(path).stem}", graph, inputs, tags=("file",))


SPIKE_SOURCES = (nir.LIF, nir.CubaLIF, nir.IF, nir.Threshold)


def spiking_outputs(graph: nir.NIRGraph) -> dict[str, bool]:
    """Output node name -> whether it carries spikes (fed by a spiking node, looking through
    pass-through nodes and into nested graphs)."""
    from nrf_nir.graph import flatten

    flat = flatten(graph)
    result = {}
    for out in flat.outputs:
        node = out
        while True:
            preds = flat.preds[node]
            if len(preds) != 1:
                break
            node = preds[0]
            kind = flat.nodes[node]
            if not isinstance(kind, (nir.Output, nir.Input)) or node in flat.inputs:
                break
        result[out] = isinstance(flat.nodes[node], SPIKE_SOURCES)
    return result


def model_cases(T: int = 200, B: int = 16, seed: int = 0) -> list[Case]:
    """Model-level cases: those of the registered case providers that are installed
    (``nrf_nir.cases``; the zoo's when ``nrf_nir.models`` is), ``[]`` when none is."""
    return provided_cases(T=T, B=B, seed=seed)
