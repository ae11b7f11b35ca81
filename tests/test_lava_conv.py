"""Convolutions and pooling on the Lava targets (docs/targets/lava.md, "Convolutions and
pooling"): Conv1d/Conv2d as Lava ``Conv`` synapses, pooling folded into the next convolution
or Dense, the ``loihi`` emulator bit-exact with Lava's fixed-point ``Conv``.

Each Lava-running case checks ``lava-float`` against the float64 reference (spikes equal) and
``loihi`` against ``lava-fixed`` bit for bit.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.targets.lava.conv import (
    DENSE_CAP,
    WORK_CAP,
    compose_pool_conv,
    conv_apply,
    conv_work,
    geometry,
    pool_as_conv,
)
from nrf_nir.targets.lava.emulator import LoihiEmulator
from nrf_nir.targets.lava.plan import quantize
from tests.test_lava_graph_passes import plan_of
from tests.test_target_lava import DT, graph, linear, needs_lava


def if_(shape, v_th=1.0):
    return nir.IF(r=np.ones(shape), v_threshold=np.full(shape, v_th), v_reset=np.zeros(shape))


def lif_channels(shape, taus, v_th=1.0):
    """A LIF of ``shape`` ``[C, H, W]`` with one ``tau`` per channel."""
    tau = np.broadcast_to(np.asarray(taus, dtype=np.float64)[:, None, None], shape).copy()
    return nir.LIF(tau=tau, r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, v_th), v_reset=np.zeros(shape))


def conv2d(rng, c_out, c_in, k, hw, scale, *, stride=1, padding=0, dilation=1, groups=1,
           bias=0.0, mean=0.3):
    w = rng.normal(mean, 0.5, (c_out, c_in // groups, *k)) * scale
    return nir.Conv2d(input_shape=hw, weight=w, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=rng.normal(0, bias, c_out)
                      if bias else np.zeros(c_out))


def conv1d(rng, c_out, c_in, k, length, scale, *, stride=1, padding=0, dilation=1, groups=1):
    w = rng.normal(0.3, 0.5, (c_out, c_in // groups, k)) * scale
    return nir.Conv1d(input_shape=length, weight=w, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=np.zeros(c_out))


def seq(in_shape, *nodes):
    """input -> nodes... -> output (a chain)."""
    named = {"input": nir.Input(input_type=np.array(in_shape))}
    named.update({f"n{k}": node for k, node in enumerate(nodes)})
    named["output"] = nir.Output(output_type=None)
    names = list(named)
    return graph(named, list(zip(names[:-1], names[1:], strict=True)))


def spikes(shape, rate=0.3, seed=0):
    return (np.random.default_rng(seed).random(shape) < rate).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# the cases: a name -> (graph, input shape)
# ---------------------------------------------------------------------------------------------

def conv_cases() -> dict[str, tuple[nir.NIRGraph, tuple[int, ...]]]:
    rng = np.random.default_rng(3)
    s = 300.0  # IF: v += dt * x, thresholds 1
    return {
        "stride-padding-bias": (seq((2, 6, 6), conv2d(rng, 4, 2, (3, 3), (6, 6), s,
                                                      stride=(2, 1), padding=(1, 0), bias=20.0),
                                    if_((4, 3, 4))), (2, 6, 6)),
        "dilation-groups": (seq((4, 7, 7), conv2d(rng, 6, 4, (2, 3), (7, 7), s, dilation=(2, 1),
                                                  groups=2, padding=1), if_((6, 7, 7))),
                            (4, 7, 7)),
        "mixed-sign": (seq((3, 5, 5), conv2d(rng, 3, 3, (3, 3), (5, 5), s, mean=0.0,
                                             padding=1), if_((3, 5, 5))), (3, 5, 5)),
        "conv1d": (seq((2, 9), conv1d(rng, 3, 2, 3, 9, s, stride=2, padding=1),
                       if_((3, 5))), (2, 9)),
        # more than 127 channels in Lava (3 samples x 70) and a 1-D input longer than 127:
        # beyond Lava's int8 Conv parameters under numpy 2 (the runner widens them)
        "many-channels": (seq((3, 6, 6), conv2d(rng, 70, 3, (3, 3), (6, 6), s, padding=1),
                              if_((70, 6, 6))), (3, 6, 6)),
        "long-conv1d": (seq((2, 200), conv1d(rng, 3, 2, 5, 200, s, padding=2),
                            if_((3, 200))), (2, 200)),
        "sumpool-conv": (seq((2, 8, 8), conv2d(rng, 3, 2, (3, 3), (8, 8), s, padding=1),
                             if_((3, 8, 8)), nir.SumPool2d(kernel_size=(2, 2), stride=(2, 2),
                                                           padding=(0, 0)),
                             conv2d(rng, 4, 3, (3, 3), (4, 4), s / 2, padding=1),
                             if_((4, 4, 4))), (2, 8, 8)),
        "avgpool-flatten-linear": (seq((2, 6, 6), conv2d(rng, 2, 2, (3, 3), (6, 6), s),
                                       if_((2, 4, 4)),
                                       nir.AvgPool2d(kernel_size=(2, 2), stride=(2, 2),
                                                     padding=(0, 0)),
                                       nir.Flatten(start_dim=0, end_dim=-1,
                                                   input_type={"input": np.array([2, 2, 2])}),
                                       linear(rng, 5, 8, 1000.0), if_(5)), (2, 6, 6)),
        # per-channel time constants: channels {0, 2} and {1, 3}, then {0, 1} and {2, 3}
        # behind a grouped convolution; the output is put together from two populations
        "per-channel-tau": (seq((2, 6, 6), conv2d(rng, 4, 2, (3, 3), (6, 6), 12.0, padding=1),
                                lif_channels((4, 6, 6), [0.005, 0.02, 0.005, 0.02]),
                                conv2d(rng, 4, 4, (3, 3), (6, 6), 12.0, padding=1, groups=2),
                                lif_channels((4, 6, 6), [0.004, 0.004, 0.01, 0.01])),
                            (2, 6, 6)),
        "pool-alone": (seq((2, 6, 6), conv2d(rng, 2, 2, (3, 3), (6, 6), s, padding=1),
                           if_((2, 6, 6)), nir.SumPool2d(kernel_size=(3, 3), stride=(3, 3),
                                                         padding=(0, 0)),
                           if_((2, 2, 2), v_th=0.0035)),
                       (2, 6, 6)),
    }


# ---------------------------------------------------------------------------------------------
# geometry and folding (no Lava)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pool_k,pool_s,pool_p,conv_k,conv_s,conv_p,conv_d,size,one", [
    (2, 2, 0, 3, 1, 1, 1, 16, True), (2, 2, 0, 3, 2, 0, 1, 17, True),
    (3, 3, 1, 3, 1, 1, 2, 20, True), (2, 2, 0, 1, 1, 0, 1, 9, True),
    (2, 2, 0, 3, 1, 2, 1, 10, True),
    (3, 2, 1, 3, 1, 1, 1, 12, False),   # overlapping pool windows
    (2, 2, 0, 3, 1, 1, 1, 17, False),   # conv padding stands for a window holding row 16
])
def test_pool_then_conv_composition_is_exact_or_refused(pool_k, pool_s, pool_p, conv_k, conv_s,
                                                        conv_p, conv_d, size, one):
    """Where compose_pool_conv gives one convolution, it equals pool then conv on random
    input; it refuses where no single convolution is that map."""
    rng = np.random.default_rng(size)
    pool = pool_as_conv((3, size, size), (pool_k, pool_k), (pool_s, pool_s), (pool_p, pool_p),
                        average=False)
    mid = pool[1].out_shape
    conv = geometry(mid, rng.normal(0, 1, (4, 3, conv_k, conv_k)), (conv_s, conv_s),
                    (conv_p, conv_p), (conv_d, conv_d), 1)
    x = rng.normal(0, 1, (5, 3 * size * size))
    direct = conv_apply(conv_apply(x, *pool), *conv)
    got = compose_pool_conv(pool, conv)
    assert (got is not None) == one
    if got is None:
        return
    assert got[1].out_shape == conv[1].out_shape
    np.testing.assert_allclose(conv_apply(x, *got), direct, rtol=1e-12, atol=1e-12)


def test_conv_becomes_a_conv_synapse_with_the_gain_in_the_kernel():
    g, _ = conv_cases()["stride-padding-bias"]
    plan = plan_of(g)
    (layer,) = plan.layers
    (syn,) = layer.inputs
    assert syn.kind == "conv" and syn.geometry is not None
    assert syn.geometry.in_shape == (2, 6, 6) and syn.geometry.out_shape == (4, 3, 4)
    assert syn.geometry.stride == (2, 1) and syn.geometry.padding == ((1, 1), (0, 0))
    # IF: gain dt * r; the bias is the population's constant input, per channel
    np.testing.assert_allclose(syn.weight, DT * g.nodes["n0"].weight, rtol=1e-15)
    np.testing.assert_allclose(layer.beta, DT * np.repeat(g.nodes["n0"].bias, 12), rtol=1e-15)
    assert any("bias" in p for p in plan.passes)


def test_pooling_passes_are_listed():
    cases = conv_cases()
    passes = plan_of(cases["sumpool-conv"][0]).passes
    assert any("fold SumPool2d 'n2' into Conv2d 'n3' (one convolution" in p for p in passes)
    layer = plan_of(cases["sumpool-conv"][0]).layers[1]
    assert layer.inputs[0].kind == "conv" and layer.inputs[0].geometry.stride == (2, 2)
    passes = plan_of(cases["avgpool-flatten-linear"][0]).passes
    assert any("AvgPool2d 'n2' -> Linear 'n4'" in p and "one dense matrix" in p for p in passes)
    assert plan_of(cases["avgpool-flatten-linear"][0]).layers[1].inputs[0].kind == "dense"
    passes = plan_of(cases["pool-alone"][0]).passes
    assert any("SumPool2d 'n2' as a depthwise convolution" in p for p in passes)


def test_per_channel_time_constants_split_the_convolutions():
    """One population per distinct tau (whole channels); each convolution between them keeps
    the channels it joins, as a Lava Conv (all-zero channel blocks left out)."""
    g, _ = conv_cases()["per-channel-tau"]
    plan = plan_of(g)
    assert [ly.name for ly in plan.layers] == ["n1/0", "n1/1", "n3/0", "n3/1"]
    assert [ly.shape for ly in plan.layers] == [(2, 6, 6)] * 4
    assert all(s.kind == "conv" for ly in plan.layers for s in ly.inputs)
    k1, k2 = g.nodes["n0"].weight, g.nodes["n2"].weight
    for j, channels in enumerate(([0, 2], [1, 3])):
        (syn,) = plan.layers[j].inputs
        assert syn.geometry.out_shape == (2, 6, 6) and syn.geometry.groups == 1
        np.testing.assert_allclose(syn.weight, plan.layers[j].dv * k1[channels], rtol=1e-14)
    # n3/0 (channels 0, 1: group 0, from n1 channels 0, 1) reads channel 0 of n1/0 and
    # channel 1 of n1/1
    syns = plan.layers[2].inputs
    assert [s.source for s in syns] == [0, 1]
    assert [s.geometry.in_shape for s in syns] == [(2, 6, 6)] * 2
    np.testing.assert_allclose(syns[0].weight[:, 0], plan.layers[2].dv * k2[:2, 0], rtol=1e-14)
    assert not np.any(syns[0].weight[:, 1])  # n1 channel 2 is in the other group
    np.testing.assert_allclose(syns[1].weight[:, 0], plan.layers[2].dv * k2[:2, 1], rtol=1e-14)
    assert any(p.startswith("split LIF 'n3' (144 neurons, 2 different time constants)")
               and "'n3/1' (channels 2-3, 72 neurons" in p for p in plan.passes)


def test_a_path_not_one_conv_is_dense_within_the_cap_and_refused_beyond():
    rng = np.random.default_rng(0)
    # an overlapping pool (kernel 3, stride 2) before a conv: not one convolution
    g = seq((2, 9, 9), nir.SumPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(0, 0)),
            conv2d(rng, 2, 2, (3, 3), (4, 4), 300.0, padding=1), if_((2, 4, 4)))
    plan = plan_of(g)
    syn = plan.layers[0].inputs[0]
    assert syn.kind == "dense" and syn.weight.shape == (32, 162)
    assert any("as one dense matrix (32x162)" in p for p in plan.passes)
    # the same, too large to unroll: refused, naming the node and the sizes
    big = seq((4, 64, 64), nir.SumPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(0, 0)),
              conv2d(rng, 64, 4, (3, 3), (31, 31), 1.0, padding=1), if_((64, 31, 31)))
    found = nrf_nir.check(big, "loihi")
    assert [(v.node, v.field) for v in found] == [("n1", "weight")]
    assert str(DENSE_CAP) in found[0].message and "not one Lava convolution" in found[0].message


class _ConvWork:
    """Stands in for ``torch.nn.functional`` in a module and records the float elements each
    convolution call holds at once (input, output, im2col buffer)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []   # (rows, elements)

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    def conv2d(self, x, k, **kw):
        out = torch.nn.functional.conv2d(x, k, **kw)
        cols = out.shape[0] * k.shape[1] * kw.get("groups", 1) * k.shape[2] * k.shape[3] \
            * out.shape[2] * out.shape[3]
        self.calls.append((int(x.shape[0]), int(x.numel() + out.numel() + cols)))
        return out


