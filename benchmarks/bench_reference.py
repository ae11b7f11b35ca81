#!/usr/bin/env python
"""Speed / memory benchmark of the ``nrf_nir`` reference simulator.

Measures, side by side in one run, on the same networks, weights and inputs:

* ``norse_cells``   Norse cells stepped by a Python loop over time
                    (``SequentialState(Linear, LIFBoxCell, ...)`` called once per step);
* ``norse_module``  Norse's time-looping module form
                    (``SequentialState(Linear, LIFBox, ...)`` called once on ``[T, B, ...]``;
                    synapses run once over all ``T*B`` samples, ``LIFBox`` loops internally);
* ``norse_lift``    (conv net only) the same with Norse's ``Lift(conv)``, which loops the
                    conv layers over time in Python;
* ``reference``     ``nrf_nir.run`` on the equivalent NIR graph (``metadata["dt"] = 1e-3``);
                    its LIF loops run the fused CPU kernel (``nrf_nir.fused``) unless
                    ``--fused off``;
* ``reference_unfused`` (``--fused both``) the same with the kernel off
                    (``NRF_NIR_FUSED=0``): the torch loops;
* ``floor_step``    the physical floor: the same layers' matmuls / convolutions (and pooling),
                    no neurons, one call per time step;
* ``floor_batched`` the same, batched over all time steps at once.

Networks
* ``mlp``:  input 512 -> [Affine 512->512 -> LIF] x 3
* ``conv``: input 2x32x32 -> Conv2d 2->8 k5 -> LIF -> AvgPool2d 2 -> Conv2d 8->16 k5 -> LIF
            -> Flatten -> Affine 1600->10 -> LIF

LIF = Norse ``LIFBoxCell`` (dt=1e-3, tau_mem_inv=100, v_leak=0, v_th=1, v_reset=0)
    = NIR ``LIF(tau=0.01, r=1, v_leak=0, v_threshold=1, v_reset=0)``.

Every approach runs in its own fresh subprocess (so its peak memory is measured in
isolation); the runs are interleaved round-robin across the approaches (one warm-up round,
then ``--repeats`` rounds, alternating the order) so that load from other processes hits
all approaches alike; the best run counts, and the median over the rounds of each round's
ratio (reference / other approach, adjacent runs) is reported too, which load from other
processes distorts less. Everything under ``torch.no_grad``.
Peak memory = (VmHWM after the runs) - (VmRSS before the first run, peak reset via
/proc/self/clear_refs) on CPU, ``torch.cuda.max_memory_allocated`` delta on CUDA.
A separate, untimed check run compares the spikes of the reference and of Norse
(exact elementwise agreement, per LIF layer) and reports the spiking rates; with the fused
kernel on, it also compares the reference's outputs with the kernel on and off bit for bit.

Usage:  python benchmarks/bench_reference.py [--quick] [--T 1000] [--B 64]
        [--repeats 3] [--threads N] [--device cpu|cuda|auto]
        [--nets mlp,conv] [--fused on|off|both] [--json benchmarks/results/reference.json]
        [--profile]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

DT = 1e-3
TAU = 0.01  # s  (tau_mem_inv = 100 1/s)
V_TH = 1.0
WEIGHT_SEED = 20240601
INPUT_SEED = 7
INPUT_RATE = 0.1  # Bernoulli spike probability per input per step

# Weight statistics, W ~ N(mu, sigma^2), chosen so that all layers fire at a few-% to
# ~15% rate with rate-0.1 Bernoulli inputs (checked and reported by the check run).
MLP_SIZES = (512, 512, 512, 512)
MLP_W = ((0.030, 0.10, 0.0), (0.033, 0.10, 0.0), (0.036, 0.10, 0.0))  # (mu, sigma, bias)
CONV_IN = (2, 32, 32)
CONV_W = {  # (mu, sigma, bias)
    "conv1": (0.30, 0.20, 0.0),
    "conv2": (0.075, 0.05, 0.0),
    "fc": (0.012, 0.01, 0.0),
}
CONV_OUT = 10

NETS = ("mlp", "conv")
APPROACHES = {
    "mlp": ("norse_cells", "norse_module", "reference", "floor_step", "floor_batched"),
    "conv": ("norse_cells", "norse_module", "norse_lift", "reference", "floor_step",
             "floor_batched"),
}
NORSE_APPROACHES = ("norse_cells", "norse_module", "norse_lift")
REFERENCES = ("reference", "reference_unfused")
FUSED_ENV = "NRF_NIR_FUSED"  # nrf_nir.fused.ENV: "0" keeps the reference's torch loops
TARGET_VS_NORSE = 1.0
TARGET_VS_FLOOR = 2.0


# ----------------------------------------------------------------------------- helpers
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status() -> dict:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                m = re.match(r"(Vm\w+):\s+(\d+) kB", line)
                if m:
                    out[m.group(1)] = int(m.group(2)) * 1024
    except OSError:
        pass
    return out


def _ru_maxrss() -> int:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # Linux reports kB


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so that an approach that reuses
    memory freed during setup still shows up in the RSS delta."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemMeter:
    """Peak memory of one measured section."""

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> None:
        gc.collect()
        _malloc_trim()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            self.kind = "torch.cuda.max_memory_allocated delta"
            return
        self.ru_base = _ru_maxrss()
        try:  # reset the peak-RSS watermark (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.clear_refs = True
        except OSError:
            self.clear_refs = False
        st = _proc_status()
        if self.clear_refs and "VmRSS" in st:
            self.base = st["VmRSS"]
            self.kind = "VmHWM - VmRSS at start (peak RSS reset via /proc/self/clear_refs)"
        else:
            self.base = self.ru_base
            self.kind = "ru_maxrss delta"

    def stop(self) -> dict:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            return {"peak_mem_bytes": peak - self.base, "mem_method": self.kind,
                    "mem_base_bytes": self.base}
        ru = _ru_maxrss()
        st = _proc_status()
        if self.clear_refs and "VmHWM" in st:
            peak = st["VmHWM"] - self.base
        else:
            peak = ru - self.base
        return {"peak_mem_bytes": max(0, peak), "mem_method": self.kind,
                "mem_base_bytes": self.base, "ru_maxrss_delta_bytes": max(0, ru - self.ru_base)}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def reference_available() -> tuple[bool, str]:
    try:
        import nrf_nir  # noqa: F401

        nrf_nir.run  # noqa: B018
        return True, getattr(nrf_nir, "__version__", "unknown")
    except Exception as e:  # pragma: no cover - depends on the package state
        return False, f"{type(e).__name__}: {e}"


# ----------------------------------------------------------------------------- data
def _normal(gen, shape, mu, sigma):
    return torch.randn(*shape, generator=gen, dtype=torch.float32) * sigma + mu


def make_weights(net: str) -> dict:
    """Deterministic float32 CPU weights."""
    g = torch.Generator().manual_seed(WEIGHT_SEED + (0 if net == "mlp" else 1))
    w = {}
    if net == "mlp":
        for i, (mu, sigma, b) in enumerate(MLP_W):
            n_in, n_out = MLP_SIZES[i], MLP_SIZES[i + 1]
            w[f"fc{i + 1}.weight"] = _normal(g, (n_out, n_in), mu, sigma)
            w[f"fc{i + 1}.bias"] = torch.full((n_out,), b, dtype=torch.float32)
    else:
        shapes = {"conv1": (8, 2, 5, 5), "conv2": (16, 8, 5, 5), "fc": (CONV_OUT, 16 * 10 * 10)}
        for name, shape in shapes.items():
            mu, sigma, b = CONV_W[name]
            w[f"{name}.weight"] = _normal(g, shape, mu, sigma)
            w[f"{name}.bias"] = torch.full((shape[0],), b, dtype=torch.float32)
    return w


def in_shape(net: str) -> tuple:
    return (MLP_SIZES[0],) if net == "mlp" else CONV_IN


def make_inputs(net: str, T: int, B: int, device: torch.device) -> torch.Tensor:
    """Bernoulli(INPUT_RATE) 0/1 spikes, float32, [T, B, *shape]; generated in chunks of
    time on the CPU (deterministic, no big temporaries), then moved to the device."""
    g = torch.Generator().manual_seed(INPUT_SEED + (0 if net == "mlp" else 1))
    shp = in_shape(net)
    x = torch.empty((T, B, *shp), dtype=torch.float32)
    chunk = 50
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        x[t0:t1] = (torch.rand((t1 - t0, B, *shp), generator=g) < INPUT_RATE).float()
    return x.to(device)


# ----------------------------------------------------------------------------- Norse
def norse_p(device):
    from norse.torch import LIFBoxParameters

    return LIFBoxParameters(
        tau_mem_inv=torch.tensor(1.0 / TAU, device=device),
        v_leak=torch.tensor(0.0, device=device),
        v_th=torch.tensor(V_TH, device=device),
        v_reset=torch.tensor(0.0, device=device),
    )


def _lifbox_module_class():
    """Norse 1.1.0 ships ``LIFBoxCell`` but no time-looping ``LIFBox``; this is the
    module every other Norse neuron gets: Norse's ``SNN`` time loop around the same
    ``lif_box_feed_forward_step`` that ``LIFBoxCell`` uses."""
    import norse.torch as snn
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState, lif_box_feed_forward_step
    from norse.torch.module.snn import SNN
    from norse.torch.utils.clone import clone_tensor

    if hasattr(snn, "LIFBox"):
        return snn.LIFBox

    class LIFBox(SNN):
        def __init__(self, p, dt: float = 0.001):
            super().__init__(lif_box_feed_forward_step, self.initial_state, p, dt=dt)

        def initial_state(self, input_tensor):
            return LIFBoxFeedForwardState(v=clone_tensor(self.p.v_leak))

    return LIFBox


class TimeFold(torch.nn.Module):
    """Apply a per-sample module once to all T*B samples of a [T, B, ...] tensor."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        T, B = x.shape[:2]
        y = self.module(x.reshape(T * B, *x.shape[2:]))
        return y.reshape(T, B, *y.shape[1:])


