"""Fuzz the loader, validator, reference, writers and input reader with hostile files.

    NRF_NIR_READ_TIMEOUT=5 python benchmarks/fuzz_nir.py --count 100000 --workers 2 --seed 0

Each case is drawn from one mutation family (``FAMILIES``), applied to a valid base graph
(every node case of the conformance suite):

* ``bytes``: flipped, truncated or inserted bytes; ``hdf5``: a dataset replaced by NaN / inf /
  negative / empty / huge / text / wrong-shaped data, deleted, renamed types, extra edges,
  metadata; ``input``: a valid graph run on a random input array.
* ``external_storage``, ``external_link``, ``soft_link``, ``virtual``: a dataset or node
  replaced by HDF5 features that reach outside the node tree or the file, all pointing at a
  planted canary (a raw file, an HDF5 file, or a copy of the node with canary values).
* ``compressed`` (huge declared shapes with a tiny gzip payload), ``hard_link`` (repeated
  datasets and nodes, cycles, exponential fan-out), ``nesting`` (the graph wrapped in up to
  400 nested ``NIRGraph`` groups), ``dtype`` (compound, enum, opaque, vlen, references, huge
  strings).
* ``npz``: hostile input archives (header and zip bombs, ``.npy``, big-endian, truncated,
  object arrays, FIFOs, symlinks) for ``nrf_nir.arrays.read_npz`` when it exists and for
  ``nrf-nir run --input``; ``output``: ``nrf_nir.save`` and ``nrf-nir run --output`` onto a
  symlink to a victim file, a directory, a dangling link, a read-only or a full file system.

Outcomes per case: ``ran`` (a result), ``refused`` (a ``NIRError``, or exit status 2 with one
line from the CLI), ``unhandled`` (any other exception, a hang past ``--case-timeout``, a crash
of the worker process), ``bad_error`` (a refusal whose message is over ``MAX_MESSAGE``
characters, has several lines, or, from the CLI, names no file), ``leak`` (canary bytes,
values or text in a result, an error message, a warning, printed output or a written file),
``damage`` (a victim file changed, a partial file or a child process left behind) and
``fuzzer_error`` (a bug of this script building the case). Every failure is saved (files,
traceback, replay command) under ``--corpus`` to become a regression test. Each case draws
from its own generator ``(seed, index)``, so ``--replay I`` rebuilds case ``I`` exactly.
Workers run as subprocesses that append one JSON line per case; a worker that crashes or
hangs is recorded and restarted after the case that killed it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import os
import resource
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nrf_nir  # noqa: E402
from nrf_nir.conformance.cases import node_cases  # noqa: E402
from nrf_nir.errors import NIRError  # noqa: E402

FAMILIES = ("bytes", "hdf5", "input", "external_storage", "external_link", "soft_link",
            "virtual", "compressed", "hard_link", "nesting", "dtype", "npz", "output")
OUTCOMES = ("ran", "refused", "unhandled", "bad_error", "leak", "damage", "fuzzer_error")
FAILURES = ("unhandled", "bad_error", "leak", "damage", "fuzzer_error")
#: Characters an error message may have (one line naming file, node and field).
MAX_MESSAGE = 2000
#: Test hook: the worker kills itself (SIGSEGV) at the start of this case index.
CRASH_AT_ENV = "NRF_NIR_FUZZ_CRASH_AT"

# --------------------------------------------------------------------------------------------
# The canary: a secret no result, message or written file may ever contain

#: float32 value the canary file is full of (also stored as float64).
CANARY_VALUE = 1234.5678
_F32 = np.float32(CANARY_VALUE)
_F64 = np.float64(CANARY_VALUE)
_I32 = int(np.array(_F32).view(np.int32))
_TEXTS = ("1234.567", "1234.568")  # how printed canary values look


class Canary:
    """Planted files holding a random secret and a recognisable float pattern.

    ``raw`` (bytes): 64 float32 canary values (offset 0), the secret text padded to 64 bytes
    (offset 256), 32 float64 canary values (offset 320). ``h5`` (HDF5): ``/x`` float32 values,
    ``/d`` float64 values, ``/s`` the secret string, ``/node`` a valid graph whose float
    arrays all hold the canary value.
    """

    F32_OFFSET = 0
    SECRET_OFFSET = 256
    F64_OFFSET = 320

    def __init__(self, root: Path, blob: bytes) -> None:
        self.secret = "CANARY-" + secrets.token_hex(16)
        self.secret_bytes = self.secret.encode()
        self.patterns = (self.secret_bytes, np.full(2, _F32).tobytes(), _F64.tobytes())
        self.raw = root / "canary.secret"
        body = np.full(64, _F32).tobytes() + self.secret_bytes.ljust(64, b"#")
        self.raw.write_bytes(body + np.full(32, _F64).tobytes())
        assert len(body) == self.F64_OFFSET
        self.h5 = root / "canary.h5"
        self.h5.write_bytes(blob)
        with h5py.File(self.h5, "r+") as f:
            fill_canary(f["node"], self)
            f["x"] = np.full(64, _F32)
            f["d"] = np.full(32, _F64)
            f.create_dataset("s", data=self.secret, dtype=h5py.string_dtype())
        self.files = {p: p.read_bytes() for p in (self.raw, self.h5)}

    def text_hit(self, text: str) -> bool:
        return self.secret in text or any(t in text for t in _TEXTS)

    def bytes_hit(self, data: bytes) -> bool:
        return any(p in data for p in self.patterns)

    def array_hit(self, arr: np.ndarray) -> bool:
        kind = arr.dtype.kind
        if kind == "O":
            return False
        with np.errstate(all="ignore"):
            if kind in "fc" and (np.any(arr == _F32) or np.any(arr == _F64)):
                return True
            if kind in "iu" and arr.dtype.itemsize >= 4 and np.any(arr == _I32):
                return True
        if kind in "SUV" and arr.dtype.names is None:
            text = " ".join(str(v) for v in arr.reshape(-1)[:10_000])
            if self.secret in text:
                return True
        return arr.nbytes <= 1 << 28 and self.bytes_hit(arr.tobytes())

    def find(self, obj: object, where: str = "result") -> str | None:
        """Where in ``obj`` (nested containers, arrays, tensors, NIR nodes) the canary is."""
        stack: list[tuple[object, str]] = [(obj, where)]
        seen: dict[int, object] = {}  # holds what it saw, so that no id is reused
        while stack:
            value, at = stack.pop()
            if id(value) in seen:
                continue
            seen[id(value)] = value
            if isinstance(value, str):
                if self.text_hit(value):
                    return at
            elif isinstance(value, (bytes, bytearray)):
                if self.bytes_hit(bytes(value)):
                    return at
            elif isinstance(value, (int, float, complex, np.generic)):
                if self.array_hit(np.asarray(value)):
                    return at
            elif isinstance(value, np.ndarray):
                if value.dtype == object:
                    stack.extend((v, f"{at}[{k}]") for k, v in enumerate(value.reshape(-1)))
                elif self.array_hit(value):
                    return at
            elif hasattr(value, "detach") and hasattr(value, "numpy"):
                stack.append((value.detach().cpu().numpy(), at))
            elif isinstance(value, dict):
                for k, v in value.items():
                    stack.append((k, f"{at} key"))
                    stack.append((v, f"{at}[{k!r}]"))
            elif isinstance(value, (list, tuple, set, frozenset)):
                stack.extend((v, f"{at}[{k}]") for k, v in enumerate(value))
            elif type(value).__module__.split(".")[0] in ("nir", "nrf_nir"):
                fields = vars(value) if hasattr(value, "__dict__") else {}
                stack.extend((v, f"{at}.{k}") for k, v in fields.items())
        return None


def fill_canary(group: h5py.Group, canary: Canary) -> None:
    """Overwrite every numeric float dataset under ``group`` with canary values, and every
    text dataset other than ``type`` and ``edges`` with the secret."""
    names: list[str] = []
    group.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    for name in names:
        ds = group[name]
        if ds.dtype.kind == "f":
            ds[...] = CANARY_VALUE
        elif h5py.check_string_dtype(ds.dtype) and name.rsplit("/", 1)[-1] not in (
                "type", "edges"):
            ds[...] = canary.secret


# --------------------------------------------------------------------------------------------
# The classic mutations (bytes, HDF5 values, inputs)

VALUES = [
    lambda r: np.float64(np.nan), lambda r: np.float64(np.inf), lambda r: np.float64(-1.0),
    lambda r: np.float64(0.0), lambda r: np.array([]), lambda r: np.zeros((0, 3)),
    lambda r: "text", lambda r: np.array([1e308, -1e308]), lambda r: r.normal(size=(2, 3, 4)),
    lambda r: np.int64(r.integers(-5, 5)), lambda r: np.ones(r.integers(1, 9)),
    lambda r: np.array([b"a", b"b"]), lambda r: np.array(True),
    lambda r: np.full(3, 2**40, dtype=np.int64), lambda r: np.array([[1, 2]], dtype=np.int8),
]


def _datasets(f: h5py.Group) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _groups(f: h5py.Group) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Group) else None)
    return names


def mutate_hdf5(path: Path, rng: np.random.Generator) -> str:
    with h5py.File(path, "r+") as f:
        kind = rng.integers(0, 6)
        datasets = _datasets(f)
        if kind <= 1 and datasets:
            name = datasets[rng.integers(len(datasets))]
            value = VALUES[rng.integers(len(VALUES))](rng)
            del f[name]
            if isinstance(value, str):
                f.create_dataset(name, data=value, dtype=h5py.string_dtype())
            else:
                f.create_dataset(name, data=value)
            return f"replace {name}"
        if kind == 2 and datasets:
            name = datasets[rng.integers(len(datasets))]
            del f[name]
            return f"delete {name}"
        if kind == 3:
            groups = [g for g in _groups(f) if g.count("/") >= 2]
            if groups:
                name = groups[rng.integers(len(groups))]
                if "type" in f[name]:
                    del f[name + "/type"]
                types = ["LIF", "CubaLIF", "Affine", "Conv2d", "Flatten", "NIRGraph", "Delay",
                         "Input", "Output", "Banana", ""]
                f[name].create_dataset("type", data=types[rng.integers(len(types))],
                                       dtype=h5py.string_dtype())
                return f"retype {name}"
        if kind == 4 and "node/edges" in f:
            edges = [[a.decode() if isinstance(a, bytes) else a for a in e]
                     for e in f["node/edges"][()]]
            nodes = list(f["node/nodes"].keys()) + ["ghost"]
            for _ in range(rng.integers(1, 4)):
                edges.append([nodes[rng.integers(len(nodes))], nodes[rng.integers(len(nodes))]])
            del f["node/edges"]
            f["node"].create_dataset("edges", data=np.array(edges, dtype=object),
                                     dtype=h5py.string_dtype())
            return "edges"
        if "node/metadata" in f:
            key = ["dt", "reset", "threshold", "integration", "initial_state"][rng.integers(5)]
            meta = f["node/metadata"]
            if key in meta:
                del meta[key]
            value = VALUES[rng.integers(len(VALUES))](rng)
            if isinstance(value, str):
                meta.create_dataset(key, data=value, dtype=h5py.string_dtype())
            else:
                meta.create_dataset(key, data=value)
            return f"metadata {key}"
    return "noop"


def mutate_bytes(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    buf = bytearray(data)
    kind = rng.integers(0, 3)
    if kind == 0:
        for _ in range(rng.integers(1, 32)):
            buf[rng.integers(len(buf))] ^= int(rng.integers(1, 256))
        return bytes(buf), "flip"
    if kind == 1:
        return bytes(buf[: rng.integers(0, len(buf))]), "truncate"
    at = rng.integers(len(buf))
    return bytes(buf[:at]) + rng.bytes(int(rng.integers(1, 256))) + bytes(buf[at:]), "insert"


def random_input(shape: tuple[int, ...], rng: np.random.Generator) -> object:
    choice = rng.integers(0, 8)
    T, B = int(rng.integers(0, 4)), int(rng.integers(0, 3))
    if choice == 0:
        return rng.random((T, B, *shape))
    if choice == 1:
        return rng.random((T, B, *[s + 1 for s in shape]))
    if choice == 2:
        return np.full((3, 1, *shape), np.nan)
    if choice == 3:
        return np.ones((3, 1, *shape), dtype=np.int16)
    if choice == 4:
        return rng.random((3,) * int(rng.integers(0, 5)))
    if choice == 5:
        return {"wrong": rng.random((3, 1, *shape))}
    if choice == 6:
        return np.full((2, 1, *shape), "x")
    return (rng.random((3, 1, *shape)) < 0.5)


# --------------------------------------------------------------------------------------------
# The worker's state and a case's plan


@dataclasses.dataclass
class Plan:
    """A built case: ``call()`` runs it through the public API and returns what it produced."""

    what: str
    call: Callable[[], object]
    #: files whose bytes must be the same afterwards (path -> sha256)
    untouched: dict[Path, str] = dataclasses.field(default_factory=dict)
    #: paths that must not exist afterwards
    absent: list[Path] = dataclasses.field(default_factory=list)


class Work:
    """One worker's folder: the canary files, the base graphs, the case folder, the mounts."""

    def __init__(self, root: Path, *, mounts: bool = True) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.case = root / "case"
        self.blobs = base_files(root)
        self.canary = Canary(root, self.blobs[0])
        self._graphs: dict[int, Any] = {}
        self._deflated: dict[str, tuple[bytes, int, int]] = {}
        self.notes: list[str] = []
        try:
            module = importlib.import_module("nrf_nir.arrays")
            self.read_npz: Callable[..., Any] | None = module.read_npz
        except (ImportError, AttributeError):
            self.read_npz = None
            self.notes.append("nrf_nir.arrays.read_npz is absent: the npz family goes only "
                              "through 'nrf-nir run --input'")
        self.mounts: dict[str, Path] = {}
        if mounts:
            self._mount()

    def _mount(self) -> None:
        why = "not root" if os.geteuid() != 0 else ""
        for name, options in (("ro", "ro,size=64k"), ("full", "size=64k")):
            point = self.root / name
            if why:
                break
            point.mkdir(exist_ok=True)
            if os.path.ismount(point):
                self.mounts[name] = point
                continue
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                why = done.stderr.strip() or f"mount exit {done.returncode}"
                break
            self.mounts[name] = point
        if why:
            self.notes.append(f"no read-only / full file systems for the output family ({why})")

    def unmount(self) -> None:
        for point in self.mounts.values():
            unmount(point)
        self.mounts.clear()

    def fresh_case(self) -> Path:
        if self.case.exists():
            shutil.rmtree(self.case)
        self.case.mkdir()
        return self.case

    def graph(self, k: int) -> tuple[Any, Any]:
        """Base graph ``k`` and its validation, loaded once."""
        if k not in self._graphs:
            path = self.root / f"base{k}.nir"
            graph = nrf_nir.load(path)
            self._graphs[k] = (graph, nrf_nir.validate(graph))
        graph, checked = self._graphs[k]
        return graph, checked

    def deflated(self, name: str, header: bytes, zeros: int, raw: bool) -> tuple[bytes, int, int]:
        """``header + zeros`` deflated once (raw deflate for zip, zlib for HDF5):
        (compressed, crc32, uncompressed size)."""
        if name not in self._deflated:
            comp = zlib.compressobj(9, zlib.DEFLATED, -15 if raw else 15)
            parts, crc = [comp.compress(header)], zlib.crc32(header)
            block = bytes(1 << 20)
            for _ in range(zeros >> 20):
                parts.append(comp.compress(block))
                crc = zlib.crc32(block, crc)
            parts.append(comp.flush())
            self._deflated[name] = (b"".join(parts), crc, len(header) + (zeros >> 20 << 20))
        return self._deflated[name]


