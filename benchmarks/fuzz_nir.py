"""Fuzz the loader, validator and reference with mutated .nir files and input arrays.

    python benchmarks/fuzz_nir.py --count 100000 [--seed 0] [--corpus tests/fuzz_corpus]

Each input is a valid base graph (MLP, recurrent, conv, every node type) mutated at the byte
level (flips, truncation, garbage), at the HDF5 level (a dataset replaced by NaN/inf/negative/
empty/huge/text/wrong-shaped data, deleted, renamed types, extra edges), or a valid graph run on
a random input array (wrong shapes, dtypes, NaN). Every outcome must be a result or a
``NIRError``; anything else is an unhandled exception: its file and traceback go to the corpus
folder, to become a regression test. Prints counts and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import h5py
import nir
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nrf_nir  # noqa: E402
from nrf_nir.conformance.cases import node_cases  # noqa: E402
from nrf_nir.errors import NIRError  # noqa: E402


def base_files(tmp: Path) -> list[bytes]:
    graphs = [c.graph for c in node_cases(T=4, B=1)]
    blobs = []
    for i, graph in enumerate(graphs):
        path = tmp / f"base{i}.nir"
        nrf_nir.save(graph, path)
        blobs.append(path.read_bytes())
    return blobs


VALUES = [
    lambda r: np.float64(np.nan), lambda r: np.float64(np.inf), lambda r: np.float64(-1.0),
    lambda r: np.float64(0.0), lambda r: np.array([]), lambda r: np.zeros((0, 3)),
    lambda r: "text", lambda r: np.array([1e308, -1e308]), lambda r: r.normal(size=(2, 3, 4)),
    lambda r: np.int64(r.integers(-5, 5)), lambda r: np.ones(r.integers(1, 9)),
    lambda r: np.array([b"a", b"b"]), lambda r: np.array(True),
    lambda r: np.full(3, 2**40, dtype=np.int64), lambda r: np.array([[1, 2]], dtype=np.int8),
]


def _datasets(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _groups(f: h5py.File) -> list[str]:
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


_LOADED: dict[int, nir.NIRGraph] = {}


def one(blob: bytes, path: Path, rng: np.random.Generator) -> str:
    mode = rng.integers(0, 3)
    if mode == 2:  # a valid file (loaded once) on a random input array
        what = "input"
        if id(blob) not in _LOADED:
            path.write_bytes(blob)
            _LOADED[id(blob)] = nrf_nir.load(path)
        graph = _LOADED[id(blob)]
    else:
        if mode == 0:
            data, what = mutate_bytes(blob, rng)
            path.write_bytes(data)
        else:
            path.write_bytes(blob)
            what = mutate_hdf5(path, rng)
        graph = nrf_nir.load(path)
    checked = nrf_nir.validate(graph)
    if mode == 2:
        shape = checked.out_shapes[checked.flat.inputs[0]]
        x = random_input(shape, rng)
        if len(checked.flat.inputs) > 1 and isinstance(x, np.ndarray):
            x = {n: x for n in checked.flat.inputs}
    else:
        x = {n: np.ones((3, 1, *checked.out_shapes[n]), np.float32) for n in checked.flat.inputs}
    nrf_nir.run(graph, x, dt=1e-3, device="cpu")
    return what


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=Path("benchmarks/results/fuzz_crashes"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/fuzz.json"))
    parser.add_argument("--workers", type=int, default=1,
                        help="processes, each fuzzing count/workers inputs from seed + i")
    args = parser.parse_args(argv)
    if args.workers > 1:
        return _parallel(args, argv)
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    random.seed(args.seed)
    counts = {"ok": 0, "nir_error": 0, "unhandled": 0}
    crashes: dict[str, int] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        tmp = Path(d)
        blobs = base_files(tmp)
        path = tmp / "fuzz.nir"
        for i in range(args.count):
            blob = blobs[rng.integers(len(blobs))]
            try:
                one(blob, path, rng)
                counts["ok"] += 1
            except NIRError:
                counts["nir_error"] += 1
            except Exception as exc:  # noqa: BLE001 - the point: catch what escapes
                counts["unhandled"] += 1
                key = f"{type(exc).__name__}: {str(exc)[:80]}"
                crashes[key] = crashes.get(key, 0) + 1
                if crashes[key] == 1:
                    args.corpus.mkdir(parents=True, exist_ok=True)
                    stem = args.corpus / f"crash_{len(crashes):03d}"
                    stem.with_suffix(".nir").write_bytes(path.read_bytes())
                    stem.with_suffix(".txt").write_text(traceback.format_exc())
            if (i + 1) % 5000 == 0:
                print(f"{i + 1} inputs, {counts}", flush=True)
    seconds = time.perf_counter() - start
    report = {"command": " ".join(["python", "benchmarks/fuzz_nir.py", *(argv or sys.argv[1:])]),
              "count": args.count, "seed": args.seed, "seconds": seconds, **counts,
              "crash_kinds": crashes}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0 if counts["unhandled"] == 0 else 1


def _parallel(args: argparse.Namespace, argv: list[str] | None) -> int:
    import subprocess

    procs, parts = [], []
    for i in range(args.workers):
        part = args.json.with_name(f"{args.json.stem}.part{i}.json")
        parts.append(part)
        procs.append(subprocess.Popen([
            sys.executable, __file__, "--count", str(args.count // args.workers), "--seed",
            str(args.seed + i), "--corpus", str(args.corpus), "--json", str(part)]))
    codes = [p.wait() for p in procs]
    reports = [json.loads(p.read_text()) for p in parts]
    total = {"command": " ".join(["python", "benchmarks/fuzz_nir.py", *(argv or sys.argv[1:])]),
             "count": sum(r["count"] for r in reports),
             "seeds": [r["seed"] for r in reports],
             "seconds": max(r["seconds"] for r in reports),
             **{k: sum(r[k] for r in reports) for k in ("ok", "nir_error", "unhandled")},
             "crash_kinds": {k: v for r in reports for k, v in r["crash_kinds"].items()}}
    for part in parts:
        part.unlink()
    args.json.write_text(json.dumps(total, indent=1))
    print(json.dumps(total, indent=1))
    return 0 if total["unhandled"] == 0 and not any(codes) else 1


if __name__ == "__main__":
    sys.exit(main())
