"""Hostile .nir files: the reader is closed (nothing outside the file is followed, nothing is
read twice), declared sizes are checked before data is read, nesting and counts are bounded,
the reading child dies with its parent, and node names are data on save.

Each file case runs through the CLI (``validate``, ``inspect``, and ``run`` for weights) with
``tests.hostile.check_case``: exit 2, one line, the planted canary never shown or written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

import nrf_nir
from nrf_nir.errors import NIRError
from tests.helpers import chain, lif, mlp
from tests.hostile import CANARY, CANARY_NAME, REPO, Case, _group_alive, check_case, register

N0 = "node/nodes/n0"  # the first Affine of mlp([4, 5, 3]): weight [5, 4], bias [5]
N1 = "node/nodes/n1"  # its first LIF


def _model(work: Path, edit: Callable[[h5py.File, Path], None]) -> Path:
    """mlp([4, 5, 3]) saved to work/m.nir, then edited with h5py."""
    path = work / "m.nir"
    nrf_nir.save(mlp([4, 5, 3]), path)
    with h5py.File(path, "r+") as f:
        edit(f, work)
    return path


def _replace(f: h5py.File, key: str, **kwargs: object) -> h5py.Dataset:
    group, name = key.rsplit("/", 1)
    del f[key]
    return f[group].create_dataset(name, **kwargs)


def _canary_bytes(count: int) -> list[tuple[str, int, int]]:
    """An external-storage list backing ``count`` bytes with the canary file, repeated."""
    size = len(CANARY) + 1
    parts = [(CANARY_NAME, 0, size)] * (count // size)
    return parts + ([(CANARY_NAME, 0, count % size)] if count % size else [])


def _external_type(f: h5py.File, work: Path) -> None:
    size = len(CANARY) + 1
    _replace(f, f"{N1}/type", shape=(1,), dtype=f"S{size}", external=_canary_bytes(size))


def _external_metadata(key: str) -> Callable[[h5py.File, Path], None]:
    def edit(f: h5py.File, work: Path) -> None:
        size = len(CANARY) + 1
        f["node/metadata"].create_dataset(key, shape=(1,), dtype=f"S{size}",
                                          external=_canary_bytes(size))
    return edit


def _external_weight(f: h5py.File, work: Path) -> None:
    _replace(f, f"{N0}/weight", shape=(5, 4), dtype="<f4", external=_canary_bytes(80))


def _other_file(work: Path, name: str = "other.h5") -> str:
    with h5py.File(work / name, "w") as other:
        other["w"] = np.ones((5, 4))
    return name


def _external_link(f: h5py.File, work: Path) -> None:
    del f[f"{N0}/weight"]
    f[N0]["weight"] = h5py.ExternalLink(_other_file(work), "/w")


def _external_link_to_canary(f: h5py.File, work: Path) -> None:
    del f[f"{N1}/type"]
    f[N1]["type"] = h5py.ExternalLink(CANARY_NAME, "/type")


def _virtual(present: bool) -> Callable[[h5py.File, Path], None]:
    def edit(f: h5py.File, work: Path) -> None:
        source = _other_file(work) if present else "missing.h5"
        layout = h5py.VirtualLayout(shape=(5, 4), dtype="f8")
        layout[:] = h5py.VirtualSource(source, "w", shape=(5, 4))
        del f[f"{N0}/weight"]
        f[N0].create_virtual_dataset("weight", layout, fillvalue=0)
    return edit


def _soft_out(f: h5py.File, work: Path) -> None:
    f["elsewhere/w"] = np.ones((5, 4))
    del f[f"{N0}/weight"]
    f[N0]["weight"] = h5py.SoftLink("/elsewhere/w")


def _soft_in(f: h5py.File, work: Path) -> None:
    del f[f"{N1}/r"]
    f[N1]["r"] = h5py.SoftLink(f"/{N1}/tau")


def _laughs(f: h5py.File, work: Path) -> None:
    """Ten hard links per level to the level below, nine levels: 10^9 paths to one dataset."""
    base = f.create_group("laughs/l0")
    base.create_dataset("x", data=np.zeros(10_000))
    for level in range(1, 10):
        group = f.create_group(f"laughs/l{level}")
        for i in range(10):
            group[f"a{i}"] = f[f"laughs/l{level - 1}"]
    f[N0]["metadata"] = f["laughs/l9"]


def _self_reference(f: h5py.File, work: Path) -> None:
    f[N1]["loop"] = f["node/nodes"]


def _gzip_bomb(f: h5py.File, work: Path) -> None:
    bias = _replace(f, f"{N0}/bias", shape=(2_000_000_000,), dtype="f4", chunks=(1 << 20,),
                    compression="gzip", fillvalue=0)
    bias[: 1 << 20] = 0  # one stored chunk: the file stays small


def _huge_shape(f: h5py.File, work: Path) -> None:
    _replace(f, f"{N0}/weight", shape=(10**6, 10**6), dtype="f4")


def _huge_chunk(f: h5py.File, work: Path) -> None:
    """One declared element in a 4 GB chunk (only an extendible dataset can declare it)."""
    _replace(f, f"{N0}/bias", shape=(5,), maxshape=(None,), chunks=(1 << 30,), dtype="f4",
             compression="gzip", fillvalue=0)


def _compound(f: h5py.File, work: Path) -> None:
    _replace(f, f"{N1}/tau", data=np.zeros(5, dtype=[("a", "f4"), ("b", "i4")]))


def _references(f: h5py.File, work: Path) -> None:
    _replace(f, f"{N1}/tau", data=np.array([f[N0].ref] * 5, dtype=h5py.ref_dtype))


def _vlen_numbers(f: h5py.File, work: Path) -> None:
    _replace(f, f"{N1}/tau", data=np.array([np.ones(3)] * 5 + [np.ones(2)], dtype=object),
             dtype=h5py.vlen_dtype("f8"))


def _long_string(f: h5py.File, work: Path) -> None:
    f["node/metadata"].create_dataset("producer", data="x" * 100_000,
                                      dtype=h5py.string_dtype())


def _bias_mismatch(f: h5py.File, work: Path) -> None:
    _replace(f, f"{N0}/bias", shape=(40_000_000,), dtype="f4", chunks=(1 << 20,),
             compression="gzip", fillvalue=0)


def _control_name(f: h5py.File, work: Path) -> None:
    f["node/nodes"].move("n3", "n3\x1b[2J")


def _nested(depth: int) -> Callable[[Path], Path]:
    """A file of ``depth`` NIRGraphs, each the only node of its parent (written by h5py)."""
    def make(work: Path) -> Path:
        path = work / "m.nir"
        with h5py.File(path, "w") as f:
            f.create_dataset("version", data="1.0", dtype=h5py.string_dtype())
            group = f.create_group("node")
            for _ in range(depth):
                group.create_dataset("type", data="NIRGraph", dtype=h5py.string_dtype())
                group = group.create_group("nodes").create_group("g")
            group.create_dataset("type", data="Input", dtype=h5py.string_dtype())
            group.create_dataset("shape", data=np.array([3]))
        return path
    return make


def _edited(edit: Callable[[h5py.File, Path], None]) -> Callable[[Path], Path]:
    return lambda work: _model(work, edit)


def _fifo(work: Path) -> Path:
    os.mkfifo(work / "m.nir")
    return work / "m.nir"


#: name -> (builds work/m.nir, text the error must contain, also run it)
FILES: dict[str, tuple[Callable[[Path], Path], str, bool]] = {
    "external storage as type": (_edited(_external_type), "external file", False),
    "external storage as producer": (_edited(_external_metadata("producer")), "external file",
                                     False),
    "external storage as threshold": (_edited(_external_metadata("threshold")),
                                      "external file", False),
    "external storage as weight": (_edited(_external_weight), "external file", True),
    "external link to an HDF5 weight": (_edited(_external_link), "external link", True),
    "external link to the canary": (_edited(_external_link_to_canary), "external link", False),
    "virtual dataset from another file": (_edited(_virtual(True)), "virtual dataset", True),
    "virtual dataset from a missing file": (_edited(_virtual(False)), "virtual dataset", True),
    "soft link out of the node tree": (_edited(_soft_out), "soft link", False),
    "soft link inside the node tree": (_edited(_soft_in), "soft link", False),
    "hard-link billion laughs": (_edited(_laughs), "links again", False),
    "self-referencing group": (_edited(_self_reference), "links again", False),
    "gzip bomb": (_edited(_gzip_bomb), "NRF_NIR_MAX_ELEMENTS", True),
    "huge declared shape": (_edited(_huge_shape), "NRF_NIR_MAX_ELEMENTS", False),
    "huge chunk": (_edited(_huge_chunk), "chunks of", False),
    "bias longer than the weight": (_edited(_bias_mismatch), "needs (5,)", False),
    "compound dtype": (_edited(_compound), "compound", False),
    "reference dtype": (_edited(_references), "reference", False),
    "vlen of numbers": (_edited(_vlen_numbers), "variable-length", False),
    "string over 64 KiB": (_edited(_long_string), "over the limit of 65,536", False),
    "node name with an escape sequence": (_edited(_control_name), "invalid node name", False),
    "depth 300 nesting": (_nested(300), "nested more than 32 deep", False),
    "depth 33 nesting": (_nested(34), "nested more than 32 deep", False),
    "a pipe instead of a file": (_fifo, "not a regular file", False),
}


def _commands(name: str, make: Callable[[Path], Path], run: bool) -> list[tuple[str, Callable[
        [Path], Sequence[str]]]]:
    def validate(work: Path) -> Sequence[str]:
        return ["validate", make(work).name]

    def inspect(work: Path) -> Sequence[str]:
        return ["inspect", make(work).name]

    def run_it(work: Path) -> Sequence[str]:
        np.savez(work / "x.npz", input=np.ones((5, 1, 4), np.float32))
        return ["run", make(work).name, "--input", "x.npz", "--output", "o.npz"]

    out = [("validate", validate), ("inspect", inspect)]
    return out + [("run", run_it)] if run else out


CASES = [register(Case(f"{name} [{command}]", argv, expect=expect, absent=("o.npz",),
                       untouched=(CANARY_NAME,)))
         for name, (make, expect, run) in FILES.items()
         for command, argv in _commands(name, make, run)]
CASES.append(register(Case(
    "NRF_NIR_MAX_BYTES below a valid file [validate]",
    lambda work: ["validate", _model(work, lambda f, w: None).name],
    expect="NRF_NIR_MAX_BYTES", env={"NRF_NIR_MAX_BYTES": "100"})))
CASES.append(register(Case(
    "NRF_NIR_MAX_BYTES not a number [validate]",
    lambda work: ["validate", _model(work, lambda f, w: None).name],
    expect="must be a positive integer", env={"NRF_NIR_MAX_BYTES": "lots"})))
CASES.append(register(Case(
    "reading needs more memory than NRF_NIR_READ_MEMORY [validate]",
    lambda work: ["validate", _model(work, lambda f, w: _replace(
        f, f"{N0}/weight", data=np.zeros((5, 4_000_000)), compression="gzip")).name],
    expect="needed more than 16 MiB", env={"NRF_NIR_READ_MEMORY": "16"})))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_file_is_refused(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path / "w")


def test_the_memory_case_is_a_valid_file_with_enough_memory(tmp_path: Path) -> None:
    """The NRF_NIR_READ_MEMORY case above fails for the cap, not for the file."""
    path = _model(tmp_path, lambda f, w: _replace(f, f"{N0}/weight", data=np.zeros((5, 4)),
                                                  compression="gzip"))
    assert nrf_nir.load(path).nodes["n0"].weight.shape == (5, 4)


def test_bombs_are_refused_quickly(tmp_path: Path) -> None:
    for name in ("gzip bomb", "hard-link billion laughs", "huge chunk"):
        work = tmp_path / name.replace(" ", "_")
        work.mkdir()
        path = FILES[name][0](work)
        start = time.monotonic()
        with pytest.raises(NIRError):
            nrf_nir.load(path)
        assert time.monotonic() - start < 1.0, name


# ------------------------------------------------------------------------- each refusal fires


def _unknown_filter(f: h5py.File, work: Path) -> None:
    weight = _replace(f, f"{N0}/weight", shape=(5, 4), chunks=(5, 4), dtype="f4",
                      compression=32015, allow_unknown_filter=True)  # zstd: a plugin's filter
    weight.id.write_direct_chunk((0, 0), bytes(80))


def _root_link(f: h5py.File, work: Path) -> None:
    f.move("node", "real")
    f["node"] = h5py.SoftLink("/real")


def _root_dataset(f: h5py.File, work: Path) -> None:
    del f["node"]
    f["node"] = np.zeros(3)


def _bad_metadata_key(f: h5py.File, work: Path) -> None:
    f["node/metadata"]["dt\n"] = 1e-3


def _many_strings(f: h5py.File, work: Path) -> None:
    f["node/metadata"].create_dataset("tags", data=np.array(["x"] * 5000, dtype=object),
                                      dtype=h5py.string_dtype())


def _edges(count: int) -> Callable[[h5py.File, Path], None]:
    def edit(f: h5py.File, work: Path) -> None:
        edges = f["node/edges"][()]
        _replace(f, "node/edges", data=np.concatenate([edges] * count),
                 dtype=h5py.string_dtype())
    return edit


#: name -> (edits m.nir, expected text, module limits patched for the case)
IN_PROCESS: dict[str, tuple[Callable[[h5py.File, Path], None], str, dict[str, int]]] = {
    "a filter from a plugin": (_unknown_filter, "needs HDF5 filter 32015", {}),
    "a named datatype": (lambda f, w: f[N1].__setitem__("t", np.dtype("f4")),
                         "named HDF5 data type", {}),
    "an empty dataspace": (lambda f, w: _replace(f, f"{N1}/tau", data=h5py.Empty("f8")),
                           "empty HDF5 dataspace", {}),
    "a fixed-length string over 64 KiB": (lambda f, w: f["node/metadata"].create_dataset(
        "producer", shape=(), dtype="S70000"), "strings of 70,000 bytes", {}),
    "too many strings": (_many_strings, "5,000 strings, over the limit of 4,096", {}),
    "neuron parameters of two shapes": (lambda f, w: _replace(
        f, f"{N1}/tau", data=np.ones(7)), "must have the same shape, got tau [7], r [5]", {}),
    "/node a soft link": (_root_link, "'/node' is a soft or external link", {}),
    "/node a dataset": (_root_dataset, "'/node' is not a group", {}),
    "a metadata key with a newline": (_bad_metadata_key, "invalid metadata key", {}),
    "more nodes than MAX_NODES": (lambda f, w: None, "more than 5 nodes", {"MAX_NODES": 5}),
    "more entries than MAX_ENTRIES": (lambda f, w: None, "more than 30 HDF5 groups",
                                      {"MAX_ENTRIES": 30}),
    "more edges than MAX_EDGES": (_edges(2), "10 edges, over the limit of 9",
                                  {"MAX_EDGES": 9}),
    "groups deeper than MAX_GROUP_DEPTH": (lambda f, w: None, "groups more than 1 deep",
                                           {"MAX_GROUP_DEPTH": 1}),
}


@pytest.mark.parametrize("name", list(IN_PROCESS))
def test_each_refusal_fires(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refusals not in the CLI corpus, through ``nrf_nir.load`` (the forked reader sees
    the patched limits); each limit patched here also lets the unpatched file load."""
    from nrf_nir import hdf5

    edit, expected, limits = IN_PROCESS[name]
    path = _model(tmp_path, edit)
    if limits:
        nrf_nir.load(path, validate=False)
    for key, value in limits.items():
        monkeypatch.setattr(hdf5, key, value)
    with pytest.raises(NIRError) as err:
        nrf_nir.load(path)
    assert expected in str(err.value)
    assert "m.nir" in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------- legit files load