def unmount(point: Path) -> None:
    if os.path.ismount(point):
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


def base_files(root: Path) -> list[bytes]:
    graphs = [c.graph for c in node_cases(T=4, B=1)]
    blobs = []
    for i, graph in enumerate(graphs):
        path = root / f"base{i}.nir"
        nrf_nir.save(graph, path)
        blobs.append(path.read_bytes())
    return blobs


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pick(rng: np.random.Generator, seq: Any) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _write_base(w: Work, rng: np.random.Generator, name: str = "fuzz.nir") -> tuple[Path, int]:
    k = int(rng.integers(len(w.blobs)))
    path = w.case / name
    path.write_bytes(w.blobs[k])
    return path, k


def _node_datasets(f: h5py.File, numeric: bool = False) -> list[str]:
    names = _datasets(f["node"])
    if numeric:
        names = [n for n in names if f["node"][n].dtype.kind in "fiub"]
    return ["node/" + n for n in names]


def _node_groups(f: h5py.File) -> list[str]:
    """Node groups (children of some ``nodes`` group), deepest paths included."""
    return ["node/" + g for g in _groups(f["node"]) if g.rsplit("/", 2)[-2:-1] == ["nodes"]]


def _canary_like(w: Work, ds: h5py.Dataset) -> tuple[Any, Any]:
    """(data, dtype) shaped like ``ds`` holding canary values (text: the secret)."""
    if h5py.check_string_dtype(ds.dtype) or ds.dtype.kind in "OSU":
        if ds.shape == ():
            return w.canary.secret, h5py.string_dtype()
        return np.full(ds.shape, w.canary.secret, dtype=object), h5py.string_dtype()
    dtype = ds.dtype if ds.dtype.kind == "f" else np.dtype(np.float32)
    return np.full(ds.shape or (), CANARY_VALUE, dtype=dtype), dtype


