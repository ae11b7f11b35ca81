"""Graphs with several Input nodes on the Lava targets (docs/targets/lava.md, "Mapping"): the
Inputs are one flat Lava source (each Input a slice of it, every Input at depth 0), so
``lava-float`` equals the float64 reference spike for spike, ``loihi`` equals ``lava-fixed`` bit
for bit, swapping the inputs changes the spikes, each misuse of the inputs is an error naming
the Input, and the netx artifact (one input layer) is refused with nothing written."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.errors import NIRError
from nrf_nir.semantics import Semantics, write_semantics
from nrf_nir.targets import get
from nrf_nir.targets.lava.common import input_values
from nrf_nir.targets.lava.netx import write_artifact
from tests import helpers
from tests.test_target_lava import needs_lava

T, B = 40, 2


def one_population() -> nir.NIRGraph:
    """Inputs ``a`` [5] and ``b`` [5], each through its own Linear into one LIF of 6."""
    rng = np.random.default_rng(0)
    graph = nir.NIRGraph(
        nodes={"a": nir.Input(input_type=np.array([5])), "b": nir.Input(input_type=np.array([5])),
               "wa": nir.Linear(weight=rng.normal(0.6, 1.5, (6, 5))),
               "wb": nir.Linear(weight=rng.normal(-0.3, 1.5, (6, 5))),
               "lif": helpers.lif(6, tau=0.005), "out": nir.Output(output_type=np.array([6]))},
        edges=[("a", "wa"), ("b", "wb"), ("wa", "lif"), ("wb", "lif"), ("lif", "out")],
        type_check=False)
    write_semantics(graph, Semantics(dt=1e-3))
    return graph


def two_populations() -> nir.NIRGraph:
    """Input ``a`` [5] -> Affine -> LIF ``lif1`` (4); Input ``b`` [1, 4, 4] -> Conv2d 1->2 3x3
    (padding 1) -> Flatten -> LIF ``lif2`` (32), which also gets ``lif1`` through a Linear (so
    the synapse from ``b``, at depth 0, waits one step for ``lif1``'s). Outputs: both LIFs."""
    rng = np.random.default_rng(1)
    graph = nir.NIRGraph(
        nodes={"a": nir.Input(input_type=np.array([5])),
               "b": nir.Input(input_type=np.array([1, 4, 4])),
               "wa": nir.Affine(weight=rng.normal(0.5, 1.5, (4, 5)), bias=np.full(4, 0.05)),
               "lif1": helpers.lif(4, tau=0.005),
               "conv": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0.4, 1.5, (2, 1, 3, 3)),
                                  stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(2)),
               "w12": nir.Linear(weight=rng.normal(0.5, 1.0, (32, 4))),
               "flat": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
               "lif2": helpers.lif(32, tau=0.005),
               "out1": nir.Output(output_type=np.array([4])),
               "out2": nir.Output(output_type=np.array([32]))},
        edges=[("a", "wa"), ("wa", "lif1"), ("b", "conv"), ("conv", "flat"), ("flat", "lif2"),
               ("lif1", "w12"),
               ("w12", "lif2"), ("lif1", "out1"), ("lif2", "out2")], type_check=False)
    write_semantics(graph, Semantics(dt=1e-3))
    return graph


def spikes_of(graph: nir.NIRGraph, seed: int) -> dict[str, torch.Tensor]:
    """Bernoulli spikes (rate 0.3) ``[T, B, *shape]`` for every Input of ``graph``."""
    shapes = nrf_nir.validate(graph).input_shapes
    return {name: torch.from_numpy(helpers.spikes((T, B, *shape), rate=0.3, seed=seed + j))
            for j, (name, shape) in enumerate(shapes.items())}


def swapped_batch() -> dict[str, torch.Tensor]:
    """``one_population``'s inputs and, as two more samples, the same with ``a`` and ``b``
    swapped (one Lava run checks both)."""
    x = spikes_of(one_population(), seed=3)
    return {"a": torch.cat([x["a"], x["b"]], dim=1), "b": torch.cat([x["b"], x["a"]], dim=1)}


def test_the_inputs_are_one_flat_source_at_depth_zero():
    plan = nrf_nir.check(two_populations(), "loihi").analysis
    assert plan.inputs == {"a": (5,), "b": (1, 4, 4)} and plan.n_in == 21
    assert plan.input_slices == {"a": slice(0, 5), "b": slice(5, 21)}
    lif1, lif2 = (plan.layers[plan.index[n]] for n in ("lif1", "lif2"))
    assert (lif1.depth, lif2.depth) == (1, 2)
    (from_a,) = lif1.inputs
    assert from_a.source == -1 and from_a.weight.shape == (4, 21)
    assert np.any(from_a.weight[:, :5]) and not np.any(from_a.weight[:, 5:])
    from_b = next(s for s in lif2.inputs if s.source == -1)
    # the convolution from b is a dense block over b's 16 values (one flat Lava source),
    # delayed one step to arrive with lif1's synapse
    assert from_b.kind == "dense" and from_b.weight.shape == (32, 21)
    assert not np.any(from_b.weight[:, :5]) and np.any(from_b.weight[:, 5:])
    assert from_b.delay == 1
    assert any("as one Lava source of 21 values" in p for p in plan.passes)


