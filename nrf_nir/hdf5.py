"""Reading an HDF5 file closed and bounded, in a forked child process.

A ``.nir`` file comes from anywhere, and HDF5 can point outside itself. Only groups and
datasets stored in the file are visited: links are inspected without being followed (external,
soft and user-defined links are refused, and so is any object reached twice), datasets with
external storage or virtual sources are refused, attributes are never read, and every declared
shape, chunk and type is checked against limits before any data is read. The read runs in a
forked child that dies with its parent, has a memory cap of its own and a timeout, so a crash,
a hang or a bomb in libhdf5 becomes a :class:`NIRError` here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import math
import os
import pickle
import select
import signal
import struct
import time
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from .errors import NIRError, shown
from .limits import env_limit


def decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype == object:
        return np.array([decode(v) for v in value.reshape(-1)], dtype=object).reshape(
            value.shape)
    return value


# A file is read in three passes: a closed walk over its structure (no link, storage or
# object leading out of the file or back into it, no data read), checks of what the datasets
# declare (shapes, types, sizes, node by node), and only then the data.

#: NIRGraphs nested below the top-level graph that a file may hold.
MAX_GRAPH_DEPTH = 32
#: HDF5 groups nested below ``/node``: two per NIRGraph level, a few more for fields.
MAX_GROUP_DEPTH = 2 * (MAX_GRAPH_DEPTH + 1) + 4
#: Nodes a file may hold, all nesting levels together.
MAX_NODES = 100_000
#: Edges one NIRGraph may hold.
MAX_EDGES = 1_000_000
#: HDF5 groups and datasets a file may hold below ``/node``.
MAX_ENTRIES = 1_000_000
#: Strings in one text dataset other than ``edges`` (a node ``type``, a metadata string).
MAX_STRINGS = 4096
#: Most entries of a field that lists one value per dimension (a shape, a stride).
MAX_RANK = 32
_SHAPE_FIELDS = ("shape", "input_shape", "input_type", "output_type", "stride", "padding",
                 "dilation", "kernel_size")
#: Bytes of one stored string.
MAX_STRING_BYTES = 64 << 10
#: Default of ``NRF_NIR_MAX_BYTES``: bytes all datasets of a file may declare together.
DEFAULT_MAX_BYTES = 512 << 20
#: Bytes a variable-length string takes in memory besides its characters (checked after).
_VLEN_BYTES = 16
#: HDF5 filters a dataset may use: those built into libhdf5 and h5py, never a plugin.
_FILTERS = frozenset({
    h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32,
    h5py.h5z.FILTER_SZIP, h5py.h5z.FILTER_NBIT, h5py.h5z.FILTER_SCALEOFFSET,
    h5py.h5z.FILTER_LZF,
})
#: HDF5 type classes that are read: numbers, text, and enums (h5py stores booleans as one).
_TYPE_CLASSES = frozenset({h5py.h5t.INTEGER, h5py.h5t.FLOAT, h5py.h5t.STRING, h5py.h5t.ENUM})
_TYPE_NAMES = {h5py.h5t.COMPOUND: "compound (records or complex numbers)",
               h5py.h5t.REFERENCE: "reference", h5py.h5t.OPAQUE: "opaque",
               h5py.h5t.VLEN: "variable-length sequence", h5py.h5t.ARRAY: "array",
               h5py.h5t.BITFIELD: "bitfield", h5py.h5t.TIME: "time"}


@dataclasses.dataclass(frozen=True)
class _Limits:
    """What a file may declare. elements: per dataset (``NRF_NIR_MAX_ELEMENTS``); nbytes: all
    datasets together, in bytes (``NRF_NIR_MAX_BYTES``)."""

    elements: int
    nbytes: int


def read_limits() -> _Limits:
    from .validate import DEFAULT_MAX_ELEMENTS

    return _Limits(DEFAULT_MAX_ELEMENTS,
                   env_limit("NRF_NIR_MAX_BYTES", DEFAULT_MAX_BYTES))


@dataclasses.dataclass
class _Stored:
    """A dataset found by the walk and what it declares; none of its data is read.

    node: dotted node path ("" for the top-level graph); field: its key ("metadata.<key>"
    inside metadata); nbytes: bytes its data takes in memory, or one chunk when larger.
    """

    dataset: Any  # its HDF5 id
    node: str
    field: str | None
    shape: tuple[int, ...]
    text: bool
    nbytes: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def error(self, message: str) -> NIRError:
        return NIRError(message, node=self.node or None, field=self.field)


@dataclasses.dataclass
class _Walk:
    """The ``/node`` group as nested dicts of ``_Stored``, its node groups (dotted path, dict;
    the top-level graph first) and every dataset."""

    tree: dict[str, Any]
    nodes: list[tuple[str, dict[str, Any]]]
    stored: list[_Stored]


def _address(oid: Any) -> int:
    return int(h5py.h5o.get_info(oid).addr)


def _at(path: str, node: str, field: str | None, message: str) -> NIRError:
    """An error about the HDF5 object at ``path``, naming its node and field."""
    return NIRError(f"{shown(path)} {message}", node=node or None, field=field)


def _walk(root: Any, limits: _Limits) -> _Walk:
    """Every group and dataset below ``root`` (``/node``), found without following any link
    out of it and without reading data. Refuses soft and external links, objects reached
    twice, external and virtual storage, types other than numbers and text, and anything
    nested, numerous or large beyond the limits."""
    from .validate import check_node_name

    tree: dict[str, Any] = {}
    walk = _Walk(tree, [("", tree)], [])
    seen = {_address(root.id): "/node"}
    # group, its dict, node path, field prefix, HDF5 path, group depth, graph level, role
    stack: list[tuple[Any, dict[str, Any], str, str, str, int, int, str]] = [
        (root, tree, "", "", "/node", 0, 0, "node")]
    entries = nodes = 0
    while stack:
        group, out, node, prefix, path, depth, level, role = stack.pop()
        count = len(group)
        entries += count
        if entries > MAX_ENTRIES:
            raise NIRError(f"holds more than {MAX_ENTRIES:,} HDF5 groups and datasets (the "
                           "limit)", node=node or None)
        if role == "nodes":
            nodes += count
            if nodes > MAX_NODES:
                raise NIRError(f"holds more than {MAX_NODES:,} nodes (the limit)",
                               node=node or None, field="nodes")
        for raw in list(group.id.__iter__()):
            try:
                key = raw.decode("utf8")
            except UnicodeDecodeError:
                raise NIRError(f"an HDF5 name in {shown(path)} is not UTF-8 text ({raw[:40]!r})",
                               node=node or None) from None
            here = f"{path}/{key}"
            child, field = node, (f"{prefix}.{key}" if prefix else key)
            if role == "nodes":
                child, field = (f"{node}.{key}" if node else key), None
                reason = check_node_name(key)
                if reason:
                    raise NIRError(f"invalid node name: {reason}", node=child, field="nodes")
            elif role == "metadata":
                reason = check_node_name(key)
                if reason:
                    raise NIRError(f"invalid metadata key: {reason}", node=node or None,
                                   field=field)

            link = group.id.links.get_info(raw).type
            if link == h5py.h5l.TYPE_EXTERNAL:
                raise _at(here, child, field, "is an external link to another file; only what "
                          "is stored in this file is read")
            if link == h5py.h5l.TYPE_SOFT:
                raise _at(here, child, field, "is a soft link; only plain groups and datasets "
                          "are read")
            if link != h5py.h5l.TYPE_HARD:
                raise _at(here, child, field, "is a user-defined HDF5 link; only plain groups "
                          "and datasets are read")
            oid = h5py.h5o.open(group.id, raw)
            address = _address(oid)
            if address in seen:
                raise _at(here, child, field, f"links again to {shown(seen[address])}; every "
                          "object is read once (no hard links, no cycles)")
            seen[address] = here
            if isinstance(oid, h5py.h5g.GroupID):
                sub: dict[str, Any] = {}
                out[key] = sub
                if depth + 1 > MAX_GROUP_DEPTH:
                    raise _at(here, child, field, f"nests HDF5 groups more than "
                              f"{MAX_GROUP_DEPTH} deep (the limit)")
                if role == "nodes":
                    walk.nodes.append((child, sub))
                    stack.append((h5py.Group(oid), sub, child, "", here, depth + 1, level + 1,
                                  "node"))
                elif role == "node" and key == "nodes":
                    if level > MAX_GRAPH_DEPTH:
                        raise NIRError(f"NIRGraphs are nested more than {MAX_GRAPH_DEPTH} deep "
                                       "(the limit)", node=node or None, field="nodes")
                    stack.append((h5py.Group(oid), sub, node, "", here, depth + 1, level,
                                  "nodes"))
                else:
                    kind = "metadata" if role == "node" and key == "metadata" else "field"
                    stack.append((h5py.Group(oid), sub, child, field or "", here, depth + 1,
                                  level, kind))
            elif isinstance(oid, h5py.h5d.DatasetID):
                stored = _declare(oid, child, field, here, limits)
                out[key] = stored
                walk.stored.append(stored)
            else:
                raise _at(here, child, field, "is a named HDF5 data type, not a group or dataset")
    total = sum(s.nbytes for s in walk.stored)
    if total > limits.nbytes:
        largest = max(walk.stored, key=lambda s: s.nbytes)
        raise largest.error(
            f"the file's datasets declare {total / 2**20:,.1f} MiB, over the limit of "
            f"{limits.nbytes / 2**20:,.1f} MiB (NRF_NIR_MAX_BYTES); the largest is this one, "
            f"shape {list(largest.shape)}")
    return walk


def _declare(dataset: Any, node: str, field: str | None, path: str,
             limits: _Limits) -> _Stored:
    """What ``dataset`` (an HDF5 dataset id) declares (storage, type, shape), checked; none
    of its data is read."""

    def refuse(message: str) -> NIRError:
        return NIRError(message, node=node or None, field=field)

    plist = dataset.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise refuse(f"{shown(path)} is a virtual dataset, whose data lives in other files; "
                     "only what is stored in this file is read")
    if plist.get_external_count():
        raise refuse(f"{shown(path)} keeps its data in an external file; only what is stored "
                     "in this file is read")
    if layout not in (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
        raise refuse(f"{shown(path)} has an unknown HDF5 storage layout ({layout})")
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in _FILTERS:
            raise refuse(f"{shown(path)} needs HDF5 filter {code}; only the built-in filters "
                         "(gzip, szip, lzf, shuffle, fletcher32, nbit, scale-offset) are read")
    kind = dataset.get_type().get_class()
    if kind not in _TYPE_CLASSES:
        raise refuse(f"has the HDF5 data type class {_TYPE_NAMES.get(kind, str(kind))}; only "
                     "numbers, booleans and text are read")
    if dataset.get_space().get_simple_extent_type() == h5py.h5s.NULL:
        raise refuse("holds no value (an empty HDF5 dataspace)")
    dtype, shape = dataset.dtype, dataset.shape
    text = kind == h5py.h5t.STRING
    if text:
        info = h5py.check_string_dtype(dtype)
        length = None if info is None else info.length
        if length is not None and length > MAX_STRING_BYTES:
            raise refuse(f"declares strings of {length:,} bytes, over the limit of "
                         f"{MAX_STRING_BYTES:,}")
        itemsize = _VLEN_BYTES if length is None else length
    elif dtype.kind not in "biuf" or dtype.fields or dtype.subdtype:
        raise refuse(f"has data type {dtype.str}; only numbers, booleans and text are read")
    else:
        itemsize = dtype.itemsize
    size = math.prod(shape)
    if size > limits.elements:
        raise refuse(f"declares shape {list(shape)} ({size:,} elements), over the limit of "
                     f"{limits.elements:,} elements per array (NRF_NIR_MAX_ELEMENTS)")
    chunks = plist.get_chunk() if layout == h5py.h5d.CHUNKED else ()
    chunk = math.prod(chunks) if chunks else 0
    if chunk > limits.elements:
        raise refuse(f"declares chunks of {list(chunks)} ({chunk:,} elements), over "
                     f"the limit of {limits.elements:,} elements (NRF_NIR_MAX_ELEMENTS)")
    if text and field != "edges" and size > MAX_STRINGS:
        raise refuse(f"declares {size:,} strings, over the limit of {MAX_STRINGS:,}")
    return _Stored(dataset, node, field, tuple(int(n) for n in shape), text,
                   max(size, chunk) * itemsize)


def _read_stored(stored: _Stored) -> Any:
    """The data of a checked dataset; strings decoded, each at most ``MAX_STRING_BYTES``."""
    try:
        value = h5py.Dataset(stored.dataset)[()]
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        if "alloc" in str(exc).lower():  # libhdf5 could not allocate: over the memory cap
            raise MemoryError(str(exc)) from None
        raise stored.error(f"unreadable data ({exc})") from None
    if stored.text:
        items = value.reshape(-1) if isinstance(value, np.ndarray) and value.dtype == object \
            else [value]
        longest = max((len(v) for v in items if isinstance(v, (bytes, str))), default=0)
        if longest > MAX_STRING_BYTES:
            raise stored.error(f"holds a string of {longest:,} bytes, over the limit of "
                               f"{MAX_STRING_BYTES:,}")
    return decode(value)


def _text(value: Any) -> str | None:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    return value if isinstance(value, str) else None


def _check_node(kind: str | None, node: str, entries: dict[str, Any]) -> None:
    """Shapes a node's fields declare must fit together: a bias has one value per output, a
    neuron's parameters one shape, edges are [n, 2] and at most ``MAX_EDGES``."""
    from .validate import NEURON_FIELDS

    def declared(key: str) -> _Stored | None:
        item = entries.get(key)
        return item if isinstance(item, _Stored) and not item.text else None

    if kind in ("Affine", "Conv1d", "Conv2d"):
        weight, bias = declared("weight"), declared("bias")
        if weight is not None and bias is not None and weight.shape and \
                bias.size not in (1, weight.shape[0]):
            raise bias.error(f"declares shape {list(bias.shape)}, but the weight "
                             f"{list(weight.shape)} needs ({weight.shape[0]},)")
    fields = next((f for cls, f in NEURON_FIELDS.items() if cls.__name__ == kind), ())
    shapes = {f: s.shape for f in fields if (s := declared(f)) is not None and s.size != 1}
    if len(set(shapes.values())) > 1:
        common = max(shapes.values(), key=list(shapes.values()).count)
        odd = next(f for f, s in shapes.items() if s != common)
        raise NIRError("parameters must have the same shape, got " + ", ".join(
            f"{f} {list(s)}" for f, s in shapes.items()), node=node or None, field=odd)
    for key in _SHAPE_FIELDS:
        item = declared(key)
        if item is not None and item.size > MAX_RANK:
            raise item.error(f"declares {item.size:,} dimensions, over the limit of "
                             f"{MAX_RANK}")
    edges = entries.get("edges")
    if kind == "NIRGraph" and isinstance(edges, _Stored) and edges.size:
        if len(edges.shape) != 2 or edges.shape[1] != 2:
            raise edges.error(f"must be an [n, 2] array of names, got shape "
                              f"{list(edges.shape)}")
        if edges.shape[0] > MAX_EDGES:
            raise edges.error(f"declares {edges.shape[0]:,} edges, over the limit of "
                              f"{MAX_EDGES:,}")