def torch_layers(net: str, w: dict, device) -> dict:
    """The synaptic layers as torch modules (shared by Norse and the floor)."""
    L = {}
    with torch.no_grad():
        if net == "mlp":
            for i in range(3):
                lin = torch.nn.Linear(MLP_SIZES[i], MLP_SIZES[i + 1])
                lin.weight.copy_(w[f"fc{i + 1}.weight"])
                lin.bias.copy_(w[f"fc{i + 1}.bias"])
                L[f"fc{i + 1}"] = lin
        else:
            c1 = torch.nn.Conv2d(2, 8, 5)
            c2 = torch.nn.Conv2d(8, 16, 5)
            fc = torch.nn.Linear(1600, CONV_OUT)
            for name, m in (("conv1", c1), ("conv2", c2), ("fc", fc)):
                m.weight.copy_(w[f"{name}.weight"])
                m.bias.copy_(w[f"{name}.bias"])
            L = {"conv1": c1, "pool": torch.nn.AvgPool2d(2), "conv2": c2, "fc": fc}
    for m in L.values():
        m.to(device).eval().requires_grad_(False)
    return L


def norse_model(net: str, w: dict, device, form: str):
    """form: 'cells' (per-step), 'module' (time-batched synapses), 'lift' (Norse Lift)."""
    from norse.torch import LIFBoxCell, Lift, SequentialState

    L = torch_layers(net, w, device)
    p = norse_p(device)
    if form == "cells":
        neuron = lambda: LIFBoxCell(p, dt=DT)  # noqa: E731
    else:
        LIFBox = _lifbox_module_class()
        neuron = lambda: LIFBox(p, dt=DT)  # noqa: E731
    if net == "mlp":
        mods = [L["fc1"], neuron(), L["fc2"], neuron(), L["fc3"], neuron()]
    else:
        if form == "cells":
            wrap = lambda m: m  # noqa: E731
            flat = torch.nn.Flatten(1)
        elif form == "module":
            wrap = TimeFold
            flat = torch.nn.Flatten(2)
        else:
            wrap = Lift
            flat = torch.nn.Flatten(2)
        mods = [wrap(L["conv1"]), neuron(), wrap(L["pool"]), wrap(L["conv2"]), neuron(),
                flat, L["fc"], neuron()]
    return SequentialState(*mods).to(device).eval()


