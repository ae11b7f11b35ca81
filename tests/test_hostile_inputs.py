"""Hostile inputs, checkpoints, options, manifests, Ray addresses and names.

CLI cases run through ``tests/hostile.py`` (exit 2, one line, nothing written, no canary leak,
under 1 GB and 5 s of CPU); the rest are Python-API tests of the same refusals.
"""

from __future__ import annotations

import io
import socket
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.arrays import read_npz
from nrf_nir.errors import NIRError, shown
from tests import helpers
from tests.hostile import Case, check_case, register, run_cli

# ------------------------------------------------------------------------------ building blocks

FACTORY = "def build():\n    import torch\n    return torch.nn.Sequential(torch.nn.Linear(4, 6))\n"


def _model(work: Path) -> str:
    """A one-input model (input [3]) saved in ``work``; returns its file name."""
    nrf_nir.save(helpers.mlp([3, 4]), work / "m.nir")
    return "m.nir"


def _run(work: Path, inputs: str, *extra: str) -> list[str]:
    return ["run", _model(work), "--input", inputs, "--output", "out.npz", *extra]


def _npy_bytes(header: dict[str, object], data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)  # type: ignore[attr-defined]
    return buf.getvalue() + data


def _zeros_deflated(prefix: bytes, zeros: int) -> tuple[bytes, int]:
    """Raw deflate data of ``prefix`` + ``zeros`` zero bytes, built from one compressed
    16 MiB block repeated (full flushes make the pieces independent), and its CRC-32."""
    block = 16 << 20
    full, rest = divmod(zeros, block)

    def segment(data: bytes) -> bytes:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return packer.compress(data) + packer.flush(zlib.Z_FULL_FLUSH)

    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    stream = segment(prefix) + segment(bytes(block)) * full + segment(bytes(rest)) + end
    crc = zlib.crc32(prefix)
    chunk = bytes(block)
    for _ in range(full):
        crc = zlib.crc32(chunk, crc)
    return stream, zlib.crc32(bytes(rest), crc)


def _write_zip(path: Path, members: Iterable[tuple[str, int, bytes, int, int]]) -> None:
    """A zip of (name, method, stored bytes, crc, uncompressed size) members, written by hand
    so that precompressed (or forged) data can go in."""
    out = bytearray()
    central = bytearray()
    count = 0
    for name, method, data, crc, size in members:
        raw = name.encode("utf8")
        offset = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0x800, method, 0, 0x21, crc,
                           len(data), size, len(raw), 0) + raw + data
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0x800, method, 0,
                               0x21, crc, len(data), size, len(raw), 0, 0, 0, 0, 0,
                               offset) + raw
        count += 1
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(central), len(out), 0)
    path.write_bytes(bytes(out + central + end))


def _stored(name: str, data: bytes) -> tuple[str, int, bytes, int, int]:
    return name, zipfile.ZIP_STORED, data, zlib.crc32(data), len(data)


def _checkpoint_bomb(path: Path, nbytes: int) -> None:
    """A torch.save zip whose only tensor declares ``nbytes`` of float32 and whose data
    record is that many zero bytes, deflated (a few MB on disk)."""
    buf = io.BytesIO()
    torch.save({"0.weight": torch.zeros(6, 4)}, buf)
    source = zipfile.ZipFile(buf)
    numel = nbytes // 4
    members = []
    for info in source.infolist():
        data = source.read(info.filename)
        if info.filename.endswith("data.pkl"):
            # storage of numel floats; tensor shape (numel, 1), stride (1, 1)
            data = data.replace(b"K\x04K\x01\x86", b"K\x01K\x01\x86").replace(
                b"K\x18t", b"J" + struct.pack("<i", numel) + b"t").replace(
                b"K\x06K\x04\x86", b"J" + struct.pack("<i", numel) + b"K\x01\x86")
            members.append(_stored(info.filename, data))
        elif info.filename.endswith("data/0"):
            bomb, crc = _zeros_deflated(b"", nbytes)
            members.append((info.filename, zipfile.ZIP_DEFLATED, bomb, crc, nbytes))
        else:
            members.append(_stored(info.filename, data))
    _write_zip(path, members)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------ input archives

def _npy_for_npz(work: Path) -> list[str]:
    np.save(work / "x.npy", np.ones((5, 1, 3), np.float32))
    return _run(work, "x.npy")


def _huge_header(work: Path) -> list[str]:
    member = _npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)}, b"\0" * 16)
    _write_zip(work / "in.npz", [_stored("input.npy", member)])
    return _run(work, "in.npz")