def nrf_shaped(rng) -> nir.NIRGraph:
    """The zoo's nrf front: AvgPool2d 2x2 on a 2x64x64 input, then a 9x9 'same' Conv2d."""
    return seq((2, 64, 64), nir.AvgPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)),
               conv2d(rng, 4, 2, (9, 9), (32, 32), 300.0, padding="same"), if_((4, 32, 32)))


def test_planning_a_large_pool_conv_stays_within_the_work_cap(monkeypatch):
    """The OOM of `conformance --zoo` on the Lava targets: checking the pool -> conv fold of
    the 2x64x64 nrf model pushed 4096 unit images through the folded 18x18 convolution at once
    (10.9 GB). The fold is now checked on a few random images, and every convolution of the
    planner runs in row blocks of at most WORK_CAP elements."""
    from nrf_nir.targets.lava import conv as conv_module

    work = _ConvWork()
    monkeypatch.setattr(conv_module, "F", work)
    plan = plan_of(nrf_shaped(np.random.default_rng(0)))
    assert plan.layers[0].inputs[0].kind == "conv"
    assert plan.layers[0].inputs[0].weight.shape[2:] == (18, 18)
    assert work.calls and all(rows == 1 or held <= WORK_CAP for rows, held in work.calls)
    # the dense unrolling of a convolution (unit vectors through it) is blocked the same way
    pool = pool_as_conv((2, 64, 64), (2, 2), (2, 2), (0, 0), average=True)
    work.calls.clear()
    got = conv_apply(np.eye(2 * 64 * 64)[:1500], *pool)
    assert got.shape == (1500, 2 * 32 * 32) and len(work.calls) > 1
    assert all(held <= WORK_CAP for _, held in work.calls)


