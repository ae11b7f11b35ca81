"""The ``sinabs`` target: a NIR graph as Sinabs 3.1.3 layers (``IAF``, ``LIF``, ``ExpLeak``,
``SumPool2d``) and torch layers, equal to the reference (docs/semantics.md) bit for bit
wherever ``check`` reports nothing and the integration is exponential (docs/targets/sinabs.md).

Sinabs steps ``v = alpha*v + x'`` (``norm_input=False``; ``IAF``: ``alpha = 1``), then spikes
(``MultiSpike``: ``trunc(v/v_th)`` for ``v > 0``; ``SingleSpike``: ``v - v_th >= 0``), resets
(``MembraneSubtract``: ``v - z*s``; ``MembraneReset``: ``v*(z == 0) + reset_value``) and clamps
at ``min_v_mem`` (``relu(v - m) + m``), the reference's order and arithmetic. Each neuron is
fed ``x'`` computed as the reference computes its input term:

======  ===============================  ==================================================
NIR     Sinabs layer                     ``x'`` (``alpha``)
======  ===============================  ==================================================
IF      ``IAF``                          ``(dt*r) * x`` (1)
I       ``IAF(spike_fn=None)``           ``(dt*r) * x`` (1)
LIF     ``LIF(train_alphas=True)``       exponential: ``b*(v_leak + r*x)`` (``a``), exact;
                                         Euler: ``c*(r*x + v_leak)`` (``1 - c``), within
                                         float rounding
LI      ``ExpLeak(train_alphas=True)``   as LIF, without firing
======  ===============================  ==================================================

with ``a = exp(-dt/tau)``, ``b = 1 - a``, ``c = dt/tau`` rounded as the reference rounds them
(``alpha_mem`` is set to them). The ``gt`` threshold is ``SingleSpike`` on the next float above
``v_th``; the subtracted amount is ``v_th - v_reset`` (``MembraneSubtract(subtract_value)``);
the membrane starts at the reference's initial value. ``SumPool2d`` without padding and with a
power-of-two window is Sinabs's ``SumPool2d`` (``LPPool2d(1)``: the window's mean times its size,
exact then); other pooling, convolutions and dense layers are the shared torch layers
(:mod:`nrf_nir.layers`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import nir
import numpy as np
import torch
from torch import Tensor, nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import sinabs
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, MembraneSubtract, MultiSpike, SingleSpike

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
    option_int,
    parse_options,
    refuse,
)
from nrf_nir.validate import Checked, Shape

NAME = "sinabs"
SINABS_VERSION = getattr(sinabs, "__version__", "unknown")

_SPIKING = (nir.IF, nir.LIF)
_LEAKY = (nir.LIF, nir.LI)
_CUBA = (nir.CubaLIF, nir.CubaLI)


# --------------------------------------------------------------------------------------------
# check: what Sinabs cannot express
# --------------------------------------------------------------------------------------------

def violations(checked: Checked, semantics: Semantics) -> list[Violation]:
    """Everything of ``checked`` that Sinabs 3.1.3 cannot compute as the reference does (one
    line each)."""
    out: list[Violation] = []

    def add(node: str, fld: str, message: str) -> None:
        out.append(Violation(NAME, node, fld, message))

    multi = semantics.spikes == "multi"
    for name, node in checked.flat.nodes.items():
        p = checked.params[name]
        kind = type(node).__name__
        if isinstance(node, _CUBA):
            add(name, "type", f"{kind}: Sinabs's synaptic current decays before the membrane "
                "takes it (i = alpha_syn*(i + x)); NIR's current jumps, feeds the membrane, then "
                "decays (sinabs.from_nir reads no Cuba node either)")
            continue
        if not isinstance(node, _SPIKING):
            continue
        resets_to_nonzero = bool(np.any(p["v_reset"] != 0))
        if semantics.reset == "value" and resets_to_nonzero:
            add(name, "v_reset", f"{kind} with a value reset to v_reset != 0: Sinabs's "
                "MembraneReset adds reset_value to every neuron, spiking or not")
        if multi and semantics.threshold == "gt":
            add(name, "threshold", f"{kind}: Sinabs's MultiSpike counts trunc(v/v_th), spiking "
                "on v >= v_th; the graph asks for 'gt' (v > v_th)")
        if multi and resets_to_nonzero:
            add(name, "v_reset", f"{kind}: Sinabs's MultiSpike counts multiples of v_th from "
                "0; with v_reset != 0 the graph counts multiples of v_th - v_reset above v_reset")
        if multi and np.any(p["v_threshold"] - p["v_reset"] <= 0):
            add(name, "v_threshold", f"{kind}: several spikes per step count multiples of "
                "v_threshold - v_reset, which must be > 0")
    return out


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------

class SinabsNeuron(StatefulLayer):
    """One NIR neuron run by a Sinabs layer fed ``x'`` (module docstring): ``r*x``, plus
    ``offset`` (before it when ``offset_first``: ``v_leak + r*x``, else ``r*x + v_leak``), times
    ``gain``; a None part is skipped (exact, as the reference skips it).

    The state is Sinabs's ``v_mem`` ``[B, *shape]``; ``run`` hands Sinabs a whole chunk
    ``[B, Tc, *shape]`` at once (Sinabs loops over its steps).
    """

    state_names = ("v",)

    def __init__(self, layer: sl.LIF, *, shape: Shape, v0: Tensor, r: Tensor | None = None,
                 offset: Tensor | None = None, offset_first: bool = True,
                 gain: Tensor | None = None) -> None:
        super().__init__()
        self.layer, self.shape, self.v0 = layer, shape, v0
        self.r, self.offset, self.offset_first, self.gain = r, offset, offset_first, gain

    def init_state(self, batch: int) -> Tensor:
        return self.v0.expand(batch, *self.shape).clone()

    def prescale(self, x: Tensor) -> Tensor:
        """Sinabs's input ``x'`` of the node's input ``x`` (any leading axes)."""
        if self.r is not None:
            x = self.r * x
        if self.offset is not None:
            x = self.offset + x if self.offset_first else x + self.offset
        return x if self.gain is None else self.gain * x

    def run(self, x: Tensor, state: Tensor, out: Tensor,
            record: dict[str, Tensor] | None) -> Tensor:
        layer = self.layer
        layer.v_mem = state
        layer.record_states = bool(record)
        spikes = layer(self.prescale(x).transpose(0, 1))
        out.copy_(spikes.transpose(0, 1))
        if record:
            record["v"].copy_(layer.recordings["v_mem"].transpose(0, 1))
        v: Tensor = layer.v_mem
        return v

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        out = torch.empty(1, *x.shape, dtype=x.dtype, device=x.device)
        v = self.run(x.unsqueeze(0), state, out, None)
        return out[0], v