def run_norse_cells(model, x):
    state = None
    outs = []
    for t in range(x.shape[0]):
        z, state = model(x[t], state)
        outs.append(z)
    return torch.stack(outs)


def run_norse_module(model, x):
    z, _ = model(x)
    return z


# ----------------------------------------------------------------------------- floor
def floor_ops(net: str, L: dict):
    if net == "mlp":
        return [L["fc1"], L["fc2"], L["fc3"]]
    return [L["conv1"], L["pool"], L["conv2"], torch.nn.Flatten(1), L["fc"]]


def run_floor_step(ops, x):
    outs = []
    for t in range(x.shape[0]):
        h = x[t]
        for op in ops:
            h = op(h)
        outs.append(h)
    return torch.stack(outs)


def run_floor_batched(ops, x):
    T, B = x.shape[:2]
    h = x.reshape(T * B, *x.shape[2:])
    for op in ops:
        h = op(h)
    return h.reshape(T, B, *h.shape[1:])


# ----------------------------------------------------------------------------- NIR
LIF_NAMES = {"mlp": ("lif1", "lif2", "lif3"), "conv": ("lif1", "lif2", "lif3")}


def nir_graph(net: str, w: dict):
    import nir
    import numpy as np

    def lif(shape):
        shape = tuple(int(s) for s in shape)
        return nir.LIF(
            tau=np.full(shape, TAU), r=np.ones(shape), v_leak=np.zeros(shape),
            v_threshold=np.full(shape, V_TH), v_reset=np.zeros(shape),
        )

    a = {k: v.detach().cpu().numpy() for k, v in w.items()}
    if net == "mlp":
        nodes = {"input": nir.Input(input_type={"input": np.array([MLP_SIZES[0]])})}
        for i in range(3):
            nodes[f"fc{i + 1}"] = nir.Affine(
                weight=a[f"fc{i + 1}.weight"], bias=a[f"fc{i + 1}.bias"]
            )
            nodes[f"lif{i + 1}"] = lif((MLP_SIZES[i + 1],))
        nodes["output"] = nir.Output(output_type={"output": np.array([MLP_SIZES[-1]])})
    else:
        nodes = {
            "input": nir.Input(input_type={"input": np.array(CONV_IN)}),
            "conv1": nir.Conv2d(input_shape=(32, 32), weight=a["conv1.weight"], stride=1,
                                padding=0, dilation=1, groups=1, bias=a["conv1.bias"]),
            "lif1": lif((8, 28, 28)),
            "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                  padding=np.array([0, 0])),
            "conv2": nir.Conv2d(input_shape=(14, 14), weight=a["conv2.weight"], stride=1,
                                padding=0, dilation=1, groups=1, bias=a["conv2.bias"]),
            "lif2": lif((16, 10, 10)),
            "flatten": nir.Flatten(input_type={"input": np.array([16, 10, 10])},
                                   start_dim=0, end_dim=-1),
            "fc": nir.Affine(weight=a["fc.weight"], bias=a["fc.bias"]),
            "lif3": lif((CONV_OUT,)),
            "output": nir.Output(output_type={"output": np.array([CONV_OUT])}),
        }
    names = list(nodes)
    edges = [(names[i], names[i + 1]) for i in range(len(names) - 1)]
    metadata = {"dt": DT, "reset": "value", "threshold": "gt", "integration": "euler",
                "initial_state": "leak", "producer": "benchmarks/bench_reference.py"}
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
    except Exception:  # AvgPool2d has no static types in nir 1.0.8
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def reference_fn(net, w, x, device, record=()):
    import nrf_nir

    graph = nir_graph(net, w)
    out_name = "output"

    def fn():
        return nrf_nir.run(graph, x, device=device)[out_name]

    def fn_rec():
        return nrf_nir.run(graph, x, device=device, record=record)

    return fn_rec if record else fn


