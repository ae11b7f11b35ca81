"""The firing semantics keys ``spikes``, ``membrane_floor`` and ``reset_delay``
(docs/semantics.md): values and defaults, a node's own ``reset_delay``, the reference on
hand-checked traces, Sinabs's and snnTorch's own forward passes reproduced, and every target
that does not compute a value refusing it in ``check`` and ``lower``."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.errors import NIRError
from nrf_nir.semantics import FIRING_DEFAULTS, Semantics, read_semantics
from nrf_nir.targets import Options, get
from nrf_nir.validate import validate
from tests.helpers import chain, cuba, lif, spikes

CPU = "cpu"
DT = 1e-3


def _if(n: int = 1, v_th: float = 1.0, v_reset: float = 0.0) -> nir.IF:
    """An IF with ``dt*r = 1`` at DT: the membrane adds the input unscaled."""
    return nir.IF(r=np.full(n, 1 / DT), v_threshold=np.full(n, v_th),
                  v_reset=np.full(n, v_reset))


def _trace(node: nir.NIRNode, x: list[float], own: dict[str, str] | None = None,
           **meta: str) -> tuple[list[float], list[float]]:
    """Spikes and recorded membrane of one neuron fed ``x`` (float64, one sample); ``own``:
    the neuron's own metadata."""
    if own is not None:
        node.metadata = dict(own)
    graph = chain(node, shape=(1,), dt=DT, **meta)
    out = nrf_nir.run(graph, np.asarray(x).reshape(-1, 1, 1), record=("n0.v",), device=CPU,
                      dtype="float64")
    return out["output"].flatten().tolist(), out["n0.v"].flatten().tolist()


# ---------------------------------------------------------------- the keys

def test_defaults_are_todays_behaviour_and_are_written():
    sem = Semantics()
    assert (sem.spikes, sem.membrane_floor, sem.reset_delay) == ("single", "none", "off")
    assert {k: getattr(sem, k) for k in FIRING_DEFAULTS} == FIRING_DEFAULTS
    assert sem.firing_changes() == {}
    meta = sem.to_metadata()
    assert (meta["spikes"], meta["membrane_floor"], meta["reset_delay"]) == \
        ("single", "none", "off")
    assert Semantics(spikes="multi", reset_delay="on").firing_changes() == \
        {"spikes": "multi", "reset_delay": "on"}


def test_guarded_needs_the_subtract_reset():
    assert Semantics(reset="subtract", reset_delay="guarded").reset_delay == "guarded"
    with pytest.raises(NIRError, match="'guarded' applies to reset 'subtract' only") as exc:
        Semantics(reset="value", reset_delay="guarded")
    assert exc.value.field == "reset_delay"


@pytest.mark.parametrize(("key", "bad"), [("spikes", "many"), ("membrane_floor", "zero"),
                                          ("reset_delay", "yes")])
def test_a_bad_value_is_one_error_naming_the_key(key, bad, tmp_path: Path, capsys):
    graph = chain(lif(2), shape=(2,), dt=DT)
    graph.nodes["output"] = nir.Output(output_type=np.array([2]))
    graph.metadata[key] = bad
    with pytest.raises(NIRError) as exc:
        read_semantics(graph)
    assert exc.value.field == key and repr(bad) in str(exc.value)
    assert "\n" not in str(exc.value)
    path = tmp_path / "bad.nir"
    nir.write(str(path), graph)
    with pytest.raises(NIRError, match=f"field '{key}'"):
        nrf_nir.check(path)
    from nrf_nir.cli import main

    assert main(["validate", str(path)]) != 0
    err = capsys.readouterr().err
    assert key in err and repr(bad) in err and err.count("\n") == 1


@pytest.mark.parametrize(("key", "bad"), [("reset", "bogus"), ("reset_delay", "yes"),
                                          ("spikes", "many")])
def test_load_refuses_a_bad_value_without_validating(key, bad, tmp_path: Path):
    """``nrf_nir.load`` reads the semantics keys whatever ``validate`` says: a bad value is
    one line naming the file and the key."""
    graph = chain(nir.Linear(weight=np.eye(2)), lif(2), shape=(2,), dt=DT, **{key: bad})
    path = tmp_path / "bad.nir"
    nrf_nir.save(graph, path, validate=False)
    for validated in (True, False):
        with pytest.raises(NIRError) as exc:
            nrf_nir.load(path, validate=validated)
        assert exc.value.field == key and exc.value.file == str(path)
        assert repr(bad) in str(exc.value) and "\n" not in str(exc.value)


