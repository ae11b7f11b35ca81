"""Reading and writing NIR's HDF5 format (nir 1.0.8 layout), atomically.

The layout is NIR's own (a ``version`` string and a ``node`` group, one sub-group per node), so
``nir.read`` reads our files. Unlike ``nir.write`` we store 0-d parameters uncompressed, and
unlike ``nir.read`` every problem becomes a :class:`NIRError` naming the file, node and field.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import TYPE_CHECKING, Any

import h5py
import nir
import numpy as np

from .atomic import write_bytes
from .errors import NIRError, ValidationError
from .hdf5 import MAX_GRAPH_DEPTH, MAX_NODES, read_limits
from .hdf5 import decode as _decode
from .hdf5 import read_file as _read_file

if TYPE_CHECKING:  # pragma: no cover
    from .dialects import Normalized
    from .validate import Checked

PathLike = str | os.PathLike[str]

#: Arrays smaller than this are stored uncompressed (gzip gains nothing and fails on 0-d data).
_COMPRESS_MIN_SIZE = 64


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


def _check_names(graph: nir.NIRGraph, file: str) -> None:
    """Refuse what ``load`` would reject before anything is written: node names and metadata
    keys ``check_node_name`` refuses, NIRGraphs nested deeper than ``MAX_GRAPH_DEPTH``, more
    than ``MAX_NODES`` nodes."""
    from .validate import check_node_name

    def keys(metadata: Any, node: str) -> None:
        for key in metadata if isinstance(metadata, dict) else ():
            reason = check_node_name(key if isinstance(key, str) else str(key))
            if reason:
                raise NIRError(f"invalid metadata key: {reason}", node=node or None,
                               field=f"metadata.{key}", file=file)

    count = 0
    stack: list[tuple[nir.NIRGraph, str, int]] = [(graph, "", 0)]
    while stack:
        current, prefix, level = stack.pop()
        if level > MAX_GRAPH_DEPTH:
            raise NIRError(f"NIRGraphs are nested more than {MAX_GRAPH_DEPTH} deep (the limit)",
                           node=prefix, field="nodes", file=file)
        keys(current.metadata, prefix)
        nodes = current.nodes if isinstance(current.nodes, dict) else {}
        count += len(nodes)
        if count > MAX_NODES:
            raise NIRError(f"has more than {MAX_NODES:,} nodes (the limit)", field="nodes",
                           file=file)
        for key, node in nodes.items():
            name = key if isinstance(key, str) else str(key)
            full = f"{prefix}.{name}" if prefix else name
            reason = check_node_name(name)
            if reason:
                raise NIRError(f"invalid node name: {reason}", node=full, field="nodes",
                               file=file)
            keys(getattr(node, "metadata", None), full)
            if isinstance(node, nir.NIRGraph):
                stack.append((node, full, level + 1))


def save(graph: nir.NIRGraph, path: PathLike, *, validate: bool = True) -> None:
    """Write ``graph`` to ``path`` in NIR's HDF5 format, atomically.

    Names that ``load`` would reject are refused first (``_check_names``), and with
    ``validate`` (default) an invalid graph raises, before anything is written.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise NIRError(f"save expects a nir.NIRGraph, got {type(graph).__name__}", file=str(path))
    _check_names(graph, str(path))
    shapes: dict[str, Any] = {}
    if validate:
        from .validate import validate as _validate

        try:
            checked = _validate(graph)
        except NIRError as exc:
            raise exc.with_file(str(path)) from None
        shapes = {n: list(s) for n, s in checked.out_shapes.items()}
    data = _node_dict(graph, "", shapes)

    # The file is built in memory and written as bytes: libhdf5 never writes to disk itself,
    # so a full disk or a read-only file system is an OSError of the one write function
    # (libhdf5's own write errors are RuntimeErrors, and a full disk could crash it).
    try:
        with h5py.File(f"nrf-nir-save-{id(data)}", "w", driver="core",
                       backing_store=False) as f:
            f.create_dataset("version", data=str(nir.version), dtype=h5py.string_dtype())
            _write_dict(f.create_group("node"), data, "")
            f.flush()
            image = f.id.get_file_image()
    except NIRError as exc:
        raise exc.with_file(str(path)) from None
    write_bytes(path, image)


# --------------------------------------------------------------------------------------------
# Reading

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


