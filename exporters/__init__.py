"""Front-ends: Norse / PyTorch modules, state_dicts and Lightning checkpoints to NIR.

``export(module, sample_input, dt=...)`` walks a live module; ``exporters.checkpoint`` builds
modules from factories and loads weights safely.
"""

from nrf_nir.exporters.modules import NIRFragment, export

__all__ = ["NIRFragment", "export"]
