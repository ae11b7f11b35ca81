"""nrf-nir: a hardware-portable compiler for spiking neural networks built on NIR.

Python API::

    graph = nrf_nir.load("model.nir")
    out = nrf_nir.run(graph, x)             # x: [T, B, *shape]; out: {output name: [T, B, ...]}
    nrf_nir.check(graph, "reference")       # [] : every valid graph runs on the reference
    nrf_nir.targets.available()
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from . import targets  # noqa: E402  (the registry; imports no backend framework)
from .api import Lowered, check, export, lower, prepare_inputs, run, validate
from .errors import NIRError, UnsupportedError, ValidationError
from .io import load, save
from .semantics import Semantics, read_semantics, write_semantics

try:
    __version__ = _version("nrf-nir")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "Lowered", "NIRError", "Semantics", "UnsupportedError", "ValidationError", "__version__",
    "check", "export", "load", "lower", "prepare_inputs", "read_semantics", "run", "save",
    "targets", "validate", "write_semantics",
]
