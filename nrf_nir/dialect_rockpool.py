"""The ``rockpool`` dialect: NIR files written by Rockpool 3.1's ``to_nir``.

:data:`DIALECT` recognises them and rewrites them into the contract (see
:class:`RockpoolDialect` and docs/targets/rockpool.md). Framework-free (numpy and nir only):
loading a file never imports Rockpool or torch.
"""

from __future__ import annotations

import copy
from typing import Any

import nir
import numpy as np

from .errors import NIRError
from .graph import walk
from .semantics import Semantics, write_semantics

NAME = "rockpool"


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _shape_of(types: Any) -> tuple[int, ...] | None:
    if isinstance(types, dict) and types:
        value = next(iter(types.values()))
        try:
            arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
        except Exception:  # noqa: BLE001 - odd type annotations are not Rockpool's
            return None
        if arr.dtype.kind in "iuf" and arr.ndim <= 1:
            return tuple(int(v) for v in arr.reshape(-1))
    return None


def recover_dt(tau: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per neuron, the dt that solves Rockpool's export ``r = tau * exp(-dt/tau) / dt``
    (Newton's method in float64; ``r*dt - tau*exp(-dt/tau)`` increases with dt)."""
    tau, r = np.broadcast_arrays(np.asarray(tau, np.float64), np.asarray(r, np.float64))
    d = tau / (r + 1.0)
    for _ in range(60):
        e = np.exp(-d / tau)
        f = r * d - tau * e
        d_new = np.maximum(d - f / (r + e), d * 1e-3)
        if np.all(np.abs(d_new - d) <= 1e-15 * np.abs(d)):
            d = d_new
            break
        d = d_new
    return d


def _nice(dt: float) -> float | None:
    """``dt`` rounded to 3 significant digits when that is within float32 rounding."""
    snapped = float(f"{dt:.3g}")
    return snapped if abs(snapped - dt) <= 2e-5 * dt else None


_ROCKPOOL_TYPES = (nir.Input, nir.Output, nir.Linear, nir.Affine, nir.CubaLIF, nir.LIF, nir.LI)


class RockpoolDialect:
    """NIR files written by Rockpool 3.1's ``to_nir`` (via nirtorch's ``extract_nir_graph``).

    **Detection** (conservative, all of): no nrf-nir metadata; only Input, Output, Linear,
    Affine, CubaLIF, LIF and LI nodes; an Output declaring Rockpool's ``(batch, time, N)`` shape
    ``[1, 1, N]`` (nirtorch records the shape of Rockpool's ``[B, T, N]`` output for its
    one-sample trace); and every neuron node written as Rockpool writes it: ``v_leak = 0``,
    ``v_reset = 0``, ``w_in = 1`` and ``r = tau*exp(-dt/tau)/dt`` with one ``dt`` for all the
    node's neurons (relative spread below 1e-5).

    **Normalisation** into the contract with ``integration = "exponential"``,
    ``reset = "subtract"`` (Rockpool subtracts the threshold), ``threshold = "ge"`` (Rockpool's
    ``StepPWL`` spikes on ``v >= threshold``), ``initial_state = "zero"``, ``spikes`` from the
    option (default ``"multi"``: ``StepPWL`` emits ``floor(v/threshold)`` events per step where
    ``v >= threshold``, up to ``max_spikes_per_dt``, 65536 by default, and the reset subtracts
    ``threshold`` per event) and ``dt`` recovered from ``r``: ``r`` becomes
    ``beta/(1 - alpha)`` (CubaLIF: LIFTorch adds ``beta*(i + x)``), ``1/(1 - alpha)`` (LIF:
    LIFNeuronTorch adds ``x``) or ``beta/(1 - beta)`` (LI: ExpSynTorch outputs
    ``beta*(i + x)``), with ``alpha = exp(-dt/tau_mem)``, ``beta = exp(-dt/tau_syn)``.
    A layer whose recovered dt differs from the graph's gets its time constants scaled by
    ``dt/dt_layer`` (same decay per step). Input/Output shapes lose nirtorch's batch/time axes.

    Option ``spikes``: ``multi`` (default, Rockpool's default ``max_spikes_per_dt = 2**16``) or
    ``single`` (a model built with ``max_spikes_per_dt=1``); the file records neither. Not
    recoverable from the file: ``w_rec`` of ``LIFTorch(has_rec=True)`` (``to_nir`` writes the
    same CubaLIF as without recurrence), biases, noise and a cap between 2 and 65535.
    """

    name = NAME
    options: dict[str, tuple[str, ...]] = {"spikes": ("multi", "single")}

    def __init__(self, spikes: str = "multi") -> None:
        self.spikes = spikes

    def configure(self, options: dict[str, str], dt: float | None) -> RockpoolDialect:
        """``options`` (checked by ``nrf_nir.dialects.parse``); the file states each layer's
        dt through ``r`` (a run's dt still overrides the recovered one)."""
        return RockpoolDialect(spikes=options.get("spikes", self.spikes))

    def _neurons(self, graph: nir.NIRGraph) -> list[tuple[str, nir.NIRNode, np.ndarray]] | str:
        found = []
        for name, node in walk(graph):
            if isinstance(node, nir.NIRGraph):
                continue
            if not isinstance(node, _ROCKPOOL_TYPES):
                return f"node {name!r} is a {type(node).__name__}"
            if not isinstance(node, (nir.CubaLIF, nir.LIF, nir.LI)):
                continue
            try:
                v_leak = _numpy(node.v_leak)
                tau = _numpy(node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau)
                r = _numpy(node.r)
                v_reset = _numpy(getattr(node, "v_reset", None) if getattr(
                    node, "v_reset", None) is not None else 0.0)
                w_in = _numpy(getattr(node, "w_in", 1.0) if getattr(
                    node, "w_in", None) is not None else 1.0)
            except (TypeError, ValueError):
                return f"node {name!r} has non-numeric parameters"
            if np.any(v_leak != 0) or np.any(v_reset != 0) or np.any(w_in != 1):
                return f"node {name!r} has v_leak, v_reset or w_in that Rockpool does not write"
            if tau.size == 0 or np.any(tau <= 0) or np.any(r <= 0) or not np.all(
                    np.isfinite(tau)) or not np.all(np.isfinite(r)):
                return f"node {name!r} has no positive tau and r"
            dts = recover_dt(tau, r).reshape(-1)
            if np.ptp(dts) > 1e-5 * np.median(dts):
                return f"node {name!r}: r does not follow r = tau*exp(-dt/tau)/dt for one dt"
            found.append((name, node, dts))
        return found

    def detect(self, graph: nir.NIRGraph) -> str | None:
        meta = graph.metadata if isinstance(graph.metadata, dict) else {}
        if "semantics_version" in meta or "dt" in meta:
            return None
        signature = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)
                     and (s := _shape_of(getattr(node, "output_type", None))) is not None
                     and len(s) == 3 and s[:2] == (1, 1)]
        if not signature:
            return None
        neurons = self._neurons(graph)
        if isinstance(neurons, str):
            return None
        if not neurons:
            return (f"Output {signature[0]!r} declares Rockpool's (batch, time, N) shape and "
                    "the graph has only Linear/Affine layers")
        dts = sorted({f"{(_nice(float(np.median(d))) or float(np.median(d))):g}"
                      for _, _, d in neurons})
        return (f"Output {signature[0]!r} declares Rockpool's (batch, time, N) shape [1, 1, N] "
                f"and every neuron node has v_leak = 0 and r = tau*exp(-dt/tau)/dt "
                f"(dt = {', '.join(dts)} s)")

    def normalize(self, graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
        neurons = self._neurons(graph)
        if isinstance(neurons, str):
            raise NIRError(f"not a Rockpool-written graph: {neurons}", field="dialect")
        notes: list[str] = []
        layer_dt: dict[str, float] = {}
        for name, _, dts in neurons:
            raw = float(np.median(dts))
            layer_dt[name] = _nice(raw) or raw
        counts: dict[float, int] = {}
        for value in layer_dt.values():
            counts[value] = counts.get(value, 0) + 1
        dt = max(counts, key=lambda v: counts[v]) if counts else None
        if dt is not None:
            notes.append(
                f"dt = {dt:g} s, recovered from Rockpool's r = tau*exp(-dt/tau)/dt "
                f"({', '.join(f'{n}: {v:g}' for n, v in layer_dt.items())})")
        else:
            notes.append("no neuron node: dt is not stated (pass dt to run)")
        odd = {n: v for n, v in layer_dt.items() if dt is not None and v != dt}
        if odd:
            notes.append(
                "per-layer dt: " + ", ".join(f"{n} ran at dt = {v:g} s" for n, v in odd.items())
                + f"; their time constants are scaled by {dt:g}/dt_layer so that each step "
                "decays as in Rockpool")
        notes.append(
            "Rockpool conventions applied: integration 'exponential' (Rockpool decays by "
            "exp(-dt/tau)), reset 'subtract' (v -= v_th), threshold 'ge' (StepPWL spikes on "
            "v >= v_th), initial_state 'zero'; r rewritten as beta/(1 - alpha) (CubaLIF: "
            "LIFTorch adds beta*(i + x)), 1/(1 - alpha) (LIF: LIFNeuronTorch adds x), "
            "beta/(1 - beta) (LI: ExpSynTorch outputs beta*(i + x))")
        notes.append(
            "Rockpool 3.1's to_nir does not export neuron biases (it writes v_leak = 0), "
            "recurrent weights (LIFTorch(has_rec=True) exports without w_rec), noise_std or "
            "max_spikes_per_dt: if the model had biases or recurrence they are missing from "
            "this file and cannot be restored")
        if self.spikes == "multi":
            notes.append(
                "spikes 'multi': floor(v/v_th) events per step where v >= v_th, v_th subtracted "
                "per event (StepPWL with Rockpool's default max_spikes_per_dt = 65536, which the "
                "file does not record); a model built with max_spikes_per_dt=1 needs "
                "--dialect rockpool:spikes=single")
        else:
            notes.append(
                "spikes 'single' (as asked): at most one event per step (max_spikes_per_dt=1); "
                "Rockpool's default, 65536, emits floor(v/v_th) events per step")
        fixed_io: list[str] = []
        new = self._rebuild(graph, dt, layer_dt, "", fixed_io)
        if fixed_io:
            notes.append("nirtorch's batch/time axes dropped from the shapes of "
                         + ", ".join(fixed_io))
        if dt is not None:
            write_semantics(new, Semantics(dt=dt, reset="subtract", integration="exponential",
                                           threshold="ge", initial_state="zero",
                                           spikes=self.spikes, producer="rockpool",
                                           producer_version=""))
        return new, notes

    def _rebuild(self, graph: nir.NIRGraph, dt: float | None, layer_dt: dict[str, float],
                 prefix: str, fixed_io: list[str]) -> nir.NIRGraph:
        nodes: dict[str, nir.NIRNode] = {}
        for name, node in graph.nodes.items():
            full = f"{prefix}{name}"
            meta = dict(node.metadata or {}) if isinstance(getattr(node, "metadata", None),
                                                           dict) else {}
            if isinstance(node, nir.NIRGraph):
                nodes[name] = self._rebuild(node, dt, layer_dt, full + ".", fixed_io)
            elif isinstance(node, (nir.Input, nir.Output)):
                attr = "input_type" if isinstance(node, nir.Input) else "output_type"
                shape = _shape_of(getattr(node, attr, None))
                if shape is not None and len(shape) > 1 and all(s == 1 for s in shape[:-1]):
                    fixed_io.append(f"{full} {list(shape)} -> [{shape[-1]}]")
                    shape = shape[-1:]
                if isinstance(node, nir.Input):
                    nodes[name] = nir.Input(input_type=np.array(shape or ()), metadata=meta)
                else:
                    nodes[name] = nir.Output(output_type=None if shape is None
                                             else np.array(shape), metadata=meta)
            elif isinstance(node, nir.Linear):
                nodes[name] = nir.Linear(weight=_numpy(node.weight), metadata=meta)
            elif isinstance(node, nir.Affine):
                nodes[name] = nir.Affine(weight=_numpy(node.weight), bias=_numpy(node.bias),
                                         metadata=meta)
            else:
                nodes[name] = self._neuron(node, dt, layer_dt[full], meta)
        new = nir.NIRGraph(nodes=nodes, edges=[(str(a), str(b)) for a, b in graph.edges],
                           type_check=False)
        new.metadata = copy.deepcopy(dict(graph.metadata or {})) if isinstance(
            graph.metadata, dict) else {}
        return new

    @staticmethod
    def _neuron(node: nir.NIRNode, dt: float | None, dt_l: float,
                meta: dict[str, Any]) -> nir.NIRNode:
        scale = 1.0 if dt is None else dt / dt_l
        if isinstance(node, nir.CubaLIF):
            tau_mem, tau_syn = _numpy(node.tau_mem), _numpy(node.tau_syn)
            v_th = _numpy(node.v_threshold)
            beta = np.exp(-dt_l / tau_syn)
            shape = np.broadcast_shapes(tau_mem.shape, tau_syn.shape, v_th.shape)
            return nir.CubaLIF(tau_syn=np.broadcast_to(tau_syn * scale, shape).copy(),
                               tau_mem=np.broadcast_to(tau_mem * scale, shape).copy(),
                               r=np.broadcast_to(beta / -np.expm1(-dt_l / tau_mem),
                                                 shape).copy(),
                               v_leak=np.zeros(shape), v_threshold=np.broadcast_to(
                                   v_th, shape).copy(),
                               v_reset=np.zeros(shape), w_in=np.ones(shape), metadata=meta)
        if isinstance(node, nir.LIF):
            tau, v_th = _numpy(node.tau), _numpy(node.v_threshold)
            shape = np.broadcast_shapes(tau.shape, v_th.shape)
            return nir.LIF(tau=np.broadcast_to(tau * scale, shape).copy(),
                           r=np.broadcast_to(1.0 / -np.expm1(-dt_l / tau), shape).copy(),
                           v_leak=np.zeros(shape), v_threshold=np.broadcast_to(v_th, shape).copy(),
                           v_reset=np.zeros(shape), metadata=meta)
        tau = _numpy(node.tau)
        beta = np.exp(-dt_l / tau)
        return nir.LI(tau=tau * scale, r=beta / -np.expm1(-dt_l / tau),
                      v_leak=np.zeros(tau.shape), metadata=meta)


DIALECT = RockpoolDialect()
