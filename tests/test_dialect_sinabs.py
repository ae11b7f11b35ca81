"""The ``sinabs`` dialect: real ``sinabs.nir.to_nir`` exports (Sinabs 3.1.3) are recognised,
read with Sinabs's conventions, and reproduce Sinabs's own forward pass in the reference; plain
NIR files are not taken for Sinabs's; loading one imports no framework."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest

import nrf_nir
from nrf_nir.cli import main
from nrf_nir.dialects import ConventionsWarning, normalize
from nrf_nir.io import load_normalized

torch = pytest.importorskip("torch")
sl = pytest.importorskip("sinabs.layers")
from sinabs.activation import SingleSpike  # noqa: E402
from sinabs.nir import to_nir  # noqa: E402

nn = torch.nn
B, T = 8, 100

#: name -> (layers, input shape, squeezed, weight gains by layer index): small networks of
#: each layer kind, with gains that make them spike on 5-25 % of the output entries.
NETWORKS = {
    "iaf": (lambda: [nn.Linear(12, 16),
                     sl.IAF(spike_threshold=torch.tensor(1.5), min_v_mem=-1.5),
                     nn.Linear(16, 5), sl.IAF(min_v_mem=-1.0)], (12,), False, {0: 5, 2: 4}),
    "iaf-single-no-floor": (lambda: [nn.Linear(12, 16), sl.IAF(spike_fn=SingleSpike),
                                     nn.Linear(16, 5), sl.IAF(spike_fn=SingleSpike)],
                            (12,), False, {0: 5, 2: 4}),
    "iafsqueeze-conv": (lambda: [nn.Conv2d(2, 4, 3, padding=1),
                                 sl.IAFSqueeze(batch_size=B, min_v_mem=-1.0), sl.SumPool2d(2),
                                 nn.Flatten(), nn.Linear(64, 10),
                                 sl.IAFSqueeze(batch_size=B, min_v_mem=-1.0)],
                        (2, 8, 8), True, {0: 2, 4: 1.5}),
    "lif": (lambda: [nn.Linear(12, 16), sl.LIF(tau_mem=torch.tensor(8.0)), nn.Linear(16, 5),
                     sl.LIF(tau_mem=torch.tensor(5.0))], (12,), False, {0: 60, 2: 30}),
    "lif-per-neuron": (lambda: [nn.Linear(12, 16),
                                sl.LIF(tau_mem=torch.full((16,), 8.0),
                                       spike_threshold=torch.ones(16)), nn.Linear(16, 5),
                                sl.LIF(tau_mem=torch.full((5,), 5.0),
                                       spike_threshold=torch.ones(5))],
                       (12,), False, {0: 60, 2: 30}),
    "lifsqueeze-conv": (lambda: [nn.Conv2d(2, 4, 3),
                                 sl.LIFSqueeze(tau_mem=torch.full((4, 6, 6), 10.0),
                                               spike_threshold=torch.ones(4, 6, 6),
                                               batch_size=B),
                                 sl.SumPool2d(2), nn.Flatten(), nn.Linear(36, 5),
                                 sl.LIFSqueeze(tau_mem=torch.full((5,), 4.0),
                                               spike_threshold=torch.ones(5), batch_size=B)],
                        (2, 8, 8), True, {0: 50, 4: 30}),
    "lifsqueeze-conv-unscaled": (lambda: [
        nn.Conv2d(2, 4, 3),
        sl.LIFSqueeze(tau_mem=torch.full((4, 6, 6), 10.0), spike_threshold=torch.ones(4, 6, 6),
                      batch_size=B, norm_input=False),
        sl.SumPool2d(2), nn.Flatten(), nn.Linear(36, 5),
        sl.LIFSqueeze(tau_mem=torch.full((5,), 4.0), spike_threshold=torch.ones(5),
                      batch_size=B, norm_input=False)], (2, 8, 8), True, {0: 4, 4: 3}),
}


def build(name: str) -> tuple[nn.Module, tuple[int, ...], bool]:
    layers, shape, squeezed, gains = NETWORKS[name]
    torch.manual_seed(0)
    net = nn.Sequential(*layers())
    with torch.no_grad():
        for index, gain in gains.items():
            net[index].weight.mul_(gain)
    return net, shape, squeezed


def inputs(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    """Bernoulli spikes ``[T, B, *shape]``."""
    return (torch.rand(T, B, *shape, generator=torch.Generator().manual_seed(seed)) < 0.2).float()


def sinabs_forward(net: nn.Module, x: torch.Tensor, squeezed: bool) -> torch.Tensor:
    """Sinabs's own forward pass of ``x`` ``[T, B, ...]`` from zero states, as ``[T, B, ...]``."""
    for module in net.modules():
        if isinstance(module, sl.StatefulLayer):
            module.reset_states()
    with torch.no_grad():
        xb = x.transpose(0, 1)
        if squeezed:  # IAFSqueeze/LIFSqueeze take [B*T, ...]
            y = net(xb.reshape(B * T, *x.shape[2:]))
            return y.reshape(B, T, *y.shape[1:]).transpose(0, 1)
        return net(xb).transpose(0, 1)


