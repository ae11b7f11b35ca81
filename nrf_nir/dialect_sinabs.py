"""The ``sinabs`` dialect: NIR files written by Sinabs 3.1.3's ``sinabs.nir.to_nir``.

Sinabs counts time in steps and writes no dt: ``IAF``/``IAFSqueeze`` become ``IF(r = 1)``
(``v += x`` each step), ``LIF`` becomes ``LIF(tau, r = 1, v_leak = 0)`` with ``tau`` in steps
(Sinabs decays by ``alpha = exp(-1/tau)`` per step), ``ExpLeak`` becomes ``LI``. What the file
cannot say are Sinabs's firing conventions: several spikes per step (``MultiSpike``: ``z =
trunc(v/v_th)`` for ``v > 0``), a subtract reset (``MembraneSubtract``), spikes from ``v >=
v_th``, membranes starting at 0, and the membrane floor ``min_v_mem = -v_th`` that
``sinabs.from_nir`` gives every ``IAF``. :data:`DIALECT` recognises such files and writes these
conventions into nrf-nir's semantics keys (docs/dialects.md). Framework-free (numpy and nir
only): loading a file never imports Sinabs or torch.

Sinabs and Norse write some networks identically (``sinabs/nir.py`` and
``norse/torch/utils/export_nir.py``, both through nirtorch's ``extract_nir_graph``): Affine and
Conv2d layers, and IF neurons as ``IF(r=ones_like(v_th), v_threshold)``, which Sinabs spells
out to the layer's shape and Norse does too for a per-neuron ``v_th``; the Input's leading axis
is Sinabs's time axis or Norse's batch axis. Only Sinabs writes ``SumPool2d``, ``Conv1d`` and
``Flatten`` and a LIF/LI time constant in steps (``>= 1``; Norse writes ``dt/tau_inv``, which
reaches 1 only for ``dt*tau_mem >= 1 s^2``). A file of the shared kind is not recognised:
:meth:`SinabsDialect.lookalike` names both producers instead.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

from .graph import walk
from .semantics import Semantics, write_semantics

NAME = "sinabs"
#: The Sinabs release whose ``to_nir`` output this dialect reads.
SINABS_VERSION = "3.1.3"
#: The time step a file is read with when none is given: one Sinabs step.
STEP_DT = 1.0

#: Node types ``sinabs.nir.to_nir`` writes (anything else: not a Sinabs export).
_EXPORTED_TYPES = (nir.Input, nir.Output, nir.Affine, nir.Conv1d, nir.Conv2d, nir.SumPool2d,
                   nir.Flatten, nir.IF, nir.LIF, nir.LI, nir.NIRGraph)
#: Node types ``norse.torch.to_nir`` writes (Norse 1.1.0's ``_extract_norse_module``; any other
#: module maps to None, which nirtorch cannot store).
_NORSE_TYPES = (nir.Input, nir.Output, nir.Affine, nir.Conv2d, nir.IF, nir.LIF, nir.CubaLIF,
                nir.LI)
#: The input rank (without batch) each layer type that an Input may feed takes.
_TAKES_RANK = {nir.Affine: 1, nir.Conv1d: 2, nir.Conv2d: 3, nir.SumPool2d: 3}


def _raw(value: Any) -> np.ndarray:
    """A parameter as written (its own dtype; a torch tensor as numpy, without importing
    torch)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _arr(value: Any) -> np.ndarray:
    """A parameter as float64 (NaN when absent or not numeric: it then matches nothing)."""
    if value is None:
        return np.full((), np.nan)
    try:
        return _raw(value).astype(np.float64)
    except (TypeError, ValueError):
        return np.full((), np.nan)


def _all(value: Any, number: float) -> bool:
    arr = _arr(value)
    return arr.size > 0 and bool(np.all(arr == number))


def _float32(*values: Any) -> bool:
    """Whether every value was written from a float32 tensor (Sinabs's parameters are)."""
    try:
        return all(_raw(v).dtype == np.float32 for v in values)
    except (TypeError, ValueError):
        return False