def test_explicit_defaults_run_bit_for_bit_as_absent_keys():
    """The fast in-place LIF loop and the generic path are untouched by the defaults."""
    x = spikes((50, 3, 4), rate=0.5)
    absent = chain(nir.Affine(weight=np.full((4, 4), 0.7), bias=np.zeros(4)), lif(4),
                   shape=(4,), dt=DT)
    stated = chain(nir.Affine(weight=np.full((4, 4), 0.7), bias=np.zeros(4)), lif(4),
                   shape=(4,), dt=DT, **FIRING_DEFAULTS)
    a = nrf_nir.run(absent, x, device=CPU, record=("n1.v",))
    b = nrf_nir.run(stated, x, device=CPU, record=("n1.v",))
    assert a["output"].sum() > 0
    assert torch.equal(a["output"], b["output"]) and torch.equal(a["n1.v"], b["n1.v"])


# ---------------------------------------------------------------- the reference, by hand

def test_multi_spikes_count_multiples_of_the_threshold():
    """IF, threshold 1, fed 2.5: z = 2 then v = 0.5 (subtract); the Sinabs rule is ``ge``."""
    x = [2.5, 0.5, 1.0, -3.0]
    z, v = _trace(_if(), x, spikes="multi", reset="subtract", threshold="ge")
    assert z == [2.0, 1.0, 1.0, 0.0] and v == [0.5, 0.0, 0.0, -3.0]
    z, v = _trace(_if(), x, spikes="multi", reset="subtract", threshold="gt")
    assert z == [2.0, 0.0, 1.0, 0.0] and v == [0.5, 1.0, 1.0, -2.0]  # 1.0 is not > 1
    z, v = _trace(_if(), x, spikes="multi", reset="value", threshold="ge")
    assert z == [2.0, 0.0, 1.0, 0.0] and v == [0.0, 0.5, 0.0, -3.0]  # one reset, two spikes
    # relative to v_reset: v_th 1, v_reset -1 -> theta 2; v = 4.5 - (-1) = 5.5 -> 2 spikes
    z, v = _trace(_if(v_reset=-1.0), [4.5], spikes="multi", reset="subtract", threshold="ge")
    assert z == [2.0] and v == [0.5]
    z, _ = _trace(_if(), x, reset="subtract", threshold="ge")  # single: at most one
    assert z == [1.0, 1.0, 1.0, 0.0]


def test_multi_spikes_need_a_positive_threshold_above_v_reset():
    with pytest.raises(NIRError, match="v_threshold - v_reset") as exc:
        _trace(_if(v_th=0.5, v_reset=0.5), [1.0], spikes="multi")
    assert exc.value.node == "n0"


def test_membrane_floor_clamps_at_minus_threshold_after_the_reset():
    x = [-5.0, 0.2, 4.0]
    z, v = _trace(_if(v_th=2.0), x, membrane_floor="minus_threshold", reset="subtract")
    assert z == [0.0, 0.0, 1.0] and v == pytest.approx([-2.0, -1.8, 0.2])
    z, v = _trace(_if(v_th=2.0), x, reset="subtract")
    assert z == [0.0, 0.0, 0.0] and v == pytest.approx([-5.0, -4.8, -0.8])
    # after the reset: a subtract reset to below -v_th is clamped too
    z, v = _trace(_if(v_th=1.0, v_reset=-3.0), [1.5], reset="subtract",
                  membrane_floor="minus_threshold")
    assert z == [1.0] and v == [-1.0]  # 1.5 - 4 = -2.5, floored at -1


@pytest.mark.parametrize("meta", [
    {"spikes": "multi", "reset": "value"}, {"membrane_floor": "minus_threshold"},
    {"reset_delay": "on"}, {"reset_delay": "guarded", "reset": "subtract"},
    {"spikes": "multi", "reset": "subtract", "reset_delay": "on",
     "membrane_floor": "minus_threshold", "threshold": "ge"},
    {"spikes": "multi", "reset": "subtract", "reset_delay": "guarded", "threshold": "ge"}])
def test_every_execution_path_agrees(meta):
    """Chunked, stepwise and recording runs (three code paths of the reference's neuron)
    give the same spikes; the fast LIF loop is not taken for these keys."""
    graph = chain(nir.Affine(weight=np.full((4, 3), 1.5), bias=np.full(4, -0.5)),
                  lif(4, tau=0.004, v_th=0.4), shape=(3,), dt=DT, **meta)
    x = 2.0 * spikes((60, 2, 3), rate=0.5, seed=1)
    plain = nrf_nir.run(graph, x, device=CPU)["output"]
    stepwise = nrf_nir.run(graph, x, device=CPU, stepwise=True)["output"]
    recorded = nrf_nir.run(graph, x, device=CPU, record=("n1.v",))["output"]
    assert plain.sum() > 0
    assert torch.equal(plain, stepwise) and torch.equal(plain, recorded)
    if meta.get("spikes") == "multi":
        assert plain.max() >= 2