def test_swapping_the_inputs_changes_the_spikes():
    x = swapped_batch()
    out = nrf_nir.run(one_population(), x, target="loihi")["out"]
    assert int(out.sum()) > 20
    assert not torch.equal(out[:, :B], out[:, B:])


@needs_lava
@pytest.mark.parametrize("which", ["one_population", "two_populations"])
def test_lava_float_equals_the_float64_reference(which: str):
    graph = {"one_population": one_population, "two_populations": two_populations}[which]()
    x = swapped_batch() if which == "one_population" else spikes_of(graph, seed=5)
    ref = nrf_nir.run(graph, x, dtype="float64")
    got = nrf_nir.run(graph, x, target="lava-float", dtype="float64")
    assert set(got) == set(ref)
    for name in ref:
        assert int(ref[name].sum()) > 10
        assert torch.equal(got[name], ref[name]), name


@needs_lava
@pytest.mark.parametrize("which", ["one_population", "two_populations"])
def test_loihi_is_bit_exact_with_lava_fixed(which: str):
    graph = {"one_population": one_population, "two_populations": two_populations}[which]()
    x = swapped_batch() if which == "one_population" else spikes_of(graph, seed=7)
    fixed = nrf_nir.run(graph, x, target="lava-fixed", dtype="float64")
    emu = nrf_nir.run(graph, x, target="loihi", dtype="float64")
    for name in fixed:
        assert int(fixed[name].sum()) > 10
        assert torch.equal(emu[name], fixed[name]), name


@pytest.mark.parametrize("change, message", [
    ("missing", "missing input 'b'"),
    ("T", "input 'b' has T = 39, B = 2; input 'a' has T = 40, B = 2"),
    ("B", "input 'b' has T = 40, B = 1; input 'a' has T = 40, B = 2"),
    ("shape", r"expected \[T, B, 1, 4, 4\] \(or \[T, B, 16\]\), got \[40, 2, 4, 4\]"),
])
def test_input_errors_name_the_input(change: str, message: str):
    """The target's own checks (``nrf_nir.run`` checks the same before it reaches them)."""
    graph = two_populations()
    prog = nrf_nir.lower(graph, "loihi").backend
    x = spikes_of(graph, seed=0)
    bad = {"missing": {"a": x["a"]}, "T": {**x, "b": x["b"][1:]}, "B": {**x, "b": x["b"][:, :1]},
           "shape": {**x, "b": x["b"][:, :, 0]}}[change]
    with pytest.raises(NIRError, match=message) as info:
        get("loihi").run(prog, bad, ())
    assert (info.value.node, info.value.field) == ("b", "inputs")
    assert get("loihi").run(prog, x, ())["out2"].shape == (T, B, 32)


def test_input_scale_applies_to_every_input_and_payload_errors_name_it():
    graph = one_population()
    x = {"a": torch.full((T, B, 5), 0.5, dtype=torch.float64), "b": spikes_of(graph, 0)["b"]}
    with pytest.raises(NIRError, match="non-integer") as info:
        nrf_nir.run(graph, x, target="loihi")
    assert (info.value.node, info.value.field) == ("a", "inputs")
    prog = nrf_nir.lower(graph, "loihi", input_scale=4).backend
    got = input_values(prog, {"a": x["a"], "b": x["b"] * 0.25}, integers=True)
    assert torch.equal(got[..., :5], torch.full((T, B, 5), 2.0, dtype=torch.float64))
    assert torch.equal(got[..., 5:], torch.round(x["b"].double() * 0.25 * 4))


def test_an_output_fed_by_an_input_stays_refused():
    graph = one_population()
    graph.nodes["raw"] = nir.Output(output_type=np.array([5]))
    graph.edges.append(("a", "raw"))
    found = nrf_nir.check(graph, "loihi")
    assert [(v.node, v.field) for v in found] == [("raw", "edges")]


def test_the_netx_artifact_is_refused_with_nothing_written(tmp_path):
    prog = nrf_nir.lower(one_population(), "loihi").backend
    with pytest.raises(NIRError, match=r"2 Input nodes \(a, b\): a netx network has one input "
                                       "layer"):
        write_artifact(prog, tmp_path / "out")
    assert not (tmp_path / "out").exists()
