"""Reading and writing NIR's HDF5 format (nir 1.0.8 layout), atomically.

The layout is NIR's own (a ``version`` string and a ``node`` group, one sub-group per node), so
``nir.read`` reads our files. Unlike ``nir.write`` we store 0-d parameters uncompressed, and
unlike ``nir.read`` every problem becomes a :class:`NIRError` naming the file, node and field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import os
import pickle
import select
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

from .errors import NIRError, ValidationError

PathLike = str | os.PathLike[str]

#: Arrays smaller than this are stored uncompressed (gzip gains nothing and fails on 0-d data).
_COMPRESS_MIN_SIZE = 64


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    An exception (or an interrupt) leaves no partial file behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(path: PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)


# --------------------------------------------------------------------------------------------
# Writing


def _write_value(group: h5py.Group, key: str, value: Any, where: str) -> None:
    if isinstance(value, str):
        group.create_dataset(key, data=value, dtype=h5py.string_dtype())
        return
    if isinstance(value, bytes):
        group.create_dataset(key, data=value.decode("utf8"), dtype=h5py.string_dtype())
        return
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "US":
            group.create_dataset(key, data=value.astype(object), dtype=h5py.string_dtype())
        elif value.dtype == object and all(isinstance(v, str) for v in value.reshape(-1)):
            group.create_dataset(key, data=value, dtype=h5py.string_dtype())
        elif value.dtype == object:
            raise NIRError(f"cannot store an object array ({value!r:.60})", node=where, field=key)
        elif value.ndim >= 1 and value.size >= _COMPRESS_MIN_SIZE:
            # fletcher32: a corrupted array fails to read instead of loading wrong numbers
            group.create_dataset(key, data=value, compression="gzip", fletcher32=True)
        elif value.ndim >= 1 and value.size > 0:
            group.create_dataset(key, data=value, fletcher32=True)
        else:
            group.create_dataset(key, data=value)
        return
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        group.create_dataset(key, data=value)
        return
    raise NIRError(f"cannot store a value of type {type(value).__name__}", node=where, field=key)


def _write_dict(group: h5py.Group, data: dict[str, Any], where: str) -> None:
    for key, value in data.items():
        key = str(key)
        if key == "metadata":
            if value:
                meta = group.create_group("metadata")
                for mk, mv in value.items():
                    if isinstance(mv, dict):
                        raise NIRError("metadata values must be numbers, strings or arrays "
                                       "(NIR cannot read nested metadata)", node=where,
                                       field=f"metadata.{mk}")
                    _write_value(meta, str(mk), mv, where)
        elif isinstance(value, dict):
            _write_dict(group.create_group(key), value, f"{where}.{key}" if where else key)
        elif value is None:
            continue
        else:
            _write_value(group, key, value, where)


def _node_dict(node: nir.NIRNode, name: str, shapes: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of ``node``; ``shapes`` (dotted name -> inferred shape) fills in the
    shape of Input/Output/Identity nodes that were built without one."""
    from .validate import Identity

    if isinstance(node, nir.NIRGraph):
        prefix = f"{name}." if name else ""
        return {
            "type": "NIRGraph",
            "nodes": {k: _node_dict(child, prefix + k, shapes)
                      for k, child in node.nodes.items()},
            "edges": np.array([[str(a), str(b)] for a, b in node.edges], dtype=object)
            if node.edges else np.zeros((0, 2), dtype=object),
            "metadata": dict(node.metadata or {}),
        }
    if isinstance(node, Identity):  # nir's Identity.to_dict is broken in 1.0.8
        shape = _type_value(node.input_type)
        data: dict[str, Any] = {"type": "Identity", "metadata": dict(node.metadata or {}),
                                "shape": shapes.get(name, shape)}
        return data
    data = node.to_dict()
    if isinstance(node, (nir.Input, nir.Output)) and data.get("shape") is None and name in shapes:
        data["shape"] = np.asarray(shapes[name])
    return data


def _type_value(types: Any) -> Any:
    if isinstance(types, dict) and types:
        return next(iter(types.values()))
    return None