# ----------------------------------------------------------------------------- worker
def build_fn(net, approach, w, x, device):
    if approach == "norse_cells":
        m = norse_model(net, w, device, "cells")
        return lambda: run_norse_cells(m, x)
    if approach in ("norse_module", "norse_lift"):
        m = norse_model(net, w, device, approach.split("_")[1])
        return lambda: run_norse_module(m, x)
    if approach in REFERENCES:
        return reference_fn(net, w, x, device)
    if approach in ("floor_step", "floor_batched"):
        ops = floor_ops(net, torch_layers(net, w, device))
        f = run_floor_step if approach == "floor_step" else run_floor_batched
        return lambda: f(ops, x)
    raise ValueError(approach)


PROTO = "@@bench "


def _send(msg: dict) -> None:
    sys.stdout.write(PROTO + json.dumps(msg) + "\n")
    sys.stdout.flush()


def worker_serve(spec: dict) -> None:
    """One approach in its own process: set up, then run once per ``run`` line on stdin
    (the first run is the warm-up), report ``{"t": seconds}`` after each; on ``done``
    report the times and the peak memory of all runs together."""
    try:
        torch.set_num_threads(spec["threads"])
        device = resolve_device(spec["device"])
        net, approach = spec["net"], spec["approach"]
        fused_on = approach == "reference" and spec.get("fused", "on") != "off"
        os.environ[FUSED_ENV] = "1" if fused_on else "0"
        w = make_weights(net)
        x = make_inputs(net, spec["T"], spec["B"], device)
        fn = build_fn(net, approach, w, x, device)
        if fused_on and device.type == "cpu":
            warm_fused_kernel()
        mem = MemMeter(device)
    except Exception as e:
        _send({"ok": False, "error": f"{type(e).__name__}: {e}",
               "traceback": traceback.format_exc()})
        return
    _send({"ready": True})
    times: list[float] = []
    others_log: list = []
    info: dict = {}
    started = False
    try:
        with torch.no_grad():
            for line in sys.stdin:
                cmd = line.strip()
                if cmd == "done":
                    break
                if cmd != "run":
                    continue
                if not started:
                    mem.start()
                    started = True
                gc.collect()
                sync(device)
                c0, r0 = _cpu_times(), _self_cpu()
                t0 = time.perf_counter()
                out = fn()
                sync(device)
                dt = time.perf_counter() - t0
                others = _others_busy(c0, _cpu_times(), _self_cpu() - r0)
                others_log.append(others)
                if "warmup_s" not in info:
                    info = {"warmup_s": dt, "out_shape": list(out.shape),
                            "out_sum": float(out.double().sum())}
                else:
                    times.append(dt)
                del out
                gc.collect()
                _malloc_trim()  # idle workers must not sit on their peak memory
                _send({"t": dt, "others_busy": others})
        m = mem.stop() if started else {}
    except Exception as e:
        _send({"ok": False, "error": f"{type(e).__name__}: {e}",
               "traceback": traceback.format_exc()})
        return
    res = {"ok": True, "times_s": times, **info, **m,
           "others_busy_during_runs": others_log,
           "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}
    if times:
        ib = times.index(min(times))
        res.update(best_s=times[ib], mean_s=sum(times) / len(times),
                   best_run_others_busy=others_log[ib + 1] if len(others_log) > ib + 1 else None)
    _send(res)


def warm_fused_kernel() -> None:
    """Load numba and the reference's compiled neuron kernel before the measured section, as
    torch is: a one-time cost per process (about 130 MB of RSS: LLVM and the compiled code),
    not the simulation's memory."""
    try:
        from nrf_nir import fused
    except ImportError:  # an nrf_nir without the kernel
        return
    try:
        fused.warm()
    except RuntimeError:  # no numba: the reference runs its torch loops
        pass


def _agree(a: torch.Tensor, b: torch.Tensor) -> dict:
    a = a.to(torch.bool).cpu()
    b = b.to(torch.bool).cpu()
    if a.shape != b.shape:
        return {"error": f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}"}
    n = a.numel()
    mism = int((a != b).sum())
    return {"elements": n, "mismatches": mism, "agree_frac": 1.0 - mism / n,
            "spikes_a": int(a.sum()), "spikes_b": int(b.sum())}


def worker_check(spec: dict) -> dict:
    """Untimed: spikes of every LIF layer from Norse (cells and module form) and from
    the reference on the benchmark inputs; exact agreement and firing rates."""
    device = resolve_device(spec["device"])
    net = spec["net"]
    w = make_weights(net)
    x = make_inputs(net, spec["T"], spec["B"], device)
    names = LIF_NAMES[net]
    res = {"input_rate": float(x.mean())}
    with torch.no_grad():
        # Norse cells, per step, every LIF layer's spikes
        m = norse_model(net, w, device, "cells")
        lif_idx = [i for i, mod in enumerate(m) if type(mod).__name__ == "LIFBoxCell"]
        cells = {n: [] for n in names}
        state = None
        for t in range(x.shape[0]):
            state = [None] * len(m) if state is None else state
            h = x[t]
            for i, mod in enumerate(m):
                if m.stateful_layers[i]:
                    h, state[i] = mod(h, state[i])
                else:
                    h = mod(h)
                if i in lif_idx:
                    cells[names[lif_idx.index(i)]].append(h.to(torch.bool))
        cells = {n: torch.stack(v) for n, v in cells.items()}
        del m
        # Norse module form, layer by layer
        m = norse_model(net, w, device, "module")
        module = {}
        h = x
        k = 0
        for i, mod in enumerate(m):
            if m.stateful_layers[i]:
                h, _ = mod(h)
                module[names[k]] = h.to(torch.bool)
                k += 1
            else:
                h = mod(h)
        del h, m
        res["rates_norse_cells"] = {n: float(v.float().mean()) for n, v in cells.items()}
        res["rates_norse_module"] = {n: float(v.float().mean()) for n, v in module.items()}
        res["norse_cells_vs_module"] = {n: _agree(cells[n], module[n]) for n in names}
        ok, why = reference_available()
        if ok:
            try:
                fused_on = spec.get("fused", "on") != "off"
                if fused_on:  # the kernel changes no bit: outputs with it on and off
                    os.environ[FUSED_ENV] = "0"
                    torch_loops = reference_fn(net, w, x, device, record=names[:-1])()
                os.environ[FUSED_ENV] = "1" if fused_on else "0"
                out = reference_fn(net, w, x, device, record=names[:-1])()
                if fused_on:
                    res["reference_fused_equals_unfused"] = all(
                        torch.equal(out[k], torch_loops[k]) for k in out)
                    del torch_loops
                ref = {n: out[n] for n in names[:-1]}
                ref[names[-1]] = out["output"]
                res["rates_reference"] = {n: float(v.float().mean()) for n in names
                                          for v in [ref[n]]}
                res["reference_vs_norse_cells"] = {n: _agree(ref[n], cells[n]) for n in names}
                res["reference_vs_norse_module"] = {n: _agree(ref[n], module[n]) for n in names}
                res["reference_output_is_binary"] = bool(
                    ((out["output"] == 0) | (out["output"] == 1)).all())
                res["reference_output_dtype"] = str(out["output"].dtype)
            except Exception as e:
                res["reference_error"] = f"{type(e).__name__}: {e}"
                res["reference_traceback"] = traceback.format_exc()
        else:
            res["reference_error"] = why
    return res


def worker_profile(spec: dict) -> dict:
    """torch.profiler summary of one reference run (after a warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    device = resolve_device(spec["device"])
    net = spec["net"]
    w = make_weights(net)
    x = make_inputs(net, spec["T"], spec["B"], device)
    fn = reference_fn(net, w, x, device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.no_grad():
        fn()
        with profile(activities=acts) as prof:
            fn()
            sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=20)
    return {"T": spec["T"], "B": spec["B"], "table": table}


def worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    torch.set_num_threads(spec["threads"])
    kind = spec["kind"]
    if kind == "serve":
        worker_serve(spec)
        return
    try:
        fn = {"check": worker_check, "profile": worker_profile}[kind]
        res = {"ok": True, **fn(spec)}
    except Exception as e:
        res = {"ok": False, "error": f"{type(e).__name__}: {e}",
               "traceback": traceback.format_exc()}
    res["threads"] = torch.get_num_threads()
    res["interop_threads"] = torch.get_num_interop_threads()
    with open(spec["out"], "w") as f:
        json.dump(res, f)


def write_json(path: str, report: dict) -> None:
    """Write ``report`` to ``path`` (its folder created) and say so."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {path}")


