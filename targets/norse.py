"""The ``norse`` target: a NIR graph as a ``torch.nn.Module`` of Norse 1.1.0 cells and torch
layers, bit for bit equal to the reference (docs/semantics.md) wherever ``check`` reports
nothing.

Mapping (see docs/targets/norse.md):

======================  ==================================================================
NIR node                module
======================  ==================================================================
LIF                     ``norse.torch.LIFBoxCell`` (input pre-scaled by ``r`` when r != 1)
LI                      ``norse.torch.LIBoxCell`` (input pre-scaled by ``r`` when r != 1)
CubaLIF                 ``norse.torch.LIFCell`` (inputs pre-scaled by ``w_in``; r must be 1)
CubaLI                  ``norse.torch.LICell`` (inputs pre-scaled by ``w_in``; r must be 1)
IF                      ``norse.torch.IAFCell`` (input pre-scaled by ``dt*r``, starts at 0)
I                       a small torch module (Norse has no pure integrator)
Affine / Linear         ``torch.nn.Linear``
Conv1d / Conv2d         ``torch.nn.Conv1d`` / ``torch.nn.Conv2d``
AvgPool2d / SumPool2d   ``torch.nn.AvgPool2d`` (SumPool: ``divisor_override=1``)
Flatten, Scale,         small torch modules
Threshold, Delay
Input/Output/Identity   ``torch.nn.Identity``
======================  ==================================================================

Execution mirrors the reference so that matrix products see the same shapes (CPU BLAS may
round a product differently for a different number of rows): time is cut into the same chunks,
a stateless layer outside a cycle runs once per chunk on ``[Tc*B, ...]``, a Norse cell steps
through the chunk one step at a time, and the nodes of a recurrent cycle step together.
``stepwise=True`` (a target option) steps every layer one step at a time (Tc = 1), as the
reference's ``stepwise=True`` does.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple, cast

import nir
import numpy as np
import torch
from torch import Tensor, nn

with warnings.catch_warnings():  # Norse 1.1.0 uses the deprecated torch.jit.script at import
    warnings.simplefilter("ignore")
    import norse
    from norse.torch.functional.iaf import IAFFeedForwardState, IAFParameters
    from norse.torch.functional.leaky_integrator import LIParameters, LIState
    from norse.torch.functional.leaky_integrator_box import LIBoxParameters, LIBoxState
    from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters
    from norse.torch.functional.reset import reset_subtract, reset_value
    from norse.torch.module.iaf import IAFCell
    from norse.torch.module.leaky_integrator import LICell
    from norse.torch.module.leaky_integrator_box import LIBoxCell
    from norse.torch.module.lif import LIFCell
    from norse.torch.module.lif_box import LIFBoxCell

from nrf_nir.errors import NIRError
from nrf_nir.layers import common_layer, param, param_unless
from nrf_nir.runner import (  # noqa: F401
    DEFAULT_CHUNK_BYTES,
    GraphRunner,
    NetworkState,
    StatefulLayer,
    resolve,
)
from nrf_nir.semantics import Semantics
from nrf_nir.targets import (
    Options,
    Violation,
    findings,
    option_bool,
    option_choice,
    option_int,
    parse_options,
    refuse,
)
from nrf_nir.validate import Checked, Shape

NAME = "norse"
NORSE_VERSION = getattr(norse, "__version__", "unknown")

#: Spike function of every Norse cell: ``heaviside(v - v_th)`` = ``v > v_th`` exactly (IEEE
#: subtraction of two finite floats is zero only when they are equal). Same forward values as
#: Norse's default "super" surrogate, without its autograd bookkeeping.
_METHOD = "heaviside"
#: Spike functions a network can be built with (option ``surrogate``): the same forward
#: values; "super" (SuperSpike) and Norse's other surrogates carry gradients for training.
SURROGATES = ("heaviside", "super", "triangle", "tanh", "circ", "heavi_erfc")

_LEAKY = (nir.LI, nir.LIF, nir.CubaLI, nir.CubaLIF)
_SPIKING = (nir.IF, nir.LIF, nir.CubaLIF)
_CUBA = (nir.CubaLI, nir.CubaLIF)


# --------------------------------------------------------------------------------------------
# check: what Norse cannot express exactly
# --------------------------------------------------------------------------------------------

def violations(checked: Checked, semantics: Semantics) -> list[Violation]:
    """Everything of ``checked`` that Norse 1.1.0 cannot compute as the reference does."""
    out: list[Violation] = []

    def add(node: str, fld: str, message: str) -> None:
        out.append(Violation(NAME, node, fld, message))

    for name, node in checked.flat.nodes.items():
        p = checked.params[name]
        kind = type(node).__name__
        if isinstance(node, _LEAKY) and semantics.integration == "exponential":
            add(name, "integration",
                f"{kind}: Norse integrates with forward Euler only; the graph asks for "
                "'exponential' integration")
        if isinstance(node, _SPIKING) and semantics.threshold == "ge":
            add(name, "threshold",
                f"{kind}: Norse spikes on v > v_th (heaviside of v - v_th); the graph asks for "
                "'ge' (v >= v_th)")
        if semantics.reset == "subtract":
            if isinstance(node, nir.IF):
                add(name, "reset", "IF: Norse's IAFCell resets to v_reset only; the graph asks "
                    "for 'subtract'")
            elif isinstance(node, nir.CubaLIF):
                add(name, "reset", "CubaLIF: Norse's LIFCell resets to v_reset only; the graph "
                    "asks for 'subtract'")
            elif isinstance(node, nir.LIF) and np.any(p["v_reset"] != 0):
                add(name, "v_reset",
                    "LIF with 'subtract' reset: Norse's reset_subtract subtracts v_th, which "
                    "equals v_th - v_reset only where v_reset == 0 (here v_reset is nonzero)")
        if isinstance(node, _CUBA) and np.any(p["r"] != 1):
            add(name, "r",
                f"{kind}: Norse's {'LIFCell' if isinstance(node, nir.CubaLIF) else 'LICell'} "
                "has no input resistance (v += c*((v_leak - v) + i)); r must be exactly 1")
    return out


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------

class _NorseNeuron(StatefulLayer):
    """A Norse cell with the input scaling and explicit initial state of the contract."""

    def __init__(self, cell: nn.Module, *, shape: Shape, v0: Tensor, scale: Tensor | None,
                 synapse: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.cell, self.shape, self.v0, self.scale = cell, shape, v0, scale
        self.dtype = dtype
        self.synapse = synapse
        # The current jumps once per incoming edge, in edge order: ``(i + a) + b``. All but
        # the last jump are added to the state's ``i``; the cell adds the last one.
        self.separate = synapse
        self.state_names = ("v", "i") if synapse else ("v",)
        if isinstance(cell, LIFBoxCell):
            self.state_type: Any = LIFBoxFeedForwardState
        elif isinstance(cell, LIBoxCell):
            self.state_type = LIBoxState
        elif isinstance(cell, LIFCell):
            self.state_type = LIFFeedForwardState
        elif isinstance(cell, LICell):
            self.state_type = LIState
        else:
            self.state_type = IAFFeedForwardState

    def init_state(self, batch: int) -> Any:
        v = self.v0.expand(batch, *self.shape).clone()
        if self.synapse:
            i = torch.zeros(batch, *self.shape, dtype=self.dtype, device=v.device)
            return self.state_type(v=v, i=i)
        return self.state_type(v=v)

    def step(self, x: Any, state: Any) -> tuple[Tensor, Any]:
        if not self.synapse:
            return self.cell(x if self.scale is None else self.scale * x, state)
        jumps = [xi if self.scale is None else self.scale * xi for xi in x]
        i = state.i
        for jump in jumps[:-1]:
            i = i + jump
        return self.cell(jumps[-1], self.state_type(v=state.v, i=i))


class IState(NamedTuple):
    v: Tensor


class Integrator(StatefulLayer):
    """NIR ``I``: ``v = v + (dt*r) * x``; ``y = v`` (Norse has no pure integrator)."""

    state_names = ("v",)

    def __init__(self, dt_r: Tensor, shape: Shape, dtype: torch.dtype,
                 device: torch.device) -> None:
        super().__init__()
        self.dt_r, self.shape, self.dtype, self.device = dt_r, shape, dtype, device

    def init_state(self, batch: int) -> IState:
        return IState(torch.zeros(batch, *self.shape, dtype=self.dtype, device=self.device))

    def step(self, x: Tensor, state: IState) -> tuple[Tensor, IState]:
        v = state.v + self.dt_r * x
        return v, IState(v)


def make_layer(node: nir.NIRNode, p: dict[str, Any], in_shape: Shape, out_shape: Shape,
               sem: Semantics, dtype: torch.dtype, device: torch.device,
               method: str = _METHOD) -> nn.Module:
    """The module of one validated node (which ``violations`` found expressible)."""
    dt = sem.require_dt()

    def t(arr: np.ndarray) -> Tensor:
        return param(arr, dtype, device)

    layer = common_layer(node, p, in_shape, out_shape, sem, dtype, device)
    if layer is not None:
        return layer
    zero = torch.zeros((), dtype=dtype, device=device)
    if isinstance(node, (nir.I, nir.IF)):
        # dt*r in float64, rounded once; a factor of exactly 1 is skipped (exact)
        dt_r = dt * p["r"]
        if isinstance(node, nir.I):
            return Integrator(t(dt_r), in_shape, dtype, device)
        iaf = IAFCell(IAFParameters(v_th=t(p["v_threshold"]), v_reset=t(p["v_reset"]),
                                    method=method), dt=dt)
        # IAFCell would start at v_reset; the contract starts I/IF at 0
        return _NorseNeuron(iaf, shape=in_shape, v0=zero,
                            scale=param_unless(dt_r, 1.0, dtype, device), synapse=False,
                            dtype=dtype)
    if isinstance(node, _LEAKY):
        synapse = isinstance(node, _CUBA)
        v_leak = t(p["v_leak"])
        v0 = v_leak if sem.initial_state == "leak" else zero
        # tau_mem_inv = 1/tau in float64, rounded once: Norse computes dt * tau_mem_inv,
        # exactly the reference's coefficient
        tau_mem_inv = t(1.0 / (p["tau_mem"] if synapse else p["tau"]))
        if isinstance(node, nir.LIF):
            cell: nn.Module = LIFBoxCell(LIFBoxParameters(
                tau_mem_inv=tau_mem_inv, v_leak=v_leak, v_th=t(p["v_threshold"]),
                v_reset=t(p["v_reset"]), method=method,
                reset_method=reset_subtract if sem.reset == "subtract" else reset_value), dt=dt)
        elif isinstance(node, nir.LI):
            cell = LIBoxCell(LIBoxParameters(tau_mem_inv=tau_mem_inv, v_leak=v_leak), dt=dt)
        elif isinstance(node, nir.CubaLIF):
            cell = LIFCell(LIFParameters(
                tau_syn_inv=t(1.0 / p["tau_syn"]), tau_mem_inv=tau_mem_inv, v_leak=v_leak,
                v_th=t(p["v_threshold"]), v_reset=t(p["v_reset"]), method=method), dt=dt)
        else:
            cell = LICell(LIParameters(tau_syn_inv=t(1.0 / p["tau_syn"]),
                                       tau_mem_inv=tau_mem_inv, v_leak=v_leak), dt=dt)
        scale = param_unless(p["w_in"] if synapse else p["r"], 1.0, dtype, device)
        return _NorseNeuron(cell, shape=in_shape, v0=v0, scale=scale, synapse=synapse,
                            dtype=dtype)
    raise NIRError(f"the norse target has no mapping for {type(node).__name__}", field="type")


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------

class NorseNetwork(GraphRunner):
    """A validated NIR graph as Norse cells and torch layers (:class:`nrf_nir.runner.GraphRunner`).

    ``forward(inputs, state=None, record=())`` runs ``[T, B, *shape]`` inputs (one tensor, or a
    dict keyed by the graph's Input nodes) and returns ``(results, state)``: results maps each
    Output node (and each recorded name: a node's output, or ``"<neuron>.v"`` /
    ``"<neuron>.i"``) to ``[T, B, ...]``. Pass the returned state back to continue a run: a
    :class:`NetworkState` whose ``nodes`` hold the Norse states (``LIFBoxFeedForwardState``,
    ``LIFFeedForwardState`` ...) and delay lines.

    Training: ``surrogate`` (option of ``lower``; default ``"heaviside"``, no gradient through
    spikes) picks Norse's spike function; ``"super"`` (SuperSpike) and the others in
    ``SURROGATES`` give the same spikes and carry gradients. ``forward(..., grad=True)``
    records the autograd graph; :meth:`to_nir` exports the trained weights again.
    """

    def __init__(self, checked: Checked, semantics: Semantics, *, dtype: Any = None,
                 device: Any = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 stepwise: bool = False, surrogate: str = _METHOD,
                 progress: bool = False) -> None:
        if surrogate not in SURROGATES:
            raise NIRError(f"unknown surrogate {surrogate!r}; known: {', '.join(SURROGATES)}",
                           field="surrogate")
        dtype, device = resolve(dtype, device)
        layers = {name: make_layer(node, checked.params[name], checked.in_shapes[name],
                                   checked.out_shapes[name], semantics, dtype, device,
                                   surrogate)
                  for name, node in checked.flat.nodes.items()}
        super().__init__(checked, semantics, layers, dtype=dtype, device=device,
                         chunk_bytes=chunk_bytes, stepwise=stepwise, progress=progress)

    def to_nir(self) -> nir.NIRGraph:
        """The graph again, with the current weights and biases of its ``Linear``, ``Affine``
        and ``Conv`` layers (e.g. after training them with ``forward(..., grad=True)``); every
        other node, the nesting, the edges and the metadata as loaded. The weights are this
        network's ``dtype`` values, so the reference runs the result as this network does."""
        return self._rebuild(self.checked.graph, "")

    def _rebuild(self, graph: nir.NIRGraph, prefix: str) -> nir.NIRGraph:
        nodes: dict[str, nir.NIRNode] = {}
        for name, node in graph.nodes.items():
            path = prefix + name
            if isinstance(node, nir.NIRGraph):
                nodes[name] = self._rebuild(node, path + ".")
            elif isinstance(node, (nir.Linear, nir.Affine, nir.Conv1d, nir.Conv2d)):
                layer = self.layer(path)
                weight = cast(torch.Tensor, layer.weight)
                bias: torch.Tensor | None = getattr(layer, "bias", None)
                changes: dict[str, Any] = {"weight": weight.detach().cpu().numpy().copy()}
                if bias is not None and hasattr(node, "bias"):
                    changes["bias"] = bias.detach().cpu().numpy().copy()
                nodes[name] = dataclasses.replace(node, **changes)
            else:
                nodes[name] = node
        out = nir.NIRGraph(nodes=nodes, edges=list(graph.edges), type_check=False)
        out.metadata = dict(getattr(graph, "metadata", None) or {})
        return out


# --------------------------------------------------------------------------------------------
# the target
# --------------------------------------------------------------------------------------------

#: The options of ``lower`` (``NorseNetwork``'s), each with the check of its value.
_OPTIONS = {"chunk_bytes": option_int(low=1), "stepwise": option_bool,
            "surrogate": option_choice(*SURROGATES), "progress": option_bool}


class NorseTarget:
    name = NAME
    progress = True  # takes the option progress (a progress bar over time steps)
    description = (f"Norse {NORSE_VERSION} cells (LIFBoxCell, LIBoxCell, LIFCell, LICell, "
                   "IAFCell) and torch layers; bit-exact to the reference")

    def check(self, checked: Checked, semantics: Semantics,
              options: Options | None = None) -> list[Violation]:
        return violations(checked, semantics)

    def lower(self, checked: Checked, semantics: Semantics, options: Options) -> NorseNetwork:
        """strict=False: lower what the target can run; violations that make running impossible
        still raise: every one of this target's does (its check lists what it cannot compute)."""
        extra = parse_options(options, _OPTIONS, NAME)
        refuse(NAME, findings(self, checked, semantics, options))
        return NorseNetwork(checked, semantics, dtype=options.dtype, device=options.device,
                            **extra)

    def run(self, lowered: NorseNetwork, inputs: Mapping[str, Tensor],
            record: tuple[str, ...]) -> dict[str, Tensor]:
        return lowered.run(dict(inputs), tuple(record))


TARGET = NorseTarget()
