#!/usr/bin/env python
"""Cost curves of the ``nrf_nir`` reference simulator: time and peak memory against the number
of time steps T, the batch size B and the network size.

Each point is one ``nrf_nir.lower(graph, "reference", device="cpu").run(x)`` under
``torch.no_grad``, in its own fresh subprocess (peak memory in isolation); graph export,
validation, lowering and input generation happen before the timing. One warm-up run, then
``--repeats`` timed runs; the best time counts.

Axes (defaults; ``--quick`` shrinks every one)
* T:    100, 300, 1000, 3000, 10000 at a fixed B (mlp 16, nrf 2);
* B:    1, 4, 16, 64, 256 at a fixed T (mlp 1000, nrf 100);
* size: the zoo's ``nrf`` (input 2 x 64 x 64, 8 receptive fields per temporal channel) and the
        full-size backbone ``nrf_nir.models.nrf.build_full(size).backbone`` (192 fields per
        temporal channel) at input 2 x size x size, size 64, 128, 200, 300; T = 20, B = 1.

Nets: ``mlp`` (input 512 -> [Affine 512 -> LIF] x 3, the MLP of ``bench_reference.py``, with its
weights and Bernoulli(0.1) inputs) and ``nrf`` (the zoo model; Bernoulli(0.05) ON/OFF events).

Memory (CPU, Linux): the peak-RSS watermark is reset through ``/proc/self/clear_refs`` once the
inputs exist (``bench_reference.MemMeter``); ``peak_run`` = VmHWM after the runs - VmRSS before.
Reported per point, in bytes:
* ``input_bytes`` / ``output_bytes``: the ``[T, B, ...]`` float32 input and output tensors;
* ``peak_total_bytes`` = ``peak_run`` + ``input_bytes`` (what the run needs, inputs included);
* ``working_bytes`` = ``peak_total`` - inputs - outputs: the executor's own memory (chunk
  activations, states, kernels' scratch). The time chunks stream, so it must not grow with T.

Load: timings mean little while other processes use the CPUs. Every timed run records the
share of the machine other processes used (``others``, as in ``bench_reference.py``); a point
waits up to ``--idle-wait`` s for an idle machine, adds up to ``--busy-retries`` runs while its
best run was busy (> 10 %), and the points still busy at the end run once more (second pass;
the clean or faster result is kept).

Usage:  python benchmarks/bench_scaling.py [--quick] [--nets mlp,nrf] [--axes T,B,size]
        [--T 100,300,...] [--B 1,4,...] [--sizes 64,128,200,300] [--repeats 2]
        [--timeout 400] [--resume previous.json] [--json benchmarks/results/scaling.json]
        [--plots docs/img]
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bench_reference as ref  # noqa: E402
import torch  # noqa: E402

NETS = ("mlp", "nrf")
AXES = ("T", "B", "size")
T_VALUES = (100, 300, 1000, 3000, 10000)
B_VALUES = (1, 4, 16, 64, 256)
SIZES = (64, 128, 200, 300)  # input side of the full-size NRF backbone
SIZE_T, SIZE_B = 20, 1  # the size axis runs at small T, one sample
FIXED = {"mlp": {"T": 1000, "B": 16}, "nrf": {"T": 100, "B": 2}}  # the other axis' value
# --quick: the same axes, small
QUICK_T, QUICK_B, QUICK_SIZES, QUICK_SIZE_T = (100, 300), (1, 4), (64,), 5
QUICK_FIXED = {"mlp": {"T": 100, "B": 4}, "nrf": {"T": 50, "B": 1}}
NRF_EVENT_RATE = 0.05  # Bernoulli probability of an ON/OFF event per pixel and step
NRF_SEED = 11
BUSY_LIMIT = 0.10  # a timed run is clean when other processes used <= 10 % of the CPUs
RETRY_BUDGET_S = 60.0  # extra runs (--busy-retries) stop once the timed runs took this long
FLAT_RATIO = 1.5  # working memory over T counts as flat when max <= FLAT_RATIO * min ...
FLAT_SLACK = 16 * 2**20  # ... or max - min <= FLAT_SLACK bytes (allocator noise)
MB = 2**20


# ----------------------------------------------------------------------------- worker
def nrf_inputs(T: int, B: int, size: int) -> torch.Tensor:
    """Seeded Bernoulli(NRF_EVENT_RATE) events, float32 ``[T, B, 2, size, size]``, generated
    50 steps at a time (no big temporaries)."""
    g = torch.Generator().manual_seed(NRF_SEED)
    x = torch.empty((T, B, 2, size, size), dtype=torch.float32)
    for t0 in range(0, T, 50):
        t1 = min(T, t0 + 50)
        x[t0:t1] = (torch.rand((t1 - t0, B, 2, size, size), generator=g) < NRF_EVENT_RATE)
    return x


def build_case(net: str, T: int, B: int, size: int) -> tuple[Any, torch.Tensor]:
    """The NIR graph and the float32 CPU inputs ``[T, B, *input_shape]`` of one point.
    ``net``: ``mlp``, ``nrf`` (the zoo model, size 64) or ``nrf_full`` (backbone at ``size``)."""
    import nrf_nir

    if net == "mlp":
        graph = ref.nir_graph("mlp", ref.make_weights("mlp"))
        return graph, ref.make_inputs("mlp", T, B, torch.device("cpu"))
    if net == "nrf":
        from nrf_nir import models

        return models.export("nrf"), nrf_inputs(T, B, 64)
    if net == "nrf_full":
        from nrf_nir.models import nrf

        backbone = nrf.build_full(size).backbone
        graph = nrf_nir.export(backbone, torch.zeros(1, 2, size, size))
        del backbone
        return graph, nrf_inputs(T, B, size)
    raise ValueError(f"unknown net {net!r}")


def worker(spec: dict) -> dict:
    """One point in this process: build, lower, warm up, time ``repeats`` runs (then up to
    ``busy_retries`` more while the best run shared the CPUs with other processes beyond
    BUSY_LIMIT, within RETRY_BUDGET_S); the peak memory over all runs."""
    import nrf_nir
    from nrf_nir.runner import DEFAULT_CHUNK_BYTES, chunk_steps

    torch.set_num_threads(spec["threads"])
    T, B, size, net = spec["T"], spec["B"], spec["size"], spec["net"]
    graph, x = build_case(net, T, B, size)
    t0 = time.perf_counter()
    lowered = nrf_nir.lower(graph, "reference", device="cpu")
    lower_s = time.perf_counter() - t0
    chunk_bytes = int(getattr(lowered.backend, "chunk_bytes", DEFAULT_CHUNK_BYTES))
    chunk = chunk_steps(lowered.checked, T, B, torch.float32, chunk_bytes)
    input_bytes = x.numel() * x.element_size()
    del graph
    mem = ref.MemMeter(torch.device("cpu"))
    mem.start()
    times: list[float] = []
    others: list[float | None] = []
    output_bytes = 0
    warmup_s = math.nan
    retries = 0
    timed_since = math.inf
    with torch.no_grad():
        while True:
            gc.collect()
            c0, r0 = ref._cpu_times(), ref._self_cpu()
            t0 = time.perf_counter()
            out = lowered.run(x)
            dt = time.perf_counter() - t0
            busy = ref._others_busy(c0, ref._cpu_times(), ref._self_cpu() - r0)
            output_bytes = sum(v.numel() * v.element_size() for v in out.values())
            del out
            if math.isnan(warmup_s):
                warmup_s, timed_since = dt, time.perf_counter()
            else:
                times.append(dt)
                others.append(busy)
            gc.collect()
            ref._malloc_trim()
            if len(times) < spec["repeats"]:
                continue
            clean = [b is not None and b <= BUSY_LIMIT for b in others]
            if clean[min(range(len(times)), key=times.__getitem__)] or \
                    retries >= spec.get("busy_retries", 0) or \
                    time.perf_counter() - timed_since > RETRY_BUDGET_S:
                break
            retries += 1
    m = mem.stop()
    best = min(range(len(times)), key=times.__getitem__)
    peak_run = int(m["peak_mem_bytes"])
    return {
        "ok": True, "best_s": times[best], "times_s": times, "warmup_s": warmup_s,
        "others_busy_best": others[best], "others_busy": others, "busy_retries": retries,
        "steps_per_s": T / times[best], "sample_steps_per_s": T * B / times[best],
        "s_per_step": times[best] / T,
        "input_bytes": input_bytes, "output_bytes": output_bytes,
        "peak_run_bytes": peak_run, "peak_total_bytes": peak_run + input_bytes,
        "working_bytes": peak_run - output_bytes, "mem_method": m["mem_method"],
        "chunk_steps": chunk, "chunk_bytes": chunk_bytes, "lower_s": lower_s,
        "threads": torch.get_num_threads(),
    }


def worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        res = worker(spec)
    except Exception as e:  # recorded as a failed point, never dropped
        res = {"ok": False, "error": f"{type(e).__name__}: {e}",
               "traceback": traceback.format_exc()}
    with open(spec["out"], "w") as f:
        json.dump(res, f)


# ----------------------------------------------------------------------------- parent
def spawn(spec: dict, timeout: float) -> dict:
    """Run one point in a fresh interpreter; a crash or a timeout is a failed point."""
    fd, path = tempfile.mkstemp(suffix=".json", prefix="bench_scaling_")
    os.close(fd)
    spec = {**spec, "out": path}
    t0 = time.perf_counter()
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, env=ref._worker_env(spec["threads"]), capture_output=True,
                           text=True, timeout=timeout)
        try:
            with open(path) as f:
                res = json.load(f)
        except (OSError, ValueError):
            res = {"ok": False, "error": f"worker exited {p.returncode} without a result",
                   "stderr": p.stderr[-4000:]}
    except subprocess.TimeoutExpired:
        res = {"ok": False, "error": f"timeout after {timeout:g} s", "timeout": True}
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    res["wall_s"] = time.perf_counter() - t0
    return res


def plan(nets: list[str], axes: list[str], t_values: list[int], b_values: list[int],
         sizes: list[int], fixed: dict, size_t: int) -> list[dict]:
    """The points of the grid, in run order: ``{"axis", "net", "T", "B", "size"}``."""
    points = []
    for net in nets:
        if "T" in axes:
            points += [{"axis": "T", "net": net, "T": t, "B": fixed[net]["B"]} for t in t_values]
        if "B" in axes:
            points += [{"axis": "B", "net": net, "T": fixed[net]["T"], "B": b} for b in b_values]
    if "size" in axes and "nrf" in nets:
        points.append({"axis": "size", "net": "nrf", "T": size_t, "B": SIZE_B})
        points += [{"axis": "size", "net": "nrf_full", "T": size_t, "B": SIZE_B, "size": s}
                   for s in sizes]
    for p in points:
        p.setdefault("size", 64 if p["net"] == "nrf" else None)
    return points


PLAN_KEYS = ("axis", "net", "T", "B", "size")


def _busy(r: dict) -> bool:
    """A successful point whose best run shared the CPUs with other processes."""
    b = r.get("others_busy_best")
    return bool(r.get("ok")) and b is not None and b > BUSY_LIMIT


def _key(p: dict) -> tuple:
    return p["net"], p["T"], p["B"], p["size"]


def describe(p: dict) -> str:
    size = f" size={p['size']}" if p["net"] == "nrf_full" else ""
    return f"{p['net']:<8} T={p['T']:<6} B={p['B']:<4}{size}"


def _mb(b: float | None) -> str:
    return "-" if b is None else f"{b / MB:.1f}"


def summary_line(r: dict) -> str:
    if not r.get("ok"):
        return f"FAILED: {r.get('error')}"
    busy = r.get("others_busy_best")
    load = "" if busy is None else f", others {100 * busy:.0f}%"
    if r.get("busy_retries"):
        load += f" ({r['busy_retries']} extra runs)"
    return (f"best {r['best_s']:.3f} s, {r['steps_per_s']:.0f} steps/s, peak "
            f"{_mb(r['peak_total_bytes'])} MB, working {_mb(r['working_bytes'])} MB, "
            f"chunk {r['chunk_steps']} steps{load}")


def flat_in_T(points: list[dict]) -> dict:
    """Per net: is the working memory flat over the T axis (max/min ratio, spread)?"""
    out: dict[str, Any] = {}
    for net in sorted({p["net"] for p in points if p["axis"] == "T"}):
        ok = [p for p in points if p["axis"] == "T" and p["net"] == net and p["ok"]]
        if len(ok) < 2:
            out[net] = {"flat": None, "why": "fewer than two successful T points"}
            continue
        w = [max(p["working_bytes"], 1) for p in ok]
        lo, hi = min(w), max(w)
        out[net] = {"flat": hi <= FLAT_RATIO * lo or hi - lo <= FLAT_SLACK,
                    "ratio": hi / lo, "min_bytes": lo, "max_bytes": hi,
                    "T": [p["T"] for p in ok],
                    "input_ratio": max(p["input_bytes"] for p in ok)
                    / min(p["input_bytes"] for p in ok)}
    return out


def print_table(points: list[dict]) -> None:
    head = (f"{'axis':<5} {'net':<8} {'T':>6} {'B':>4} {'size':>5} {'best s':>9} "
            f"{'steps/s':>9} {'ms/step':>9} {'chunk':>6} {'in MB':>8} {'out MB':>8} "
            f"{'peak MB':>8} {'work MB':>8} {'others':>7}")
    print("\n" + head + "\n" + "-" * len(head))
    for p in points:
        size = "" if p["size"] is None else str(p["size"])
        lead = f"{p['axis']:<5} {p['net']:<8} {p['T']:>6} {p['B']:>4} {size:>5} "
        if not p["ok"]:
            print(lead + f"FAILED: {p.get('error')}")
            continue
        busy = p.get("others_busy_best")
        print(lead + f"{p['best_s']:9.3f} {p['steps_per_s']:9.0f} "
              f"{1e3 * p['s_per_step']:9.3f} {p['chunk_steps']:6d} "
              f"{_mb(p['input_bytes']):>8} {_mb(p['output_bytes']):>8} "
              f"{_mb(p['peak_total_bytes']):>8} {_mb(p['working_bytes']):>8} "
              f"{'-' if busy is None else f'{100 * busy:.0f}%':>7}")


# ----------------------------------------------------------------------------- plots
NET_STYLE = {"mlp": ("tab:blue", "o"), "nrf": ("tab:orange", "s"),
             "nrf_full": ("tab:green", "D")}
NET_LABEL = {"mlp": "MLP 3 x 512 LIF", "nrf": "nrf (zoo, 2x64x64)",
             "nrf_full": "NRF full backbone"}


def _style() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 14, "axes.titlesize": 15, "axes.labelsize": 14,
                         "legend.fontsize": 11, "lines.linewidth": 2, "lines.markersize": 8})


def _plain_log_ticks(ax: Any) -> None:
    """Label log axes as plain numbers (100, 0.2), on the ticks matplotlib would label."""
    from matplotlib.ticker import LogFormatterSciNotation

    class Plain(LogFormatterSciNotation):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(Plain())
        axis.set_minor_formatter(Plain(labelOnlyBase=False))


def _mark_busy(ax: Any, xs: list[float], ys: list[float], points: list[dict]) -> None:
    """Ring the points whose best run shared the CPUs with other processes (> BUSY_LIMIT)."""
    busy = [(x, y) for x, y, p in zip(xs, ys, points, strict=True) if _busy(p)]
    if busy:
        ax.scatter(*zip(*busy, strict=True), s=260, facecolors="none", edgecolors="red",
                   linewidths=2, zorder=5, label=f"others > {100 * BUSY_LIMIT:.0f} % (loaded)")


def _anchor(points: list[dict]) -> int:
    """Index of the point the 'linear' guide passes through: the first one run unloaded."""
    return next((i for i, p in enumerate(points) if not _busy(p)), 0)


def _dedupe_legend(ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="best")


def _axis_plot(points: list[dict], axis: str, path: str, machine: str) -> None:
    """Two panels: best time and memory (peak total, working) against T or B, log-log."""
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.8))
    other = "B" if axis == "T" else "T"
    for net in NET_STYLE:
        ok = sorted((p for p in points if p["axis"] == axis and p["net"] == net and p["ok"]),
                    key=lambda p: p[axis])
        if not ok:
            continue
        color, marker = NET_STYLE[net]
        xs = [p[axis] for p in ok]
        label = f"{NET_LABEL[net]}, {other}={ok[0][other]}"
        t = [p["best_s"] for p in ok]
        ax_t.loglog(xs, t, marker=marker, color=color, label=label)
        _mark_busy(ax_t, xs, t, ok)
        a = _anchor(ok)
        ax_t.loglog(xs, [t[a] * x / xs[a] for x in xs], ls=":", color=color, lw=1.5)
        ax_m.loglog(xs, [p["peak_total_bytes"] / MB for p in ok], marker=marker, color=color,
                    label=f"{net}: peak total")
        ax_m.loglog(xs, [max(p["working_bytes"], MB / 10) / MB for p in ok], marker=marker,
                    color=color, ls="--", mfc="white", label=f"{net}: working")
    ax_t.set_xlabel(f"{axis} ({'time steps' if axis == 'T' else 'batch size'})")
    ax_t.set_ylabel("best time per run (s)")
    ax_t.set_title(f"time vs {axis} (dotted: linear)")
    _finish(fig, ax_t, ax_m, machine, path)


def _finish(fig: Any, ax_t: Any, ax_m: Any, machine: str, path: str) -> None:
    """The memory panel's labels, grids, legends and ticks of both panels; save and close."""
    import matplotlib.pyplot as plt

    ax_m.set_xlabel(ax_t.get_xlabel())
    ax_m.set_ylabel("peak memory (MB)")
    ax_m.set_title("memory: total and working")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="major", alpha=0.4)
        _dedupe_legend(ax)
        _plain_log_ticks(ax)
    fig.suptitle(f"nrf_nir reference, CPU ({machine})", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _size_plot(points: list[dict], path: str, machine: str) -> None:
    """Two panels: time per step and memory against the input pixels (size x size)."""
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.8))
    for net in ("nrf", "nrf_full"):
        ok = sorted((p for p in points if p["axis"] == "size" and p["net"] == net and p["ok"]),
                    key=lambda p: p["size"])
        if not ok:
            continue
        color, marker = NET_STYLE[net]
        xs = [p["size"] ** 2 for p in ok]
        ms = [1e3 * p["s_per_step"] for p in ok]
        ax_t.loglog(xs, ms, marker=marker, color=color, label=NET_LABEL[net], ls="-"
                    if len(ok) > 1 else "none")
        _mark_busy(ax_t, xs, ms, ok)
        if len(ok) > 1:
            a = _anchor(ok)
            ax_t.loglog(xs, [ms[a] * x / xs[a] for x in xs], ls=":", color=color, lw=1.5)
        ax_m.loglog(xs, [p["peak_total_bytes"] / MB for p in ok], marker=marker, color=color,
                    label=f"{net}: peak total", ls="-" if len(ok) > 1 else "none")
        ax_m.loglog(xs, [max(p["working_bytes"], MB / 10) / MB for p in ok], marker=marker,
                    color=color, mfc="white", ls="--" if len(ok) > 1 else "none",
                    label=f"{net}: working")
        for p, x, y in zip(ok, xs, ms, strict=True):
            ax_t.annotate(str(p["size"]), (x, y), textcoords="offset points", xytext=(6, -14),
                          fontsize=11)
    T = next((p["T"] for p in points if p["axis"] == "size"), SIZE_T)
    ax_t.set_xlabel("input pixels (size x size, 2 channels)")
    ax_t.set_ylabel("time per step (ms)")
    ax_t.set_title(f"time vs size, T={T}, B={SIZE_B} (dotted: linear)")
    _finish(fig, ax_t, ax_m, machine, path)


