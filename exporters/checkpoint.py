"""Building modules for export: factories, state_dict files and Lightning checkpoints.

Checkpoints load with ``torch.load(weights_only=True)``: a file that carries pickled code or
objects is refused, never executed. Before loading, the zip directory of a checkpoint is
checked (``check_checkpoint_zip``): at most ``NRF_NIR_MAX_CHECKPOINT_BYTES`` (default 2 GiB)
uncompressed, no member compressed more than 100:1, every member inside the file; an
all-stored zip (what ``torch.save`` writes) is then memory-mapped, so loading allocates
nothing the file does not hold. The legacy non-zip format (``torch.save`` before PyTorch 1.6
or ``_use_new_zipfile_serialization=False``) is refused: the sizes of its storages cannot be
checked before torch allocates them; re-save such a file with ``torch.save``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nrf_nir import plugins
from nrf_nir.arrays import human_bytes
from nrf_nir.errors import NIRError, shown
from nrf_nir.limits import env_limit


def resolve_factory(spec: str) -> Any:
    """``"package.module:function"`` or ``"path/to/file.py:function"`` -> the callable."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise NIRError(f"a factory is written 'package.module:function' or 'file.py:function', "
                       f"got {spec!r}", field="model")
    try:
        if module_name.endswith(".py"):
            if not os.path.exists(module_name):
                raise NIRError("no such file", file=module_name, field="model")
            loader = importlib.util.spec_from_file_location("_nrf_nir_factory", module_name)
            if loader is None or loader.loader is None:
                raise NIRError("cannot import this file", file=module_name, field="model")
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except NIRError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code: report, do not crash
        raise NIRError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}",
                       field="model") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise NIRError(f"{module_name!r} has no attribute {attr!r}", field="model") from None


def build_module(spec: str) -> nn.Module:
    """Instantiate a module from a factory spec or a zoo model name (``nrf_nir.models.build``,
    imported only then)."""
    if ":" in spec:
        factory = resolve_factory(spec)
        try:
            module = factory()
        except Exception as exc:  # noqa: BLE001 - user code
            raise NIRError(f"factory {spec!r} failed: {type(exc).__name__}: {exc}",
                           field="model") from None
    else:  # a zoo name: the zoo is a layer above, found by location (nrf_nir.plugins)
        try:
            zoo_build = plugins.load(plugins.ZOO_BUILDER)
        except ImportError:
            raise NIRError(f"unknown model {spec!r}: the model zoo is not available; pass a "
                           "factory 'package.module:function'", field="model") from None
        module = zoo_build(spec)
    if not isinstance(module, nn.Module):
        raise NIRError(f"{spec!r} returned a {type(module).__name__}, not a torch.nn.Module",
                       field="model")
    return module


#: Default limit on a checkpoint's uncompressed bytes (env ``NRF_NIR_MAX_CHECKPOINT_BYTES``).
DEFAULT_MAX_CHECKPOINT_BYTES = 2 << 30
#: Largest compression ratio of a member (torch.save stores members uncompressed).
MAX_CHECKPOINT_RATIO = 100


def max_checkpoint_bytes() -> int:
    """The checkpoint size limit in bytes: ``NRF_NIR_MAX_CHECKPOINT_BYTES`` or 2 GiB."""
    return env_limit("NRF_NIR_MAX_CHECKPOINT_BYTES", DEFAULT_MAX_CHECKPOINT_BYTES)


def check_checkpoint_zip(path: str, limit: int | None = None) -> bool:
    """Check the zip directory of a ``torch.save`` checkpoint before anything is loaded.

    limit: most uncompressed bytes (default ``max_checkpoint_bytes()``). Returns whether every
    member is stored uncompressed (then the file can be memory-mapped). Raises ``NIRError``
    for a directory that declares more than ``limit`` bytes, a member compressed more than
    ``MAX_CHECKPOINT_RATIO``:1, or a member that reaches past the end of the file.
    """
    limit = max_checkpoint_bytes() if limit is None else limit
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise NIRError(f"not a readable PyTorch checkpoint (zip directory: {str(exc)[:160]})",
                       file=path) from None
    total = sum(m.file_size for m in members)
    if total > limit:
        raise NIRError(f"the checkpoint declares {human_bytes(total)} uncompressed, more than "
                       f"the limit of {human_bytes(limit)} (NRF_NIR_MAX_CHECKPOINT_BYTES)",
                       file=path)
    stored = True
    for member in members:
        if member.header_offset + member.compress_size > size:
            raise NIRError(f"member {shown(member.filename)} reaches past the end of the file: "
                           "truncated or forged", file=path)
        if member.compress_type != zipfile.ZIP_STORED:
            stored = False
            if member.file_size > MAX_CHECKPOINT_RATIO * max(member.compress_size, 1):
                raise NIRError(f"member {shown(member.filename)} expands from "
                               f"{member.compress_size} to {member.file_size} bytes (more than "
                               f"{MAX_CHECKPOINT_RATIO}:1; torch.save stores members "
                               "uncompressed): refused as a possible zip bomb", file=path)
    return stored


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a ``state_dict`` file or of a Lightning ``.ckpt`` (its ``state_dict``)."""
    if not os.path.exists(path):
        raise NIRError("no such file", file=path)
    if not os.path.isfile(path):
        raise NIRError("not a regular file", file=path)
    with open(path, "rb") as handle:
        head = handle.read(2)
    if not zipfile.is_zipfile(path):
        if head[:1] == b"\x80":  # a pickle: torch.save's legacy format
            raise NIRError("legacy (non-zip) checkpoint format: refused, the sizes of its "
                           "storages cannot be checked before loading; re-save it with "
                           "torch.save (PyTorch >= 1.6)", file=path)
        raise NIRError("not a readable PyTorch checkpoint (neither torch.save's zip format "
                       "nor a pickle)", file=path)
    stored = check_checkpoint_zip(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=stored)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise NIRError("refused: the checkpoint holds pickled code or objects that "
                       f"weights_only loading does not allow ({first[:160]})",
                       file=path) from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError,
            MemoryError) as exc:
        raise NIRError(f"not a readable PyTorch checkpoint ({type(exc).__name__}: "
                       f"{str(exc)[:160]})", file=path) from None
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        raise NIRError("expected a state_dict (a mapping of names to tensors) or a Lightning "
                       "checkpoint with one under 'state_dict'", file=path)
    return dict(data)


def _strip_prefix(keys: list[str], wanted: set[str]) -> str:
    """The prefix (e.g. Lightning's ``model.``) whose removal makes ``keys`` match ``wanted``."""
    if set(keys) == wanted or not keys:
        return ""
    first = keys[0].split(".")
    for n in range(1, len(first)):
        prefix = ".".join(first[:n]) + "."
        if all(k.startswith(prefix) for k in keys) and {k[len(prefix):] for k in keys} & wanted:
            return prefix
    return ""


def load_weights(module: nn.Module, path: str) -> nn.Module:
    """Load a state_dict / Lightning checkpoint into ``module``; a clear error lists missing,
    unexpected and mis-shaped keys."""
    state = read_state_dict(path)
    own = module.state_dict()
    prefix = _strip_prefix(list(state), set(own))
    state = {k[len(prefix):]: v for k, v in state.items()}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
                    for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append("missing keys: " + ", ".join(missing))
        if unexpected:
            parts.append("unexpected keys: " + ", ".join(unexpected))
        if shapes:
            parts.append("wrong shapes (file vs model): " + "; ".join(shapes))
        raise NIRError("the checkpoint does not fit the model: " + "; ".join(parts), file=path)
    module.load_state_dict(state)
    return module
