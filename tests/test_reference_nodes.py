"""Hand-computed checks of every node type against the reference simulator (float64).

Each expected array below is worked out by hand in the comments, following
``docs/semantics.md`` and ``docs/contract.md``.  Where the arithmetic is exact in binary
(dyadic numbers) the comparison is exact; otherwise a relative tolerance of 1e-12 is used for
voltages, and spikes are always compared exactly.  Every test also cross-checks the
independent numpy oracle (``tests/oracle.py``) against the same hand values.
"""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from tests.oracle import oracle_run

F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def chain(in_shape, nodes: dict, out_shape, *, type_check=False, **meta) -> nir.NIRGraph:
    """Input "input" -> nodes (in order) -> Output "output"; metadata options from ``meta``."""
    all_nodes = {"input": nir.Input(input_type=np.array(in_shape))}
    all_nodes.update(nodes)
    all_nodes["output"] = nir.Output(output_type=np.array(out_shape))
    names = list(all_nodes)
    edges = list(zip(names[:-1], names[1:], strict=True))
    g = nir.NIRGraph(nodes=all_nodes, edges=edges, type_check=type_check)
    g.metadata = dict(meta)
    return g


def run(graph, x, dt, record=(), dtype=F64):
    out = nrf_nir.run(graph, x, dt=dt, dtype=dtype, record=record)
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


def both(graph, x, dt, record=()):
    """Run the package (float64) and the oracle; return (package, oracle) result dicts."""
    opts = {k: graph.metadata[k] for k in ("reset", "threshold", "integration", "initial_state")
            if k in graph.metadata}
    return run(graph, x, dt, record), oracle_run(graph, x, dt, record=record, **opts)


def const(T, B, values):
    """[T, B, N] input that repeats ``values`` at every step and batch entry."""
    v = np.asarray(values, dtype=np.float64)
    return np.broadcast_to(v, (T, B) + v.shape).copy()


def spike_steps(z):
    """1-based step numbers at which a 1-d spike train is 1."""
    return [int(t) + 1 for t in np.flatnonzero(np.asarray(z))]


def lif(tau, r, v_leak, v_th, v_reset):
    a = [np.asarray(p, dtype=np.float64) for p in (tau, r, v_leak, v_th, v_reset)]
    return nir.LIF(tau=a[0], r=a[1], v_leak=a[2], v_threshold=a[3], v_reset=a[4])


def ones(n):
    return np.ones(n)


def zeros(n):
    return np.zeros(n)


# ---------------------------------------------------------------------------------------------
# stateless nodes
# ---------------------------------------------------------------------------------------------


def test_affine():
    # W = [[1, 2], [3, 4], [-1, 0.5]], b = [0.5, -1, 0]
    # x = [1, -1] -> [1-2+0.5, 3-4-1, -1-0.5+0] = [-0.5, -2, -1.5]
    # x = [2, 0.25] -> [2+0.5+0.5, 6+1-1, -2+0.125] = [3, 6, -1.875]
    W = np.array([[1.0, 2.0], [3.0, 4.0], [-1.0, 0.5]])
    b = np.array([0.5, -1.0, 0.0])
    g = chain([2], {"aff": nir.Affine(weight=W, bias=b)}, [3], type_check=True)
    x = np.array([[[1.0, -1.0], [2.0, 0.25]], [[2.0, 0.25], [1.0, -1.0]]])  # [T=2, B=2, 2]
    want = np.array([[[-0.5, -2.0, -1.5], [3.0, 6.0, -1.875]],
                     [[3.0, 6.0, -1.875], [-0.5, -2.0, -1.5]]])
    got, ora = both(g, x, 1e-3)
    assert got["output"].shape == (2, 2, 3)
    np.testing.assert_array_equal(got["output"], want)
    np.testing.assert_array_equal(ora["output"], want)


def test_linear():
    # same W without bias: [1, -1] -> [-1, -1, -1.5]; [2, 0.25] -> [2.5, 7, -1.875]
    W = np.array([[1.0, 2.0], [3.0, 4.0], [-1.0, 0.5]])
    g = chain([2], {"lin": nir.Linear(weight=W)}, [3], type_check=True)
    x = np.array([[[1.0, -1.0]], [[2.0, 0.25]]])  # [T=2, B=1, 2]
    want = np.array([[[-1.0, -1.0, -1.5]], [[2.5, 7.0, -1.875]]])
    got, ora = both(g, x, 1e-3)
    np.testing.assert_array_equal(got["output"], want)
    np.testing.assert_array_equal(ora["output"], want)


def test_scale():
    # s = [2, -0.5, 0]; x = [1, 2, 3] -> [2, -1, 0]; x = [-4, 8, 9] -> [-8, -4, 0]
    g = chain([3], {"s": nir.Scale(scale=np.array([2.0, -0.5, 0.0]))}, [3], type_check=True)
    x = np.array([[[1.0, 2.0, 3.0]], [[-4.0, 8.0, 9.0]]])
    want = np.array([[[2.0, -1.0, 0.0]], [[-8.0, -4.0, 0.0]]])
    got, ora = both(g, x, 1e-3)
    np.testing.assert_array_equal(got["output"], want)
    np.testing.assert_array_equal(ora["output"], want)


def test_threshold():
    # theta = [0.5, 1.0]; H(x - theta):
    # [0.4, 1.5] -> [0, 1]; [0.6, 0.9] -> [1, 0]; [-3, 7] -> [0, 1]
    g = chain([2], {"th": nir.Threshold(threshold=np.array([0.5, 1.0]))}, [2], type_check=True)
    x = np.array([[[0.4, 1.5]], [[0.6, 0.9]], [[-3.0, 7.0]]])
    want = np.array([[[0.0, 1.0]], [[1.0, 0.0]], [[0.0, 1.0]]])
    got, ora = both(g, x, 1e-3)
    np.testing.assert_array_equal(got["output"], want)
    np.testing.assert_array_equal(ora["output"], want)


