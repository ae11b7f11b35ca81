"""Time surfaces: a disk-speed detector (KTH PhD course, module 3, "Time surfaces").

Architecture: events ``[1, 50, 50]`` (polarity merged) -> ``Conv2d(1 -> 5, 11 x 11, same
padding, no bias)`` holding the same circular kernel (radius 5: a ring of positive weight and a
negative inner disk) in each channel -> ``LIFBoxCell`` with per-channel ``tau_mem_inv`` and
``v_th``: five amplitude channels (the slow, medium and fast detectors' inputs, and two
inhibitors: one that fires for any disk faster than the slow one, one for the fast disk) ->
inhibition ``Conv2d(5 -> 3, 9 x 9, same, no bias)``: output channel i is excited by layer-1
channel i at the centre; the slow and medium outputs are inhibited by their inhibitor over a disk
of radius 4 -> ``LIFBoxCell`` (three outputs: slow, medium, fast; per-channel thresholds and
time constants). Output ``[T, B, 3, 50, 50]`` spikes; no class decision (``decode=None``):
the task metric is each channel's selectivity for its own disk.

The lateral inhibition of the course notebook ("use the other neurons' activity to inhibit
certain channels") is feed-forward here (a second layer), so that the model is a chain NIR can
express exactly.

Training is a calibration, not gradient descent: a grid search per output channel, from fast to
slow, over its thresholds, its inhibitor's threshold and its inhibition weight (and the slow
channel's time constant), maximizing its selectivity for its own disk on generated streams (see
:func:`train`). With ``dt * tau_mem_inv = 0.5`` the layer-1 neurons are amplitude detectors (the
ring kernel's response grows with the number of events per frame, i.e. with speed: about 0.19,
0.45 and 0.69 at the disk centres). A layer-2 neuron with ``dt * tau_mem_inv = 0.5`` and a
threshold above 0.5 needs its input to spike on consecutive frames, and the slow output (``dt *
tau_mem_inv = 0.1``) integrates over about ten frames: persistence tests that the brief flickers
at a faster disk's edge do not pass, while the slow disk dwells long on each position.

Data: :func:`generate` draws three disks (radius 5) moving back and forth along the horizontal
axis in three bands (rows about 5-14, 20-29, 35-44) at about 0.035, 0.13 and 0.25 px per frame,
with the statistics of ``2404_circle.dat`` (about 5, 16 and 31 events per frame, events on the
disk's contour); :func:`load_circle` reads the real file when it is there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nrf_nir.errors import NIRError

from ._common import DT, Stepper, progress, rng

NAME = "time-surface"
SIZE = 50
INPUT_SHAPE = (1, SIZE, SIZE)
RADIUS = 5
SPEEDS = (0.035, 0.13, 0.25)  # px per frame: slow, medium, fast
BANDS = ((0, 17), (17, 32), (32, 50))  # row ranges around the three disk rows
ROWS = (9.5, 24.5, 39.5)
#: no class decision: each sample holds all three disks; the task metric is the selectivity of
#: each channel for its own band (a decision over the 7500 outputs would be a few spikes' argmax)
DECODE: str | None = None
METRIC = "selectivity"
TARGET = 1.0
SPIKING = True
T_TRAIN = 300
T_EVAL = 500
T_TEST = 120  # steps for the quick exactness test
QUICK_EVAL = {"n": 4}  # a modest held-out set for the test suite
INH_SIZE = 9

# Calibrated values are stored in the checkpoint; these are the starting point of the search.
# th1: layer-1 thresholds of (slow, medium, fast, slow's inhibitor, medium's inhibitor)
DEFAULTS: dict[str, Any] = {"th1": (0.063, 0.25, 0.5, 0.087, 0.5), "tau1": 500.0,
                            "w_inh": (6.0, 6.0), "th2": (0.8, 0.6, 0.45),
                            "tau2": (500.0, 500.0, 500.0)}


def circular_kernel(radius: float = RADIUS, size: int = 2 * RADIUS + 1) -> torch.Tensor:
    """``[size, size]``: a Gaussian ring (width 0.5 px) of total weight 1 at ``radius`` and a
    negative inner disk (``d < radius - 1.5``) of total weight -0.5."""
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64) - c,
                            torch.arange(size, dtype=torch.float64) - c, indexing="ij")
    dist = torch.sqrt(yy**2 + xx**2)
    ring = torch.exp(-((dist - radius) ** 2) / (2 * 0.5**2))
    ring = ring / ring.sum()
    inner = (dist < radius - 1.5).to(torch.float64)
    return (ring - 0.5 * inner / inner.sum()).to(torch.float32)


def _disk(size: int, radius: float) -> torch.Tensor:
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size) - c, torch.arange(size) - c, indexing="ij")
    return ((yy**2 + xx**2) <= radius * radius).to(torch.float32)


class TimeSurface(Stepper):
    """The detector; its neuron parameters are buffers (so they are in the ``state_dict``)
    shared with the Norse cells."""

    tau1: torch.Tensor
    th1: torch.Tensor
    tau2: torch.Tensor
    th2: torch.Tensor
    inhibit: nn.Conv2d

    def __init__(self) -> None:
        import norse.torch as snn

        tau1 = torch.full((5, 1, 1), DEFAULTS["tau1"])
        th1 = torch.tensor(DEFAULTS["th1"]).view(5, 1, 1)
        tau2 = torch.tensor(DEFAULTS["tau2"]).view(3, 1, 1)
        th2 = torch.tensor(DEFAULTS["th2"]).view(3, 1, 1)
        conv = nn.Conv2d(1, 5, 2 * RADIUS + 1, padding="same", bias=False)
        inhibit = nn.Conv2d(5, 3, INH_SIZE, padding="same", bias=False)
        layers = [
            ("conv", conv),
            ("lif1", snn.LIFBoxCell(snn.LIFBoxParameters(tau_mem_inv=tau1, v_th=th1), dt=DT)),
            ("inhibit", inhibit),
            ("lif2", snn.LIFBoxCell(snn.LIFBoxParameters(tau_mem_inv=tau2, v_th=th2), dt=DT)),
        ]
        super().__init__(layers, INPUT_SHAPE, DT)
        self.__dict__["inhibit"] = inhibit  # a plain reference (the module is in layers)
        for name, t in (("tau1", tau1), ("th1", th1), ("tau2", tau2), ("th2", th2)):
            self.register_buffer(name, t)  # the same tensors the cells read
        with torch.no_grad():
            conv.weight.copy_(circular_kernel().expand(5, 1, -1, -1))
        self.set_inhibition(DEFAULTS["w_inh"])

    def set_inhibition(self, w_inh: tuple[float, float] | list[float]) -> None:
        """Output channel i (slow, medium, fast) is excited (weight 1, centre pixel) by layer-1
        channel i; the slow and medium outputs are inhibited, with total weights
        ``w_inh = (slow, medium)`` spread over a disk of radius 4, by their inhibitors, layer-1
        channels 3 (fires for disks faster than slow) and 4 (fires for the fast disk)."""
        disk = _disk(INH_SIZE, 4.0)
        disk = disk / disk.sum()
        w = torch.zeros(3, 5, INH_SIZE, INH_SIZE)
        c = INH_SIZE // 2
        pairs = ((0, 3), (1, 4))
        for i in range(3):
            w[i, i, c, c] = 1.0
        for (i, j), weight in zip(pairs, w_inh, strict=True):
            w[i, j] -= float(weight) * disk
        with torch.no_grad():
            self.inhibit.weight.copy_(w)

    def set_params(self, p: dict[str, Any]) -> None:
        with torch.no_grad():
            self.th1.copy_(torch.tensor(p["th1"], dtype=torch.float32).view(5, 1, 1))
            self.tau1.fill_(float(p["tau1"]))
            self.th2.copy_(torch.tensor(p["th2"], dtype=torch.float32).view(3, 1, 1))
            self.tau2.copy_(torch.tensor(p["tau2"], dtype=torch.float32).view(3, 1, 1))
        self.set_inhibition(p["w_inh"])


def build() -> TimeSurface:
    return TimeSurface()


# --------------------------------------------------------------------------------------------
# Data


def generate(n: int, T: int = T_TRAIN, seed: int = 0, *, shuffle_bands: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` event streams ``[T, n, 1, 50, 50]`` (0/1) and, per sample, the band of each speed
    ``[n, 3]`` (``bands[k, s]`` = band index of the disk with speed ``s``; slow, medium, fast).

    Three disks of radius 5 move along the horizontal axis between centres 5 and 45 (reflecting
    at the ends) from random positions and directions, one per band (rows 9.5, 24.5, 39.5 +- 1),
    at ``SPEEDS`` x U(0.9, 1.1); with ``shuffle_bands`` the speeds are assigned to bands at
    random (in ``2404_circle.dat`` slow is on top). Each frame, a pixel at distance ``d`` from a
    disk's centre, in direction ``theta`` from the direction of motion, fires when
    ``|d - 5| <= 0.5 + 0.5 |cos theta|`` with probability
    ``min(1, (0.02 + 3.16 speed)(0.05 + |cos theta|))``: the leading and trailing edges fire most
    (70% of the events within 45 degrees of the motion axis) and the disks give about 5, 16 and
    31 events per frame, as in the file.
    """
    r = rng(seed, 3)
    bands = np.stack([r.permutation(3) if shuffle_bands else np.arange(3) for _ in range(n)])
    speed = np.asarray(SPEEDS)[None] * r.uniform(0.9, 1.1, (n, 3))
    start = r.uniform(5, 45, (n, 3))
    direction = r.choice([-1.0, 1.0], (n, 3))
    row = np.asarray(ROWS)[bands] + r.uniform(-1, 1, (n, 3))  # row of each speed's disk
    t = np.arange(T)[:, None, None]
    # reflecting motion between 5 and 45: triangle wave of the unfolded position
    pos = start[None] - 5 + direction[None] * speed[None] * t  # [T, n, 3]
    pos = np.mod(pos, 80.0)
    cx = 5 + np.where(pos > 40, 80 - pos, pos)
    yy, xx = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    x = np.zeros((T, n, 1, SIZE, SIZE), np.float32)
    q = 0.02 + 3.16 * speed  # [n, 3]
    for s in range(3):
        dx = xx[None, None] - cx[:, :, s, None, None]  # [T, n, H, W]
        d = np.hypot(yy[None, None] - row[None, :, s, None, None], dx)
        cos = np.abs(dx) / np.maximum(d, 1e-9)  # 1 where the edge moves along its normal
        on_ring = np.abs(d - RADIUS) <= 0.5 + 0.5 * cos
        p = np.minimum(1.0, q[None, :, s, None, None] * (0.05 + cos))
        fire = on_ring & (r.random(on_ring.shape) < p)
        x[:, :, 0] = np.maximum(x[:, :, 0], fire)
    return torch.from_numpy(x), torch.from_numpy(bands)