def _header_over_payload(work: Path) -> list[str]:
    # 400 MB declared, under the limit: the zip directory says 16 bytes of data
    member = _npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (10 ** 8,)}, b"\0" * 16)
    _write_zip(work / "in.npz", [_stored("input.npy", member)])
    return _run(work, "in.npz")


def _zip_bomb(work: Path) -> list[str]:
    header = _npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (1 << 28, 1, 1)})
    data, crc = _zeros_deflated(header, 1 << 30)
    _write_zip(work / "in.npz", [("input.npy", zipfile.ZIP_DEFLATED, data, crc,
                                  len(header) + (1 << 30))])
    return _run(work, "in.npz")


def _lying_size(work: Path) -> list[str]:
    # a deflated member whose directory understates its size: never read past it
    header = _npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (4, 1, 3)})
    data, crc = _zeros_deflated(header, 16 << 20)
    _write_zip(work / "in.npz", [("input.npy", zipfile.ZIP_DEFLATED, data, crc,
                                  len(header) + 48)])
    return _run(work, "in.npz")


def _object_member(work: Path) -> list[str]:
    np.savez(work / "in.npz", input=np.array([object(), 1], dtype=object))
    return _run(work, "in.npz")


def _wrong_keys(work: Path) -> list[str]:
    np.savez(work / "in.npz", wrong=np.ones((5, 1, 3), np.float32),
             other=np.ones((5, 1, 3), np.float32))
    return _run(work, "in.npz")


def _escape_key(work: Path) -> list[str]:
    np.savez(work / "in.npz", **{"input": np.ones((5, 1, 3), np.float32),
                                 "x\x1b[2J\x9b31m": np.ones((5, 1, 3), np.float32)})
    return _run(work, "in.npz")


def _escape_key_object(work: Path) -> list[str]:
    np.savez(work / "in.npz", **{"x\x1b[2J": np.array([object()], dtype=object)})
    return _run(work, "in.npz")


def _fifo_input(work: Path) -> list[str]:
    import os

    os.mkfifo(work / "in.npz")
    return _run(work, "in.npz")


INPUT_CASES = [
    register(Case("npy instead of npz", _npy_for_npz, "a .npy file? save inputs with numpy.savez",
                  absent=("out.npz",))),
    register(Case("npz huge declared header", _huge_header, "more than the input limit",
                  absent=("out.npz",))),
    register(Case("npz header over tiny payload", _header_over_payload, "corrupted or forged",
                  absent=("out.npz",))),
    register(Case("npz zip bomb 1 GiB", _zip_bomb, "possible zip bomb", absent=("out.npz",))),
    register(Case("npz understated member size", _lying_size, "input.npy",
                  absent=("out.npz",))),
    register(Case("npz object dtype", _object_member, "python objects", absent=("out.npz",))),
    register(Case("npz wrong key names", _wrong_keys, "unknown", absent=("out.npz",))),
    register(Case("npz key with terminal escapes", _escape_key, "\\x1b[2J",
                  absent=("out.npz",))),
    register(Case("npz object member with escapes", _escape_key_object, "'x\\x1b[2J'",
                  absent=("out.npz",))),
    register(Case("npz is a fifo", _fifo_input, "not a regular file", absent=("out.npz",))),
]


@pytest.mark.parametrize("case", INPUT_CASES, ids=lambda c: c.name)
def test_hostile_input_archives_are_refused(case: Case, tmp_path: Path) -> None:
    outcome = check_case(case, tmp_path / "w")
    assert "\x1b" not in outcome.stderr and "\x9b" not in outcome.stderr


# ------------------------------------------------------------------------------ checkpoints

def _export(work: Path, weights: str) -> list[str]:
    (work / "factory.py").write_text(FACTORY)
    return ["export", weights, "--model", "factory.py:build", "-o", "out.nir",
            "--input-shape", "4"]


def _bomb_2_4_gb(work: Path) -> list[str]:
    _checkpoint_bomb(work / "w.pt", 2_400_000_000)
    assert (work / "w.pt").stat().st_size < 3_000_000  # 2 MB that would expand to 2.4 GB
    return _export(work, "w.pt")


def _bomb_under_limit(work: Path) -> list[str]:
    _checkpoint_bomb(work / "w.pt", 512 << 20)  # 512 MiB: under 2 GiB, but 1000:1
    return _export(work, "w.pt")


def _legacy(work: Path) -> list[str]:
    torch.save({"0.weight": torch.zeros(6, 4), "0.bias": torch.zeros(6)}, work / "w.pt",
               _use_new_zipfile_serialization=False)
    return _export(work, "w.pt")


def _over_limit(work: Path) -> list[str]:
    torch.save({"0.weight": torch.zeros(6, 4), "0.bias": torch.zeros(6)}, work / "w.pt")
    return _export(work, "w.pt")