def test_emulator_convolves_in_bounded_blocks(monkeypatch):
    """The loihi emulator's convolution of a batch runs in row blocks of at most WORK_CAP
    elements, with the same integers as one call."""
    from nrf_nir.targets.lava import emulator as emulator_module

    g = nrf_shaped(np.random.default_rng(1))
    fixed = quantize(plan_of(g))
    x = torch.as_tensor(spikes((3, 8, 2, 64, 64), rate=0.2)).reshape(3, 8, -1)
    whole = LoihiEmulator(fixed).run(x)[0]
    work = _ConvWork()
    monkeypatch.setattr(emulator_module, "F", work)
    monkeypatch.setattr(emulator_module, "WORK_CAP", 2 * work_per_row(fixed))
    got = LoihiEmulator(fixed).run(x)[0]
    assert torch.equal(got, whole) and int(whole.sum()) > 0
    assert len(work.calls) >= 3 * 8 // 2 and all(rows <= 2 for rows, _ in work.calls)


def work_per_row(fixed) -> int:
    syn = fixed.layers[0].inputs[0]
    return conv_work(syn.geometry, syn.weight.shape[2:])


def test_same_padding_with_an_even_kernel_is_dense():
    """PyTorch's 'same' padding for an even span pads one more after: Lava pads symmetrically,
    so the plan unrolls it (exactly)."""
    rng = np.random.default_rng(1)
    g = seq((1, 5, 5), conv2d(rng, 2, 1, (2, 2), (5, 5), 300.0, padding="same"), if_((2, 5, 5)))
    plan = plan_of(g)
    assert plan.layers[0].inputs[0].kind == "dense"
    assert any("asymmetric padding" in p for p in plan.passes)
    x = spikes((20, 2, 1, 5, 5), seed=4)
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")["output"]
    got = nrf_nir.lower(g, "loihi", dtype="float64").run(x)["output"]
    assert float(ref.sum()) > 0
    assert float((got != ref).float().mean()) < 0.05


