#!/usr/bin/env python
"""Speed of the ``loihi`` emulator against Lava's own fixed-point simulator (``lava-fixed``),
side by side in one run, on the same network, quantization and inputs.

Network (``--net dense``, the default): input N_in spikes -> Affine N_in->N (bias) -> LIF N ->
Linear N->10 -> CubaLIF 10 (dt 1e-3, tau 10 ms / tau_syn 5 ms), inputs Bernoulli spikes (rate
0.1). Default N = N_in = 1000, T = 1000; ``--quick``: N = N_in = 200, T = 200.

``--net conv``: the NIR paper's N-MNIST shape, IF neurons: input 2x34x34 -> Conv2d 2->16 5x5
-> SumPool 2 -> Conv2d 16->32 3x3 -> SumPool 2 -> Conv2d 32->64 3x3 -> SumPool 2 -> Flatten
-> Linear 1024->256 -> Linear 256->10 (convolutions padding 1; random weights; the pools fold
into the next convolution / Dense), input spikes at rate 0.1. Default T = 100, B = 64;
``--quick``: 18x18 input, 4/8/8 channels, hidden 32, T = 50, B = 16.

* ``lava_fixed``: ``nrf_nir`` target ``lava-fixed``: per sample, new Lava processes are built,
  compiled, run for T + 2 steps on Lava's CPU simulator (``Loihi2SimCfg("fixed_pt")``), read
  back and stopped. One sample per Lava network (``copies=1``): that is how a Lava user runs a
  sample. Wall time per sample, everything included.
* ``loihi``: ``nrf_nir`` target ``loihi``: the batched PyTorch emulator, B samples at once
  (torch threads as set), wall time of ``run``.

samples/s of both and their ratio; the spikes of the samples Lava ran are compared with the
emulator's (bit-exact: true/false). JSON to ``benchmarks/results/loihi.json`` (``--net conv``:
``loihi-conv.json``).

Usage: python benchmarks/bench_loihi.py [--quick] [--net dense|conv] [--N 1000] [--T 1000] [--B 64]
       [--lava-samples 2] [--repeats 2] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import nir  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import nrf_nir  # noqa: E402

DT = 1e-3


def network(n_in: int, n: int, n_out: int = 10, seed: int = 0) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    nodes = {
        "input": nir.Input(input_type=np.array([n_in])),
        "fc1": nir.Affine(weight=rng.normal(0, 6.0 / np.sqrt(n_in * 0.1), (n, n_in)),
                          bias=rng.normal(0, 0.5, n)),
        "lif1": nir.LIF(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n),
                        v_threshold=np.ones(n), v_reset=np.zeros(n)),
        "fc2": nir.Linear(weight=rng.normal(0, 40.0 / np.sqrt(n * 0.05), (n_out, n))),
        "lif2": nir.CubaLIF(tau_syn=np.full(n_out, 0.005), tau_mem=np.full(n_out, 0.01),
                            r=np.ones(n_out), v_leak=np.zeros(n_out),
                            v_threshold=np.ones(n_out), v_reset=np.zeros(n_out),
                            w_in=np.ones(n_out)),
        "output": nir.Output(output_type=np.array([n_out])),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"),
             ("lif2", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    g.metadata = {"dt": DT}
    return g


def if_neurons(shape: tuple[int, ...]) -> nir.IF:
    return nir.IF(r=np.ones(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape))


def conv_network(size: int = 34, channels: tuple[int, int, int] = (16, 32, 64),
                 hidden: int = 256, n_out: int = 10, seed: int = 0) -> nir.NIRGraph:
    """The N-MNIST-shaped IF network (see the module docstring)."""
    rng = np.random.default_rng(seed)
    c1, c2, c3 = channels
    sides = [size - 2]
    for _ in range(3):
        sides.append(sides[-1] // 2)
    s1, s2, s3, s4 = sides

    def conv(c_out: int, c_in: int, k: int, hw: int) -> nir.Conv2d:
        w = rng.normal(0.1, 1.0, (c_out, c_in, k, k)) * (2500.0 if c_in == 2 else 1000.0)
        return nir.Conv2d(input_shape=(hw, hw), weight=w / np.sqrt(c_in * k * k), stride=1,
                          padding=1, dilation=1, groups=1, bias=np.zeros(c_out))

    def pool() -> nir.SumPool2d:
        return nir.SumPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))

    def lin(n_o: int, n_i: int) -> nir.Linear:
        return nir.Linear(weight=rng.normal(0.0, 1.0, (n_o, n_i)) * 2500.0 / np.sqrt(n_i))

    chain = [("input", nir.Input(input_type=np.array([2, size, size]))),
             ("conv1", conv(c1, 2, 5, size)), ("if1", if_neurons((c1, s1, s1))),
             ("pool1", pool()), ("conv2", conv(c2, c1, 3, s2)), ("if2", if_neurons((c2, s2, s2))),
             ("pool2", pool()), ("conv3", conv(c3, c2, 3, s3)), ("if3", if_neurons((c3, s3, s3))),
             ("pool3", pool()),
             ("flat", nir.Flatten(start_dim=0, end_dim=-1,
                                  input_type={"input": np.array([c3, s4, s4])})),
             ("fc1", lin(hidden, c3 * s4 * s4)), ("if4", if_neurons((hidden,))),
             ("fc2", lin(n_out, hidden)), ("if5", if_neurons((n_out,))),
             ("output", nir.Output(output_type=np.array([n_out])))]
    names = [name for name, _ in chain]
    g = nir.NIRGraph(nodes=dict(chain), edges=list(zip(names[:-1], names[1:], strict=True)),
                     type_check=False)
    g.metadata = {"dt": DT}
    return g


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--net", choices=("dense", "conv"), default="dense")
    ap.add_argument("--N", type=int, default=None, help="input and hidden neurons")
    ap.add_argument("--T", type=int, default=None)
    ap.add_argument("--B", type=int, default=None, help="emulator batch")
    ap.add_argument("--lava-samples", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None,
                    help="default: benchmarks/results/loihi.json (conv: loihi-conv.json)")
    args = ap.parse_args()
    conv = args.net == "conv"
    N = args.N or (200 if args.quick else 1000)
    if conv:
        T = args.T or (50 if args.quick else 100)
        B = args.B or (16 if args.quick else 64)
    else:
        T = args.T or (200 if args.quick else 1000)
        B = args.B or (32 if args.quick else 64)
    S = args.lava_samples or (1 if args.quick else 2)
    if args.threads:
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(1)
    if conv:
        size = 18 if args.quick else 34
        g = conv_network(size, (4, 8, 8) if args.quick else (16, 32, 64),
                         32 if args.quick else 256)
        x = (rng.random((T, B, 2, size, size)) < 0.1).astype(np.float32)
        record = ["if4"]  # a wide record (if1: 16384 neurons) slows Lava's sink read ~4x
        described = (f"input 2x{size}x{size} -> Conv/IF x3 with 2x2 sum pooling -> Linear -> "
                     "IF -> Linear -> IF (N-MNIST shape)")
    else:
        g = network(N, N)
        x = (rng.random((T, B, N)) < 0.1).astype(np.float32)
        record = ["lif1"]
        described = f"input {N} -> Affine {N}x{N} -> LIF {N} -> Linear 10x{N} -> CubaLIF 10"

    # ---------------------------------------------------------------- loihi emulator
    emu = nrf_nir.lower(g, "loihi", device="cpu")
    emu.run(x[: min(T, 20), :2], record=record)  # warm-up
    t_emu = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out_emu = emu.run(x, record=record)
        t_emu.append(time.perf_counter() - t0)
    emu_sps = B / min(t_emu)

    # ---------------------------------------------------------------- Lava fixed point
    lava = nrf_nir.lower(g, "lava-fixed", copies=1)
    t_lava = []
    bit_exact = True
    for s in range(S):
        t0 = time.perf_counter()
        out_lava = lava.run(x[:, s:s + 1], record=record)
        t_lava.append(time.perf_counter() - t0)
        for key in out_lava:
            bit_exact &= bool(torch.equal(out_lava[key][:, 0], out_emu[key][:, s]))
    lava_sps = 1.0 / (sum(t_lava) / len(t_lava))
    # Lava's fixed cost (build, compile, start, read, stop) vs its cost per step: a short run
    t0 = time.perf_counter()
    lava.run(x[:10, :1])
    t_short = time.perf_counter() - t0
    per_step = max(0.0, (min(t_lava) - t_short) / (T - 10)) if T > 10 else float("nan")
    depth = lava.backend.plan.max_depth

    rates = {k: float(v.mean()) for k, v in out_emu.items()}
    result = {
        "benchmark": "loihi emulator vs Lava fixed_pt simulator",
        "network": described, "net": args.net,
        "T": T, "emulator_batch": B, "lava_samples": S, "repeats": args.repeats,
        "lava_seconds_per_sample": t_lava,
        "lava_ms_per_step": 1000 * (sum(t_lava) / len(t_lava)) / (T + depth),
        "lava_seconds_10_step_run": t_short,
        "lava_ms_per_step_marginal": 1000 * per_step,
        "emulator_seconds_per_batch": t_emu,
        "samples_per_s": {"lava_fixed": lava_sps, "loihi": emu_sps},
        "ratio_loihi_over_lava": emu_sps / lava_sps,
        "bit_exact_on_lava_samples": bit_exact,
        "spike_rates": rates,
        "quantization": lava.backend.quantization_report(),
        "load_average_1min_after": os.getloadavg()[0],
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "quick": bool(args.quick),
    }
    if args.json is None:
        args.json = os.path.join(HERE, "results", "loihi-conv.json" if conv else "loihi.json")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    head = f"{args.net} T={T}" + ("" if conv else f" N={N}")
    print(f"{head}: lava-fixed {lava_sps:.3f} samples/s "
          f"({result['lava_ms_per_step']:.2f} ms/step, everything included; "
          f"{t_short:.2f} s for a 10-step run, {1000 * per_step:.2f} ms per further step) | "
          f"loihi {emu_sps:.1f} samples/s (B={B}) | ratio {emu_sps / lava_sps:.0f}x | "
          f"bit-exact {bit_exact} | load {os.getloadavg()[0]:.1f} | rates {rates}")
    print(f"wrote {args.json}")
    return 0 if bit_exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