def load_circle(path: str | os.PathLike[str] | None = None) -> torch.Tensor:
    """``2404_circle.dat`` as dense frames ``[500, 1, 1, 50, 50]`` float32 (time, batch,
    channel, rows, columns), from ``path`` or :func:`circle_path`."""
    p = Path(path) if path is not None else circle_path()
    if p is None:
        raise NIRError(f"no time-surface data: pass the path of 2404_circle.dat or set "
                       f"{DATA_ENV} to the folder that holds it", field="path")
    if not p.exists():
        raise NIRError("no such file (the time-surface data is not shipped with nrf-nir)",
                       file=str(p))
    data = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(data, torch.Tensor) or tuple(data.shape[1:]) != (SIZE, SIZE):
        raise NIRError(f"expected a [T, 50, 50] tensor, got {type(data).__name__} "
                       f"{list(getattr(data, 'shape', []))}", file=str(p))
    frames = data.to_dense() if data.is_sparse else data
    return frames.to(torch.float32)[:, None, None]


#: The environment variable naming the folder that holds the (unshipped) real recordings.
DATA_ENV = "NRF_NIR_DATA"


def circle_path() -> Path | None:
    """Where :func:`evaluate` looks for the real file: ``2404_circle.dat`` in the folder named
    by ``$NRF_NIR_DATA`` (None when it is not set)."""
    folder = os.environ.get(DATA_ENV)
    return Path(folder) / "2404_circle.dat" if folder else None


