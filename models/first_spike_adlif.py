"""First-spike coding: an adaptive LIF (AdLIF) classifier of SHD-like spike patterns.

Architecture (the ``first-spike`` model with its hidden CuLIF layer replaced by AdLIF, as in the
first-spike-coding paper's best SHD networks): ``Linear(70 -> 128)`` -> :class:`AdLIFCell`
(128 neurons, ``tau_mem = 50 ms``, adaptation ``tau_w = 100 ms``, learnable spike-triggered
adaptation ``b`` per neuron used clamped to ``[0, 2]``, ``a = 0``) -> ``Linear(128 -> 10)``
-> Norse ``LIFCell`` (CuLIF, ``tau_syn = tau_mem = 100 ms``). ``dt = 10 ms``, ``T = 100``
steps. The class is the output neuron that spikes first (``decode="first"``). Data, loss,
decoding and the SHD loader are ``first_spike``'s.

**AdLIF** (``v = d_m v + (1 - d_m)(x - w); w = d_w w + a v + b s``, ``d = 1 - dt/tau``) in the
Euler form of nrf-nir's semantics, one step ``t``::

    v = v + c_m * ((x + (-w)) - v)          # c = dt * (1/tau); w of the previous step
    z = H(v - v_th); v = v * (1 - z)        # spike on v > v_th, reset to 0
    w = w + c_w * ((-w) + z * (b / c_w))    # = (1 - c_w) w + b z   (a = 0)

**In NIR** the adaptation current is a leaky integrator of the neuron's own spikes, so the cell
exports (``to_nir_graph``) as a nested graph with a recurrent LI path::

    input -> lif (LIF tau_mem, v_th)           x + (-w), in edge order
             lif -> b (Scale b / c_w) -> adapt (LI tau_w) -> negate (Scale -1) -> lif
             lif -> output

``negate -> lif`` closes the cycle, so it is a back edge: the LIF sees ``-w`` of the previous
step, as AdLIF does. The cell computes exactly the operations the reference runs for this
graph, in the same order and in float32, so the export is **bit-exact** (tests/test_zoo.py).

**Not expressible**: the sub-threshold coupling ``a v`` (``a != 0``; the cell then adds
``(a / c_w) * v`` to the adaptation drive, with ``v`` the membrane before the reset). No NIR node
outputs a spiking neuron's membrane voltage, and a parallel ``LI`` copy of the membrane would
miss the resets, so exporting a cell with ``a != 0`` fails with an ``UnsupportedError`` naming
the module and the field ``a``. Also as in ``first_spike``: the paper's neurons spike on
``v >= theta`` (here ``v > v_th``), and there is no BatchNorm (in eval mode it folds into the
Linear layer).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn

from nrf_nir.errors import UnsupportedError

from . import first_spike
from ._common import Stepper
from .first_spike import (  # noqa: F401 - the shared data, loss and loaders
    CHANNELS,
    CLASSES,
    first_spike_times,
    generate,
    load_shd,
    predict,
    to_frames,
)

NAME = "first-spike-adlif"
HIDDEN = 128
INPUT_SHAPE = (CHANNELS,)
# the task, its decoding, metric, target and run lengths: first_spike's
DT, DECODE, METRIC, TARGET, SPIKING = (first_spike.DT, first_spike.DECODE, first_spike.METRIC,
                                       first_spike.TARGET, first_spike.SPIKING)
T_TRAIN, T_EVAL, QUICK_EVAL = first_spike.T_TRAIN, first_spike.T_EVAL, first_spike.QUICK_EVAL
TAU_MEM = 50e-3
TAU_W = 100e-3


def _euler_c(tau: float, dt: float) -> torch.Tensor:
    """``dt * (1/tau)`` exactly as the reference computes it (``1/tau`` in float64, rounded to
    float32, then multiplied by ``dt``)."""
    return dt * torch.tensor(1.0 / tau, dtype=torch.float32)


class AdLIFCell(nn.Module):
    """Adaptive LIF neurons (one step): ``forward(x[B, n], state) -> (z, (v, w))``.

    tau_mem, tau_w: time constants in seconds (fixed); v_th: threshold; b: initial
    spike-triggered adaptation (per neuron, learnable, in units of ``v``: ``w`` jumps by ``b``
    per spike; used clamped to ``[0, 2]`` as in the AdLIF paper); a: sub-threshold coupling
    (fixed; only ``a = 0`` exports to NIR); alpha: the SuperSpike surrogate's sharpness.
    """

    def __init__(self, n: int, *, tau_mem: float = TAU_MEM, tau_w: float = TAU_W,
                 v_th: float = 1.0, b: float | torch.Tensor = 0.5, a: float = 0.0,
                 dt: float = DT, alpha: float = 100.0) -> None:
        super().__init__()
        self.n = int(n)
        self.tau_mem, self.tau_w, self.v_th = float(tau_mem), float(tau_w), float(v_th)
        self.a, self.dt, self.alpha = float(a), float(dt), float(alpha)
        self.b = nn.Parameter(torch.broadcast_to(torch.as_tensor(b, dtype=torch.float32),
                                                 (self.n,)).clone())

    def extra_repr(self) -> str:
        return (f"{self.n}, tau_mem={self.tau_mem:g}, tau_w={self.tau_w:g}, v_th={self.v_th:g}, "
                f"a={self.a:g}, dt={self.dt:g}")

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(c_m, c_w)``, float32 scalars."""
        return _euler_c(self.tau_mem, self.dt), _euler_c(self.tau_w, self.dt)

    def gain(self) -> torch.Tensor:
        """The adaptation's input scale ``clamp(b, 0, 2) / c_w`` (float32, per neuron): the NIR
        ``Scale`` node ``b``."""
        return self.b.clamp(0.0, 2.0) / self.coefficients()[1]

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        from norse.torch.functional.superspike import super_fn

        if state is None:
            v = torch.zeros_like(x)
            w = torch.zeros_like(x)
        else:
            v, w = state
        c_m, c_w = self.coefficients()
        # The reference: the LIF's input is the sum of its edges in order, x + negate(w_prev);
        # LIF (r = 1, v_leak = 0): v + c*(x - v); spike v > v_th; reset v * (1 - z).
        v = v + c_m * ((x + (-w)) - v)
        z = super_fn(v - self.v_th, self.alpha)
        drive = z * self.gain()  # Scale(b / c_w)
        if self.a != 0.0:  # not expressible in NIR (see the module docstring)
            drive = drive + (self.a / c_w) * v
        v = v * (1 - z)
        # LI (r = 1, v_leak = 0): w + c*((-w) + x)
        w = w + c_w * ((-w) + drive)
        return z, (v, w)

    def to_nir_graph(self, sample: torch.Tensor, path: str) -> Any:
        """The cell as a nested NIR graph with the recurrent LI adaptation path (exact for
        ``a = 0``; ``a != 0`` raises)."""
        import nir

        from nrf_nir.exporters.modules import NIRFragment

        if self.a != 0.0:
            raise UnsupportedError(
                f"AdLIF's sub-threshold adaptation a*v (a = {self.a:g}) has no NIR equivalent: "
                "no NIR node outputs a spiking neuron's membrane voltage (an LI copy would miss "
                "the resets); only spike-triggered adaptation (a = 0) exports",
                node=path or None, field="a")
        shape = (self.n,)
        z, _ = self(sample)
        nodes: dict[str, nir.NIRNode] = OrderedDict([
            ("input", nir.Input(input_type=np.array(shape))),
            ("lif", nir.LIF(tau=np.full(shape, self.tau_mem), r=np.ones(shape),
                            v_leak=np.zeros(shape), v_threshold=np.full(shape, self.v_th),
                            v_reset=np.zeros(shape))),
            ("b", nir.Scale(scale=self.gain().detach().cpu().numpy().copy())),
            ("adapt", nir.LI(tau=np.full(shape, self.tau_w), r=np.ones(shape),
                             v_leak=np.zeros(shape))),
            ("negate", nir.Scale(scale=np.full(shape, -1.0))),
            ("output", nir.Output(output_type=np.array(shape))),
        ])
        # Edge order matters: the LIF's input is x + (-w), and negate -> lif is the back edge.
        edges = [("input", "lif"), ("negate", "lif"), ("lif", "b"), ("b", "adapt"),
                 ("adapt", "negate"), ("lif", "output")]
        graph = nir.NIRGraph(nodes=dict(nodes), edges=edges, type_check=False)
        return NIRFragment(node=graph, output=z, dt=self.dt, reset="value")