def _materialize(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` with every ``_Stored`` replaced by its data (nesting is bounded by the walk)."""
    return {key: _read_stored(item) if isinstance(item, _Stored)
            else _materialize(item) if isinstance(item, dict) else item
            for key, item in tree.items()}


def _read_node_group(root: Any, limits: _Limits) -> dict[str, Any]:
    """The ``/node`` group ``root`` as nested dicts: walked, checked, then read."""
    walk = _walk(root, limits)
    for node, entries in walk.nodes:
        kind = "NIRGraph" if not node and "type" not in entries else None
        stored = entries.get("type")
        if isinstance(stored, _Stored) and stored.text and stored.size == 1:
            entries["type"] = _read_stored(stored)
            kind = _text(entries["type"])
        _check_node(kind, node, entries)
    return _materialize(walk.tree)


def _read_hdf5(name: str) -> dict[str, Any]:
    """The ``node`` group of a NIR file as nested dicts of arrays and strings.

    Only groups and datasets stored in the file are visited (attributes are never read), and
    every declared shape is checked (``_walk``, ``_check_node``) before any data is read.
    """
    limits = read_limits()
    try:
        handle = h5py.File(name, "r")
    except OSError:
        raise NIRError("not a readable HDF5 file (truncated, corrupted or another format)",
                       file=name) from None
    try:
        with handle:
            links = handle.id.links
            if not links.exists(b"node"):
                raise NIRError("not a NIR file: no 'node' group", file=name)
            if links.get_info(b"node").type != h5py.h5l.TYPE_HARD:
                raise NIRError("'/node' is a soft or external link; only what is stored in "
                               "this file is read", file=name)
            root = h5py.h5o.open(handle.id, b"node")
            if not isinstance(root, h5py.h5g.GroupID):
                raise NIRError("not a NIR file: '/node' is not a group", file=name)
            return _read_node_group(h5py.Group(root), limits)
    except (NIRError, MemoryError):
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise NIRError(f"unreadable ({type(exc).__name__}: {exc})", file=name) from None


#: Read files in a forked child process: the HDF5 C library can crash (segfault) or spin
#: forever on a corrupted file; a crash or a hang there must become an error here.
ISOLATED_READ = os.environ.get("NRF_NIR_ISOLATED_READ", "1") != "0"
#: Seconds a read may take before the file is declared corrupted (the fuzzer found files that
#: make libhdf5 loop forever).
READ_TIMEOUT_S = float(os.environ.get("NRF_NIR_READ_TIMEOUT", "120"))
#: Default of ``NRF_NIR_READ_MEMORY``: MiB the reading child may allocate beyond the address
#: space it inherits.
DEFAULT_READ_MEMORY_MIB = 1024
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux), or None."""
    try:
        import ctypes

        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return function


def _cap_memory(extra: int) -> None:
    """Limit this process's address space to its current size plus ``extra`` bytes (never
    raising a limit already set)."""
    import resource

    try:
        with open("/proc/self/status", "rb") as status:
            line = next(x for x in status if x.startswith(b"VmSize:"))
        current = int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return
    limit = current + extra
    for bound in resource.getrlimit(resource.RLIMIT_AS):
        if bound != resource.RLIM_INFINITY:
            limit = min(limit, bound)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _send(fd: int, payload: object) -> None:
    """Pickle ``payload`` to ``fd``; arrays go out of band (no second copy in memory):
    header (pickle length, buffer count), pickle, then per buffer its length and bytes."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(payload, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    with os.fdopen(fd, "wb") as out:
        out.write(struct.pack("<QQ", len(head), len(views)))
        out.write(head)
        for view in views:
            out.write(struct.pack("<Q", view.nbytes))
            out.write(view)


def _receive_exact(fd: int, size: int, deadline: float) -> bytearray | None:
    """``size`` bytes from ``fd``; None when it closes first; TimeoutError past ``deadline``."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0.0))
        if not ready:
            raise TimeoutError
        n = os.readv(fd, [view[got:]])
        if n == 0:
            return None
        got += n
    return buf


def _receive(fd: int, deadline: float, most: int) -> Any:
    """What ``_send`` wrote to ``fd``, or None when the sender died first (or sent sizes over
    ``most`` bytes)."""
    header = _receive_exact(fd, 16, deadline)
    if header is None:
        return None
    size, count = struct.unpack("<QQ", header)
    if size > most or count > MAX_ENTRIES:
        return None
    head = _receive_exact(fd, size, deadline)
    if head is None:
        return None
    buffers = []
    for _ in range(count):
        length = _receive_exact(fd, 8, deadline)
        if length is None or struct.unpack("<Q", length)[0] > most:
            return None
        buffer = _receive_exact(fd, struct.unpack("<Q", length)[0], deadline)
        if buffer is None:
            return None
        buffers.append(buffer)
    return pickle.loads(head, buffers=buffers)  # our own child's output


def _child(name: str, write_end: int, parent: int, memory_mib: int,
           prctl: Callable[..., int] | None) -> None:
    """The reading child: dies with its parent, capped in memory; sends the result or the
    error through ``write_end`` and leaves without running any cleanup of the parent's."""
    try:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        faulthandler.disable()  # a crash here is reported by the parent, quietly
        too_big = (f"reading it needed more than {memory_mib:,} MiB of memory "
                   "(NRF_NIR_READ_MEMORY)", None, None)
        _cap_memory(memory_mib << 20)
        try:
            payload: tuple[str, Any] = ("ok", _read_hdf5(name))
        except NIRError as exc:
            payload = ("error", (exc.message, exc.node, exc.field))
        except MemoryError:
            payload = ("error", too_big)
        except BaseException as exc:  # noqa: BLE001 - everything reaches the parent
            payload = ("error", (f"unreadable ({type(exc).__name__}: {exc})", None, None))
        try:
            _send(write_end, payload)
        except MemoryError:
            _send(write_end, ("error", too_big))
    finally:
        os._exit(0)


def read_file(name: str) -> dict[str, Any]:
    """``_read_hdf5`` in a forked child that dies with this process, may allocate at most
    ``NRF_NIR_READ_MEMORY`` MiB and gets ``READ_TIMEOUT_S`` seconds; its result comes back
    pickled through a pipe. The child is killed and reaped whatever happens here (an error,
    a timeout, Ctrl-C, a SIGTERM turned into an exception)."""
    if not ISOLATED_READ or not hasattr(os, "fork"):
        return _read_hdf5(name)
    memory_mib = env_limit("NRF_NIR_READ_MEMORY", DEFAULT_READ_MEMORY_MIB)
    prctl = _prctl()
    parent = os.getpid()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _child(name, write_end, parent, memory_mib, prctl)
    status = None
    try:
        os.close(write_end)
        try:
            message = _receive(read_end, time.monotonic() + READ_TIMEOUT_S,
                               (memory_mib << 20) + (1 << 30))
        except TimeoutError:
            raise NIRError(f"corrupted: reading it did not finish within {READ_TIMEOUT_S:g} s "
                           "(NRF_NIR_READ_TIMEOUT)", file=name) from None
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(read_end)
        if status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    if message is None:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else \
            f"exit status {os.WEXITSTATUS(status)}"
        raise NIRError(f"corrupted: reading it crashed the HDF5 library ({how})", file=name)
    kind, result = message
    if kind == "error":
        text, node, field = result
        raise NIRError(text, node=node, field=field, file=name)
    value: dict[str, Any] = result
    return value