def write_plots(points: list[dict], folder: str, machine: str) -> list[str]:
    """``scaling_T.png``, ``scaling_B.png``, ``scaling_size.png`` (those with points) in
    ``folder``; returns their paths."""
    _style()
    os.makedirs(folder, exist_ok=True)
    written = []
    for axis in AXES:
        if not any(p["axis"] == axis and p["ok"] for p in points):
            continue
        path = os.path.join(folder, f"scaling_{axis}.png")
        if axis == "size":
            _size_plot(points, path, machine)
        else:
            _axis_plot(points, axis, path, machine)
        written.append(path)
    return written


# ----------------------------------------------------------------------------- main
def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small grid (about a minute): T 100,300; B 1,4; size 64 at T=5")
    ap.add_argument("--nets", default=",".join(NETS), help="comma list of mlp,nrf")
    ap.add_argument("--axes", default=",".join(AXES), help="comma list of T,B,size")
    ap.add_argument("--T", default=None, help="T values of the T axis (comma list)")
    ap.add_argument("--B", default=None, help="B values of the B axis (comma list)")
    ap.add_argument("--sizes", default=None, help="input sides of the full NRF backbone")
    ap.add_argument("--fixed-T", type=int, default=None, help="T of the B axis (all nets)")
    ap.add_argument("--fixed-B", type=int, default=None, help="B of the T axis (all nets)")
    ap.add_argument("--size-T", type=int, default=None, help=f"T of the size axis ({SIZE_T})")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per point (best counts)")
    ap.add_argument("--busy-retries", type=int, default=None,
                    help="extra runs per point while its best run shared the CPUs with other "
                         f"processes (> {100 * BUSY_LIMIT:.0f} %%); 0 disables (default 4; "
                         "quick 0)")
    ap.add_argument("--idle-wait", type=float, default=None,
                    help="before each point wait up to this many seconds for the machine to be "
                         "idle (< 15 %% busy); 0 disables (default 20; quick 0)")
    ap.add_argument("--no-second-pass", dest="second_pass", action="store_false",
                    help="do not run the points whose best run was busy a second time "
                         "(--quick never does)")
    ap.add_argument("--resume", default=None,
                    help="a previous JSON: keep its successful points, run the rest (and the "
                         "second pass over its busy points)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch.get_num_threads())")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds per point before it is recorded as timed out (default 600)")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "scaling.json"))
    ap.add_argument("--plots", default=os.path.join(ROOT, "docs", "img"),
                    help="folder for scaling_*.png; empty: no plots")
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker is not None:
        worker_main(args._worker)
        return 0

    nets = [n for n in args.nets.split(",") if n]
    axes = [a for a in args.axes.split(",") if a]
    bad = [n for n in nets if n not in NETS] + [a for a in axes if a not in AXES]
    if bad:
        ap.error(f"unknown net or axis: {', '.join(bad)} (nets {NETS}, axes {AXES})")
    fixed = {n: dict(v) for n, v in (QUICK_FIXED if args.quick else FIXED).items()}
    for n in fixed:
        fixed[n]["T"] = args.fixed_T or fixed[n]["T"]
        fixed[n]["B"] = args.fixed_B or fixed[n]["B"]
    t_values = _ints(args.T) if args.T else list(QUICK_T if args.quick else T_VALUES)
    b_values = _ints(args.B) if args.B else list(QUICK_B if args.quick else B_VALUES)
    sizes = _ints(args.sizes) if args.sizes else list(QUICK_SIZES if args.quick else SIZES)
    size_t = args.size_T or (QUICK_SIZE_T if args.quick else SIZE_T)
    threads = args.threads or torch.get_num_threads()
    if args.busy_retries is None:
        args.busy_retries = 0 if args.quick else 4
    if args.idle_wait is None:
        args.idle_wait = 0.0 if args.quick else 20.0
    args.second_pass = args.second_pass and not args.quick
    points = plan(nets, axes, t_values, b_values, sizes, fixed, size_t)
    info = ref.machine_info(torch.device("cpu"), threads)
    print(f"bench_scaling: {len(points)} points, repeats={args.repeats}, threads={threads}, "
          f"cpu={info['cpu_model']} ({info['cpu_count']} cores), torch={info['torch']}, "
          f"load average {info['loadavg_start']}", flush=True)
    done: dict[tuple, dict] = {}  # a point shared by two axes runs once
    resumed: set[tuple] = set()
    if args.resume:
        with open(args.resume) as f:
            kept = [p for p in json.load(f)["points"] if p.get("ok")]
        done.update((_key(p), {k: v for k, v in p.items() if k not in PLAN_KEYS}) for p in kept
                    if _key(p) in {_key(q) for q in points})
        resumed = set(done)
        print(f"resumed {len(done)} successful points from {args.resume}")
    started = time.perf_counter()

    def measure(p: dict) -> dict:
        busy_before = ref.wait_idle(args.idle_wait)
        spec = {**p, "repeats": args.repeats, "threads": threads,
                "busy_retries": args.busy_retries}
        return {**spawn(spec, args.timeout), "cpu_busy_before": busy_before}

    seen: set[tuple] = set()
    for i, p in enumerate(points, start=1):
        key = _key(p)
        tag = " (shared with another axis)" if key in seen else \
            " (from --resume)" if key in resumed else ""
        seen.add(key)
        if key not in done:
            done[key] = measure(p)
        r = done[key]
        print(f"[{i}/{len(points)}] {p['axis']:<4} {describe(p)}: {summary_line(r)}"
              f" [{r['wall_s']:.1f} s]{tag}", flush=True)
    again = [key for key, r in done.items() if _busy(r)] if args.second_pass else []
    for i, key in enumerate(again, start=1):  # a second chance for points run under load
        p = next(q for q in points if _key(q) == key)
        old, new = done[key], measure(p)
        take = new.get("ok") and (not _busy(new) or new["best_s"] < old["best_s"])
        if take:
            done[key] = {**new, "second_pass": True}
        print(f"[again {i}/{len(again)}] {describe(p)}: {summary_line(new)} "
              f"[{new['wall_s']:.1f} s] -> {'taken' if take else 'kept the first'}", flush=True)
    for p in points:
        p.update(done[_key(p)])
    print_table(points)
    verdict = flat_in_T(points)
    for net, v in verdict.items():
        if v["flat"] is None:
            print(f"working memory flat in T ({net}): unknown ({v['why']})")
            continue
        print(f"working memory flat in T ({net}): {'yes' if v['flat'] else 'no'} "
              f"(max/min ratio {v['ratio']:.2f} over T={v['T'][0]}..{v['T'][-1]}: "
              f"{_mb(v['min_bytes'])}-{_mb(v['max_bytes'])} MB, while the inputs grow "
              f"{v['input_ratio']:.0f}x)")
    flags = [v["flat"] for v in verdict.values()]
    if flags:
        ratio = max((v["ratio"] for v in verdict.values() if v["flat"] is not None),
                    default=math.nan)
        answer = "no" if False in flags else "unknown" if None in flags else "yes"
        print(f"working memory flat in T: {answer} (max/min ratio {ratio:.2f})")
    failed = [p for p in points if not p["ok"]]
    if failed:
        print(f"{len(failed)} point(s) failed or timed out (recorded in the JSON)")
    info["loadavg_end"] = os.getloadavg()
    machine = f"{info['cpu_count']}-core {info['cpu_model']}, {threads} threads, " \
              f"torch {info['torch']}"
    plots = write_plots(points, args.plots, machine) if args.plots else []
    for path in plots:
        print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} kB)")
    report = {
        "config": {"nets": nets, "axes": axes, "T_values": t_values, "B_values": b_values,
                   "sizes": sizes, "fixed": fixed, "size_T": size_t, "size_B": SIZE_B,
                   "repeats": args.repeats, "threads": threads, "timeout_s": args.timeout,
                   "busy_retries": args.busy_retries, "second_pass": args.second_pass,
                   "resumed_from": args.resume, "busy_limit": BUSY_LIMIT,
                   "retry_budget_s": RETRY_BUDGET_S, "idle_wait_s": args.idle_wait,
                   "quick": args.quick, "device": "cpu", "dtype": "float32",
                   "nrf_event_rate": NRF_EVENT_RATE, "mlp_input_rate": ref.INPUT_RATE,
                   "flat_rule": {"ratio": FLAT_RATIO, "slack_bytes": FLAT_SLACK}},
        "machine": info,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "elapsed_s": time.perf_counter() - started,
        "points": points,
        "verdict": {"working_memory_flat_in_T": verdict},
        "plots": plots,
    }
    print(f"load average at start {info['loadavg_start']}, at end {info['loadavg_end']}")
    ref.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