def _nested_graph(depth: int) -> nir.NIRGraph:
    graph = chain(lif(3), shape=(3,))
    for _ in range(depth):
        outer = chain(lif(3), shape=(3,))
        outer.nodes["sub"] = graph
        outer.edges = [("input", "sub"), ("sub", "n0"), ("n0", "output")]
        graph = outer
    return graph


@pytest.mark.parametrize("depth", [3, 32])
def test_nested_graphs_within_the_limit_load(depth: int, tmp_path: Path) -> None:
    nrf_nir.save(_nested_graph(depth), tmp_path / "m.nir")
    graph = nrf_nir.load(tmp_path / "m.nir")
    for _ in range(depth):
        graph = graph.nodes["sub"]
    assert isinstance(graph.nodes["n0"], nir.LIF)


def test_saving_deeper_than_the_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NIRError, match="nested more than 32 deep"):
        nrf_nir.save(_nested_graph(33), tmp_path / "m.nir")
    assert list(tmp_path.iterdir()) == []


def test_a_large_valid_file_loads(tmp_path: Path) -> None:
    """Arrays of millions of elements (compressed, chunked) are within the limits."""
    graph = mlp([2000, 3000, 10])
    nrf_nir.save(graph, tmp_path / "m.nir")
    loaded = nrf_nir.load(tmp_path / "m.nir")
    np.testing.assert_array_equal(loaded.nodes["n0"].weight, graph.nodes["n0"].weight)
    assert loaded.nodes["n0"].weight.flags.writeable


