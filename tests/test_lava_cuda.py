"""The ``loihi`` emulator on CUDA equals itself on CPU bit for bit, on one graph of each kind
the Lava mapping holds (delays, loops through several populations, own loops, subtract reset on
ATRLIF, CubaLIF leaks as biases, starts away from v_reset, Threshold, several Inputs; the
convolutional net: tests/test_lava_conv.py). Skipped, with the reason printed, without CUDA."""

from __future__ import annotations

import pytest
import torch

import nrf_nir
from tests.test_lava_cuba_leak import two_cuba
from tests.test_lava_delay import CASES as DELAYS
from tests.test_lava_initial_state import two_leaky
from tests.test_lava_inputs import one_population, spikes_of
from tests.test_lava_loops import CASES as LOOPS
from tests.test_lava_loops import own_loops
from tests.test_lava_subtract import two_layers
from tests.test_lava_threshold import hidden

if not torch.cuda.is_available():
    print("\n[test_lava_cuda] skipped: no CUDA device on this machine")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

GRAPHS = {
    "delay per source": DELAYS["per-source"],
    "loop a-b-c": LOOPS["a-b-c-delay2"],
    "own loops": own_loops(),
    "subtract": two_layers(),
    "cuba leak": two_cuba(),
    "start away from v_reset": two_leaky(),
    "threshold": hidden(0.5),
}


@needs_cuda
@pytest.mark.parametrize("name", [*GRAPHS, "several inputs"])
def test_loihi_on_cuda_equals_cpu(name):
    g = GRAPHS[name] if name in GRAPHS else one_population()
    x = spikes_of(g, seed=3)
    cpu = nrf_nir.lower(g, "loihi", device="cpu").run(x)
    cuda = nrf_nir.lower(g, "loihi", device="cuda").run(x)
    assert set(cpu) == set(cuda)
    assert any(float(v.abs().sum()) > 0 for v in cpu.values())
    for key in cpu:
        assert torch.equal(cpu[key], cuda[key].cpu()), key
