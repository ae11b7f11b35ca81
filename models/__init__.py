"""The model zoo: the seed models, their data generators, training and checkpoints.

Every zoo model is a Norse / PyTorch module (``Stepper``: a named chain of one-step layers run
over time, ``[T, B, *input_shape] -> [T, B, ...]``), a seeded synthetic data generator, a
CPU training function, a small committed checkpoint (``models/checkpoints/<name>.pt``, a
``state_dict`` read with ``torch.load(weights_only=True)``), an evaluation on held-out generated
data and an export to NIR::

    from nrf_nir import models
    models.names()                          # ['poker-dvs', 'first-spike', ...]
    net = models.build("poker-dvs")         # trained weights loaded; net.input_shape
    models.evaluate("poker-dvs")            # {'metric': 'accuracy', 'accuracy': ..., ...}
    graph = models.export("poker-dvs")      # nir.NIRGraph with dt and semantics metadata
    models.train("poker-dvs")               # retrain from scratch, write the checkpoint

See ``docs/zoo.md`` for each model's data, training record and what NIR can and cannot express.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nrf_nir.errors import NIRError

from ._common import Timer, checkpoint_path, load_checkpoint, save_checkpoint, set_threads

if TYPE_CHECKING:  # pragma: no cover
    import nir

    from nrf_nir.cases import Case

# zoo name -> submodule (imported on first use: Norse is imported only then)
_MODULES = {
    "poker-dvs": "poker_dvs",
    "first-spike": "first_spike",
    "first-spike-adlif": "first_spike_adlif",
    "first-spike-xylo": "first_spike_xylo",
    "time-surface": "time_surface",
    "tts-encoder": "tts_encoder",
    "nrf": "nrf",
}

__all__ = ["build", "checkpoint_state", "conformance_cases", "evaluate", "export", "generate",
           "has_checkpoint", "info", "names", "spec", "train"]


def names() -> list[str]:
    """The zoo's model names, in priority order."""
    return [n for n in _MODULES if importlib.util.find_spec(f"{__name__}.{_MODULES[n]}")]


def spec(name: str) -> ModuleType:
    """The submodule that defines ``name`` (its ``build``, ``generate``, ``train``, ...)."""
    if name not in _MODULES:
        raise NIRError(f"unknown zoo model {name!r}; the zoo has: {', '.join(names())}",
                       field="model")
    return importlib.import_module(f"{__name__}.{_MODULES[name]}")


def has_checkpoint(name: str) -> bool:
    spec(name)
    return checkpoint_path(name).exists()


def info(name: str) -> dict[str, Any]:
    """A model's description, input shape, decoding, metric target and checkpoint."""
    s = spec(name)
    path = checkpoint_path(name)
    return {
        "name": name,
        "description": (s.__doc__ or "").strip().splitlines()[0],
        "input_shape": list(s.INPUT_SHAPE),
        "decode": s.DECODE,
        "metric": s.METRIC,
        "target": s.TARGET,
        "higher_is_better": getattr(s, "HIGHER_IS_BETTER", True),
        "checkpoint": str(path) if path.exists() else None,
        "checkpoint_bytes": path.stat().st_size if path.exists() else None,
    }


def build(name: str, *, pretrained: bool = True) -> nn.Module:
    """The model as a torch module; with ``pretrained`` (default) the committed checkpoint's
    weights are loaded when it exists. The module has ``input_shape`` (one sample, one step)
    and maps ``[T, B, *input_shape]`` to ``[T, B, ...]``."""
    s = spec(name)
    module: nn.Module = s.build()
    path = checkpoint_path(name)
    if pretrained and path.exists():
        if hasattr(s, "load_pretrained"):  # the checkpoint holds a larger model
            module = s.load_pretrained(module, path)
        else:
            load_checkpoint(module, path)
    module.eval()
    return module