def _shape(types: Any) -> tuple[int, ...] | None:
    """The one shape of an Input's ``input_type`` / an Output's ``output_type``."""
    if not isinstance(types, dict) or len(types) != 1:
        return None
    value = next(iter(types.values()))
    if value is None:
        return None
    try:
        arr = _raw(value)
    except (TypeError, ValueError):
        return None
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        return None
    return tuple(int(v) for v in arr)


def _neuron_mismatch(name: str, node: nir.NIRNode) -> str | None:
    """Why ``node`` is not a neuron as ``_extract_sinabs_module`` writes it (None: it is)."""
    if isinstance(node, nir.IF):
        r, v_th = _raw(node.r), _raw(node.v_threshold)
        if not (_float32(node.r, node.v_threshold) and _all(node.r, 1.0)
                and _all(node.v_reset, 0.0)):
            return f"IF {name!r} is not written with float32 r = 1 and v_reset = 0"
        if r.ndim == 0 or r.shape != v_th.shape:
            # Sinabs spells r and v_threshold out to the layer's shape (Norse writes them 0-d)
            return f"IF {name!r} does not spell r and v_threshold out to its layer's shape"
        return None
    if isinstance(node, (nir.LIF, nir.LI)):
        fields = [node.tau, node.r, node.v_leak]
        if isinstance(node, nir.LIF):
            fields.append(node.v_threshold)
        if not (_float32(*fields) and _all(node.r, 1.0) and _all(node.v_leak, 0.0)
                and _all(getattr(node, "v_reset", 0.0), 0.0)):
            return (f"{type(node).__name__} {name!r} is not written with float32 r = 1, "
                    "v_leak = 0 and v_reset = 0")
        tau = _arr(node.tau)
        if not (tau.size and bool(np.all(tau >= 1.0)) and bool(np.all(np.isfinite(tau)))):
            return f"{type(node).__name__} {name!r} has a time constant below one step"
        return None
    return None


def _time_axis_inputs(graph: nir.NIRGraph) -> tuple[list[str], int | None]:
    """Inputs whose shape carries one leading axis more than every layer they feed takes:
    the sample's time axis (Sinabs's un-squeezed layers see ``[B, T, ...]``, and ``to_nir``
    drops only the batch axis). Returns their names and that axis' length (None: none)."""
    found: list[str] = []
    lengths: set[int] = set()
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.Input):
            continue
        shape = _shape(node.input_type)
        feeds = [graph.nodes.get(str(b)) for a, b in graph.edges if str(a) == name]
        if shape is None or len(shape) < 2 or not feeds:
            continue
        takes: set[int] = set()
        for layer in feeds:
            if type(layer) in _TAKES_RANK:
                takes.add(_TAKES_RANK[type(layer)])
            elif isinstance(layer, (nir.IF, nir.LIF, nir.LI)) and _raw(
                    getattr(layer, "tau", getattr(layer, "r", None))).ndim >= 1:
                takes.add(_raw(getattr(layer, "tau", getattr(layer, "r", None))).ndim)
            else:
                takes.add(-1)
        if takes == {len(shape) - 1}:
            if isinstance(feeds[0], nir.Affine) and shape[-1] != _raw(feeds[0].weight).shape[1]:
                continue
            found.append(name)
            lengths.add(shape[0])
    if len(lengths) != 1:
        return [], None
    return found, lengths.pop()


def _not_norse(nodes: list[tuple[str, nir.NIRNode]]) -> str | None:
    """What in these nodes ``norse.torch.to_nir`` does not write (None: it could have written
    them all): a node type it has no mapping for (SumPool2d, Conv1d, Flatten, a subgraph), or
    a LIF/LI time constant of one or more (Norse writes ``tau = dt/tau_inv`` seconds: 1e-5
    for 10 ms at its default dt; 1 or more needs ``dt * tau_mem >= 1 s^2``)."""
    for name, node in nodes:
        if not isinstance(node, _NORSE_TYPES):
            return f"a {type(node).__name__} ({name!r}), which Norse does not export"
    for name, node in nodes:
        if isinstance(node, (nir.LIF, nir.LI)) and bool(np.any(_arr(node.tau) >= 1.0)):
            return (f"{type(node).__name__} {name!r} with tau >= 1 (steps; Norse writes "
                    "dt/tau_inv)")
    return None


