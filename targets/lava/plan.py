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
    CubaLIF  i  = i + w_in*x;  v' = (1 - c_mem) v' + c_mem*r*i;  i = (1 - c_syn) i
             (needs v_leak == v_reset)

so ``u = gain * i`` (CubaLIF, ``du = c_syn``) or ``u = gain * x`` (LIF/IF, ``du = 1``: u holds
this step's input only), ``dv = c`` (0 for IF), ``gain = c*r*w_in*sigma`` and the Dense weights
are ``gain * W``. An ``Affine`` bias and the LIF's ``c*(v_leak - v_reset)`` are a constant input
``beta`` per step. ``sigma`` is 1 when ``v_threshold - v_reset`` is the same for every neuron of a
node, else ``1/(v_threshold - v_reset)`` per neuron (threshold 1).

Latency: every Dense hop delays by one step, so a neuron at depth ``k`` (k Dense hops from the
input) does its step ``t`` at Lava step ``t + k``. The Lava targets run ``T + depth`` steps and
read outputs from step ``depth + 1`` on. Nothing may happen before a neuron's first real step:
states start at 0 and the constant input ``beta`` comes through a Dense from a source whose
channel for depth ``k`` is zero before Lava step ``k`` (so it arrives exactly at step ``k + 1``).
A neuron's own recurrent ``Linear``/``Affine`` loop is one Dense hop: it delivers ``z[t-1]``,
the reference's back-edge value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

from nrf_nir.errors import NIRError
from nrf_nir.semantics import Semantics
from nrf_nir.targets import Violation, refuse
from nrf_nir.validate import Checked, Identity, Shape

FLOAT_NAME = "lava-float"
FIXED_NAME = "lava-fixed"
LOIHI_NAME = "loihi"

NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)
WEIGHTS = (nir.Affine, nir.Linear)
PASS = (nir.Input, nir.Output, Identity, nir.Flatten)

# Loihi-2 fixed-point limits (lava/proc/lif/models.py, lava/proc/dense/models.py)
VTH_MAX = 2**17 - 1          # vth: 17-bit unsigned mantissa, compared as vth << 6
DECAY_MAX = 4095             # du, dv: 12-bit unsigned
BIAS_MAX = 4095              # bias_mant: 13-bit signed (netx uses bias_exp = 6)
UV_MAX = 2**23               # u, v: 24-bit signed
W_MIXED = (-256, 254)        # mixed-sign 8-bit weights: the lowest bit is dropped (even values)
W_EXC = (0, 255)
W_INH = (-255, 0)


# --------------------------------------------------------------------------------------------
# the plan: a tree of neuron layers rooted at the graph's Input
# --------------------------------------------------------------------------------------------

@dataclass
class Layer:
    """One neuron node as a Lava LIF population, in float (Lava ``floating_pt``) units.

    source: index of the layer whose spikes feed it (-1: the graph input); depth: Dense hops
    from the input. w_ff ``[n, n_src]``, w_rec ``[n, n]`` (None: no recurrent loop) and beta
    ``[n]`` are the inputs to ``u`` per spike / per step (gain folded in).
    """

    name: str
    kind: str
    n: int
    shape: Shape
    source: int
    depth: int
    w_ff: np.ndarray
    w_rec: np.ndarray | None
    beta: np.ndarray
    du: float
    dv: float
    theta: float
    ge: bool
    sigma: np.ndarray
    weight_nodes: tuple[str, ...] = ()
    rec_nodes: tuple[str, ...] = ()

    @property
    def vth(self) -> float:
        """Lava's strict ``v > vth``; ``ge`` is ``v > predecessor(theta)`` (exact in float64)."""
        return float(np.nextafter(self.theta, -np.inf)) if self.ge else float(self.theta)


@dataclass
class Plan:
    """A graph the Lava targets can run: input, layers (parents before children), outputs."""

    input_name: str
    input_shape: Shape
    n_in: int
    layers: list[Layer]
    outputs: dict[str, int]          # Output node -> layer index
    out_shapes: dict[str, Shape]
    dt: float

    @property
    def index(self) -> dict[str, int]:
        return {layer.name: k for k, layer in enumerate(self.layers)}

    @property
    def max_depth(self) -> int:
        return max((layer.depth for layer in self.layers), default=0)

    def record_layers(self, record: tuple[str, ...]) -> dict[str, int]:
        """Output node and recorded neuron names -> layer index."""
        wanted = dict(self.outputs)
        index = self.index
        for key in record:
            if key in wanted:
                continue
            if key not in index:
                raise NIRError(
                    f"cannot record {key!r}: the Lava targets record the spikes of neuron "
                    f"nodes only ({', '.join(index)})", node=key, field="record")
            wanted[key] = index[key]
        return wanted