def _delay_lif() -> nir.LIF:
    """LIF with c = dt/tau = 0.5 and r = 2: v <- 0.5*v + x (Euler), threshold 1."""
    return lif(1, tau=2 * DT, r=2.0)


@pytest.mark.parametrize(("reset", "delay", "want_z", "want_v"), [
    ("subtract", "off", [1, 0, 0, 0], [0.5, 0.75, 0.375, 0.1875]),
    ("subtract", "on", [1, 0, 0, 0], [1.5, 0.25, 0.125, 0.0625]),  # -1 after the decay
    ("value", "off", [1, 0, 0, 0], [0.0, 0.5, 0.25, 0.125]),
    ("value", "on", [1, 0, 0, 0], [1.5, 0.0, 0.0, 0.0]),  # the whole next step is reset
])
def test_reset_delay_on_a_lif(reset, delay, want_z, want_v):
    z, v = _trace(_delay_lif(), [1.5, 0.5, 0.0, 0.0], reset=reset, reset_delay=delay)
    assert z == want_z and v == pytest.approx(want_v, abs=1e-12)


def test_guarded_reset_on_a_lif():
    """v <- 0.5*v + x, threshold 1, subtract: after 2.5 the membrane is still 1.5 > 1, so the
    next step's test sees 1.35 - 1 (no spike) where 'off' fires at 1.35; the returned membrane
    is ``v - z*theta`` either way (snnTorch's Leaky(beta=0.5, reset_delay=False) by hand)."""
    x = [2.5, 0.6, 0.0, 0.0]
    z, v = _trace(_delay_lif(), x, reset="subtract", reset_delay="guarded")
    assert z == [1, 0, 0, 0] and v == pytest.approx([1.5, 1.35, 0.675, 0.3375], abs=1e-12)
    z, v = _trace(_delay_lif(), x, reset="subtract", reset_delay="off")
    assert z == [1, 1, 0, 0] and v == pytest.approx([1.5, 0.35, 0.175, 0.0875], abs=1e-12)
    # a membrane that never stays above threshold after its reset: the spikes of 'off'
    x = [1.5, 0.5, 1.2, 0.1]
    assert _trace(_delay_lif(), x, reset="subtract", reset_delay="guarded") == \
        _trace(_delay_lif(), x, reset="subtract", reset_delay="off")


@pytest.mark.parametrize(("graph_value", "own_value"), list(itertools.permutations(
    ["off", "on", "guarded"], 2)))
def test_node_metadata_overrides_the_graphs_reset_delay(graph_value, own_value):
    """A node's own metadata reset_delay is the value that holds for it: the trace equals the
    one under the graph value it names, and differs from the graph's own."""
    x = [2.5, 0.6, 0.0, 1.5, 0.5, 0.7]
    own = _trace(_delay_lif(), x, {"reset_delay": own_value}, reset="subtract",
                 reset_delay=graph_value)
    assert own == _trace(_delay_lif(), x, reset="subtract", reset_delay=own_value)
    assert own != _trace(_delay_lif(), x, reset="subtract", reset_delay=graph_value)


def test_a_node_level_override_holds_for_its_node_only():
    """Input -> Affine -> LIF a -> Affine -> LIF b, the graph 'on', b 'off' of its own: a runs
    as under 'on', and b, fed a's spikes, as under 'off' (each checked by a run of its own)."""
    w1 = nir.Affine(weight=np.full((4, 3), 0.4), bias=np.zeros(4))
    w2 = nir.Affine(weight=np.full((2, 4), 0.6), bias=np.zeros(2))

    def b() -> nir.LIF:
        return lif(2, tau=0.004, v_th=0.8)

    graph = chain(w1, lif(4, tau=0.004, v_th=0.4), w2, b(), shape=(3,), dt=DT,
                  reset="subtract", reset_delay="on")
    graph.nodes["n3"].metadata = {"reset_delay": "off"}
    x = 2.0 * spikes((80, 2, 3), rate=0.5, seed=1)
    mixed = nrf_nir.run(graph, x, device=CPU, dtype="float64", record=("n1",))
    alone = nrf_nir.run(chain(w1, lif(4, tau=0.004, v_th=0.4), shape=(3,), dt=DT,
                              reset="subtract", reset_delay="on"), x, device=CPU,
                        dtype="float64")["output"]
    assert torch.equal(mixed["n1"], alone) and 0.1 < float(alone.mean()) < 0.9
    for value, same in (("off", True), ("on", False)):
        second = nrf_nir.run(chain(w2, b(), shape=(4,), dt=DT, reset="subtract",
                                   reset_delay=value), alone, device=CPU,
                             dtype="float64")["output"]
        assert torch.equal(mixed["output"], second) == same