@dataclass(frozen=True)
class Fingerprint:
    """What a file written as Sinabs writes shows. structure: the first structure that sets
    it apart from a plain NIR file (None: none); not_norse: what in it Norse's ``to_nir``
    does not write (None: Norse writes the same nodes, so nothing in it is Sinabs's alone)."""

    structure: str | None
    not_norse: str | None


def fingerprint(graph: nir.NIRGraph) -> Fingerprint | None:
    """The Sinabs fingerprint of ``graph`` (None: not written as ``sinabs.nir.to_nir``
    writes: metadata, another node type, or a neuron Sinabs does not write so)."""
    if graph.metadata:
        return None
    nodes = walk(graph)
    neurons = 0
    spelled_out_if = False
    other_layer: str | None = None  # a layer type only Sinabs writes
    for name, node in nodes:
        if not isinstance(node, _EXPORTED_TYPES) or getattr(node, "metadata", None):
            return None
        if _neuron_mismatch(name, node):
            return None
        neurons += isinstance(node, (nir.IF, nir.LIF))
        spelled_out_if |= isinstance(node, nir.IF)
        if other_layer is None and isinstance(node, (nir.SumPool2d, nir.Conv1d, nir.Flatten)):
            other_layer = f"a {type(node).__name__} ({name!r})"
    if not neurons:
        return None
    timed, _ = _time_axis_inputs(graph)
    structure = other_layer or (
        "IF with r = 1 spelled out to its layer's shape" if spelled_out_if else
        f"Input {timed[0]!r} carrying the time axis" if timed else None)
    return Fingerprint(structure, _not_norse(nodes))


