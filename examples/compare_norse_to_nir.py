"""Compare Norse's own NIR exporter with nrf-nir's, spike by spike, on small Norse models.

    python examples/compare_norse_to_nir.py --out docs/norse-to-nir.md

For each model: run the original Norse module stepping over time on seeded Bernoulli spikes, export
it with ``norse.torch.to_nir`` and with ``nrf_nir.export``, run both graphs in the nrf-nir
reference simulator (``nrf_nir.run(graph, x, dt=1e-3, device="cpu")``) and compare with the
original. Norse's graphs are never edited; where one declares the batch axis as part of its
input shape it is fed the input in that layout (``[T, 1, B, ...]``), which changes nothing else.
The Norse graphs also go back through ``norse.torch.from_nir``. Writes a markdown report.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import logging
import platform
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nir
import norse.torch as snn
import numpy as np
import torch
from torch import nn

import nrf_nir
from nrf_nir.atomic import write_text

DT = 1e-3
# mean input drive per layer kind, chosen so that the hidden neurons spike at a moderate rate
DRIVE = {"lifbox": 1.2, "lif": 0.3, "iaf": 0.5, "rec": 0.3, "conv": 1.2}
N_IN, N = 10, 16


# --------------------------------------------------------------------------------------------
# The models


@dataclass
class Case:
    name: str
    description: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    spike_module: str  # child name of the spiking layer whose spikes are counted
    predicted: list[str]  # the faults of Norse's exporter its source predicts for this model


def _linear(n_in: int, n_out: int, drive: float) -> nn.Linear:
    """A Linear layer whose weights are mostly positive, scaled so that a 0.3-rate spike input
    gives a mean drive of about ``drive`` per output (so that the next layer spikes)."""
    layer = nn.Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.uniform_(-0.5, 1.5).mul_(drive / (0.3 * n_in * 0.5))
        layer.bias.uniform_(-0.1, 0.1)
    return layer


def _per_neuron(n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n)


def _conv_model(bias: bool) -> nn.Module:
    conv = nn.Conv2d(2, 4, 3, bias=bias)
    with torch.no_grad():
        conv.weight.uniform_(-0.5, 1.5).mul_(DRIVE["conv"] / (0.3 * 18 * 0.5))
    return snn.SequentialState(conv, snn.LIFBoxCell(), nn.AvgPool2d(2), nn.Flatten(),
                               _linear(4 * 5 * 5, 5, 2.0))


CASES: list[Case] = [
    Case("lifbox", "Linear -> LIFBoxCell", lambda: snn.SequentialState(
        _linear(N_IN, N, DRIVE["lifbox"]), snn.LIFBoxCell()), (N_IN,), "1", ["tau"]),
    Case("lif", "Linear -> LIFCell", lambda: snn.SequentialState(
        _linear(N_IN, N, DRIVE["lif"]), snn.LIFCell()), (N_IN,), "1", ["tau"]),
    Case("lifbox-per-neuron", "Linear -> LIFBoxCell, per-neuron tau_mem_inv and v_th",
         lambda: snn.SequentialState(_linear(N_IN, N, DRIVE["lifbox"]), snn.LIFBoxCell(
             snn.LIFBoxParameters(tau_mem_inv=_per_neuron(N, 50.0, 300.0),
                                  v_th=_per_neuron(N, 0.3, 1.0)))),
         (N_IN,), "1", ["tau", "per-neuron"]),
    Case("lifbox-all-per-neuron",
         "Linear -> LIFBoxCell, per-neuron tau_mem_inv, v_th, v_leak, v_reset",
         lambda: snn.SequentialState(_linear(N_IN, N, DRIVE["lifbox"]), snn.LIFBoxCell(
             snn.LIFBoxParameters(tau_mem_inv=_per_neuron(N, 50.0, 300.0),
                                  v_th=_per_neuron(N, 0.3, 1.0),
                                  v_leak=_per_neuron(N, -0.2, 0.2),
                                  v_reset=_per_neuron(N, -0.5, 0.0)))),
         (N_IN,), "1", ["tau", "v_reset"]),
    Case("lifbox-v_reset-v_leak", "Linear -> LIFBoxCell(v_reset=-0.5, v_leak=0.2)",
         lambda: snn.SequentialState(_linear(N_IN, N, DRIVE["lifbox"]), snn.LIFBoxCell(
             snn.LIFBoxParameters(v_reset=torch.as_tensor(-0.5),
                                  v_leak=torch.as_tensor(0.2)))),
         (N_IN,), "1", ["tau", "v_reset"]),
    Case("li-readout", "Linear -> LIFBoxCell -> Linear -> LICell (voltage readout)",
         lambda: snn.SequentialState(_linear(N_IN, N, DRIVE["lifbox"]), snn.LIFBoxCell(),
                                     _linear(N, 4, 2.0), snn.LICell()),
         (N_IN,), "1", ["tau", "missing"]),
    Case("recurrent", "LIFRecurrentCell(10, 16)", lambda: snn.SequentialState(
        _rec(snn.LIFRecurrentCell(N_IN, N))), (N_IN,), "0", ["missing"]),
    Case("iaf", "Linear -> IAFCell(v_th=2)", lambda: snn.SequentialState(
        _linear(N_IN, N, DRIVE["iaf"]), snn.IAFCell(snn.IAFParameters(v_th=torch.as_tensor(2.0)))),
         (N_IN,), "1", []),
    Case("conv-nobias", "Conv2d(bias=False) -> LIFBoxCell -> AvgPool2d -> Flatten -> Linear",
         lambda: _conv_model(False), (2, 12, 12), "1", ["crash", "missing"]),
    Case("conv-bias", "Conv2d(bias=True) -> LIFBoxCell -> AvgPool2d -> Flatten -> Linear",
         lambda: _conv_model(True), (2, 12, 12), "1", ["tau", "missing"]),
]


def _rec(cell: nn.Module) -> nn.Module:
    with torch.no_grad():
        cell.input_weights.uniform_(-0.5, 1.5).mul_(DRIVE["rec"] / (0.3 * N_IN * 0.5))
    return cell


# --------------------------------------------------------------------------------------------
# Running


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the deprecation warnings and logging.warn calls of nirtorch / Norse."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def run_norse(module: nn.Module, x: torch.Tensor, spike_module: str) -> tuple[torch.Tensor, int]:
    """Step the original module over time, as a Norse user does; count the spikes of one layer."""
    counted: list[torch.Tensor] = []
    layer = dict(module.named_children())[spike_module]
    hook = layer.register_forward_hook(
        lambda _m, _i, out: counted.append(out[0] if isinstance(out, tuple) else out))
    state = None
    outs = []
    try:
        with torch.no_grad():
            for t in range(x.shape[0]):
                y, state = module(x[t], state)
                outs.append(y)
    finally:
        hook.remove()
    return torch.stack(outs), int(torch.stack(counted).sum().item())


def run_module_stepwise(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Step a module built by ``norse.torch.from_nir`` (a nirtorch GraphExecutor)."""
    state = None
    outs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            y = module(x[t], state)
            if isinstance(y, tuple):
                y, state = y
            outs.append(y)
    return torch.stack(outs)