def _flat(arr: np.ndarray, shape: Shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(arr, dtype=np.float64), shape).reshape(-1).copy()


def _uniform(values: np.ndarray) -> bool:
    return values.size == 0 or bool(np.all(values == values.reshape(-1)[0]))


def _coefficient(tau: np.ndarray, dt: float, sem: Semantics) -> np.ndarray:
    if sem.integration == "exponential":
        return 1.0 - np.exp(-dt / tau)
    return dt * (1.0 / tau)


class _Analysis:
    """Walk the flat graph once; collect violations and (when none) the plan."""

    def __init__(self, checked: Checked, semantics: Semantics, target: str) -> None:
        self.c, self.sem, self.target = checked, semantics, target
        self.flat = checked.flat
        self.out: list[Violation] = []

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

    def run(self) -> Plan | None:
        flat, c = self.flat, self.c
        if len(flat.inputs) != 1:
            self.add(None, "inputs", f"the Lava targets run graphs with one Input node; this one "
                     f"has {len(flat.inputs)}")
        for name, node in flat.nodes.items():
            if isinstance(node, NEURONS + WEIGHTS + PASS):
                continue
            self.add(name, "type", f"{type(node).__name__} has no Lava mapping here (supported: "
                     "LIF, CubaLIF, IF, Affine, Linear, Flatten, Identity); Lava's sinks read "
                     "spikes, so non-spiking neurons (LI, CubaLI, I) cannot be outputs either")
        for name, node in flat.nodes.items():
            if isinstance(node, Identity | nir.Flatten) and len(flat.preds[name]) != 1:
                self.add(name, "edges", f"{type(node).__name__} with {len(flat.preds[name])} "
                         "incoming edges: the Lava targets need one")
            if isinstance(node, WEIGHTS):
                self._check_weight(name)
        if self.out:
            return None
        inp = flat.inputs[0]
        layers: dict[str, Layer] = {}
        for name, node in flat.nodes.items():
            if isinstance(node, NEURONS):
                layer = self._layer(name, node)
                if layer is not None:
                    layers[name] = layer
        if self.out:
            return None
        # depth and topological order (parents first); a cycle through several neurons fails
        order: list[str] = []
        depth: dict[str, int] = {}
        source_of = {name: src for name, (src, _) in self._sources.items()}

        def visit(name: str, stack: tuple[str, ...]) -> int:
            if name in depth:
                return depth[name]
            if name in stack:
                self.add(name, "edges", "a recurrent loop through several neurons ("
                         + " -> ".join((*stack[stack.index(name):], name)) + "): Lava's one-step "
                         "Dense latency matches the reference only for a neuron's own loop")
                depth[name] = 1
                return 1
            src = source_of[name]
            d = 1 if src == inp else visit(src, (*stack, name)) + 1
            depth[name] = d
            order.append(name)
            return d

        for name in layers:
            visit(name, ())
        if self.out:
            return None
        ordered = sorted(order, key=lambda n: depth[n])
        index = {name: k for k, name in enumerate(ordered)}
        plan_layers = []
        for name in ordered:
            layer = layers[name]
            src = source_of[name]
            layer.source = -1 if src == inp else index[src]
            layer.depth = depth[name]
            plan_layers.append(layer)
        outputs: dict[str, int] = {}
        for name in flat.outputs:
            preds = flat.preds[name]
            fed_by = self.resolve(preds[0]) if len(preds) == 1 else None
            if fed_by is None or fed_by not in index:
                what = (f"{len(preds)} incoming edges" if fed_by is None
                        else f"{type(flat.nodes[fed_by]).__name__} {fed_by!r}")
                self.add(name, "edges", f"an Output must be fed by one spiking neuron node "
                         f"(LIF, CubaLIF, IF); this one gets {what}")
                continue
            outputs[name] = index[fed_by]
        if self.out:
            return None
        in_shape = c.out_shapes[inp]
        return Plan(input_name=inp, input_shape=in_shape, n_in=int(np.prod(in_shape)),
                    layers=plan_layers, outputs=outputs,
                    out_shapes={n: c.out_shapes[n] for n in flat.outputs},
                    dt=self.sem.require_dt())

    # ---------------------------------------------------------------------------------------
    def _check_weight(self, name: str) -> None:
        flat, c = self.flat, self.c
        shape = c.in_shapes[name]
        if len(shape) != 1:
            self.add(name, "weight", f"{type(flat.nodes[name]).__name__} on a {len(shape)}-D "
                     f"input {shape}: the Lava targets need 1-D vectors (add a Flatten first)")
        if len(flat.preds[name]) != 1:
            self.add(name, "edges", f"a weight node with {len(flat.preds[name])} incoming edges: "
                     "the Lava targets need exactly one")
        for dst in flat.succs[name]:
            target = dst
            while isinstance(flat.nodes[target], PASS) and flat.succs[target] \
                    and target not in flat.outputs:
                target = flat.succs[target][0]
            if not isinstance(flat.nodes[target], NEURONS):
                self.add(name, "edges", f"feeds {type(flat.nodes[target]).__name__} {target!r}: "
                         "in Lava a Dense connection must end on a spiking neuron (LIF, CubaLIF, "
                         "IF); fold consecutive weight layers into one")

    _sources: dict[str, tuple[str, list[str]]]

    def _layer(self, name: str, node: nir.NIRNode) -> Layer | None:
        flat, c, sem = self.flat, self.c, self.sem
        if not hasattr(self, "_sources"):
            self._sources = {}
        inp = flat.inputs[0]
        ff: list[tuple[str, str | None]] = []     # (source neuron/input, weight node or None)
        rec: list[str] = []
        for pred in flat.preds[name]:
            p = self.resolve(pred)
            if isinstance(flat.nodes[p], WEIGHTS):
                src = self.resolve(flat.preds[p][0])
                if src == name:
                    rec.append(p)
                elif isinstance(flat.nodes[src], NEURONS) or src == inp:
                    ff.append((src, p))
                else:
                    self.add(p, "edges", f"its input comes from {type(flat.nodes[src]).__name__} "
                             f"{src!r}; the Lava targets need a spiking neuron or the Input")
            elif isinstance(flat.nodes[p], NEURONS) or p == inp:
                if p == name:
                    self.add(name, "edges", "a neuron fed by its own spikes without a weight")
                ff.append((p, None))
            else:
                self.add(name, "edges", f"input from {type(flat.nodes[p]).__name__} {p!r}; the "
                         "Lava targets need a weight node, a spiking neuron or the Input")
        if len(ff) != 1:
            self.add(name, "edges", f"{len(ff)} feed-forward inputs: a Lava neuron population "
                     "here gets exactly one Dense input (plus its own recurrent loop)")
            return None
        src, wnode = ff[0]
        self._sources[name] = (src, rec)
        shape = c.in_shapes[name]
        n = int(np.prod(shape))
        params = c.params[name]
        kind = type(node).__name__
        dt = sem.require_dt()

        def f(key: str) -> np.ndarray:
            return _flat(params[key], shape)

        v_reset = f("v_reset")
        vth = f("v_threshold")
        r = f("r")
        if sem.reset == "subtract":
            self.add(name, "reset", f"{kind}: Lava's LIF resets v to 0 (here: to v_reset, by a "
                     "shift); the graph asks for 'subtract' reset")
        if isinstance(node, nir.IF):
            v0 = np.zeros(n)
        else:
            v0 = f("v_leak") if sem.initial_state == "leak" else np.zeros(n)
        if np.any(v0 != v_reset):
            where = ("v_leak (initial_state 'leak')" if sem.initial_state == "leak"
                     and not isinstance(node, nir.IF) else "0")
            self.add(name, "v_reset", f"{kind}: the membrane starts at {where} but v_reset "
                     "differs; Lava's neurons start at 0 and reset to 0, so after the shift "
                     "v' = v - v_reset the start must equal v_reset")
        theta = vth - v_reset
        if np.any(theta <= 0):
            self.add(name, "v_threshold", f"{kind}: v_threshold must exceed v_reset (Lava's "
                     "threshold is positive)")
        if isinstance(node, nir.CubaLIF) and np.any(f("v_leak") != v_reset):
            self.add(name, "v_leak", "CubaLIF with v_leak != v_reset: the leak term is a constant "
                     "input to v that Lava can only give as a neuron bias, which would act before "
                     "the neuron's first step (Dense latency); use v_leak == v_reset")
        if isinstance(node, nir.LIF):
            c_m = _coefficient(f("tau"), dt, sem)
            if not _uniform(c_m):
                self.add(name, "tau", "per-neuron time constants: a Lava LIF population has one "
                         "voltage decay dv")
        elif isinstance(node, nir.CubaLIF):
            c_m = _coefficient(f("tau_mem"), dt, sem)
            c_s = _coefficient(f("tau_syn"), dt, sem)
            if not _uniform(c_m):
                self.add(name, "tau_mem", "per-neuron time constants: a Lava LIF population has "
                         "one voltage decay dv")
            if not _uniform(c_s):
                self.add(name, "tau_syn", "per-neuron time constants: a Lava LIF population has "
                         "one current decay du")
        else:
            c_m = np.zeros(n)
        if any(v.node == name for v in self.out):
            return None
        # ------------------------------------------------------------------ translation
        if _uniform(theta):
            sigma = np.ones(n)
            th = float(theta[0])
        else:
            sigma = 1.0 / theta
            th = 1.0
        if isinstance(node, nir.IF):
            gain = (dt * r) * sigma
            du, dv = 1.0, 0.0
            beta_v = np.zeros(n)
        elif isinstance(node, nir.LIF):
            gain = c_m * r * sigma
            du, dv = 1.0, float(c_m[0])
            beta_v = c_m * (f("v_leak") - v_reset) * sigma
        else:
            gain = c_m * r * f("w_in") * sigma
            du, dv = float(c_s[0]), float(c_m[0])
            beta_v = np.zeros(n)
        n_src = self.c.out_shapes[src]
        n_src_flat = int(np.prod(n_src))
        if wnode is None:
            if n_src_flat != n:
                self.add(name, "edges", f"fed directly by {src!r} of {n_src_flat} values but has "
                         f"{n} neurons")
                return None
            w_ff = np.diag(gain)
            b = np.zeros(n)
        else:
            w = c.params[wnode]["weight"]
            if w.shape != (n, n_src_flat):
                self.add(wnode, "weight", f"shape {w.shape} does not map {n_src_flat} inputs to "
                         f"{n} neurons")
                return None
            w_ff = gain[:, None] * w
            b = c.params[wnode].get("bias", np.zeros(n))
        w_rec = None
        for rn in rec:
            wr = c.params[rn]["weight"]
            if wr.shape != (n, n):
                self.add(rn, "weight", f"recurrent weight of shape {wr.shape}, expected {(n, n)}")
                return None
            w_rec = (0 if w_rec is None else w_rec) + gain[:, None] * wr
            b = b + c.params[rn].get("bias", np.zeros(n))
        beta = gain * b + beta_v
        return Layer(name=name, kind=kind, n=n, shape=c.out_shapes[name], source=-1, depth=0,
                     w_ff=w_ff, w_rec=w_rec, beta=beta, du=du, dv=dv, theta=th,
                     ge=sem.threshold == "ge", sigma=sigma,
                     weight_nodes=() if wnode is None else (wnode,), rec_nodes=tuple(rec))


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