def _claim_more(path: Path, members: list[tuple[str, int, bytes, int, int]]) -> None:
    """Write ``members`` (stored) to ``path``, the first one's sizes raised by 1 MiB in both
    its local and central headers: a member that reaches past the end of the file."""
    _write_zip(path, members)
    size = len(members[0][2])
    blob = path.read_bytes()
    path.write_bytes(blob.replace(struct.pack("<II", size, size),
                                  struct.pack("<II", size + (1 << 20), size + (1 << 20))))


def _past_the_end(work: Path) -> list[str]:
    torch.save({"0.weight": torch.zeros(6, 4), "0.bias": torch.zeros(6)}, work / "w.pt")
    source = zipfile.ZipFile(work / "w.pt")
    _claim_more(work / "w.pt", [_stored(i.filename, source.read(i.filename))
                                for i in source.infolist()])
    return _export(work, "w.pt")


CHECKPOINT_CASES = [
    register(Case("checkpoint bomb 2 MB to 2.4 GB", _bomb_2_4_gb, "NRF_NIR_MAX_CHECKPOINT_BYTES",
                  untouched=("w.pt",), absent=("out.nir",))),
    register(Case("checkpoint bomb under the size limit", _bomb_under_limit, "possible zip bomb",
                  untouched=("w.pt",), absent=("out.nir",))),
    register(Case("checkpoint legacy format", _legacy, "legacy (non-zip)",
                  untouched=("w.pt",), absent=("out.nir",))),
    register(Case("checkpoint over a lowered limit", _over_limit, "more than the limit",
                  untouched=("w.pt",), absent=("out.nir",),
                  env={"NRF_NIR_MAX_CHECKPOINT_BYTES": "100"})),
    register(Case("checkpoint member past the end", _past_the_end, "past the end of the file",
                  untouched=("w.pt",), absent=("out.nir",))),
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=lambda c: c.name)
def test_hostile_checkpoints_are_refused(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path / "w")


def test_a_stored_checkpoint_is_memory_mapped_and_loads_the_same_values(tmp_path: Path) -> None:
    from nrf_nir.exporters.checkpoint import check_checkpoint_zip, read_state_dict

    state = {"0.weight": torch.randn(6, 4), "0.bias": torch.randn(6)}
    torch.save(state, tmp_path / "w.pt")
    assert check_checkpoint_zip(str(tmp_path / "w.pt")) is True
    loaded = read_state_dict(str(tmp_path / "w.pt"))
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value)
    with pytest.raises(NIRError, match="more than the limit"):
        check_checkpoint_zip(str(tmp_path / "w.pt"), limit=100)


def test_checkpoint_refusals_in_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nrf_nir.exporters.checkpoint import max_checkpoint_bytes, read_state_dict

    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(NIRError, match="not a regular file"):
        read_state_dict(str(tmp_path / "dir.pt"))
    _write_zip(tmp_path / "cd.pt", [_stored("w/data.pkl", b"x" * 10)])
    blob = bytearray((tmp_path / "cd.pt").read_bytes())
    at = blob.index(b"PK\x01\x02")
    blob[at:at + 4] = b"XX\x01\x02"  # the central directory no longer parses
    (tmp_path / "cd.pt").write_bytes(bytes(blob))
    assert zipfile.is_zipfile(tmp_path / "cd.pt")
    with pytest.raises(NIRError, match="zip directory"):
        read_state_dict(str(tmp_path / "cd.pt"))
    for bad in ("many", "-5"):
        monkeypatch.setenv("NRF_NIR_MAX_CHECKPOINT_BYTES", bad)
        with pytest.raises(NIRError, match="NRF_NIR_MAX_CHECKPOINT_BYTES"):
            max_checkpoint_bytes()
    monkeypatch.setenv("NRF_NIR_MAX_CHECKPOINT_BYTES", "1e9")
    assert max_checkpoint_bytes() == 10 ** 9


# ------------------------------------------------------------------------------ options

def _opt_run(*extra: str):  # noqa: ANN202 - a Case.make
    def make(work: Path) -> list[str]:
        np.savez(work / "in.npz", input=np.ones((5, 1, 3), np.float32))
        return _run(work, "in.npz", *extra)
    return make


def _opt_conformance(*extra: str):  # noqa: ANN202 - a Case.make
    def make(work: Path) -> list[str]:
        return ["conformance", "--targets", "reference", "--report", "rep", *extra]
    return make