# ---------------------------------------------------------------------------------------------
# the emulator against Lava's own fixed-point convolution function (no processes)
# ---------------------------------------------------------------------------------------------

@needs_lava
@pytest.mark.parametrize("name", ["stride-padding-bias", "dilation-groups", "mixed-sign",
                                  "conv1d"])
def test_emulated_conv_is_lavas_fixed_point_conv(name):
    """One synapse's integer input current: the emulator's torch convolution equals
    ``lava.proc.conv.utils.conv`` on Lava's kernel, with its 24-bit wrap (also with graded
    inputs large enough to wrap)."""
    from lava.proc.conv import utils

    from nrf_nir.targets.lava.conv import lava_kernel
    from nrf_nir.targets.lava.emulator import _Conv

    g, shape = conv_cases()[name]
    fixed = quantize(plan_of(g))
    syn = fixed.layers[0].inputs[0]
    geo = syn.geometry
    rng = np.random.default_rng(5)
    for x_max in (1, 40_000):
        x = rng.integers(-x_max, x_max + 1, (3, int(np.prod(shape))))
        emu = _Conv(torch.as_tensor(syn.weight), geo).matmul(torch.as_tensor(x), float(x_max))
        C, H, W = geo.in_shape
        k = lava_kernel(syn.weight).astype(np.int32)
        for b in range(3):
            xs = x[b].reshape(C, H, W).transpose(2, 1, 0).astype(np.int32)
            out = utils.conv(xs, k, k.shape[1:3], geo.stride[::-1],
                             (geo.padding[1][0], geo.padding[0][0]), geo.dilation[::-1],
                             geo.groups)
            want = utils.signed_clamp(out.astype(np.int64), bits=24).transpose(2, 1, 0)
            np.testing.assert_array_equal(emu[b].numpy(), want.reshape(-1))