@dataclass
class FixedLayer:
    """A layer in Loihi-2 integers: ``a_in = w_ff @ s (+ w_rec @ z[t-1]) + bias`` (a-units;
    ``u`` gets ``a_in << 6``), ``du``/``dv`` 12-bit, threshold ``vth << 6``."""

    name: str
    n: int
    source: int
    depth: int
    w_ff: np.ndarray           # int64, Lava's effective weights (8-bit, sign mode per matrix)
    w_rec: np.ndarray | None
    bias: np.ndarray           # int64, per step, a-units
    du: int
    dv: int
    vth: int
    scale: float               # a-units per float-Lava unit (rho)
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class FixedPlan:
    plan: Plan
    layers: list[FixedLayer]

    def report(self) -> dict[str, Any]:
        return {"layers": [dict(name=fl.name, **fl.report) for fl in self.layers]}


def sign_range(w: np.ndarray) -> tuple[str, int, int, int]:
    """Lava's sign mode for a weight matrix, its clip range and the value step."""
    if np.all(w >= 0):
        return ("excitatory", *W_EXC, 1)
    if np.all(w <= 0):
        return ("inhibitory", *W_INH, 1)
    return ("mixed", *W_MIXED, 2)


def quantize_weights(w: np.ndarray) -> np.ndarray:
    """Round to the 8-bit weights Lava keeps (mixed sign: even values in [-256, 254])."""
    _, lo, hi, step = sign_range(w)
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