def _set(parameter: nn.Parameter | None, value: Tensor) -> None:
    assert parameter is not None
    parameter.data = value
    parameter.requires_grad_(False)


def make_layer(node: nir.NIRNode, p: dict[str, Any], in_shape: Shape, out_shape: Shape,
               sem: Semantics, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """The module of one validated node (which ``violations`` found expressible)."""
    dt = sem.require_dt()

    def t(arr: Any) -> Tensor:
        return param(arr, dtype, device)

    if isinstance(node, nir.SumPool2d) and not np.any(p["padding"]) and \
            math.log2(int(np.prod(p["kernel_size"]))).is_integer():
        return sl.SumPool2d(tuple(int(k) for k in p["kernel_size"]),
                            stride=tuple(int(s) for s in p["stride"]))
    layer = common_layer(node, p, in_shape, out_shape, sem, dtype, device)
    if layer is not None:
        return layer
    zero = torch.zeros((), dtype=dtype, device=device)
    spike_fn: Any = None
    reset_fn: Any = None
    threshold = floor = None
    if isinstance(node, _SPIKING):
        v_th, v_reset = t(p["v_threshold"]), t(p["v_reset"])
        multi = sem.spikes == "multi"
        spike_fn = MultiSpike if multi else SingleSpike
        # SingleSpike fires on v - th >= 0: the next float above v_th makes that v > v_th
        threshold = v_th if multi or sem.threshold == "ge" else \
            torch.nextafter(v_th, torch.full_like(v_th, math.inf))
        reset_fn = MembraneSubtract(subtract_value=v_th - v_reset) \
            if sem.reset == "subtract" else MembraneReset(reset_value=0.0)
        floor = -v_th if sem.membrane_floor == "minus_threshold" else None
    if isinstance(node, (nir.IF, nir.I)):
        module: sl.LIF = sl.IAF(spike_fn=spike_fn, reset_fn=reset_fn,
                                min_v_mem=None if floor is None else 0.0)
        # dt*r in float64, rounded once (the reference's factor); exactly 1 is skipped
        neuron = SinabsNeuron(module, shape=in_shape, v0=zero,
                              gain=param_unless(dt * p["r"], 1.0, dtype, device))
    elif isinstance(node, _LEAKY):
        tau = p["tau"]
        exponential = sem.integration == "exponential"
        if exponential:
            a = np.exp(-dt / tau)
            alpha, gain = t(a), t(1.0 - a)
        else:
            c = dt * t(1.0 / tau)  # the reference's coefficient, rounded as it rounds it
            alpha, gain = 1 - c, c
        if isinstance(node, nir.LIF):
            module = sl.LIF(tau_mem=1.0, spike_fn=spike_fn, reset_fn=reset_fn,
                            min_v_mem=None if floor is None else 0.0, train_alphas=True,
                            norm_input=False)
        else:
            module = sl.ExpLeak(tau_mem=1.0, train_alphas=True, norm_input=False)
        _set(module.alpha_mem, alpha)
        v0 = t(p["v_leak"]) if sem.initial_state == "leak" else zero
        neuron = SinabsNeuron(module, shape=in_shape, v0=v0,
                              r=param_unless(p["r"], 1.0, dtype, device),
                              offset=param_unless(p["v_leak"], 0.0, dtype, device),
                              offset_first=exponential, gain=gain)
    else:
        raise NIRError(f"the sinabs target has no mapping for {type(node).__name__}",
                       field="type")
    if threshold is not None:
        _set(module.spike_threshold, threshold)
    if floor is not None:
        _set(module.min_v_mem, floor)
    return neuron


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------

class SinabsNetwork(GraphRunner):
    """A validated NIR graph as Sinabs and torch layers (:class:`nrf_nir.runner.GraphRunner`).

    ``forward(inputs, state=None, record=())`` runs ``[T, B, *shape]`` inputs (a tensor, or a
    dict keyed by the graph's Input nodes) and returns ``(results, state)``: each Output node
    and each recorded name (a node's output, or ``"<neuron>.v"``: Sinabs's ``v_mem`` after the
    step's reset and floor) maps to ``[T, B, ...]``. The state of a neuron is its ``v_mem``.
    """

    def __init__(self, checked: Checked, semantics: Semantics, *, dtype: Any = None,
                 device: Any = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 stepwise: bool = False, progress: bool = False) -> None:
        dtype, device = resolve(dtype, device)
        layers = {name: make_layer(node, checked.params[name], checked.in_shapes[name],
                                   checked.out_shapes[name], semantics, dtype, device)
                  for name, node in checked.flat.nodes.items()}
        super().__init__(checked, semantics, layers, dtype=dtype, device=device,
                         chunk_bytes=chunk_bytes, stepwise=stepwise, progress=progress)
        self.requires_grad_(False)  # a simulator: no autograd bookkeeping on its parameters


# --------------------------------------------------------------------------------------------
# the target
# --------------------------------------------------------------------------------------------

_OPTIONS = {"chunk_bytes": option_int(low=1), "stepwise": option_bool, "progress": option_bool}


class SinabsTarget:
    name = NAME
    progress = True  # takes the option progress (a progress bar over time steps)
    #: Firing semantics computed besides the defaults (``nrf_nir.targets.check_target``):
    #: MultiSpike / SingleSpike, and ``min_v_mem = -v_th``. No reset delay.
    SEMANTICS: dict[str, tuple[str, ...]] = {"spikes": ("single", "multi"),
                                             "membrane_floor": ("none", "minus_threshold")}
    description = (f"Sinabs {SINABS_VERSION} layers (IAF, LIF, ExpLeak, SumPool2d; MultiSpike, "
                   "min_v_mem) and torch layers; bit-exact to the reference with exponential "
                   "integration")

    def check(self, checked: Checked, semantics: Semantics,
              options: Options | None = None) -> list[Violation]:
        return violations(checked, semantics)

    def lower(self, checked: Checked, semantics: Semantics, options: Options) -> SinabsNetwork:
        """Every violation ``check`` lists makes running impossible: it raises (strict or
        not)."""
        extra = parse_options(options, _OPTIONS, NAME)
        refuse(NAME, findings(self, checked, semantics, options))
        return SinabsNetwork(checked, semantics, dtype=options.dtype, device=options.device,
                             **extra)

    def run(self, lowered: SinabsNetwork, inputs: Mapping[str, Tensor],
            record: tuple[str, ...]) -> dict[str, Tensor]:
        return lowered.run(dict(inputs), tuple(record))


TARGET = SinabsTarget()