class SinabsDialect:
    """Recognise and normalise NIR files written by ``sinabs.nir.to_nir`` (Sinabs 3.1.3).

    **Detection** (:func:`fingerprint`, all of): no metadata at all (Sinabs writes none); only
    the node types ``to_nir`` writes (Input, Output, Affine, Conv1d, Conv2d, SumPool2d,
    Flatten, IF, LIF, LI); at least one IF or LIF; every neuron written as Sinabs writes it
    (float32 parameters, ``r = 1``, ``v_reset = 0``, ``v_leak = 0``; an IF's ``r`` and
    ``v_threshold`` spelled out to its layer's shape; ``tau >= 1``, a time constant in steps);
    a structure that a plain file would not have (a SumPool2d, Conv1d or Flatten, such an IF,
    or an Input carrying the sample's time axis in front); and something Norse's ``to_nir``
    does not write (a SumPool2d, Conv1d or Flatten, or a LIF/LI: a time constant in steps).
    A network of Affine/Conv2d and IF only is written alike by both: it reads as plain NIR,
    and the warning names both dialects (:meth:`lookalike`); so does, naming Sinabs alone, a
    network of ``LIFSqueeze`` and ``nn.Linear`` only (no structure).

    **Normalisation**: dt = 1 (one Sinabs step; with a given dt, time constants become
    ``tau*dt`` seconds and IF ``r`` becomes ``1/dt``, the same step); ``integration =
    "exponential"`` (``alpha = exp(-dt/tau)``), ``reset = "subtract"``, ``threshold = "ge"``,
    ``initial_state = "zero"``, ``spikes`` and ``membrane_floor`` from the options; ``r`` and
    ``v_reset``, which Sinabs ignores, set to what Sinabs computes; the time axis dropped from
    Input and Output shapes.

    Options: ``spikes`` "multi" (default: ``MultiSpike``, Sinabs's default ``spike_fn``) or
    "single" (``SingleSpike``); ``floor`` "threshold" (``min_v_mem = -v_th``) or "none"
    (default: as ``sinabs.from_nir`` builds the network: "threshold" when the graph has an IF,
    "none" when its neurons are all LIF, which ``from_nir`` builds without a floor);
    ``norm_input`` "on" (input scaled by ``1 - alpha``, ``r = 1``) or "off" (input added
    unscaled, ``r = 1/(1 - alpha)``) (default: each layer's Sinabs default: ``LIF`` on,
    ``ExpLeak`` off).
    """

    name = NAME
    options: dict[str, tuple[str, ...]] = {"spikes": ("multi", "single"),
                                           "floor": ("threshold", "none"),
                                           "norm_input": ("on", "off")}

    def __init__(self, spikes: str = "multi", floor: str | None = None,
                 norm_input: str | None = None, dt: float | None = None) -> None:
        self.spikes, self.floor, self.norm_input, self.dt = spikes, floor, norm_input, dt

    def configure(self, options: dict[str, str], dt: float | None) -> SinabsDialect:
        """``options`` (checked by ``nrf_nir.dialects.parse``) and the run's ``dt`` (seconds
        per Sinabs step; None: 1)."""
        return SinabsDialect(spikes=options.get("spikes", self.spikes),
                             floor=options.get("floor", self.floor),
                             norm_input=options.get("norm_input", self.norm_input), dt=dt)

    def detect(self, graph: nir.NIRGraph) -> str | None:
        found = fingerprint(graph)
        if found is None or found.structure is None or found.not_norse is None:
            return None
        return (f"{found.structure}; float32 neurons with r = 1, v_reset = 0, tau >= 1 step, "
                f"no metadata; {found.not_norse}: sinabs.nir.to_nir's signature")

    def lookalike(self, graph: nir.NIRGraph) -> tuple[tuple[str, ...], str] | None:
        """When ``graph`` is written as Sinabs writes but nothing in it is Sinabs's alone: the
        dialects that could read it (``norse`` too when Norse's ``to_nir`` writes the same
        nodes) and why the file does not decide; else None."""
        found = fingerprint(graph)
        if found is None or (found.structure is not None and found.not_norse is not None):
            return None
        if found.not_norse is None:
            return (("norse", "sinabs"),
                    "written alike by norse.torch.to_nir and sinabs.nir.to_nir (Affine/Conv2d "
                    "and IF with r = 1 spelled out to the layer's shape; the Input's leading "
                    "axis would be Norse's batch or Sinabs's time)")
        return (("sinabs",), "written as sinabs.nir.to_nir writes LIF layers (float32, r = 1, "
                "tau >= 1 step), but with nothing a plain file would not have (no IF, "
                "SumPool2d, Conv1d, Flatten or time axis)")

    def normalize(self, graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
        g = copy.deepcopy(graph)
        dt = STEP_DT if self.dt is None else float(self.dt)
        nodes = walk(g)
        has_if = any(isinstance(n, nir.IF) for _, n in nodes)
        has_lif = any(isinstance(n, nir.LIF) for _, n in nodes)
        floor = self.floor or ("threshold" if has_if else "none")
        step = ("dt = 1: Sinabs counts time in steps (tau in steps, alpha = exp(-1/tau))"
                if self.dt is None else
                f"dt = {dt:g} s given: one Sinabs step; time constants (steps) multiplied by "
                f"dt, IF r = 1/dt, so each step computes what Sinabs's step does")
        spikes = ("several spikes per step (MultiSpike: z = trunc(v/v_th) for v > 0)"
                  if self.spikes == "multi" else "one spike per step at most (SingleSpike)")
        notes = [step, f"{spikes}, spikes on v >= v_th, subtract reset (MembraneSubtract), "
                 "membranes start at 0"]
        if floor == "threshold":
            why = "as asked" if self.floor else "as sinabs.from_nir builds every IAF"
            notes.append(f"membrane floor at -v_th after the reset (min_v_mem = -v_th, {why})"
                         + ("; it applies to the LIF neurons too, which from_nir leaves "
                            "unbounded" if has_lif else ""))
        else:
            why = "as asked" if self.floor else "as sinabs.from_nir builds LIF"
            notes.append(f"no membrane floor (min_v_mem = None, {why})")
        ignored_r: list[str] = []
        ignored_reset: list[str] = []
        leaky: list[str] = []
        for name, node in nodes:
            if isinstance(node, nir.IF):
                if not _all(node.r, 1.0):
                    ignored_r.append(name)
                node.r = np.full(_raw(node.v_threshold).shape, 1.0 / dt)
            elif isinstance(node, (nir.LIF, nir.LI)):
                tau_steps = _arr(node.tau)
                if not _all(node.r, 1.0):
                    ignored_r.append(name)
                default = "on" if isinstance(node, nir.LIF) else "off"
                if (self.norm_input or default) == "on":
                    node.r = np.ones(tau_steps.shape)
                else:
                    with np.errstate(all="ignore"):
                        node.r = 1.0 / (1.0 - np.exp(-1.0 / tau_steps))
                if dt != STEP_DT:
                    node.tau = tau_steps * dt
                if not _all(node.v_leak, 0.0):
                    leaky.append(name)
            if isinstance(node, (nir.IF, nir.LIF)) and not _all(node.v_reset, 0.0):
                ignored_reset.append(name)
                node.v_reset = np.zeros(_raw(node.v_threshold).shape)
        if any(isinstance(n, (nir.LIF, nir.LI)) for _, n in nodes):
            notes.append(
                "LIF/LI integrate exactly (alpha = exp(-dt/tau)); "
                + ("input scaled by 1 - alpha (norm_input on): r = 1" if self.norm_input == "on"
                   else "input added unscaled (norm_input off): r = 1/(1 - alpha)"
                   if self.norm_input == "off" else
                   "LIF input scaled by 1 - alpha (Sinabs LIF's norm_input=True): r = 1; LI "
                   "input unscaled (ExpLeak's norm_input=False): r = 1/(1 - alpha)"))
        if ignored_r:
            notes.append(f"r ignored, as Sinabs ignores it: {', '.join(ignored_r)}")
        if ignored_reset:
            notes.append("v_reset set to 0: Sinabs's MembraneSubtract subtracts v_th: "
                         f"{', '.join(ignored_reset)}")
        if leaky:
            notes.append("Sinabs has no leak potential (sinabs.from_nir refuses v_leak != 0); "
                         f"v_leak kept as written: {', '.join(leaky)}")
        dropped = _drop_time_axis(g)
        if dropped:
            notes.append("the sample's time axis dropped from the shapes of "
                         f"{', '.join(dropped)} (to_nir keeps it for un-squeezed layers)")
        write_semantics(g, Semantics(
            dt=dt, reset="subtract", integration="exponential", threshold="ge",
            initial_state="zero", spikes=self.spikes,
            membrane_floor="minus_threshold" if floor == "threshold" else "none",
            producer="sinabs.nir.to_nir", producer_version=SINABS_VERSION))
        return g, notes


def _drop_time_axis(graph: nir.NIRGraph) -> list[str]:
    """Drop the time axis from the Inputs that carry it and from the Outputs whose shape
    starts with the same length; return the names changed."""
    timed, length = _time_axis_inputs(graph)
    if not timed:
        return []
    changed: list[str] = []
    for name, node in list(graph.nodes.items()):
        if name in timed:
            shape = _shape(node.input_type)
            assert shape is not None
            graph.nodes[name] = nir.Input(input_type=np.array(shape[1:]))
            changed.append(name)
        elif isinstance(node, nir.Output):
            shape = _shape(node.output_type)
            if shape is not None and len(shape) >= 2 and shape[0] == length:
                graph.nodes[name] = nir.Output(output_type=np.array(shape[1:]))
                changed.append(name)
    return changed


DIALECT = SinabsDialect()
