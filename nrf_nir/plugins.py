"""Where the core, and a layer under another, find code of the layers above them.

The core never imports the exporters, the model zoo or the conformance suite, and the exporters
never import the zoo (the import-linter contracts in pyproject.toml): what they call of those
layers is named here by location, ``"package.module:attribute"``, and imported on first use with
``importlib`` (as the target registry, ``nrf_nir.targets``, finds the targets). A layer that is
not installed is an ``ImportError`` from :func:`load`, which each caller turns into its message.
"""

from __future__ import annotations

import importlib
from typing import Any

#: ``export(module, sample_input, dt=None) -> nir.NIRGraph``: the front-end that walks a live
#: Norse / PyTorch module (``nrf_nir.export``).
EXPORTER = "nrf_nir.exporters:export"

#: ``build(name) -> torch.nn.Module``: a zoo model by name, trained weights loaded
#: (``nrf-nir export --model poker-dvs``).
ZOO_BUILDER = "nrf_nir.models:build"


def load(location: str) -> Any:
    """The object at ``"package.module:attribute"``, its module imported now.

    Raises ``ImportError`` when the module (or one it imports) is not installed, and
    ``ImportError`` too when the module has no such attribute (the layer is not the one
    expected); ``ValueError`` for a location not of that form.
    """
    module_name, sep, attr = location.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"a location is written 'package.module:attribute', got {location!r}")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"cannot import name {attr!r} from {module_name!r}",
                          name=module_name) from None
