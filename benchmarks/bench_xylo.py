#!/usr/bin/env python
"""Speed of the ``xylo`` emulator (batched over samples) against SynSense's XyloSim.

Network (1000 hidden neurons, the Xylo Audio 2 maximum; dt = 1 ms):
    Input 16 -> Linear -> CubaLIF 500 (recurrent Linear 500x500, 20 % connected)
             -> Linear (500x500) -> CubaLIF 500 -> Linear (8x500) -> CubaLIF 8 -> Output
with tau_syn = 4 ms, tau_mem = 16 ms (powers of two of dt), v_th = 1, subtract reset;
random normal weights (seeded); Poisson input events, 5 % per channel and step.

Both engines run the same integer configuration (``nrf_nir.lower(graph, "xylo")``):
* ``emulator``: ``XyloEmulator.run`` on all ``B`` samples at once (``T`` steps), with its
  CPU default engine (the compiled kernel; ``--engine torch`` for the torch operations);
* ``xylosim``:  Rockpool 3.1.0 ``XyloSim`` (xylosim 0.1.3), one sample after another (it
  has no batch); timed on ``--xylosim-samples`` of the samples, since its cost per sample
  does not depend on the batch (samples/s is what is compared).
Both produce the output spikes only while timed; then the output and hidden spikes of the
XyloSim samples are compared, every step (they must be identical). Runs are interleaved
(emulator, xylosim, emulator, ...) so that load from other processes hits both alike; the
best of ``--repeats`` counts.

Usage: python benchmarks/bench_xylo.py [--quick] [--T 1000] [--B 64] [--xylosim-samples 4]
       [--repeats 2] [--threads N] [--engine auto|kernel|torch]
       [--json benchmarks/results/xylo.json]
(``--quick``: T=200, B=16, written only where ``--json`` says.)
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


def cuba(n: int) -> nir.CubaLIF:
    return nir.CubaLIF(tau_syn=np.full(n, 0.004), tau_mem=np.full(n, 0.016), r=np.ones(n),
                       v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))


def network(h1: int, h2: int, seed: int = 0) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    rec = rng.normal(0, 1.0 / np.sqrt(0.2 * h1), (h1, h1)) * (rng.random((h1, h1)) < 0.2)
    nodes = {
        "input": nir.Input(input_type=np.array([16])),
        "w_in": nir.Linear(weight=rng.normal(0.3, 1.0, (h1, 16))),
        "lif1": cuba(h1),
        "w_rec": nir.Linear(weight=rec),
        "w_12": nir.Linear(weight=rng.normal(0.02, 2.0 / np.sqrt(h1), (h2, h1))),
        "lif2": cuba(h2),
        "w_out": nir.Linear(weight=rng.normal(0.01, 1.0 / np.sqrt(h2), (8, h2))),
        "lif_out": cuba(8),
        "output": nir.Output(output_type=np.array([8])),
    }
    edges = [("input", "w_in"), ("w_in", "lif1"), ("lif1", "w_rec"), ("w_rec", "lif1"),
             ("lif1", "w_12"), ("w_12", "lif2"), ("lif2", "w_out"), ("w_out", "lif_out"),
             ("lif_out", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    graph.metadata = {"dt": DT, "reset": "subtract"}
    return graph


def _threads(emu: object, asked: int | None) -> int:
    """The CPU threads the emulator ran on."""
    if getattr(emu, "engine", "") == "kernel":
        import numba

        return min(asked or numba.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    return asked or torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run (T=200, B=16)")
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--B", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--xylosim-samples", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="emulator CPU threads (default: the emulator's choice)")
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--engine", choices=("auto", "kernel", "torch"), default="auto")
    ap.add_argument("--json", default=None,
                    help="where to write the results (default: benchmarks/results/xylo.json; "
                    "with --quick: nowhere)")
    args = ap.parse_args(argv)
    if args.quick:
        args.T, args.B, args.xylosim_samples, args.repeats = 200, 16, 2, 1
    elif args.json is None:
        args.json = os.path.join(HERE, "results", "xylo.json")
    h1 = args.hidden // 2
    graph = network(h1, args.hidden - h1)
    lowered = nrf_nir.lower(graph, "xylo")
    backend = lowered.backend
    cfg = backend.config
    rng = np.random.default_rng(1)
    x = (rng.random((args.T, args.B, 16)) < args.rate).astype(np.int32)
    xt = torch.from_numpy(x)
    from nrf_nir.targets.xylo import XyloEmulator
    from nrf_nir.targets.xylo.xylosim_engine import build, run_xylosim

    emu = XyloEmulator(cfg, device="cpu", threads=args.threads, engine=args.engine)
    sim = build(cfg)
    ns = min(args.xylosim_samples, args.B)
    emu.run(xt[: min(args.T, 20)])  # warm-up (compiles the kernel, or loads its cache)
    # timed: both engines produce the output spikes only (what a deployment reads)
    t_emu, t_sim = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        emu.run(xt)
        t_emu.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_xylosim(cfg, x[:, :ns], sim=sim)
        t_sim.append(time.perf_counter() - t0)
    # untimed: output and hidden spikes of the XyloSim samples, every step, must be equal
    out_emu = emu.run(xt, record=("spikes",))
    out_sim = run_xylosim(cfg, x[:, :ns], record=("spikes",), sim=sim)
    exact = bool(np.array_equal(out_emu["spikes_out"][:, :ns].numpy(), out_sim["spikes_out"])
                 and np.array_equal(out_emu["spikes"][:, :ns].numpy(), out_sim["spikes"]))
    emu_sps = args.B / min(t_emu)
    sim_sps = ns / min(t_sim)
    ratio = emu_sps / sim_sps
    hid = out_emu["spikes"].to(torch.float64)
    result = {
        "network": f"16 -> CubaLIF {h1} (recurrent 20%) -> CubaLIF {args.hidden - h1} -> "
                   "CubaLIF 8",
        "T": args.T, "B": args.B, "input_rate": args.rate,
        "hidden_spike_rate": float((hid > 0).to(torch.float64).mean()),
        "hidden_spikes_per_step_per_neuron": float(hid.mean()),
        "output_spike_rate": float(out_emu["spikes_out"].to(torch.float64).mean()),
        "emulator": {"samples": args.B, "seconds": min(t_emu), "all_seconds": t_emu,
                     "samples_per_s": emu_sps, "threads": _threads(emu, args.threads),
                     "engine": emu.engine},
        "xylosim": {"samples": ns, "seconds": min(t_sim), "all_seconds": t_sim,
                    "samples_per_s": sim_sps, "seconds_per_sample": min(t_sim) / ns},
        "ratio": ratio, "target_ratio": 100, "bit_exact_on_xylosim_samples": exact,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(),
                    "load_average": list(os.getloadavg())},
        "quick": bool(args.quick),
    }
    print(f"network: {result['network']}, T={args.T}, B={args.B}; hidden spike rate "
          f"{result['hidden_spike_rate']:.3f}, output {result['output_spike_rate']:.3f}")
    print(f"emulator: {args.B} samples in {min(t_emu):.2f} s = {emu_sps:.2f} samples/s")
    print(f"xylosim : {ns} samples in {min(t_sim):.2f} s = {sim_sps:.3f} samples/s")
    print(f"ratio   : {ratio:.1f}x (target >= 100x); bit-exact on the XyloSim samples: {exact}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"written {args.json}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