def test_flatten():
    # per-sample shape (2, 3, 4); Flatten(start_dim=0, end_dim=-1) -> (24,): C order, so
    # element [c, h, w] lands at 12*c + 4*h + w.  Flatten(1, 2) -> (2, 12).
    x = np.arange(2 * 2 * 3 * 4, dtype=np.float64).reshape(1, 2, 2, 3, 4)  # T=1, B=2
    g = chain([2, 3, 4], {"fl": nir.Flatten(input_type={"input": np.array([2, 3, 4])},
                                            start_dim=0, end_dim=-1)}, [24], type_check=True)
    got, ora = both(g, x, 1e-3)
    assert got["output"].shape == (1, 2, 24)
    np.testing.assert_array_equal(got["output"][0, 0], np.arange(24.0))
    np.testing.assert_array_equal(got["output"][0, 1], np.arange(24.0, 48.0))
    # element [b=1, c=1, h=2, w=3] = 24 + 12 + 8 + 3 = 47 is last
    assert got["output"][0, 1, 23] == 47.0
    np.testing.assert_array_equal(ora["output"], got["output"])

    g2 = chain([2, 3, 4], {"fl": nir.Flatten(input_type={"input": np.array([2, 3, 4])},
                                             start_dim=1, end_dim=2)}, [2, 12], type_check=True)
    got2, ora2 = both(g2, x, 1e-3)
    assert got2["output"].shape == (1, 2, 2, 12)
    # [b=0, c=1, :] = 12..23
    np.testing.assert_array_equal(got2["output"][0, 0, 1], np.arange(12.0, 24.0))
    np.testing.assert_array_equal(ora2["output"], got2["output"])


def test_sumpool2d():
    # x = arange(16).reshape(4, 4) (one channel); kernel 2, stride 2, no padding:
    # [[0+1+4+5, 2+3+6+7], [8+9+12+13, 10+11+14+15]] = [[10, 18], [42, 50]]
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                         padding=np.array([0, 0]))
    g = chain([1, 4, 4], {"pool": pool}, [1, 2, 2])
    x = np.arange(16.0).reshape(1, 1, 1, 4, 4)
    got, ora = both(g, x, 1e-3)
    want = np.array([[10.0, 18.0], [42.0, 50.0]]).reshape(1, 1, 1, 2, 2)
    np.testing.assert_array_equal(got["output"], want)
    np.testing.assert_array_equal(ora["output"], want)


def test_avgpool2d_counts_padding():
    # x = [[1, 2], [3, 4]]; kernel 2, stride 1, padding 1 -> 3x3 windows over the zero-padded
    # 4x4 map, each divided by 4 (count_include_pad=True):
    # corners: 1/4, 2/4, 3/4, 4/4; edges: (1+2)/4, (1+3)/4, (2+4)/4, (3+4)/4; centre: 10/4
    pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]),
                         padding=np.array([1, 1]))
    g = chain([1, 2, 2], {"pool": pool}, [1, 3, 3])
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 1, 2, 2)
    got, ora = both(g, x, 1e-3)
    want = np.array([[0.25, 0.75, 0.5], [1.0, 2.5, 1.5], [0.75, 1.75, 1.0]]).reshape(1, 1, 1, 3, 3)
    np.testing.assert_array_equal(got["output"], want)
    np.testing.assert_array_equal(ora["output"], want)


@pytest.mark.parametrize(
    "padding,dilation,stride,want",
    [
        # w = [1, 0, -1], x = [1, 2, 3, 4, 5], bias 0.5; y[i] = x[i-d] - x[i+d] + 0.5
        # 'same', d=1 (pad 1): [0-2, 1-3, 2-4, 3-5, 4-0] + 0.5
        ("same", 1, 1, [-1.5, -1.5, -1.5, -1.5, 4.5]),
        # 'same', d=2 (pad 2): [0-3, 0-4, 1-5, 2-0, 3-0] + 0.5
        ("same", 2, 1, [-2.5, -3.5, -3.5, 2.5, 3.5]),
        # 'valid', stride 2: y[j] = x[2j] - x[2j+2]: [1-3, 3-5] + 0.5
        ("valid", 1, 2, [-1.5, -1.5]),
        # padding 1, stride 2: padded [0,1,2,3,4,5,0]: [0-2, 2-4, 4-0] + 0.5
        (1, 1, 2, [-1.5, -1.5, 4.5]),
    ],
)
def test_conv1d(padding, dilation, stride, want):
    w = np.array([[[1.0, 0.0, -1.0]]])
    conv = nir.Conv1d(input_shape=5, weight=w, stride=stride, padding=padding,
                      dilation=dilation, groups=1, bias=np.array([0.5]))
    g = chain([1, 5], {"conv": conv}, [1, len(want)])
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0]).reshape(1, 1, 1, 5)
    got, ora = both(g, x, 1e-3)
    np.testing.assert_array_equal(got["output"], np.array(want).reshape(1, 1, 1, -1))
    np.testing.assert_array_equal(ora["output"], np.array(want).reshape(1, 1, 1, -1))


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv1d_same_even_kernel_pads_right():
    # kernel 2, 'same' (torch convention): total padding 1 goes to the right, so
    # y[i] = 1*x[i] + 10*x[i+1]: x = [1, 2, 3, 4, 5] -> [21, 32, 43, 54, 5 + 0]
    conv = nir.Conv1d(input_shape=5, weight=np.array([[[1.0, 10.0]]]), stride=1,
                      padding="same", dilation=1, groups=1, bias=np.zeros(1))
    g = chain([1, 5], {"conv": conv}, [1, 5])
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0]).reshape(1, 1, 1, 5)
    got, ora = both(g, x, 1e-3)
    want = np.array([21.0, 32.0, 43.0, 54.0, 5.0]).reshape(1, 1, 1, 5)
    np.testing.assert_array_equal(got["output"], want)
    np.testing.assert_array_equal(ora["output"], want)