def _agreement(got: torch.Tensor, want: torch.Tensor) -> tuple[float, int | None]:
    """Fraction of equal entries and the first step (0-based) where any entry differs."""
    if got.shape != want.shape:
        raise ValueError(f"output shape {list(got.shape)} != original {list(want.shape)}")
    equal = got == want
    per_step = equal.reshape(equal.shape[0], -1).all(dim=1)
    bad = (~per_step).nonzero()
    first = int(bad[0].item()) if len(bad) else None
    return float(equal.float().mean().item()), first


def _input_shape(graph: nir.NIRGraph) -> tuple[int, ...] | None:
    for node in graph.nodes.values():
        if isinstance(node, nir.Input):
            shape = node.input_type.get("input")
            return None if shape is None else tuple(int(s) for s in np.asarray(shape))
    return None


@dataclass
class Result:
    case: str
    exporter: str
    export: str = "ok"
    runs: str = "-"
    layout: str = "[T, B, ...]"
    agreement: float | None = None
    first_divergence: int | None = None
    spikes_original: int = 0
    spikes_exported: int | None = None
    nir_write: str = "-"
    from_nir: str = "-"
    from_nir_agreement: float | None = None
    diagnosis: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def exported(self) -> bool:
        return self.export == "ok"

    @property
    def ran(self) -> bool:
        return self.agreement is not None


