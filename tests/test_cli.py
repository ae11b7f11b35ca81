"""The nrf-nir command line: validate, inspect, run; user errors exit 2 without traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nrf_nir
from nrf_nir.cli import main
from tests.helpers import mlp, recurrent, spikes


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.nir"
    nrf_nir.save(recurrent(4, 6), path)
    return path


def test_validate(model, capsys):
    assert main(["validate", str(model)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "1 recurrent edges" in out and "dt 0.001" in out


def test_inspect_text_and_json(model, capsys):
    assert main(["inspect", str(model)]) == 0
    text = capsys.readouterr().out
    assert "rnn.lif" in text and "CubaLIF" in text and "neurons" in text
    assert main(["inspect", str(model), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["counts"]["neurons"] == 6 + 3
    assert info["counts"]["spiking_neurons"] == 6
    assert info["counts"]["synapses"] == 4 * 6 + 6 * 6 + 6 * 3
    assert info["semantics"]["dt"] == 1e-3
    assert info["recurrent_edges"] == [["rnn.w_rec", "rnn.lif"]]
    node = {n["name"]: n for n in info["nodes"]}["rnn.lif"]
    assert node["output_shape"] == [6] and node["params"]["tau_mem"]["shape"] == [6]


def test_run_writes_outputs_equal_to_the_api(model, tmp_path, capsys):
    x = spikes((40, 2, 4), 0.4)
    np.savez(tmp_path / "in.npz", input=x)
    out_path = tmp_path / "out.npz"
    code = main(["run", str(model), "--input", str(tmp_path / "in.npz"), "--output",
                 str(out_path), "--record", "rnn.lif"])
    assert code == 0
    with np.load(out_path) as data:
        got = {k: data[k] for k in data.files}
    want = nrf_nir.run(nrf_nir.load(model), x, record=("rnn.lif",))
    assert set(got) == {"output", "rnn.lif"}
    np.testing.assert_array_equal(got["output"], want["output"].numpy())
    np.testing.assert_array_equal(got["rnn.lif"], want["rnn.lif"].numpy())


def test_run_needs_dt_when_the_file_has_none(tmp_path, capsys):
    graph = mlp([3, 2])
    del graph.metadata["dt"]
    nrf_nir.save(graph, tmp_path / "m.nir")
    np.savez(tmp_path / "in.npz", input=np.ones((5, 1, 3)))
    args = ["run", str(tmp_path / "m.nir"), "--input", str(tmp_path / "in.npz"),
            "--output", str(tmp_path / "o.npz")]
    assert main(args) == 2
    assert "--dt" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()
    assert main([*args, "--dt", "1e-3"]) == 0
    assert (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("args,match", [
    (["validate", "/nonexistent/model.nir"], "no such file"),
    (["inspect", "{tmp}/garbage.nir"], "not a readable HDF5"),
    (["run", "{model}", "--input", "{tmp}/bad.npz", "--output", "{tmp}/o.npz"],
     "must have shape"),
    (["run", "{model}", "--input", "{tmp}/garbage.nir", "--output", "{tmp}/o.npz"], "npz"),
    (["run", "{model}", "--input", "{tmp}/bad.npz", "--output", "{tmp}/o.npz", "--dt", "0"],
     "must be > 0"),
])
def test_user_errors_exit_2_with_one_line(args, match, model, tmp_path):
    (tmp_path / "garbage.nir").write_bytes(b"this is not hdf5" * 10)
    np.savez(tmp_path / "bad.npz", input=np.ones((5, 1, 9)))
    argv = [a.format(tmp=tmp_path, model=model) for a in args]
    proc = subprocess.run([sys.executable, "-m", "nrf_nir.cli", *argv], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert match in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.npz").exists()


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "nrf-nir"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "nrf-nir" in proc.stdout


def test_targets_lists_the_reference(capsys):
    assert main(["targets"]) == 0
    assert "reference" in capsys.readouterr().out