OPTION_CASES = [
    register(Case("run --device foo", _opt_run("--device", "foo"), "unknown device 'foo'",
                  absent=("out.npz",))),
    register(Case("run --device meta", _opt_run("--device", "meta"),
                  "not a device that computes", absent=("out.npz",))),
    register(Case("run --device with escapes", _opt_run("--device", "x\x1b[2J"),
                  "unknown device 'x\\x1b[2J'", absent=("out.npz",))),
    register(Case("conformance --T -1", _opt_conformance("--T", "-1"), "argument --T",
                  absent=("rep",))),
    register(Case("conformance --B -3", _opt_conformance("--B", "-3"), "argument --B",
                  absent=("rep",))),
    register(Case("conformance --T 1e9", _opt_conformance("--T", "1e9"),
                  "--T: must be an integer in [1, 10,000,000], got '1e9'", absent=("rep",))),
    register(Case("conformance --T 1000000000", _opt_conformance("--T", "1000000000"),
                  "argument --T", absent=("rep",))),
    register(Case("conformance --B 10000000", _opt_conformance("--B", "10000000"),
                  "argument --B", absent=("rep",))),
    register(Case("conformance --workers 0", _opt_conformance("--workers", "0"),
                  "argument --workers", absent=("rep",))),
    register(Case("conformance T x B x size over memory", _opt_conformance("--T", "10000000"),
                  "NRF_NIR_MAX_INPUT_BYTES", absent=("rep",))),
    register(Case("run --option without =", _opt_run("--option", "stepwise"),
                  "argument --option: expected KEY=VALUE", absent=("out.npz",))),
    register(Case("run --option unknown to the target", _opt_run("--option", "colour=red"),
                  "unknown option(s) for the reference target: colour", absent=("out.npz",))),
    register(Case("run --option key with escapes", _opt_run("--option", "x\x1b[2J=1"),
                  "KEY must be a name (letters, digits, _), got 'x\\x1b[2J'",
                  absent=("out.npz",))),
]
if not torch.cuda.is_available():
    OPTION_CASES.append(register(Case("run --device cuda without CUDA", _opt_run(
        "--device", "cuda"), "CUDA is not available on this machine", absent=("out.npz",))))
if torch.cuda.device_count() < 8:
    OPTION_CASES.append(register(Case("run --device cuda:7", _opt_run("--device", "cuda:7"),
                                      "argument --device", absent=("out.npz",))))


@pytest.mark.parametrize("case", OPTION_CASES, ids=lambda c: c.name)
def test_options_out_of_range_are_one_line(case: Case, tmp_path: Path) -> None:
    outcome = check_case(case, tmp_path / "w")
    assert "\x1b" not in outcome.stderr


def test_the_python_api_refuses_the_same_devices() -> None:
    from nrf_nir.api import check_device, lower

    graph = helpers.mlp([3, 4])
    refused = ["foo", "meta", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in refused:
        with pytest.raises(NIRError) as err:
            lower(graph, device=device)
        assert err.value.field == "device", device
    with pytest.raises(NIRError, match="not supported"):
        check_device("vulkan")
    assert check_device("cpu") == "cpu"
    assert check_device(None) is None
    out = nrf_nir.run(graph, np.ones((5, 1, 3), np.float32), device="cpu")
    assert out["output"].shape == (5, 1, 4)


# ------------------------------------------------------------------------------ Ray address

def test_a_ray_address_with_nothing_listening_fails_in_seconds(tmp_path: Path) -> None:
    port = _free_port()
    case = Case("ray address nothing listening", lambda work: [
        "conformance", "--targets", "reference", "--report", "rep", "--ray-address",
        f"127.0.0.1:{port}"], "ray_address", absent=("rep",))
    outcome = check_case(case, tmp_path / "w")
    assert outcome.wall_s < 10, outcome.wall_s
    assert "nothing accepts connections" in outcome.stderr


def test_an_unresolvable_ray_host_is_refused() -> None:
    from nrf_nir.conformance.runner import check_ray_address

    with pytest.raises(NIRError, match="cannot resolve"):
        check_ray_address("a..b:6379", timeout=2)  # an empty label: refused without a lookup


def test_a_ray_connection_error_becomes_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")
    from nrf_nir.conformance import runner

    def refuse(**kwargs: object) -> None:
        raise ConnectionError("Could not find any running Ray instance.\nmore text")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(NIRError, match="cannot connect to a Ray cluster at 'auto'") as err:
        runner._run_ray([], ["reference"], "auto", None, {})
    assert err.value.field == "ray_address" and "\n" not in str(err.value)


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:0", "127.0.0.1:99999",
                                     "ray://:80", "host:port"])
def test_a_malformed_ray_address_is_refused(address: str) -> None:
    from nrf_nir.conformance.runner import check_ray_address

    with pytest.raises(NIRError) as err:
        check_ray_address(address)
    assert err.value.field == "ray_address" and "expected 'local'" in err.value.message