def _record_name(graph: nir.NIRGraph, name: str) -> str:
    node = graph.nodes.get(name)
    return f"{name}.lif" if isinstance(node, nir.NIRGraph) and "lif" in node.nodes else name


def _run_graph(graph: nir.NIRGraph, x: torch.Tensor, want: torch.Tensor, spike_node: str,
               result: Result) -> None:
    """Run ``graph`` in the nrf-nir reference; fill in the run / agreement fields.

    A graph whose Input declares the batch axis as part of one sample (Norse's do) is fed in
    that layout, ``[T, 1, B, ...]``; the graph itself is not changed.
    """
    record = _record_name(graph, spike_node)
    folded = _input_shape(graph) == tuple(x.shape[1:])
    if folded:
        x = x[:, None]
        result.layout = "[T, 1, B, ...] (the Input declares the batch axis)"
    try:
        with _quiet():
            out = nrf_nir.run(graph, x, dt=DT, device="cpu", record=(record,))
    except Exception as exc:  # noqa: BLE001 - every failure is a measured result
        result.runs = f"no: {_one_line(exc)}"
        return
    got, spikes = out["output"].cpu(), out[record].cpu()
    if folded:
        got, spikes = got[:, 0], spikes[:, 0]
    result.runs = "yes"
    try:
        result.agreement, result.first_divergence = _agreement(got, want)
    except ValueError as exc:
        result.runs = f"yes, but {exc}"
        return
    result.spikes_exported = int(spikes.sum().item())


def _try_write(graph: nir.NIRGraph) -> str:
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        try:
            nir.write(Path(tmp) / "model.nir", graph)
            nir.read(Path(tmp) / "model.nir")
        except Exception as exc:  # noqa: BLE001
            return f"no: {_one_line(exc)}"
    return "ok"


def _arr(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.float64)
    return np.asarray(value, dtype=np.float64)


_NEURON_FIELDS = ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in")


_TIME_CONSTANTS = ("tau", "tau_mem", "tau_syn")


def diagnose(theirs: nir.NIRGraph, ours: nir.NIRGraph, x_shape: tuple[int, ...],
             facts: dict[str, Any]) -> list[str]:
    """Where Norse's graph differs from ours (ours is the one measured bit-exact).

    ``x_shape``: the sample input of one step, ``[B, *shape]``. Fills ``facts`` with the
    measured differences: ``batch_in_input``, ``none_nodes``, ``tau_ratios`` (Norse's time
    constant / ours: min and max per field), ``v_reset_lost`` (ours non-zero, Norse's zero),
    ``scalar_params`` (0-d where ours are arrays), ``if_r_ratio`` (IF ``r``, Norse's / ours).
    """
    found: list[str] = []
    facts.update(batch_in_input=_input_shape(theirs) == tuple(x_shape), none_nodes=[],
                 tau_ratios=[], v_reset_lost=False, scalar_params=False)
    if facts["batch_in_input"]:
        found.append(f"Input shape {list(x_shape)} includes the batch axis")
    for name, node in theirs.nodes.items():
        mine = ours.nodes.get(name)
        if node is None:
            kind = type(mine).__name__ if mine is not None else "?"
            found.append(f"node `{name}` is None (nrf-nir: {kind})")
            facts["none_nodes"].append(name)
            continue
        if mine is None or type(mine) is not type(node):
            continue
        if isinstance(node, (nir.Conv1d, nir.Conv2d)) and node.input_shape is None:
            found.append(f"`{name}` Conv2d input_shape None")
        scalars: list[str] = []
        for f in _NEURON_FIELDS:
            if not hasattr(node, f) or not hasattr(mine, f):
                continue
            a, b = _arr(getattr(node, f)), _arr(getattr(mine, f))
            if a.shape != b.shape and a.size == 1:
                scalars.append(f)
            try:
                a_b = np.broadcast_to(a, b.shape)
            except ValueError:
                found.append(f"`{name}.{f}` shape {list(a.shape)} (nrf-nir {list(b.shape)})")
                continue
            if np.array_equal(a_b.astype(np.float32), b.astype(np.float32)):
                continue
            if f == "v_reset" and np.all(a == 0) and np.any(b != 0):
                facts["v_reset_lost"] = True
            if f == "r" and isinstance(node, nir.IF) and np.all(b != 0):
                facts["if_r_ratio"] = float((a_b / b).max())
            if f in _TIME_CONSTANTS and np.all(b != 0):
                ratio = a_b / b
                facts["tau_ratios"] += [float(ratio.min()), float(ratio.max())]
                if np.allclose(ratio, ratio.flat[0], rtol=1e-5):
                    found.append(f"`{name}.{f}` = {_short(a)} s, {float(ratio.flat[0]):.4g}x "
                                 f"nrf-nir's {_short(b)} s")
                    continue
            found.append(f"`{name}.{f}` = {_short(a)} (nrf-nir {_short(b)})")
        if scalars:
            facts["scalar_params"] = True
            found.append(f"`{name}` {', '.join(scalars)} 0-d scalars (nrf-nir: arrays of the "
                         "layer shape)")
    return found