# ----------------------------------------------------------------------------- parent
def spawn(spec: dict, timeout: float | None = None) -> dict:
    fd, path = tempfile.mkstemp(suffix=".json", prefix="bench_ref_")
    os.close(fd)
    spec = {**spec, "out": path}
    env = _worker_env(spec["threads"])
    t0 = time.perf_counter()
    try:
        cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(spec)]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        try:
            with open(path) as f:
                res = json.load(f)
        except (OSError, ValueError):
            res = {"ok": False, "error": f"worker exited {p.returncode}",
                   "stderr": p.stderr[-4000:]}
        if p.returncode != 0 and res.get("ok"):
            res["stderr"] = p.stderr[-4000:]
    except subprocess.TimeoutExpired:
        res = {"ok": False, "error": f"timeout after {timeout}s"}
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    res["wall_s"] = time.perf_counter() - t0
    return res


def _worker_env(threads: int) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Worker:
    """Parent side of :func:`worker_serve`."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.err = tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(spec)]
        self.p = subprocess.Popen(cmd, env=_worker_env(spec["threads"]), text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err)
        self.failed: dict | None = None

    def recv(self) -> dict:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            if line.startswith(PROTO):
                return json.loads(line[len(PROTO):])
        self.p.wait()
        self.err.seek(0)
        return {"ok": False, "error": f"worker exited with code {self.p.returncode}",
                "stderr": self.err.read()[-4000:]}

    def send(self, cmd: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()

    def request(self, cmd: str) -> dict:
        try:
            self.send(cmd)
        except (BrokenPipeError, OSError):
            pass
        msg = self.recv()
        if msg.get("ok") is False:
            self.failed = msg
        return msg

    def close(self) -> None:
        try:
            if self.p.stdin:
                self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.err.close()


def _cpu_times() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v), idle


def _self_cpu() -> float:
    """CPU seconds used by this process so far (all its threads)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _others_busy(a: tuple[int, int] | None, b: tuple[int, int] | None,
                 own_s: float) -> float | None:
    """Fraction of the machine's CPU capacity used by *other* processes between the
    /proc/stat samples ``a`` and ``b`` (``own_s``: CPU seconds this process used)."""
    if a is None or b is None or b[0] == a[0]:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = (b[0] - a[0]) - (b[1] - a[1])
    return max(0.0, (busy - own_s * hz) / (b[0] - a[0]))


