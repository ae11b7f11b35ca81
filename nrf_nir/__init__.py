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
from typing import TYPE_CHECKING, Any

# ``validate``: the submodule is imported before the function of that name is bound (importing
# the submodule later would rebind ``nrf_nir.validate`` to the module).
from . import targets  # the registry; imports no backend framework
from . import validate as _validate_module  # noqa: F401
from .errors import NIRError, UnsupportedError, ValidationError
from .io import load, save
from .io import validate_graph as validate
from .semantics import Semantics, read_semantics, write_semantics

if TYPE_CHECKING:  # pragma: no cover
    from .api import Lowered, check, export, lower, prepare_inputs, run

#: Names of ``nrf_nir.api`` served on first use (it imports torch): loading, validating and
#: inspecting a file import no torch.
_LAZY = ("Lowered", "check", "export", "lower", "prepare_inputs", "run")


def __getattr__(name: str) -> Any:
    """``nrf_nir.run`` etc.: imported from ``nrf_nir.api`` on first use (PEP 562)."""
    if name in _LAZY:
        from . import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


try:
    __version__ = _version("nrf-nir")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "Lowered", "NIRError", "Semantics", "UnsupportedError", "ValidationError", "__version__",
    "check", "export", "load", "lower", "prepare_inputs", "read_semantics", "run", "save",
    "targets", "validate", "write_semantics",
]