# the real file: slow disk in the top band, medium in the middle, fast at the bottom
CIRCLE_BANDS = (0, 1, 2)


# --------------------------------------------------------------------------------------------
# Evaluation and calibration


def band_counts(z: torch.Tensor) -> torch.Tensor:
    """Spike counts ``[B, channel, band]`` of outputs ``[T, B, 3, 50, 50]``."""
    return torch.stack([z[:, :, :, lo:hi].sum(dim=(0, 3, 4)) for lo, hi in BANDS], dim=-1)


def _scores(counts: torch.Tensor, bands: torch.Tensor) -> dict[str, float]:
    """counts ``[B, 3, 3]`` (channel, band); bands ``[B, 3]`` (speed -> band)."""
    own = torch.gather(counts, 2, bands[:, :, None])[..., 0]  # [B, channel]: at its own disk
    mine = torch.nn.functional.one_hot(bands, 3).bool()  # [B, channel, band]
    other_max = counts.masked_fill(mine, float("-inf")).max(dim=2).values
    others = counts.sum(dim=2) - own
    strict = (own > 0) & (own > other_max)
    purity = own / counts.sum(dim=2).clamp(min=1)
    return {"selectivity": float(strict.float().mean()),
            "purity_min": float(purity.min()), "purity_mean": float(purity.mean()),
            "own_spikes_min": float(own.min()), "off_spikes_mean": float(others.mean())}