def test_a_listening_ray_address_passes_the_check() -> None:
    from nrf_nir.conformance.runner import check_ray_address

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        start = time.monotonic()
        check_ray_address(f"ray://127.0.0.1:{port}")
        check_ray_address(f"127.0.0.1:{port}")
        assert time.monotonic() - start < 5
    with pytest.raises(NIRError, match="nothing accepts"):
        check_ray_address(f"127.0.0.1:{port}", timeout=2)


# ------------------------------------------------------------------------------ npz reader

def test_big_endian_input_gives_the_little_endian_results(tmp_path: Path) -> None:
    from nrf_nir.cli import main

    model = tmp_path / _model(tmp_path)
    x = helpers.spikes((20, 2, 3), rate=0.4) * 3.0
    np.savez(tmp_path / "le.npz", input=x.astype("<f4"))
    np.savez(tmp_path / "be.npz", input=x.astype(">f4"))
    for name in ("le", "be"):
        assert main(["run", str(model), "--input", str(tmp_path / f"{name}.npz"), "--output",
                     str(tmp_path / f"out-{name}.npz"), "--record", "n1.v"]) == 0
    read = read_npz(str(tmp_path / "be.npz"))["input"]
    assert read.dtype == np.float32 and read.dtype.isnative and np.array_equal(read, x)
    with np.load(tmp_path / "out-le.npz") as le, np.load(tmp_path / "out-be.npz") as be:
        assert le["n1.v"].any()  # membrane potentials: values that depend on the input
        assert np.array_equal(le["n1.v"], be["n1.v"])
        assert np.array_equal(le["output"], be["output"])


def test_read_npz_reads_what_numpy_wrote(tmp_path: Path) -> None:
    arrays = {"a": np.arange(12, dtype=np.int16).reshape(3, 4),
              "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "b": np.array([True, False]), "e": np.zeros((0, 3), np.float32),
              "nested/name": np.float64(2.5)}
    np.savez(tmp_path / "s.npz", **arrays)
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    for name in ("s.npz", "c.npz"):
        got = read_npz(str(tmp_path / name))
        assert set(got) == set(arrays)
        for key, value in arrays.items():
            assert got[key].dtype == value.dtype and np.array_equal(got[key], value), key


def _refused(path: Path, match: str, **kwargs: int) -> NIRError:
    with pytest.raises(NIRError, match=match) as err:
        read_npz(str(path), **kwargs)
    assert path.name in str(err.value)
    return err.value