def save(graph: nir.NIRGraph, path: PathLike, *, validate: bool = True) -> None:
    """Write ``graph`` to ``path`` in NIR's HDF5 format, atomically.

    With ``validate`` (default) an invalid graph raises before anything is written.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise NIRError(f"save expects a nir.NIRGraph, got {type(graph).__name__}", file=str(path))
    shapes: dict[str, Any] = {}
    if validate:
        from .validate import validate as _validate

        try:
            checked = _validate(graph)
        except NIRError as exc:
            raise exc.with_file(str(path)) from None
        shapes = {n: list(s) for n, s in checked.out_shapes.items()}
    data = _node_dict(graph, "", shapes)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("version", data=str(nir.version), dtype=h5py.string_dtype())
            _write_dict(f.create_group("node"), data, "")

    try:
        write_atomic(path, write)
    except NIRError as exc:
        raise exc.with_file(str(path)) from None
    except OSError as exc:
        raise NIRError(f"cannot write: {exc.strerror or exc}", file=str(path)) from None


# --------------------------------------------------------------------------------------------
# Reading


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype == object:
        return np.array([_decode(v) for v in value.reshape(-1)], dtype=object).reshape(
            value.shape)
    return value


def _read_group(group: h5py.Group, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in group.keys():
        try:
            item = group[key]
        except (KeyError, OSError, RuntimeError) as exc:
            raise NIRError(f"unreadable entry ({exc})", node=where or None, field=key) from None
        if isinstance(item, h5py.Group):
            out[key] = _read_group(item, f"{where}.{key}" if where else key)
        elif isinstance(item, h5py.Dataset):
            try:
                out[key] = _decode(item[()])
            except (OSError, RuntimeError, ValueError, TypeError) as exc:
                raise NIRError(f"unreadable data ({exc})", node=where or None,
                               field=key) from None
        else:
            raise NIRError("unexpected HDF5 object", node=where or None, field=key)
    return out


def _as_str(value: Any, where: str, field: str) -> str:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf8", errors="replace")
    if not isinstance(value, str):
        raise ValidationError(f"must be a string, got {type(value).__name__}", node=where,
                              field=field)
    return value


def _metadata(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("must be a group of values", node=where or None, field="metadata")
    meta: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, np.ndarray) and item.ndim == 0:
            item = item.item()
        if isinstance(item, np.generic):
            item = item.item()
        meta[key] = _decode(item)
    return meta


_SHAPE_KEYS = {"Input": "input_type", "Output": "output_type", "Identity": "input_type"}


def build_node(data: dict[str, Any], where: str) -> nir.NIRNode:
    """Construct a NIR node from its stored fields; errors name the node and field."""
    if not isinstance(data, dict):
        raise ValidationError("is not a group", node=where)
    if "type" not in data:
        raise ValidationError("has no 'type'", node=where, field="type")
    kind = _as_str(data["type"], where, "type")
    fields = {k: v for k, v in data.items() if k not in ("type", "metadata")}
    metadata = _metadata(data.get("metadata"), where)
    if kind == "NIRGraph":
        nodes_data = fields.get("nodes")
        if not isinstance(nodes_data, dict):
            raise ValidationError("has no 'nodes' group", node=where or None, field="nodes")
        nodes = {name: build_node(child, f"{where}.{name}" if where else name)
                 for name, child in nodes_data.items()}
        raw_edges = fields.get("edges", np.zeros((0, 2), dtype=object))
        edges_arr = np.asarray(raw_edges, dtype=object)
        if edges_arr.size == 0:
            edges: list[tuple[str, str]] = []
        elif edges_arr.ndim != 2 or edges_arr.shape[1] != 2:
            raise ValidationError(f"must be an [n, 2] array of names, got shape "
                                  f"{edges_arr.shape}", node=where or None, field="edges")
        else:
            edges = [(_as_str(a, where, "edges"), _as_str(b, where, "edges"))
                     for a, b in edges_arr]
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)
    from .validate import NODE_CLASSES

    cls = NODE_CLASSES.get(kind)
    if cls is None:
        raise ValidationError(f"unknown node type {kind!r}", node=where, field="type")
    if kind in _SHAPE_KEYS:
        shape = fields.pop("shape", None)
        fields[_SHAPE_KEYS[kind]] = {("output" if kind == "Output" else "input"): shape}
    if kind == "Flatten":
        fields["input_type"] = {"input": fields.get("input_type")}
    if kind in ("Conv1d", "Conv2d"):
        fields.setdefault("input_shape", None)  # optional in NIR (inferred from the graph)
    allowed = {f.name for f in dataclasses.fields(cls) if f.init} - {"metadata"}
    unknown = sorted(map(str, set(fields) - allowed))
    if unknown:
        raise ValidationError(f"unexpected field(s) for {kind}: {', '.join(unknown)}",
                              node=where, field=unknown[0])
    for key, value in list(fields.items()):
        if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
            fields[key] = value.item()
            value = fields[key]
        if isinstance(value, str) and key != "padding":
            raise ValidationError(f"must be numeric, got text {value[:40]!r}", node=where,
                                  field=key)
    try:
        return cls(**fields, metadata=metadata)
    except TypeError as exc:
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.init and f.name not in fields and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING and f.name != "metadata"]
        field = missing[0] if missing else None
        msg = f"missing field(s) {', '.join(missing)}" if missing else str(exc)
        raise ValidationError(f"{kind}: {msg}", node=where, field=field) from None
    except (AssertionError, ValueError, IndexError, AttributeError, ArithmeticError) as exc:
        text = str(exc) or "inconsistent shapes"
        named = [f.name for f in dataclasses.fields(cls) if f.init and f.name in text.lower()]
        raise ValidationError(f"{kind} rejects its parameters: {text}", node=where,
                              field=named[0] if named else None) from None


def _read_hdf5(name: str) -> dict[str, Any]:
    """The ``node`` group of a NIR file as nested dicts of arrays and strings."""
    try:
        handle = h5py.File(name, "r")
    except OSError:
        raise NIRError("not a readable HDF5 file (truncated, corrupted or another format)",
                       file=name) from None
    try:
        with handle:
            if "node" not in handle or not isinstance(handle["node"], h5py.Group):
                raise NIRError("not a NIR file: no 'node' group", file=name)
            return _read_group(handle["node"], "")
    except NIRError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise NIRError(f"unreadable ({type(exc).__name__}: {exc})", file=name) from None


#: Read files in a forked child process: the HDF5 C library can crash (segfault) or spin
#: forever on a corrupted file; a crash or a hang there must become an error here.
ISOLATED_READ = os.environ.get("NRF_NIR_ISOLATED_READ", "1") != "0"
#: Seconds a read may take before the file is declared corrupted (the fuzzer found files that
#: make libhdf5 loop forever).
READ_TIMEOUT_S = float(os.environ.get("NRF_NIR_READ_TIMEOUT", "120"))


def _read_file(name: str) -> dict[str, Any]:
    """``_read_hdf5`` in a forked child; its result comes back pickled through a pipe."""
    if not ISOLATED_READ or not hasattr(os, "fork"):
        return _read_hdf5(name)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: read, send, and leave without running any cleanup of the parent's
        try:
            os.close(read_end)
            faulthandler.disable()  # a crash here is reported by the parent, quietly
            try:
                payload: tuple[str, Any] = ("ok", _read_hdf5(name))
            except NIRError as exc:
                payload = ("error", (exc.message, exc.node, exc.field))
            except BaseException as exc:  # noqa: BLE001 - everything reaches the parent
                payload = ("error", (f"unreadable ({type(exc).__name__}: {exc})", None, None))
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
        finally:
            os._exit(0)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    with os.fdopen(read_end, "rb", buffering=0) as inp:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([inp], [], [], max(left, 0.0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise NIRError(f"corrupted: reading it did not finish within {READ_TIMEOUT_S:g} s "
                               "(NRF_NIR_READ_TIMEOUT)", file=name)
            chunk = inp.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    _, status = os.waitpid(pid, 0)
    if not data:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else \
            f"exit status {os.WEXITSTATUS(status)}"
        raise NIRError(f"corrupted: reading it crashed the HDF5 library ({how})", file=name)
    kind, result = pickle.loads(data)  # our own child's output
    if kind == "error":
        message, node, field = result
        raise NIRError(message, node=node, field=field, file=name)
    value: dict[str, Any] = result
    return value


def load(path: PathLike, *, validate: bool = True, dialect: str = "auto") -> nir.NIRGraph:
    """Read a ``.nir`` file (NIR HDF5) and, by default, validate it.

    dialect: "auto" recognises files written by other producers (snnTorch, Rockpool, Norse)
    and normalises their conventions, with a warning (see ``nrf_nir.dialects``); "none" keeps
    the file as written; or name a dialect.
    Raises :class:`NIRError` naming the file (and node and field) on any problem.
    """
    name = str(path)
    if not os.path.exists(name):
        raise NIRError("no such file", file=name)
    if os.path.isdir(name):
        raise NIRError("is a directory, not a .nir file", file=name)
    try:
        data = _read_file(name)
        data.setdefault("type", "NIRGraph")
        graph = build_node(data, "")
        if not isinstance(graph, nir.NIRGraph):
            raise NIRError(f"the root node is a {type(graph).__name__}, not a NIRGraph",
                           file=name)
        from .dialects import normalize

        graph = normalize(graph, dialect).graph
        if validate:
            from .validate import validate as _validate

            _validate(graph)
    except NIRError as exc:
        raise exc.with_file(name) from None
    except (OSError, RuntimeError, KeyError) as exc:
        raise NIRError(f"unreadable ({type(exc).__name__}: {exc})", file=name) from None
    return graph