def evaluate(module: nn.Module, *, n: int = 8, T: int = T_EVAL, seed: int = 900_003,
             real: bool = True) -> dict[str, Any]:
    """``selectivity``: the fraction of (sample, channel) pairs where the channel spikes most
    (strictly) on the disk of its own speed; ``purity``: its own-disk share of its spikes.
    With ``real`` and the file present, the same on ``2404_circle.dat`` (``real_*``)."""
    module.eval()
    x, bands = generate(n, T, seed=seed)
    with torch.no_grad():
        counts = band_counts(module(x))
    result: dict[str, Any] = {"metric": METRIC, **_scores(counts, bands), "n": n, "T": T,
                              "seed": seed}
    path = circle_path()
    if real and path is not None and path.exists():
        frames = load_circle(path)
        with torch.no_grad():
            c = band_counts(module(frames))
        s = _scores(c, torch.tensor([CIRCLE_BANDS]))
        result.update({f"real_{k}": v for k, v in s.items()})
        result["real_counts"] = c[0].int().tolist()
    elif real:
        result["real"] = (f"skipped: {path} is not there" if path is not None else
                          f"skipped: {DATA_ENV} is not set")
    return result


def _channel_score(counts: torch.Tensor, bands: torch.Tensor, k: int) -> float:
    """``2 selectivity + min purity + mean purity + min(own spikes, 10) / 20`` of channel
    ``k`` alone."""
    own = counts[torch.arange(counts.shape[0]), k, bands[:, k]]
    mine = torch.nn.functional.one_hot(bands[:, k], 3).bool()
    other_max = counts[:, k].masked_fill(mine, float("-inf")).max(dim=1).values
    strict = ((own > 0) & (own > other_max)).float()
    purity = own / counts[:, k].sum(dim=1).clamp(min=1)
    return float(2 * strict.mean() + purity.min() + purity.mean() + own.min().clamp(max=10) / 20)


def _copy(p: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in p.items()}


# per output channel (fast, then medium, then slow), the grid of (parameter, index) -> values
# over its own layer-1 threshold, its inhibitor's threshold, its layer-2 threshold and weight
# (and, for the slow channel, its layer-2 time constant)
GRID: list[tuple[int, dict[tuple[str, int], tuple[float, ...]]]] = [
    (2, {("th1", 2): (0.35, 0.42, 0.5, 0.58), ("th2", 2): (0.3, 0.45, 0.6, 0.75)}),
    (1, {("th1", 1): (0.2, 0.25), ("th1", 4): (0.25, 0.3, 0.35), ("th2", 1): (0.45, 0.6),
         ("w_inh", 1): (13.0, 25.0, 40.0)}),
    (0, {("th1", 0): (0.05, 0.063), ("th1", 3): (0.087, 0.1), ("th2", 0): (0.3, 0.45),
         ("tau2", 0): (50.0, 100.0), ("w_inh", 0): (6.0, 13.0)}),
]


def train(module: TimeSurface, *, n: int = 6, T: int = T_TRAIN, seed: int = 0,
          show_progress: bool = True) -> dict[str, Any]:
    """Calibration on ``n`` generated streams of ``T`` frames, one channel at a time from fast
    to slow (a channel depends only on its own layer-1 neuron and the faster channels that
    inhibit it): a grid over its layer-1 threshold, its inhibitor's threshold, its layer-2
    threshold and its inhibition weight (``GRID``; for the slow channel also its layer-2 time
    constant) maximizing ``2 selectivity + min purity + mean purity + min(own spikes, 10) / 20``
    of that channel. The other time constants stay at ``tau_mem_inv = 500``."""
    import itertools

    x, bands = generate(n, T, seed=seed * 1_000_003 + 1)
    params = _copy(DEFAULTS)
    evaluated = 0
    scores = {}
    total = sum(int(np.prod([len(v) for v in g.values()])) for _, g in GRID)
    bar = progress(range(total), total=total, desc=NAME, enabled=show_progress)
    it = iter(bar)
    for channel, grid in GRID:
        best, best_score = None, float("-inf")
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            next(it, None)
            cand = _copy(params)
            for (key, idx), value in zip(keys, values, strict=True):
                cand[key][idx] = value
            module.set_params(cand)
            with torch.no_grad():
                counts = band_counts(module(x))
            score = _channel_score(counts, bands, channel)
            evaluated += 1
            if score > best_score:
                best, best_score = cand, score
        assert best is not None
        params = best
        scores[("slow", "medium", "fast")[channel]] = best_score
    for _ in it:
        pass
    module.set_params(params)
    return {"n": n, "T": T, "seed": seed, "evaluated": evaluated, "channel_scores": scores,
            "params": {k: (list(map(float, v)) if isinstance(v, list) else float(v))
                       for k, v in params.items()}}
