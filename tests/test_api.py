"""The run API: inputs, records, dtypes, devices, chunking and step-by-step execution."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.errors import NIRError
from tests.helpers import chain, lif, mlp, recurrent, spikes


def test_outputs_are_time_first_and_recordable():
    graph = recurrent(4, 6)
    x = spikes((25, 3, 4), 0.4)
    out = nrf_nir.run(graph, x, record=("rnn.lif", "rnn.lif.v", "rnn.lif.i", "li"))
    assert out["output"].shape == (25, 3, 3)
    assert out["rnn.lif"].shape == (25, 3, 6)
    assert out["rnn.lif.v"].shape == (25, 3, 6)
    assert torch.equal(out["li"], out["output"])
    assert set(out["rnn.lif"].unique().tolist()) <= {0.0, 1.0}
    assert out["rnn.lif"].sum() > 0


def test_recorded_voltage_is_after_reset():
    graph = chain(nir.Linear(weight=np.ones((1, 1))), lif(1, v_reset=-0.5), shape=(1,))
    out = nrf_nir.run(graph, np.full((30, 1, 1), 3.0), record=("n1.v",), dtype=torch.float64)
    z, v = out["output"][:, 0, 0], out["n1.v"][:, 0, 0]
    assert z.sum() > 0
    assert torch.all(v[z == 1] == -0.5)


@pytest.mark.parametrize("build", [lambda: mlp([6, 8, 4]), lambda: recurrent(5, 7)])
def test_chunking_and_stepwise_give_identical_results(build):
    graph = build()
    x = spikes((60, 8, 6 if "n0" in build().nodes else 5), 0.3)
    base = nrf_nir.run(graph, x, dtype=torch.float64)
    step = nrf_nir.run(graph, x, dtype=torch.float64, stepwise=True)
    tiny = nrf_nir.run(graph, x, dtype=torch.float64, chunk_bytes=1)  # one step per chunk
    mid = nrf_nir.run(graph, x, dtype=torch.float64, chunk_bytes=8 * 8 * 30 * 7)
    for other in (step, tiny, mid):
        assert torch.equal(base["output"], other["output"])


def test_float64_on_request_and_float32_by_default():
    graph = mlp([3, 2])
    x = spikes((5, 1, 3))
    assert nrf_nir.run(graph, x)["output"].dtype == torch.float32
    assert nrf_nir.run(graph, x, dtype="float64")["output"].dtype == torch.float64
    with pytest.raises(NIRError, match="dtype"):
        nrf_nir.run(graph, x, dtype="int8")


def test_runs_are_deterministic():
    graph = recurrent(4, 16, seed=3)
    x = spikes((50, 4, 4), 0.3, seed=1)
    a = nrf_nir.run(graph, x)
    b = nrf_nir.run(graph, x)
    assert torch.equal(a["output"], b["output"])


def test_bool_and_int_inputs_are_accepted():
    graph = mlp([3, 2])
    x = spikes((10, 2, 3), 0.5)
    ref = nrf_nir.run(graph, x)["output"]
    assert torch.equal(nrf_nir.run(graph, x.astype(bool))["output"], ref)
    assert torch.equal(nrf_nir.run(graph, torch.from_numpy(x).to(torch.int64))["output"], ref)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((10, 3)), r"\[T, B, 3\]"),
    (np.zeros((10, 2, 4)), r"\[T, B, 3\]"),
    (np.full((10, 2, 3), np.nan), "NaN"),
    (np.array([["a"]]), "numeric"),
    ({"wrong": np.zeros((10, 2, 3))}, "unknown: wrong"),
])
def test_bad_inputs_are_clear_errors(bad, match):
    with pytest.raises(NIRError, match=match):
        nrf_nir.run(mlp([3, 2]), bad)


def test_multi_input_graph_needs_a_dict():
    graph = nir.NIRGraph(
        nodes={"a": nir.Input(input_type=np.array([2])), "b": nir.Input(input_type=np.array([2])),
               "lif": lif(2), "output": nir.Output(output_type=np.array([2]))},
        edges=[("a", "lif"), ("b", "lif"), ("lif", "output")], type_check=False)
    graph.metadata = {"dt": 1e-3}
    with pytest.raises(NIRError, match="dict"):
        nrf_nir.run(graph, np.zeros((5, 1, 2)))
    x = np.full((20, 1, 2), 1.5)
    both = nrf_nir.run(graph, {"a": x, "b": x})["output"]
    single = nrf_nir.run(graph, {"a": 2 * x, "b": 0 * x})["output"]
    assert torch.equal(both, single)


def test_record_of_unknown_name_is_an_error():
    with pytest.raises(NIRError, match="cannot record"):
        nrf_nir.run(mlp([3, 2]), np.zeros((3, 1, 3)), record=("nope",))


def test_unknown_target_is_an_error():
    with pytest.raises(NIRError, match="unknown target"):
        nrf_nir.run(mlp([3, 2]), np.zeros((3, 1, 3)), target="banana")


def test_lowered_program_runs_many_times():
    lowered = nrf_nir.lower(mlp([3, 4]), dtype="float64")
    x1, x2 = spikes((20, 2, 3), 0.5, 1), spikes((20, 2, 3), 0.5, 2)
    assert torch.equal(lowered.run(x1)["output"], nrf_nir.run(mlp([3, 4]), x1,
                                                              dtype="float64")["output"])
    assert lowered.run(x2)["output"].shape == (20, 2, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu_in_float64():
    graph = recurrent(5, 32)
    x = spikes((100, 8, 5), 0.3)
    cpu = nrf_nir.run(graph, x, dtype="float64", device="cpu")["output"]
    gpu = nrf_nir.run(graph, x, dtype="float64", device="cuda")["output"]
    assert gpu.device.type == "cuda"
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-9)