def test_conv2d_groups_padding_stride():
    # 2 input channels, groups=2: output 0 sees only channel 0, output 1 only channel 1.
    # ch0 = [[0,1,2],[3,4,5],[6,7,8]], ch1 = all ones; padding 1 -> 5x5, stride 2, kernel 2x2
    # -> output 2x2, window (i, j) covers padded rows 2i..2i+1, cols 2j..2j+1.
    # w0 = [[1,0],[0,0]] picks padded (2i, 2j): (0,0) pad, (0,2) pad, (2,0) pad, (2,2) = x0[1,1]=4
    #   -> [[0, 0], [0, 4]] + bias 1 = [[1, 1], [1, 5]]
    # w1 = [[1,1],[1,1]] sums the ones inside each window: [[1, 2], [2, 4]] + bias -1
    #   -> [[0, 1], [1, 3]]
    w = np.array([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])  # [2, 1, 2, 2]
    conv = nir.Conv2d(input_shape=(3, 3), weight=w, stride=2, padding=1, dilation=1, groups=2,
                      bias=np.array([1.0, -1.0]))
    g = chain([2, 3, 3], {"conv": conv}, [2, 2, 2])
    x = np.stack([np.arange(9.0).reshape(3, 3), np.ones((3, 3))]).reshape(1, 1, 2, 3, 3)
    got, ora = both(g, x, 1e-3)
    want = np.array([[[1.0, 1.0], [1.0, 5.0]], [[0.0, 1.0], [1.0, 3.0]]]).reshape(1, 1, 2, 2, 2)
    np.testing.assert_array_equal(got["output"], want)
    np.testing.assert_array_equal(ora["output"], want)