def test_a_bad_node_level_value_is_one_error_naming_node_and_key(tmp_path: Path, capsys):
    graph = chain(nir.Linear(weight=np.eye(2)), lif(2), shape=(2,), dt=DT)
    for own, meta, wanted in (({"reset_delay": "later"}, {}, "got 'later'"),
                              ({"reset_delay": "guarded"}, {"reset": "value"},
                               "'guarded' applies to reset 'subtract' only")):
        graph.nodes["n1"].metadata = own
        graph.metadata.update(meta)
        with pytest.raises(NIRError, match=wanted) as exc:
            validate(graph)
        assert (exc.value.node, exc.value.field) == ("n1", "reset_delay")
        path = tmp_path / "bad.nir"
        nrf_nir.save(graph, path, validate=False)
        for validated in (True, False):
            with pytest.raises(NIRError, match=wanted) as exc:
                nrf_nir.load(path, validate=validated)
            assert (exc.value.node, exc.value.field) == ("n1", "reset_delay")
        from nrf_nir.cli import main

        assert main(["validate", str(path)]) != 0
        err = capsys.readouterr().err
        assert "node 'n1'" in err and "reset_delay" in err and err.count("\n") == 1


def _numpy_delayed(x: np.ndarray, p: dict[str, float], subtract: bool, cuba_node: bool,
                   ) -> np.ndarray:
    """docs/semantics.md's delayed reset, written independently (float64, Euler)."""
    c_mem, c_syn = DT / p["tau_mem"], DT / p["tau_syn"]
    v = np.zeros(x.shape[1:])
    i = np.zeros(x.shape[1:])
    z = np.zeros(x.shape[1:])
    out = []
    for xt in x:
        if cuba_node:
            i = i + xt
            v = v + c_mem * ((0.0 - v) + i)
            i = i + (-c_syn) * i
        else:
            v = v + c_mem * (xt - v)
        v = v - z * p["v_th"] if subtract else np.where(z > 0, 0.0, v)
        z = (v > p["v_th"]).astype(float)
        out.append(z)
    return np.stack(out)


@pytest.mark.parametrize(("node", "reset"), list(itertools.product(["LIF", "CubaLIF"],
                                                                    ["subtract", "value"])))
def test_reset_delay_matches_an_independent_loop(node, reset):
    p = {"tau_mem": 0.01, "tau_syn": 0.004, "v_th": 0.3}
    neuron = lif(6, tau=p["tau_mem"], v_th=p["v_th"]) if node == "LIF" else \
        cuba(6, tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], v_th=p["v_th"])
    x = 3.0 * spikes((200, 2, 6), rate=0.4, seed=3).astype(np.float64)
    graph = chain(neuron, shape=(6,), dt=DT, reset=reset, reset_delay="on",
                  initial_state="zero")
    got = nrf_nir.run(graph, x, device=CPU, dtype="float64")["output"].numpy()
    want = _numpy_delayed(x, p, reset == "subtract", node == "CubaLIF")
    assert want.mean() > 0.05 and np.array_equal(got, want)


def _numpy_guarded(x: np.ndarray, p: dict[str, float], cuba_node: bool) -> np.ndarray:
    """docs/semantics.md's guarded subtract reset, written independently (float64, Euler):
    snnTorch's reset_delay=False, ``R = v[t-1] > th``, ``u = f(v) - R*th``, ``z = u > th``,
    ``v = u - (z - R)*th``."""
    c_mem, c_syn = DT / p["tau_mem"], DT / p["tau_syn"]
    v = np.zeros(x.shape[1:])
    i = np.zeros(x.shape[1:])
    out = []
    for xt in x:
        pending = (v > p["v_th"]).astype(float)
        if cuba_node:
            i = i + xt
            v = v + c_mem * ((0.0 - v) + i)
            i = i + (-c_syn) * i
        else:
            v = v + c_mem * (xt - v)
        u = v - pending * p["v_th"]
        z = (u > p["v_th"]).astype(float)
        v = u - (z - pending) * p["v_th"]
        out.append(z)
    return np.stack(out)