def test_read_npz_refusals(tmp_path: Path) -> None:
    good = _npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (4,)}, bytes(16))
    np.savez(tmp_path / "ok.npz", x=np.ones(1000, np.float32))
    _refused(tmp_path / "ok.npz", "more than the input limit", max_bytes=1000)
    assert read_npz(str(tmp_path / "ok.npz"), max_bytes=4000)["x"].shape == (1000,)

    flipped = bytearray((tmp_path / "ok.npz").read_bytes())
    at = flipped.index(b"\x00\x00\x80\x3f")  # the first 1.0f of the data
    flipped[at + 3] = 0x40
    (tmp_path / "crc.npz").write_bytes(bytes(flipped))
    _refused(tmp_path / "crc.npz", "CRC")

    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:2000])
    _refused(tmp_path / "cut.npz", "not an .npz archive|not a readable")

    _write_zip(tmp_path / "dup.npz", [_stored("x.npy", good), _stored("x.npy", good)])
    _refused(tmp_path / "dup.npz", "same name")

    _write_zip(tmp_path / "txt.npz", [_stored("notes.txt", b"hello")])
    _refused(tmp_path / "txt.npz", "not an array")

    _write_zip(tmp_path / "many.npz", [_stored(f"x{i}.npy", good) for i in range(1025)])
    _refused(tmp_path / "many.npz", "1025 members")

    long_header = b"\x93NUMPY\x02\x00" + struct.pack("<I", 10 ** 6) + b" " * 100
    _write_zip(tmp_path / "hdr.npz", [_stored("x.npy", long_header)])
    _refused(tmp_path / "hdr.npz", "header of 1000000 bytes")

    bad = _npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (4,)})
    bad = bad.replace(b"'<f4'", b"'<zz'")
    _write_zip(tmp_path / "descr.npz", [_stored("x.npy", bad + bytes(16))])
    _refused(tmp_path / "descr.npz", "unreadable .npy header")

    _write_zip(tmp_path / "noise.npz", [_stored("x.npy", b"not an array at all")])
    _refused(tmp_path / "noise.npz", "not a .npy array")

    structured = _npy_bytes({"descr": [("a", "<f4")], "fortran_order": False, "shape": (4,)})
    _write_zip(tmp_path / "rec.npz", [_stored("x.npy", structured + bytes(16))])
    _refused(tmp_path / "rec.npz", "not a numeric array")

    _claim_more(tmp_path / "end.npz", [_stored("x.npy", good)])
    _refused(tmp_path / "end.npz", "that the file does not hold")
    name, method, data, crc, size = _stored("x.npy", good)
    _write_zip(tmp_path / "sizes.npz", [(name, method, data, crc, size + 8)])
    _refused(tmp_path / "sizes.npz", "that the file does not hold")

    with zipfile.ZipFile(tmp_path / "bz2.npz", "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("x.npy", good)
    _refused(tmp_path / "bz2.npz", "unsupported compression")

    v3 = b"\x93NUMPY\x03\x00" + good[8:]
    _write_zip(tmp_path / "v3.npz", [_stored("x.npy", v3)])
    _refused(tmp_path / "v3.npz", "unsupported .npy format version 3.0")

    short = b"\x93NUMPY\x01\x00" + struct.pack("<H", 80) + b"{"
    _write_zip(tmp_path / "short.npz", [_stored("x.npy", short)])
    _refused(tmp_path / "short.npz", "not a readable .npz archive")

    negative = _npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (-1,)})
    _write_zip(tmp_path / "neg.npz", [_stored("x.npy", negative)])
    _refused(tmp_path / "neg.npz", "invalid shape")

    header = _npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (16,)})
    data, crc = _zeros_deflated(header, 16)  # 16 of the 64 data bytes the header declares
    _write_zip(tmp_path / "early.npz", [("x.npy", zipfile.ZIP_DEFLATED, data, crc,
                                         len(header) + 64)])
    _refused(tmp_path / "early.npz", "not a readable .npz archive")

    (tmp_path / "text.npz").write_text("not a zip")
    _refused(tmp_path / "text.npz", "not a zip file")
    with pytest.raises(NIRError, match="cannot read") as err:
        read_npz(str(tmp_path / ("n" * 5000 + ".npz")))
    assert len(str(err.value)) < 400 and str(err.value).endswith("n.npz': cannot read (File "
                                                                 "name too long)")

    extra = good + b"tail"
    _write_zip(tmp_path / "extra.npz", [_stored("x.npy", extra)])
    _refused(tmp_path / "extra.npz", "corrupted or forged")

    (tmp_path / "dir.npz").mkdir()
    _refused(tmp_path / "dir.npz", "not a regular file")
    _refused(tmp_path / "missing.npz", "no such file")