def build(*, a: float = 0.0) -> Stepper:
    """The classifier (``a != 0`` gives an AdLIF that does not export to NIR)."""
    base = first_spike.build()
    layers = OrderedDict(base.layers.named_children())
    layers["lif1"] = AdLIFCell(HIDDEN, a=a)
    return Stepper(list(layers.items()), INPUT_SHAPE, DT)


def train(module: Stepper, *, steps: int = 800, batch: int = 64, lr: float = 5e-3,
          seed: int = 0, T: int = T_TRAIN, temperature: float = 10.0, init_gain: float = 2.0,
          show_progress: bool = True) -> dict[str, Any]:
    """``first_spike.train``: first-spike loss (cross-entropy of ``-t_first / temperature``),
    Adam with a cosine schedule, Linear weights times ``init_gain`` at the start."""
    record = first_spike.train(module, steps=steps, batch=batch, lr=lr, seed=seed, T=T,
                               temperature=temperature, init_gain=init_gain,
                               show_progress=show_progress)
    cell = module.layers.lif1
    assert isinstance(cell, AdLIFCell)
    b = cell.b.detach().clamp(0.0, 2.0)  # the b the neurons use
    record.update(tau_mem=cell.tau_mem, tau_w=cell.tau_w, b_mean=float(b.mean()),
                  b_max=float(b.max()), adapting_neurons=int((b > 0).sum()))
    return record


def evaluate(module: nn.Module, *, n: int = 512, T: int = T_EVAL,
             seed: int = first_spike.EVAL_SEED) -> dict[str, Any]:
    return first_spike.evaluate(module, n=n, T=T, seed=seed)