def quantize(plan: Plan, *, vth: int | None = None) -> FixedPlan:
    """Choose the fixed-point parameters of every layer.

    Per layer: the largest threshold mantissa ``VTH <= 2**17 - 1`` such that the scaled weights
    fit 8 bits (254 for mixed sign, 255 otherwise) and the constant input fits a 13-bit bias
    mantissa (4095); ``rho = VTH / theta``; weights ``round(rho * w)`` (even for mixed sign),
    bias ``round(rho * beta)``; ``dv = round(4096 * c_mem)``, ``du = round(4096 * c_syn) - 1``
    (Loihi adds 1 to du; LIF/IF: du = 4095, full decay) clipped to 12 bits. ``vth`` forces the
    threshold mantissa.
    """
    layers = []
    for layer in plan.layers:
        limits = [float(VTH_MAX)]
        for a in (layer.w_ff, layer.w_rec):
            m = _max_abs(a)
            if a is not None and m > 0:
                top = sign_range(a)[2] if sign_range(a)[0] != "inhibitory" else 255
                limits.append(top * layer.theta / m)
        mb = _max_abs(layer.beta)
        if mb > 0:
            limits.append(BIAS_MAX * layer.theta / mb)
        v = int(vth) if vth is not None else max(1, int(math.floor(min(limits))))
        rho = v / layer.theta
        w_ff = quantize_weights(rho * layer.w_ff)
        w_rec = None if layer.w_rec is None else quantize_weights(rho * layer.w_rec)
        bias = np.round(rho * layer.beta).astype(np.int64)
        if layer.kind == "CubaLIF":
            du = int(np.clip(round(4096 * layer.du) - 1, 0, DECAY_MAX))
        else:
            du = DECAY_MAX
        dv = int(np.clip(round(4096 * layer.dv), 0, DECAY_MAX))

        def err(q: np.ndarray | None, x: np.ndarray | None, rho: float = rho) -> float:
            if q is None or x is None or x.size == 0 or _max_abs(x) == 0:
                return 0.0
            return float(np.max(np.abs(q / rho - x)) / _max_abs(x))

        report = {
            "kind": layer.kind, "neurons": layer.n, "depth": layer.depth,
            "vth_mant": v, "threshold_v": v << 6, "scale_a_per_unit": rho,
            "weight_sign_mode": sign_range(w_ff)[0],
            "weight_max_abs": int(_max_abs(w_ff)),
            "weight_rel_error_max": err(w_ff, layer.w_ff),
            "weights_clipped": int(np.sum(np.abs(rho * layer.w_ff) > 256.5)),
            "bias_max_abs": int(_max_abs(bias)), "bias_rel_error_max": err(bias, layer.beta),
            "du": du, "du_float": layer.du, "du_effective": (du + 1) / 4096
            if layer.kind == "CubaLIF" else 1.0,
            "dv": dv, "dv_float": layer.dv, "dv_effective": dv / 4096,
            "threshold_compare": "v > vth<<6" + (" (graph asks v >= v_th: differs only where v "
                                                 "equals the quantized threshold)"
                                                 if layer.ge else ""),
        }
        if w_rec is not None:
            report.update(rec_weight_sign_mode=sign_range(w_rec)[0],
                          rec_weight_rel_error_max=err(w_rec, layer.w_rec))
        layers.append(FixedLayer(name=layer.name, n=layer.n, source=layer.source,
                                 depth=layer.depth, w_ff=lava_dense_weights(w_ff),
                                 w_rec=None if w_rec is None else lava_dense_weights(w_rec),
                                 bias=bias, du=du, dv=dv, vth=v, scale=rho, report=report))
    return FixedPlan(plan=plan, layers=layers)