def test_the_input_limit_comes_from_the_environment(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    np.savez(tmp_path / "ok.npz", x=np.ones(1000, np.float32))
    monkeypatch.setenv("NRF_NIR_MAX_INPUT_BYTES", "100")
    _refused(tmp_path / "ok.npz", "more than the input limit")
    for bad in ("lots", "0"):
        monkeypatch.setenv("NRF_NIR_MAX_INPUT_BYTES", bad)
        with pytest.raises(NIRError, match="NRF_NIR_MAX_INPUT_BYTES"):
            read_npz(str(tmp_path / "ok.npz"))
    monkeypatch.setenv("NRF_NIR_MAX_INPUT_BYTES", "1e6")
    assert read_npz(str(tmp_path / "ok.npz"))["x"].shape == (1000,)


def test_running_out_of_memory_while_reading_is_an_error(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import nrf_nir.arrays as arrays

    np.savez(tmp_path / "ok.npz", x=np.ones(1000, np.float32))

    def no_memory(*args: object, **kwargs: object) -> np.ndarray:
        raise MemoryError

    monkeypatch.setattr(arrays.np, "empty", no_memory)
    _refused(tmp_path / "ok.npz", "not enough memory")


# ------------------------------------------------------------------------------ manifests

GOOD_ENTRY = '[cases."node/a"]\nlevel = "within"\nexact = 0.9\nreason = "r"\n'


@pytest.mark.parametrize("text,match,entry", [
    (b'[default]\nlevel = "exact"\nreason = "caf\xe9"\n', "not UTF-8 text", None),
    (b'default = "exact"\n', "must be a table", "default"),
    (b'cases = ["node/a"]\n', "must be a table of case names", "cases"),
    (b'files = 3\n', "must be a table", "files"),
    (b'[cases]\n"node/a" = "exact"\n', "must be a table", "node/a"),
    (b'[cases."node/a"]\nlevel = "within"\nexact = "0.9"\n', "must be a number", "node/a"),
    (b'[cases."node/a"]\nlevel = "within"\nexact = {v = 1}\n', "must be a number", "node/a"),
    (b'[cases."node/a"]\nlevel = "within"\nexact = true\n', "must be a number", "node/a"),
    (b'[cases."node/a"]\nlevel = "within"\nexact = nan\n', "must be finite", "node/a"),
    (b'[cases."node/a"]\nlevel = "within"\nrmse_max = inf\n', "must be finite", "node/a"),
    (b'[cases."node/a"]\nlevel = "within"\nf1_pm3 = -inf\n', "must be finite", "node/a"),
    (b'[cases."node/a"]\nlevel = "within"\nexact = 1.5\n', r"in \[0, 1\]", "node/a"),
    (b'[cases."node/a"]\nlevel = "within"\nf1_pm3 = -0.1\n', r"in \[0, 1\]", "node/a"),
    (b'[cases."node/a"]\nlevel = "within"\ndecision_agreement = 2\n', r"in \[0, 1\]",
     "node/a"),
    (b'[cases."node/a"]\nlevel = "within"\ncount_correlation = -1.5\n', r"in \[-1, 1\]",
     "node/a"),
    (b'[cases."node/a"]\nlevel = "within"\nrmse_max = -1e-3\n', ">= 0", "node/a"),
    (b'[cases."node/a"]\nlevel = "xfail"\nreason = 3\n', "must be a string", "node/a"),
    (b'[cases."node/a"]\nlevel = "xfail"\nreason = "r"\nupstream = ["u"]\n', "must be a string",
     "node/a"),
    (b'[cases."node/a"]\nlevel = 3\n', "level must be one of", "node/a"),
    (b'[cases."node/a"]\nlevel = "exact"\n"x\\u001b[2J" = 1\n', r"unknown key\(s\) 'x\\x1b",
     "node/a"),
    (b'[extra]\nlevel = "exact"\n', "unknown table", None),
    (b'[cases."node/a"\n', "not valid TOML", None),
])
def test_a_malformed_manifest_is_one_error_naming_file_and_entry(
        text: bytes, match: str, entry: str | None, tmp_path: Path) -> None:
    from nrf_nir.conformance.manifest import load_manifest

    (tmp_path / "t.toml").write_bytes(text)
    with pytest.raises(NIRError, match=match) as err:
        load_manifest("t", tmp_path)
    assert type(err.value) is NIRError
    assert "t.toml" in str(err.value)
    if entry is not None:
        assert err.value.node == entry
    assert "\x1b" not in str(err.value) and "\n" not in str(err.value)


def test_an_oversized_or_unreadable_manifest_is_one_error(tmp_path: Path) -> None:
    from nrf_nir.conformance.manifest import MAX_MANIFEST_BYTES, load_manifest

    (tmp_path / "big.toml").write_text("#" * MAX_MANIFEST_BYTES + "\n")
    with pytest.raises(NIRError, match="larger than"):
        load_manifest("big", tmp_path)
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(NIRError, match="cannot read"):
        load_manifest("dir", tmp_path)


def test_valid_manifests_still_load(tmp_path: Path) -> None:
    from nrf_nir.conformance.manifest import load_manifest
    from nrf_nir.targets import registered

    for target in registered():
        load_manifest(target)
    (tmp_path / "t.toml").write_text(
        '[default]\nlevel = "exact"\n[cases."node/a"]\nlevel = "within"\n'
        'count_correlation = 0.6\nrmse_max = 0\nexact = 1\nf1_pm3 = 0.9\n'
        '[files]\nlevel = "within"\nrmse_max = 1e-4\n')
    manifest = load_manifest("t", tmp_path)
    assert manifest.expect("node/a").thresholds == {
        "count_correlation": 0.6, "rmse_max": 0.0, "exact": 1.0, "f1_pm3": 0.9}
    assert manifest.files.thresholds == {"rmse_max": 1e-4}


# ------------------------------------------------------------------------------ names

def test_names_in_errors_are_escaped_and_shortened() -> None:
    err = NIRError("bad value \x1b]0;title\x07", node="n\x1b[2J\x9b\x7f\u202e",
                   field="f\nx", file="dir/" + "a" * 10_000 + ".nir")
    text = str(err)
    assert all(ch.isprintable() for ch in text), text
    assert "'n\\x1b[2J\\x9b\\x7f\\u202e'" in text and "'f\\nx'" in text
    assert "\\x1b]0;title\\x07" in text
    assert len(text) < 500 and "..." in text and text.count("a") < 300
    assert text.split(",")[0].endswith("a.nir'")  # both ends of a path are kept
    long = shown("x" * 10_000)
    assert len(long) <= 122 and long.startswith("'xxx") and "..." in long
    many = shown("\x1b" * 10_000)
    assert len(many) <= 122 and "\x1b" not in many
    assert shown("plain") == "'plain'" and shown("a'b\\c") == "'a\\'b\\\\c'"


def test_a_self_referencing_group_gives_a_short_error_line(tmp_path: Path) -> None:
    import h5py

    nrf_nir.save(helpers.mlp([3, 4]), tmp_path / "m.nir")
    with h5py.File(tmp_path / "m.nir", "r+") as f:
        del f["node/nodes/n1/type"]
        f["node/nodes/n1/nodes"] = f["node/nodes"]  # a hard link to its own parent
    outcome = run_cli(["validate", "m.nir"], tmp_path)
    assert outcome.rc == 2
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nrf-nir: error: ")
    assert len(lines[0]) < 600, len(lines[0])


def _result(case: str, target: str, **kwargs: object):  # noqa: ANN202
    from nrf_nir.conformance.runner import Result

    return Result(case=case, target=target, **kwargs)  # type: ignore[arg-type]


def _row_cells(line: str) -> list[str]:
    """Cells of a GFM table row: split on pipes that are not escaped."""
    import re

    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def test_report_markdown_escapes_names(tmp_path: Path) -> None:
    from nrf_nir.conformance.report import write_markdown

    evil = "node/x\x1b[2J|`tick`\x9b"
    results = [
        _result(evil, "reference", status="fail", ok=False, level="exact",
                message="spikes differ at \x1b[31mred\x1b[0m\nsecond line"),
        _result("node/" + "L" * 5000, "reference", status="xfail", ok=True, level="xfail",
                reason="known \x07 bell", upstream="https://example.org/\x1b"),
    ]
    text = write_markdown(results, {"targets": "reference\x1b[2J", "cases": 2})
    assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text
    assert "\\x1b[2J" in text
    # the case matrix (the per-target summary table above it has rows of its own)
    rows = [line for line in text[text.index("| case |"):].splitlines() if line.startswith("| ")]
    assert len(rows) == 3  # header and two cases, each a single line
    assert all(len(_row_cells(row)) == 2 for row in rows), rows
    evil_row = next(r for r in rows if "tick" in r)
    assert "``" in evil_row and "\\|" in evil_row  # backticks fenced, pipe escaped
    assert max(map(len, text.splitlines())) < 400
    assert len([line for line in text.splitlines() if line.startswith("- ")]) == 4


# ------------------------------------------------------------------------------ helpers' use

def _cases(cases: Sequence[Case]) -> list[str]:
    return [c.name for c in cases]


def test_every_case_here_is_registered_once() -> None:
    from tests.hostile import CASES

    names = _cases(INPUT_CASES + CHECKPOINT_CASES + OPTION_CASES)
    assert len(names) == len(set(names)) and all(CASES[n].name == n for n in names)


def test_the_cli_module_runs_as_a_script() -> None:
    proc = subprocess.run([sys.executable, "-m", "nrf_nir.cli", "conformance", "--report", "r",
                           "--T", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nrf-nir: error: ")
    assert "argument --T" in proc.stderr


def test_many_unknown_input_keys_make_a_short_message() -> None:
    """Found by the fuzzer: an archive of hundreds of members listed every name (4 KB)."""
    graph = nrf_nir.validate(helpers.mlp([4, 5, 3]))
    arrays = {f"m{i}": np.zeros((2, 1, 4), np.float32) for i in range(500)}
    with pytest.raises(NIRError) as err:
        nrf_nir.prepare_inputs(graph, arrays, torch.float32)
    text = str(err.value)
    assert "unknown: m0, m1" in text and "and 492 more" in text and len(text) < 300


def test_a_huge_message_is_cut_in_the_middle() -> None:
    text = str(NIRError("start " + "x" * 5_000_000 + " end", node="n", field="f"))
    assert len(text) < 1_200 and text.startswith("node 'n', field 'f': start x")
    assert text.endswith("x end") and "characters)..." in text


def test_a_value_of_millions_of_numbers_is_described_not_printed() -> None:
    """Found by the fuzzer: a 4-million-element start_dim became a 21 MB message."""
    import nir

    graph = helpers.chain(nir.Flatten(input_type={"input": np.array([2, 3])}),
                          shape=(2, 3))
    graph.nodes["n0"].start_dim = np.ones((1024, 16, 256))
    with pytest.raises(NIRError) as err:
        nrf_nir.validate(graph)
    text = str(err.value)
    assert "an array of shape [1024, 16, 256] (1.0, 1.0" in text and len(text) < 300