def _sidecar(w: Work, name: str = "other.h5") -> h5py.File:
    return h5py.File(w.case / name, "a")


def _rel(path: Path) -> str:
    return os.path.relpath(path, os.getcwd())


# --------------------------------------------------------------------------------------------
# Consumers: the public API and the CLI, in-process


class CLIRefusal(NIRError):
    """The CLI exited with status 2 and printed one error line: a refusal. ``printed``: what
    it wrote to stdout before; ``names_file``: whether the line names a file (every command
    fuzzed here reads or writes files, and its errors must say which)."""

    printed = ""
    names_file = True


def consume_api(path: Path) -> object:
    graph = nrf_nir.load(path)
    checked = nrf_nir.validate(graph)
    x = {n: np.ones((3, 1, *checked.out_shapes[n]), np.float32) for n in checked.flat.inputs}
    return graph, nrf_nir.run(graph, x, dt=1e-3, device="cpu")


def consume_cli(argv: list[str]) -> str:
    """``nrf-nir ARGV`` in-process: its output on success, ``CLIRefusal`` on a proper exit 2,
    ``RuntimeError`` on anything else (a traceback, another status, several lines)."""
    from nrf_nir.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if code == 0:
        return out.getvalue() + err.getvalue()
    if code == 2 and len(lines) == 1 and lines[0].startswith("nrf-nir: error: "):
        refusal = CLIRefusal(lines[0])
        refusal.printed = out.getvalue()
        refusal.names_file = "file '" in lines[0]
        raise refusal
    raise RuntimeError(f"CLI exit {code}, stderr {err.getvalue()[-300:]!r}")


def consume_file(path: Path, rng: np.random.Generator) -> tuple[str, Callable[[], object]]:
    """A random consumer of a .nir file: the API (load, validate, run) or the CLI."""
    choice = int(rng.integers(0, 5))
    if choice == 3:
        return "cli validate", lambda: consume_cli(["validate", str(path)])
    if choice == 4:
        return "cli inspect", lambda: consume_cli(["inspect", str(path), "--json"])
    return "api", lambda: consume_api(path)


def _file_plan(what: str, path: Path, rng: np.random.Generator) -> Plan:
    how, call = consume_file(path, rng)
    return Plan(f"{what} | {how}", call)


# --------------------------------------------------------------------------------------------
# Families


def plan_bytes(w: Work, rng: np.random.Generator) -> Plan:
    k = int(rng.integers(len(w.blobs)))
    data, what = mutate_bytes(w.blobs[k], rng)
    path = w.case / "fuzz.nir"
    path.write_bytes(data)
    return Plan(what, lambda: consume_api(path))


def plan_hdf5(w: Work, rng: np.random.Generator) -> Plan:
    path, _ = _write_base(w, rng)
    what = mutate_hdf5(path, rng)
    return Plan(what, lambda: consume_api(path))


def plan_input(w: Work, rng: np.random.Generator) -> Plan:
    k = int(rng.integers(len(w.blobs)))
    graph, checked = w.graph(k)
    x = random_input(checked.out_shapes[checked.flat.inputs[0]], rng)
    if len(checked.flat.inputs) > 1 and isinstance(x, np.ndarray):
        x = {n: x for n in checked.flat.inputs}
    return Plan("input", lambda: nrf_nir.run(graph, x, dt=1e-3, device="cpu"))