def load(path: PathLike, *, validate: bool = True, dialect: str = "auto",
         dt: float | None = None) -> nir.NIRGraph:
    """Read a ``.nir`` file (NIR HDF5) and, by default, validate it.

    dialect: "auto" applies a producer's conventions (snnTorch, Rockpool, Norse) only when the
    file carries that producer's fingerprint, with a warning; a file with neither nrf-nir
    metadata nor a fingerprint reads as plain NIR, with one warning saying what was assumed
    (``nrf_nir.dialects``, docs/dialects.md); "none" keeps the file as written; or
    ``NAME[:key=value,...]`` (e.g. ``"snntorch:reset=zero,delay=off"``).
    dt: seconds; written into the graph's metadata ``dt`` (after the dialect).
    The semantics keys (the graph's and a node's own) are checked even with
    ``validate=False``. Raises :class:`NIRError` naming the file (and node and field) on any
    problem.
    """
    return load_normalized(path, validate=validate, dialect=dialect, dt=dt).graph


def load_normalized(path: PathLike, *, validate: bool = True, dialect: str = "auto",
                    dt: float | None = None) -> Normalized:
    """As :func:`load`, with what the dialect did: the dialect applied, its notes and every
    change it made (``nrf_nir.dialects.Normalized``)."""
    name = str(path)
    try:
        mode = os.stat(name).st_mode
    except FileNotFoundError:
        raise NIRError("no such file", file=name) from None
    except OSError as exc:
        raise NIRError(f"cannot read: {exc.strerror or exc}", file=name) from None
    if stat.S_ISDIR(mode):
        raise NIRError("is a directory, not a .nir file", file=name)
    if not stat.S_ISREG(mode):
        raise NIRError("is not a regular file (a pipe, socket or device); a .nir file is an "
                       "HDF5 file on disk", file=name)
    read_limits()  # the NRF_NIR_* options are checked before the file is opened
    try:
        from .dialects import parse

        parse(dialect)  # a bad --dialect is refused before the file is read
        data = _read_file(name)
        data.setdefault("type", "NIRGraph")
        graph = build_node(data, "")
        if not isinstance(graph, nir.NIRGraph):
            raise NIRError(f"the root node is a {type(graph).__name__}, not a NIRGraph",
                           file=name)
        from .dialects import normalize

        result = normalize(graph, dialect, dt=dt)
        from .semantics import read_node_semantics, read_semantics

        # the semantics keys, the graph's and the nodes' own, are refused here when invalid
        read_node_semantics(result.graph, read_semantics(result.graph))
        if validate:
            from .validate import validate as _validate

            _validate(result.graph)
    except NIRError as exc:
        raise exc.with_file(name) from None
    except MemoryError:
        raise NIRError("reading it needed more memory than there is", file=name) from None
    except (OSError, RuntimeError, KeyError) as exc:
        raise NIRError(f"unreadable ({type(exc).__name__}: {exc})", file=name) from None
    return result


def as_graph(graph: nir.NIRGraph | PathLike, *, dialect: str = "auto",
             dt: float | None = None) -> nir.NIRGraph:
    """``graph`` itself, or the graph in the ``.nir`` file it names (read without validation).
    dialect, dt: as for :func:`load`; applied to a graph object only when named (a dialect
    other than "auto", or a dt)."""
    if isinstance(graph, nir.NIRGraph):
        if dialect == "auto" and dt is None:
            return graph
        from .dialects import normalize

        return normalize(graph, dialect, dt=dt).graph
    if isinstance(graph, (str, os.PathLike)):
        return load(graph, validate=False, dialect=dialect, dt=dt)
    raise NIRError(f"expected a nir.NIRGraph or a path to a .nir file, got "
                   f"{type(graph).__name__}")


def validate_graph(graph: nir.NIRGraph | PathLike, *, dialect: str = "auto",
                   dt: float | None = None, lint: bool = False) -> Checked:
    """Validate a graph (or file) and return it flattened with inferred shapes
    (``nrf_nir.validate``; imports no torch). dialect, dt: as for :func:`load`.
    lint: also warn (:class:`~nrf_nir.validate.DtLintWarning`) where the effect of an input
    spike scales with dt (``nrf_nir.validate.dt_lint``)."""
    from .validate import lint_dt
    from .validate import validate as _validate

    g = as_graph(graph, dialect=dialect, dt=dt)
    try:
        checked = _validate(g)
    except NIRError as exc:
        if not isinstance(graph, nir.NIRGraph):
            exc.with_file(str(graph))
        raise
    if lint:
        lint_dt(checked)
    return checked