def export(name: str, path: Path) -> tuple[nn.Module, torch.Tensor, bool]:
    """Build network ``name``, write ``sinabs.nir.to_nir``'s graph to ``path``, and return the
    network, an input and whether it is squeezed. Written with ``nrf_nir.save`` (unvalidated,
    as exported): nir 1.0.8's ``nir.write`` stores neither to_nir's undeclared Conv2d types nor
    its 0-d LIF parameters."""
    net, shape, squeezed = build(name)
    x = inputs(shape)
    sample = x.transpose(0, 1)
    if squeezed:
        sample = sample.reshape(B * T, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = to_nir(net, sample)
    nrf_nir.save(graph, path, validate=False)
    return net, x, squeezed


def _read(path: Path, dialect: str = "auto") -> tuple[nrf_nir.dialects.Normalized, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load_normalized(path, dialect=dialect)
    return result, [str(w.message) for w in caught if issubclass(w.category, ConventionsWarning)]


# ---------------------------------------------------------------- recognised, and exact

@pytest.mark.parametrize("name", ["iafsqueeze-conv", "lif", "lifsqueeze-conv"])
def test_sinabs_exports_are_recognised(tmp_path, name):
    """Each carries something only Sinabs writes: a SumPool2d/Flatten, or a LIF time constant
    in steps (>= 1) with the time axis in front of the Input."""
    export(name, tmp_path / "net.nir")
    result, lines = _read(tmp_path / "net.nir")
    assert result.dialect == "sinabs" and lines and "sinabs.nir.to_nir" in lines[0]
    meta = result.graph.metadata
    assert (meta["spikes"], meta["reset"], meta["threshold"], meta["integration"],
            meta["initial_state"], meta["dt"]) == ("multi", "subtract", "ge", "exponential",
                                                   "zero", 1.0)
    # from_nir's floor: every IAF at -threshold, LIF unbounded
    assert meta["membrane_floor"] == ("minus_threshold" if "iaf" in name else "none")


def test_an_if_network_that_norse_writes_alike_reads_as_plain_nir(tmp_path):
    """Linear -> IAF: the nodes of Norse's to_nir of Linear -> IAFCell with per-neuron v_th
    (the Input's leading axis: Sinabs's time, Norse's batch). Nothing picks a producer: the
    file reads as written, and the one warning line names both dialects."""
    export("iaf", tmp_path / "net.nir")
    result, lines = _read(tmp_path / "net.nir")
    assert result.dialect is None and result.changes == []
    assert len(lines) == 1 and "plain NIR" in lines[0]
    assert "--dialect norse or --dialect sinabs" in lines[0], lines[0]
    assert "norse.torch.to_nir and sinabs.nir.to_nir" in lines[0]
    assert _read(tmp_path / "net.nir", "sinabs")[0].dialect == "sinabs"  # the user chooses


def test_a_lif_network_without_structure_names_sinabs(tmp_path):
    """LIFSqueeze and nn.Linear only: written as Sinabs writes, but nothing a plain file would
    not have (no IF, pooling, Flatten or time axis): plain NIR, the warning names Sinabs."""
    graph = _plain_if_graph(np.float32)
    graph.nodes["if"] = nir.LIF(tau=np.full(4, 8.0, np.float32), r=np.ones(4, np.float32),
                                v_leak=np.zeros(4, np.float32),
                                v_threshold=np.ones(4, np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = normalize(graph, "auto")
    lines = [str(w.message) for w in caught if issubclass(w.category, ConventionsWarning)]
    assert result.dialect is None and result.graph is graph
    assert len(lines) == 1 and lines[0].endswith("--dialect sinabs applies that producer's "
                                                 "conventions"), lines
    assert "--dialect norse" not in lines[0]  # Norse never writes tau >= 1


#: (network, dialect): the default reading, and each option against a network built that way
ROUND_TRIPS = [("iaf", "sinabs"), ("iafsqueeze-conv", "auto"), ("lif", "auto"),
               ("lifsqueeze-conv", "auto"),
               ("iaf-single-no-floor", "sinabs:spikes=single,floor=none"),
               ("lifsqueeze-conv-unscaled", "sinabs:norm_input=off")]


@pytest.mark.parametrize(("name", "dialect"), ROUND_TRIPS)
def test_reference_reproduces_sinabs(tmp_path, name, dialect):
    """The reference reading the file spikes as Sinabs's own forward pass of the network
    (float32; measured: every entry equal on all six)."""
    net, x, squeezed = export(name, tmp_path / "net.nir")
    result, _ = _read(tmp_path / "net.nir", dialect)
    want = sinabs_forward(net, x, squeezed)
    got = nrf_nir.run(result.graph, x, device="cpu")["output"]
    assert 0.05 <= float((want > 0).float().mean()) <= 0.4  # a useful spike rate
    agreement = float((got == want).float().mean())
    assert agreement >= 0.999, (name, agreement)


def test_several_spikes_per_step_and_the_floor_matter(tmp_path):
    """The conventions are not decoration: read without them, the same file disagrees."""
    net, x, squeezed = export("iafsqueeze-conv", tmp_path / "net.nir")
    want = sinabs_forward(net, x, squeezed)
    assert float(want.max()) >= 2  # several spikes in one step
    for wrong in ("sinabs:spikes=single", "sinabs:floor=none"):
        graph = _read(tmp_path / "net.nir", wrong)[0].graph
        got = nrf_nir.run(graph, x, device="cpu")["output"]
        assert float((got == want).float().mean()) < 0.95, wrong


@pytest.mark.parametrize(("name", "dialect"), [("lif-per-neuron", "auto"), ("iaf", "sinabs")])
def test_nir_write_files_are_read_too(tmp_path, name, dialect):
    """Networks nir.write can store (nn.Linear with per-neuron LIF, or IAF) read back by nir
    itself: the LIF one recognised, the IAF one (which Norse writes alike) named."""
    net, shape, _ = build(name)
    x = inputs(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nir.write(tmp_path / "net.nir", to_nir(net, x.transpose(0, 1)))
    result, _ = _read(tmp_path / "net.nir", dialect)
    assert result.dialect == "sinabs"
    got = nrf_nir.run(result.graph, x, device="cpu")["output"]
    want = sinabs_forward(net, x, False)
    assert want.sum() > 0
    assert float((got == want).float().mean()) >= 0.999


def test_a_given_dt_keeps_each_step(tmp_path):
    """With --dt the time constants become seconds (tau*dt) and IF r = 1/dt: the same steps."""
    net, x, _ = export("lif", tmp_path / "lif.nir")
    at_step = _read(tmp_path / "lif.nir")[0].graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_seconds = nrf_nir.io.load_normalized(tmp_path / "lif.nir", dt=1e-3)
    lif = in_seconds.graph.nodes["1"]
    assert in_seconds.graph.metadata["dt"] == 1e-3
    assert np.allclose(lif.tau, 8e-3)
    a = nrf_nir.run(at_step, x, device="cpu")["output"]
    b = nrf_nir.run(in_seconds.graph, x, device="cpu")["output"]
    assert float((a == b).float().mean()) >= 0.999  # exp(-dt/(tau*dt)): equal within rounding
    export("iaf", tmp_path / "iaf.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iaf = nrf_nir.load(tmp_path / "iaf.nir", dialect="sinabs", dt=1e-3).nodes["1"]
    assert np.all(np.asarray(iaf.r) == 1e3)


# ---------------------------------------------------------------- not on a guess

def _plain_if_graph(dtype: type = np.float64) -> nir.NIRGraph:
    """input -> Affine -> IF(r = 1 spelled out, v_reset = 0) -> output, no metadata."""
    rng = np.random.default_rng(0)
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([3])),
        "fc": nir.Affine(weight=rng.normal(0, 1, (4, 3)), bias=np.zeros(4)),
        "if": nir.IF(r=np.ones(4, dtype), v_threshold=np.ones(4, dtype),
                     v_reset=np.zeros(4, dtype)),
        "pool": nir.Output(output_type=np.array([4]))},
        edges=[("input", "fc"), ("fc", "if"), ("if", "pool")], type_check=False)
    graph.metadata = {}
    return graph


def _sinabs_like_graph() -> nir.NIRGraph:
    """:func:`_plain_if_graph` in float32 with a LIF of tau = 8 (steps) after the IF: as
    Sinabs writes it, and not as Norse does (its LIF tau is dt/tau_inv, far below 1)."""
    graph = _plain_if_graph(np.float32)
    graph.nodes["lif"] = nir.LIF(tau=np.full(4, 8.0, np.float32), r=np.ones(4, np.float32),
                                 v_leak=np.zeros(4, np.float32),
                                 v_threshold=np.ones(4, np.float32))
    graph.edges = [*graph.edges[:-1], ("if", "lif"), ("lif", "pool")]
    return graph


def test_a_plain_nir_file_is_not_read_as_sinabs(tmp_path):
    """A hand-written IF network (numpy float64) with the same r = 1 and v_reset = 0."""
    nir.write(tmp_path / "plain.nir", _plain_if_graph())
    result, lines = _read(tmp_path / "plain.nir")
    assert result.dialect is None and result.changes == []
    assert len(lines) == 1 and "plain NIR" in lines[0] and "--dialect sinabs" not in lines[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the controls: float32, as torch writes it
        assert normalize(_plain_if_graph(np.float32), "auto").dialect is None  # Norse's too
        assert normalize(_sinabs_like_graph(), "auto").dialect == "sinabs"


@pytest.mark.parametrize("spoil", ["metadata", "v_reset", "scalar-if", "lif-tau"])
def test_one_spoilt_part_of_the_fingerprint_reads_as_plain_nir(spoil):
    graph = _sinabs_like_graph()
    if spoil == "metadata":
        graph.metadata = {"source": "somewhere"}
    elif spoil == "v_reset":
        graph.nodes["if"].v_reset = np.full(4, 0.5, np.float32)
    elif spoil == "scalar-if":  # Norse writes IF parameters 0-d
        graph.nodes["if"] = nir.IF(r=np.ones((), np.float32), v_threshold=np.ones((), np.float32),
                                   v_reset=np.zeros((), np.float32))
    else:  # a LIF whose tau is in seconds, not steps
        graph.nodes["lif"].tau = np.full(4, 0.01, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert normalize(graph, "auto").dialect is None


# ---------------------------------------------------------------- options and changes

def test_inspect_lists_the_changes(tmp_path, capsys):
    export("iaf", tmp_path / "net.nir")
    assert main(["inspect", str(tmp_path / "net.nir"), "--dialect", "sinabs", "--json"]) == 0
    read = json.loads(capsys.readouterr().out)["read"]
    assert read["dialect"] == "sinabs"
    changes = {(c["node"], c["field"]): (c["before"], c["after"]) for c in read["changes"]}
    assert changes[(None, "metadata.spikes")] == ("absent", "'multi'")
    assert changes[(None, "metadata.membrane_floor")] == ("absent", "'minus_threshold'")
    assert changes[(None, "metadata.dt")] == ("absent", "1")
    assert changes[("input", "input_type")] == ("shape [100, 12]", "shape [12]")  # time axis
    assert main(["inspect", str(tmp_path / "net.nir"), "--dialect",
                 "sinabs:spikes=single,floor=none"]) == 0
    out = capsys.readouterr().out
    assert "metadata.spikes: absent -> 'single'" in out
    assert "metadata.membrane_floor: absent -> 'none'" in out


def test_named_on_a_file_sinabs_did_not_write_r_and_v_reset_are_ignored():
    graph = _plain_if_graph()
    graph.nodes["if"].r = np.full(4, 2.0)
    graph.nodes["if"].v_reset = np.full(4, 0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = normalize(graph, "sinabs:floor=none")
    assert any("r ignored" in n for n in result.notes)
    assert any("v_reset set to 0" in n for n in result.notes)
    fixed = result.graph.nodes["if"]
    assert np.all(fixed.r == 1.0) and np.all(fixed.v_reset == 0.0)
    assert result.graph.metadata["membrane_floor"] == "none"


@pytest.mark.parametrize(("spec", "message"), [
    ("sinabs:spikes=many", "option spikes of the sinabs dialect must be one of multi, single"),
    ("sinabs:floor", "option floor of the sinabs dialect must be one of threshold, none"),
    ("sinabs:dt=1", "unknown option 'dt' for the sinabs dialect; valid: spikes=multi|single, "
                    "floor=threshold|none, norm_input=on|off")])
def test_bad_options_are_one_line_errors(spec, message):
    with pytest.raises(nrf_nir.NIRError, match=message.replace("|", r"\|")):
        normalize(_plain_if_graph(), spec)


# ---------------------------------------------------------------- no framework imported

def test_loading_a_sinabs_file_imports_no_framework(tmp_path):
    export("iafsqueeze-conv", tmp_path / "net.nir")
    script = (
        "import sys, warnings\nwarnings.simplefilter('ignore')\nimport nrf_nir\n"
        "from nrf_nir.inspect import summarize\nfrom nrf_nir.io import load_normalized\n"
        f"path = {str(tmp_path / 'net.nir')!r}\n"
        "assert load_normalized(path).dialect == 'sinabs'\n"
        "summarize(nrf_nir.validate(path))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'sinabs', 'samna', 'nirtorch', 'norse', 'snntorch', 'rockpool'}))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