def _external_dataset(f: h5py.File, name: str, shape: tuple[int, ...], dtype: np.dtype,
                      segments: list[tuple[str, int, int]]) -> None:
    """A contiguous dataset whose data lives in ``segments`` (file, offset, size) of other
    files; low-level, since h5py drops ``external=`` for scalar datasets."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    for file, offset, size in segments:
        dcpl.set_external(file.encode(), offset, size)
    space = h5py.h5s.create(h5py.h5s.SCALAR) if shape == () else h5py.h5s.create_simple(shape)
    h5py.h5d.create(f["/"].id, name.encode(), h5py.h5t.py_create(dtype), space, dcpl=dcpl)


def plan_external_storage(w: Work, rng: np.random.Generator) -> Plan:
    path, _ = _write_base(w, rng)
    c = w.canary
    with h5py.File(path, "r+") as f:
        name = _pick(rng, _node_datasets(f))
        old = f[name]
        shape, dtype = old.shape, old.dtype
        region = _pick(rng, ("f32", "f64", "secret", "random"))
        if h5py.check_string_dtype(dtype) or dtype.kind in "OSU" or region == "secret":
            dtype, offset = np.dtype(f"S{len(c.secret)}"), c.SECRET_OFFSET
        elif region == "f64":
            dtype, offset = np.dtype(np.float64), c.F64_OFFSET
        elif region == "f32":
            dtype, offset = np.dtype(np.float32), c.F32_OFFSET
        else:
            offset = int(rng.integers(0, 600))
        if rng.random() < 0.5 and shape == ():
            shape = (1,)
        target = _pick(rng, ("abs", "rel", "hdf5", "missing", "self"))
        file = {"abs": str(c.raw), "rel": _rel(c.raw), "hdf5": str(c.h5),
                "missing": str(w.case / "missing.bin"), "self": str(path)}[target]
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = _pick(rng, (h5py.h5f.UNLIMITED, nbytes, max(nbytes, 1) * 4))
        del f[name]
        segments = [(file, offset, size)]
        if rng.random() < 0.2:  # two segments: the first one tiny, the rest from the canary
            segments = [(file, offset, max(1, dtype.itemsize)), (str(c.raw), 0,
                                                                  h5py.h5f.UNLIMITED)]
        _external_dataset(f, name, shape, dtype, segments)
    return _file_plan(f"{name} <- {target}@{offset} {dtype}", path, rng)


def plan_external_link(w: Work, rng: np.random.Generator) -> Plan:
    path, _ = _write_base(w, rng)
    c = w.canary
    kind = _pick(rng, ("dataset", "node", "root", "canary", "missing", "self", "raw"))
    with h5py.File(path, "r+") as f:
        if kind in ("dataset", "node"):
            name = _pick(rng, _node_datasets(f) if kind == "dataset" else _node_groups(f))
            with _sidecar(w) as other:
                if kind == "dataset":
                    data, dtype = _canary_like(w, f[name])
                    other.create_dataset("x", data=data, dtype=dtype)
                else:
                    f.copy(f[name], other, name="x")
                    fill_canary(other["x"], c)
            style = _pick(rng, ("abs", "rel", "name"))
            file = {"abs": str(w.case / "other.h5"), "rel": _rel(w.case / "other.h5"),
                    "name": "other.h5"}[style]
            target = "/x"
        elif kind == "root":
            name, file, target = "node", _pick(rng, (str(c.h5), _rel(c.h5))), "/node"
        elif kind == "canary":
            name = _pick(rng, _node_datasets(f))
            file, target = str(c.h5), _pick(rng, ("/x", "/d", "/s", "/node"))
        elif kind == "missing":
            name, file, target = _pick(rng, _node_datasets(f)), "missing.h5", "/x"
        elif kind == "self":
            name = _pick(rng, ["node", *_node_groups(f)])
            file, target = _pick(rng, (str(path), "fuzz.nir")), "/node"
        else:
            name, file, target = _pick(rng, _node_datasets(f)), str(c.raw), "/x"
        del f[name]
        f[name] = h5py.ExternalLink(file, target)
    return _file_plan(f"{kind}: {name} -> {file}:{target}", path, rng)


def plan_soft_link(w: Work, rng: np.random.Generator) -> Plan:
    path, _ = _write_base(w, rng)
    kind = _pick(rng, ("dataset", "node", "outside", "outside-node", "dangling", "cycle",
                       "chain", "relative"))
    with h5py.File(path, "r+") as f:
        datasets, nodes = _node_datasets(f), _node_groups(f)
        if kind == "dataset":
            name, target = _pick(rng, datasets), "/" + _pick(rng, datasets)
        elif kind == "node":
            name, target = _pick(rng, nodes), "/" + _pick(rng, nodes)
        elif kind == "outside":
            name = _pick(rng, datasets)
            data, dtype = _canary_like(w, f[name])
            f.create_dataset("outside/x", data=data, dtype=dtype)
            target = "/outside/x"
        elif kind == "outside-node":
            name = _pick(rng, nodes)
            f.require_group("outside")
            f.copy(f[name], f["outside"], name="n")
            fill_canary(f["outside/n"], w.canary)
            target = "/outside/n"
        elif kind == "dangling":
            name, target = _pick(rng, datasets + nodes), "/nowhere/x"
        elif kind == "cycle":
            group = _pick(rng, ["node", *nodes])
            name = f"{group}/{_pick(rng, ('loop', 'nodes/loop'))}"
            if name.rsplit("/", 1)[0] not in f:
                name = f"{group}/loop"
            target = _pick(rng, ("/node", "/" + group, ".", ".."))
        elif kind == "chain":
            name = _pick(rng, datasets + nodes)
            del f[name]
            f[name] = h5py.SoftLink("/node/chain_b")
            f["node/chain_b"] = h5py.SoftLink("/" + name)
            return _file_plan(f"chain {name} <-> /node/chain_b", path, rng)
        else:
            name = _pick(rng, datasets)
            target = _pick(rng, ("../type", "../../metadata/dt", "../" + name.rsplit("/", 1)[-1]))
        if name in f or name in f.keys():
            del f[name]
        f[name] = h5py.SoftLink(target)
    return _file_plan(f"{kind}: {name} -> {target}", path, rng)


def plan_virtual(w: Work, rng: np.random.Generator) -> Plan:
    path, _ = _write_base(w, rng)
    c = w.canary
    kind = _pick(rng, ("sidecar", "canary", "missing", "self", "raw"))
    with h5py.File(path, "r+") as f:
        name = _pick(rng, _node_datasets(f))
        old = f[name]
        shape = old.shape if len(old.shape) >= 1 and old.size > 0 else (4,)
        dtype = old.dtype if old.dtype.kind in "fiu" else np.dtype(np.float32)
        n = int(np.prod(shape))
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        if kind == "canary" and n <= 64 and len(shape) == 1:
            layout[:] = h5py.VirtualSource(str(c.h5), "x", shape=(64,))[:n]
        else:
            if kind == "canary":
                kind = "sidecar"
            data = np.full(shape, CANARY_VALUE).astype(dtype)
            if kind == "sidecar":
                with _sidecar(w) as other:
                    other["x"] = data
                file, dset = _pick(rng, (str(w.case / "other.h5"), "other.h5")), "x"
            elif kind == "self":
                f["outside/x"] = data
                file, dset = ".", "outside/x"
            elif kind == "missing":
                file, dset = str(w.case / "missing.h5"), "x"
            else:
                file, dset = str(c.raw), "x"
            layout[...] = h5py.VirtualSource(file, dset, shape=shape, dtype=dtype)
        fill = _pick(rng, (0, 1, np.nan))
        del f[name]
        f.create_virtual_dataset(name, layout, fillvalue=fill)
    return _file_plan(f"{kind}: {name} {shape}", path, rng)


def plan_compressed(w: Work, rng: np.random.Generator) -> Plan:
    path, _ = _write_base(w, rng)
    with h5py.File(path, "r+") as f:
        name = _pick(rng, _node_datasets(f, numeric=True) or _node_datasets(f))
        del f[name]
        if rng.random() < 0.6:  # sparse: a huge declared shape, no or one written chunk
            total = 1 << int(rng.integers(20, 50))
            ndim = int(rng.integers(1, 4))
            shape = [1] * ndim
            left = total
            for d in range(ndim - 1):
                shape[d] = 1 << int(rng.integers(0, max(1, left.bit_length() - 1)))
                left //= shape[d]
            shape[-1] = max(1, left)
            dtype = _pick(rng, ("f4", "f8", "i8"))
            chunks = tuple(min(s, 64) for s in shape)
            ds = f.create_dataset(name, shape=tuple(shape), dtype=dtype, chunks=chunks,
                                  compression="gzip", shuffle=bool(rng.random() < 0.5),
                                  fillvalue=_pick(rng, (0, 1)),
                                  maxshape=(None,) * ndim if rng.random() < 0.3 else None)
            if rng.random() < 0.5:
                ds[(0,) * ndim] = 1
            what = f"sparse {name} {shape} {dtype}"
        else:  # chunk bomb: 64 MiB of zeros per chunk from 64 KiB of gzip, n chunks
            blob, _, size = w.deflated("zlib64", b"", 64 << 20, raw=False)
            per = size // 4
            n = int(rng.integers(1, 65))
            ds = f.create_dataset(name, shape=(per * n,), dtype="f4", chunks=(per,),
                                  compression="gzip")
            for j in range(n):
                ds.id.write_direct_chunk((j * per,), blob)
            what = f"chunk bomb {name} {n} x 64 MiB"
    return _file_plan(what, path, rng)


def _laughs(f: h5py.File, depth: int, breadth: int) -> None:
    """``node/nodes/bomb``: a NIRGraph whose every level hard-links ``breadth`` times to the
    next one, ``depth`` levels (breadth ** depth leaves)."""
    pool = f.create_group("pool")
    leaf = pool.create_group("leaf")
    leaf.create_dataset("type", data="Input", dtype=h5py.string_dtype())
    leaf["shape"] = np.array([1])
    below: h5py.Group = leaf
    for level in range(depth):
        g = pool.create_group(f"l{level}")
        g.create_dataset("type", data="NIRGraph", dtype=h5py.string_dtype())
        nodes = g.create_group("nodes")
        for j in range(breadth):
            nodes[f"c{j}"] = below
        g.create_dataset("edges", shape=(0, 2), dtype=h5py.string_dtype())
        below = g
    f["node/nodes/bomb"] = below


def plan_hard_link(w: Work, rng: np.random.Generator) -> Plan:
    path, _ = _write_base(w, rng)
    kind = _pick(rng, ("dataset", "node-repeat", "node-alias", "cycle-self", "cycle-ancestor",
                       "cycle-root", "laughs"))
    with h5py.File(path, "r+") as f:
        datasets, nodes = _node_datasets(f), _node_groups(f)
        if kind in ("dataset", "node-alias"):
            names = datasets if kind == "dataset" else nodes
            a = _pick(rng, names)
            # not an ancestor of a: deleting it would delete a too
            b = _pick(rng, [n for n in names if n != a and not a.startswith(n + "/")])
            del f[b]
            f[b] = f[a]
            what = f"{b} = {a}"
        elif kind == "node-repeat":
            a = _pick(rng, nodes)
            f[a + "_again"] = f[a]
            what = f"{a}_again = {a}"
        elif kind == "laughs":
            depth, breadth = int(rng.integers(8, 41)), int(rng.integers(2, 5))
            _laughs(f, depth, breadth)
            what = f"{breadth} ** {depth}"
        else:
            group = _pick(rng, ["node", *nodes])
            where = _pick(rng, ("loop", "nodes/loop")) if "nodes" in f[group] else "loop"
            ancestors = ["node"] + [p for p in nodes if group.startswith(p + "/")]
            target = {"cycle-self": group, "cycle-ancestor": _pick(rng, ancestors),
                      "cycle-root": "/"}[kind]
            f[f"{group}/{where}"] = f[target]
            what = f"{group}/{where} = {target}"
    return _file_plan(f"{kind}: {what}", path, rng)


def plan_nesting(w: Work, rng: np.random.Generator) -> Plan:
    """The graph wrapped in k nested NIRGraphs (k up to 400), each with its own Input and
    Output (or, for one case in ten, bare: no nodes but the inner graph, no edges)."""
    path, _ = _write_base(w, rng)
    k = int(rng.integers(1, 401))
    bare = rng.random() < 0.1
    with h5py.File(path, "r+") as f:
        shapes = {"Input": np.array([1]), "Output": np.array([1])}
        for child in f["node/nodes"].values():
            if isinstance(child, h5py.Group) and "type" in child and "shape" in child:
                kind = child["type"][()]
                kind = kind.decode() if isinstance(kind, bytes) else str(kind)
                if kind in shapes:
                    shapes[kind] = np.asarray(child["shape"][()])
        f.move("node", "inner")
        level = f.create_group("template")  # one level, copied k times (fast: in C)
        level.create_dataset("type", data="NIRGraph", dtype=h5py.string_dtype())
        if "metadata" in f["inner"]:
            f.copy(f["inner/metadata"], level, name="metadata")
        nodes = level.create_group("nodes")
        if bare:
            level.create_dataset("edges", shape=(0, 2), dtype=h5py.string_dtype())
        else:
            for name, kind in (("input", "Input"), ("output", "Output")):
                node = nodes.create_group(name)
                node.create_dataset("type", data=kind, dtype=h5py.string_dtype())
                node["shape"] = shapes[kind]
            level.create_dataset("edges", data=np.array([["input", "g"], ["g", "output"]],
                                                        dtype=object),
                                 dtype=h5py.string_dtype())
        f.copy(level, f, name="node")
        level, inner_path = f["node"], "node/nodes/g"
        for _ in range(k - 1):
            f.copy(f["template"], level["nodes"], name="g")
            level, inner_path = level["nodes/g"], inner_path + "/nodes/g"
        del f["template"]
        f.move("inner", inner_path)
    return _file_plan(f"{'bare ' if bare else ''}depth {k}", path, rng)


def plan_dtype(w: Work, rng: np.random.Generator) -> Plan:
    path, _ = _write_base(w, rng)
    kind = _pick(rng, ("compound", "enum", "opaque", "vlen-int", "objref", "regionref",
                       "huge-string", "many-strings", "nul-string", "non-utf8", "float16",
                       "complex", "bool", "uint64-max", "empty", "array-type"))
    with h5py.File(path, "r+") as f:
        name = _pick(rng, _node_datasets(f))
        shape = f[name].shape
        del f[name]
        if kind == "compound":
            dt = np.dtype([("a", "f4"), ("b", "i4")])
            f.create_dataset(name, data=np.zeros(shape or (), dtype=dt))
        elif kind == "enum":
            f.create_dataset(name, data=np.zeros(shape or (), dtype="i1"),
                             dtype=h5py.enum_dtype({"A": 0, "B": 1}, basetype="i1"))
        elif kind == "opaque":
            f.create_dataset(name, data=np.void(rng.bytes(int(rng.integers(1, 64)))))
        elif kind == "vlen-int":
            ds = f.create_dataset(name, (3,), dtype=h5py.vlen_dtype(np.int32))
            ds[0], ds[1], ds[2] = [1, 2], [3], list(range(int(rng.integers(0, 1000))))
        elif kind in ("objref", "regionref"):
            f["outside/x"] = np.full(8, _F32)
            ref = (f["outside/x"].ref if kind == "objref"
                   else f["outside/x"].regionref[0:4])
            f.create_dataset(name, data=ref, dtype=h5py.ref_dtype if kind == "objref"
                             else h5py.regionref_dtype)
        elif kind == "huge-string":
            text = "a" * (1 << int(rng.integers(20, 25)))
            f.create_dataset(name, data=text, dtype=h5py.string_dtype())
        elif kind == "many-strings":
            data = np.array(["x" * int(rng.integers(0, 50))] * int(rng.integers(1, 100_000)),
                            dtype=object)
            f.create_dataset(name, data=data, dtype=h5py.string_dtype())
        elif kind == "nul-string":
            f.create_dataset(name, data=np.array([b"LIF\x00\x00x", b"\x00"], dtype="S6"))
        elif kind == "non-utf8":
            f.create_dataset(name, data=np.bytes_(b"\xff\xfe\x80LIF"),
                             dtype=h5py.string_dtype("utf-8", 8))
        elif kind == "float16":
            f.create_dataset(name, data=np.ones(shape or (), np.float16))
        elif kind == "complex":
            f.create_dataset(name, data=np.ones(shape or (), np.complex64) * 1j)
        elif kind == "bool":
            f.create_dataset(name, data=np.ones(shape or (), bool))
        elif kind == "uint64-max":
            f.create_dataset(name, data=np.full(shape or (), np.iinfo(np.uint64).max))
        elif kind == "empty":
            f.create_dataset(name, data=h5py.Empty("f4"))
        else:
            f.create_dataset(name, shape=(2,), dtype=np.dtype(("f4", (2, 2))))
    return _file_plan(f"{kind}: {name}", path, rng)


# ---- npz inputs


def _zip(members: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A zip archive of (name, method, stored data, crc32, uncompressed size), written by hand
    so that data can be pre-compressed and sizes can lie."""
    out, central = bytearray(), bytearray()
    for name, method, data, crc, usize in members:
        raw = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc & 0xFFFFFFFF,
                           len(data), usize & 0xFFFFFFFF, len(raw), 0) + raw + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21,
                               crc & 0xFFFFFFFF, len(data), usize & 0xFFFFFFFF, len(raw), 0, 0,
                               0, 0, 0o100644 << 16, offset) + raw
    start = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                       start, 0)
    return bytes(out)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...], descr: str = "<f4", pad: int = 0) -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text = text + " " * pad
    text += " " * ((64 - (len(text) + 13) % 64) % 64) + "\n"
    if len(text) + 10 < 1 << 16 and not pad:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text.encode()