def _short(a: np.ndarray) -> str:
    if a.size == 1:
        return f"{float(a.reshape(-1)[0]):.4g}"
    return f"[{', '.join(f'{v:.3g}' for v in a.reshape(-1)[:2])}, ...]"


def compare(T: int, B: int, seed: int = 0, cases: list[Case] | None = None) -> list[Result]:
    results: list[Result] = []
    for index, case in enumerate(cases or CASES):
        torch.manual_seed(seed + 1000 * index)
        model = case.build().eval()
        g = torch.Generator().manual_seed(seed + 1000 * index + 1)
        x = (torch.rand(T, B, *case.input_shape, generator=g) < 0.3).float()
        want, spikes_original = run_norse(model, x, case.spike_module)

        ours_res = Result(case.name, "nrf-nir", spikes_original=spikes_original)
        ours: nir.NIRGraph | None = None
        try:
            ours = nrf_nir.export(model, x[0])
        except Exception as exc:  # noqa: BLE001
            ours_res.export = f"no: {_one_line(exc)}"
        if ours is not None:
            _run_graph(ours, x, want, case.spike_module, ours_res)
            ours_res.nir_write = _try_write(ours)

        norse_res = Result(case.name, "norse.to_nir", spikes_original=spikes_original)
        theirs: nir.NIRGraph | None = None
        try:
            with _quiet():
                theirs = snn.to_nir(model, x[0])
        except Exception as exc:  # noqa: BLE001
            norse_res.export = f"no: {_one_line(exc)}"
        if theirs is not None:
            _run_graph(theirs, x, want, case.spike_module, norse_res)
            norse_res.nir_write = _try_write(theirs)
            if ours is not None:
                norse_res.diagnosis = diagnose(theirs, ours, tuple(x[0].shape),
                                               norse_res.facts)
            try:
                with _quiet():
                    module = snn.from_nir(theirs)
                    got = run_module_stepwise(module, x)
                norse_res.from_nir_agreement, first = _agreement(got, want)
                norse_res.from_nir = (f"{norse_res.from_nir_agreement:.4f}"
                                      + (f" (step {first})" if first is not None else ""))
            except Exception as exc:  # noqa: BLE001
                norse_res.from_nir = f"no: {_one_line(exc)}"
        results += [norse_res, ours_res]
    return results


# --------------------------------------------------------------------------------------------
# The report


def _where(module_name: str, *needles: str) -> str:
    """`file:line` of each source line of an installed module that contains a needle."""
    module = importlib.import_module(module_name)
    source = inspect.getsourcefile(module)
    if source is None:
        return f"`{module_name}`"
    lines = Path(source).read_text().splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if any(n in line for n in needles)]
    rel = module_name.replace(".", "/") + ".py"
    return f"`{rel}:{','.join(map(str, hits))}`" if hits else f"`{rel}`"


def _quote(module_name: str, needle: str) -> str:
    module = importlib.import_module(module_name)
    source = inspect.getsourcefile(module)
    if source is None:
        return ""
    for line in Path(source).read_text().splitlines():
        if needle in line:
            return f"`{line.strip()}`"
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fmt_agree(r: Result) -> str:
    return "-" if r.agreement is None else f"{r.agreement:.4f}"


_PREDICTED = {"tau": "tau written 1000x too small", "missing": "`None` nodes",
              "per-neuron": "per-neuron parameters mishandled", "v_reset": "v_reset not written",
              "crash": "a crash"}


