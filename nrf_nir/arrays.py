"""Reading ``.npz`` input archives without trusting them.

``numpy.load`` believes an archive's headers: a ``.npy`` given for an ``.npz``, a header
declaring a huge array over a tiny payload or a zip bomb end in tracebacks or gigabytes of
memory. ``read_npz`` checks everything before it allocates: the zip directory, each member's
``.npy`` header (parsed from at most ``MAX_HEADER_BYTES``), the declared sizes against
``max_bytes`` and against each other, and the compression ratio; then it reads exactly the
declared data bytes into a preallocated array. Member names are data: messages show them
escaped and shortened (``nrf_nir.errors.shown``).
"""

from __future__ import annotations

import io
import math
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Sequence
from typing import IO, Literal

import numpy as np
from numpy.lib import format as npy_format

from .errors import NIRError, escape, listed, shown
from .limits import env_limit

#: Default limit on the bytes of all arrays of one archive (env ``NRF_NIR_MAX_INPUT_BYTES``).
DEFAULT_MAX_BYTES = 2 << 30
#: A compressed member may expand at most this many times ...
MAX_RATIO = 100
#: ... unless it expands to no more than this many bytes (small members are harmless).
RATIO_FREE_BYTES = 64 << 20
#: Members an archive may hold.
MAX_MEMBERS = 1024
#: Bytes of a ``.npy`` header read at most (numpy's own limit is 10,000 characters).
MAX_HEADER_BYTES = 65536
#: Read size in bytes when copying member data into its array.
CHUNK_BYTES = 16 << 20
_NPY_MAGIC = b"\x93NUMPY"
_COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}


def max_input_bytes() -> int:
    """The input size limit in bytes: ``NRF_NIR_MAX_INPUT_BYTES`` or 2 GiB."""
    return env_limit("NRF_NIR_MAX_INPUT_BYTES", DEFAULT_MAX_BYTES)


def human_bytes(n: int) -> str:
    """``n`` bytes as text: bytes below 1 MiB, else MiB or GiB (3 significant digits)."""
    if n < 1 << 20:
        return f"{n} bytes"
    if n < 1 << 30:
        return f"{n / (1 << 20):.3g} MiB"
    return f"{n / (1 << 30):.3g} GiB"


def check_allocation(shape: tuple[int, ...], bytes_per_element: int, what: str, *,
                     hint: str = "") -> None:
    """Refuse (``NIRError``) an array of ``shape`` needing more than ``max_input_bytes()``
    at ``bytes_per_element`` bytes per element (peak, temporaries included)."""
    nbytes = math.prod(int(d) for d in shape) * bytes_per_element
    limit = max_input_bytes()
    if nbytes > limit:
        raise NIRError(f"{what} of shape {list(shape)} needs {human_bytes(nbytes)}, more than "
                       f"the input limit ({human_bytes(limit)}, NRF_NIR_MAX_INPUT_BYTES)"
                       + (f": {hint}" if hint else ""))


def _read_exact(handle: IO[bytes], n: int) -> bytes:
    data = handle.read(n)
    if len(data) != n:
        raise EOFError(f"ends after {len(data)} of {n} bytes")
    return data


