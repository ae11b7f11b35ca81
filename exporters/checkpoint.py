"""Building modules for export: factories, state_dict files and Lightning checkpoints.

Checkpoints load with ``torch.load(weights_only=True)``: a file that carries pickled code or
objects is refused, never executed.
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

from nrf_nir.errors import NIRError


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
    """Instantiate a module from a factory spec or a zoo model name."""
    if ":" in spec:
        factory = resolve_factory(spec)
        try:
            module = factory()
        except Exception as exc:  # noqa: BLE001 - user code
            raise NIRError(f"factory {spec!r} failed: {type(exc).__name__}: {exc}",
                           field="model") from None
    else:
        try:
            from nrf_nir.models import build as zoo_build  # type: ignore[attr-defined]
        except ImportError:
            raise NIRError(f"unknown model {spec!r}: the model zoo is not available; pass a "
                           "factory 'package.module:function'", field="model") from None
        module = zoo_build(spec)
    if not isinstance(module, nn.Module):
        raise NIRError(f"{spec!r} returned a {type(module).__name__}, not a torch.nn.Module",
                       field="model")
    return module


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a ``state_dict`` file or of a Lightning ``.ckpt`` (its ``state_dict``)."""
    if not os.path.exists(path):
        raise NIRError("no such file", file=path)
    with open(path, "rb") as handle:
        head = handle.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # neither zip nor a pickle
        raise NIRError("not a readable PyTorch checkpoint (neither torch.save's zip format "
                       "nor a pickle)", file=path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise NIRError("refused: the checkpoint holds pickled code or objects that "
                       f"weights_only loading does not allow ({first[:160]})",
                       file=path) from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError) as exc:
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
