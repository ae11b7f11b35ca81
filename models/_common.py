"""Shared pieces of the zoo: the time-stepping wrapper, checkpoints, seeding, training loop
helpers and decoding."""

from __future__ import annotations

import inspect
import io
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nrf_nir.atomic import write_bytes
from nrf_nir.errors import NIRError
from nrf_nir.metrics import decisions  # noqa: F401 - the zoo's decoding, re-exported

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
DT = 1e-3


def _is_stateful(m: nn.Module) -> bool:
    try:
        return "state" in inspect.signature(m.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtin forward
        return False


class Stepper(nn.Module):
    """A named chain of one-step modules run over time: ``forward(x[T, B, ...]) -> [T, B, ...]``.

    ``layers`` is a plain ``nn.Sequential`` of Norse cells and torch layers; Norse cells keep
    their state between steps. ``to_nir_sequence`` hands the same chain (same parameters) to
    the exporter, so the exported node names are the layer names.
    """

    def __init__(self, layers: Iterable[tuple[str, nn.Module]], input_shape: tuple[int, ...],
                 dt: float = DT) -> None:
        super().__init__()
        self.layers = nn.Sequential(OrderedDict(layers))
        self.input_shape = tuple(int(s) for s in input_shape)
        self.dt = float(dt)
        self._stateful = [_is_stateful(m) for m in self.layers]

    def step(self, x: torch.Tensor, state: list[Any] | None = None
             ) -> tuple[torch.Tensor, list[Any]]:
        state = [None] * len(self.layers) if state is None else state
        for k, m in enumerate(self.layers):
            if self._stateful[k]:
                x, state[k] = m(x, state[k])
            else:
                x = m(x)
        return x, state

    def forward(self, x: torch.Tensor, record: bool = False) -> Any:
        state: list[Any] | None = None
        outs, hidden = [], []
        for t in range(x.shape[0]):
            if record:
                h, state = self._step_record(x[t], state)
                hidden.append(h)
                outs.append(h[-1])
            else:
                y, state = self.step(x[t], state)
                outs.append(y)
        y = torch.stack(outs)
        if record:
            names = list(self.layers._modules)
            return y, {n: torch.stack([h[k] for h in hidden]) for k, n in enumerate(names)}
        return y

    def _step_record(self, x: torch.Tensor, state: list[Any] | None
                     ) -> tuple[list[torch.Tensor], list[Any]]:
        state = [None] * len(self.layers) if state is None else state
        hidden = []
        for k, m in enumerate(self.layers):
            if self._stateful[k]:
                x, state[k] = m(x, state[k])
            else:
                x = m(x)
            hidden.append(x)
        return hidden, state

    def to_nir_sequence(self) -> nn.Module:
        return self.layers


def checkpoint_path(name: str) -> Path:
    return CHECKPOINTS / f"{name}.pt"


def save_checkpoint(module: nn.Module | dict[str, torch.Tensor], path: Path) -> int:
    """Write a state_dict (of ``module``, or the mapping itself) atomically; returns the file
    size in bytes."""
    items = module.state_dict() if isinstance(module, nn.Module) else module
    state = OrderedDict((k, v.detach().clone().contiguous()) for k, v in items.items())
    buffer = io.BytesIO()  # serialized in memory: a disk fault is then an OSError, not torch's
    torch.save(state, buffer)
    data = buffer.getvalue()
    write_bytes(path, data)
    return len(data)


def load_checkpoint(module: nn.Module, path: Path) -> nn.Module:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a broken file is a user error
        raise NIRError(f"cannot read the checkpoint ({type(exc).__name__}: {exc})",
                       file=str(path)) from None
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise NIRError(f"the checkpoint does not fit the model (missing {missing}, "
                       f"unexpected {unexpected})", file=str(path))
    return module


def rng(*seed: int) -> np.random.Generator:
    return np.random.default_rng(list(seed))


def progress(iterable: Iterable[Any], *, total: int | None = None, desc: str = "",
             enabled: bool = True) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False,
                dynamic_ncols=True)


def fit(params: Iterable[torch.nn.Parameter],
        loss_of: Callable[[int], tuple[torch.Tensor, dict[str, float]]], *, steps: int,
        lr: float, desc: str, show_progress: bool = True, cosine: bool = True
        ) -> dict[str, float]:
    """The zoo's training loop: Adam with learning rate ``lr`` (cosine-annealed to 0 over
    ``steps`` unless ``cosine=False``). ``loss_of(step)`` draws its batch, runs the model and
    returns the loss and other numbers to follow (e.g. the batch accuracy), shown on the
    progress bar. Returns each number (``loss`` included) averaged over the last 20 steps."""
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cosine else None
    history: dict[str, list[float]] = {}
    bar = progress(range(steps), total=steps, desc=desc, enabled=show_progress)
    for step in bar:
        loss, extra = loss_of(step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        for key, value in {"loss": float(loss.detach()), **extra}.items():
            history.setdefault(key, []).append(value)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix({k: f"{np.mean(v[-20:]):.4g}" for k, v in history.items()})
    return {key: float(np.mean(values[-20:])) for key, values in history.items()}


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(int(n))


TrainFn = Callable[..., dict[str, Any]]
