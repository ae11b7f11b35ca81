"""Small graph builders shared by the tests."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np


def lif(n: int, tau: float = 0.01, v_th: float = 1.0, v_reset: float = 0.0,
        v_leak: float = 0.0, r: float = 1.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, r), v_leak=np.full(n, v_leak),
                   v_threshold=np.full(n, v_th), v_reset=np.full(n, v_reset))


def cuba(n: int, tau_syn: float = 0.005, tau_mem: float = 0.01, v_th: float = 1.0) -> nir.CubaLIF:
    return nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem), r=np.ones(n),
                       v_leak=np.zeros(n), v_threshold=np.full(n, v_th), v_reset=np.zeros(n))


def chain(*nodes: nir.NIRNode, shape: tuple[int, ...], dt: float | None = 1e-3,
          **meta: object) -> nir.NIRGraph:
    """input -> nodes... -> output, named n0, n1, ..."""
    named: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(shape))}
    for i, node in enumerate(nodes):
        named[f"n{i}"] = node
    names = list(named)
    edges = list(zip(names[:-1], names[1:], strict=True))
    named["output"] = nir.Output(output_type=None)
    edges.append((names[-1], "output"))
    graph = nir.NIRGraph(nodes=named, edges=edges, type_check=False)
    graph.metadata = dict(meta)
    if dt is not None:
        graph.metadata["dt"] = dt
    return graph


def mlp(sizes: list[int], seed: int = 0, dt: float = 1e-3) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    nodes: list[nir.NIRNode] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        nodes.append(nir.Affine(weight=rng.normal(0, 1.5 / np.sqrt(a), (b, a)),
                                bias=rng.normal(0, 0.1, b)))
        nodes.append(lif(b, tau=float(rng.uniform(0.005, 0.02))))
    return chain(*nodes, shape=(sizes[0],), dt=dt)


def recurrent(n_in: int, n: int, seed: int = 0, dt: float = 1e-3) -> nir.NIRGraph:
    """input -> rnn(subgraph: w_in -> lif <-> w_rec) -> readout -> output."""
    rng = np.random.default_rng(seed)
    sub = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_in])),
               "w_in": nir.Linear(weight=rng.normal(0, 2 / np.sqrt(n_in), (n, n_in))),
               "lif": cuba(n),
               "w_rec": nir.Linear(weight=rng.normal(0, 1 / np.sqrt(n), (n, n))),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
               ("lif", "output")],
        type_check=False)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_in])), "rnn": sub,
               "readout": nir.Linear(weight=rng.normal(0, 1, (3, n))),
               "li": nir.LI(tau=np.full(3, 0.02), r=np.ones(3), v_leak=np.zeros(3)),
               "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "rnn"), ("rnn", "readout"), ("readout", "li"), ("li", "output")],
        type_check=False)
    graph.metadata = {"dt": dt}
    return graph


def spikes(shape: tuple[int, ...], rate: float = 0.2, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < rate).astype(np.float32)


def dialect_graphs(n: int = 4, dt: float = 1e-3) -> dict[str, nir.NIRGraph]:
    """``input -> Affine -> LIF -> output`` as snnTorch, Rockpool and Norse write it (no
    nrf-nir metadata), built with nir alone; each is recognised by its dialect:
    snnTorch ``r = tau/1e-4``; Rockpool ``r = tau*exp(-dt/tau)/dt`` and an Output of shape
    ``[1, 1, N]``; Norse ``tau = dt/tau_inv`` (below 0.1 ms) and an Input of shape ``[1, 3]``."""
    rng = np.random.default_rng(0)

    def graph(tau: np.ndarray, r: np.ndarray, out: list[int],
              inp: tuple[int, ...] = (3,)) -> nir.NIRGraph:
        nodes = {"input": nir.Input(input_type=np.array(inp)),
                 "affine": nir.Affine(weight=rng.normal(0, 1, (n, 3)), bias=np.zeros(n)),
                 "lif": nir.LIF(tau=tau, r=r, v_leak=np.zeros(n), v_threshold=np.ones(n),
                                v_reset=np.zeros(n)),
                 "output": nir.Output(output_type=np.array(out))}
        g = nir.NIRGraph(nodes=nodes, edges=[("input", "affine"), ("affine", "lif"),
                                             ("lif", "output")], type_check=False)
        g.metadata = {}
        return g

    tau = np.full(n, 0.01)
    return {"snntorch": graph(tau, tau / 1e-4, [n]),
            "rockpool": graph(tau, tau * np.exp(-dt / tau) / dt, [1, 1, n]),
            # to_nir keeps the sample's batch axis on the Input: part of its fingerprint
            "norse": graph(np.full(n, dt / 100.0), np.ones(n), [n], inp=(1, 3))}


def on_the_three_lava_targets(g: nir.NIRGraph, x: np.ndarray, record: tuple[str, ...] = ()
                              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``g`` on ``x`` ``[T, B, *shape]`` on the float64 reference and the three Lava
    targets; assert ``lava-float`` (float64) equals the reference on every output and recorded
    node (spikes exact) and ``loihi`` equals ``lava-fixed`` bit for bit. Returns (reference,
    loihi) outputs for further checks."""
    import torch

    import nrf_nir

    ref = nrf_nir.run(g, x, target="reference", dtype="float64", record=record)
    got = nrf_nir.lower(g, "lava-float", dtype="float64").run(x, record=record)
    for key in ref:
        assert torch.equal(got[key], ref[key]), (
            f"{key}: {int((got[key] != ref[key]).sum())} of {ref[key].numel()} differ")
    fixed = nrf_nir.lower(g, "lava-fixed").run(x, record=record)
    emu = nrf_nir.lower(g, "loihi").run(x, record=record)
    assert set(fixed) == set(emu)
    for key in fixed:
        assert torch.equal(fixed[key], emu[key]), key
    return ref, emu