def checkpoint_state(name: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors that ``name``'s checkpoint stores for ``module`` (its state_dict, or for
    ``tts-encoder`` the full VQ-VAE's, whose decoder the metric needs)."""
    s = spec(name)
    if hasattr(s, "checkpoint_state"):
        return dict(s.checkpoint_state(module))
    return dict(module.state_dict())


def generate(name: str, n: int, T: int | None = None, seed: int = 0
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` generated samples ``[T, n, *input_shape]`` float32 and their targets."""
    s = spec(name)
    x, y = s.generate(n, T if T is not None else s.T_EVAL, seed=seed)
    return x, y


def train(name: str, *, seed: int = 0, save: bool = True, show_progress: bool = True,
          threads: int | None = 1, path: str | None = None, eval_n: int | None = None,
          **options: Any) -> dict[str, Any]:
    """Train ``name`` from scratch (seeded) on its generator, evaluate it on held-out data and
    (``save``) write the checkpoint (to ``path``, default the zoo's checkpoint). ``options`` go
    to the model's ``train`` (e.g. ``steps``); ``eval_n`` overrides the evaluation size;
    ``threads`` sets torch's CPU threads (1 is fastest for these small models). Returns the
    training record: options, seconds, metric, checkpoint path and size."""
    s = spec(name)
    threads_before = torch.get_num_threads()
    set_threads(threads)
    try:
        torch.manual_seed(seed)
        module = s.build()
        with Timer() as timer:
            record = s.train(module, seed=seed, show_progress=show_progress, **options)
        module.eval()
        result: dict[str, Any] = {"name": name, "train": record,
                                  "seconds": round(timer.seconds, 1),
                                  "torch_threads": torch.get_num_threads()}
        result["evaluation"] = evaluate(name, module,
                                        **({} if eval_n is None else {"n": eval_n}))
    finally:
        torch.set_num_threads(threads_before)
    if save:
        out = checkpoint_path(name) if path is None else Path(path)
        result["checkpoint"] = str(out)
        result["checkpoint_bytes"] = save_checkpoint(checkpoint_state(name, module), out)
    return result


def evaluate(name: str, module: nn.Module | None = None, **options: Any) -> dict[str, Any]:
    """The model's metric on held-out generated data (``options``: ``n``, ``T``, ``seed``).
    The result holds ``metric`` (its name), the value under that name, ``target`` and
    ``passed``."""
    s = spec(name)
    if module is None:
        if not has_checkpoint(name):
            raise NIRError(f"zoo model {name!r} has no checkpoint yet; train it first "
                           f"(nrf-nir zoo train {name})", field="model")
        module = build(name)
    result: dict[str, Any] = s.evaluate(module, **options)
    value = result[s.METRIC]
    higher = getattr(s, "HIGHER_IS_BETTER", True)
    result["target"] = s.TARGET
    result["passed"] = bool(value >= s.TARGET) if higher else bool(value <= s.TARGET)
    return result


def export(name: str, module: nn.Module | None = None) -> nir.NIRGraph:
    """The model (trained weights when a checkpoint exists) as a NIR graph with its ``dt`` and
    semantics in the metadata."""
    spec(name)
    if module is None:
        module = build(name)
    from nrf_nir.exporters import export as _export

    sample = torch.zeros(1, *tuple(getattr(module, "input_shape")))  # noqa: B009
    return _export(module, sample)


def conformance_cases(T: int = 200, B: int = 16, seed: int = 0) -> list[Case]:
    """One model-level case per zoo model with a committed checkpoint: the exported graph,
    ``B`` generated samples of ``T`` steps and the model's decoding. This is the zoo's case
    provider (``nrf_nir.cases.CaseProvider``, registered there as ``zoo``), which the conformance
    suite finds by location."""
    import numpy as np

    from nrf_nir.cases import Case

    cases = []
    for name in names():
        if not has_checkpoint(name):
            continue
        s = spec(name)
        graph = export(name)
        x, _ = s.generate(B, T, seed=seed + 12_345)
        cases.append(Case(f"model/{name}", graph, {"input": np.ascontiguousarray(
            x.numpy(), dtype=np.float32)}, decode=s.DECODE, spiking=getattr(s, "SPIKING", True),
            tags=("model", "zoo", name)))
    return cases
