"""User mistakes of issue 18: each exits 2 with one ``nrf-nir: error:`` line naming what is
wrong (the harness of ``tests/hostile.py``), or, for a closed pipe, ends quietly.

Mistakes: an input file that is no ``.npz`` (a ``.npy``, text, nothing), an ``.npz`` key that
is no Input node name, an export whose input shape does not fit the model (named by layer and
shapes, from the CLI and from ``nrf_nir.export``), ``--record`` given several times, and the
reader of ``nrf-nir ... | head`` going away.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nrf_nir
from nrf_nir.cli import EXIT_CLOSED_PIPE, main
from nrf_nir.errors import NIRError
from tests import helpers
from tests.hostile import Case, check_case, register

NRF_NIR = Path(sys.executable).parent / "nrf-nir"
#: A factory file: one Linear layer taking 12 features.
FACTORY = "import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(12, 4))\n"


def _model(work: Path) -> str:
    """A one-input model (Input node ``input``, 3 features) in ``work``; its file name."""
    nrf_nir.save(helpers.mlp([3, 4]), work / "m.nir")
    return "m.nir"


def _run(work: Path, inputs: str, *extra: str) -> list[str]:
    return ["run", _model(work), "--input", inputs, "--output", "out.npz", *extra]


def _npy_input(work: Path) -> list[str]:
    np.save(work / "in.npy", np.ones((5, 2, 3), np.float32))
    return _run(work, "in.npy")


def _text_input(work: Path) -> list[str]:
    (work / "in.csv").write_text("1,2,3\n4,5,6\n")
    return _run(work, "in.csv")


def _missing_input(work: Path) -> list[str]:
    return _run(work, "nothing.npz")


def _one_wrongly_named_key(work: Path) -> list[str]:
    np.savez(work / "in.npz", x=np.ones((5, 2, 3), np.float32))
    return _run(work, "in.npz")


def _empty_record_name(work: Path) -> list[str]:
    np.savez(work / "in.npz", input=np.ones((5, 2, 3), np.float32))
    return _run(work, "in.npz", "--record", "n0,")


def _export(work: Path, *extra: str) -> list[str]:
    (work / "f.py").write_text(FACTORY)
    torch.save(nn.Sequential(nn.Linear(12, 4)).state_dict(), work / "w.pt")
    return ["export", "w.pt", "--model", "f.py:build", "-o", "x.nir", *extra]


def _factory_export(work: Path) -> list[str]:
    (work / "f.py").write_text(FACTORY)
    return ["export", "f.py:build", "-o", "x.nir", "--input-shape", "10"]


CASES = [
    register(Case("run --input a .npy file", _npy_input,
                  "file 'in.npy': not an .npz archive (a .npy file? save inputs with "
                  "numpy.savez, one array [T, B, *shape] per Input node keyed by its name: "
                  "input)", absent=("out.npz",))),
    register(Case("run --input a text file", _text_input,
                  "file 'in.csv': not an .npz archive (not a zip file", absent=("out.npz",))),
    register(Case("run --input a missing file", _missing_input, "file 'nothing.npz': no such file",
                  absent=("out.npz",))),
    register(Case("run --input npz with one wrongly named key", _one_wrongly_named_key,
                  "file 'in.npz', field 'inputs': inputs must be keyed by the graph's Input "
                  "nodes (input); missing: input; unknown: x", absent=("out.npz",))),
    register(Case("run --record with an empty name", _empty_record_name,
                  "argument --record: empty name in 'n0,'", absent=("out.npz",))),
    register(Case("export --input-shape of the wrong size", lambda w: _export(
        w, "--input-shape", "10"), "node '0', field 'input_shape': Linear takes one time step "
        "[B, 12], but --input-shape 10 gives [1, 10]", absent=("x.nir",))),
    register(Case("export --input-shape of the wrong rank", lambda w: _export(
        w, "--input-shape", "3,12"), "node '0', field 'input_shape': Linear takes one time step "
        "[B, 12], but --input-shape 3,12 gives [1, 3, 12]", absent=("x.nir",))),
    register(Case("export a factory with the wrong --input-shape", _factory_export,
                  "node '0', field 'input_shape': Linear takes one time step [B, 12], but "
                  "--input-shape 10 gives [1, 10]", absent=("x.nir",))),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_mistake_is_one_line_and_exit_2(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path / "work")


# ------------------------------------------------------------------------------ --record


def _record_run(tmp_path: Path, *record: str) -> set[str]:
    model = tmp_path / "m.nir"
    nrf_nir.save(helpers.mlp([3, 4, 2]), model)
    np.savez(tmp_path / "in.npz", input=np.ones((5, 2, 3), np.float32))
    out = tmp_path / "out.npz"
    assert main(["run", str(model), "--input", str(tmp_path / "in.npz"), "--output", str(out),
                 *record]) == 0
    with np.load(out) as data:
        return set(data.files)


def test_repeated_record_options_accumulate(tmp_path: Path) -> None:
    assert _record_run(tmp_path, "--record", "n0", "--record", "n1.v") == {
        "output", "n0", "n1.v"}


def test_record_takes_comma_separated_names(tmp_path: Path) -> None:
    assert _record_run(tmp_path, "--record", "n0,n1", "--record", "n3.v") == {
        "output", "n0", "n1", "n3.v"}


# ------------------------------------------------------------------------------ closed pipe


def _inspect_argv(tmp_path: Path) -> list[str]:
    nrf_nir.save(helpers.recurrent(4, 6), tmp_path / "m.nir")
    return [str(NRF_NIR), "inspect", str(tmp_path / "m.nir"), "--json"]


@pytest.mark.parametrize("json_flag", [True, False], ids=["json", "text"])
def test_a_reader_gone_before_output_ends_the_command_quietly(tmp_path: Path,
                                                             json_flag: bool) -> None:
    argv = _inspect_argv(tmp_path)[: None if json_flag else -1]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the interpreter has started: every write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == EXIT_CLOSED_PIPE == 141
    assert err == b"", err.decode(errors="replace")


def test_piping_into_head_prints_no_error(tmp_path: Path) -> None:
    argv = " ".join(_inspect_argv(tmp_path))
    proc = subprocess.run(["bash", "-c", f"{argv} | head -c 10; echo \" ${{PIPESTATUS[0]}}\""],
                          capture_output=True, text=True, timeout=120)
    head, status = proc.stdout.rsplit(" ", 1)
    assert head == '{\n  "input'  # the first 10 bytes
    assert int(status) in (0, EXIT_CLOSED_PIPE)
    assert proc.stderr == ""


def test_a_broken_pipe_that_is_not_stdout_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a closed standard output ends quietly; another broken pipe (stdout intact, here
    pytest's capture) still surfaces."""
    import nrf_nir.cli as cli

    def broken(args: object) -> int:
        raise BrokenPipeError("a child's pipe")

    monkeypatch.setattr(cli, "cmd_targets", broken)
    with pytest.raises(BrokenPipeError):
        main(["targets"])


