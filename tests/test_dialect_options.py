"""``--dialect NAME[:key=value,...]`` and ``--dt`` on every command that reads a .nir file,
dialects applied only on evidence, inspect's change list, provenance of nodes a dialect made,
and the dt lint (docs/dialects.md)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest

import nrf_nir
from nrf_nir.cli import main
from nrf_nir.dialects import ConventionsWarning, normalize
from nrf_nir.validate import DtLintWarning, dt_lint, validate
from tests.helpers import chain, cuba, dialect_graphs, lif, spikes

#: snnTorch's export dt: its files write r = tau/1e-4.
SNNTORCH_DT = 1e-4


def _snntorch_lif(n: int, tau: float = 0.01) -> nir.LIF:
    taus = np.full(n, tau)
    return nir.LIF(tau=taus, r=taus / SNNTORCH_DT, v_leak=np.zeros(n),
                   v_threshold=np.ones(n), v_reset=np.zeros(n))


def snntorch_two_layers() -> nir.NIRGraph:
    """input -> fc1 -> lif1 -> fc2 -> lif2 -> output as snntorch.export_nir writes it."""
    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(input_type=np.array([3])),
             "fc1": nir.Affine(weight=rng.normal(0, 1, (5, 3)), bias=np.zeros(5)),
             "lif1": _snntorch_lif(5),
             "fc2": nir.Affine(weight=rng.normal(0, 1, (2, 5)), bias=np.zeros(2)),
             "lif2": _snntorch_lif(2), "output": nir.Output(output_type=np.array([2]))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "fc1"), ("fc1", "lif1"),
                                             ("lif1", "fc2"), ("fc2", "lif2"),
                                             ("lif2", "output")], type_check=False)
    graph.metadata = {}
    return graph


def snntorch_rleaky(n: int = 4) -> nir.NIRGraph:
    """input -> fc -> lif1 (RLeaky: a subgraph whose recurrent nn.Linear has a bias)."""
    rng = np.random.default_rng(1)
    sub = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([n])), "lif": _snntorch_lif(n),
        "w_rec": nir.Affine(weight=rng.normal(0, 0.3, (n, n)), bias=np.full(n, 0.2)),
        "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False)
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([3])),
        "fc": nir.Affine(weight=rng.normal(0, 1, (n, 3)), bias=np.zeros(n)), "lif1": sub,
        "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "fc"), ("fc", "lif1.input"), ("lif1.output", "output")],
        type_check=False)
    graph.metadata = {}
    return graph


def _norse_with_batch_axis() -> nir.NIRGraph:
    graph = dialect_graphs()["norse"]
    graph.nodes["input"] = nir.Input(input_type=np.array([1, 3]))  # to_nir's batch axis
    return graph


def _quiet_normalize(graph: nir.NIRGraph, dialect: str = "auto", **kw: float):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = normalize(graph, dialect, **kw)
    return result, [str(w.message) for w in caught if issubclass(w.category,
                                                                  ConventionsWarning)]


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"snntorch": tmp_path / "snntorch.nir", "input": tmp_path / "in.npz"}
    nir.write(paths["snntorch"], snntorch_two_layers())
    np.savez(paths["input"], input=spikes((20, 2, 3)))
    return paths


# ---------------------------------------------------------------- every command, both options

def test_every_file_command_takes_dialect_and_dt(files, tmp_path, capsys):
    # zero reset without delay: the contract's defaults reset_delay 'off', which xylo runs
    f, spec = str(files["snntorch"]), "snntorch:reset=zero,delay=off"
    both = ["--dialect", spec, "--dt", "1e-3"]
    assert main(["validate", f, *both]) == 0
    assert "dt 0.001 s" in capsys.readouterr().out
    assert main(["inspect", f, "--json", *both]) == 0
    read = json.loads(capsys.readouterr().out)["read"]
    assert read["dialect"] == "snntorch"
    assert {"node": None, "field": "metadata.reset", "before": "absent",
            "after": "'value'"} in read["changes"]
    assert main(["run", f, "--input", str(files["input"]), "--output",
                 str(tmp_path / "o.npz"), "--device", "cpu", *both]) == 0
    assert np.load(tmp_path / "o.npz")["output"].shape == (20, 2, 2)
    assert main(["deploy", f, "--target", "xylo", "-o", str(tmp_path / "dep"), *both]) == 0
    assert (tmp_path / "dep" / "deploy.json").exists()
    assert main(["conformance", f, "--targets", "reference", "--report", str(tmp_path / "rep"),
                 "--T", "10", "--B", "2", "--workers", "1", *both]) == 0
    assert "1/1 as expected" in capsys.readouterr().out


def test_dt_changes_what_runs(files, tmp_path):
    """--dt reaches the run: at 10x the step the same file spikes differently."""
    outs = []
    for dt in ("1e-4", "1e-3"):
        out = tmp_path / f"o{dt}.npz"
        assert main(["run", str(files["snntorch"]), "--input", str(files["input"]), "--output",
                     str(out), "--device", "cpu", "--dialect", "snntorch", "--dt", dt]) == 0
        outs.append(np.load(out)["output"])
    assert not np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize(("spec", "wanted"), [
    ("banana", "unknown dialect 'banana'; valid: auto, none, snntorch, rockpool, norse"),
    ("snntorch:colour=red", "unknown option 'colour' for the snntorch dialect; valid: "
                            "reset=subtract|zero, delay=on|off"),
    ("snntorch:reset=maybe", "must be one of subtract, zero; got 'maybe'"),
    ("rockpool:reset=zero", "unknown option 'reset' for the rockpool dialect"),
    ("norse:dt=-1", "must be a number of seconds > 0"),
])
@pytest.mark.parametrize("command", ["validate", "inspect", "conformance"])
def test_bad_dialects_are_one_line_errors(files, capsys, spec, wanted, command):
    extra = ["--report", "r"] if command == "conformance" else []
    with pytest.raises(SystemExit) as exc:
        main([command, str(files["snntorch"]), "--dialect", spec, *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert wanted in err and err.count("\n") == 1


def test_python_api_takes_dialect_and_dt(files):
    path = files["snntorch"]
    zero = nrf_nir.load(path, dialect="snntorch:reset=zero,delay=off", dt=2e-4)
    assert zero.metadata["reset"] == "value" and zero.metadata["dt"] == 2e-4
    checked = nrf_nir.validate(path, dialect="snntorch:reset=zero,delay=off", dt=2e-4)
    assert checked.graph.metadata["reset"] == "value"
    x = spikes((30, 2, 3), rate=0.5)
    subtract = nrf_nir.run(path, x, dialect="snntorch:delay=off", dt=1e-3, device="cpu")
    value = nrf_nir.run(path, x, dialect="snntorch:reset=zero,delay=off", dt=1e-3,
                        device="cpu")
    assert nrf_nir.lower(path, dialect="snntorch", dt=1e-3).semantics.dt == 1e-3
    assert not np.array_equal(subtract["output"].numpy(), value["output"].numpy())


# ---------------------------------------------------------------- snnTorch options

def test_snntorch_reset_and_delay_options():
    """The options become the metadata reset and reset_delay; v_reset stays 0 (snnTorch's
    resets are the contract's reset_delay values, no v_reset trick): delay=off under the
    subtract reset is 'guarded' (snnTorch's "avoid double reset"), under the zero reset 'off'."""
    on, _ = _quiet_normalize(snntorch_two_layers(), "snntorch")
    off, _ = _quiet_normalize(snntorch_two_layers(), "snntorch:delay=off")
    zero_off, _ = _quiet_normalize(snntorch_two_layers(), "snntorch:reset=zero,delay=off")
    zero_on, _ = _quiet_normalize(snntorch_two_layers(), "snntorch:reset=zero")
    for result in (on, off, zero_off, zero_on):
        assert np.all(result.graph.nodes["lif1"].v_reset == 0)
        # every neuron is a Leaky: they agree, so no node holds its own value
        assert all("reset_delay" not in (node.metadata or {})
                   for node in result.graph.nodes.values())
    assert [(r.graph.metadata["reset"], r.graph.metadata["reset_delay"])
            for r in (on, off, zero_off, zero_on)] == \
        [("subtract", "on"), ("subtract", "guarded"), ("value", "off"), ("value", "off")]
    # a Leaky's delayed zero reset gives the spikes of the immediate one: said why
    assert any("a Leaky outside a loop" in n for n in zero_on.notes)
    assert any("reset 'zero' with reset_delay=False" in n for n in zero_off.notes)
    assert any("avoid double reset" in n for n in off.notes)


def _rsynaptic_and_leaky() -> nir.NIRGraph:
    """input -> fc -> RSynaptic (lif1) -> Leaky (out) as export_to_nir writes it."""
    graph = snntorch_rleaky()
    sub = graph.nodes["lif1"]
    lif = sub.nodes["lif"]
    taus = np.asarray(lif.tau)
    sub.nodes["lif"] = nir.CubaLIF(tau_syn=taus / 2, tau_mem=taus, r=taus / SNNTORCH_DT,
                                   w_in=taus / 2 / SNNTORCH_DT, v_leak=np.zeros(4),
                                   v_threshold=np.ones(4), v_reset=np.zeros(4))
    graph.nodes["out"] = _snntorch_lif(4)
    graph.edges = [("input", "fc"), ("fc", "lif1.input"), ("lif1.output", "out"),
                   ("out", "output")]
    return graph


@pytest.mark.parametrize(("spec", "graph_value", "out_value"), [
    ("snntorch:delay=off", "on", "guarded"), ("snntorch:reset=zero,delay=off", "on", "off"),
    ("snntorch:reset=zero", "on", "off"), ("snntorch", "on", None)])
def test_snntorch_options_on_a_recurrent_synaptic_layer(spec, graph_value, out_value):
    """RSynaptic resets one step late whatever its reset_delay (1.0.0 resets local copies when
    it is False); a Leaky read-out beside it that resets otherwise holds its own reset_delay
    in its node metadata (the graph holds the first value on a tie), named in a note; v_reset
    stays 0."""
    result, _ = _quiet_normalize(_rsynaptic_and_leaky(), spec)
    graph = result.graph
    assert graph.metadata["reset_delay"] == graph_value
    assert "reset_delay" not in graph.nodes["lif1"].nodes["lif"].metadata
    assert graph.nodes["out"].metadata.get("reset_delay") == out_value
    assert np.all(graph.nodes["out"].v_reset == 0)
    noted = [n for n in result.notes if n.startswith("node metadata reset_delay")]
    assert noted == ([f"node metadata reset_delay where a neuron's reset differs from the "
                      f"graph's 'on' (what snnTorch's module does with these options): out "
                      f"'{out_value}'"] if out_value else [])
    checked = validate(graph)
    assert nrf_nir.check(checked.graph, "reference") == []


# ---------------------------------------------------------------- evidence, not guesses

def test_a_plain_file_with_tiny_tau_loads_unchanged(tmp_path):
    """tau = 5e-5 s (a 50 us membrane) and no metadata: no rescaling, one warning line."""
    graph = chain(nir.Affine(weight=np.eye(2), bias=np.zeros(2)), lif(2, tau=5e-5), shape=(2,),
                  dt=None)
    path = tmp_path / "plain.nir"
    nrf_nir.save(graph, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = nrf_nir.load(path)
    assert np.all(loaded.nodes["n1"].tau == 5e-5) and "dt" not in loaded.metadata
    lines = [str(w.message) for w in caught if issubclass(w.category, ConventionsWarning)]
    assert len(lines) == 1
    for convention in ("reset 'value'", "integration 'euler'", "threshold 'gt'",
                       "dt not stated"):
        assert convention in lines[0]


@pytest.mark.parametrize("producer", ["snntorch", "rockpool", "norse"])
def test_each_producers_fingerprint_is_recognised(producer):
    graph = _norse_with_batch_axis() if producer == "norse" else dialect_graphs()[producer]
    result, lines = _quiet_normalize(graph)
    assert result.dialect == producer and result.changes and lines


def test_norse_parameters_without_the_fingerprint_load_unchanged():
    """Norse-like time constants (1e-5 s) but no batch axis on the Input: plain NIR."""
    graph = dialect_graphs()["norse"]
    graph.nodes["input"] = nir.Input(input_type=np.array([3]))  # no batch axis
    result, lines = _quiet_normalize(graph)
    assert result.dialect is None and result.graph is graph and result.changes == []
    assert len(lines) == 1 and "plain NIR" in lines[0]
    named, _ = _quiet_normalize(graph, "norse:dt=1e-3")  # the user can still say so
    assert np.allclose(named.graph.nodes["lif"].tau, 1e-2)


def test_snntorch_parameters_broken_by_one_neuron_load_unchanged():
    """One LIF whose r is not tau/1e-4: not snnTorch's export, read as written."""
    graph = snntorch_two_layers()
    graph.nodes["lif2"].r = np.full(2, 3.0)
    result, _ = _quiet_normalize(graph)
    assert result.dialect is None and result.graph is graph


# ---------------------------------------------------------------- inspect's change list

def test_inspect_lists_every_change_field_by_field(files, capsys):
    assert main(["inspect", str(files["snntorch"]), "--dt", "1e-3"]) == 0
    out = capsys.readouterr().out
    assert "read with the snntorch dialect" in out
    assert "  metadata.reset_delay: absent -> 'on'" in out
    assert "lif1.v_reset" not in out  # snnTorch's delayed reset is a metadata key, not v_reset
    assert "  metadata.dt: absent -> 0.001 (dt given, instead of the dialect's 0.0001)" in out
    assert main(["inspect", str(files["snntorch"]), "--dialect", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["read"]["changes"] == []


def test_inspect_names_the_node_a_dialect_made(tmp_path, capsys):
    path = tmp_path / "rleaky.nir"
    nir.write(path, snntorch_rleaky())
    assert main(["inspect", str(path), "--json"]) == 0
    changes = json.loads(capsys.readouterr().out)["read"]["changes"]
    made = [c for c in changes if c["node"] == "lif1.w_rec_bias"]
    assert made == [{"node": "lif1.w_rec_bias", "field": "node", "before": "absent",
                     "after": "Affine (made from 'lif1.w_rec' by the snntorch dialect)"}]
    assert any(c["node"] == "lif1.w_rec" and c["field"] == "type" for c in changes)


def test_inspect_shows_the_firing_keys_and_node_level_values(tmp_path, capsys):
    """The text header names spikes / membrane_floor / reset_delay only when not default, and
    a line lists the nodes that hold their own reset_delay; --json has every key and each
    node's own values under ``semantics``."""
    path = tmp_path / "mixed.nir"
    nir.write(path, _rsynaptic_and_leaky())
    assert main(["inspect", str(path), "--dialect", "snntorch:delay=off"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "; reset delay: on; producer: snntorch" in out[0]
    assert "spikes" not in out[0] and "membrane floor" not in out[0]
    assert out[1] == "node-level reset delay: out guarded"
    assert main(["inspect", str(path), "--dialect", "snntorch:delay=off", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {k: summary["semantics"][k] for k in ("spikes", "membrane_floor", "reset_delay")} \
        == {"spikes": "single", "membrane_floor": "none", "reset_delay": "on"}
    own = {n["name"]: n["semantics"] for n in summary["nodes"] if "semantics" in n}
    assert own == {"out": {"reset_delay": "guarded"}}
    # a file on the defaults: the header as before, no node-level line
    plain = tmp_path / "plain.nir"
    nrf_nir.save(chain(nir.Linear(weight=np.eye(2)), lif(2), shape=(2,)), plain)
    assert main(["inspect", str(plain)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "reset delay" not in out[0] and out[1].startswith("inputs: ")


# ---------------------------------------------------------------- messages in the user's terms

def test_refusals_on_a_made_node_say_where_it_came_from():
    from nrf_nir.api import _error_in_user_terms, _in_user_terms
    from nrf_nir.targets import Violation

    result, _ = _quiet_normalize(snntorch_rleaky())
    checked = validate(result.graph)
    found = _in_user_terms(checked, [Violation("lava-fixed", "lif1.w_rec_bias", "bias",
                                               "fold it into the layer before"),
                                     Violation("lava-fixed", "fc", None, "unchanged")])
    assert str(found[0]) == ("[lava-fixed] node 'lif1.w_rec_bias', field 'bias': (made from "
                             "'lif1.w_rec' by the snntorch dialect) fold it into the layer "
                             "before")
    assert found[1].message == "unchanged"
    error = _error_in_user_terms(checked, nrf_nir.NIRError("cannot map", node="lif1.w_rec_bias"))
    assert str(error) == ("node 'lif1.w_rec_bias': (made from 'lif1.w_rec' by the snntorch "
                          "dialect) cannot map")


# ---------------------------------------------------------------- dt lint

def test_dt_lint_gives_the_numbers_once_per_neuron():
    graph = chain(nir.Affine(weight=np.full((3, 2), 0.5), bias=np.zeros(3)),
                  lif(3, tau=0.01), nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
                  lif(3, tau=0.01), shape=(2,), dt=1e-3)
    found = dt_lint(validate(graph))
    assert [name for name, _ in found] == ["n1"]  # n3 is fed by neurons, not by an Input
    # Euler: one unit spike through w = 0.5 moves v by dt/tau * r * w = 0.1 * 1 * 0.5
    assert "by up to 0.05 at dt = 0.001 s, 0.005 at dt = 0.0001 s" in found[0][1]
    assert "by up to 0.0005 at dt = 1e-05 s" in dt_lint(validate(graph), dt=1e-5)[0][1]


def test_dt_lint_spares_synaptic_currents_and_warns_in_validate(tmp_path, capsys):
    synaptic = chain(nir.Affine(weight=np.eye(2), bias=np.zeros(2)), cuba(2), shape=(2,))
    assert dt_lint(validate(synaptic)) == []
    graph = chain(nir.Affine(weight=np.eye(4), bias=np.zeros(4)), lif(4), shape=(4,))
    with pytest.warns(DtLintWarning, match="'n1' \\(LIF\\) takes spikes from Input 'input'"):
        nrf_nir.validate(graph, lint=True)
    path = tmp_path / "lif.nir"
    nrf_nir.save(nrf_nir.write_semantics(graph, nrf_nir.Semantics(dt=1e-3)), path)
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert err.count("nrf-nir: warning:") == 1 and err.count("\n") == 1
