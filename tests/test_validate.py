"""Validation: every error names the node and the field; shapes are inferred everywhere."""

from __future__ import annotations

import nir
import numpy as np
import pytest

import nrf_nir
from nrf_nir.errors import NIRError, ValidationError
from tests.helpers import chain, cuba, lif, mlp, recurrent


def _error(graph: nir.NIRGraph) -> ValidationError:
    with pytest.raises(ValidationError) as err:
        nrf_nir.validate(graph)
    return err.value


def test_shapes_are_inferred_through_conv_pool_flatten():
    conv = nir.Conv2d(input_shape=None, weight=np.ones((4, 2, 3, 3)), stride=1, padding=1,
                      dilation=1, groups=1, bias=np.zeros(4))
    pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                         padding=np.array([0, 0]))
    flat = nir.Flatten(input_type=None, start_dim=0, end_dim=-1)
    graph = chain(conv, lif(1), pool, flat, nir.Linear(weight=np.ones((3, 64))),
                  shape=(2, 8, 8))
    checked = nrf_nir.validate(graph)
    assert checked.out_shapes["n0"] == (4, 8, 8)
    assert checked.out_shapes["n2"] == (4, 4, 4)
    assert checked.out_shapes["n3"] == (64,)
    assert checked.output_shapes == {"output": (3,)}


def test_recurrent_and_nested_graph_validate():
    checked = nrf_nir.validate(recurrent(4, 6))
    assert checked.back == {("rnn.w_rec", "rnn.lif")}
    assert checked.out_shapes["rnn.lif"] == (6,)
    cyclic = [u for u in checked.units if u.cyclic]
    assert len(cyclic) == 1 and set(cyclic[0].members) == {"rnn.lif", "rnn.w_rec"}


@pytest.mark.parametrize("field,value,match", [
    ("tau", -0.01, "must be > 0"),
    ("tau", 0.0, "must be > 0"),
    ("tau", np.nan, "NaN"),
    ("v_threshold", np.inf, "inf"),
])
def test_bad_neuron_values_name_node_and_field(field, value, match):
    graph = mlp([3, 4])
    getattr(graph.nodes["n1"], field)[...] = value
    err = _error(graph)
    assert err.node == "n1" and err.field == field
    assert match in str(err)


def test_shape_mismatch_names_the_node():
    graph = chain(nir.Linear(weight=np.ones((4, 3))), lif(5), shape=(3,))
    err = _error(graph)
    assert err.node == "n1" and "(4,)" in str(err)


def test_weight_in_dimension_mismatch():
    graph = chain(nir.Linear(weight=np.ones((4, 2))), shape=(3,))
    err = _error(graph)
    assert err.node == "n0" and err.field == "weight"


def test_dangling_edge_names_the_missing_node():
    graph = mlp([3, 2])
    graph.edges.append(("n1", "ghost"))
    err = _error(graph)
    assert "ghost" in str(err) and err.field == "edges"


def test_unknown_node_type_is_refused():
    class Banana(nir.NIRNode):  # type: ignore[misc]
        def __init__(self) -> None:
            self.metadata = {}

    graph = chain(Banana(), shape=(3,))
    err = _error(graph)
    assert err.node == "n0" and "Banana" in str(err)


def test_cycle_without_state_is_refused():
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2])), "a": nir.Linear(np.eye(2)),
               "b": nir.Linear(np.eye(2)), "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")], type_check=False)
    err = _error(graph)
    assert "cycle without state" in str(err)


def test_unreachable_node_is_refused():
    graph = mlp([3, 2])
    graph.nodes["lonely"] = lif(2)
    graph.edges.append(("lonely", "output"))
    err = _error(graph)
    assert err.node == "lonely"


def test_huge_shapes_are_refused_before_allocating():
    graph = chain(nir.Linear(weight=np.ones((2, 3))), shape=(3,))
    graph.nodes["input"] = nir.Input(input_type=np.array([100_000, 100_000, 3]))
    with pytest.raises(ValidationError, match="over the limit"):
        nrf_nir.validate(graph)


def test_neuron_params_of_different_shapes_broadcast_or_fail():
    ok = nir.LIF(tau=np.array(0.01), r=np.array(1.0), v_leak=np.array(0.0),
                 v_threshold=np.array(1.0), v_reset=np.array(0.0))
    nrf_nir.validate(chain(nir.Linear(weight=np.ones((4, 3))), ok, shape=(3,)))
    bad = cuba(3)
    graph = chain(nir.Linear(weight=np.ones((4, 3))), bad, shape=(3,))
    err = _error(graph)
    assert err.node == "n1"


def test_missing_dt_gives_a_clear_error_only_when_running():
    graph = mlp([3, 2], dt=1e-3)
    del graph.metadata["dt"]
    nrf_nir.validate(graph)  # a graph without dt is valid
    with pytest.raises(NIRError, match="pass dt explicitly"):
        nrf_nir.run(graph, np.zeros((5, 1, 3)))
    out = nrf_nir.run(graph, np.zeros((5, 1, 3)), dt=1e-3)
    assert out["output"].shape == (5, 1, 2)


def test_bad_semantics_metadata_is_refused():
    graph = mlp([3, 2])
    graph.metadata["reset"] = "explode"
    with pytest.raises(NIRError, match="reset"):
        nrf_nir.run(graph, np.zeros((5, 1, 3)))


def test_reference_check_is_empty_for_valid_graphs():
    assert nrf_nir.check(mlp([3, 4, 2])) == []
    assert nrf_nir.check(recurrent(3, 5)) == []
    assert "reference" in nrf_nir.targets.available()