def test_files_nir_writes_load(tmp_path: Path) -> None:
    """nir.write (gzip on every array, other producers use it) is read too."""
    graph = mlp([4, 5, 3])
    graph.nodes["output"] = nir.Output(output_type=np.array([3]))
    nir.write(tmp_path / "m.nir", graph)
    loaded = nrf_nir.load(tmp_path / "m.nir")
    np.testing.assert_array_equal(loaded.nodes["n2"].bias, graph.nodes["n2"].bias)


# ------------------------------------------------------------------------- names on save


@pytest.mark.parametrize("name,reason", [
    (".", "reserved"), ("..", "reserved"), ("a/b", "contains '/'"), ("", "empty"),
    ("x\x1b[2J", "control"), ("tab\there", "control"), ("x" * 256, "over the limit of 255"),
    (" padded", "whitespace"), ("rtl\u202eevil", "control"),
])
def test_names_that_load_would_reject_are_refused_on_save(name: str, reason: str,
                                                         tmp_path: Path) -> None:
    for validate in (True, False):
        graph = mlp([4, 3])
        graph.nodes[name] = graph.nodes.pop("n1")
        graph.edges = [(name if a == "n1" else a, name if b == "n1" else b)
                       for a, b in graph.edges]
        with pytest.raises(NIRError, match="invalid node name") as err:
            nrf_nir.save(graph, tmp_path / "m.nir", validate=validate)
        assert reason in str(err.value)
        assert "\x1b" not in str(err.value) and "\u202e" not in str(err.value)
        assert list(tmp_path.iterdir()) == []