def cpu_busy(interval: float = 0.3) -> float | None:
    """Fraction of all CPUs busy over ``interval`` seconds (Linux), else None."""
    a = _cpu_times()
    time.sleep(interval)
    b = _cpu_times()
    if a is None or b is None or b[0] == a[0]:
        return None
    return 1.0 - (b[1] - a[1]) / (b[0] - a[0])


def wait_idle(max_wait: float, threshold: float = 0.15) -> float | None:
    """Wait (at most ``max_wait`` s) until the machine is nearly idle; return the busy
    fraction last seen."""
    if max_wait <= 0:
        return None
    t_end = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy is not None and busy > threshold and time.monotonic() < t_end:
        busy = cpu_busy(1.0)
    return busy


def time_approaches(base: dict, net: str, approaches: list[str],
                    idle_wait: float = 0.0) -> dict:
    """Every approach in its own fresh process; runs interleaved round-robin (warm-up
    round, then ``repeats`` rounds, alternating the order) so that load from other
    processes on the machine hits all approaches alike."""
    workers = {a: Worker({**base, "kind": "serve", "net": net, "approach": a})
               for a in approaches}
    res: dict = {}
    for a, wk in workers.items():  # set-ups run in parallel; wait for all
        msg = wk.recv()
        if not msg.get("ready"):
            res[a] = msg
            wk.failed = msg
    order = [a for a in approaches if workers[a].failed is None]
    busy_log: dict[str, list] = {}
    for rnd in range(base["repeats"] + 1):
        seq = order if rnd % 2 == 0 else order[::-1]
        label = "warm-up" if rnd == 0 else f"repeat {rnd}/{base['repeats']}"
        print(f"  [{net}] {label}:", end="", flush=True)
        for a in seq:
            if workers[a].failed is not None:
                continue
            busy = wait_idle(idle_wait)
            msg = workers[a].request("run")
            busy_log.setdefault(a, []).append(busy)
            if "t" in msg:
                ob = msg.get("others_busy")
                flag = "*" if ob is not None and ob > 0.1 else ""
                print(f" {a}={msg['t']:.3f}s{flag}", end="", flush=True)
            else:
                print(f" {a}=FAILED", end="", flush=True)
        print(flush=True)
    print("  (* = other processes used > 10% of the CPUs during that run)")
    for a in order:
        wk = workers[a]
        res[a] = wk.failed if wk.failed is not None else wk.request("done")
        res[a]["cpu_busy_before_runs"] = busy_log.get(a)
    for wk in workers.values():
        wk.close()
    return {a: res[a] for a in approaches if a in res}


def machine_info(device: torch.device, threads: int) -> dict:
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": threads,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        import nir
        import norse

        info["nir"] = getattr(nir, "__version__", "?")
        info["norse"] = getattr(norse, "__version__", "?")
    except Exception:
        pass
    ok, ver = reference_available()
    info["nrf_nir"] = ver if ok else f"unavailable ({ver})"
    if device.type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_kB"] = int(f.readline().split()[1])
    except OSError:
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"],
                                            capture_output=True, text=True).stdout.strip() or None
    except OSError:
        info["git_commit"] = None
    return info


def _tb(r: dict) -> str:
    return str(r.get("traceback") or r.get("stderr") or "")