def _stored(name: str, data: bytes) -> tuple[str, int, bytes, int, int]:
    return name, 0, data, zlib.crc32(data), len(data)


def _savez(compressed: bool = False, **arrays: Any) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


NPZ_VARIANTS = ("valid", "valid-compressed", "npy", "big-endian", "fortran", "object",
                "header-bomb", "header-huge", "header-evil", "zip-bomb", "zip-lie", "truncated",
                "flipped", "garbage", "empty", "not-npy", "traversal", "many-members",
                "odd-dtype", "nan", "symlink-canary", "directory", "fifo")


def _npz_bytes(w: Work, rng: np.random.Generator, variant: str, shape: tuple[int, ...]) -> bytes:
    x = rng.random((3, 1, *shape)).astype(np.float32)
    if variant == "valid":
        return _savez(input=x)
    if variant == "valid-compressed":
        return _savez(True, input=x)
    if variant == "npy":
        return _npy(x)
    if variant == "big-endian":
        return _savez(input=x.astype(">f4"))
    if variant == "fortran":
        return _savez(input=np.asfortranarray(x))
    if variant == "object":
        return _zip([_stored("input.npy", _npy(np.array([1, "a", None], dtype=object)))])
    if variant == "header-bomb":
        huge = _pick(rng, ((10**12,), (2**31, 2**31), (3, 1, 2**40), (2**62,)))
        return _zip([_stored("input.npy", _npy_header(huge) + rng.bytes(16))])
    if variant == "header-huge":
        return _zip([_stored("input.npy", _npy_header((3, 1, *shape), pad=1 << 20))])
    if variant == "header-evil":
        text = _pick(rng, (b"__import__('os').system('true')", b"{'descr': 1e999}",
                           b"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
                           b"{'descr': '|O', 'fortran_order': False, 'shape': (1,)}",
                           b"[" * 5000))
        header = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text) + 1) + text + b"\n"
        return _zip([_stored("input.npy", header + bytes(64))])
    if variant == "zip-bomb":  # n members of 64 MiB of zeros, 64 KiB each
        header = _npy_header((16 << 20,))
        blob, crc, usize = w.deflated("npy64", header, 64 << 20, raw=True)
        n = int(rng.integers(1, 41))
        return _zip([("input.npy" if j == 0 else f"x{j}.npy", 8, blob, crc, usize)
                     for j in range(n)])
    if variant == "zip-lie":
        data = _npy(x)
        crc = zlib.crc32(data)
        usize = _pick(rng, (1, len(data) // 2, len(data) * 1000, 0xFFFFFFFF))
        return _zip([("input.npy", 0, data, crc ^ int(rng.integers(0, 2)), usize)])
    if variant == "truncated":
        data = _savez(bool(rng.random() < 0.5), input=x)
        return data[: int(rng.integers(0, len(data)))]
    if variant == "flipped":
        buf = bytearray(_savez(bool(rng.random() < 0.5), input=x))
        for _ in range(int(rng.integers(1, 16))):
            buf[int(rng.integers(len(buf)))] ^= int(rng.integers(1, 256))
        return bytes(buf)
    if variant == "garbage":
        return rng.bytes(int(rng.integers(1, 4096)))
    if variant == "empty":
        return _pick(rng, (b"", _zip([])))
    if variant == "not-npy":
        return _zip([_stored("input.npy", b"hello, not an array\n" * 10)])
    if variant == "traversal":
        name = _pick(rng, ("../../escape.npy", "/abs/input.npy", "input.npy/../input.npy"))
        return _zip([_stored(name, _npy(x))])
    if variant == "many-members":
        tiny = _npy(np.zeros(1, np.float32))
        return _zip([_stored("input.npy", _npy(x))] +
                    [_stored(f"m{j}.npy", tiny) for j in range(int(rng.integers(100, 5000)))])
    if variant == "odd-dtype":
        odd = _pick(rng, (np.zeros(3, dtype=[("a", "f4"), ("b", "i4")]), np.array(["abc"]),
                          np.array(["2020-01-01"], dtype="datetime64[D]"), x.astype(np.complex64),
                          x.astype(np.float16), np.array(1.0), np.zeros([1] * 32, np.float32),
                          np.full((3, 1, *shape), 2**62, np.int64), x > 0.5))
        return _savez(input=odd)
    return _savez(input=np.full_like(x, np.nan))


def plan_npz(w: Work, rng: np.random.Generator) -> Plan:
    k = int(rng.integers(len(w.blobs)))
    _, checked = w.graph(k)
    shape = tuple(checked.out_shapes[checked.flat.inputs[0]])
    variant = _pick(rng, NPZ_VARIANTS)
    path = w.case / "in.npz"
    if variant == "symlink-canary":
        path.symlink_to(w.canary.raw)
    elif variant == "directory":
        path.mkdir()
    elif variant == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(_npz_bytes(w, rng, variant, shape))
    read_npz = w.read_npz
    if read_npz is not None and rng.random() < 0.5:
        return Plan(f"read_npz {variant}", lambda: read_npz(path))
    model = w.case / "model.nir"
    model.write_bytes(w.blobs[k])
    argv = ["run", str(model), "--input", str(path), "--output", str(w.case / "out.npz")]
    return Plan(f"cli run --input {variant}", lambda: consume_cli(argv))


# ---- outputs


OUTPUT_VARIANTS = ("symlink", "symlink-dir", "directory", "dangling", "under-file", "plain",
                   "readonly", "full")


def plan_output(w: Work, rng: np.random.Generator, variant: str | None = None) -> Plan:
    """Write a valid graph (``nrf_nir.save``) or run outputs (``nrf-nir run --output``) onto a
    hostile path; victims hold the canary and must stay byte-identical."""
    k = int(rng.integers(len(w.blobs)))
    graph, checked = w.graph(k)
    case = w.case
    choices = [v for v in OUTPUT_VARIANTS if v not in ("readonly", "full") or
               {"readonly": "ro", "full": "full"}[v] in w.mounts]
    variant = variant or _pick(rng, choices)
    victim = case / "victim.secret"
    shutil.copyfile(w.canary.raw, victim)
    plan = Plan("", lambda: None, untouched={victim: _sha(victim)})
    target = case / "model.nir"
    if variant == "symlink":
        target.symlink_to(victim)
    elif variant == "symlink-dir":
        (case / "victims").mkdir()
        keep = case / "victims" / "keep.secret"
        shutil.copyfile(w.canary.raw, keep)
        plan.untouched[keep] = _sha(keep)
        target.symlink_to(case / "victims", target_is_directory=True)
    elif variant == "directory":
        target.mkdir()
        keep = target / "keep.secret"
        shutil.copyfile(w.canary.raw, keep)
        plan.untouched[keep] = _sha(keep)
    elif variant == "dangling":
        (case / "elsewhere").mkdir()
        target.symlink_to(case / "elsewhere" / "new.nir")
        plan.absent.append(case / "elsewhere" / "new.nir")
    elif variant == "under-file":
        target = victim / "model.nir"
    elif variant == "readonly":
        target = w.mounts["ro"] / "model.nir"
    elif variant == "full":
        point = w.mounts["full"]
        for entry in point.iterdir():
            entry.unlink()
        free = int(rng.integers(0, 48 << 10))
        with contextlib.suppress(OSError), open(point / "filler", "wb") as handle:
            handle.write(bytes(max(0, (64 << 10) - free)))
        target = point / "model.nir"
    if rng.random() < 0.7:
        plan.what = f"save {variant}"
        plan.call = lambda: nrf_nir.save(graph, target)
    else:
        np.savez(case / "in.npz", input=np.ones((3, 1, *checked.out_shapes[
            checked.flat.inputs[0]]), np.float32))
        model = case / "run.nir"
        model.write_bytes(w.blobs[k])
        argv = ["run", str(model), "--input", str(case / "in.npz"), "--output", str(target)]
        plan.what = f"cli run --output {variant}"
        plan.call = lambda: consume_cli(argv)
    return plan


BUILDERS: dict[str, Callable[[Work, np.random.Generator], Plan]] = {
    "bytes": plan_bytes, "hdf5": plan_hdf5, "input": plan_input,
    "external_storage": plan_external_storage, "external_link": plan_external_link,
    "soft_link": plan_soft_link, "virtual": plan_virtual, "compressed": plan_compressed,
    "hard_link": plan_hard_link, "nesting": plan_nesting, "dtype": plan_dtype, "npz": plan_npz,
    "output": plan_output,
}


# --------------------------------------------------------------------------------------------
# Running one case and judging it


class CaseTimeout(BaseException):
    """A case ran past ``--case-timeout`` (a BaseException: nothing may swallow it)."""


def _on_alarm(signum: int, frame: object) -> None:
    raise CaseTimeout


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _snapshot(dirs: list[Path]) -> dict[Path, tuple[int, int]]:
    state = {}
    for top in dirs:
        for base, subdirs, files in os.walk(top):
            for name in files + subdirs:
                p = Path(base) / name
                with contextlib.suppress(OSError):
                    st = p.lstat()
                    state[p] = (st.st_size, st.st_mtime_ns)
    return state


def _children() -> list[int]:
    me = str(os.getpid())
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()
                if fields[1] == me:
                    pids.append(int(entry))
    return pids


def _left_children(before: set[int]) -> str | None:
    """Children of this process that the case started (not in ``before``) and that are still
    running (killed) or were never waited for (reaped). Children that existed before the case
    (a test runner's helpers) are left alone."""
    new = [pid for pid in _children() if pid not in before]
    if not new:
        return None
    zombies, alive = [], []
    for pid in new:
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
            (zombies if state == "Z" else alive).append(pid)
    for child in alive:
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
    for child in zombies + alive:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)
    if alive:
        return "a child process was left running"
    return "a child process was never waited for" if zombies else None


def execute(w: Work, plan: Plan, timeout: float) -> tuple[str, str | None, str | None]:
    """Run ``plan``: (outcome, failure key, details). A case with several failures counts as
    the first of unhandled, leak, damage, bad_error."""
    dirs = [w.case, *w.mounts.values()]
    before = _snapshot(dirs)
    children_before = set(_children())
    texts: list[tuple[str, str]] = []
    result: object = None
    out, err = io.StringIO(), io.StringIO()
    outcome, details = "ran", None
    found: dict[str, tuple[str, str]] = {}  # failure outcome -> (key, details)
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            with _deadline(timeout):
                result = plan.call()
        except NIRError as exc:
            outcome, details = "refused", str(exc)
            texts += [("error message", details),
                      ("printed output", getattr(exc, "printed", ""))]
            if "\n" in details.strip() or len(details) > MAX_MESSAGE:
                found["bad_error"] = (
                    f"bad error: a message over {MAX_MESSAGE:,} characters"
                    if len(details) > MAX_MESSAGE else "bad error: a message of several lines",
                    f"{len(details):,} characters: {details[:2000]}")
            elif not getattr(exc, "names_file", True):
                found["bad_error"] = ("bad error: the CLI's error names no file", details)
        except CaseTimeout:
            found["unhandled"] = (f"timeout: no answer within {timeout:g} s",
                                  traceback.format_exc())
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - the point: catch what escapes
            found["unhandled"] = (f"{type(exc).__name__}: {str(exc)[:80]}",
                                  traceback.format_exc())
    texts += [("warning", str(m.message)) for m in caught]
    texts += [("printed output", out.getvalue() + err.getvalue())]
    where = w.canary.find(result)
    for label, text in texts:
        if where is None and w.canary.text_hit(text):
            where = f"{label}: {text[:300]!r}"
    problems = []
    children = _left_children(children_before)
    if children:
        problems.append(children)
    for path, digest in plan.untouched.items():
        if not path.is_file() or _sha(path) != digest:
            problems.append(f"{path.name} was changed")
    for canary_file, data in w.canary.files.items():
        if canary_file.read_bytes() != data:
            problems.append(f"{canary_file.name} was changed")
    problems += [f"{p.name} was written" for p in plan.absent if os.path.lexists(p)]
    after = _snapshot(dirs)
    partial = [p.name for p in after if p.name.endswith(".tmp") or
               p.name.startswith(".nrf-nir-")]
    if partial:
        problems.append(f"partial files left: {', '.join(sorted(partial)[:3])}")
    for path, state in after.items():
        if where is None and before.get(path) != state and path.is_file() and \
                not path.is_symlink() and w.canary.bytes_hit(path.read_bytes()):
            where = f"written file: {path} holds canary bytes"
    if where is not None:
        kind = "result" if where.startswith("result") else where.split(":")[0]
        found["leak"] = (f"leak: canary in the {kind}", where)
    if problems:
        found["damage"] = (f"damage: {problems[0]}", "; ".join(problems))
    for failure in ("unhandled", "leak", "damage", "bad_error"):
        if failure in found:
            key, text = found.pop(failure)
            also = "".join(f"\nalso {k}: {t[:500]}" for k, t in found.values())
            return failure, key, text + also
    return outcome, None, details


def run_case(w: Work, seed: int, i: int, families: tuple[str, ...],
             timeout: float) -> dict[str, Any]:
    """Build and run case ``i``: its record (index, family, what, outcome, key, details)."""
    start = time.perf_counter()
    rng = np.random.default_rng([seed, i])
    family = families[int(rng.integers(len(families)))]
    w.fresh_case()
    try:
        plan = BUILDERS[family](w, rng)
    except Exception as exc:  # noqa: BLE001 - a bug of this script, reported as such
        return {"i": i, "family": family, "what": "", "outcome": "fuzzer_error",
                "key": f"fuzzer_error: {type(exc).__name__}: {str(exc)[:80]}",
                "details": traceback.format_exc()}
    outcome, key, details = execute(w, plan, timeout)
    record: dict[str, Any] = {"i": i, "family": family, "what": plan.what[:160],
                              "outcome": outcome, "s": round(time.perf_counter() - start, 3)}
    if key:
        record["key"] = key
    record["details"] = details
    return record


def family_of(seed: int, i: int, families: tuple[str, ...]) -> str:
    return families[int(np.random.default_rng([seed, i]).integers(len(families)))]


# --------------------------------------------------------------------------------------------
# Corpus, workers, summary


def _copy_case(src: Path, dest: Path, budget: int = 64 << 20) -> None:
    """Regular files and symlinks of ``src`` (FIFOs and mounts skipped), up to ``budget``."""
    for base, dirs, files in os.walk(src):
        out = dest / Path(base).relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for name in files + [d for d in dirs if (Path(base) / d).is_symlink()]:
            p = Path(base) / name
            if p.is_symlink():
                (out / name).symlink_to(os.readlink(p))
            elif p.is_file() and p.stat().st_size <= budget:
                budget -= p.stat().st_size
                shutil.copyfile(p, out / name)


def save_failure(corpus: Path, work_case: Path, record: dict[str, Any], seed: int,
                 families: tuple[str, ...]) -> Path:
    dest = corpus / f"{record['family']}_{seed}_{record['i']}"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    _copy_case(work_case, dest / "case")
    replay = (f"python benchmarks/fuzz_nir.py --seed {seed} --replay {record['i']} "
              f"--families {','.join(families)}")
    (dest / "failure.txt").write_text(
        f"{record['key']}\nfamily {record['family']}, case {record['i']}: {record['what']}\n"
        f"replay: {replay}\n(the files refer to the canary files of the run's own folder)\n\n"
        f"{record.get('details') or ''}\n")
    return dest


def _set_memory_limit(mib: int) -> None:
    if mib > 0:
        limit = mib << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker(args: argparse.Namespace) -> int:
    """Fuzz cases ``start, start + stride, ...`` below ``count``, one JSON line each."""
    families = tuple(args.families)
    crash_at = int(os.environ.get(CRASH_AT_ENV, "-1"))
    w = Work(Path(args.root), mounts=not args.no_mounts)
    try:
        seen = set()
        if args.log.exists():
            for line in args.log.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    seen.add(json.loads(line).get("key"))
        with open(args.log, "a", buffering=1) as log:
            if args.start == args.first:
                for note in w.notes:
                    print(f"note: {note}", flush=True)
                    log.write(json.dumps({"note": note}) + "\n")
            log.write(json.dumps({"started": args.start}) + "\n")
            _set_memory_limit(args.memory_limit)
            done = 0
            for i in range(args.start, args.count, args.stride):
                if i == crash_at:
                    os.kill(os.getpid(), signal.SIGSEGV)
                record = run_case(w, args.seed, i, families, args.case_timeout)
                if record.get("key") and record["key"] not in seen:
                    seen.add(record["key"])
                    save_failure(args.corpus, w.case, record, args.seed, families)
                record.pop("details", None)
                log.write(json.dumps(record) + "\n")
                done += 1
                if done % 5000 == 0:
                    print(f"worker {args.first}: {done} cases", flush=True)
    finally:
        w.unmount()
    return 0


def _records(log: Path) -> list[dict[str, Any]]:
    out = []
    if log.exists():
        for line in log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def _spawn(args: argparse.Namespace, first: int, start: int, log: Path,
           root: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--first", str(first),
           "--start", str(start), "--stride", str(args.workers), "--count", str(args.count),
           "--seed", str(args.seed), "--corpus", str(args.corpus), "--log", str(log),
           "--root", str(root), "--case-timeout", str(args.case_timeout),
           "--memory-limit", str(args.memory_limit), "--families", ",".join(args.families)]
    if args.no_mounts:
        cmd.append("--no-mounts")
    return subprocess.Popen(cmd, start_new_session=True)


def run_all(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Run the workers (restarting one after the case that crashed or hung it), then merge
    their logs into the summary."""
    args.corpus = args.corpus.resolve()
    args.json = args.json.resolve()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    start_time = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="nrf-nir-fuzz-",
                                 dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    logs = [args.json.with_name(f"{args.json.stem}.part{w}.jsonl") for w in range(args.workers)]
    for log in logs:
        log.unlink(missing_ok=True)
    roots = [base / f"w{w}" for w in range(args.workers)]
    restarts = 0
    watchdog = 2 * args.case_timeout + 60
    procs: dict[int, subprocess.Popen[bytes]] = {}
    starts: dict[int, int] = {}
    progress: dict[int, tuple[int, float]] = {}

    def spawn(w: int, start: int) -> None:
        starts[w] = start
        progress[w] = (-1, time.monotonic())
        procs[w] = _spawn(args, w, start, logs[w], roots[w])

    try:
        for w in range(args.workers):
            spawn(w, w)
        while procs:
            time.sleep(0.5)
            for w, proc in list(procs.items()):
                code = proc.poll()
                size = logs[w].stat().st_size if logs[w].exists() else 0
                hung = False
                if code is None:
                    if size != progress[w][0]:
                        progress[w] = (size, time.monotonic())
                        continue
                    if time.monotonic() - progress[w][1] <= watchdog:
                        continue
                    _kill_group(proc)
                    code, hung = proc.returncode, True
                del procs[w]
                if code == 0:
                    continue
                records = _records(logs[w])
                if not any(r.get("started") == starts[w] for r in records):
                    raise SystemExit(f"worker {w} failed to start (exit status {code}); "
                                     "see its output above")
                done = [r["i"] for r in records if r.get("i", -1) >= starts[w]]
                crashed = max(done) + args.workers if done else starts[w]
                if crashed >= args.count:
                    continue
                how = f"signal {-code}" if code < 0 else f"exit status {code}"
                record = {"i": crashed,
                          "family": family_of(args.seed, crashed, tuple(args.families)),
                          "what": "", "outcome": "unhandled",
                          "key": f"worker {'hung' if hung else 'died'} ({how})"}
                with open(logs[w], "a") as log:
                    log.write(json.dumps(record) + "\n")
                before = [r for r in records if "i" in r and r["i"] < crashed]
                last = max(before, key=lambda r: r["i"]) if before else None
                details = "the worker process ended in this case" + (
                    f"; the case before it in this process (it may have left the libraries in a "
                    f"broken state) was {last['i']} ({last['family']}: {last['what']}): "
                    f"{last['outcome']} {last.get('key') or ''}" if last else "")
                save_failure(args.corpus, roots[w] / "case", {**record, "details": details},
                             args.seed, tuple(args.families))
                for name in ("ro", "full"):
                    unmount(roots[w] / name)
                restarts += 1
                if restarts > 20 * args.workers:
                    print("too many worker restarts; stopping", file=sys.stderr)
                    continue
                spawn(w, crashed + args.workers)
    finally:
        for proc in procs.values():
            _kill_group(proc)
        for root in roots:
            for name in ("ro", "full"):
                unmount(root / name)
        shutil.rmtree(base, ignore_errors=True)
    records = [r for log in logs for r in _records(log)]
    report = summarize(records, args, argv, time.perf_counter() - start_time, restarts)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    for log in logs:
        log.unlink(missing_ok=True)
    return report


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill a worker and whatever it started (its own session), and wait for it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def summarize(records: list[dict[str, Any]], args: argparse.Namespace, argv: list[str],
              seconds: float, restarts: int) -> dict[str, Any]:
    cases = [r for r in records if "i" in r]
    families: dict[str, dict[str, int]] = {f: dict.fromkeys(OUTCOMES, 0) for f in args.families}
    failures: dict[str, dict[str, Any]] = {}
    for r in cases:
        families[r["family"]][r["outcome"]] += 1
        if r.get("key"):
            entry = failures.setdefault(r["key"], {"count": 0, "families": {},
                                                   "first_case": r["i"], "what": r["what"]})
            entry["count"] += 1
            entry["families"][r["family"]] = entry["families"].get(r["family"], 0) + 1
    outcomes = {o: sum(f[o] for f in families.values()) for o in OUTCOMES}
    seconds_per_family = {f: round(sum(r.get("s", 0.0) for r in cases if r["family"] == f), 1)
                          for f in args.families}
    return {"command": " ".join(["python", "benchmarks/fuzz_nir.py", *argv]),
            "count": len(cases), "requested": args.count, "seed": args.seed,
            "workers": args.workers, "seconds": round(seconds, 1),
            "read_timeout_s": os.environ.get("NRF_NIR_READ_TIMEOUT", "120 (default)"),
            "case_timeout_s": args.case_timeout, "memory_limit_mib": args.memory_limit,
            "outcomes": outcomes, "families": families, "failures": failures,
            "seconds_per_family": seconds_per_family,
            "worker_restarts": restarts,
            "notes": sorted({r["note"] for r in records if "note" in r}),
            "corpus": str(args.corpus)}


def render(report: dict[str, Any]) -> str:
    cols = OUTCOMES
    lines = [f"{'family':17s}" + "".join(f"{c:>13s}" for c in cols) + f"{'seconds':>9s}"]
    for fam, counts in report["families"].items():
        lines.append(f"{fam:17s}" + "".join(f"{counts[c]:13d}" for c in cols)
                     + f"{report['seconds_per_family'][fam]:9.1f}")
    lines.append(f"{'total':17s}" + "".join(f"{report['outcomes'][c]:13d}" for c in cols))
    for key, entry in sorted(report["failures"].items(), key=lambda kv: -kv[1]["count"]):
        fams = ", ".join(f"{f} {n}" for f, n in entry["families"].items())
        lines.append(f"  {entry['count']:5d} x {key}  [{fams}; first case {entry['first_case']}:"
                     f" {entry['what'][:70]}]")
    lines += [f"note: {n}" for n in report["notes"]]
    lines.append(f"{report['count']} cases in {report['seconds']} s, "
                 f"{report['worker_restarts']} worker restarts; failures saved to "
                 f"{report['corpus']}")
    return "\n".join(lines)


def replay(args: argparse.Namespace) -> int:
    """Rebuild and run one case in this process; keep its files under ``--root``."""
    root = Path(args.root or tempfile.mkdtemp(prefix="nrf-nir-replay-"))
    w = Work(root, mounts=not args.no_mounts)
    try:
        record = run_case(w, args.seed, args.replay, tuple(args.families), args.case_timeout)
    finally:
        w.unmount()
    print(json.dumps({k: v for k, v in record.items() if k != "details"}, indent=1))
    if record.get("details"):
        print(record["details"])
    print(f"case files: {w.case}")
    return 0 if record["outcome"] not in FAILURES else 1


def _families(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown families {unknown}; known: "
                                         f"{', '.join(FAMILIES)}")
    return names


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--corpus", type=Path, default=Path("benchmarks/results/fuzz_crashes"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/fuzz.json"))
    parser.add_argument("--families", type=_families, default=list(FAMILIES),
                        help=f"comma-separated subset of {', '.join(FAMILIES)}")
    parser.add_argument("--case-timeout", type=float, default=60.0,
                        help="seconds a case may take before it counts as a hang")
    parser.add_argument("--memory-limit", type=int, default=2048,
                        help="address-space limit of a worker in MiB (0: none)")
    parser.add_argument("--no-mounts", action="store_true",
                        help="no read-only / full tmpfs mounts for the output family")
    parser.add_argument("--replay", type=int, default=None, metavar="I",
                        help="rebuild and run case I in this process, print its outcome")
    parser.add_argument("--root", type=str, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--stride", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--log", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    if args.worker:
        return worker(args)
    if args.replay is not None:
        return replay(args)
    if args.workers < 1 or args.count < 0:
        parser.error("--workers must be >= 1 and --count >= 0")
    report = run_all(args, argv)
    print(render(report))
    return 0 if not any(report["outcomes"][o] for o in FAILURES) else 1


if __name__ == "__main__":
    sys.exit(main())