def test_emulator_runs_batched_and_time_chunked():
    """[T, B, ...] in one call equals sample by sample, and time chunks change nothing."""
    g, shape = conv_cases()["sumpool-conv"]
    fixed = quantize(plan_of(g))
    x = torch.as_tensor(spikes((25, 4, *shape), seed=2))
    emu = LoihiEmulator(fixed)
    whole = emu.run(x)
    assert int(whole[1].sum()) > 0
    for b in range(4):
        one = emu.run(x[:, b:b + 1])
        for k in whole:
            assert torch.equal(one[k][:, 0], whole[k][:, b])
    emu.chunk_elements = 64
    chunked = emu.run(x)
    for k in whole:
        assert torch.equal(chunked[k], whole[k])


# ---------------------------------------------------------------------------------------------
# Lava
# ---------------------------------------------------------------------------------------------

def compare(g: nir.NIRGraph, x: np.ndarray) -> None:
    """lava-float == reference spike for spike; loihi == lava-fixed bit for bit."""
    ref = nrf_nir.run(g, x, target="reference", dtype="float64")
    got = nrf_nir.lower(g, "lava-float", dtype="float64").run(x)
    for key in ref:
        assert float(ref[key].sum()) > 0, key
        assert torch.equal(got[key], ref[key]), (
            f"{key}: {int((got[key] != ref[key]).sum())} of {ref[key].numel()} differ")
    fixed = nrf_nir.lower(g, "lava-fixed", dtype="float64").run(x)
    emu = nrf_nir.lower(g, "loihi", dtype="float64").run(x)
    for key in fixed:
        assert torch.equal(fixed[key], emu[key]), key


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("name", list(conv_cases()))
def test_conv_cases_on_lava(name):
    g, shape = conv_cases()[name]
    compare(g, spikes((30, 3, *shape), seed=len(name)))


def nmnist_net(rng, size=34, channels=(16, 32, 64), hidden=256, n_out=10):
    """The NIR paper's N-MNIST shape: Conv2d (5x5, then 3x3, padding 1) with IF neurons and
    2x2 sum pooling after each, Flatten, Linear ``hidden``, Linear ``n_out`` (IF)."""
    c1, c2, c3 = channels
    s1 = size - 2
    s2 = s1 // 2
    s3 = s2 // 2
    s4 = s3 // 2
    n_flat = c3 * s4 * s4

    def pool():
        return nir.SumPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))

    def conv(c_out, c_in, k, hw):
        fan = c_in * k * k
        w = rng.normal(0.1, 1.0, (c_out, c_in, k, k)) * (2500.0 if c_in == 2 else 1000.0)
        return nir.Conv2d(input_shape=(hw, hw), weight=w / fan ** 0.5, stride=1, padding=1,
                          dilation=1, groups=1, bias=np.zeros(c_out))

    def lin(n_o, n_i):
        return nir.Linear(weight=rng.normal(0.0, 1.0, (n_o, n_i)) * 2500.0 / n_i ** 0.5)

    return seq((2, size, size), conv(c1, 2, 5, size), if_((c1, s1, s1)), pool(),
               conv(c2, c1, 3, s2), if_((c2, s2, s2)), pool(), conv(c3, c2, 3, s3),
               if_((c3, s3, s3)), pool(),
               nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array([c3, s4, s4])}),
               lin(hidden, n_flat), if_(hidden), lin(n_out, hidden), if_(n_out))


