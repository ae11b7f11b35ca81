"""Reading and writing .nir files: round trips, 0-d parameters, metadata, atomicity."""

from __future__ import annotations

import os

import h5py
import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.errors import NIRError
from tests.helpers import chain, lif, mlp, recurrent, spikes


def _params(graph: nir.NIRGraph) -> dict[str, np.ndarray]:
    out = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            out.update({f"{name}.{k}": v for k, v in _params(node).items()})
            continue
        for key, value in vars(node).items():
            if isinstance(value, np.ndarray) and key not in ("input_type", "output_type"):
                out[f"{name}.{key}"] = value
    return out


@pytest.mark.parametrize("build", [lambda: mlp([5, 7, 3]), lambda: recurrent(4, 6)])
def test_round_trip_keeps_parameters_edges_and_results(tmp_path, build):
    graph = build()
    path = tmp_path / "model.nir"
    nrf_nir.save(graph, path)
    loaded = nrf_nir.load(path)
    a, b = _params(graph), _params(loaded)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    x = spikes((30, 2, graph.nodes["input"].input_type["input"][0]), 0.3)
    out_a = nrf_nir.run(graph, x)
    out_b = nrf_nir.run(loaded, x)
    for key in out_a:
        assert torch.equal(out_a[key], out_b[key])
    assert float(loaded.metadata["dt"]) == 1e-3


def test_nir_reads_our_files(tmp_path):
    path = tmp_path / "model.nir"
    nrf_nir.save(mlp([4, 5, 2]), path)
    graph = nir.read(path)
    assert set(graph.nodes) == {"input", "n0", "n1", "n2", "n3", "output"}


def test_zero_dimensional_parameters_are_written(tmp_path):
    node = nir.LIF(tau=np.array(0.01), r=np.array(1.0), v_leak=np.array(0.0),
                   v_threshold=np.array(1.0), v_reset=np.array(0.0))
    graph = chain(nir.Linear(weight=np.ones((4, 3))), node, shape=(3,))
    with pytest.raises(TypeError):  # nir.write itself fails on 0-d data with gzip
        nir.write(tmp_path / "nir.nir", graph)
    nrf_nir.save(graph, tmp_path / "ours.nir")
    loaded = nrf_nir.load(tmp_path / "ours.nir")
    assert loaded.nodes["n1"].tau.shape == ()
    out = nrf_nir.run(loaded, np.full((10, 1, 3), 1.0))
    assert out["output"].shape == (10, 1, 4)
    assert out["output"].sum() > 0


def test_semantics_metadata_round_trip(tmp_path):
    graph = mlp([3, 2])
    sem = nrf_nir.Semantics(dt=5e-4, reset="subtract", threshold="ge", integration="exponential",
                            initial_state="zero", producer="test", producer_version="9")
    nrf_nir.write_semantics(graph, sem)
    nrf_nir.save(graph, tmp_path / "m.nir")
    assert nrf_nir.read_semantics(nrf_nir.load(tmp_path / "m.nir")) == sem


def test_failed_save_leaves_no_file(tmp_path):
    graph = mlp([3, 2])
    graph.metadata["bad"] = {"nested": 1}
    target = tmp_path / "m.nir"
    with pytest.raises(NIRError, match="metadata"):
        nrf_nir.save(graph, target)
    assert os.listdir(tmp_path) == []


def test_save_replaces_atomically(tmp_path):
    target = tmp_path / "m.nir"
    nrf_nir.save(mlp([3, 2]), target)
    before = target.read_bytes()
    bad = mlp([3, 2])
    bad.nodes["n1"].tau[:] = -1.0
    with pytest.raises(NIRError, match="tau"):
        nrf_nir.save(bad, target)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.nir"]


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "m.nir"
    nrf_nir.save(mlp([6, 4]), path)
    data = path.read_bytes()
    cut = tmp_path / "cut.nir"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(NIRError, match="cut.nir"):
        nrf_nir.load(cut)


def test_unknown_node_type_names_the_node(tmp_path):
    path = tmp_path / "m.nir"
    nrf_nir.save(mlp([3, 2]), path)
    with h5py.File(path, "r+") as f:
        del f["node/nodes/n1/type"]
        f["node/nodes/n1"].create_dataset("type", data="Banana", dtype=h5py.string_dtype())
    with pytest.raises(NIRError) as err:
        nrf_nir.load(path)
    assert "n1" in str(err.value) and "Banana" in str(err.value) and "m.nir" in str(err.value)


def test_missing_field_names_node_and_field(tmp_path):
    path = tmp_path / "m.nir"
    nrf_nir.save(mlp([3, 2]), path)
    with h5py.File(path, "r+") as f:
        del f["node/nodes/n1/tau"]
    with pytest.raises(NIRError) as err:
        nrf_nir.load(path)
    assert err.value.node == "n1" and err.value.field == "tau"


def test_identity_nodes_round_trip(tmp_path):
    from nir.ir.graph import Identity

    graph = chain(Identity(input_type={"input": np.array([3])}), lif(3), shape=(3,))
    nrf_nir.save(graph, tmp_path / "m.nir")
    loaded = nrf_nir.load(tmp_path / "m.nir")
    assert type(loaded.nodes["n0"]).__name__ == "Identity"
