"""What the Lava targets can run, and the translation of a NIR graph to Lava's CUBA LIF.

Pure numpy, no Lava import: ``lava-float``, ``lava-fixed`` and ``loihi`` share it
(docs/targets/lava.md).

Lava's LIF (lava-nc 0.10.0, ``lava/proc/lif/models.py``), one step::

    u = u * (1 - du) + a_in           # a_in: the sum of the Dense outputs into the neuron
    v = v * (1 - dv) + u + bias
    s = v > vth;  v = 0 where s       # u is never reset

The reference (docs/semantics.md), with ``v' = v - v_reset`` (so that Lava's reset to 0 is the
reference's reset to ``v_reset``) and ``c = dt/tau`` (Euler) or ``1 - exp(-dt/tau)``
(exponential integration)::

    LIF      v' = (1 - c) v' + c*r*x + c*(v_leak - v_reset)
    IF       v' = v' + dt*r*x
    CubaLIF  i  = i + w_in*x;  v' = (1 - c_mem) v' + c_mem*r*i + c_mem*(v_leak - v_reset);
             i = (1 - c_syn) i

so ``u = gain * i`` (CubaLIF, ``du = c_syn``) or ``u = gain * x`` (LIF/IF, ``du = 1``: u holds
this step's input only), ``dv = c`` (0 for IF), ``gain = c*r*w_in*sigma`` and the Dense weights
are ``gain * W``. An ``Affine`` bias and the LIF's ``c*(v_leak - v_reset)`` are a constant input
``beta`` per step; a CubaLIF's leak (and a LIF's behind an LI synapse), a constant on ``v``
behind a filtering ``u``, is Lava's neuron bias (``Layer.v_bias``). ``sigma`` is 1 when
``v_threshold - v_reset`` is the same for every neuron of a node, else ``1/(v_threshold -
v_reset)`` per neuron (threshold 1).

Subtract reset (``v' -= theta`` where it fired): Lava's ATRLIF (``lava/proc/atrlif``) with
``delta_r = delta_v`` and a constant threshold ``theta_0`` holds ``w = v - r``, one leaky
membrane that fires at ``w >= theta_0`` and drops by ``2 * theta_0``; with ``theta_0 =
theta/2`` and ``w = v' - theta/2`` (start and neuron bias ``-dv * theta/2``) it is the
reference's (``Layer.subtract``; fixed point: :func:`_subtract_vth`).

Latency: every Dense hop delays by one step, so a neuron at depth ``k`` (k Dense hops from the
input) does its step ``t`` at Lava step ``t + k``. The Lava targets run ``T + depth`` steps and
read outputs from step ``depth + 1`` on. Nothing may happen before a neuron's first real step:
states start at 0 (``v`` at ``Layer.v_init``, which the idle steps, decay and neuron bias, bring
to the start) and the constant input ``beta`` comes through a Dense from a source whose
channel for depth ``k`` is zero before Lava step ``k`` (so it arrives exactly at step ``k + 1``).
A neuron's own recurrent ``Linear``/``Affine`` loop is one Dense hop: it delivers ``z[t-1]``,
the reference's back-edge value (through a ``Delay``: a ``DelayDense`` from the population to
itself; in a node split by time constant its blocks between populations are connections back
of delay 0). Depths are taken over the feed-forward paths; a connection
that crosses a back edge of a loop through several neurons, from ``S`` into ``P``, gets the
delay ``depth(P) - depth(S) - 1 + backs + Delay steps`` (``Synapse.back``), refused where
negative (the reference closes that loop in fewer steps than Lava's one per Dense hop).

Graph passes (listed in ``Plan.passes``): chains of Linear/Affine/Scale fold into one matrix and
bias (float64 products); biases become the population's constant input; a neuron with several
feed-forward sources gets one synapse (Dense) per source, a less deep source delayed
(``DelayDense``) to arrive with the deepest. LI, CubaLI and I read-outs are populations that
never fire; their voltage is the output. A ``Threshold`` (no state) is a population with
``du = dv = 1`` (fixed point: 4095, exact by :func:`quantize`'s odd threshold and even inputs).
Conv1d/Conv2d become ``conv`` synapses (Lava's
``Conv``; a Conv1d is a 2-D convolution of height 1), a pool before a convolution folds into it
where the composition is exact, a pool alone is a depthwise convolution, and any other path
through convolutions or pools is one dense matrix within :data:`~.conv.DENSE_CAP` weights
(``conv.py``). A node whose neurons have different time constants is split into one population
(layer) per distinct decay, ``node/0``, ``node/1``... (``Layer.node``, ``Layer.part``); its
synapses are split with it (Dense blocks, convolutions by channel blocks) and its outputs put
back together (``Plan.read``). A ``Delay`` on the path into a neuron is the synaptic delay of
that connection (``Synapse.node_delay``, added to the alignment in ``Synapse.delay``): uniform,
per source element (before the weight map), per target element (after it), or per synapse
where the maps it sits between give each synapse one delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import nir
import numpy as np

from nrf_nir.errors import NIRError
from nrf_nir.graph import strongly_connected, topological_order
from nrf_nir.semantics import Semantics
from nrf_nir.targets import Violation, refuse
from nrf_nir.validate import Checked, Identity, Shape

from .conv import (
    DENSE_CAP,
    ConvGeometry,
    compose_pool_conv,
    conv_adjoint,
    conv_apply,
    conv_block,
    geometry,
    pool_as_conv,
)

FLOAT_NAME = "lava-float"
FIXED_NAME = "lava-fixed"
LOIHI_NAME = "loihi"

SPIKING = (nir.LIF, nir.CubaLIF, nir.IF, nir.Threshold)   # Threshold: lava-float only
READOUTS = (nir.LI, nir.CubaLI, nir.I)    # non-spiking: their voltage is read
NEURONS = SPIKING + READOUTS
WEIGHTS = (nir.Affine, nir.Linear, nir.Scale)
CONVS = (nir.Conv1d, nir.Conv2d)
POOLS = (nir.SumPool2d, nir.AvgPool2d)
LINEAR = WEIGHTS + CONVS + POOLS   # linear maps folded into the synapse into a neuron
PASS = (nir.Input, nir.Output, Identity, nir.Flatten)

# Loihi-2 fixed-point limits (lava/proc/lif/models.py, lava/proc/dense/models.py)
VTH_MAX = 2**17 - 1          # vth: 17-bit unsigned mantissa, compared as vth << 6
DECAY_MAX = 4095             # du, dv: 12-bit unsigned
BIAS_MAX = 4095              # bias_mant: 13-bit signed (netx uses bias_exp = 6)
UV_MAX = 2**23               # u, v: 24-bit signed
MAX_DELAY = 63               # DelayDense: 6-bit synaptic delays on Loihi 2
W_MIXED = (-256, 254)        # mixed-sign 8-bit weights: the lowest bit is dropped (even values)
W_EXC = (0, 255)
W_INH = (-255, 0)


# --------------------------------------------------------------------------------------------
# the plan: populations (neuron nodes) rooted at the graph's Input
# --------------------------------------------------------------------------------------------

@dataclass
class Synapse:
    """One connection into a population. ``kind = "dense"``: ``weight`` ``[n, n_src]`` (float
    units with the gain folded in; Lava's integers in a :class:`FixedLayer`); ``kind = "conv"``:
    ``weight`` is the kernel ``[C_out, C_in/groups, kh, kw]`` (PyTorch's cross-correlation,
    gain folded in per output channel) and ``geometry`` its convolution (source values
    ``geometry.in_shape``, the population ``geometry.out_shape``, C order). source: layer
    index (-1: the graph input, all Input nodes as one flat vector: :attr:`Plan.input_slices`);
    delay: Lava steps added to the one-step Dense hop (a ``DelayDense``): the latency
    alignment (a source less deep than the population's deepest arrives in the same step)
    plus ``node_delay``; an int, or per synapse an int64 array of the weight's shape
    ``[n, n_src]`` (dense only); node_delay: the part of ``delay`` that the graph's ``Delay``
    nodes on the path ask for (steps; int or ``[n, n_src]``); back: the reference's back edges
    on the path (each carries the previous step's value: one step each; nonzero on the
    connection that closes a loop through several populations, whose source may be a later
    layer). ``node_delay + back`` is what the latency-free ``loihi`` emulator applies
    (:func:`node_delays`); nodes: the graph nodes folded into it."""

    source: int
    weight: np.ndarray
    kind: str = "dense"
    delay: int | np.ndarray = 0
    nodes: tuple[str, ...] = ()
    geometry: ConvGeometry | None = None
    node_delay: int | np.ndarray = 0
    back: int = 0


class _Chain:
    """``source`` and ``w_ff`` of a population's first synapse (the only one in a chain)."""

    inputs: list[Synapse]

    @property
    def source(self) -> int:
        """The first synapse's source layer (-1: the graph input)."""
        return self.inputs[0].source

    @property
    def w_ff(self) -> np.ndarray:
        """The first synapse's weights."""
        return self.inputs[0].weight


@dataclass
class Layer(_Chain):
    """One neuron node as a Lava LIF population, in float (Lava ``floating_pt``) units.

    inputs: the feed-forward synapses (one per source); depth: Dense hops from the input.
    w_rec ``[n, n]`` (None: no recurrent loop) and beta ``[n]`` are the inputs to ``u`` per
    spike / per step (gain folded in). readout: a non-spiking node (LI, CubaLI, I): it never
    fires and its voltage ``v + v_offset`` (reference units) is its output.
    """

    name: str
    kind: str
    n: int
    shape: Shape
    inputs: list[Synapse]
    depth: int
    w_rec: np.ndarray | None
    beta: np.ndarray
    du: float
    dv: float
    theta: float
    ge: bool
    sigma: np.ndarray
    rec_nodes: tuple[str, ...] = ()
    readout: bool = False
    v_offset: np.ndarray | None = None
    node: str = ""                    # the graph node (several layers: its split populations)
    part: np.ndarray | None = None    # this population's flat indices in the node (None: all)
    #: the membrane at the first real step, ``(v0 - v_reset) * sigma`` per neuron (float-Lava
    #: units; None: 0, Lava's own start)
    v_start: np.ndarray | None = None
    #: a constant on ``v`` per step, Lava's neuron bias (float-Lava units per neuron; None: 0):
    #: the leak ``c_mem * (v_leak - v_reset) * sigma`` of a population whose ``u`` filters
    #: (CubaLIF; a LIF behind an LI synapse). It acts in the idle steps too (:attr:`v_init`)
    v_bias: np.ndarray | None = None
    #: subtract reset: an ATRLIF population holding ``w = v - theta/2``
    #: (``theta/2`` folded into ``v_start`` and ``v_bias``), firing at ``w >= vth`` and
    #: subtracting ``2 * vth`` (:attr:`vth`)
    subtract: bool = False

    @property
    def v_init(self) -> np.ndarray | None:
        """Lava's initial ``v`` (float units, per neuron; None: 0): the ``depth`` idle steps
        before the first real step (decay and ``v_bias``) bring it to ``v_start`` (None: 0)
        (:func:`float_v_init`)."""
        if self.v_start is None and self.v_bias is None:
            return None
        start = np.zeros(self.n) if self.v_start is None else self.v_start
        return float_v_init(start, self.dv, self.depth, self.v_bias)

    @property
    def vth(self) -> float:
        """Lava's strict ``v > vth``; ``ge`` is ``v > predecessor(theta)`` (exact in float64);
        a read-out never fires (``inf``). Subtract reset: ATRLIF's ``theta_0``, compared as
        ``w >= theta_0``: ``theta/2`` (``ge``), else its successor (``w > theta/2``)."""
        if self.readout:
            return float(np.inf)
        if self.subtract:
            half = self.theta / 2
            return float(half) if self.ge else float(np.nextafter(half, np.inf))
        return float(np.nextafter(self.theta, -np.inf)) if self.ge else float(self.theta)


@dataclass
class Plan:
    """A graph the Lava targets can run: input, layers (parents before children), outputs, and
    the graph passes applied (``passes``: one sentence each, for the reports).

    The input is one flat vector of ``n_in`` values per sample and step: the Input nodes
    (``inputs``: name -> per-sample shape, in the graph's order), each flattened (C order),
    concatenated (:attr:`input_slices`); every synapse from an Input (``source`` -1) reads the
    whole vector, its weights zero outside its Input's slice. ``input_name`` and
    ``input_shape``: the first Input (the only one of a graph with one)."""

    input_name: str
    input_shape: Shape
    n_in: int
    layers: list[Layer]
    outputs: dict[str, list[int]]    # Output node -> the layers (populations) of its neuron
    out_shapes: dict[str, Shape]
    dt: float
    passes: list[str] = field(default_factory=list)
    node_shapes: dict[str, Shape] = field(default_factory=dict)   # neuron node -> its shape
    inputs: dict[str, Shape] = field(default_factory=dict)        # Input node -> its shape

    @property
    def input_slices(self) -> dict[str, slice]:
        """Input node -> its values in the flat input vector (``[n_in]``)."""
        return input_slices(self.inputs or {self.input_name: self.input_shape})

    @property
    def index(self) -> dict[str, int]:
        """Layer name -> index (a node split into populations: ``node/0``, ``node/1``...)."""
        return {layer.name: k for k, layer in enumerate(self.layers)}

    @property
    def nodes(self) -> dict[str, list[int]]:
        """Neuron node -> its layers (one, or its populations of one decay each)."""
        got: dict[str, list[int]] = {}
        for k, layer in enumerate(self.layers):
            got.setdefault(layer.node or layer.name, []).append(k)
        return got

    @property
    def max_depth(self) -> int:
        return max((layer.depth for layer in self.layers), default=0)

    def read(self, record: tuple[str, ...]) -> dict[str, list[int]]:
        """Output node and recorded neuron names -> the layers whose values make it up."""
        wanted = dict(self.outputs)
        nodes = self.nodes
        for key in record:
            if key in wanted:
                continue
            if key not in nodes:
                raise NIRError(
                    f"cannot record {key!r}: the Lava targets record the outputs of neuron "
                    f"nodes only ({', '.join(nodes)})", node=key, field="record")
            wanted[key] = nodes[key]
        return wanted

    def record_layers(self, record: tuple[str, ...]) -> dict[str, int]:
        """Layer name -> index of every layer read for the outputs and ``record``."""
        return {self.layers[k].name: k for ks in self.read(record).values() for k in ks}


def input_slices(shapes: dict[str, Shape]) -> dict[str, slice]:
    """Input node -> its values in the flat input vector: the Inputs' per-sample ``shapes``
    flattened (C order) and concatenated in the given order."""
    got: dict[str, slice] = {}
    start = 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        got[name] = slice(start, start + size)
        start += size
    return got


def needed_layers(layers: list[Any], wanted: set[int]) -> set[int]:
    """``wanted`` and every layer they get input from (``layers``: anything with ``inputs``)."""
    need = set(wanted)
    todo = list(wanted)
    while todo:
        for syn in layers[todo.pop()].inputs:
            if syn.source >= 0 and syn.source not in need:
                need.add(syn.source)
                todo.append(syn.source)
    return need


def node_delays(fixed: FixedPlan, k: int) -> list[int | np.ndarray]:
    """The reference's delay (steps) of each synapse of layer ``k`` of ``fixed``, in their
    order: its graph ``Delay`` steps (:attr:`Synapse.node_delay`) plus its back edges
    (:attr:`Synapse.back`, one step each)."""
    return [s.node_delay + s.back for s in fixed.layers[k].inputs]


def layer_groups(layers: list[Any], wanted: set[int]) -> list[list[int]]:
    """The layers ``wanted`` (indices into ``layers``: anything with ``inputs``) as strongly
    connected groups (a loop through several populations is one group, in layer order; any
    other layer a group of its own), ordered so that every group comes after the groups it
    gets input from."""
    names = [str(k) for k in sorted(wanted)]
    edges = sorted({(str(syn.source), str(k)) for k in wanted for syn in layers[k].inputs
                    if syn.source >= 0 and syn.source in wanted and syn.source != k})
    comps = [sorted(int(m) for m in comp) for comp in strongly_connected(names, edges)]
    comp_of = {m: ci for ci, comp in enumerate(comps) for m in comp}
    order = sorted(range(len(comps)), key=lambda ci: comps[ci][0])
    comp_edges = sorted({(str(comp_of[int(a)]), str(comp_of[int(b)])) for a, b in edges
                         if comp_of[int(a)] != comp_of[int(b)]})
    return [comps[int(ci)] for ci in topological_order([str(c) for c in order], comp_edges)]


def _block_delay(steps: int | np.ndarray, block: np.ndarray, part: np.ndarray | None,
                 src_part: np.ndarray | None) -> int | np.ndarray:
    """The delay (steps) of the weight ``block`` ``[n, n_src]`` cut from a path's rows
    ``part`` and columns ``src_part`` (flat indices, None: all) of ``steps`` (int, or per
    synapse of the path): an int when every nonzero weight has the same delay, else an int64
    array of the block's shape. A zero weight's delay is irrelevant: it gets the smallest
    delay of the others (raising neither the largest delay nor the number of delays)."""
    if isinstance(steps, int):
        return steps
    d = steps if part is None and src_part is None else steps[np.ix_(
        np.arange(steps.shape[0]) if part is None else part,
        np.arange(steps.shape[1]) if src_part is None else src_part)]
    live = block != 0
    if not np.any(live):
        return 0
    low = int(d[live].min())
    if bool(np.all(d[live] == low)):
        return low
    return np.where(live, d, low).astype(np.int64)


def float_v_init(start: np.ndarray, dv: float, k: int,
                 bias: np.ndarray | None = None) -> np.ndarray:
    """The initial ``v`` (float64, per neuron) that Lava's float LIF, idle for ``k`` steps
    (``v = v * (1 - dv) + 0 + bias``: no input; ``bias`` per neuron, None: 0), brings to
    ``start``: the idle map inverted ``k`` times, ``(x - bias) / (1 - dv)``, then moved by a few
    ulps to the value whose k rounded steps land closest (exactly on ``start`` where one does;
    a step into a smaller binade can skip it: then within an ulp). ``dv = 1`` forgets the
    start in one step: ``start``."""
    start = np.asarray(start, dtype=np.float64)
    b = np.zeros_like(start) if bias is None else np.broadcast_to(
        np.asarray(bias, dtype=np.float64), start.shape)
    keep = 1.0 - dv
    if k == 0 or keep == 0.0 or (keep == 1.0 and not np.any(b)):
        return start.copy()

    def idle(x: np.ndarray) -> np.ndarray:
        for _ in range(k):
            x = x * keep + 0.0 + b
        return x

    x = start
    for _ in range(k):
        x = (x - b) / keep
    best, best_err = x, np.abs(idle(x) - start)
    for _ in range(8):
        got = idle(x)
        if not np.any(got != start):
            break
        x = np.where(got != start, np.nextafter(x, np.where(got < start, np.inf, -np.inf)), x)
        err = np.abs(idle(x) - start)
        better = err < best_err
        best, best_err = np.where(better, x, best), np.where(better, err, best_err)
    return best


def float_idle_v(v: np.ndarray, dv: float, k: int, bias: np.ndarray | None = None
                 ) -> list[np.ndarray]:
    """The ``k`` values of ``v`` (float64, per neuron) after each idle step of Lava's float LIF
    (``v = v * (1 - dv) + 0 + bias``; no input), first to last."""
    got = []
    x = np.asarray(v, dtype=np.float64)
    for _ in range(k):
        x = x * (1.0 - dv) + 0.0 + (0.0 if bias is None else bias)
        got.append(x)
    return got


def lava_decay_v(v: np.ndarray, dv: int, k: int, bias: np.ndarray | None = None
                 ) -> np.ndarray:
    """``k`` idle steps of Lava's fixed-point LIF on ``v`` (int64, per neuron): ``v =
    clip(sign(v) * (|v| * (4096 - dv) >> 12) + 64 * bias, -(2**23 - 1), 2**23 - 1)``
    (``PyLifModelBitAcc``; no input; ``bias``: the neuron bias ``bias_mant`` per neuron at
    ``bias_exp = 6``, a-units, None: 0). Monotone non-decreasing in ``v``."""
    v = np.asarray(v, dtype=np.int64)
    for _ in range(k):
        v = np.sign(v) * ((np.abs(v) * (4096 - dv)) >> 12)
        if bias is not None:
            v = np.clip(v + 64 * np.asarray(bias, dtype=np.int64), -(UV_MAX - 1), UV_MAX - 1)
    return v


def fixed_v_init(start: np.ndarray, dv: int, k: int,
                 bias: np.ndarray | None = None) -> np.ndarray:
    """The integer initial ``v`` in Lava's state range ``|v| <= 2**23 - 1`` whose ``k`` idle
    steps (:func:`lava_decay_v` with the neuron ``bias``, monotone in ``v``) come closest to
    ``start`` (int64, per neuron; a tie goes to the larger): a bisection for the smallest ``v``
    reaching ``start``, then that or the one below."""
    target = np.asarray(start, dtype=np.int64)
    top = UV_MAX - 1
    lo = np.full(target.shape, -top, dtype=np.int64)
    hi = np.full(target.shape, top, dtype=np.int64)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        up = lava_decay_v(mid, dv, k, bias) >= target
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid + 1)
    below = np.maximum(lo - 1, -top)
    take_below = (np.abs(lava_decay_v(below, dv, k, bias) - target)
                  < np.abs(lava_decay_v(lo, dv, k, bias) - target))
    return np.where(take_below, below, lo)


def _flat(arr: np.ndarray, shape: Shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(arr, dtype=np.float64), shape).reshape(-1).copy()


def _uniform(values: np.ndarray) -> bool:
    return values.size == 0 or bool(np.all(values == values.reshape(-1)[0]))


def _channels(part: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The channels (first axis of ``shape``, C order) that the ascending flat indices
    ``part`` are exactly; None when they are not whole channels (or ``shape`` is 1-D)."""
    if len(shape) < 2:
        return None
    per = int(np.prod(shape[1:]))
    channels = np.unique(part // per)
    whole = (channels[:, None] * per + np.arange(per)).reshape(-1)
    return channels if np.array_equal(part, whole) else None


def _ranges(values: np.ndarray) -> str:
    """Ascending integers as ``0-7, 9``."""
    runs: list[list[int]] = []
    for v in (int(x) for x in values):
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def _coefficient(tau: np.ndarray, dt: float, sem: Semantics) -> np.ndarray:
    if sem.integration == "exponential":
        return 1.0 - np.exp(-dt / tau)
    return dt * (1.0 / tau)


@dataclass
class _Path:
    """A feed-forward or recurrent path into a neuron: ``x = M y + b`` with ``y`` the output of
    ``source`` (M None: identity), through the weight nodes ``nodes`` (upstream last); delay:
    the graph ``Delay`` nodes ``delay_nodes`` on it as synaptic delays (steps: an int, or per
    synapse ``[n_out, n_src]``); backs: the reference's back edges on it (one step each);
    align: a path with back edges: the Lava delay added to its ``Delay`` steps
    (``_Analysis._loops``; may be negative)."""

    source: str
    matrix: np.ndarray | None
    bias: np.ndarray | None
    nodes: list[str]
    biased: list[str]
    conv: tuple[np.ndarray, ConvGeometry] | None = None   # instead of matrix: one convolution
    delay: int | np.ndarray = 0
    delay_nodes: tuple[str, ...] = ()
    backs: int = 0
    align: int = 0


@dataclass
class _Op:
    """One linear node on a path: ``y = op(x) + bias`` (``bias`` flat ``[n_out]``), a dense
    ``matrix`` or a convolution ``conv`` (pooling: a depthwise one, ``pool``)."""

    name: str
    n_in: int
    n_out: int
    matrix: np.ndarray | None = None
    conv: tuple[np.ndarray, ConvGeometry] | None = None
    bias: np.ndarray | None = None
    pool: bool = False

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``[m, n_in]`` -> ``[m, n_out]`` (no bias)."""
        if self.conv is not None:
            return conv_apply(x, *self.conv)
        assert self.matrix is not None
        return x @ self.matrix.T

    def adjoint(self, y: np.ndarray) -> np.ndarray:
        """``y`` ``[m, n_out]`` -> ``y @ M`` ``[m, n_in]`` (M: this op's matrix)."""
        if self.conv is not None:
            return conv_adjoint(y, *self.conv)
        assert self.matrix is not None
        return y @ self.matrix


def _live_delays(path: _Path) -> tuple[int, int]:
    """The smallest and largest ``Delay`` steps of the synapses of ``path`` that carry a
    weight (every element where ``path.delay`` is per synapse and the path's map is not
    known dense: a convolution)."""
    if isinstance(path.delay, int):
        return path.delay, path.delay
    d = path.delay
    if path.conv is None:
        live = (path.matrix if path.matrix is not None else np.eye(*d.shape)) != 0
        if np.any(live):
            d = d[live]
    return int(d.min()), int(d.max())


def _loop_path(ff: dict[str, list[tuple[str, Any]]], start: str, end: str) -> list[str] | None:
    """The neurons of a shortest feed-forward path from ``start`` to ``end`` (both
    included; ``ff``: source -> its (neuron, path) pairs), None when there is none."""
    came: dict[str, str | None] = {start: None}
    todo = [start]
    while todo:
        nxt: list[str] = []
        for a in todo:
            for b, _ in ff.get(a, []):
                if b not in came:
                    came[b] = a
                    nxt.append(b)
        todo = nxt
    if end not in came:
        return None
    got: list[str] = []
    at: str | None = end
    while at is not None:
        got.append(at)
        at = came[at]
    return got[::-1]


def _dense_of(ops: list[_Op]) -> np.ndarray:
    """The matrix ``[n_out, n_in]`` of ``ops`` (upstream first): unit vectors, a block at a
    time, through the maps (forward: columns) or their adjoints (backward: rows), whichever
    side is smaller."""
    n_in, n_out = ops[0].n_in, ops[-1].n_out
    forward = n_in <= n_out
    n = n_in if forward else n_out
    out = np.empty((n_out, n_in))
    step = max(1, (1 << 20) // max(1, max(max(op.n_out, op.n_in) for op in ops)))
    for j in range(0, n, step):
        m = min(step, n - j)
        x = np.zeros((m, n))
        x[np.arange(m), j + np.arange(m)] = 1.0
        if forward:
            for op in ops:
                x = op.apply(x)
            out[:, j:j + m] = x.T
        else:
            for op in reversed(ops):
                x = op.adjoint(x)
            out[j:j + m] = x
    return out


class _Analysis:
    """Walk the flat graph once; collect violations and (when none) the plan."""

    def __init__(self, checked: Checked, semantics: Semantics, target: str) -> None:
        self.c, self.sem, self.target = checked, semantics, target
        self.flat = checked.flat
        self.out: list[Violation] = []
        self.passes: list[str] = []
        self.delays: dict[tuple[str, str], int] = {}   # (neuron, source) -> extra steps
        self.li_synapses: dict[str, str] = {}           # LI -> the LIF/IF it is the current of
        self.merged: dict[str, float] = {}              # that LIF/IF -> c_syn (its du)
        self.delay_steps: dict[str, np.ndarray | None] = {}  # Delay -> its steps (None: refused)

    def add(self, node: str | None, fld: str | None, message: str) -> None:
        self.out.append(Violation(self.target, node, fld, message))

    def resolve(self, name: str) -> str:
        """Follow pass-through nodes (Identity, nested Input/Output, Flatten) upstream."""
        seen = set()
        while isinstance(self.flat.nodes[name], PASS) and name not in self.flat.inputs:
            preds = self.flat.preds[name]
            if len(preds) != 1 or name in seen:
                return name
            seen.add(name)
            name = preds[0]
        return name

    def downstream(self, name: str, through: tuple[type, ...] = PASS) -> list[str]:
        """The first nodes after ``name`` that are not of the types ``through`` (default: the
        pass-through nodes; Output nodes count as ends)."""
        ends: list[str] = []
        todo = list(self.flat.succs[name])
        seen: set[str] = set()
        while todo:
            d = todo.pop()
            if d in seen:
                continue
            seen.add(d)
            if isinstance(self.flat.nodes[d], through) and d not in self.flat.outputs \
                    and self.flat.succs[d]:
                todo.extend(self.flat.succs[d])
            else:
                ends.append(d)
        return ends

    def run(self) -> Plan | None:
        flat = self.flat
        for name, node in flat.nodes.items():
            if isinstance(node, NEURONS + LINEAR + PASS + (nir.Delay,)):
                continue
            self.add(name, "type", f"{type(node).__name__} has no Lava mapping here (supported: "
                     "LIF, CubaLIF, IF, Threshold (lava-float); LI, CubaLI, I as read-outs; "
                     "Affine, Linear, Scale, "
                     "Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, Identity; Delay as "
                     "synaptic delay)")
        for name, node in flat.nodes.items():
            if isinstance(node, Identity | nir.Flatten | nir.Delay) \
                    and len(flat.preds[name]) != 1:
                self.add(name, "edges", f"{type(node).__name__} with {len(flat.preds[name])} "
                         "incoming edges: the Lava targets need one")
            if isinstance(node, LINEAR):
                self._check_weight(name)
            if isinstance(node, READOUTS):
                ends = self.downstream(name)
                if isinstance(node, nir.LI) and ends and not set(ends) & set(flat.outputs):
                    self._li_synapse(name, self.downstream(name, PASS + LINEAR))
                    continue
                for d in ends:
                    if d not in flat.outputs:
                        self.add(name, "edges", f"{type(node).__name__} feeds "
                                 f"{type(flat.nodes[d]).__name__} {d!r}: a Lava population "
                                 "sends spikes, so a non-spiking neuron (LI, CubaLI, I) can "
                                 "only be read out (feed an Output)")
        if self.out:
            return None
        paths: dict[str, tuple[list[_Path], list[_Path]]] = {}
        for name, node in flat.nodes.items():
            if isinstance(node, NEURONS) and name not in self.li_synapses:
                got = self._paths(name)
                if got is not None:
                    paths[name] = got
        if self.out:
            return None
        depth = self._depths(paths, set(flat.inputs))
        if self.out:
            return None
        ordered = sorted(paths, key=lambda n: (depth[n], list(flat.nodes).index(n)))
        layout: dict[str, list[tuple[int, np.ndarray | None]]] = {}
        for name in ordered:
            start = sum(len(v) for v in layout.values())
            layout[name] = [(start + j, part) for j, part in enumerate(self._partition(name))]
        plan_layers: list[Layer] = []
        for name in ordered:
            populations = self._layers(name, flat.nodes[name], *paths[name], layout, depth)
            if populations is not None:
                plan_layers.extend(populations)
        if self.out:
            return None
        outputs: dict[str, list[int]] = {}
        for name in flat.outputs:
            preds = flat.preds[name]
            fed_by = self.resolve(preds[0]) if len(preds) == 1 else None
            if fed_by is None or fed_by not in layout:
                what = (f"{len(preds)} incoming edges" if fed_by is None
                        else f"{type(flat.nodes[fed_by]).__name__} {fed_by!r}")
                self.add(name, "edges", f"an Output must be fed by one neuron node (LIF, "
                         f"CubaLIF, IF: spikes; LI, CubaLI, I: voltage); this one gets {what}")
                continue
            outputs[name] = [k for k, _ in layout[fed_by]]
        if self.out:
            return None
        in_shapes = {name: self.c.out_shapes[name] for name in flat.inputs}
        slices = self._embed_inputs(plan_layers, in_shapes)
        if self.out:
            return None
        inp = flat.inputs[0]
        return Plan(input_name=inp, input_shape=in_shapes[inp],
                    n_in=max(s.stop for s in slices.values()), inputs=in_shapes,
                    layers=plan_layers, outputs=outputs,
                    out_shapes={n: self.c.out_shapes[n] for n in flat.outputs},
                    dt=self.sem.require_dt(), passes=self.passes,
                    node_shapes={n: self.c.out_shapes[n] for n in layout})

    def _embed_inputs(self, layers: list[Layer], in_shapes: dict[str, Shape]
                      ) -> dict[str, slice]:
        """Point every synapse from an Input (planned with source ``-1 - j`` for the ``j``-th
        Input) at the one flat input vector (source -1): with several Inputs its weights,
        delays and node delays get zero columns outside the Input's slice, and a convolution
        from an Input becomes a dense matrix (a Lava ``Conv`` reads its whole source) within
        :data:`~.conv.DENSE_CAP` weights. Returns each Input's slice of the vector."""
        names = list(in_shapes)
        slices = input_slices(in_shapes)
        n_in = slices[names[-1]].stop
        several = len(names) > 1
        if several:
            self.passes.append("the Input nodes " + ", ".join(
                f"{name!r} (values {s.start}-{s.stop - 1})" for name, s in slices.items())
                + f" as one Lava source of {n_in} values: each synapse from an Input reads "
                "the whole vector, with zero weights outside its Input's values")
        for layer in layers:
            for k, syn in enumerate(layer.inputs):
                if syn.source >= 0:
                    continue
                cols = slices[names[-1 - syn.source]]
                if not several:
                    layer.inputs[k] = replace(syn, source=-1)
                    continue
                weight = syn.weight
                if syn.kind == "conv":
                    assert syn.geometry is not None
                    if layer.n * (cols.stop - cols.start) > DENSE_CAP:
                        self.add(layer.node or layer.name, "weight", f"the convolution from "
                                 f"Input {names[-1 - syn.source]!r}: with several Inputs it is "
                                 f"a dense matrix of {layer.n}x{cols.stop - cols.start} weights "
                                 f"(at most {DENSE_CAP})")
                        continue
                    weight = _dense_of([_Op(layer.name, cols.stop - cols.start, layer.n,
                                            conv=(syn.weight, syn.geometry))])
                    self.passes.append(f"lower the convolution from Input "
                                       f"{names[-1 - syn.source]!r} into {layer.name!r} as one "
                                       f"dense matrix ({layer.n}x{cols.stop - cols.start}): the "
                                       "Inputs are one flat Lava source")

                def widen(a: np.ndarray, cols: slice = cols) -> np.ndarray:
                    out = np.zeros((a.shape[0], n_in), dtype=a.dtype)
                    out[:, cols] = a
                    return out

                def widen_delay(d: int | np.ndarray, shape: tuple[int, ...] = weight.shape
                                ) -> int | np.ndarray:
                    if isinstance(d, np.ndarray):
                        return widen(np.broadcast_to(d, shape))
                    return d

                layer.inputs[k] = replace(syn, source=-1, kind="dense", weight=widen(weight),
                                          geometry=None, delay=widen_delay(syn.delay),
                                          node_delay=widen_delay(syn.node_delay))
        return slices

    # ---------------------------------------------------------------------------------------
    def _check_weight(self, name: str) -> None:
        flat, c = self.flat, self.c
        shape = c.in_shapes[name]
        kind = type(flat.nodes[name]).__name__
        if len(shape) != 1 and isinstance(flat.nodes[name], WEIGHTS):
            self.add(name, "weight", f"{kind} on a {len(shape)}-D input {shape}: the Lava "
                     "targets need 1-D vectors (add a Flatten first)")
        if len(flat.preds[name]) != 1:
            self.add(name, "edges", f"a weight node with {len(flat.preds[name])} incoming edges: "
                     "the Lava targets need exactly one")
        for end in self.downstream(name, PASS + (nir.Delay,)):
            node = flat.nodes[end]
            if not isinstance(node, NEURONS + LINEAR):
                self.add(name, "edges", f"feeds {type(node).__name__} {end!r}: in Lava a "
                         "Dense or Conv connection ends on a neuron population (LIF, CubaLIF, "
                         "IF; LI, CubaLI, I as read-outs); an Output reads a neuron")

    def _op(self, name: str) -> _Op:
        """A linear node as an :class:`_Op`."""
        node, params = self.flat.nodes[name], self.c.params[name]
        n_in = int(np.prod(self.c.in_shapes[name]))
        n_out = int(np.prod(self.c.out_shapes[name]))
        if isinstance(node, nir.Scale):
            return _Op(name, n_in, n_out, matrix=np.diag(_flat(params["scale"], (n_in,))))
        if isinstance(node, CONVS):
            kernel, geo = geometry(self.c.in_shapes[name], np.asarray(params["weight"],
                                                                      dtype=np.float64),
                                   params["stride"], params["padding"], params["dilation"],
                                   params["groups"])
            cb = np.asarray(params["bias"], dtype=np.float64)
            bias = np.repeat(cb, n_out // cb.size) if np.any(cb) else None
            return _Op(name, n_in, n_out, conv=(kernel, geo), bias=bias)
        if isinstance(node, POOLS):
            shape = self.c.in_shapes[name]
            conv = pool_as_conv((shape[0], shape[1], shape[2]), params["kernel_size"],
                                params["stride"], params["padding"],
                                isinstance(node, nir.AvgPool2d))
            return _Op(name, n_in, n_out, conv=conv, pool=True)
        w = np.asarray(params["weight"], dtype=np.float64)
        b = params.get("bias") if isinstance(node, nir.Affine) else None
        return _Op(name, n_in, n_out, matrix=w,
                   bias=None if b is None else np.asarray(b, dtype=np.float64))

    def _path(self, pred: str, neuron: str) -> _Path | None:
        """:meth:`_fold_path`, with the reference's back edges on the path counted
        (:attr:`_Path.backs`)."""
        path = self._fold_path(pred, neuron)
        if path is not None:
            path.backs = self._backs(pred, neuron)
        return path

    def _backs(self, pred: str, neuron: str) -> int:
        """The reference's back edges (``Checked.back``: each carries the previous step's
        value) on the path from the nearest neuron or Input upstream of ``pred`` into
        ``neuron``."""
        flat, back = self.flat, self.c.back
        count = int((pred, neuron) in back)
        name, seen = pred, {neuron}
        while (name not in flat.inputs and not isinstance(flat.nodes[name], NEURONS)
               and name not in seen and len(flat.preds[name]) == 1):
            seen.add(name)
            count += int((flat.preds[name][0], name) in back)
            name = flat.preds[name][0]
        return count

    def _fold_path(self, pred: str, neuron: str) -> _Path | None:
        """Fold the linear nodes between a neuron and its source into one ``x = M y + b``
        (float64 products: ``W2 (W1 y + b1) + b2 = (W2 W1) y + (W2 b1 + b2)``), or into one
        convolution ``x = K * y + b`` (:meth:`_fold_conv`); ``Delay`` nodes on the way become
        the path's synaptic delay (:meth:`_path_delay`)."""
        flat = self.flat
        ops: list[_Op] = []
        found: list[tuple[int, str]] = []   # (linear maps downstream of it, Delay node)
        name = pred
        while True:
            name = self.resolve(name)
            node = flat.nodes[name]
            if isinstance(node, NEURONS) or name in flat.inputs:
                break
            if isinstance(node, nir.Delay) and name not in (d for _, d in found):
                found.append((len(ops), name))
                name = flat.preds[name][0]
                continue
            if not isinstance(node, LINEAR) or name in (op.name for op in ops):
                self.add(neuron, "edges", f"input through {type(node).__name__} {name!r}; the "
                         "Lava targets need weight nodes from a neuron or the Input")
                return None
            ops.append(self._op(name))
            name = flat.preds[name][0]
        ops.reverse()  # upstream first
        nodes = [op.name for op in reversed(ops)]
        biased = [op.name for op in ops if op.bias is not None]
        delayed = self._path_delay(ops, found, name, neuron) if found else (0, ())
        if delayed is None:
            return None
        if not ops:
            return _Path(name, None, None, nodes, biased, delay=delayed[0],
                         delay_nodes=delayed[1])
        if any(op.conv is not None for op in ops):
            conv = self._fold_conv(ops, neuron)
            if conv is not None:
                return _Path(name, None, ops[-1].bias, nodes, biased, conv=conv,
                             delay=delayed[0], delay_nodes=delayed[1])
            if ops[0].n_in * ops[-1].n_out > DENSE_CAP:
                self.add(ops[-1].name, "weight", "the linear maps "
                         + " -> ".join(f"{type(flat.nodes[op.name]).__name__} {op.name!r}"
                                       for op in ops)
                         + f" into {neuron!r} are not one Lava convolution, and as one dense "
                         f"matrix they would hold {ops[0].n_in}x{ops[-1].n_out} weights (at "
                         f"most {DENSE_CAP})")
                return None
            self.passes.append("lower " + " -> ".join(
                f"{type(flat.nodes[op.name]).__name__} {op.name!r}" for op in ops)
                + f" into {neuron!r} as one dense matrix ({ops[-1].n_out}x{ops[0].n_in})")
            matrix = _dense_of(ops)
        else:
            matrix = None
            for op in ops:
                assert op.matrix is not None
                matrix = op.matrix if matrix is None else op.matrix @ matrix
        bias: np.ndarray | None = None
        for op in ops:
            if bias is not None:
                bias = op.apply(bias[None, :])[0]
            if op.bias is not None:
                bias = op.bias if bias is None else bias + op.bias
        return _Path(name, matrix, bias, nodes, biased, delay=delayed[0], delay_nodes=delayed[1])

    def _delay_steps(self, name: str) -> np.ndarray | None:
        """The ``Delay`` node ``name``'s per-element delay in steps, flat int64: the
        reference's ``round(delay / dt)``; None (a violation added) when a delay is not a whole
        number of steps (within 1e-9) or beyond :data:`MAX_DELAY`."""
        if name in self.delay_steps:
            return self.delay_steps[name]
        dt = self.sem.require_dt()
        seconds = _flat(self.c.params[name]["delay"], self.c.in_shapes[name])
        exact = seconds / dt
        steps = np.round(exact)
        off = np.abs(exact - steps)
        got = None
        if off.size and float(off.max()) > 1e-9:
            worst = int(np.argmax(off))
            self.add(name, "delay", f"a delay of {seconds[worst]:g} s is {exact[worst]:.9g} "
                     f"steps of dt = {dt:g} s: a synaptic delay is a whole number of steps")
        elif steps.size and int(steps.max()) > MAX_DELAY:
            self.add(name, "delay", f"a delay of {int(steps.max())} steps: Loihi 2's synaptic "
                     f"delays (DelayDense) hold at most {MAX_DELAY}")
        else:
            got = steps.astype(np.int64)
        self.delay_steps[name] = got
        return got

    def _path_delay(self, ops: list[_Op], found: list[tuple[int, str]], source: str,
                    neuron: str) -> tuple[int | np.ndarray, tuple[str, ...]] | None:
        """The ``Delay`` nodes ``found`` (``(linear maps downstream of it, name)``) on the path
        of the maps ``ops`` (upstream first) from ``source`` into ``neuron``, as the synaptic
        delay of that connection: ``(steps, Delay nodes)``, steps an int when uniform, else
        per synapse ``[n_out, n_src]`` (the sum of each node's part); None (violations added)
        when that has no such form. A uniform delay commutes with the linear maps; a
        per-element one before the maps is a delay per column (source element), after them
        one per row (target element), and between two maps one per synapse only where every
        element through which a source element reaches a neuron has the same delay."""
        flat = self.flat
        total = 0
        per: np.ndarray | None = None
        names: list[str] = []
        ok = True
        for downstream, name in reversed(found):  # upstream first
            steps = self._delay_steps(name)
            if steps is None:
                ok = False
                continue
            if not np.any(steps):
                continue
            names.append(name)
            p = len(ops) - downstream   # maps upstream of it
            biased = [op.name for op in ops[:p] if op.bias is not None]
            if biased:
                self.add(name, "delay", f"the bias of {', '.join(repr(b) for b in biased)} "
                         f"passes through this Delay into {neuron!r}: the reference's delay "
                         "line starts with zeros, so that constant arrives late, and a Lava "
                         "population's constant input starts at its first step")
                ok = False
                continue
            n_in = ops[0].n_in if ops else steps.size
            n_out = ops[-1].n_out if ops else steps.size
            if any(op.conv is not None for op in ops) and n_in * n_out > DENSE_CAP:
                self.add(name, "delay", f"Lava has no delayed Conv: the maps into {neuron!r} "
                         f"would be one dense matrix of {n_out}x{n_in} weights (at most "
                         f"{DENSE_CAP})")
                ok = False
                continue
            uniform = _uniform(steps)
            where = "uniform: commutes with the weight maps"
            if uniform:
                total += int(steps[0])
                how = f"{int(steps[0])} step(s)"
            else:
                how = f"{int(steps.min())}-{int(steps.max())} steps per element"
                if p == 0:
                    part = np.broadcast_to(steps[None, :], (n_out, n_in))
                    where = "before the weight map: per source element (column)"
                elif p == len(ops):
                    part = np.broadcast_to(steps[:, None], (n_out, n_in))
                    where = "after the weight map: per target element (row)"
                else:
                    got = self._delay_between(ops, p, steps, name, neuron)
                    if got is None:
                        ok = False
                        continue
                    part = got
                    where = (f"between {type(flat.nodes[ops[p - 1].name]).__name__} "
                             f"{ops[p - 1].name!r} and {type(flat.nodes[ops[p].name]).__name__}"
                             f" {ops[p].name!r}: one delay per synapse")
                per = part.astype(np.int64) if per is None else per + part
            self.passes.append(f"Delay {name!r} ({how}) -> synaptic delay (DelayDense) of the "
                               f"connection from {source!r} into {neuron!r} ({where})")
        if not ok:
            return None
        return (total if per is None else per + total), tuple(names)

    def _delay_between(self, ops: list[_Op], p: int, steps: np.ndarray, name: str,
                       neuron: str) -> np.ndarray | None:
        """The per-synapse delay ``[n_out, n_in]`` of per-element ``steps`` between the maps
        ``ops[:p]`` and ``ops[p:]``: a source element ``j`` reaches a neuron ``i`` through the
        elements ``k`` where both maps are nonzero; one delay per synapse exists where those
        ``k`` all have the same delay. None (a violation added) otherwise."""
        n_in, n_out, n_mid = ops[0].n_in, ops[-1].n_out, steps.size
        if max(n_in, n_out) * n_mid > DENSE_CAP:
            self.add(name, "delay", f"per-element delays between two weight maps into "
                     f"{neuron!r}: checking them needs {n_mid}x{max(n_in, n_out)} matrices "
                     f"(at most {DENSE_CAP} elements)")
            return None
        before = (_dense_of(ops[:p]) != 0).astype(np.float64)   # [n_mid, n_in]
        after = (_dense_of(ops[p:]) != 0).astype(np.float64)    # [n_out, n_mid]
        got = np.zeros((n_out, n_in), dtype=np.int64)
        routes = np.zeros((n_out, n_in), dtype=np.int64)   # distinct delays per synapse
        for d in np.unique(steps):
            sel = steps == d
            hit = (after[:, sel] @ before[sel]) > 0
            routes += hit
            got[hit] = d
        if np.any(routes > 1):
            kinds = [f"{type(self.flat.nodes[op.name]).__name__} {op.name!r}"
                     for op in (ops[p - 1], ops[p])]
            self.add(name, "delay", f"per-element delays between {kinds[0]} and {kinds[1]}, "
                     f"which fold into one weight matrix into {neuron!r}: some input element "
                     "reaches some neuron through elements of different delays, and a synapse "
                     "has one delay (a per-element Delay maps before the first or after the "
                     "last weight map)")
            return None
        return got

    def _fold_conv(self, ops: list[_Op], neuron: str) -> tuple[np.ndarray, ConvGeometry] | None:
        """One Lava convolution for ``ops`` (upstream first): a Conv, a pool (a depthwise
        convolution), or a pool followed by a Conv where their composition is exact; None
        otherwise (the caller lowers the path to a dense matrix)."""
        kinds = [type(self.flat.nodes[op.name]).__name__ for op in ops]
        got: tuple[np.ndarray, ConvGeometry] | None = None
        if len(ops) == 1 and ops[0].conv is not None:
            got = ops[0].conv
        elif len(ops) == 2 and ops[0].pool and ops[1].conv is not None and not ops[1].pool:
            assert ops[0].conv is not None
            got = compose_pool_conv(ops[0].conv, ops[1].conv)
            if got is not None:
                self.passes.append(f"fold {kinds[0]} {ops[0].name!r} into {kinds[1]} "
                                   f"{ops[1].name!r} (one convolution, stride "
                                   f"{got[1].stride}, kernel {got[0].shape[2:]}) into "
                                   f"{neuron!r}")
        if got is None:
            return None
        problem = got[1].lava_problem()
        if problem is not None:
            self.passes.append(f"{' -> '.join(repr(op.name) for op in ops)}: not a Lava Conv "
                               f"({problem})")
            return None
        if len(ops) == 1 and ops[0].pool:
            self.passes.append(f"{kinds[0]} {ops[0].name!r} as a depthwise convolution into "
                               f"{neuron!r}")
        return got

    def _matrix(self, path: _Path, n: int) -> np.ndarray | None:
        """The dense matrix of ``path`` (identity when it has none; a convolution unrolled,
        within :data:`DENSE_CAP`)."""
        if path.conv is None:
            if path.matrix is None and n * n > DENSE_CAP:
                self.add(path.source, "edges", f"feeds {n} neurons one to one without a weight "
                         f"node: as a Lava Dense that is an {n}x{n} matrix (at most "
                         f"{DENSE_CAP} weights)")
                return None
            return np.eye(n) if path.matrix is None else path.matrix
        kernel, geo = path.conv
        n_in, n_out = int(np.prod(geo.in_shape)), int(np.prod(geo.out_shape))
        if n_in * n_out > DENSE_CAP:
            self.add(path.nodes[0], "weight", f"this convolution would have to be a dense "
                     f"matrix here ({n_out}x{n_in} weights, at most {DENSE_CAP})")
            return None
        return _dense_of([_Op(path.nodes[0], n_in, n_out, conv=path.conv)])

    def _li_synapse(self, name: str, ends: list[str]) -> None:
        """An LI feeding (through weights without bias) one LIF/IF and nothing else: its
        synaptic current. ``v_s = (1-c) v_s + c*r*x`` then ``x_lif = W v_s`` is Lava's
        ``u = (1-du) u + a_in`` with ``du = c`` and ``a_in = gain * W * c*r * x``, when
        ``v_s`` starts at 0 (``v_leak = 0``, or ``initial_state`` 'zero': its drive
        ``c * v_leak`` is then a constant input, filtered by ``u`` like the reference's)."""
        flat, params = self.flat, self.c.params[name]
        end = ends[0]
        if len(ends) != 1 or not isinstance(flat.nodes[end], nir.LIF | nir.IF):
            what = ", ".join(f"{type(flat.nodes[e]).__name__} {e!r}" for e in ends)
            self.add(name, "edges", f"LI feeds {what}: a non-spiking population sends nothing "
                     "to another population; an LI is mapped only as the synaptic current of "
                     "one LIF or IF (its only input)")
            return
        shape = self.c.in_shapes[name]
        c_s = _coefficient(_flat(params["tau"], shape), self.sem.require_dt(), self.sem)
        if not _uniform(c_s):
            self.add(name, "tau", "per-neuron time constants: an LI synapse becomes the "
                     "population's current decay du, one per population")
        if np.any(_flat(params["v_leak"], shape) != 0) and self.sem.initial_state == "leak":
            self.add(name, "v_leak", "an LI synapse with v_leak != 0 starts at v_leak "
                     "(initial_state 'leak'); as Lava's u it would start there too, but u has "
                     "no constant to hold it in the idle steps before the population's first "
                     "real step (no input arrives then, and Lava's only neuron constant, the "
                     "bias, enters v): u would decay and feed v before the first step")
        self.li_synapses[name] = end
        self.merged[end] = float(c_s.reshape(-1)[0]) if c_s.size else 1.0

    def _through_li(self, name: str, path: _Path) -> list[_Path] | None:
        """The paths into ``name`` with the LI synapse ``path.source`` folded in: each LI input
        ``y`` reaches ``name`` as ``M diag(c*r) (M_li y + b_li)``."""
        li = path.source
        if path.bias is not None:
            self.add(name, "edges", f"a bias between the LI synapse {li!r} and {name!r} is a "
                     "constant after the synaptic filter; Lava's u filters it")
            return None
        n_li = int(np.prod(self.c.in_shapes[li]))
        params = self.c.params[li]
        scale = (_coefficient(_flat(params["tau"], (n_li,)), self.sem.require_dt(), self.sem)
                 * _flat(params["r"], (n_li,)))
        m_after = self._matrix(path, n_li)
        if m_after is None:
            return None
        after = m_after
        if after.shape[1] != n_li:
            self.add(name, "weight", f"maps {after.shape[1]} values; {li!r} gives {n_li}")
            return None
        # initial_state 'zero' (else refused): the LI's own drive c * v_leak, a constant
        # input filtered by u as by the reference's LI (added once, to the first path)
        leak = _coefficient(_flat(params["tau"], (n_li,)), self.sem.require_dt(), self.sem) \
            * _flat(params["v_leak"], (n_li,))
        drive = after @ leak if np.any(leak) else None
        if drive is not None:
            self.passes.append(f"the leak of the LI synapse {li!r} (v_leak, initial_state "
                               f"'zero') -> a constant input of {name!r} (filtered by u)")
        got: list[_Path] = []
        for pred in self.flat.preds[li]:
            inner = self._path(pred, li)
            if inner is None:
                return None
            if inner.delay_nodes:
                self.add(inner.delay_nodes[0], "delay", f"a Delay in front of the LI synapse "
                         f"{li!r}: not mapped (the LI becomes {name!r}'s synaptic current)")
                return None
            if inner.source == li:
                self.add(li, "edges", "a loop on an LI synapse")
                return None
            m = np.eye(n_li) if inner.matrix is None else inner.matrix
            bias = None if inner.bias is None else after @ (scale * inner.bias)
            biased = list(inner.biased)
            if drive is not None and not got:
                bias = drive if bias is None else bias + drive
                biased.append(li)
            got.append(_Path(inner.source, after @ (scale[:, None] * m), bias,
                             path.nodes + [li] + inner.nodes, biased,
                             backs=path.backs + inner.backs))
        return got

    def _paths(self, name: str) -> tuple[list[_Path], list[_Path]] | None:
        ff: list[_Path] = []
        rec: list[_Path] = []
        for pred in self.flat.preds[name]:
            path = self._path(pred, name)
            if path is None:
                return None
            if path.source == name:
                if path.matrix is None and path.conv is None:
                    self.add(name, "edges", "a neuron fed by its own spikes without a weight")
                    return None
                if path.delay_nodes and path.biased:
                    self.add(path.delay_nodes[0], "delay", f"the bias of "
                             f"{', '.join(repr(b) for b in path.biased)} in the own loop of "
                             f"{name!r} through this Delay: the reference's back edge and delay "
                             "line start with zeros (no constant at the first steps), a Lava "
                             "population's constant input starts at its first step")
                    return None
                rec.append(path)
            else:
                ff.append(path)
        if not ff:
            self.add(name, "edges", "no feed-forward input")
            return None
        if any(p.source in self.li_synapses for p in ff):
            if len(ff) != 1 or rec:
                self.add(name, "edges", "an LI synapse must be the neuron's only input: Lava's "
                         "current u filters every input of the population, its loop too")
                return None
            li = ff[0].source
            folded = self._through_li(name, ff[0])
            if folded is None:
                return None
            self.passes.append(f"LI {li!r} in front of {name!r} -> the population's synaptic "
                               "current (du = its c)")
            ff = folded
        if isinstance(self.flat.nodes[name], READOUTS) and rec:
            self.add(name, "edges", "a recurrent loop on a non-spiking neuron: it sends no "
                     "spikes in Lava")
            return None
        return ff, rec

    def _depths(self, paths: dict[str, tuple[list[_Path], list[_Path]]],
                inputs: set[str]) -> dict[str, int]:
        """Dense hops from the input per neuron (1 + its deepest source's; every Input node
        is at depth 0) over the
        feed-forward paths (those without a back edge); a source less deep gets a delay
        (``self.delays``) so that it arrives in the same step as the deepest (the reference
        adds all feed-forward inputs in the same step). The paths that cross a back edge (a
        loop through several neurons) are timed afterwards (:meth:`_loops`)."""
        depth: dict[str, int] = {}

        def visit(name: str, stack: tuple[str, ...]) -> int:
            if name in depth:
                return depth[name]
            if name in stack:
                self.add(name, "edges", "a recurrent loop through several neurons ("
                         + " -> ".join((*stack[stack.index(name):], name)) + "): Lava's one-step "
                         "Dense latency matches the reference only for a neuron's own loop")
                depth[name] = 1
                return 1
            got = {p.source: (0 if p.source in inputs else visit(p.source, (*stack, name)))
                   for p in paths[name][0] if not p.backs}
            if not got:
                self.add(name, "edges", "no input from the Input or another neuron other than "
                         "through a back edge of a loop")
                depth[name] = 1
                return 1
            d = max(got.values()) + 1
            depth[name] = d
            for src, k in got.items():
                if k + 1 < d:
                    self.delays[(name, src)] = d - 1 - k
                    if d - 1 - k > MAX_DELAY:
                        self.add(name, "edges", f"its input from {src!r} (depth {k}) must wait "
                                 f"{d - 1 - k} steps for its deepest input (depth {d - 1}); "
                                 f"Loihi 2's DelayDense delays at most {MAX_DELAY} steps")
            return d

        for name in paths:
            visit(name, ())
        if not self.out:
            self._loops(paths, depth, inputs)
        return depth

    def _loops(self, paths: dict[str, tuple[list[_Path], list[_Path]]], depth: dict[str, int],
               inputs: set[str]) -> None:
        """Time the paths that cross a back edge between two neurons (a loop through several
        neurons). In the reference the path from ``S`` into ``P`` carries ``S``'s output
        ``backs + d`` steps earlier (``backs``: its back edges, one step each; ``d``: its
        ``Delay`` steps); Lava's population at depth ``k`` does its step ``t`` at Lava step
        ``t + k`` and a Dense hop adds one step, so the connection needs the DelayDense delay
        ``depth(P) - depth(S) - 1 + backs + d``, stored as the alignment
        ``depth(P) - depth(S) - 1 + backs`` (:attr:`_Path.align`, may be negative) added to
        ``d``.
        Refused (``edges``, with the latencies of the loop) where that delay would be
        negative for some synapse: the reference closes the loop sooner than Lava can."""
        ff: dict[str, list[tuple[str, _Path]]] = {}   # source neuron -> (neuron, path)
        for name, (ins, _) in paths.items():
            for p in ins:
                if not p.backs and p.source not in inputs:
                    ff.setdefault(p.source, []).append((name, p))
        for name, (ins, _) in paths.items():
            for p in ins:
                if not p.backs or p.source in inputs:
                    continue
                src = p.source
                if p.biased:
                    self.add(name, "edges", f"the bias of {', '.join(repr(b) for b in p.biased)}"
                             f" on the connection from {src!r} back into {name!r}: the "
                             "reference's back edge and delay lines start with zeros (no "
                             "constant at the first steps), a Lava population's constant input "
                             "starts at its first step")
                    continue
                align = depth[name] - depth[src] - 1 + p.backs
                low, high = _live_delays(p)
                if align + low < 0:
                    self._loop_refusal(name, src, p, ff, depth, align, low)
                    continue
                if align + high > MAX_DELAY:
                    self.add(p.delay_nodes[0] if p.delay_nodes else name,
                             "delay" if p.delay_nodes else "edges",
                             f"the connection from {src!r} back into {name!r} needs a synaptic "
                             f"delay of up to {align + high} steps; Loihi 2's DelayDense "
                             f"delays at most {MAX_DELAY}")
                    continue
                p.align = align
                loop = _loop_path(ff, name, src)
                what = ("the loop " + " -> ".join([*loop, name]) if loop is not None
                        else f"the connection from {src!r} into {name!r}")
                given = ("a Dense" if align + high == 0 else "a DelayDense of "
                         + (f"{align + low}" if low == high else f"{align + low}-{align + high}")
                         + " step(s)")
                self.passes.append(
                    f"{what}: the reference delays the connection from {src!r} back into "
                    f"{name!r} by {p.backs} back edge(s) (the previous step's value) and "
                    f"{low if low == high else f'{low}-{high}'} step(s) of Delay; in Lava it is "
                    f"{given} (depth {depth[src]} -> {depth[name]}), arriving in the same step")

    def _loop_refusal(self, name: str, src: str, p: _Path,
                      ff: dict[str, list[tuple[str, _Path]]], depth: dict[str, int],
                      align: int, low: int) -> None:
        """Refuse the connection ``p`` from ``src`` back into ``name`` whose Lava delay
        ``align + low`` would be negative, stating the loop's latencies in steps."""
        need = -align   # the Delay on the connection back that makes the loop exact
        more = (f"a Delay of >= {need} step{'s' if need != 1 else ''} on the connection from "
                f"{src!r} back into {name!r} would make it mappable")
        loop = _loop_path(ff, name, src)
        if loop is None:
            self.add(name, "edges",
                     f"its input from {src!r} crosses a back edge of the reference (the "
                     f"previous step's value), {p.backs + low} step(s) late in the reference; "
                     f"in Lava {src!r} runs {depth[src] - depth[name]} step(s) behind "
                     f"{name!r} (depth {depth[src]} against {depth[name]}), so the connection "
                     f"would need a negative delay; {more}")
            return
        hops = len(loop)
        hops_delay = ref_delay = 0
        for a, b in zip(loop, loop[1:], strict=False):
            edge = next(q for dst, q in ff[a] if dst == b)
            d_low = _live_delays(edge)[0]
            hops_delay += depth[b] - depth[a] - 1 + d_low
            ref_delay += d_low
        ref = ref_delay + p.backs + low
        lava = hops + hops_delay   # the connection back without delay: Lava's shortest
        extra = f", plus {hops_delay} step(s) of synaptic delay" if hops_delay else ""
        self.add(name, "edges",
                 "the loop " + " -> ".join([*loop, name]) + f" closes in {ref} "
                 f"step{'s' if ref != 1 else ''} in the reference and in {lava} Lava steps "
                 f"(one per Dense hop{extra}); {more}")

    def _align(self, name: str, path: _Path) -> int:
        """The Lava delay of ``path`` into ``name`` before its ``Delay`` steps: the alignment
        of a less deep source (:meth:`_depths`), or a loop's connection back's
        (:meth:`_loops`)."""
        return path.align if path.backs else self.delays.get((name, path.source), 0)

    def _decays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Per neuron of ``name``: ``(c_mem, c_syn)``, the voltage and current decays (IF, I:
        0 and 1; LIF, LI: c and 1, u keeping one step's input; Threshold: 1 and 1, no
        state)."""
        node, params = self.flat.nodes[name], self.c.params[name]
        shape = self.c.in_shapes[name]
        n = int(np.prod(shape))
        dt = self.sem.require_dt()
        if isinstance(node, nir.LIF | nir.LI):
            return _coefficient(_flat(params["tau"], shape), dt, self.sem), np.ones(n)
        if isinstance(node, nir.CubaLIF | nir.CubaLI):
            return (_coefficient(_flat(params["tau_mem"], shape), dt, self.sem),
                    _coefficient(_flat(params["tau_syn"], shape), dt, self.sem))
        if isinstance(node, nir.Threshold):
            return np.ones(n), np.ones(n)
        return np.zeros(n), np.ones(n)

    def _partition(self, name: str) -> list[np.ndarray | None]:
        """The populations of the neuron node ``name``: ``[None]`` (one) when its neurons share
        their decays, else the flat indices of each distinct ``(c_mem, c_syn)``, in order of
        first appearance (a Lava LIF population has one ``du`` and one ``dv``)."""
        c_m, c_s = self._decays(name)
        if name in self.merged:  # u is the LI synapse's current: one du for all
            c_s = np.ones_like(c_s)
        keys = np.stack([c_m, c_s], axis=1)
        if keys.shape[0] == 0 or bool(np.all(keys == keys[0])):
            return [None]
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        return [np.flatnonzero(inverse == j) for j in np.argsort(first)]

    def _once(self, text: str) -> None:
        """List a pass once (the populations of a split node may each meet it)."""
        if text not in self.passes:
            self.passes.append(text)

    def _layers(self, name: str, node: nir.NIRNode, ff: list[_Path], rec: list[_Path],
                layout: dict[str, list[tuple[int, np.ndarray | None]]],
                depth: dict[str, int]) -> list[Layer] | None:
        """The Lava populations of neuron node ``name``: one, or (per-neuron time constants)
        one per distinct decay, each with its synapses from every population of its sources
        (a convolution: from whole channels to whole channels, else a dense block)."""
        c, sem = self.c, self.sem
        graph_inputs = self.flat.inputs
        shape = c.in_shapes[name]
        n = int(np.prod(shape))
        params = c.params[name]
        kind = type(node).__name__
        dt = sem.require_dt()
        readout = isinstance(node, READOUTS)

        def f(key: str) -> np.ndarray:
            return _flat(params[key], shape)

        before = len(self.out)
        start: np.ndarray | None = None    # v0 - v_reset where it is not 0
        subtract = False                    # subtract reset: an ATRLIF population
        if readout:
            # a CubaLI is read in the coordinates v - v_leak (no constant on v: u filters its
            # input); with initial_state 'zero' it starts at -v_leak there (Layer.v_start)
            v_reset = (f("v_leak") if (sem.initial_state == "leak"
                                       or isinstance(node, nir.CubaLI))
                       and not isinstance(node, nir.I) else np.zeros(n))
            theta = np.ones(n)
            if sem.initial_state != "leak" and np.any(v_reset != 0):
                start = -v_reset
                self.passes.append(
                    f"read {kind} {name!r} as v - v_leak, starting at -v_leak (initial_state "
                    "'zero'): Lava's initial v is that start divided by the decay of the Lava "
                    "steps before its first real step (latency; fixed point: the integer whose "
                    "decays land closest)")
        elif isinstance(node, nir.Threshold):
            v_reset = np.zeros(n)
            theta = f("threshold")
            self._threshold_node(name, theta)
        else:
            v_reset = f("v_reset")
            theta = f("v_threshold") - v_reset
            subtract = sem.reset == "subtract"
            if subtract and self.target != FLOAT_NAME and isinstance(node, nir.IF):
                self.add(name, "reset", f"{kind}: 'subtract' reset in fixed point: ATRLIF's "
                         "r (the subtracted thresholds, 128 * theta_0 per spike) never decays "
                         "at dv = 0, and v, clipped at 2**23 - 1, grows with it: v saturates "
                         "after (2**23 - 1) / (128 * theta_0) spikes (16 at theta_0 = 4095) "
                         "(docs/targets/lava.md)")
            elif subtract:
                self.passes.append(
                    f"subtract reset of {kind} {name!r} -> Lava's ATRLIF (delta_r = delta_v, "
                    "theta constant): it holds w = v' - theta/2 (start and neuron bias shifted "
                    "by theta/2), fires at w >= theta/2 and subtracts 2 * theta/2 = theta")
            v0 = (f("v_leak") if sem.initial_state == "leak" and not isinstance(node, nir.IF)
                  else np.zeros(n))
            if np.any(v0 != v_reset):  # Lava's initial v (Layer.v_init), latency compensated
                start = v0 - v_reset
                where = ("v_leak (initial_state 'leak')" if sem.initial_state == "leak"
                         and not isinstance(node, nir.IF) else "0")
                self.passes.append(
                    f"start {name!r} at {where}, not at v_reset: Lava's initial v is v0 - "
                    "v_reset, divided by the decay of the Lava steps before its first real "
                    "step (latency; fixed point: the integer whose decays land closest)")
            if np.any(theta <= 0):
                self.add(name, "v_threshold", f"{kind}: v_threshold must exceed v_reset (Lava's "
                         "threshold is positive)")
        r = np.ones(n) if isinstance(node, nir.Threshold) else f("r")
        cuba = isinstance(node, nir.CubaLIF | nir.CubaLI)
        # the leak c_mem * (v_leak - v_reset) of a population whose u filters its input
        # (CubaLIF; a LIF behind an LI synapse): Lava's neuron bias, a constant on v that acts
        # in the idle steps before the first real step too (Layer.v_init compensates)
        leak_as_bias = (cuba or name in self.merged) and not isinstance(node, nir.IF) \
            and bool(np.any(f("v_leak") != v_reset))
        if leak_as_bias:
            self.passes.append(
                f"the leak of {kind} {name!r} (v_leak != v_reset) -> Lava's neuron bias (a "
                "constant on v; u filters its input): Lava's initial v is chosen so that the "
                "idle steps before its first real step (decay and bias) bring it to its start "
                "(fixed point: the integer whose idle steps land closest)")
        c_m, c_s = self._decays(name)
        # ------------------------------------------------------------------ node level
        b = np.zeros(n)
        for path in ff:
            if path.bias is not None:
                b = b + path.bias
            self._note(name, kind, tuple(reversed(path.nodes)), path.biased)
            if path.backs:  # a connection back in a loop: timed and listed by _loops
                continue
            delay = self.delays.get((name, path.source), 0)
            if delay:
                self.passes.append(f"delay the input from {path.source!r} into {name!r} by "
                                   f"{delay} step(s) (DelayDense): branches of different depth "
                                   "meet in the same step")
            longest = int(np.max(path.delay))
            if path.delay_nodes and delay + longest > MAX_DELAY:
                self.add(path.delay_nodes[0], "delay", f"its delay into {name!r} (up to "
                         f"{longest} steps) plus the {delay} step(s) that align it with deeper "
                         f"inputs exceed Loihi 2's synaptic delays (DelayDense: at most "
                         f"{MAX_DELAY} steps)")
        if len(ff) > 1:
            self.passes.append(f"sum {len(ff)} feed-forward inputs into {name!r}: one Dense per "
                               "source (" + ", ".join(repr(p.source) for p in ff) + ")")
        m_rec: np.ndarray | None = None
        rec_nodes: list[str] = []
        delayed: list[tuple[_Path, np.ndarray]] = []   # own loops through a Delay: synapses
        for path in rec:
            m = self._matrix(path, n)
            if m is None:
                return None
            if m.shape != (n, n):
                self.add(path.nodes[0], "weight", f"recurrent weight of shape "
                         f"{m.shape}, expected {(n, n)}")
                return None
            nodes = tuple(reversed(path.nodes))
            self._note(name, kind, nodes, path.biased)
            if path.delay_nodes:
                path.align = path.backs - 1   # the same depth: one Dense hop per back edge
                if path.align + _live_delays(path)[0] < 0:
                    self.add(path.delay_nodes[0], "delay", f"the own loop of {name!r} has no "
                             "back edge of the reference: no Lava connection is that fast")
                elif path.align + _live_delays(path)[1] > MAX_DELAY:
                    self.add(path.delay_nodes[0], "delay", f"the own loop of {name!r} needs a "
                             f"synaptic delay of up to {_live_delays(path)[1]} steps; Loihi "
                             f"2's DelayDense delays at most {MAX_DELAY}")
                delayed.append((path, m))
                continue
            m_rec = m if m_rec is None else m_rec + m
            if path.bias is not None:
                b = b + path.bias
            rec_nodes.extend(nodes)
        parts = layout[name]
        if len(self.out) > before:
            return None
        if len(parts) > 1:
            self._split_pass(name, kind, shape, parts, c_m, c_s)
        self._own_loop_passes(name, parts, m_rec, delayed)
        # ------------------------------------------------------------------ populations
        dense_of: dict[int, np.ndarray] = {}   # a path's unrolled matrix, made once
        layers = []
        for j, (_, part) in enumerate(parts):
            idx = np.arange(n) if part is None else part
            th_p = theta[idx]
            if _uniform(th_p):
                sigma = np.ones(idx.size)
                th = float(th_p[0])
            else:
                sigma = 1.0 / th_p
                th = 1.0
            cm, cs = c_m[idx], c_s[idx]
            if isinstance(node, nir.IF | nir.I):
                gain = (dt * r[idx]) * sigma
                du, dv = 1.0, 0.0
                beta_v = np.zeros(idx.size)
            elif isinstance(node, nir.Threshold):  # v = u = this step's input: no state
                gain = sigma
                du, dv = 1.0, 1.0
                beta_v = np.zeros(idx.size)
            elif isinstance(node, nir.LIF | nir.LI):
                gain = cm * r[idx] * sigma
                du, dv = 1.0, float(cm[0])
                beta_v = cm * (f("v_leak")[idx] - v_reset[idx]) * sigma
            else:
                gain = cm * r[idx] * f("w_in")[idx] * sigma
                du, dv = float(cs[0]), float(cm[0])
                beta_v = cm * (f("v_leak")[idx] - v_reset[idx]) * sigma if leak_as_bias \
                    else np.zeros(idx.size)
            inputs: list[Synapse] = []
            for path in ff:
                src_parts: list[tuple[int, np.ndarray | None]] = (
                    [(-1 - graph_inputs.index(path.source), None)]
                    if path.source in graph_inputs else layout[path.source])
                got = self._synapses(name, path, gain, part, src_parts, dense_of, n)
                if got is None:
                    return None
                inputs.extend(got)
            if not inputs:  # every block from the sources is zero: keep one (zero) synapse
                path = ff[0]
                src_k, src_part = ((-1 - graph_inputs.index(path.source), None)
                                   if path.source in graph_inputs else layout[path.source][0])
                src_n = self._size(path.source) if src_part is None else src_part.size
                inputs.append(Synapse(source=src_k, weight=np.zeros((idx.size, src_n)),
                                      delay=max(0, self._align(name, path)),
                                      nodes=tuple(reversed(path.nodes)), back=path.backs))
            inputs.extend(self._own_loop_synapses(idx, gain, parts, m_rec, delayed))
            w_rec = None if m_rec is None else gain[:, None] * m_rec[np.ix_(idx, idx)]
            if name in self.merged:  # an LI synapse in front: u is its current, no constant
                du = self.merged[name]
            v_bias = beta_v if leak_as_bias else None   # the leak on v (a neuron bias)
            if leak_as_bias or name in self.merged:
                beta_v = np.zeros(idx.size)
            v_start = None if start is None else start[idx] * sigma
            if subtract:  # ATRLIF holds w = v' - th/2: its start and its bias shift with it
                v_start = (np.zeros(idx.size) if v_start is None else v_start) - th / 2
                v_bias = (np.zeros(idx.size) if v_bias is None else v_bias) - dv * th / 2
            channels = None if part is None else _channels(part, shape)
            layers.append(Layer(
                name=name if part is None else f"{name}/{j}", kind=kind, n=idx.size,
                shape=shape if part is None else (
                    (channels.size, *shape[1:]) if channels is not None else (idx.size,)),
                inputs=inputs, depth=depth[name], w_rec=w_rec, beta=gain * b[idx] + beta_v,
                du=du, dv=dv, theta=th, ge=sem.threshold == "ge", sigma=sigma,
                rec_nodes=tuple(rec_nodes), readout=readout,
                v_offset=v_reset[idx] if readout else None, node=name, part=part,
                v_start=v_start, v_bias=v_bias, subtract=subtract))
            ly = layers[-1]
            v_init = ly.v_init
            if v_init is not None and ly.depth > 0 and (
                    not np.all(np.isfinite(v_init)) or any(
                        np.any(v > ly.vth) for v in float_idle_v(v_init, ly.dv, ly.depth,
                                                                 ly.v_bias))):
                self.add(name, "v_reset", f"{kind}: its start (v0 - v_reset, brought back over "
                         f"the {ly.depth} Lava step(s) before its first real step: decay"
                         + (" and the leak's neuron bias" if leak_as_bias else "")
                         + ") exceeds the threshold there: Lava would fire before the "
                         "reference's first step")
        if len(self.out) > before:
            return None
        return layers

    def _size(self, name: str) -> int:
        return int(np.prod(self.c.out_shapes[name]))

    def _threshold_node(self, name: str, theta: np.ndarray) -> None:
        """Refuse what a ``Threshold`` (``z = x > theta``, no state) cannot be: on the
        fixed-point targets a population fed by an Input (its exact form, :func:`quantize`,
        needs a bound on the input), and per-neuron thresholds not all positive
        (``sigma = 1/theta`` would flip the compare)."""
        fed = [p for p in self.flat.preds[name] if self._source_of(p) in self.flat.inputs]
        if self.target != FLOAT_NAME and fed:
            self.add(name, "type", "Threshold fed by the Input on the fixed-point targets: "
                     "Lava's fixed-point voltage keeps trunc(v / 4096) into the next step at "
                     "the largest decay dv = 4095 (12 bits); the exact form (odd threshold "
                     "mantissa <= 4095, even weights, every input >= -4095 a-units: a "
                     "remainder within +-63 of v = 64 * a_in) needs a bound on the input, "
                     "which graded payloads (|x| <= 2**23 - 1) do not give; mapped on "
                     "lava-float, and on the fixed-point targets when fed by populations")
        if self.target != FLOAT_NAME and np.any(theta <= 0):
            self.add(name, "threshold", "a threshold <= 0 on the fixed-point targets: Loihi's "
                     "threshold mantissa is unsigned (vth >= 1 after the scaling; the offset "
                     "as a constant input is not built)")
        elif not _uniform(theta) and np.any(theta <= 0):
            self.add(name, "threshold", "per-neuron thresholds, not all positive: Lava has one "
                     "threshold per population, so each neuron's input is divided by its "
                     "threshold (compared with 1), which needs thresholds > 0")

    def _source_of(self, pred: str) -> str:
        """The neuron or Input upstream of ``pred`` through single-input nodes."""
        name, seen = self.resolve(pred), set()
        while (name not in self.flat.inputs and not isinstance(self.flat.nodes[name], NEURONS)
               and len(self.flat.preds[name]) == 1 and name not in seen):
            seen.add(name)
            name = self.resolve(self.flat.preds[name][0])
        return name

    @staticmethod
    def _own_loop_synapses(idx: np.ndarray, gain: np.ndarray,
                           parts: list[tuple[int, np.ndarray | None]], m_rec: np.ndarray | None,
                           delayed: list[tuple[_Path, np.ndarray]]) -> list[Synapse]:
        """The synapses of a node's own loop into its population ``idx`` (flat indices,
        ``gain`` per neuron) that are no recurrent Dense of the population: from each other
        population of the node (``parts``: layer index and flat indices) the block of the
        undelayed loop ``m_rec`` ``[n, n]`` (a connection back of delay 0: one Dense hop is
        the reference's back edge), and from every population, itself included, the block of
        each loop through a ``Delay`` (``delayed``: path and its matrix), a ``DelayDense`` of
        its ``Delay`` steps. All-zero blocks are left out."""
        got: list[Synapse] = []
        for src_k, src_part in parts:
            src_idx = np.arange(idx.size) if src_part is None else src_part
            own = src_idx is idx or np.array_equal(src_idx, idx)
            if m_rec is not None and not own:
                block = m_rec[np.ix_(idx, src_idx)]
                if np.any(block):
                    got.append(Synapse(source=src_k, weight=gain[:, None] * block, back=1))
            for path, m in delayed:
                block = m[np.ix_(idx, src_idx)]
                if not np.any(block):
                    continue
                steps = _block_delay(path.delay, block, idx, src_part)
                got.append(Synapse(source=src_k, weight=gain[:, None] * block,
                                   delay=path.align + steps,
                                   nodes=tuple(reversed(path.nodes)) + path.delay_nodes,
                                   node_delay=steps, back=path.backs))
        return got

    def _own_loop_passes(self, name: str, parts: list[tuple[int, np.ndarray | None]],
                         m_rec: np.ndarray | None, delayed: list[tuple[_Path, np.ndarray]]
                         ) -> None:
        """List how the own loops of ``name`` map: blocks between its populations of
        different time constants, and loops through a ``Delay`` (see
        :meth:`_own_loop_synapses`)."""
        if m_rec is not None and len(parts) > 1:
            cross = [(i, j) for i, (_, p) in enumerate(parts) for j, (_, q) in enumerate(parts)
                     if i != j and p is not None and q is not None
                     and np.any(m_rec[np.ix_(p, q)])]
            if cross:
                self.passes.append(
                    f"the own loop of {name!r} joins its populations of different time "
                    "constants: " + ", ".join(f"{name}/{j} -> {name}/{i}" for i, j in cross)
                    + " are connections back of delay 0 (a Dense: its one step is the "
                    "reference's back edge), the blocks within a population its recurrent "
                    "Dense")
        for path, _ in delayed:
            low, high = _live_delays(path)
            steps = f"{low}" if low == high else f"{low}-{high}"
            self.passes.append(
                f"the own loop of {name!r} through Delay "
                f"{', '.join(repr(d) for d in path.delay_nodes)}: the reference delays it by "
                f"{path.backs} back edge(s) and {steps} step(s) of Delay; in Lava a DelayDense "
                f"from the population to itself of {path.align + low if low == high else steps}"
                " step(s) (its one Dense hop is the back edge)")

    def _split_pass(self, name: str, kind: str, shape: Shape,
                    parts: list[tuple[int, np.ndarray | None]], c_m: np.ndarray,
                    c_s: np.ndarray) -> None:
        """List the split of ``name`` into populations of one decay each."""
        dt = self.sem.require_dt()
        desc = []
        for j, (_, p) in enumerate(parts):
            assert p is not None
            channels = _channels(p, shape)
            where = (f"{p.size} neurons" if channels is None else
                     f"channel{'s' if channels.size > 1 else ''} "
                     + _ranges(channels) + f", {p.size} neurons")
            decay = (f"du {c_s[p[0]]:.6g}, dv {c_m[p[0]]:.6g}"
                     if kind in ("CubaLIF", "CubaLI") else f"dv {c_m[p[0]]:.6g}")
            desc.append(f"{name + '/' + str(j)!r} ({where}; {decay} per step of {dt:g} s)")
        self.passes.append(f"split {kind} {name!r} ({int(np.prod(shape))} neurons, "
                           f"{len(parts)} different time constants) into {len(parts)} Lava "
                           "populations with one decay each: " + ", ".join(desc))

    def _synapses(self, name: str, path: _Path, gain: np.ndarray, part: np.ndarray | None,
                  src_parts: list[tuple[int, np.ndarray | None]],
                  dense_of: dict[int, np.ndarray], n: int) -> list[Synapse] | None:
        """The synapses of ``path`` into the population ``part`` of ``name`` (flat indices;
        None: all its neurons; ``gain`` per neuron of it), one per population of the source
        (``src_parts``: layer index and flat indices); a block that is all zero is left out
        when the source has several populations."""
        delay = self._align(name, path)
        nodes = tuple(reversed(path.nodes)) + path.delay_nodes
        got: list[Synapse] = []
        for source, src_part in src_parts:
            if path.conv is not None:
                conv = self._conv_block(name, path, gain, part, src_part, delay)
                if conv == "zero":
                    continue
                if isinstance(conv, tuple):
                    got.append(Synapse(source=source, weight=conv[0], kind="conv", delay=0,
                                       nodes=nodes, geometry=conv[1], back=path.backs))
                    continue
            if id(path) not in dense_of:
                m = self._matrix(path, n)
                if m is None:
                    return None
                src_n = self._size(path.source)
                if m.shape != (n, src_n):
                    self.add(path.nodes[0] if path.nodes else name, "weight",
                             f"maps {m.shape[1]} values to {m.shape[0]}; {path.source!r} gives "
                             f"{src_n} and {name!r} has {n} neurons")
                    return None
                dense_of[id(path)] = m
            m = dense_of[id(path)]
            block = m if part is None and src_part is None else m[np.ix_(
                np.arange(n) if part is None else part,
                np.arange(m.shape[1]) if src_part is None else src_part)]
            if len(src_parts) > 1 and not np.any(block):
                continue
            steps = _block_delay(path.delay, block, part, src_part)
            got.append(Synapse(source=source, weight=gain[:, None] * block, delay=delay + steps,
                               nodes=nodes, node_delay=steps, back=path.backs))
        return got

    def _conv_block(self, name: str, path: _Path, gain: np.ndarray, part: np.ndarray | None,
                    src_part: np.ndarray | None, delay: int
                    ) -> tuple[np.ndarray, ConvGeometry] | str | None:
        """The convolution of ``path`` from the source population ``src_part`` to the
        population ``part`` (flat indices, None: all), the gain folded into the kernel per
        output channel: ``(kernel, geometry)``, ``"zero"`` where those channels are not
        connected, or None (the caller unrolls it to a dense block) where the gain differs
        within an output channel, a population is not whole channels, or the input must be
        delayed (Lava has no delayed Conv)."""
        assert path.conv is not None
        kernel, geo = path.conv
        out_ch = None if part is None else _channels(part, geo.out_shape)
        in_ch = None if src_part is None else _channels(src_part, geo.in_shape)
        per_channel = gain.reshape(geo.out_shape[0] if out_ch is None else out_ch.size, -1) \
            if part is None or out_ch is not None else gain[:, None]
        why = None
        if delay:
            why = f"its input must wait {delay} step(s) (Lava has no delayed Conv)"
        elif path.delay_nodes:
            why = (f"it carries the delay of {', '.join(repr(d) for d in path.delay_nodes)} "
                   "(Lava has no delayed Conv)")
        elif (part is not None and out_ch is None) or (src_part is not None and in_ch is None):
            why = "a population of the split node is not whole channels"
        elif not np.all(per_channel == per_channel[:, :1]):
            why = "the neurons' gains differ within an output channel"
        if why is not None:
            self._once(f"convolution into {name!r} as a dense matrix: {why}")
            return None
        if out_ch is not None or in_ch is not None:
            block = conv_block(kernel, geo,
                               np.arange(geo.out_shape[0]) if out_ch is None else out_ch,
                               np.arange(geo.in_shape[0]) if in_ch is None else in_ch)
            if block is None:
                return "zero"
            kernel, geo = block
        return per_channel[:, 0, None, None, None] * kernel, geo

    def _note(self, name: str, kind: str, nodes: tuple[str, ...], biased: list[str]) -> None:
        """Record the passes a path into ``name`` needed (the reports list them)."""
        if any(isinstance(self.flat.nodes[w], CONVS + POOLS) for w in nodes):
            nodes = ()   # _path listed what it did with a convolution or a pool
        nodes = tuple(w for w in nodes if isinstance(self.flat.nodes[w], WEIGHTS))
        if len(nodes) > 1:
            kinds = " -> ".join(f"{type(self.flat.nodes[w]).__name__} {w!r}" for w in nodes)
            self.passes.append(f"fold {kinds} into one weight matrix + bias into {name!r}")
        elif nodes and isinstance(self.flat.nodes[nodes[0]], nir.Scale):
            self.passes.append(f"Scale {nodes[0]!r} as a diagonal weight matrix into {name!r}")
        if biased:
            where = ("the neuron's bias (u keeps one step's input: a bias on v)"
                     if kind in ("LIF", "IF", "LI", "I", "Threshold") and name not in self.merged
                     else "a constant synaptic input")
            self.passes.append(f"bias of {', '.join(repr(w) for w in biased)} -> {where} of "
                               f"{name!r}")


def analyse(checked: Checked, semantics: Semantics, target: str) -> tuple[Plan | None,
                                                                          list[Violation]]:
    """The plan of ``checked`` and every reason the Lava targets cannot run it."""
    a = _Analysis(checked, semantics, target)
    try:
        semantics.require_dt()
    except NIRError as exc:
        return None, [Violation(target, None, "dt", exc.message)]
    plan = a.run()
    return (plan if not a.out else None), a.out


def plan_or_raise(checked: Checked, semantics: Semantics, target: str) -> Plan:
    plan, found = analyse(checked, semantics, target)
    refuse(target, found)
    assert plan is not None  # analyse maps whatever it finds no violation in
    return plan


# --------------------------------------------------------------------------------------------
# Loihi-2 fixed point: quantization chosen by us
# --------------------------------------------------------------------------------------------

#: A read-out's threshold mantissa: ``READOUT_VTH << 6 = 2**23`` exceeds every v (clipped to
#: ``2**23 - 1``), so it never fires.
READOUT_VTH = 2**17
#: The largest threshold mantissa of a dense layer that feeds a layer whose constant input is
#: an always-on channel: a neuron bias of ``vth + 1 <= BIAS_MAX`` fires that channel's neuron
#: every step (netx).
ALWAYS_ON_VTH_MAX = BIAS_MAX - 1


def bias_as_weight(layer: Layer) -> bool:
    """Whether the layer's constant input enters its synaptic current (``CubaLIF``/``CubaLI``
    with an Affine bias; Lava's only neuron constant, the bias, enters ``v``): then it is the
    weight of an always-on channel (one more column of its single dense synapse in netx)."""
    return layer.kind in ("CubaLIF", "CubaLI") and bool(np.any(layer.beta != 0)) \
        and len(layer.inputs) == 1 and layer.inputs[0].kind == "dense"


@dataclass
class FixedLayer(_Chain):
    """A layer in Loihi-2 integers: ``a_in = sum of the synapses' W @ s (+ w_rec @ z[t-1]) +
    bias`` (a-units; ``u`` gets ``a_in << 6``), ``du``/``dv`` 12-bit, threshold ``vth << 6``.
    A read-out's voltage in reference units is ``v / (64 * scale) + v_offset``."""

    name: str
    n: int
    inputs: list[Synapse]      # int64 weights: Lava's effective ones (8-bit, sign mode each)
    depth: int
    w_rec: np.ndarray | None
    bias: np.ndarray           # int64, per step, a-units
    du: int
    dv: int
    vth: int
    scale: float               # a-units per float-Lava unit (rho)
    readout: bool = False
    v_offset: np.ndarray | None = None
    report: dict[str, Any] = field(default_factory=dict)
    #: Lava's initial ``v`` (int64 per neuron, 64ths of an a-unit; None: 0): its ``depth`` idle
    #: steps land closest to ``round(64 * scale * Layer.v_start)`` (:func:`fixed_v_init`)
    v_init: np.ndarray | None = None
    #: the neuron bias on ``v`` (int64 per neuron, a-units: Lava's ``bias_mant`` at ``bias_exp
    #: = 6``, ``v`` gets ``64 * v_bias`` every step, idle ones included; None: 0):
    #: ``round(scale * Layer.v_bias)``
    v_bias: np.ndarray | None = None
    #: subtract reset: an ATRLIF population (``vth`` is its ``theta_0``: it fires at ``v - r >=
    #: vth << 6`` and adds ``2 * (vth << 6)`` to ``r``, which decays as ``v``)
    subtract: bool = False

    @property
    def v_start(self) -> np.ndarray | None:
        """``v`` at the first real step: ``v_init`` after the ``depth`` idle steps (decay and
        ``v_bias``; the latency-free ``loihi`` emulator starts from it; None: 0)."""
        if self.v_init is None:
            return None
        return lava_decay_v(self.v_init, self.dv, self.depth, self.v_bias)

    def voltage(self, v: np.ndarray) -> np.ndarray:
        """A read-out's integer ``v`` (any shape ending in ``n``) in reference units."""
        off = 0.0 if self.v_offset is None else self.v_offset
        return np.asarray(v, dtype=np.float64) / (64.0 * self.scale) + off


@dataclass
class FixedPlan:
    """The quantized network. input_scale: inputs are sent as the integer payloads
    ``round(x * input_scale)`` and the synapses fed by the Input hold ``1 / input_scale`` of
    their weights (None: inputs are integers, sent as they are)."""

    plan: Plan
    layers: list[FixedLayer]
    input_scale: float | None = None

    def report(self) -> dict[str, Any]:
        return {"passes": list(self.plan.passes), "input": self.input_report(),
                "layers": [dict(name=fl.name, **fl.report) for fl in self.layers]}

    def input_report(self) -> dict[str, Any]:
        """How inputs become payloads (the quantization report's ``input``)."""
        if self.input_scale is None:
            return {"input_scale": None, "payload": "the input as given: integers (binary "
                    "spikes, or graded payloads |x| <= 2**23 - 1)"}
        return {"input_scale": self.input_scale,
                "payload": "round(x * input_scale), half to even; |payload| <= 2**23 - 1 "
                           "(24-bit graded spikes)",
                "weights": "the weights of the synapses fed by the Input are divided by "
                           "input_scale before quantization"}


def sign_range(w: np.ndarray) -> tuple[str, int, int, int]:
    """Lava's sign mode for a weight matrix, its clip range and the value step."""
    if np.all(w >= 0):
        return ("excitatory", *W_EXC, 1)
    if np.all(w <= 0):
        return ("inhibitory", *W_INH, 1)
    return ("mixed", *W_MIXED, 2)


def quantize_weights(w: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """Round to the 8-bit weights Lava keeps (mixed sign: even values in [-256, 254]); the
    sign mode is that of ``like`` (default: ``w``)."""
    _, lo, hi, step = sign_range(w if like is None else like)
    return np.clip(step * np.round(w / step), lo, hi).astype(np.int64)


def lava_dense_weights(w: np.ndarray) -> np.ndarray:
    """What lava's fixed-point Dense makes of integer weights ``w`` (clip_weights then
    truncate_weights with 8 bits, sign mode from the matrix, ``weight_exp`` 0)."""
    w = np.asarray(w, dtype=np.int64)
    if np.all(w >= 0):
        return np.clip(w, 0, 255)
    if np.all(w <= 0):
        return -np.clip(-w, 0, 255)
    return (np.clip(w, -256, 255) >> 1) << 1


def _max_abs(a: np.ndarray | None) -> float:
    return 0.0 if a is None or a.size == 0 else float(np.max(np.abs(a)))


def _weight_top(a: np.ndarray | None, like: np.ndarray | None = None
                ) -> tuple[int, float] | None:
    """``(top, max|a|)``: scaled by ``s``, ``a`` fits Lava's 8-bit weights (sign mode of
    ``like``, default ``a``) while ``s * max|a| <= top`` (None: all zero)."""
    m = _max_abs(a)
    if a is None or m == 0:
        return None
    mode, _, hi, _ = sign_range(a if like is None else like)
    return (hi if mode != "inhibitory" else 255), m


#: A ``Threshold`` layer's largest threshold mantissa and lowest input (a-units): its
#: non-spiking voltage ``|v| < 2**18`` leaves a remainder ``|trunc(v / 4096)| <= 63`` (dv =
#: 4095), below the margin 64 of ``64 * a_in`` (even) against ``vth << 6`` (vth odd).
THRESHOLD_VTH_MAX = 4095


def _even_weights(w: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """``w`` rounded to even 8-bit weights in the sign mode of ``like`` (default ``w``)."""
    _, lo, hi, _ = sign_range(w if like is None else like)
    return np.clip(2 * np.round(w / 2), lo + (lo % 2), hi - (hi % 2)).astype(np.int64)


def _even_bias(beta: np.ndarray) -> np.ndarray:
    """A constant input rounded to even a-units within the 13-bit bias mantissa."""
    return np.clip(2 * np.round(beta / 2), -(BIAS_MAX - 1), BIAS_MAX - 1).astype(np.int64)


def _input_low(layer: Layer, synapses: list[np.ndarray], w_rec: np.ndarray | None,
               bias: np.ndarray) -> int:
    """The lowest ``a_in`` (a-units) a population can receive from spiking sources (values 0
    or 1): per neuron its bias plus every negative weight (a convolution: per output channel
    the negative kernel entries, a bound), the smallest over the neurons."""
    low = bias.astype(np.int64).copy()
    for syn, w in zip(layer.inputs, synapses, strict=True):
        if syn.kind == "conv":
            per = np.minimum(w, 0).reshape(w.shape[0], -1).sum(axis=1)
            low += np.repeat(per, layer.n // max(1, w.shape[0]))
        else:
            low += np.minimum(w, 0).sum(axis=1)
    if w_rec is not None:
        low += np.minimum(w_rec, 0).sum(axis=1)
    return int(low.min()) if low.size else 0


def _threshold_vth(layer: Layer, inputs: list[Synapse], joint: np.ndarray | None, v: int,
                   forced: bool) -> tuple[int, int]:
    """The threshold mantissa of a ``Threshold`` layer (a LIF with du = dv = 4095): odd, at
    most ``v`` and :data:`THRESHOLD_VTH_MAX`, with even weights and bias whose lowest input is
    at least ``-THRESHOLD_VTH_MAX`` a-units; then each step's compare ``64 * a_in + r >
    vth << 6`` (``r = trunc(v_prev / 4096)``, ``|r| <= 63``) is ``a_in > vth`` exactly. Returns
    ``(vth, lowest input)``; NIRError (field ``vth``) when the option ``vth`` forces another
    value or no mantissa fits."""
    if forced and (v % 2 == 0 or v > THRESHOLD_VTH_MAX):
        v = 0   # refused below
    v = min(v, THRESHOLD_VTH_MAX)
    v -= 1 - v % 2   # odd
    while v >= 1:
        rho = v / layer.theta
        ws = [_even_weights(rho * s.weight, joint) for s in inputs]
        w_rec = None if layer.w_rec is None else _even_weights(rho * layer.w_rec, joint)
        low = _input_low(layer, ws, w_rec, _even_bias(rho * layer.beta))
        if low >= -THRESHOLD_VTH_MAX:
            return v, low
        if forced:
            break
        v = min(v - 2, int(v * THRESHOLD_VTH_MAX / -low))
        v -= 1 - v % 2
    raise NIRError(f"Threshold {layer.name!r} on the fixed-point targets needs an odd "
                   f"threshold mantissa <= {THRESHOLD_VTH_MAX} whose even weights and bias keep "
                   f"every input >= -{THRESHOLD_VTH_MAX} a-units (the remainder Lava's voltage "
                   "keeps then never changes a compare)"
                   + ("; the option vth forces another" if forced else ""),
                   node=layer.node or layer.name, field="vth")


#: ATRLIF's ``theta_0`` is 12-bit unsigned: the threshold mantissa ``2 * theta_0`` of a
#: subtract-reset population is even and at most 8190.
SUBTRACT_VTH_MAX = 2 * DECAY_MAX


def _subtract_vth(layer: Layer, v: int, forced: bool) -> int:
    """The threshold mantissa ``2 * theta_0`` of an ATRLIF population (subtract reset): even,
    at most ``v`` and 8190, and low enough that ``v = w + r`` stays in its 24 bits (Lava clips
    ``v``, not ``r``) for a neuron firing every step at ``w`` up to ``theta_0 << 6``: ``r``
    tends to ``2 * (theta_0 << 6) * 4096 / dv``, so ``64 * theta_0 * (8192 / dv + 1) <= 2**23 -
    1``. ``forced`` (option vth): ``v`` must be such a value."""
    dv = round(4096 * layer.dv)
    if dv <= 0:
        raise NIRError(f"{layer.name!r}: subtract reset in fixed point needs a leak: ATRLIF's r "
                       "never decays at dv = 0 and v (clipped at 2**23 - 1) grows with it",
                       node=layer.node or layer.name, field="reset")
    cap = min(SUBTRACT_VTH_MAX, 2 * int((UV_MAX - 1) / (64 * (8192 / dv + 1))))
    if forced and (v % 2 or v > cap):
        raise NIRError(f"option vth = {v}: the subtract-reset (ATRLIF) layer {layer.name!r} "
                       f"needs an even threshold mantissa 2 * theta_0 <= {cap} (theta_0 12 "
                       f"bits; r within v's 24 bits at dv = {dv})",
                       node=layer.node or layer.name, field="vth")
    return max(2, min(v, cap) // 2 * 2)


def quantize(plan: Plan, *, vth: int | None = None,
             input_scale: float | None = None) -> FixedPlan:
    """Choose the fixed-point parameters of every layer.

    Per layer: the largest threshold mantissa ``VTH <= 2**17 - 1`` such that the scaled weights
    of every synapse fit 8 bits (254 for mixed sign, 255 otherwise) and the constant input fits
    a 13-bit bias mantissa (4095); ``rho = VTH / theta``; weights ``round(rho * w)`` (even for
    mixed sign), bias ``round(rho * beta)``; ``dv = round(4096 * c_mem)``,
    ``du = round(4096 * c_syn) - 1`` (Loihi adds 1 to du; LIF/IF/LI/I: du = 4095, full decay)
    clipped to 12 bits. ``vth`` forces the threshold mantissa. A read-out (no threshold) takes
    the largest ``rho`` those limits allow and ``vth = 2**17`` (never fires).

    A ``CubaLIF``/``CubaLI`` layer's constant input (it enters the synaptic current) is
    quantized as the weight of an always-on channel (:func:`bias_as_weight`): 8 bits, in the
    sign mode of its weights, so that netx can hold it as one more input column; the dense
    layer feeding it keeps ``VTH <= ALWAYS_ON_VTH_MAX`` so that netx can hold that channel as
    one more neuron of it (a neuron bias above its threshold fires it every step).

    ``input_scale``: the inputs are sent as payloads ``round(x * input_scale)``, so the weights
    of every synapse fed by the Input are divided by it before all of the above.
    """
    always_on_feeders = {layer.inputs[0].source for layer in plan.layers
                         if bias_as_weight(layer) and layer.inputs[0].source >= 0}
    layers = []
    for k, layer in enumerate(plan.layers):
        as_weight = bias_as_weight(layer)
        inputs = layer.inputs if input_scale is None else [
            replace(s, weight=s.weight / input_scale) if s.source < 0 else s
            for s in layer.inputs]
        # a recurrent layer: one sign mode for its feed-forward and recurrent weights (netx's
        # dense_rec encodes them together); a constant input held as a weight joins them
        joint = None if layer.w_rec is None and not as_weight else np.concatenate(
            [*([] if layer.w_rec is None else [layer.w_rec.reshape(-1)]),
             *(s.weight.reshape(-1) for s in inputs),
             *([layer.beta] if as_weight else [])])
        tops: list[tuple[float, float]] = [
            t for t in (_weight_top(a, joint) for a in [*(s.weight for s in inputs), layer.w_rec])
            if t is not None]
        mb = _max_abs(layer.beta)
        if mb > 0:
            top_b = _weight_top(layer.beta, joint) if as_weight else (BIAS_MAX, mb)
            assert top_b is not None
            tops.append(top_b)
        if _max_abs(layer.v_bias) > 0:   # the leak as a 13-bit neuron bias
            tops.append((BIAS_MAX, _max_abs(layer.v_bias)))
        if layer.readout and layer.v_start is not None and _max_abs(layer.v_start) > 0 \
                and layer.dv < 1:
            # a read-out's start, divided by its idle decays, within the 24-bit v (the
            # truncating decay: a margin of 1 %; dv = 1 forgets the start)
            keep_k = (1.0 - layer.dv) ** layer.depth
            tops.append((0.99 * (UV_MAX - 1) * keep_k / 64, _max_abs(layer.v_start)))
        stateless = layer.kind == "Threshold"
        a_low = 0
        if layer.readout:
            rho = min((top / m for top, m in tops), default=1.0)
            v = READOUT_VTH
        elif stateless:
            limits = [float(THRESHOLD_VTH_MAX)] + [top * layer.theta / m for top, m in tops]
            v, a_low = _threshold_vth(layer, inputs, joint, max(1, int(math.floor(min(limits))))
                                      if vth is None else int(vth), vth is not None)
            rho = v / layer.theta
        else:
            cap = ALWAYS_ON_VTH_MAX if k in always_on_feeders else VTH_MAX
            limits = [float(cap)] + [top * layer.theta / m for top, m in tops]
            v = int(vth) if vth is not None else max(1, int(math.floor(min(limits))))
            if layer.subtract:
                v = _subtract_vth(layer, v, vth is not None)
            rho = v / layer.theta
        weights_of = _even_weights if stateless else quantize_weights
        synapses = [Synapse(source=s.source, weight=weights_of(rho * s.weight, joint),
                            kind=s.kind, delay=s.delay, nodes=s.nodes, geometry=s.geometry,
                            node_delay=s.node_delay, back=s.back)
                    for s in inputs]
        w_rec = None if layer.w_rec is None else weights_of(rho * layer.w_rec, joint)
        bias = (quantize_weights(rho * layer.beta, joint) if as_weight
                else _even_bias(rho * layer.beta) if stateless
                else np.round(rho * layer.beta).astype(np.int64))
        du = int(np.clip(round(4096 * layer.du) - 1, 0, DECAY_MAX))  # du = 1: 4095
        dv = int(np.clip(round(4096 * layer.dv), 0, DECAY_MAX))

        def err(q: np.ndarray | None, x: np.ndarray | None, rho: float = rho) -> float:
            if q is None or x is None or x.size == 0 or _max_abs(x) == 0:
                return 0.0
            return float(np.max(np.abs(q / rho - x)) / _max_abs(x))

        w_all = np.concatenate([s.weight.reshape(-1) for s in synapses])
        report: dict[str, Any] = {
            "kind": layer.kind, "neurons": layer.n, "depth": layer.depth,
            "sources": [s.source for s in inputs],
            "vth_mant": v, "threshold_v": v << 6, "scale_a_per_unit": rho,
            "weight_sign_mode": [sign_range(s.weight)[0] for s in synapses]
            if len(synapses) > 1 else sign_range(synapses[0].weight)[0],
            "weight_max_abs": int(_max_abs(w_all)),
            "weight_rel_error_max": max(err(q.weight, s.weight)
                                        for q, s in zip(synapses, inputs, strict=True)),
            "weights_clipped": int(sum(np.sum(np.abs(rho * s.weight) > 256.5)
                                       for s in inputs)),
            "bias_max_abs": int(_max_abs(bias)), "bias_rel_error_max": err(bias, layer.beta),
            "du": du, "du_float": layer.du, "du_effective": (du + 1) / 4096,
            "dv": dv, "dv_float": layer.dv, "dv_effective": dv / 4096,
        }
        if layer.readout:
            report["readout"] = ("voltage v / (64 * scale_a_per_unit) + v_offset; never fires "
                                 "(vth << 6 = 2**23 > the 24-bit v); v saturates at "
                                 "±(2**23 - 1)")
        elif layer.subtract:
            report["threshold_compare"] = (
                f"ATRLIF: w = v - r fires at w >= theta_0 << 6 (theta_0 = {v // 2}) and drops "
                "by 2 * (theta_0 << 6): the subtract reset of v' - theta/2 (offset start and "
                "neuron bias); r decays as v")
        else:
            report["threshold_compare"] = "v > vth<<6" + (
                " (graph asks v >= v_th: differs only where v equals the quantized threshold)"
                if layer.ge else "")
        if stateless:
            report["threshold_exact"] = (
                f"Threshold: odd vth_mant <= {THRESHOLD_VTH_MAX}, even weights and bias, inputs "
                f">= {a_low} a-units (at least -{THRESHOLD_VTH_MAX}): the remainder trunc(v / "
                "4096) that Lava's voltage keeps (dv = 4095) stays within +-63 of v = 64 * "
                "a_in, so each step fires exactly where a_in > vth_mant")
        if w_rec is not None:
            report.update(rec_weight_sign_mode=sign_range(w_rec)[0],
                          rec_weight_rel_error_max=err(w_rec, layer.w_rec))
        if as_weight:
            report["bias_as_weight"] = ("the constant synaptic input is quantized as the weight "
                                        "of an always-on channel (8 bits, the weights' sign "
                                        "mode): netx holds it as one more input column")
        if k in always_on_feeders and vth is None:
            report["vth_capped_for_always_on"] = (
                f"vth_mant <= {ALWAYS_ON_VTH_MAX}: netx holds the always-on channel of the "
                "next layer's constant input as one more neuron here, fired every step by a "
                "neuron bias above the threshold (13-bit bias mantissa)")
        v_init = v_bias = None
        if layer.v_bias is not None:
            v_bias = np.round(rho * layer.v_bias).astype(np.int64)
            if _max_abs(v_bias) > BIAS_MAX:   # only where the option vth forces the scale
                raise NIRError(f"{layer.name!r}: its leak as a neuron bias needs a mantissa of "
                               f"{int(_max_abs(v_bias))} at threshold mantissa {v}; Loihi's "
                               f"holds 13 bits (at most {BIAS_MAX})",
                               node=layer.node or layer.name, field="vth")
            report["v_bias"] = {
                "bias_mant_max_abs": int(_max_abs(v_bias)), "bias_exp": 6,
                "rel_error_max": err(v_bias, layer.v_bias),
                "note": "the leak c_mem * (v_leak - v_reset) as Lava's neuron bias (a constant "
                        "on v; u filters its input), bias_mant = round(scale * leak) a-units"}
        if layer.v_start is not None or v_bias is not None:
            start = np.zeros(layer.n) if layer.v_start is None else layer.v_start
            wanted = np.clip(np.round(64 * rho * start), -(UV_MAX - 1), UV_MAX - 1)
            v_init = fixed_v_init(wanted.astype(np.int64), dv, layer.depth, v_bias)
            idle = v_init
            for _ in range(layer.depth):
                idle = lava_decay_v(idle, dv, 1, v_bias)
                if np.any(idle > v << 6) or (layer.subtract and np.any(idle >= v << 5)):
                    raise NIRError(f"{layer.name!r}: its start (v0 - v_reset), brought back "
                                   f"over the {layer.depth} Lava step(s) before its first real "
                                   "step (decay and neuron bias), exceeds the threshold there: "
                                   "Lava would fire before the reference's first step",
                                   node=layer.node or layer.name, field="v_reset")
            report["v_init"] = {
                "idle_decays": layer.depth,
                "start_error_max": int(np.max(np.abs(idle - wanted), initial=0)),
                "note": "Lava's initial v: its idle steps (latency; decay and neuron bias) land "
                        "closest to round(64 * scale * (v0 - v_reset)); start_error_max in "
                        "64ths of an a-unit"}
        for s in synapses:
            s.weight = lava_dense_weights(s.weight)
        layers.append(FixedLayer(name=layer.name, n=layer.n, inputs=synapses,
                                 depth=layer.depth,
                                 w_rec=None if w_rec is None else lava_dense_weights(w_rec),
                                 bias=bias, du=du, dv=dv, vth=v // 2 if layer.subtract else v,
                                 scale=rho,
                                 readout=layer.readout, v_offset=layer.v_offset,
                                 report=report, v_init=v_init, v_bias=v_bias,
                                 subtract=layer.subtract))
    return FixedPlan(plan=plan, layers=layers, input_scale=input_scale)