def _header(handle: IO[bytes], where: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and header length in bytes of a ``.npy`` stream."""
    magic = handle.read(8)
    if len(magic) < 8 or magic[:6] != _NPY_MAGIC:
        raise NIRError(f"{where} is not a .npy array (no NUMPY magic)")
    version = (magic[6], magic[7])
    if version not in ((1, 0), (2, 0)):
        raise NIRError(f"{where}: unsupported .npy format version {version[0]}.{version[1]}")
    size_format = "<H" if version == (1, 0) else "<I"
    size_bytes = _read_exact(handle, struct.calcsize(size_format))
    header_len = struct.unpack(size_format, size_bytes)[0]
    if header_len > MAX_HEADER_BYTES:
        raise NIRError(f"{where}: .npy header of {header_len} bytes (more than "
                       f"{MAX_HEADER_BYTES}): refused")
    text = _read_exact(handle, header_len)
    parse = (npy_format.read_array_header_1_0 if version == (1, 0)
             else npy_format.read_array_header_2_0)
    try:
        shape, fortran, dtype = parse(io.BytesIO(size_bytes + text))
    except Exception as exc:  # noqa: BLE001 - any parse failure of untrusted text
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NIRError(f"{where}: unreadable .npy header ({first[:200]})") from None
    return tuple(shape), bool(fortran), np.dtype(dtype), 8 + len(size_bytes) + header_len


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.hasobject:
        raise NIRError(f"{where} holds Python objects (a pickle): refused; save numeric arrays")
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind not in "biufc":
        raise NIRError(f"{where} has dtype {shown(str(dtype))}, not a numeric array (bool, int, "
                       "float)")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str,
                 budget: int) -> np.ndarray:
    """The array of one member, after checking its header against ``budget`` bytes and
    against the zip directory's sizes."""
    with archive.open(info) as handle:
        shape, fortran, dtype, header_len = _header(handle, where)
        _check_dtype(dtype, where)
        if any(not isinstance(d, int) or d < 0 for d in shape):
            raise NIRError(f"{where}: invalid shape {shape}")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes > budget:
            raise NIRError(f"{where} declares shape {list(shape)} of {dtype} "
                           f"({human_bytes(nbytes)}), more than the input limit "
                           f"({human_bytes(budget)} left of NRF_NIR_MAX_INPUT_BYTES)")
        if info.file_size != header_len + nbytes:
            raise NIRError(f"{where} declares shape {list(shape)} of {dtype} ({nbytes} bytes) "
                           f"but the archive holds {info.file_size - header_len} data bytes: "
                           "corrupted or forged")
        array = np.empty(count, dtype=dtype)
        view = array.view(np.uint8)
        done = 0
        while done < nbytes:  # ZipExtFile never yields more than file_size bytes
            chunk = handle.read(min(CHUNK_BYTES, nbytes - done))
            if not chunk:
                raise EOFError(f"data ends after {done} of {nbytes} bytes")
            view[done:done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            done += len(chunk)
    order: Literal["C", "F"] = "F" if fortran else "C"
    array = array.reshape(shape, order=order)
    if not dtype.isnative:  # e.g. big-endian: the same values in native byte order
        array.byteswap(inplace=True)
        array = array.view(dtype.newbyteorder("="))
    return array


def read_npz(path: str, *, max_bytes: int | None = None,
             expected_keys: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` archive at ``path``, keyed by name.

    max_bytes: limit on the bytes of all arrays together (default ``max_input_bytes()``).
    expected_keys: the keys the caller wants (a graph's Input node names), named by the
    refusal of a file that is no archive (a ``.npy`` array, text, ...).
    Raises ``NIRError`` naming the file (and member) for anything it refuses.
    """
    limit = max_input_bytes() if max_bytes is None else max_bytes
    keys = (f", one array [T, B, *shape] per Input node keyed by its name: "
            f"{listed(expected_keys)}" if expected_keys else "")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise NIRError("no such file", file=path) from None
    except OSError as exc:
        raise NIRError(f"cannot read ({exc.strerror})", file=path) from None
    if not stat.S_ISREG(info.st_mode):
        raise NIRError("not a regular file", file=path)
    try:
        with open(path, "rb") as raw:
            head = raw.read(len(_NPY_MAGIC))
            if head == _NPY_MAGIC:
                raise NIRError("not an .npz archive (a .npy file? save inputs with "
                               f"numpy.savez{keys})", file=path)
            try:
                archive = zipfile.ZipFile(raw)
            except zipfile.BadZipFile:
                raise NIRError("not an .npz archive (not a zip file; save inputs with "
                               f"numpy.savez{keys})", file=path) from None
            with archive:
                return _read_members(archive, info.st_size, limit)
    except NIRError as exc:
        raise exc.with_file(path) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError, zlib.error) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NIRError(f"not a readable .npz archive ({escape(message[:200])})",
                       file=path) from None
    except MemoryError:
        raise NIRError("not enough memory to read the input arrays", file=path) from None


def _read_members(archive: zipfile.ZipFile, file_size: int,
                  limit: int) -> dict[str, np.ndarray]:
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise NIRError(f"{len(members)} members (more than {MAX_MEMBERS}): refused")
    names = [m.filename for m in members]
    if len(set(names)) != len(names):
        raise NIRError("the archive holds two members of the same name")
    total = 0
    for member in members:
        where = f"member {shown(member.filename.removesuffix('.npy'))}"
        if not member.filename.endswith(".npy"):
            raise NIRError(f"{where} is not an array (.npy); save inputs with numpy.savez")
        if member.compress_type not in _COMPRESSIONS:
            raise NIRError(f"{where} uses an unsupported compression (method "
                           f"{member.compress_type}); save with numpy.savez or savez_compressed")
        if member.compress_type == zipfile.ZIP_STORED and (
                member.compress_size != member.file_size
                or member.header_offset + member.compress_size > file_size):
            raise NIRError(f"{where} declares {member.file_size} bytes that the file does not "
                           "hold: truncated or forged")
        if (member.file_size > RATIO_FREE_BYTES
                and member.file_size > MAX_RATIO * max(member.compress_size, 1)):
            raise NIRError(f"{where} expands from {member.compress_size} to "
                           f"{member.file_size} bytes (more than {MAX_RATIO}:1): refused as a "
                           "possible zip bomb; save it with numpy.savez (uncompressed)")
        total += member.file_size
    if total > limit + MAX_HEADER_BYTES * len(members):
        raise NIRError(f"the arrays hold {human_bytes(total)}, more than the input limit "
                       f"({human_bytes(limit)}, NRF_NIR_MAX_INPUT_BYTES)")
    arrays: dict[str, np.ndarray] = {}
    budget = limit
    for member in members:
        key = member.filename[: -len(".npy")]
        array = _read_member(archive, member, f"member {shown(key)}", budget)
        budget -= array.nbytes
        arrays[key] = array
    return arrays
