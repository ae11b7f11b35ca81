#!/usr/bin/env python
"""Speed of the ``loihi`` emulator against Lava's own fixed-point simulator (``lava-fixed``),
side by side in one run, on the same network, quantization and inputs.

Networks (``--net``):

* ``dense`` (the default): input N_in spikes -> Affine N_in->N (bias) -> LIF N -> Linear N->10
  -> CubaLIF 10 (dt 1e-3, tau 10 ms / tau_syn 5 ms), inputs Bernoulli spikes (rate 0.1).
  Default N = N_in = 1000, T = 1000, B = 64; ``--quick``: N = N_in = 200, T = 200, B = 32.
* ``conv``: the NIR paper's N-MNIST shape, IF neurons: input 2x34x34 -> Conv2d 2->16 5x5 ->
  SumPool 2 -> Conv2d 16->32 3x3 -> SumPool 2 -> Conv2d 32->64 3x3 -> SumPool 2 -> Flatten ->
  Linear 1024->256 -> Linear 256->10 (convolutions padding 1; random weights; the pools fold
  into the next convolution / Dense), input spikes at rate 0.1; ``if4`` (256) recorded.
  Default T = 100, B = 64; ``--quick``: 18x18 input, 4/8/8 channels, hidden 32, T = 50, B = 16.
* ``poker-dvs``: the zoo's trained model (``models.export("poker-dvs")``: 2x35x35 events ->
  recurrent CubaLIF 100 -> Linear 4 -> CubaLI read-out) on its generated event streams
  (``models.generate``); the read-out's voltage and ``rnn.lif``'s spikes are compared.
  Default T = 60 (the zoo's evaluation length), B = 64; ``--quick``: T = 20, B = 8.

Sides:

* ``lava_fixed``: ``nrf_nir`` target ``lava-fixed``: per sample, new Lava processes are built,
  compiled, run for T + depth steps on Lava's CPU simulator (``Loihi2SimCfg("fixed_pt")``),
  read back and stopped. One sample per Lava network (``copies=1``): that is how a Lava user
  runs a sample. Wall time per sample, everything included; torch's default thread count.
* ``loihi``: ``nrf_nir`` target ``loihi``: the batched PyTorch emulator, B samples at once,
  wall time of ``run`` (best of ``--repeats``). Torch threads: 1 by default (``--threads``): on
  a shared machine OpenMP threads spin-wait at every parallel op for a thread that is not
  scheduled; ``--threads 1,2`` times both.

``--B`` and ``--threads`` take comma-separated lists: every (B, threads) pair is timed, in
turn, and checked; the first pair is the headline. Outputs: samples/s of both sides and their
ratio; the outputs of the samples Lava ran (its first ``--lava-samples``) compared with the
emulator's, exactly (``bit_exact``: float64 spikes, and a read-out's voltage, an injective
image of Lava's integer ``v``); the load average before and after. JSON to
``benchmarks/results/loihi.json`` (``loihi-conv.json``, ``loihi-poker-dvs.json``).

Usage: python benchmarks/bench_loihi.py [--quick] [--net dense|conv|poker-dvs] [--N 1000]
       [--T 1000] [--B 64[,128,...]] [--threads 1[,2]] [--lava-samples 2] [--repeats 2]
       [--json PATH]
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
#: per net: the results file under benchmarks/results/
RESULTS = {"dense": "loihi.json", "conv": "loihi-conv.json", "poker-dvs": "loihi-poker-dvs.json"}
#: per net: T, B of a full run and of --quick
DEFAULTS = {"dense": (1000, 64, 200, 32), "conv": (100, 64, 50, 16), "poker-dvs": (60, 64, 20, 8)}


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


def poker_dvs(B: int, T: int, seed: int = 1) -> tuple[nir.NIRGraph, np.ndarray]:
    """The zoo's trained ``poker-dvs`` graph and ``B`` of its generated event streams
    ``[T, B, 2, 35, 35]`` (integer event counts per pixel, channel and step)."""
    from nrf_nir import models

    x, _ = models.generate("poker-dvs", B, T, seed=seed)
    return models.export("poker-dvs"), np.ascontiguousarray(x.numpy(), dtype=np.float32)


def workload(args: argparse.Namespace, T: int, B: int, N: int
             ) -> tuple[nir.NIRGraph, np.ndarray, list[str], str]:
    """The network, inputs ``[T, B, ...]``, the recorded populations and a description."""
    rng = np.random.default_rng(1)
    if args.net == "poker-dvs":
        g, x = poker_dvs(B, T)
        return (g, x, ["rnn.lif"],
                "zoo poker-dvs (trained): input 2x35x35 events -> Linear 100x2450 -> recurrent "
                "CubaLIF 100 (LIFRecurrentCell) -> Linear 4x100 -> CubaLI 4 read-out (voltage)")
    if args.net == "conv":
        size = 18 if args.quick else 34
        g = conv_network(size, (4, 8, 8) if args.quick else (16, 32, 64),
                         32 if args.quick else 256)
        x = (rng.random((T, B, 2, size, size)) < 0.1).astype(np.float32)
        # a wide record (if1: 16384 neurons) slows Lava's sink read ~4x
        return (g, x, ["if4"],
                f"input 2x{size}x{size} -> Conv/IF x3 with 2x2 sum pooling -> Linear -> IF -> "
                "Linear -> IF (N-MNIST shape)")
    x = (rng.random((T, B, N)) < 0.1).astype(np.float32)
    return (network(N, N), x, ["lif1"],
            f"input {N} -> Affine {N}x{N} -> LIF {N} -> Linear 10x{N} -> CubaLIF 10")


def time_emulator(emu: nrf_nir.Lowered, x: np.ndarray, configs: list[tuple[int, int]],
                  record: list[str], repeats: int, keep: int
                  ) -> tuple[dict[tuple[int, int], list[float]], dict[tuple[int, int], dict]]:
    """Wall times of ``emu.run`` on the first ``B`` samples with ``threads`` torch threads, for
    each ``(B, threads)`` of ``configs``, ``repeats`` rounds taking the configurations in turn
    (alternating order: load from other processes hits each alike); and the outputs of the
    first ``keep`` samples. Restores torch's thread count."""
    saved = torch.get_num_threads()
    times: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    kept: dict[tuple[int, int], dict] = {}
    try:
        emu.run(x[: min(x.shape[0], 20), :2], record=record)  # warm-up
        for r in range(repeats):
            for c in (configs if r % 2 == 0 else configs[::-1]):
                B, threads = c
                torch.set_num_threads(threads)
                t0 = time.perf_counter()
                out = emu.run(x[:, :B], record=record)
                times[c].append(time.perf_counter() - t0)
                kept[c] = {k: v[:, :keep].clone() for k, v in out.items()}
                del out
    finally:
        torch.set_num_threads(saved)
    return times, kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--net", choices=tuple(RESULTS), default="dense")
    ap.add_argument("--N", type=int, default=None, help="input and hidden neurons (dense)")
    ap.add_argument("--T", type=int, default=None)
    ap.add_argument("--B", default=None,
                    help="emulator batch, or several (comma-separated, e.g. 64,128,256: each "
                         "timed; the first is the headline)")
    ap.add_argument("--lava-samples", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", default="1",
                    help="torch threads of the emulator's run, or several (comma-separated: "
                         "each timed with each B); default 1 (see the module docstring)")
    ap.add_argument("--json", default=None, help="default: benchmarks/results/<net's file>")
    args = ap.parse_args(argv)
    T_full, B_full, T_quick, B_quick = DEFAULTS[args.net]
    N = args.N or (200 if args.quick else 1000)
    T = args.T or (T_quick if args.quick else T_full)
    batches = ([int(b) for b in args.B.split(",")] if args.B
               else [B_quick if args.quick else B_full])
    threads = [int(t) for t in args.threads.split(",")]
    configs = [(b, t) for b in batches for t in threads]
    B, emu_threads = configs[0]
    S = args.lava_samples or (1 if args.quick else 2)
    if S > min(batches):
        ap.error(f"--lava-samples {S} exceeds the smallest batch {min(batches)}")
    load_before = os.getloadavg()

    g, x, record, described = workload(args, T, max(batches), N)

    # ---------------------------------------------------------------- loihi emulator
    emu = nrf_nir.lower(g, "loihi", device="cpu", dtype="float64")
    threads_default = torch.get_num_threads()  # restored: Lava's processes run with it
    t_emu, out_emu = time_emulator(emu, x, configs, record, args.repeats, S)

    # ---------------------------------------------------------------- Lava fixed point
    lava = nrf_nir.lower(g, "lava-fixed", copies=1, dtype="float64")
    t_lava = []
    exact = {c: True for c in configs}
    compared: list[str] = []
    for s in range(S):
        t0 = time.perf_counter()
        out_lava = lava.run(x[:, s:s + 1], record=record)
        t_lava.append(time.perf_counter() - t0)
        compared = sorted(out_lava)
        for c in configs:
            exact[c] &= all(bool(torch.equal(out_lava[k][:, 0], out_emu[c][k][:, s]))
                            for k in out_lava)
    lava_sps = 1.0 / (sum(t_lava) / len(t_lava))
    # Lava's fixed cost (build, compile, start, read, stop) vs its cost per step: a short run
    t0 = time.perf_counter()
    lava.run(x[:10, :1])
    t_short = time.perf_counter() - t0
    per_step = max(0.0, (min(t_lava) - t_short) / (T - 10)) if T > 10 else float("nan")
    depth = lava.backend.plan.max_depth

    by_config = [{"B": b, "threads": t, "seconds": t_emu[b, t],
                  "samples_per_s": b / min(t_emu[b, t]),
                  "ratio_loihi_over_lava": b / min(t_emu[b, t]) / lava_sps,
                  "bit_exact": exact[b, t]} for b, t in configs]
    emu_sps = by_config[0]["samples_per_s"]
    bit_exact = all(exact.values())
    means = {k: float(v.mean()) for k, v in out_emu[configs[0]].items()}
    result = {
        "benchmark": "loihi emulator vs Lava fixed_pt simulator",
        "network": described, "net": args.net,
        "T": T, "emulator_batch": B, "emulator_threads": emu_threads, "lava_samples": S,
        "repeats": args.repeats,
        "lava_seconds_per_sample": t_lava,
        "lava_ms_per_step": 1000 * (sum(t_lava) / len(t_lava)) / (T + depth),
        "lava_seconds_10_step_run": t_short,
        "lava_ms_per_step_marginal": 1000 * per_step,
        "emulator_seconds_per_batch": t_emu[configs[0]],
        "emulator_by_config": by_config,
        "samples_per_s": {"lava_fixed": lava_sps, "loihi": emu_sps},
        "ratio_loihi_over_lava": emu_sps / lava_sps,
        "bit_exact": bit_exact,
        "compared": {"outputs": compared, "samples": S,
                     "how": "torch.equal on float64 outputs: spikes, and a read-out's voltage "
                            "(Lava's integer v scaled; distinct integers stay distinct)"},
        "output_means": means,
        "quantization": lava.backend.quantization_report(),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads_default": threads_default, "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "quick": bool(args.quick),
    }
    if args.json is None:
        args.json = os.path.join(HERE, "results", RESULTS[args.net])
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    head = f"{args.net} T={T}" + (f" N={N}" if args.net == "dense" else "")
    print(f"{head}: lava-fixed {lava_sps:.3f} samples/s "
          f"({result['lava_ms_per_step']:.2f} ms/step, everything included; "
          f"{t_short:.2f} s for a 10-step run, {1000 * per_step:.2f} ms per further step)")
    for row in by_config:
        print(f"  loihi B={row['B']} ({row['threads']} threads): {row['samples_per_s']:.1f} "
              f"samples/s | ratio {row['ratio_loihi_over_lava']:.0f}x | "
              f"bit-exact {row['bit_exact']}")
    print(f"load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after | "
          f"compared {compared} | means {means}")
    print(f"wrote {args.json}")
    return 0 if bit_exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
