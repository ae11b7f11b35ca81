"""The single-LIF experiment of the NIR paper (Nature Communications 15:8122, 2024).

`paper/01_lif/lif_norse.nir` in the NIR repository: Input -> Affine(1, bias 0) ->
LIF(tau = 2.5 ms, r = 1, v_leak = 0, v_th = 0.1) -> Output, dt = 0.1 ms, and a fixed spike
pattern (each of 100 entries followed by 9 silent steps). The paper reports spikes at steps
460, 510, 710 and 760 in most simulators (Lava one step late, Rockpool/Sinabs ten early).
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir

PATTERN = [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
           0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1,
           1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
           1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0,
           0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def paper_graph() -> nir.NIRGraph:
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([1])),
               "0": nir.Affine(weight=np.array([[1.0]]), bias=np.array([0.0])),
               "1": nir.LIF(tau=np.array([0.0025]), r=np.array([1.0]), v_leak=np.array([0.0]),
                            v_threshold=np.array([0.1])),
               "output": nir.Output(output_type=np.array([1]))},
        edges=[("input", "0"), ("0", "1"), ("1", "output")], type_check=False)
    graph.metadata = {"dt": 1e-4}
    return graph


def paper_input() -> np.ndarray:
    steps = []
    for value in PATTERN:
        steps += [value] + [0] * 9
    return np.array(steps, dtype=np.float32).reshape(-1, 1, 1)


def euler_loop(x: np.ndarray, dt: float, tau: float, v_th: float) -> list[int]:
    """The forward-Euler LIF of the contract, one float64 step at a time."""
    v, spikes = 0.0, []
    for t, value in enumerate(x[:, 0, 0]):
        v = v + (dt * (1.0 / tau)) * ((float(value) + 0.0) - v)
        if v > v_th:
            spikes.append(t)
            v = 0.0
    return spikes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("target", ["reference", "norse"])
def test_paper_spike_steps(target, dtype):
    x = paper_input()
    out = nrf_nir.run(paper_graph(), x, target=target, dtype=dtype)["output"][:, 0, 0]
    steps = np.nonzero(out.cpu().numpy())[0].tolist()
    assert steps == [460, 510, 710, 760]
    assert steps == euler_loop(x, 1e-4, 0.0025, 0.1)