def _pct(x) -> str:
    return f"{'-':>8}" if x is None else f"{100 * x:7.0f}%"


def fmt_mb(b):
    return "-" if b is None else f"{b / 2**20:9.1f}"


def round_ratios(res: dict, num: str) -> dict:
    """Per other approach, the median over the timed rounds of ``num``'s time / its time in
    the same round (adjacent runs: load from other processes hits both alike)."""
    mine = res.get(num, {}).get("times_s") if res.get(num, {}).get("ok") else None
    out = {}
    for a, r in res.items():
        if a == num or not mine or not r.get("ok") or len(r.get("times_s", ())) != len(mine):
            continue
        ratios = sorted(m / t for m, t in zip(mine, r["times_s"], strict=True))
        n = len(ratios)
        out[a] = ratios[n // 2] if n % 2 else (ratios[n // 2 - 1] + ratios[n // 2]) / 2
    return out


def summarize(net: str, res: dict, T: int, B: int) -> dict:
    s = {}
    best = {a: r["best_s"] for a, r in res.items() if r.get("ok")}
    for ref in REFERENCES:
        if ref in best:
            s[f"median_round_ratios_{ref}"] = round_ratios(res, ref)
    norse = {a: t for a, t in best.items() if a in NORSE_APPROACHES}
    if norse:
        s["norse_best"] = min(norse, key=norse.get)
    if "reference" in best:
        ref = best["reference"]
        if norse:
            s["ref_over_norse_best"] = ref / norse[s["norse_best"]]
            s["pass_vs_norse"] = s["ref_over_norse_best"] <= TARGET_VS_NORSE
        for fl in ("floor_step", "floor_batched"):
            if fl in best:
                s[f"ref_over_{fl}"] = ref / best[fl]
                s[f"pass_vs_{fl}"] = s[f"ref_over_{fl}"] <= TARGET_VS_FLOOR
        floors = {f: best[f] for f in ("floor_step", "floor_batched") if f in best}
        if floors:
            s["floor_best"] = min(floors, key=floors.get)
            s["ref_over_floor_best"] = ref / floors[s["floor_best"]]
            s["pass_vs_floor_best"] = s["ref_over_floor_best"] <= TARGET_VS_FLOOR
    return s


def print_table(net: str, res: dict, summ: dict, T: int, B: int, check: dict | None) -> None:
    print(f"\n=== {net}  (T={T}, B={B}) ===")
    print(f"{'approach':<14} {'best s':>9} {'mean s':>9} {'warmup s':>9} {'samples/s':>10} "
          f"{'sample-steps/s':>15} {'peak MB':>9} {'/ref':>7} {'others%':>8}")
    ref = res.get("reference", {}).get("best_s") if res.get("reference", {}).get("ok") else None
    for a, r in res.items():
        if not r.get("ok"):
            print(f"{a:<14} FAILED: {r.get('error')}")
            continue
        rel = f"{r['best_s'] / ref:7.2f}" if ref else "      -"
        print(f"{a:<14} {r['best_s']:9.3f} {r['mean_s']:9.3f} {r['warmup_s']:9.3f} "
              f"{B / r['best_s']:10.1f} {T * B / r['best_s']:15.0f} "
              f"{fmt_mb(r.get('peak_mem_bytes'))} {rel} {_pct(r.get('best_run_others_busy'))}")
    if "ref_over_norse_best" in summ:
        print(f"reference / norse_best ({summ['norse_best']}) = {summ['ref_over_norse_best']:.3f}"
              f"  target <= {TARGET_VS_NORSE}: {'PASS' if summ['pass_vs_norse'] else 'FAIL'}")
    for fl in ("floor_step", "floor_batched"):
        if f"ref_over_{fl}" in summ:
            print(f"reference / {fl:<13} = {summ[f'ref_over_{fl}']:.3f}  target <= "
                  f"{TARGET_VS_FLOOR}: {'PASS' if summ[f'pass_vs_{fl}'] else 'FAIL'}")
    if "floor_best" in summ:
        print(f"  (the lower floor on this machine is {summ['floor_best']}: reference / floor_best"
              f" = {summ['ref_over_floor_best']:.3f})")
    for ref in REFERENCES:
        ratios = summ.get(f"median_round_ratios_{ref}")
        if ratios:
            print(f"median over rounds of {ref} / other: "
                  + ", ".join(f"{a}={v:.3f}" for a, v in ratios.items()))
    if check:
        if not check.get("ok"):
            print(f"check FAILED: {check.get('error')}")
            return
        print(f"input spike rate {check['input_rate']:.4f}; LIF spike rates (norse cells): "
              + ", ".join(f"{n}={v:.4f}" for n, v in check["rates_norse_cells"].items()))
        cm = check["norse_cells_vs_module"]
        print("agreement norse_cells vs norse_module: "
              + ", ".join(f"{n}={v.get('agree_frac', float('nan')):.6f}" for n, v in cm.items()))
        for k in ("reference_vs_norse_cells", "reference_vs_norse_module"):
            if k in check:
                parts = [
                    f"{n}={v['agree_frac']:.6f} ({v['mismatches']} diff)"
                    if "agree_frac" in v else f"{n}: {v.get('error')}"
                    for n, v in check[k].items()
                ]
                print(f"agreement {k.replace('_vs_', ' vs ')}: " + ", ".join(parts))
        if "reference_fused_equals_unfused" in check:
            same = check["reference_fused_equals_unfused"]
            print(f"reference outputs, fused kernel on vs off: "
                  f"{'bit-identical' if same else 'DIFFERENT'}")
        if "reference_error" in check:
            print(f"reference check: {check['reference_error']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--T", type=int, default=None, help="time steps (default 1000; quick 100)")
    ap.add_argument("--B", type=int, default=None, help="batch size (default 64; quick 16)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3; quick 2)")
    ap.add_argument("--quick", action="store_true", help="short smoke run (T=100, B=16, 2 repeats)")
    ap.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"),
                    help="auto: cuda when available, else cpu (default)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch.get_num_threads())")
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--approaches", default=None, help="comma list to restrict approaches")
    ap.add_argument("--fused", default="on", choices=("on", "off", "both"),
                    help="the reference's fused LIF kernel: on (default), off (torch loops), "
                         "or both (adds the approach reference_unfused, kernel off)")
    ap.add_argument("--idle-wait", type=float, default=30.0,
                    help="before each timed run wait up to this many seconds for the machine "
                         "to be idle (< 15%% of CPUs busy); 0 disables (default 30)")
    ap.add_argument("--no-check", action="store_true", help="skip the spike agreement check")
    ap.add_argument("--profile", action="store_true",
                    help="also print a torch.profiler summary of the reference (T<=200)")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "reference.json"))
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker is not None:
        worker_main(args._worker)
        return 0

    T = args.T or (100 if args.quick else 1000)
    B = args.B or (16 if args.quick else 64)
    repeats = args.repeats or (2 if args.quick else 3)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    device = resolve_device(args.device)
    nets = [n for n in args.nets.split(",") if n]
    only = set(args.approaches.split(",")) if args.approaches else None
    ref_ok, ref_why = reference_available()
    info = machine_info(device, threads)
    print(f"bench_reference: T={T} B={B} repeats={repeats} device={device} threads={threads} "
          f"cpu={info['cpu_model']} torch={info['torch']} nrf_nir={info['nrf_nir']}")
    base = {"T": T, "B": B, "repeats": repeats, "device": str(device), "threads": threads,
            "fused": args.fused}
    report = {"config": {**base, "dt": DT, "tau": TAU, "v_th": V_TH, "input_rate": INPUT_RATE,
                         "weight_seed": WEIGHT_SEED, "input_seed": INPUT_SEED, "quick": args.quick,
                         "idle_wait_s": args.idle_wait,
                         "targets": {"reference/norse_best": TARGET_VS_NORSE,
                                     "reference/floor": TARGET_VS_FLOOR}},
              "machine": info, "nets": {}}
    for net in nets:
        listed = list(APPROACHES[net])
        if args.fused == "both":
            listed.insert(listed.index("reference") + 1, "reference_unfused")
        todo = [a for a in listed if not only or a in only]
        for ref in REFERENCES:
            if ref in todo and not ref_ok:
                todo.remove(ref)
        res = time_approaches(base, net, todo, args.idle_wait)
        if "reference" in APPROACHES[net] and (not only or "reference" in only) and not ref_ok:
            res["reference"] = {"ok": False, "error": f"nrf_nir.run unavailable: {ref_why}"}
        for a, r in res.items():
            if not r.get("ok"):
                print(f"    {a} failed: {r.get('error')}\n{_tb(r)}")
        check = None
        if not args.no_check:
            print(f"  [{net}] spike check ...", flush=True)
            check = spawn({**base, "kind": "check", "net": net})
            if not check.get("ok"):
                print(f"    failed: {check.get('error')}\n{_tb(check)}")
        summ = summarize(net, res, T, B)
        entry = {"approaches": res, "summary": summ, "check": check}
        for r in res.values():
            if r.get("ok"):
                r["samples_per_s"] = B / r["best_s"]
                r["sample_steps_per_s"] = T * B / r["best_s"]
        if args.profile and ref_ok:
            Tp = min(T, 200)
            print(f"  [{net}] profiling reference (T={Tp}) ...", flush=True)
            entry["profile"] = spawn({**base, "T": Tp, "kind": "profile", "net": net})
        report["nets"][net] = entry
        print_table(net, res, summ, T, B, check)
        if "profile" in entry:
            pr = entry["profile"]
            print(pr.get("table") if pr.get("ok") else f"profile failed: {pr.get('error')}")
    # overall verdict
    verdict = {}
    for net, e in report["nets"].items():
        s = e["summary"]
        verdict[net] = {k: ("PASS" if v else "FAIL") for k, v in s.items() if k.startswith("pass_")}
    report["verdict"] = verdict
    report["machine"]["loadavg_end"] = os.getloadavg()
    print("\nverdict:", json.dumps(verdict))
    print(f"load average at start {info['loadavg_start']}, at end {os.getloadavg()} "
          f"(other processes on the machine distort timings)")
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