def test_conv2d_same_and_dilation():
    # one channel, x = arange(16).reshape(4,4), w = [[0,0,0],[0,0,0],[0,0,1]] with dilation 1
    # and padding 'same' (1 each side): y[i,j] = x[i+1, j+1] (0 outside) ->
    # [[5,6,7,0],[9,10,11,0],[13,14,15,0],[0,0,0,0]]
    # with dilation (2, 1) and padding 'same' (2 rows, 1 col): y[i,j] = x[i+2, j+1]
    # -> [[9,10,11,0],[13,14,15,0],[0,0,0,0],[0,0,0,0]]
    w = np.zeros((1, 1, 3, 3))
    w[0, 0, 2, 2] = 1.0
    x = np.arange(16.0).reshape(1, 1, 1, 4, 4)
    for dil, want in [
        ((1, 1), [[5, 6, 7, 0], [9, 10, 11, 0], [13, 14, 15, 0], [0, 0, 0, 0]]),
        ((2, 1), [[9, 10, 11, 0], [13, 14, 15, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
    ]:
        conv = nir.Conv2d(input_shape=(4, 4), weight=w, stride=1, padding="same", dilation=dil,
                          groups=1, bias=np.zeros(1))
        g = chain([1, 4, 4], {"conv": conv}, [1, 4, 4])
        got, ora = both(g, x, 1e-3)
        w_arr = np.array(want, dtype=np.float64).reshape(1, 1, 1, 4, 4)
        np.testing.assert_array_equal(got["output"], w_arr)
        np.testing.assert_array_equal(ora["output"], w_arr)


# ---------------------------------------------------------------------------------------------
# Delay
# ---------------------------------------------------------------------------------------------


def test_delay_elementwise_rounding():
    # dt = 1e-3; delays [0, 2e-3, 1e-3, 2.6e-3] -> round(d/dt) = [0, 2, 1, 3] steps
    # x[t] = t (t = 1..5) in every element: y[t] = x[t - k] or 0 before the start
    #   k=0: 1 2 3 4 5 ; k=2: 0 0 1 2 3 ; k=1: 0 1 2 3 4 ; k=3: 0 0 0 1 2
    d = np.array([0.0, 2e-3, 1e-3, 2.6e-3])
    g = chain([4], {"delay": nir.Delay(delay=d)}, [4], type_check=True)
    x = np.broadcast_to(np.arange(1.0, 6.0)[:, None, None], (5, 2, 4)).copy()
    x[:, 1] *= -1  # second batch entry: negated
    got, ora = both(g, x, 1e-3)
    want0 = np.array([[1, 0, 0, 0], [2, 0, 1, 0], [3, 1, 2, 0], [4, 2, 3, 1], [5, 3, 4, 2.0]])
    np.testing.assert_array_equal(got["output"][:, 0], want0)
    np.testing.assert_array_equal(got["output"][:, 1], -want0)
    np.testing.assert_array_equal(ora["output"], got["output"])


# ---------------------------------------------------------------------------------------------
# I and IF
# ---------------------------------------------------------------------------------------------


def test_integrator():
    # I(r=[2, -1]), dt = 0.25: v = v + (dt*r) * x = v + [0.5, -0.25] * x
    # x = 1, 1, -2, 0 -> v0: 0.5, 1.0, 0.0, 0.0 ; v1: -0.25, -0.5, 0.0, 0.0
    g = chain([2], {"i": nir.I(r=np.array([2.0, -1.0]))}, [2], type_check=True)
    x = np.array([1.0, 1.0, -2.0, 0.0])[:, None, None] * np.ones((4, 1, 2))
    got, ora = both(g, x, 0.25, record=("i.v",))
    want = np.array([[0.5, -0.25], [1.0, -0.5], [0.0, 0.0], [0.0, 0.0]])[:, None, :]
    np.testing.assert_array_equal(got["output"], want)
    np.testing.assert_array_equal(got["i.v"], want)
    np.testing.assert_array_equal(ora["output"], want)


# IF(r=1, v_th=1, v_reset=0), dt = 0.5, x = 1: v rises by 0.5 per step and reaches exactly 1.0
#   gt, value:    v = 0.5, 1.0 (not > 1), 1.5 -> spike, reset 0; 0.5, 1.0, 1.5 -> spike ...
#                 spikes at 3, 6; v after reset = 0.5, 1.0, 0, 0.5, 1.0, 0
#   ge, value:    v = 0.5, 1.0 (>= 1) -> spike, 0; 0.5, 1.0 -> spike ... spikes at 2, 4, 6
#   gt, subtract: v = 0.5, 1.0, 1.5 -> spike, 1.5 - 1 = 0.5; 1.0; 1.5 -> spike, 0.5; ...
#                 spikes at 3, 5; v = 0.5, 1.0, 0.5, 1.0, 0.5, 1.0
#   ge, subtract: 0.5, 1.0 -> spike, 0.0; 0.5, 1.0 -> spike, 0 : spikes at 2, 4, 6
@pytest.mark.parametrize(
    "threshold,reset,steps,v",
    [
        ("gt", "value", [3, 6], [0.5, 1.0, 0.0, 0.5, 1.0, 0.0]),
        ("ge", "value", [2, 4, 6], [0.5, 0.0, 0.5, 0.0, 0.5, 0.0]),
        ("gt", "subtract", [3, 5], [0.5, 1.0, 0.5, 1.0, 0.5, 1.0]),
        ("ge", "subtract", [2, 4, 6], [0.5, 0.0, 0.5, 0.0, 0.5, 0.0]),
    ],
)
def test_if_threshold_equality_and_reset(threshold, reset, steps, v):
    node = nir.IF(r=np.ones(1), v_threshold=np.ones(1), v_reset=np.zeros(1))
    g = chain([1], {"if": node}, [1], type_check=True, threshold=threshold, reset=reset)
    x = np.ones((6, 1, 1))
    got, ora = both(g, x, 0.5, record=("if.v",))
    assert spike_steps(got["output"][:, 0, 0]) == steps
    np.testing.assert_array_equal(got["if.v"][:, 0, 0], np.array(v))
    assert spike_steps(ora["output"][:, 0, 0]) == steps
    np.testing.assert_array_equal(ora["if.v"][:, 0, 0], np.array(v))


def test_if_nonzero_reset_value_vs_subtract():
    # IF(r=1, v_th=1, v_reset=0.25), dt=0.5, x=1 (steps of +0.5)
    # value:    0.5, 1.0, 1.5 -> spike, 0.25; 0.75; 1.25 -> spike, 0.25; 0.75 ; spikes 3, 5
    # subtract: 0.5, 1.0, 1.5 -> spike, 1.5 - (1 - 0.25) = 0.75; 1.25 -> spike, 0.5; 1.0;
    #           1.5 -> spike, 0.75 ; spikes 3, 4, 6
    node = nir.IF(r=np.ones(1), v_threshold=np.ones(1), v_reset=np.full(1, 0.25))
    x = np.ones((6, 1, 1))
    for reset, steps, v in [
        ("value", [3, 5], [0.5, 1.0, 0.25, 0.75, 0.25, 0.75]),
        ("subtract", [3, 4, 6], [0.5, 1.0, 0.75, 0.5, 1.0, 0.75]),
    ]:
        g = chain([1], {"if": node}, [1], type_check=True, reset=reset)
        got, ora = both(g, x, 0.5, record=("if.v",))
        assert spike_steps(got["output"][:, 0, 0]) == steps, reset
        np.testing.assert_array_equal(got["if.v"][:, 0, 0], np.array(v))
        assert spike_steps(ora["output"][:, 0, 0]) == steps


# ---------------------------------------------------------------------------------------------
# LI
# ---------------------------------------------------------------------------------------------


def test_li_euler_scalar_params():
    # LI(tau=0.01, r=1, v_leak=0), dt=1e-3: c = 0.1; x = 1: v = 1 - 0.9^n
    #   0.1, 0.19, 0.271, 0.3439, 0.40951
    node = nir.LI(tau=np.array(0.01), r=np.array(1.0), v_leak=np.array(0.0))
    g = chain([3], {"li": node}, [3])
    x = np.ones((5, 2, 3))
    got, ora = both(g, x, 1e-3)
    want = np.array([0.1, 0.19, 0.271, 0.3439, 0.40951])
    assert got["output"].shape == (5, 2, 3)
    for b in range(2):
        for n in range(3):
            np.testing.assert_allclose(got["output"][:, b, n], want, rtol=1e-12)
            np.testing.assert_allclose(ora["output"][:, b, n], want, rtol=1e-12)


def test_li_per_neuron_params_and_initial_state():
    # neuron 0: tau=0.01 (c=0.1), r=1, v_leak=0.5, x=0
    #   leak start: v stays 0.5 ; zero start: v = 0.5 (1 - 0.9^n) = 0.05, 0.095, 0.1355
    # neuron 1: tau=0.002 (c=0.5), r=2, v_leak=-1, x=1: v = v + 0.5*((-1 - v) + 2)
    #   leak start: v0=-1: 0.0, 0.5, 0.75 ; zero start: v0=0: 0.5, 0.75, 0.875
    node = nir.LI(tau=np.array([0.01, 0.002]), r=np.array([1.0, 2.0]),
                  v_leak=np.array([0.5, -1.0]))
    x = const(3, 1, [0.0, 1.0])
    for init, want in [
        ("leak", [[0.5, 0.0], [0.5, 0.5], [0.5, 0.75]]),
        ("zero", [[0.05, 0.5], [0.095, 0.75], [0.1355, 0.875]]),
    ]:
        g = chain([2], {"li": node}, [2], type_check=True, initial_state=init)
        got, ora = both(g, x, 1e-3)
        np.testing.assert_allclose(got["output"][:, 0], np.array(want), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(ora["output"][:, 0], np.array(want), rtol=1e-12, atol=1e-15)


def test_li_exponential_integration():
    # exponential: a = exp(-dt/tau) = exp(-0.1); v = a v + (1-a)(v_leak + r x), v_leak=0, x=1
    #   v_n = 1 - exp(-0.1 n): 0.0951625820, 0.1812692469, 0.2591817793, 0.3296799540
    # Euler would give 0.1, 0.19, ... (checked to differ).
    node = nir.LI(tau=np.array([0.01]), r=np.array([1.0]), v_leak=np.array([0.0]))
    g = chain([1], {"li": node}, [1], type_check=True, integration="exponential")
    x = np.ones((4, 1, 1))
    got, ora = both(g, x, 1e-3)
    want = np.array([1 - math.exp(-0.1 * n) for n in range(1, 5)])
    np.testing.assert_allclose(got["output"][:, 0, 0], want, rtol=1e-12)
    np.testing.assert_allclose(ora["output"][:, 0, 0], want, rtol=1e-12)
    assert abs(got["output"][0, 0, 0] - 0.1) > 1e-3


# ---------------------------------------------------------------------------------------------
# LIF
# ---------------------------------------------------------------------------------------------


def test_lif_tau10ms_constant_input():
    # LIF(tau=0.01, r=1, v_leak=0, v_th=1, v_reset=0), dt=1e-3 -> c = 0.1, x = 1.5
    #   v_n = 1.5 (1 - 0.9^n): 0.15, 0.285, 0.4065, 0.51585, ...
    #   first n with v_n > 1: 0.9^n < 1/3 -> n = 11 (v_11 = 1.0293); reset to 0 and repeat:
    #   spikes at 11, 22, 33
    g = chain([1], {"lif": lif([0.01], [1], [0], [1], [0])}, [1], type_check=True)
    x = np.full((35, 1, 1), 1.5)
    got, ora = both(g, x, 1e-3, record=("lif.v",))
    np.testing.assert_allclose(got["lif.v"][:4, 0, 0], [0.15, 0.285, 0.4065, 0.51585], rtol=1e-12)
    assert spike_steps(got["output"][:, 0, 0]) == [11, 22, 33]
    assert got["lif.v"][10, 0, 0] == 0.0  # reset to value at the spike step
    np.testing.assert_allclose(got["lif.v"][11, 0, 0], 0.15, rtol=1e-12)
    assert spike_steps(ora["output"][:, 0, 0]) == [11, 22, 33]


# LIF(tau=1, r=1, v_leak=0, v_th=1, v_reset=0), dt=0.5: c = 0.5 exactly; x = 1.875 (dyadic)
#   value:    v1 = 0.5 * 1.875 = 0.9375; v2 = 0.9375 + 0.5*(1.875-0.9375) = 1.40625 -> spike, 0
#             then periodic: spikes at 2, 4, 6; v = 0.9375, 0, 0.9375, 0, 0.9375, 0
#   subtract: v2 = 1.40625 -> 0.40625; v3 = 0.40625 + 0.5*1.46875 = 1.140625 -> 0.140625;
#             v4 = 0.140625 + 0.5*1.734375 = 1.0078125 -> 0.0078125;
#             v5 = 0.0078125 + 0.5*1.8671875 = 0.94140625 (no spike);
#             v6 = 0.94140625 + 0.5*0.93359375 = 1.408203125 -> 0.408203125
#             spikes at 2, 3, 4, 6
@pytest.mark.parametrize(
    "reset,steps,v",
    [
        ("value", [2, 4, 6], [0.9375, 0.0, 0.9375, 0.0, 0.9375, 0.0]),
        ("subtract", [2, 3, 4, 6], [0.9375, 0.40625, 0.140625, 0.0078125, 0.94140625,
                                    0.408203125]),
    ],
)
def test_lif_reset_modes_exact(reset, steps, v):
    g = chain([1], {"lif": lif([1.0], [1], [0], [1], [0])}, [1], type_check=True, reset=reset)
    x = np.full((6, 1, 1), 1.875)
    got, ora = both(g, x, 0.5, record=("lif.v",))
    assert spike_steps(got["output"][:, 0, 0]) == steps
    np.testing.assert_array_equal(got["lif.v"][:, 0, 0], np.array(v))
    assert spike_steps(ora["output"][:, 0, 0]) == steps
    np.testing.assert_array_equal(ora["lif.v"][:, 0, 0], np.array(v))


# LIF(tau=1, v_th=1), dt=0.5, c=0.5, x=2: v1 = 0.5 * 2 = 1.0 exactly == v_th
#   gt: no spike at 1; v2 = 1 + 0.5*(2-1) = 1.5 -> spike, 0; then 1.0, 1.5 -> spikes 2, 4, 6
#   ge: spike at 1, reset 0, again 1.0 -> spikes every step
@pytest.mark.parametrize("threshold,steps", [("gt", [2, 4, 6]), ("ge", [1, 2, 3, 4, 5, 6])])
def test_lif_threshold_at_exact_equality(threshold, steps):
    g = chain([1], {"lif": lif([1.0], [1], [0], [1], [0])}, [1], type_check=True,
              threshold=threshold)
    x = np.full((6, 1, 1), 2.0)
    got, ora = both(g, x, 0.5)
    assert spike_steps(got["output"][:, 0, 0]) == steps
    assert spike_steps(ora["output"][:, 0, 0]) == steps


def test_lif_per_neuron_params():
    # dt = 1e-3, x = 1.5 for both neurons
    # neuron 0: tau=0.01, r=1, v_leak=0, v_th=1, v_reset=0 -> spikes at 11, 22 (as above)
    # neuron 1: tau=0.005 (c=0.2), r=2, v_leak=0.1, v_th=0.5, v_reset=-0.2, v0 = v_leak = 0.1
    #   r*x + v_leak = 3.1: v1 = 0.1 + 0.2*(3.1 - 0.1) = 0.7 > 0.5 -> spike, -0.2
    #   v2 = -0.2 + 0.2*(3.1 + 0.2) = 0.46 (no); v3 = 0.46 + 0.2*(3.1 - 0.46) = 0.988 -> spike
    #   then -0.2, 0.46, ... : spikes at 1, 3, 5, ..., 23
    node = lif([0.01, 0.005], [1.0, 2.0], [0.0, 0.1], [1.0, 0.5], [0.0, -0.2])
    g = chain([2], {"lif": node}, [2], type_check=True)
    x = const(23, 3, [1.5, 1.5])
    got, ora = both(g, x, 1e-3, record=("lif.v",))
    for b in range(3):
        assert spike_steps(got["output"][:, b, 0]) == [11, 22]
        assert spike_steps(got["output"][:, b, 1]) == list(range(1, 24, 2))
    np.testing.assert_allclose(got["lif.v"][:3, 0, 1], [-0.2, 0.46, -0.2], rtol=1e-12)
    np.testing.assert_array_equal(ora["output"], got["output"])


def test_lif_scalar_params_broadcast():
    # 0-d parameters broadcast over 4 neurons; inputs 1.5, 2.5, 0.5, 1.2 with
    # tau=0.01, v_th=1, dt=1e-3 (c=0.1): v_n = x (1 - 0.9^n) before the first spike
    #   x=1.5: 0.9^n < 1/3 -> 11 ; x=2.5: 0.9^n < 0.6 -> 5 ; x=0.5: never ;
    #   x=1.2: 0.9^n < 1/6 -> 18 (v_17 = 0.99986, v_18 = 1.01988)
    node = lif(0.01, 1.0, 0.0, 1.0, 0.0)
    g = chain([4], {"lif": node}, [4])
    x = const(18, 2, [1.5, 2.5, 0.5, 1.2])
    got, ora = both(g, x, 1e-3)
    assert got["output"].shape == (18, 2, 4)
    firsts = [spike_steps(got["output"][:, 1, n])[:1] for n in range(4)]
    assert firsts == [[11], [5], [], [18]]
    np.testing.assert_array_equal(ora["output"], got["output"])


def test_lif_size1_params_broadcast():
    # the same with size-1 arrays (shape (1,)) instead of 0-d
    node = lif([0.01], [1.0], [0.0], [1.0], [0.0])
    g = chain([4], {"lif": node}, [4])
    x = const(18, 1, [1.5, 2.5, 0.5, 1.2])
    got, _ = both(g, x, 1e-3)
    firsts = [spike_steps(got["output"][:, 0, n])[:1] for n in range(4)]
    assert firsts == [[11], [5], [], [18]]


def test_lif_initial_state_leak_vs_zero():
    # tau=0.01 (c=0.1), r=1, v_leak=0.9, v_th=1, x=0.2: fixed point v_leak + r x = 1.1
    #   leak start (v0=0.9): v_n = 1.1 - 0.2*0.9^n > 1 -> 0.9^n < 0.5 -> first spike at 7
    #   zero start (v0=0):   v_n = 1.1 - 1.1*0.9^n > 1 -> 0.9^n < 1/11 -> first spike at 23
    node = lif([0.01], [1.0], [0.9], [1.0], [0.0])
    x = np.full((25, 1, 1), 0.2)
    for init, first, v1 in [("leak", 7, 0.92), ("zero", 23, 0.11)]:
        g = chain([1], {"lif": node}, [1], type_check=True, initial_state=init)
        got, ora = both(g, x, 1e-3, record=("lif.v",))
        assert spike_steps(got["output"][:, 0, 0])[0] == first, init
        np.testing.assert_allclose(got["lif.v"][0, 0, 0], v1, rtol=1e-12)
        assert spike_steps(ora["output"][:, 0, 0])[0] == first


def test_lif_exponential_integration():
    # tau=1, dt=0.5, v_th=1.2, x=1.875: a = exp(-0.5) = 0.60653
    #   exponential: v_n = 1.875 (1 - a^n): 0.73776, 1.18523 (< 1.2), 1.45663 -> first spike at 3
    #   Euler (c=0.5): 0.9375, 1.40625 -> first spike at 2
    node = lif([1.0], [1.0], [0.0], [1.2], [0.0])
    x = np.full((3, 1, 1), 1.875)
    a = math.exp(-0.5)
    g = chain([1], {"lif": node}, [1], type_check=True, integration="exponential")
    got, ora = both(g, x, 0.5, record=("lif.v",))
    np.testing.assert_allclose(got["lif.v"][:2, 0, 0], [1.875 * (1 - a), 1.875 * (1 - a * a)],
                               rtol=1e-12)
    assert spike_steps(got["output"][:, 0, 0]) == [3]
    assert spike_steps(ora["output"][:, 0, 0]) == [3]
    g_e = chain([1], {"lif": node}, [1], type_check=True, integration="euler")
    assert spike_steps(run(g_e, x, 0.5)["output"][:, 0, 0]) == [2]


# ---------------------------------------------------------------------------------------------
# CubaLI / CubaLIF
# ---------------------------------------------------------------------------------------------


def test_cuba_li_pulse():
    # CubaLI(tau_syn=1, tau_mem=1, r=1, v_leak=0, w_in=1), dt=0.5: c_m = c_s = 0.5
    # x = [1, 0, 0, 0]:
    #   1: i = 0 + 1 = 1;       v = 0 + 0.5*((0 - 0) + 1)         = 0.5;   i = 1 - 0.5*1 = 0.5
    #   2: i = 0.5;             v = 0.5 + 0.5*((0 - 0.5) + 0.5)   = 0.5;   i = 0.25
    #   3: i = 0.25;            v = 0.5 + 0.5*(-0.5 + 0.25)       = 0.375; i = 0.125
    #   4: i = 0.125;           v = 0.375 + 0.5*(-0.375 + 0.125)  = 0.25;  i = 0.0625
    node = nir.CubaLI(tau_syn=np.ones(1), tau_mem=np.ones(1), r=np.ones(1), v_leak=np.zeros(1),
                      w_in=np.ones(1))
    g = chain([1], {"li": node}, [1], type_check=True)
    x = np.array([1.0, 0.0, 0.0, 0.0]).reshape(4, 1, 1)
    got, ora = both(g, x, 0.5, record=("li.v", "li.i"))
    np.testing.assert_array_equal(got["output"][:, 0, 0], [0.5, 0.5, 0.375, 0.25])
    np.testing.assert_array_equal(got["li.v"][:, 0, 0], [0.5, 0.5, 0.375, 0.25])
    np.testing.assert_array_equal(got["li.i"][:, 0, 0], [0.5, 0.25, 0.125, 0.0625])
    np.testing.assert_array_equal(ora["output"][:, 0, 0], [0.5, 0.5, 0.375, 0.25])


def test_cuba_li_w_in_and_r():
    # two neurons, dt=0.5, tau 1 (c=0.5), x = [1, 0, 0]:
    # neuron 0: w_in=2, r=1: i=2, v=0.5*2=1, i=1; i=1, v=1+0.5*(-1+1)=1, i=0.5;
    #           i=0.5, v=1+0.5*(-1+0.5)=0.75
    # neuron 1: w_in=1, r=4, v_leak=0.5 (v0=0.5): i=1, v=0.5+0.5*(0+4)=2.5, i=0.5;
    #           i=0.5, v=2.5+0.5*((0.5-2.5)+2)=2.5, i=0.25; i=0.25, v=2.5+0.5*(-2+1)=2.0
    node = nir.CubaLI(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.array([1.0, 4.0]),
                      v_leak=np.array([0.0, 0.5]), w_in=np.array([2.0, 1.0]))
    g = chain([2], {"li": node}, [2], type_check=True)
    x = np.array([1.0, 0.0, 0.0])[:, None, None] * np.ones((3, 1, 2))
    got, ora = both(g, x, 0.5)
    want = np.array([[1.0, 2.5], [1.0, 2.5], [0.75, 2.0]])
    np.testing.assert_array_equal(got["output"][:, 0], want)
    np.testing.assert_array_equal(ora["output"][:, 0], want)


# CubaLIF(tau_syn=1, tau_mem=1, r=1, v_leak=0, v_th=0.4, v_reset=0), dt=0.5, x=[1,0,0,0]
#   value:    1: i=1, v=0.5 > 0.4 -> spike, v=0; i=0.5
#             2: i=0.5, v=0+0.5*(0+0.5)=0.25; i=0.25 ; 3: v=0.25+0.5*(-0.25+0.25)=0.25; i=0.125
#             4: v=0.25+0.5*(-0.25+0.125)=0.1875
#   subtract: 1: v=0.5 -> 0.5-0.4 = 0.1; 2: v=0.1+0.5*(-0.1+0.5)=0.3; 3: 0.3+0.5*(-0.3+0.25)=0.275
#             4: 0.275+0.5*(-0.275+0.125)=0.2
@pytest.mark.parametrize(
    "reset,v",
    [("value", [0.0, 0.25, 0.25, 0.1875]), ("subtract", [0.1, 0.3, 0.275, 0.2])],
)
def test_cuba_lif_pulse(reset, v):
    node = nir.CubaLIF(tau_syn=np.ones(1), tau_mem=np.ones(1), r=np.ones(1), v_leak=np.zeros(1),
                       v_threshold=np.full(1, 0.4), v_reset=np.zeros(1), w_in=np.ones(1))
    g = chain([1], {"lif": node}, [1], type_check=True, reset=reset)
    x = np.array([1.0, 0.0, 0.0, 0.0]).reshape(4, 1, 1)
    got, ora = both(g, x, 0.5, record=("lif.v", "lif.i"))
    assert spike_steps(got["output"][:, 0, 0]) == [1]
    np.testing.assert_allclose(got["lif.v"][:, 0, 0], v, rtol=1e-12)
    np.testing.assert_array_equal(got["lif.i"][:, 0, 0], [0.5, 0.25, 0.125, 0.0625])
    np.testing.assert_allclose(ora["lif.v"][:, 0, 0], v, rtol=1e-12)


def test_cuba_lif_exponential():
    # exponential, tau_syn = tau_mem = 1, dt = 0.5, a = exp(-0.5); no spike (v_th = 10)
    # x = [1, 0, 0]: i = i + x; v = a v + (1-a)(0 + i); i = a i
    #   1: i=1, v = 1-a, i=a ; 2: v = a(1-a) + (1-a)a = 2a(1-a), i=a^2 ; 3: v = 3a^2(1-a)
    node = nir.CubaLIF(tau_syn=np.ones(1), tau_mem=np.ones(1), r=np.ones(1), v_leak=np.zeros(1),
                       v_threshold=np.full(1, 10.0), v_reset=np.zeros(1))
    g = chain([1], {"lif": node}, [1], type_check=True, integration="exponential")
    x = np.array([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    got, ora = both(g, x, 0.5, record=("lif.v", "lif.i"))
    a = math.exp(-0.5)
    np.testing.assert_allclose(got["lif.v"][:, 0, 0], [1 - a, 2 * a * (1 - a), 3 * a * a * (1 - a)],
                               rtol=1e-12)
    np.testing.assert_allclose(got["lif.i"][:, 0, 0], [a, a * a, a ** 3], rtol=1e-12)
    np.testing.assert_allclose(ora["lif.v"][:, 0, 0], got["lif.v"][:, 0, 0], rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# NIR paper: a single LIF neuron at dt = 1e-4
# ---------------------------------------------------------------------------------------------


def test_paper_single_lif_dt_1e4():
    # LIF(tau=2e-3, r=1, v_leak=0, v_th=1, v_reset=0), dt=1e-4 -> dt/tau = 0.05, x = 1.25
    # closed form between spikes: v_n = 1.25 (1 - 0.95^n); 0.95^n < 0.2 -> n > 31.38 -> 32
    # so spikes at 32, 64, ..., 288 within T = 300 (v_31 = 0.9951, v_32 = 1.0079).
    dt, tau, xin, T = 1e-4, 2e-3, 1.25, 300
    g = chain([1], {"lif": lif([tau], [1.0], [0.0], [1.0], [0.0])}, [1], type_check=True)
    x = np.full((T, 4, 1), xin)
    got = run(g, x, dt, record=("lif.v",))

    # explicit Euler loop in the contract's order: c = dt * (1/tau); v += c*((r x + v_leak) - v)
    c = dt * (1.0 / tau)
    v, vs, zs = 0.0, [], []
    for _ in range(T):
        v = v + c * ((1.0 * xin + 0.0) - v)
        z = v > 1.0
        v = 0.0 if z else v
        vs.append(v)
        zs.append(float(z))
    closed = [32 * k for k in range(1, 10)]
    assert spike_steps(zs) == closed
    for b in range(4):  # identical batch entries give identical trains
        assert spike_steps(got["output"][:, b, 0]) == closed
        np.testing.assert_array_equal(got["lif.v"][:, b, 0], np.array(vs))
    # closed form of the voltage before the first spike
    n = np.arange(1, 32)
    np.testing.assert_allclose(got["lif.v"][:31, 0, 0], xin * (1 - 0.95 ** n), rtol=1e-12)
    # reproducible: a second run is bit-identical, and float32 gives the same spike steps
    again = run(g, x, dt, record=("lif.v",))
    np.testing.assert_array_equal(again["output"], got["output"])
    np.testing.assert_array_equal(again["lif.v"], got["lif.v"])
    f32 = run(g, x, dt, dtype=torch.float32)
    assert spike_steps(f32["output"][:, 0, 0]) == closed
    ora = oracle_run(g, x, dt, record=("lif.v",))
    np.testing.assert_array_equal(ora["lif.v"], got["lif.v"])


# ---------------------------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------------------------


def test_record_node_and_state_shapes():
    # T=7, B=3, 2x2 neurons (per-sample shape (2, 2)); record the node output and its v
    T, B = 7, 3
    shape = (2, 2)
    node = lif(np.full(shape, 0.01), np.ones(shape), np.zeros(shape), np.ones(shape),
               np.zeros(shape))
    g = chain(list(shape), {"lif": node}, list(shape), type_check=True)
    x = np.full((T, B) + shape, 2.5)  # first spike at step 5 (see scalar broadcast test)
    got = run(g, x, 1e-3, record=("lif",))
    assert got["lif"].shape == (T, B) + shape
    np.testing.assert_array_equal(got["lif"], got["output"])
    got_v = run(g, x, 1e-3, record=("lif.v",))
    assert got_v["lif.v"].shape == (T, B) + shape
    # v after reset: 0.25, 0.475, 0.6775, 0.85975, 0 (spike at 5), 0.25, 0.475
    np.testing.assert_allclose(got_v["lif.v"][:, 2, 1, 0],
                               [0.25, 0.475, 0.6775, 0.85975, 0.0, 0.25, 0.475], rtol=1e-12)
    assert spike_steps(got_v["output"][:, 2, 1, 0]) == [5]


# ---------------------------------------------------------------------------------------------
# exact arithmetic order (docs/contract.md): explicit float64 loops, bit for bit
# ---------------------------------------------------------------------------------------------


def test_arithmetic_order_bit_exact():
    """Non-trivial parameters (v_leak != 0, r != 1, w_in != 1) so that a different but
    algebraically equal order of operations changes the last bits of the voltages."""
    dt, T = 1e-3, 40
    tau, tau_s, r, vl, vth, vr, w = 0.0071, 0.0037, 2.3, -0.37, 0.9, -0.11, 0.63
    xs = [0.3 + 0.07 * k % 1.1 for k in range(T)]
    x = np.array(xs).reshape(T, 1, 1)
    P = lambda v: np.array([v])  # noqa: E731
    c, cs = dt * (1.0 / tau), dt * (1.0 / tau_s)

    # LI: v = v + c * ((v_leak - v) + r*x)
    g = chain([1], {"n": nir.LI(tau=P(tau), r=P(r), v_leak=P(vl))}, [1], type_check=True)
    v, want = vl, []
    for xi in xs:
        v = v + c * ((vl - v) + r * xi)
        want.append(v)
    np.testing.assert_array_equal(run(g, x, dt)["output"][:, 0, 0], want)

    # LIF: v = v + c * ((r*x + v_leak) - v); z = v > v_th; v = where(z, v_reset, v)
    g = chain([1], {"n": nir.LIF(tau=P(tau), r=P(r), v_leak=P(vl), v_threshold=P(vth),
                                 v_reset=P(vr))}, [1], type_check=True)
    v, want, zs = vl, [], []
    for xi in xs:
        v = v + c * ((r * xi + vl) - v)
        z = v > vth
        v = vr if z else v
        want.append(v)
        zs.append(float(z))
    got = run(g, x, dt, record=("n.v",))
    assert 0 < sum(zs) < T
    np.testing.assert_array_equal(got["output"][:, 0, 0], zs)
    np.testing.assert_array_equal(got["n.v"][:, 0, 0], want)

    # CubaLIF, subtract reset: i = i + w_in*x; v = v + c_m*((v_leak - v) + r*i);
    # i = i + (-c_s)*i; z = v > v_th; v = where(z, v - (v_th - v_reset), v)
    g = chain([1], {"n": nir.CubaLIF(tau_syn=P(tau_s), tau_mem=P(tau), r=P(r), v_leak=P(vl),
                                     v_threshold=P(vth), v_reset=P(vr), w_in=P(w))}, [1],
              type_check=True, reset="subtract")
    v, i, want_v, want_i, zs = vl, 0.0, [], [], []
    for xi in xs:
        i = i + w * (3.0 * xi)
        v = v + c * ((vl - v) + r * i)
        i = i + (-cs) * i
        z = v > vth
        v = v - (vth - vr) if z else v
        want_v.append(v)
        want_i.append(i)
        zs.append(float(z))
    got = run(g, 3.0 * x, dt, record=("n.v", "n.i"))
    assert 0 < sum(zs) < T
    np.testing.assert_array_equal(got["output"][:, 0, 0], zs)
    np.testing.assert_array_equal(got["n.v"][:, 0, 0], want_v)
    np.testing.assert_array_equal(got["n.i"][:, 0, 0], want_i)

    # IF: v = v + (dt*r)*x
    g = chain([1], {"n": nir.IF(r=P(r * 300), v_threshold=P(vth), v_reset=P(vr))}, [1],
              type_check=True)
    v, want = 0.0, []
    for xi in xs:
        v = v + (dt * (r * 300)) * xi
        v = vr if v > vth else v
        want.append(v)
    np.testing.assert_array_equal(run(g, x, dt, record=("n.v",))["n.v"][:, 0, 0], want)


# ---------------------------------------------------------------------------------------------
# API conventions: dt from the metadata, input dtypes
# ---------------------------------------------------------------------------------------------


def test_dt_from_metadata_and_override():
    # I(r=1): v = v + dt * x.  metadata dt = 0.5 -> 0.5, 1.0 ; explicit dt = 0.25 wins
    g = chain([1], {"i": nir.I(r=np.ones(1))}, [1], type_check=True, dt=0.5)
    x = np.ones((2, 1, 1))
    out = nrf_nir.run(g, x, dtype="float64")["output"].numpy()
    np.testing.assert_array_equal(out[:, 0, 0], [0.5, 1.0])
    out = nrf_nir.run(g, x, dt=0.25, dtype="float64")["output"].numpy()
    np.testing.assert_array_equal(out[:, 0, 0], [0.25, 0.5])


def test_bool_and_int_inputs_are_converted():
    # spikes given as bool or int8 mean the same as 0.0 / 1.0
    g = chain([3], {"lif": lif([0.01] * 3, [50.0] * 3, [0.0] * 3, [1.0] * 3, [0.0] * 3)}, [3],
              type_check=True)
    rng = np.random.default_rng(0)
    z = rng.random((20, 2, 3)) < 0.5
    ref = run(g, z.astype(np.float64), 1e-3)["output"]
    assert 0 < ref.mean() < 1
    np.testing.assert_array_equal(run(g, z, 1e-3)["output"], ref)
    np.testing.assert_array_equal(run(g, z.astype(np.int8), 1e-3)["output"], ref)
    np.testing.assert_array_equal(run(g, torch.from_numpy(z), 1e-3)["output"], ref)


def test_identity_passes_through():
    # nir's Identity (not exported at the top level of nir 1.0.8): y = x
    from nir.ir.graph import Identity

    g = chain([2], {"id": Identity(input_type={"input": np.array([2])})}, [2])
    x = np.array([[[1.5, -2.0]], [[0.0, 3.25]]])
    got, ora = both(g, x, 1e-3)
    np.testing.assert_array_equal(got["output"], x)
    np.testing.assert_array_equal(ora["output"], x)