def test_nmnist_plan_is_three_convs_and_two_dense():
    g = nmnist_net(np.random.default_rng(0))
    plan = plan_of(g)
    assert [s.kind for ly in plan.layers for s in ly.inputs] == ["conv"] * 3 + ["dense"] * 2
    assert sum("fold SumPool2d" in p for p in plan.passes) == 2
    assert any("SumPool2d 'n8' -> Linear 'n10'" in p for p in plan.passes)


@pytest.mark.slow
@needs_lava
def test_nmnist_shaped_net_scaled_down_on_all_three_targets():
    """The N-MNIST network at 18x18 input with 4/8/8 channels (the full 34x34 16/32/64 size
    is run by hand: docs/targets/lava.md gives the timings)."""
    g = nmnist_net(np.random.default_rng(0), size=18, channels=(4, 8, 8), hidden=32)
    compare(g, spikes((25, 2, 2, 18, 18), rate=0.2, seed=9))


@pytest.mark.parametrize("stride,padding,dilation,groups,size", [
    ((1, 1), (0, 0), (1, 1), 1, (7, 7)), ((2, 3), (1, 2), (1, 1), 2, (9, 8)),
    ((2, 2), (0, 1), (2, 1), 1, (10, 11)), ((3, 1), (2, 0), (1, 2), 4, (8, 9)),
])
def test_conv_adjoint_is_the_transpose(stride, padding, dilation, groups, size):
    """conv_adjoint(y) == y @ M for the matrix M that conv_apply gives column by column."""
    from nrf_nir.targets.lava.conv import conv_adjoint

    rng = np.random.default_rng(7)
    kernel, geo = geometry((4, *size), rng.normal(0, 1, (8, 4 // groups, 3, 2)), stride,
                           padding, dilation, groups)
    n_in = int(np.prod(geo.in_shape))
    m = conv_apply(np.eye(n_in), kernel, geo).T
    y = rng.normal(0, 1, (3, m.shape[0]))
    np.testing.assert_allclose(conv_adjoint(y, kernel, geo), y @ m, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("name", ["conv-first", "nmnist-small"])
def test_netx_artifact_of_a_conv_net_reproduces_lava_fixed(name, tmp_path):
    """deploy --target lava-fixed writes netx conv (+ flatten, dense) layers with pooling folded;
    lava.lib.dl.netx.hdf5.Network runs them to lava-fixed's spikes."""
    import json

    from nrf_nir.cli import main
    from nrf_nir.targets.lava.netx import run_netx

    rng = np.random.default_rng(12)
    if name == "conv-first":
        g, shape = conv_cases()["stride-padding-bias"]
    else:
        g = nmnist_net(rng, size=12, channels=(3, 4, 4), hidden=12, n_out=5)
        shape = (2, 12, 12)
    nrf_nir.save(g, tmp_path / "net.nir")
    out = tmp_path / "deploy"
    assert main(["deploy", str(tmp_path / "net.nir"), "--target", "lava-fixed", "-o",
                 str(out)]) == 0
    meta = json.loads((out / "lava.json").read_text())
    x = spikes((30, 2, *shape), rate=0.25, seed=3)
    fixed = nrf_nir.lower(g, "lava-fixed").run(x)["output"].numpy().astype(np.int8)
    fixed = fixed.reshape(30, 2, -1)
    assert fixed.sum() > 0
    for b in range(2):
        got = run_netx(out / "network.net", x[:, b].reshape(30, -1), meta["latency_steps"])
        np.testing.assert_array_equal(got, fixed[:, b])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_emulator_on_cuda_equals_cpu():
    g = nmnist_net(np.random.default_rng(0), size=18, channels=(4, 8, 8), hidden=32)
    fixed = quantize(plan_of(g))
    x = torch.as_tensor(spikes((25, 8, 2, 18, 18), rate=0.2, seed=9))
    cpu = LoihiEmulator(fixed).run(x)
    cuda = LoihiEmulator(fixed, device="cuda").run(x)
    assert int(cpu[len(cpu) - 1].sum()) > 0
    for k in cpu:
        assert torch.equal(cpu[k], cuda[k].cpu()), k