def test_a_nested_node_name_and_a_metadata_key_are_checked(tmp_path: Path) -> None:
    graph = _nested_graph(2)
    inner = graph.nodes["sub"].nodes["sub"]
    inner.nodes["."] = inner.nodes.pop("n0")
    with pytest.raises(NIRError, match="invalid node name") as err:
        nrf_nir.save(graph, tmp_path / "m.nir", validate=False)
    assert err.value.node == "sub.sub.."
    graph = mlp([4, 3])
    graph.metadata["a/b"] = 1.0
    with pytest.raises(NIRError, match="invalid metadata key"):
        nrf_nir.save(graph, tmp_path / "m.nir")
    assert list(tmp_path.iterdir()) == []


def test_names_that_pass_are_written_and_read_back(tmp_path: Path) -> None:
    graph = mlp([4, 3])
    name = "layer.1 (ünïcode)"
    graph.nodes[name] = graph.nodes.pop("n1")
    graph.edges = [(name if a == "n1" else a, name if b == "n1" else b) for a, b in graph.edges]
    nrf_nir.save(graph, tmp_path / "m.nir")
    assert name in nrf_nir.load(tmp_path / "m.nir").nodes


# ------------------------------------------------------------------------- the reading child

_READER = """
import os, signal, sys, time
from nrf_nir import hdf5
if sys.argv[2] == "raise":  # like the CLI's handler: SIGTERM becomes an exception
    def stop(signum, frame):
        raise SystemExit(143)
    signal.signal(signal.SIGTERM, stop)
print(os.getpid(), flush=True)
try:
    hdf5.read_file(sys.argv[1])
except SystemExit:
    try:
        os.waitpid(-1, os.WNOHANG)
        print("a child is left", flush=True)
    except ChildProcessError:
        print("no child left", flush=True)
    time.sleep(30)
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("handler", ["default", "raise"])
def test_sigterm_leaves_no_reading_child(handler: str, tmp_path: Path) -> None:
    """libhdf5 blocks opening a FIFO, so the forked reader waits; SIGTERM to the parent alone
    must not leave it running (default: it dies with the parent through PR_SET_PDEATHSIG;
    "raise": the parent's finally kills and reaps it, before the parent exits)."""
    fifo = tmp_path / "slow.nir"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-c", _READER, str(fifo), handler],
                            cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        assert int(proc.stdout.readline()) == proc.pid
        deadline = time.monotonic() + 20
        while not _children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = _children(proc.pid)
        time.sleep(1.5)
        os.kill(proc.pid, signal.SIGTERM)  # the parent alone, not its group
        if handler == "raise":
            assert proc.stdout.readline().strip() == "no child left"
            assert proc.poll() is None  # still alive: the finally did it, not the parent's death
        else:
            proc.wait(timeout=5)
        deadline = time.monotonic() + 2.0
        while child in _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child not in _group_alive(proc.pid)
    finally:
        with_group = _group_alive(proc.pid)
        for pid in with_group:
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_the_reading_child_cannot_outlive_its_parent_when_it_was_sigkilled(
        tmp_path: Path) -> None:
    """Even SIGKILL (no handler, no finally) takes the child along."""
    fifo = tmp_path / "slow.nir"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-c", _READER, str(fifo), "default"],
                            cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        deadline = time.monotonic() + 20
        while not _children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        deadline = time.monotonic() + 2.0
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_alive(proc.pid)
    finally:
        for pid in _group_alive(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("name", [
    "external storage as type", "external storage as producer", "external storage as weight",
    "external link to an HDF5 weight", "virtual dataset from another file",
    "soft link out of the node tree"])
def test_the_corpus_files_do_lead_outside(name: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard against a corpus that proves nothing: read with h5py directly (following links
    and storage as libhdf5 does), these files reach the canary or the other file."""
    (tmp_path / CANARY_NAME).write_bytes(CANARY + b"\n")
    monkeypatch.chdir(tmp_path)  # where the CLI runs: external storage is found from here
    path = FILES[name][0](tmp_path)
    key = {"external storage as type": f"{N1}/type",
           "external storage as producer": "node/metadata/producer"}.get(name, f"{N0}/weight")
    with h5py.File(path, "r") as f:
        value = f[key][()]
    if "external storage" in name:
        assert CANARY in np.asarray(value).tobytes()
    else:
        np.testing.assert_array_equal(value, np.ones((5, 4)))