@pytest.mark.parametrize("node", ["LIF", "CubaLIF"])
def test_guarded_matches_an_independent_loop(node):
    p = {"tau_mem": 0.01, "tau_syn": 0.004, "v_th": 0.3}
    neuron = lif(6, tau=p["tau_mem"], v_th=p["v_th"]) if node == "LIF" else \
        cuba(6, tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], v_th=p["v_th"])
    x = 6.0 * spikes((200, 2, 6), rate=0.4, seed=3).astype(np.float64)
    graph = chain(neuron, shape=(6,), dt=DT, reset="subtract", reset_delay="guarded",
                  initial_state="zero")
    got = nrf_nir.run(graph, x, device=CPU, dtype="float64")["output"].numpy()
    want = _numpy_guarded(x, p, node == "CubaLIF")
    off = nrf_nir.run(chain(neuron, shape=(6,), dt=DT, reset="subtract", initial_state="zero"),
                      x, device=CPU, dtype="float64")["output"].numpy()
    assert want.mean() > 0.05 and np.array_equal(got, want)
    assert not np.array_equal(got, off)  # the inputs leave membranes above threshold


# ---------------------------------------------------------------- the producers' own passes

def test_sinabs_iaf_multi_spike_with_its_floor_bit_for_bit():
    """Sinabs 3.1.3's IAF (MultiSpike, MembraneSubtract, min_v_mem = -threshold, as
    sinabs.from_nir builds it) and the reference with spikes 'multi', threshold 'ge',
    reset 'subtract', membrane_floor 'minus_threshold', float32."""
    sl = pytest.importorskip("sinabs.layers")
    n = 16
    th = torch.rand(n, generator=torch.Generator().manual_seed(1)) + 0.5
    layer = sl.IAF(spike_threshold=th, min_v_mem=-th)
    x = torch.randn(100, 4, n, generator=torch.Generator().manual_seed(2)) * 1.5
    with torch.no_grad():
        want = layer(x.transpose(0, 1)).transpose(0, 1)  # Sinabs is batch-first
    node = nir.IF(r=np.full(n, 1 / DT), v_threshold=th.double().numpy(), v_reset=np.zeros(n))
    graph = chain(node, shape=(n,), dt=DT, spikes="multi", threshold="ge", reset="subtract",
                  membrane_floor="minus_threshold")
    got = nrf_nir.run(graph, x, device=CPU)["output"]
    assert want.max() >= 2 and torch.equal(got, want)