# ------------------------------------------------------------------------------ export sample


def _lif_model(n_in: int = 10) -> nn.Module:
    import norse.torch as snn

    return snn.SequentialState(nn.Linear(n_in, 20), snn.LIFBoxCell(), nn.Linear(20, 4),
                               snn.LICell())


def test_export_refuses_a_sample_with_a_time_axis() -> None:
    with pytest.raises(NIRError, match=r"node '0', field 'sample_input': Linear takes one time "
                       r"step \[B, 10\], got a sample_input of shape \[50, 3, 10\]"):
        nrf_nir.export(_lif_model(), torch.rand(50, 3, 10))
    graph = nrf_nir.export(_lif_model(), torch.rand(3, 10))  # one time step: accepted
    assert list(graph.nodes["input"].input_type["input"]) == [10]


def test_export_refuses_an_unbatched_conv_sample() -> None:
    with pytest.raises(NIRError, match=r"Conv2d takes one time step \[B, 2, H, W\], got a "
                       r"sample_input of shape \[2, 8, 8\]"):
        nrf_nir.export(nn.Sequential(nn.Conv2d(2, 4, 3)), torch.rand(2, 8, 8))


@pytest.mark.parametrize("module,sample,match", [
    (nn.Sequential(nn.Linear(10, 20), nn.Linear(30, 4)), (1, 10),
     r"node '1', field 'input': Linear takes one time step \[B, 30\], got shape \[1, 20\] "
     r"from the layer before"),
    (nn.Sequential(nn.Conv2d(2, 4, 3), nn.Conv2d(3, 4, 3)), (1, 2, 8, 8),
     r"node '1', field 'input': Conv2d takes one time step \[B, 3, H, W\], got shape "
     r"\[1, 4, 6, 6\]"),
], ids=["linear", "conv"])
def test_export_names_an_inner_layer_that_does_not_fit(module: nn.Module, sample: tuple[int, ...],
                                                       match: str) -> None:
    with pytest.raises(NIRError, match=match):
        nrf_nir.export(module, torch.zeros(sample))


def test_export_turns_a_neuron_shape_error_into_one_naming_the_layer() -> None:
    import norse.torch as snn

    cell = snn.LIFBoxCell(p=snn.LIFBoxParameters(tau_mem_inv=torch.full((7,), 100.0)))
    with pytest.raises(NIRError, match=r"node '1', field 'input': LIFBoxCell fails on an input "
                       r"of shape \[1, 20\]: The size of tensor a \(7\)"):
        nrf_nir.export(snn.SequentialState(nn.Linear(10, 20), cell), torch.zeros(1, 10))


# ------------------------------------------------------------------------------ factories


def _console(argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env_path = f"{NRF_NIR.parent}:/usr/bin:/bin"
    return subprocess.run([str(NRF_NIR), *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PATH": env_path, "HOME": str(cwd)})


def test_a_factory_is_imported_from_the_working_directory(tmp_path: Path) -> None:
    """The console script (whose sys.path holds its bin folder, not the working directory)
    finds ``mypkg.models:build`` in the folder it runs in, as ``python -m`` would."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "models.py").write_text(FACTORY)
    proc = _console(["export", "mypkg.models:build", "-o", "m.nir", "--input-shape", "12"],
                    tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert list(nrf_nir.load(tmp_path / "m.nir").nodes["input"].input_type["input"]) == [12]