def render(results: list[Result], command: str, T: int, B: int) -> str:
    versions = {name: _version(name) for name in ("nrf-nir", "norse", "nir", "nirtorch",
                                                   "torch", "numpy")}
    exp = "norse.torch.utils.export_nir"
    imp = "norse.torch.utils.import_nir"
    tonir = "nirtorch.to_nir"
    out: list[str] = []
    w = out.append
    w("# Norse's NIR exporter vs nrf-nir's\n")
    w("Norse ships its own exporter, `norse.torch.to_nir(module, sample_input)`. nrf-nir does not "
      "use it: it writes its own (`nrf_nir.export`), because Norse's graphs do not reproduce the "
      "Norse model they come from. This page measures that. Every model below is a small Norse "
      "model run the way a Norse user runs it (stepping a `SequentialState` over time on seeded "
      "Bernoulli spike inputs, rate 0.3, weights scaled so that the neurons spike). Each model is "
      "exported by both exporters and **both graphs run in the same simulator**, the nrf-nir "
      "reference (`nrf_nir.run(graph, x, dt=1e-3, device=\"cpu\")`, float32, the semantics of "
      "[semantics.md](semantics.md)), so any difference comes from the exporter alone. Norse's "
      "graphs are not edited. Where a Norse graph declares the batch axis as part of its input "
      "shape (it always does: `to_nir` passes no `ignore_dims`), it is fed `[T, 1, B, ...]` "
      "instead of `[T, B, ...]`: the same numbers in the layout the graph itself declares.\n")
    w("Generated by:\n")
    w(f"```\n{command}\n```\n")
    w(f"T = {T} steps, B = {B} samples, dt = {DT:g} s, CPU. Versions: "
      + ", ".join(f"{k} {v}" for k, v in versions.items())
      + f", Python {platform.python_version()}.\n")
    w("## Models\n")
    for c in CASES:
        if any(r.case == c.name for r in results):
            predicted = (", ".join(_PREDICTED[p] for p in c.predicted)
                         or "no known fault")
            w(f"- `{c.name}`: {c.description}. Predicted for Norse's exporter (from its "
              f"source): {predicted}.")
    w("")
    w("## Results\n")
    w("Columns: *export*: did the exporter return a graph; *runs*: does the graph validate and "
      "run in the nrf-nir reference; *agreement*: fraction of output entries (spikes, or "
      "voltages / values for non-spiking outputs) equal to the original Norse model's, over all "
      "steps and samples; *first div.*: first step (0-based) with any differing entry; "
      "*spikes*: total spike count of the first spiking layer, original / exported graph; "
      "*nir.write*: does `nir.write` + `nir.read` store the graph; *from_nir*: agreement of "
      "`norse.torch.from_nir(graph)` stepped in Norse (Norse's graphs only).\n")
    w("| model | exporter | export | runs in reference | agreement | first div. | spikes "
      "(orig / exported) | nir.write | from_nir |")
    w("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        runs = r.runs if r.layout == "[T, B, ...]" or not r.ran else f"{r.runs}, fed [T, 1, B, ...]"
        first = "-" if r.first_divergence is None else str(r.first_divergence)
        if r.agreement is not None and r.first_divergence is None:
            first = "none"
        spikes = (f"{r.spikes_original} / {r.spikes_exported}" if r.spikes_exported is not None
                  else f"{r.spikes_original} / -")
        w(f"| `{r.case}` | {r.exporter} | {_cell(r.export)} | {_cell(runs)} | {_fmt_agree(r)} "
          f"| {first} | {spikes} | {_cell(r.nir_write)} | {_cell(r.from_nir)} |")
    w("")
    w("### What differs in Norse's graphs\n")
    w("Each Norse graph compared field by field with nrf-nir's graph of the same model (the "
      "one measured equal to the original above):\n")
    for r in results:
        if r.exporter == "norse.to_nir" and r.exported:
            diag = "; ".join(r.diagnosis) if r.diagnosis else "no difference found"
            w(f"- `{r.case}`: {diag}")
    w("")
    summary = _summary(results)
    w(f"Summary: nrf-nir's exporter reproduces {summary['ours_exact']} of {summary['cases']} "
      f"models exactly (agreement 1.0); Norse's exporter reproduces {summary['norse_exact']}: "
      f"{summary['norse_export_fail']} crash at export, {summary['norse_run_fail']} give graphs "
      f"that do not run, {summary['norse_disagree']} run but disagree.\n")
    w("## Failure classes (Norse 1.1.0 source)\n")
    w(f"Line numbers are those of the installed files ({exp.replace('.', '/')}.py and friends, "
      "found by the script at generation time).\n")
    w("**tau a factor dt too small (1000x at dt = 1e-3).** "
      f"{_where(exp, 'dt / module.p.tau')}: {_quote(exp, 'tau=dt / module.p.tau_mem_inv')}. "
      "`tau_mem_inv` is 1/tau in 1/s, so `dt / tau_mem_inv` is `dt * tau`, not tau: "
      "the default `tau_mem_inv = 100` (tau = 10 ms) is written as tau = 1e-5 s, a factor dt "
      "(1/1000 at dt = 1e-3) too small. Any NIR consumer then "
      "integrates with `dt/tau = 100` instead of 0.1: the Euler step is unstable "
      "(`|1 - dt/tau| = 99`) and is held in check only by the reset, so the exported spike "
      "trains bear no relation to the original's: they differ from the first step on, and the "
      "spike counts above are off by large factors (too many for LIFBoxCell, too few for "
      "LIFCell, whose synaptic current oscillates too). "
      "Norse's own importer "
      f"({_where(imp, '1 / _to_tensor(node.tau')}: {_quote(imp, '_to_tensor(node.tau),')}) "
      "reads tau as seconds, so even Norse -> NIR -> Norse does not round-trip: the "
      "re-imported cell has `tau_mem_inv = 1e5`, and the *from_nir* column disagrees with the "
      "original as much as the reference run does (the fault is in the graph, not in the "
      "simulator). nrf-nir writes `tau = 1 / tau_mem_inv`, in "
      "seconds, computed in float64.\n")
    skip_line = _where("nirtorch.graph_executor", "if node.elem is None")
    w("**Missing nodes.** "
      f"{_where(exp, 'return None')}: every module that `_extract_norse_module` does not "
      "recognise maps to `None`, and nirtorch stores that `None` as a node "
      f"({_where(tonir, 'nir_nodes[node.name] = mapped_node')}). `LICell`, `LIFRecurrentCell`, "
      "`AvgPool2d` and `Flatten` have no branch, so their graphs contain `None` nodes: NIR "
      "cannot type them, the nrf-nir validator refuses them (`is a NoneType, not a NIR node`), "
      "and `norse.torch.from_nir` skips them silently (nirtorch's `GraphExecutor` jumps over "
      f"nodes whose module is `None`, {skip_line}), so `li-readout` re-imported runs and "
      "returns the LI "
      "readout's *input* (the Linear layer's output) instead of its voltage: agreement 0 in "
      "the *from_nir* column. nrf-nir maps `LICell` to `CubaLI`, `LIFRecurrentCell` to a "
      "nested graph (w_in -> CubaLIF <-> w_rec, in Norse's summation order), `AvgPool2d` and "
      "`Flatten` to their NIR nodes, and refuses an unsupported module with one error naming it, "
      "instead of dropping it.\n")
    w("**Per-neuron parameters.** "
      f"{_where(exp, 'v_threshold=module.p.v_th.detach()', 'v_leak=module.p.v_leak.detach()')}: "
      "each parameter is written with whatever shape it has in Norse; `r` is "
      f"`torch.ones_like(v_leak)` ({_where(exp, 'r=torch.ones_like')}). Default parameters are "
      "0-d scalars, never expanded to the layer; 0-d tensors break `nir.write` with its default "
      "compression (the *nir.write* column: `Scalar datasets don't support chunk/filter "
      "options`). A cell whose `tau_mem_inv` and `v_th` are per-neuron but whose `v_leak` is the "
      "default scalar crashes `nir.LIF`'s shape assertion (`All parameters must have the same "
      "shape`); only when *every* parameter is per-neuron does the export succeed. nrf-nir "
      "writes every neuron parameter as an array of the layer shape.\n")
    w("**v_reset missing.** The `nir.LIF` / `nir.CubaLIF` calls "
      f"({_where(exp, 'return nir.CubaLIF(', 'return nir.LIF(')}) pass no `v_reset`, so NIR "
      "fills in `v_reset = 0`: a cell with `v_reset = -0.5` is exported as resetting to 0. "
      "The reset method (`reset_value` / `reset_subtract`) is not recorded either, nor `dt`. "
      "nrf-nir writes `v_reset`, and `dt` and the reset method in the graph metadata.\n")
    w("**Crashes.** "
      f"{_where(exp, 'bias=module.bias.detach()')}: {_quote(exp, 'bias=module.bias.detach()')} "
      "raises `AttributeError: 'NoneType' object has no attribute 'detach'` for "
      "`Conv2d(bias=False)` (the `Linear` branch handles a missing bias; the `Conv2d` branch "
      "does not). The Conv2d node is also written with `input_shape=None`.\n")
    input_line = _where(tonir, 'nir_nodes = {"input": nir.Input(input_shape)}')
    w("**Batch axis in the graph's input.** "
      f"`to_nir` ({_where(exp, 'return extract_nir_graph(')}) calls nirtorch's deprecated "
      "`extract_nir_graph` without `ignore_dims`, so the `Input` node's shape is the sample's "
      f"full shape, batch included ({input_line}); "
      "a graph exported with a batch of 8 only accepts batches of 8. nirtorch also builds the "
      f"edge list from a `set` ({_where(tonir, 'nir_edges = list(set(nir_edges))')}), so the "
      "edge order changes from run to run; NIR sums a node's inputs in edge order, which matters "
      "for bit-exactness wherever a node has several inputs.\n")
    w("**IF input scale.** "
      f"{_where(exp, 'r=torch.ones_like(module.p.v_th')}: the `IAFCell` is exported as "
      "`nir.IF(r=1)`. Norse's IAF adds the input to `v` once per step (`v + x`); NIR's IF is "
      "`dv/dt = r * I`, i.e. `v + dt * r * x` per step, so `r` must be `1 / dt` (what nrf-nir "
      "writes). With `r = 1` the membrane integrates 1000x too slowly at dt = 1e-3 and the "
      "exported layer stays silent. `from_nir` maps `IF` back to `IAFCell` and ignores `r`, "
      "so the Norse round trip hides the error (*from_nir* 1.0) while every other NIR "
      "consumer sees it. (Not predicted: found by this measurement.)\n")
    w("## Reproduce\n")
    w("The table is regenerated by the command above; "
      "`tests/test_compare_norse_to_nir.py` runs a short version (`--quick`) and checks that "
      "nrf-nir agrees exactly on every model and that Norse's exporter fails or disagrees "
      "where its source predicts (the faults listed per model above).\n")
    return "\n".join(out)


def _summary(results: list[Result]) -> dict[str, int]:
    norse = [r for r in results if r.exporter == "norse.to_nir"]
    ours = [r for r in results if r.exporter == "nrf-nir"]
    return {
        "cases": len(ours),
        "ours_exact": sum(r.agreement == 1.0 for r in ours),
        "norse_exact": sum(r.agreement == 1.0 for r in norse),
        "norse_export_fail": sum(not r.exported for r in norse),
        "norse_run_fail": sum(r.exported and not r.ran for r in norse),
        "norse_disagree": sum(r.ran and r.agreement != 1.0 for r in norse),
    }


def _version(name: str) -> str:
    try:
        return version(name)
    except Exception:  # noqa: BLE001
        return "absent"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/norse-to-nir.md"))
    parser.add_argument("--T", type=int, default=200, help="time steps")
    parser.add_argument("--B", type=int, default=8, help="batch size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="short run (T=40, B=4) for the test suite")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the measured rows as JSON")
    args = parser.parse_args(argv)
    T, B = (40, 4) if args.quick else (args.T, args.B)
    results = compare(T, B, args.seed)
    shown = ["python", "examples/compare_norse_to_nir.py", "--out", str(args.out)]
    if args.quick:
        shown.append("--quick")
    else:
        shown += ["--T", str(T), "--B", str(B)]
    if args.seed:
        shown += ["--seed", str(args.seed)]
    text = render(results, " ".join(shown), T, B)
    write_text(args.out, text)
    if args.json is not None:
        rows = [asdict(r) | {"exported": r.exported, "ran": r.ran} for r in results]
        write_text(args.json, json.dumps(rows, indent=1))
    for r in results:
        print(f"{r.case:24s} {r.exporter:13s} export={r.export[:40]:40s} "
              f"agree={_fmt_agree(r):7s} spikes={r.spikes_original}/{r.spikes_exported}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