class _SnnTorchLayer(torch.nn.Module):
    """Linear -> one snnTorch neuron layer (-> Linear -> Leaky read-out), stepped with
    explicit state."""

    def __init__(self, kind: str, reset: str, delay: bool, gain: float, n: int = 20,
                 readout: bool = False) -> None:
        import snntorch as snn

        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(10, n)
        with torch.no_grad():
            self.fc.weight.mul_(gain)
        th = torch.rand(n) + 0.5

        def rand(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(n) * (hi - lo) + lo

        common = {"threshold": th, "reset_mechanism": reset, "reset_delay": delay}
        if kind == "Leaky":
            self.hidden = snn.Leaky(beta=rand(0.45, 0.95), **common)
        elif kind == "Synaptic":
            self.hidden = snn.Synaptic(alpha=rand(0.3, 0.8), beta=rand(0.45, 0.95), **common)
        elif kind == "RLeaky":
            self.hidden = snn.RLeaky(beta=rand(0.45, 0.95), linear_features=n, **common)
        else:
            self.hidden = snn.RSynaptic(alpha=rand(0.3, 0.8), beta=rand(0.45, 0.95),
                                        linear_features=n, **common)
        self.kind = kind
        self.readout = None
        if readout:
            self.fc2 = torch.nn.Linear(n, 4)
            with torch.no_grad():
                self.fc2.weight.mul_(3)
            self.readout = snn.Leaky(beta=torch.full((4,), 0.9), threshold=torch.full((4,), 0.5),
                                     reset_mechanism=reset, reset_delay=delay)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # what export_to_nir traces
        spk = self.hidden(self.fc(x))[0]
        return spk if self.readout is None else self.readout(self.fc2(spk))[0]

    def simulate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output spikes and the hidden membrane each step returns, ``[T, B, n]``."""
        n = self.fc.out_features
        zeros = torch.zeros(x.shape[1], n)
        state: tuple[torch.Tensor, ...] = {"Leaky": (zeros,), "Synaptic": (zeros, zeros),
                                           "RLeaky": (zeros, zeros),
                                           "RSynaptic": (zeros, zeros, zeros)}[self.kind]
        mem_out = torch.zeros(x.shape[1], 4)
        spk, mem = [], []
        with torch.no_grad():
            for xt in x:
                out = self.hidden(self.fc(xt), *state)
                state = out if self.kind.startswith("R") else out[1:]
                z = out[0]
                if self.readout is not None:
                    z, mem_out = self.readout(self.fc2(z), mem_out)
                spk.append(z)
                mem.append(out[-1])
        return torch.stack(spk), torch.stack(mem)


def _reset_delays(graph: nir.NIRGraph) -> str:
    """The graph's reset_delay, then each node's own: ``"on (readout: off)"``."""
    from nrf_nir.semantics import read_node_semantics

    own = read_node_semantics(graph)
    text = str(graph.metadata["reset_delay"])
    if own:
        text += " (" + ", ".join(f"{n}: {v['reset_delay']}" for n, v in own.items()) + ")"
    return text


def snntorch_round_trip(kind: str, reset: str, delay: bool, *, gain: float = 3.0,
                        readout: bool = False, steps: int = 300, target: str = "reference",
                        graph_delay: str | None = None) -> tuple[float, float, str, float]:
    """export_to_nir -> the dialect (matching options) -> ``target`` in float32, against
    snnTorch's own pass: (spike agreement, snnTorch's spike rate, the reset_delay values read
    (:func:`_reset_delays`), the largest ``mem - th`` a hidden step returned). graph_delay:
    replace what the dialect wrote by this one graph value (no node values)."""
    from snntorch.export_nir import export_to_nir

    from nrf_nir.dialects import normalize

    x = (torch.rand(steps, 8, 10, generator=torch.Generator().manual_seed(5)) < 0.3).float()
    model = _SnnTorchLayer(kind, reset, delay, gain, readout=readout)
    want, mem = model.simulate(x)
    # RSynaptic(reset_delay=False) cannot be traced by export_to_nir (its forward divides the
    # spike argument, None there); the file does not record reset_delay: export the same
    # parameters with reset_delay=True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = export_to_nir(_SnnTorchLayer(kind, reset, True, gain, readout=readout),
                            x[0, :1], ignore_dims=[0])
        read = normalize(raw, f"snntorch:reset={reset},delay={'on' if delay else 'off'}")
    graph = read.graph
    delays = _reset_delays(graph)
    if graph_delay is not None:
        graph.metadata["reset_delay"] = graph_delay
        for node in validate(graph).flat.nodes.values():
            node.metadata.pop("reset_delay", None)
    got = nrf_nir.run(graph, x, device=CPU, target=target)["output"]
    above = float((mem - model.hidden.threshold).max())
    return float((got == want).float().mean()), float(want.mean()), delays, above


SNNTORCH_CASES = list(itertools.product(["Leaky", "Synaptic", "RLeaky", "RSynaptic"],
                                        ["subtract", "zero"], [True, False]))


@pytest.mark.slow
@pytest.mark.parametrize("readout", [False, True], ids=["layer", "layer+Leaky"])
@pytest.mark.parametrize(("kind", "reset", "delay"), SNNTORCH_CASES)
def test_snntorch_exports_reproduce_with_the_dialect(kind, reset, delay, readout):
    """export_to_nir, the dialect with the matching options, the reference and the snntorch
    target against snnTorch 1.0.0's own forward pass, float32 (docs/targets/snntorch.md): each
    layer alone, and as Linear -> layer -> Linear -> Leaky (a network mixing neuron types,
    which may need node-level reset_delay values)."""
    pytest.importorskip("snntorch")
    for target in ("reference", "snntorch"):
        agree, rate, delays, above = snntorch_round_trip(kind, reset, delay, readout=readout,
                                                         target=target)
        assert 0.03 < rate < 0.75
        assert agree >= 0.999, (target, delays, agree)
    if reset == "subtract" and not delay and kind != "RSynaptic":
        # the guard matters: membranes stay above threshold after their reset, and the
        # immediate reset ('off') reads the file wrong
        assert delays.startswith("guarded") and above > 0
        assert snntorch_round_trip(kind, reset, delay, readout=readout,
                                   graph_delay="off")[0] < 0.99
    if readout and reset == "zero" and delay and kind != "Leaky":
        # the hidden layer zeroes whole steps ('on'), the Leaky read-out resets at once
        assert delays == "on (readout: off)"
        assert snntorch_round_trip(kind, reset, delay, readout=True, graph_delay="on")[0] < 0.99


# ---------------------------------------------------------------- the snntorch target

@pytest.mark.parametrize(("node", "reset", "threshold", "delay"), [
    case for case in itertools.product(["IF", "LIF", "CubaLIF", "LIF loop", "CubaLIF loop"],
                                       ["subtract", "value"], ["gt", "ge"], ["on", "guarded"])
    if case[1] == "subtract" or case[3] == "on"])
def test_snntorch_target_runs_reset_delay_as_the_reference(node, reset, threshold, delay):
    pytest.importorskip("snntorch")
    rng = np.random.default_rng(4)
    n = 12
    neuron: nir.NIRNode = {"IF": _if(n, v_th=0.8, v_reset=-0.1),
                           "LIF": lif(n, tau=0.005, v_th=0.5, v_leak=0.1, v_reset=-0.2),
                           "CubaLIF": cuba(n, v_th=0.4)}[node.split()[0]]
    nodes = {"input": nir.Input(input_type=np.array([6])),
             "w": nir.Affine(weight=rng.normal(0, 3, (n, 6)), bias=np.zeros(n)),
             "n": neuron, "output": nir.Output(output_type=np.array([n]))}
    edges = [("input", "w"), ("w", "n"), ("n", "output")]
    if node.endswith("loop"):
        nodes["rec"] = nir.Linear(weight=rng.normal(0, 0.5, (n, n)))
        edges += [("n", "rec"), ("rec", "n")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    graph.metadata = {"dt": DT, "reset": reset, "threshold": threshold, "reset_delay": delay}
    assert nrf_nir.check(graph, "snntorch") == []
    x = spikes((200, 4, 6), rate=0.3, seed=6)
    ref = nrf_nir.run(graph, x, device=CPU, dtype="float64", record=("n.v",))
    ours = nrf_nir.run(graph, x, target="snntorch", device=CPU, dtype="float64",
                       record=("n.v",))
    assert 0.02 < float(ref["output"].mean()) < 0.6
    assert torch.equal(ref["output"], ours["output"])
    # the membrane the step returns, in snnTorch's arithmetic (as with reset_delay 'off')
    assert torch.allclose(ref["n.v"], ours["n.v"], rtol=1e-6, atol=1e-5)
    if delay == "guarded":  # the guard acts on these inputs: 'off' spikes otherwise
        graph.metadata["reset_delay"] = "off"
        off = nrf_nir.run(graph, x, device=CPU, dtype="float64")["output"]
        assert not torch.equal(off, ref["output"])


def test_snntorch_target_runs_node_level_reset_delays():
    """Three LIF layers, the graph 'on', the second 'guarded' and the third 'off' of their
    own (a recurrent second layer: RLeaky): the snntorch target runs each as the reference."""
    pytest.importorskip("snntorch")
    rng = np.random.default_rng(7)
    nodes = {"input": nir.Input(input_type=np.array([6])),
             "w1": nir.Affine(weight=rng.normal(0, 3, (8, 6)), bias=np.zeros(8)),
             "a": lif(8, tau=0.005, v_th=0.5),
             "w2": nir.Affine(weight=rng.normal(0, 2, (8, 8)), bias=np.zeros(8)),
             "b": lif(8, tau=0.004, v_th=0.3),
             "rec": nir.Linear(weight=rng.normal(0, 0.5, (8, 8))),
             "w3": nir.Affine(weight=rng.normal(0, 2, (3, 8)), bias=np.zeros(3)),
             "c": lif(3, tau=0.01, v_th=0.4), "output": nir.Output(output_type=np.array([3]))}
    nodes["b"].metadata = {"reset_delay": "guarded"}
    nodes["c"].metadata = {"reset_delay": "off"}
    graph = nir.NIRGraph(nodes=nodes, edges=[
        ("input", "w1"), ("w1", "a"), ("a", "w2"), ("w2", "b"), ("b", "rec"), ("rec", "b"),
        ("b", "w3"), ("w3", "c"), ("c", "output")], type_check=False)
    graph.metadata = {"dt": DT, "reset": "subtract", "reset_delay": "on"}
    assert nrf_nir.check(graph, "snntorch") == []
    x = spikes((200, 4, 6), rate=0.3, seed=8)
    record = ("a", "b")
    ref = nrf_nir.run(graph, x, device=CPU, dtype="float64", record=record)
    ours = nrf_nir.run(graph, x, target="snntorch", device=CPU, dtype="float64", record=record)
    for name in (*record, "output"):
        assert 0.02 < float(ref[name].mean()) < 0.6
        assert torch.equal(ref[name], ours[name]), name


# ---------------------------------------------------------------- refusals

NON_DEFAULT = [("spikes", "multi"), ("membrane_floor", "minus_threshold"), ("reset_delay", "on"),
               ("reset_delay", "guarded")]
REFUSING = ["norse", "rockpool", "xylo", "lava-float", "snntorch"]


def _refusable_graph(**meta: str) -> nir.NIRGraph:
    graph = chain(nir.Linear(weight=np.full((4, 3), 0.5)), lif(4, tau=0.01), shape=(3,),
                  dt=DT, reset="subtract", **meta)
    return graph


@pytest.mark.parametrize(("key", "value"), NON_DEFAULT)
@pytest.mark.parametrize("target", REFUSING)
def test_targets_refuse_firing_semantics_they_do_not_compute(target, key, value):
    try:
        declared = getattr(get(target), "SEMANTICS", {}).get(key, ())
    except NIRError as exc:
        pytest.skip(str(exc))
    if value in declared:
        pytest.skip(f"the {target} target computes {key} {value!r}")
    graph = _refusable_graph(**{key: value})
    found = [v for v in nrf_nir.check(graph, target) if v.field == key]
    assert len(found) == 1
    line = str(found[0])
    assert f"metadata {key} = {value!r}" in line and "\n" not in line and f"[{target}]" in line
    with pytest.raises(NIRError, match=f"metadata {key}"):
        nrf_nir.lower(graph, target, device=CPU)
    with pytest.raises(NIRError, match=f"metadata {key}"):  # not even when asked to run anyway
        nrf_nir.lower(graph, target, device=CPU, strict=False)
    checked = validate(graph)  # a direct call of the target's lower checks too
    with pytest.raises(NIRError, match=f"metadata {key}"):
        get(target).lower(checked, read_semantics(graph), Options(device=CPU))


@pytest.mark.parametrize("value", ["on", "guarded"])
@pytest.mark.parametrize("target", REFUSING)
def test_targets_refuse_node_level_values_they_do_not_compute(target, value):
    """A spiking node's own reset_delay goes through the same choke point: one violation
    naming the node, also in lower; a graph value that every spiking node overrides with one
    the target runs is no violation."""
    try:
        declared = getattr(get(target), "SEMANTICS", {}).get("reset_delay", ())
    except NIRError as exc:
        pytest.skip(str(exc))
    if value in declared:
        pytest.skip(f"the {target} target computes reset_delay {value!r}")
    graph = _refusable_graph()
    graph.nodes["n1"].metadata = {"reset_delay": value}
    found = [v for v in nrf_nir.check(graph, target) if v.field == "reset_delay"]
    assert [(v.node, v.field) for v in found] == [("n1", "reset_delay")]
    assert f"node metadata reset_delay = {value!r}" in str(found[0])
    with pytest.raises(NIRError, match="node metadata reset_delay"):
        nrf_nir.lower(graph, target, device=CPU, strict=False)
    graph = _refusable_graph(reset_delay=value)
    graph.nodes["n1"].metadata = {"reset_delay": "off"}
    assert [v for v in nrf_nir.check(graph, target) if v.field == "reset_delay"] == []


def test_the_keys_leave_non_spiking_graphs_alone():
    li = nir.LI(tau=np.full(3, 0.01), r=np.ones(3), v_leak=np.zeros(3))
    graph = chain(nir.Linear(weight=np.eye(3)), li, shape=(3,), dt=DT, spikes="multi",
                  membrane_floor="minus_threshold", reset_delay="on")
    plain = chain(nir.Linear(weight=np.eye(3)), li, shape=(3,), dt=DT)
    assert [v for v in nrf_nir.check(graph, "norse") if v.node is None] == []
    x = spikes((20, 2, 3))
    assert torch.equal(nrf_nir.run(graph, x, device=CPU)["output"],
                       nrf_nir.run(plain, x, device=CPU)["output"])


def test_the_reference_and_snntorch_run_what_they_declare():
    graph = _refusable_graph(reset_delay="on")
    assert nrf_nir.check(graph, "reference") == []
    assert nrf_nir.check(_refusable_graph(spikes="multi", membrane_floor="minus_threshold",
                                          reset_delay="on"), "reference") == []
    pytest.importorskip("snntorch")
    assert [v for v in nrf_nir.check(graph, "snntorch") if v.node is None] == []


def snntorch_table(steps: int = 1000) -> list[str]:
    """The round-trip table of docs/targets/snntorch.md (float32, B = 8): each layer alone and
    with a Leaky read-out, in the reference and the snntorch target."""
    lines = ["| snnTorch layer | reset_mechanism | reset_delay | metadata reset_delay "
             "(alone / with read-out) | layer alone | + Leaky read-out | snntorch target "
             "(alone / + read-out) |", "|---|---|---|---|---|---|---|"]
    for kind, reset, delay in SNNTORCH_CASES:
        alone, rate, meta, _ = snntorch_round_trip(kind, reset, delay, steps=steps)
        read_out, _, meta_out, _ = snntorch_round_trip(kind, reset, delay, steps=steps,
                                                       readout=True)
        ours = [snntorch_round_trip(kind, reset, delay, steps=steps, readout=r,
                                    target="snntorch")[0] for r in (False, True)]
        lines.append(f"| {kind} | {reset} | {delay} | {meta} / {meta_out} | "
                     f"{100 * alone:.3f} % (rate {rate:.2f}) | {100 * read_out:.3f} % | "
                     f"{100 * ours[0]:.3f} % / {100 * ours[1]:.3f} % |")
    return lines


if __name__ == "__main__":  # python -m tests.test_semantics_keys: docs/targets/snntorch.md
    torch.set_num_threads(1)
    print("\n".join(snntorch_table()))
