"""A corpus of malformed files, checkpoints and inputs, each with its expected error.

Every case must raise ``NIRError`` (never a traceback from h5py/numpy/torch, never a silent
result) whose message contains the expected text; file cases are also run through the CLI,
which must exit with status 2 and print one line naming the file.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.errors import NIRError
from tests.helpers import mlp, recurrent

# ------------------------------------------------------------------------------ .nir files


def _valid(path: Path, graph: nir.NIRGraph | None = None) -> Path:
    nrf_nir.save(graph if graph is not None else mlp([4, 5, 3]), path)
    return path


def _h5(edit: Callable[[h5py.File], None], graph: nir.NIRGraph | None = None):
    def make(path: Path) -> Path:
        _valid(path, graph)
        with h5py.File(path, "r+") as f:
            edit(f)
        return path
    return make


def _set(key: str, value) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[key]
        f.create_dataset(key, data=value)
    return edit


def _del(key: str) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[key]
    return edit


def _bytes(data: bytes):
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path
    return make


def _truncated(fraction: float):
    def make(path: Path) -> Path:
        _valid(path)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
        return path
    return make


def _flipped(offset_fraction: float):
    def make(path: Path) -> Path:
        _valid(path)
        data = bytearray(path.read_bytes())
        start = int(len(data) * offset_fraction)
        for i in range(start, min(start + 64, len(data))):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
        return path
    return make


def _corrupt_weights(path: Path) -> Path:
    """Flip bytes inside the stored weight matrix (checksummed: must not load silently)."""
    graph = mlp([40, 50, 3])
    nrf_nir.save(graph, path)
    with h5py.File(path, "r") as f:
        dset = f[N0 + "/weight"]
        offset = dset.id.get_chunk_info(0).byte_offset if dset.chunks else dset.id.get_offset()
    data = bytearray(path.read_bytes())
    for i in range(offset + 16, offset + 48):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def _graph(build: Callable[[], nir.NIRGraph]):
    def make(path: Path) -> Path:
        nrf_nir.save(build(), path, validate=False)
        return path
    return make


def _mutated(mutate: Callable[[nir.NIRGraph], None], base: Callable[[], nir.NIRGraph] = lambda:
             mlp([4, 5, 3])):
    def build() -> nir.NIRGraph:
        g = base()
        mutate(g)
        return g
    return _graph(build)


N1 = "node/nodes/n1"  # the first LIF of mlp([4, 5, 3])
N0 = "node/nodes/n0"  # its first Affine

FILE_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty file": (_bytes(b""), "not a readable HDF5"),
    "text file": (_bytes(b"hello, I am not HDF5\n" * 20), "not a readable HDF5"),
    "random bytes": (_bytes(np.random.default_rng(0).bytes(4096)), "not a readable HDF5"),
    "npz instead of nir": (_bytes(b"PK\x03\x04" + b"\0" * 200), "not a readable HDF5"),
    "truncated 10%": (_truncated(0.1), "file"),
    "truncated 50%": (_truncated(0.5), "file"),
    "truncated 90%": (_truncated(0.9), "file"),
    "truncated 99%": (_truncated(0.99), "file"),
    "corrupted header": (_flipped(0.0), "file"),
    "corrupted weight data": (_corrupt_weights, "unreadable data"),
    "no node group": (_h5(_del("node")), "no 'node' group"),
    "node type missing": (_h5(_del(f"{N1}/type")), "has no 'type'"),
    "unknown node type": (_h5(_set(f"{N1}/type", "Banana")), "unknown node type 'Banana'"),
    "tau missing": (_h5(_del(f"{N1}/tau")), "missing field(s) tau"),
    "tau negative": (_h5(_set(f"{N1}/tau", -np.ones(5))), "must be > 0"),
    "tau zero": (_h5(_set(f"{N1}/tau", np.zeros(5))), "must be > 0"),
    "tau NaN": (_h5(_set(f"{N1}/tau", np.full(5, np.nan))), "contains NaN"),
    "tau inf": (_h5(_set(f"{N1}/tau", np.full(5, np.inf))), "contains inf"),
    "tau string": (_h5(_set(f"{N1}/tau", "fast")), "tau"),
    "tau wrong shape": (_h5(_set(f"{N1}/tau", np.ones(7))), "same shape"),
    "threshold NaN": (_h5(_set(f"{N1}/v_threshold", np.full(5, np.nan))), "NaN"),
    "v_leak inf": (_h5(_set(f"{N1}/v_leak", np.full(5, -np.inf))), "inf"),
    "weight 1-D": (_h5(_set(f"{N0}/weight", np.ones(20))), "weight"),
    "weight NaN": (_h5(_set(f"{N0}/weight", np.full((5, 4), np.nan))), "NaN"),
    "weight wrong in-dim": (_h5(_set(f"{N0}/weight", np.ones((5, 7)))), "expects 7 inputs"),
    "weight complex": (_h5(_set(f"{N0}/weight", np.ones((5, 4)) * 1j)), "weight"),
    "bias wrong shape": (_h5(_set(f"{N0}/bias", np.ones(9))), "bias"),
    "unexpected field": (_h5(lambda f: f[N1].create_dataset("colour", data=3)),
                         "unexpected field(s) for LIF: colour"),
    "edges wrong shape": (_h5(_set("node/edges", np.array([b"a", b"b", b"c"]))), "edges"),
    "edge to missing node": (_mutated(lambda g: g.edges.append(("n1", "ghost"))), "ghost"),
    "edge from missing node": (_mutated(lambda g: g.edges.append(("ghost", "n1"))), "ghost"),
    "duplicate edge": (_mutated(lambda g: g.edges.append(("n0", "n1"))), "duplicate edge"),
    "edge into input": (_mutated(lambda g: g.edges.append(("n1", "input"))),
                        "Input node cannot receive"),
    "edge out of output": (_mutated(lambda g: g.edges.append(("output", "n1"))),
                           "Output node cannot send"),
    "no output node": (_mutated(lambda g: (g.nodes.pop("output"), g.edges.remove(
        ("n3", "output")))), "no Output node"),
    "node without input": (_mutated(lambda g: (g.nodes.__setitem__(
        "orphan", nir.Linear(weight=np.ones((3, 3)))), g.edges.append(("orphan", "output")))),
        "orphan"),
    "cycle without state": (_mutated(lambda g: (g.nodes.__setitem__(
        "loop", nir.Linear(weight=np.eye(5))), g.edges.extend([("n0", "loop"),
                                                               ("loop", "n0")]))),
        "cycle without state"),
    "shape mismatch between nodes": (_mutated(lambda g: g.nodes.__setitem__(
        "n1", nir.LIF(tau=np.full(6, 0.01), r=np.ones(6), v_leak=np.zeros(6),
                      v_threshold=np.ones(6), v_reset=np.zeros(6)))), "does not match"),
    "huge input shape": (_mutated(lambda g: g.nodes.__setitem__(
        "input", nir.Input(input_type=np.array([10**6, 10**6, 4])))), "over the limit"),
    "dt negative": (_mutated(lambda g: g.metadata.__setitem__("dt", -1e-3)), "dt"),
    "dt zero": (_mutated(lambda g: g.metadata.__setitem__("dt", 0.0)), "dt"),
    "dt NaN": (_mutated(lambda g: g.metadata.__setitem__("dt", float("nan"))), "dt"),
    "dt text": (_mutated(lambda g: g.metadata.__setitem__("dt", "soon")), "dt"),
    "reset mode unknown": (_mutated(lambda g: g.metadata.__setitem__("reset", "explode")),
                           "reset"),
    "threshold mode unknown": (_mutated(lambda g: g.metadata.__setitem__("threshold", "lt")),
                               "threshold"),
    # found by benchmarks/fuzz_nir.py: a metadata string replaced by an array
    "reset mode as an array": (_mutated(lambda g: g.metadata.__setitem__(
        "reset", np.array([1.0, 2.0]))), "must be one string"),
    "delay negative": (_graph(lambda: _chain_with(nir.Delay(delay=-np.ones(4)))), "delay"),
    "conv stride zero": (_graph(lambda: _conv(stride=0)), "stride"),
    "conv kernel too big": (_graph(lambda: _conv(kernel=9)), "does not fit"),
    "conv channels mismatch": (_graph(lambda: _conv(c_in=3)), "input channels"),
    "pool kernel zero": (_graph(lambda: _pool(0)), "kernel_size"),
    "flatten dims out of range": (_graph(lambda: _flatten(5)), "start_dim"),
    "recurrent edge shape mismatch": (_mutated(lambda g: g.nodes["rnn"].nodes.__setitem__(
        "w_rec", nir.Linear(weight=np.ones((6, 5)))), base=lambda: recurrent(4, 6)), "w_rec"),
    "subgraph with two inputs named as a whole": (_mutated(
        lambda g: g.nodes["rnn"].nodes.__setitem__("input2", nir.Input(input_type=np.array([4]))),
        base=lambda: recurrent(4, 6)), "2 Input nodes"),
}


def _chain_with(node: nir.NIRNode) -> nir.NIRGraph:
    from tests.helpers import chain

    return chain(node, shape=(4,))


def _conv(stride: int = 1, kernel: int = 3, c_in: int = 2) -> nir.NIRGraph:
    from tests.helpers import chain

    conv = nir.Conv2d(input_shape=None, weight=np.ones((3, c_in, kernel, kernel)), stride=stride,
                      padding=0, dilation=1, groups=1, bias=np.zeros(3))
    return chain(conv, shape=(2, 6, 6))


def _pool(k: int) -> nir.NIRGraph:
    from tests.helpers import chain

    return chain(nir.AvgPool2d(kernel_size=np.array([k, k]), stride=np.array([1, 1]),
                               padding=np.array([0, 0])), shape=(2, 6, 6))


def _flatten(start: int) -> nir.NIRGraph:
    from tests.helpers import chain

    return chain(nir.Flatten(input_type=None, start_dim=start, end_dim=-1), shape=(2, 6, 6))


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_malformed_file_is_a_clear_error(name, tmp_path):
    make, expected = FILE_CASES[name]
    path = make(tmp_path / "bad.nir")
    with pytest.raises(NIRError) as err:
        graph = nrf_nir.load(path)
        nrf_nir.run(graph, np.zeros((3, 1, *nrf_nir.validate(graph).out_shapes["input"])))
    message = str(err.value)
    assert expected in message, message
    assert "bad.nir" in message or "dt" in message or "reset" in message or \
        "threshold" in message


CLI_SAMPLE = ["text file", "truncated 50%", "tau negative", "edge to missing node",
              "unknown node type", "cycle without state"]


@pytest.mark.parametrize("name", CLI_SAMPLE)
def test_cli_reports_malformed_files_with_status_2(name, tmp_path):
    make, expected = FILE_CASES[name]
    path = make(tmp_path / "bad.nir")
    proc = subprocess.run([sys.executable, "-m", "nrf_nir.cli", "validate", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ checkpoints


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def _model() -> torch.nn.Module:
    import norse.torch as snn

    return snn.SequentialState(torch.nn.Linear(4, 6), snn.LIFBoxCell())


CHECKPOINTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "pickled code": (lambda p: torch.save({"x": _Payload()}, p), "refused"),
    "pickled module": (lambda p: torch.save(torch.nn.Linear(4, 6), p), "refused"),
    "missing keys": (lambda p: torch.save({"0.weight": torch.zeros(6, 4)}, p),
                     "missing keys: 0.bias"),
    "unexpected keys": (lambda p: torch.save(dict(_model().state_dict(), extra=torch.ones(1)),
                                             p), "unexpected keys: extra"),
    "wrong shapes": (lambda p: torch.save({"0.weight": torch.zeros(6, 5),
                                           "0.bias": torch.zeros(6)}, p), "wrong shapes"),
    "not a checkpoint": (lambda p: p.write_text("weights go here"), "not a readable"),
    "truncated checkpoint": (lambda p: (torch.save(_model().state_dict(), p),
                                        p.write_bytes(p.read_bytes()[:100])), "not a readable"),
    "non-tensor values": (lambda p: torch.save({"0.weight": [1, 2, 3]}, p), "state_dict"),
    "lightning without state_dict": (lambda p: torch.save({"epoch": 3}, p), "state_dict"),
}


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_malformed_checkpoint_is_a_clear_error(name, tmp_path, capsys):
    from nrf_nir.exporters.checkpoint import load_weights

    write, expected = CHECKPOINTS[name]
    path = tmp_path / "w.pt"
    write(path)
    with pytest.raises(NIRError) as err:
        load_weights(_model(), str(path))
    assert expected in str(err.value) and "w.pt" in str(err.value)
    assert "must never run" not in capsys.readouterr().out


# ------------------------------------------------------------------------------ run inputs

GOOD = np.zeros((5, 2, 4), dtype=np.float32)
INPUTS: dict[str, tuple[object, str]] = {
    "missing batch axis": (np.zeros((5, 4)), "[T, B, 4]"),
    "wrong feature size": (np.zeros((5, 2, 3)), "[T, B, 4]"),
    "extra axis": (np.zeros((5, 2, 4, 1)), "[T, B, 4]"),
    "NaN": (np.where(np.eye(4)[None, :2] > 0, np.nan, 0.0) + GOOD, "NaN"),
    "inf": (np.full((5, 2, 4), np.inf), "NaN or inf"),
    "strings": (np.full((5, 2, 4), "x"), "numeric"),
    "complex": (np.ones((5, 2, 4), dtype=complex), "numeric"),
    "objects": (np.array([[[None] * 4] * 2] * 5, dtype=object), "numeric"),
    "zero steps": (np.zeros((0, 2, 4)), "at least one step"),
    "wrong key": ({"x": GOOD}, "missing: input"),
    "extra key": ({"input": GOOD, "other": GOOD}, "unknown: other"),
    "ragged list": ([[1, 2], [3]], "input"),
}


@pytest.mark.parametrize("name", list(INPUTS))
def test_bad_run_inputs_are_clear_errors(name):
    value, expected = INPUTS[name]
    with pytest.raises(NIRError) as err:
        nrf_nir.run(mlp([4, 3]), value)
    assert expected in str(err.value)


def test_the_corpus_has_at_least_50_cases():
    assert len(FILE_CASES) + len(CHECKPOINTS) + len(INPUTS) >= 50


def test_a_crash_of_the_hdf5_library_becomes_an_error(tmp_path, monkeypatch):
    """Corrupted files can segfault libhdf5 (found by benchmarks/fuzz_nir.py); the read runs in
    a forked child so that the crash is reported, not fatal."""
    import os
    import signal

    from nrf_nir import hdf5 as nio

    path = _valid(tmp_path / "m.nir")

    def crash(name):
        os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr(nio, "_read_hdf5", crash)
    with pytest.raises(NIRError, match="crashed the HDF5 library"):
        nrf_nir.load(path)


def test_an_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    """Ctrl-C in the middle of writing: neither the target nor a temporary file remains."""
    from nrf_nir import io as nio

    original = nio._write_dict

    def interrupted(group, data, where):
        original(group, {k: v for k, v in list(data.items())[:1]}, where)
        raise KeyboardInterrupt

    monkeypatch.setattr(nio, "_write_dict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        nrf_nir.save(mlp([4, 3]), tmp_path / "m.nir")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_cli_run_leaves_no_output(tmp_path, monkeypatch):
    from nrf_nir import cli

    model = _valid(tmp_path / "m.nir")
    np.savez(tmp_path / "in.npz", input=np.ones((5, 1, 4), np.float32))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    code = cli.main(["run", str(model), "--input", str(tmp_path / "in.npz"), "--output",
                     str(tmp_path / "out.npz")])
    assert code == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz", "m.nir"]


def test_a_hang_of_the_hdf5_library_becomes_an_error(tmp_path, monkeypatch):
    """Corrupted files can also make libhdf5 loop forever (found by the fuzzer): the child is
    killed after NRF_NIR_READ_TIMEOUT seconds."""
    import time

    from nrf_nir import hdf5 as nio

    path = _valid(tmp_path / "m.nir")

    def hang(name):
        while True:
            time.sleep(1)

    monkeypatch.setattr(nio, "_read_hdf5", hang)
    monkeypatch.setattr(nio, "READ_TIMEOUT_S", 1.0)
    start = time.monotonic()
    with pytest.raises(NIRError, match="did not finish within 1 s"):
        nrf_nir.load(path)
    assert time.monotonic() - start < 10


REGRESSIONS = sorted((Path(__file__).parent / "data" / "fuzz_regressions").glob("*.nir"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_fuzz_regressions_are_clear_errors(path):
    """Files saved by benchmarks/fuzz_nir.py that once escaped as unhandled exceptions
    (OverflowError in NIR's conv shape arithmetic, UnicodeDecodeError on edge names)."""
    with pytest.raises(NIRError):
        graph = nrf_nir.load(path)
        checked = nrf_nir.validate(graph)
        nrf_nir.run(graph, {n: np.ones((3, 1, *checked.out_shapes[n]), np.float32)
                            for n in checked.flat.inputs}, dt=1e-3)
