"""TTS-VQVAE: the spiking encoder blocks of a (tiny) temporal-codebook VQ-VAE.

The full model (:class:`TTSVQVAE`, a small version of the paper's architecture) takes a static
image repeated over ``T = 4`` steps ("direct" SNN input encoding) through a spiking encoder, a
vector-quantizing codebook and a spiking decoder, and reconstructs the image from the decoder's
mean over time. Its neurons are BrainCog's ``LIFNode``: ``v = v + (x - v) / tau`` with
``tau = 2`` steps, spike on ``v > 0.5``, hard reset to 0 -- exactly Norse's ``LIFBoxCell`` with
``dt * tau_mem_inv = 0.5`` (BrainCog's Heaviside may spike on ``v >= 0.5``; Norse and NIR use
``>``).

Only the encoder's spiking blocks have NIR equivalents: the zoo model ``tts-encoder`` is
``Conv2d(1 -> 16, 3) -> LIF -> Conv2d(16 -> 32, 3, stride 2) -> LIF -> Conv2d(32 -> 32, 3,
stride 2) -> LIF`` (input ``[1, 16, 16]``, output spikes ``[32, 4, 4]``; no class
decision: ``decode=None``),
sharing its parameters with the full model. GroupNorm, the spiking attention block, the
``x * LIF(x)`` gating, the codebook's argmin and the transposed-convolution upsampling have no
NIR node: exporting :func:`build_full` fails with one error naming each of them by path.

Data: :func:`generate` draws 16 x 16 grayscale images of one or two random shapes (disks,
rectangles, triangles, crosses); the metric is the full model's reconstruction error relative to
the images' variance.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ._common import DT, Stepper, checkpoint_path, fit, rng

NAME = "tts-encoder"
SIZE = 16
INPUT_SHAPE = (1, SIZE, SIZE)
T_STEPS = 4  # the paper's time steps
T_EVAL = T_STEPS
#: no class decision: an encoder; its task metric is the full model's reconstruction error
DECODE: str | None = None
METRIC = "relative_mse"
TARGET = 0.35
HIGHER_IS_BETTER = False
SPIKING = True
QUICK_EVAL = {"n": 256}
EMBED, CODES = 16, 64


def lif_cell() -> nn.Module:
    """BrainCog's LIFNode (tau = 2 dt, v_th 0.5, hard reset to 0) as a Norse cell."""
    import norse.torch as snn

    return snn.LIFBoxCell(snn.LIFBoxParameters(tau_mem_inv=torch.as_tensor(0.5 / DT),
                                               v_th=torch.as_tensor(0.5),
                                               v_reset=torch.as_tensor(0.0)), dt=DT)


def encoder_blocks() -> Stepper:
    layers = [
        ("conv_in", nn.Conv2d(1, 16, 3, padding=1)), ("lif_in", lif_cell()),
        ("down1", nn.Conv2d(16, 32, 3, stride=2, padding=1)), ("lif1", lif_cell()),
        ("down2", nn.Conv2d(32, 32, 3, stride=2, padding=1)), ("lif2", lif_cell()),
    ]
    return Stepper(layers, INPUT_SHAPE, DT)


# --------------------------------------------------------------------------------------------
# The full (tiny) temporal-codebook VQ-VAE: multi-step modules on [T, B, C, H, W]


def _fold(f: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a stateless per-step module to every step at once."""
    T, B = x.shape[:2]
    y = f(x.reshape(T * B, *x.shape[2:]))
    return y.reshape(T, B, *y.shape[1:])


class MultiStepLIF(nn.Module):
    """A LIFNode over a whole sequence ``[T, B, ...]``."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = lif_cell()

    def to_nir_sequence(self) -> nn.Module:
        """Stepped over time this is just its cell, which NIR expresses."""
        return self.cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state, out = None, []
        for t in range(x.shape[0]):
            z, state = self.cell(x[t], state)
            out.append(z)
        return torch.stack(out)


class LIFGate(nn.Module):
    """The paper's LIF-nonlinearity: ``x * LIF(x)`` (a product of two signals: no NIR node)."""

    def __init__(self) -> None:
        super().__init__()
        self.lif = MultiStepLIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.lif(x)


class AttnBlockSnn(nn.Module):
    """Spiking self-attention over spatial positions, per time step, with a residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.lif = MultiStepLIF()
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lif(_fold(self.norm, x))
        q, k, v = _fold(self.q, h), _fold(self.k, h), _fold(self.v, h)
        T, B, C, H, W = q.shape
        q, k, v = (a.reshape(T * B, C, H * W) for a in (q, k, v))
        w = torch.softmax(torch.einsum("nci,ncj->nij", q, k) / C**0.5, dim=-1)
        h = torch.einsum("nij,ncj->nci", w, v).reshape(T, B, C, H, W)
        return x + _fold(self.proj_out, h)


class EncoderSnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = encoder_blocks()  # the expressible part: the zoo's tts-encoder
        self.attn = AttnBlockSnn(32)
        self.norm_out = nn.GroupNorm(8, 32)
        self.gate = LIFGate()
        self.conv_out = nn.Conv2d(32, EMBED, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attn(self.blocks(x))
        return _fold(self.conv_out, self.gate(_fold(self.norm_out, h)))


class VectorQuantizerSnn(nn.Module):
    """Nearest codebook vector per position and time step (argmin: no NIR node), with the
    straight-through gradient and the VQ-VAE codebook + commitment loss."""

    def __init__(self, codes: int = CODES, dim: int = EMBED, beta: float = 0.25) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codes, dim)
        self.embedding.weight.data.uniform_(-1.0 / codes, 1.0 / codes)
        self.beta = beta

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = z.movedim(2, -1).reshape(-1, z.shape[2])
        d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.embedding.weight.t()
             + self.embedding.weight.pow(2).sum(1)[None])
        idx = d.argmin(dim=1)
        zq = self.embedding(idx).reshape(*z.movedim(2, -1).shape).movedim(-1, 2)
        loss = ((zq - z.detach()) ** 2).mean() + self.beta * ((zq.detach() - z) ** 2).mean()
        zq = z + (zq - z).detach()
        return zq, loss, idx


class DecoderSnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(EMBED, 32, 3, padding=1)
        self.lif_in = MultiStepLIF()
        self.up1 = nn.ConvTranspose2d(32, 32, 4, stride=2, padding=1)
        self.lif1 = MultiStepLIF()
        self.up2 = nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1)
        self.norm_out = nn.GroupNorm(8, 16)
        self.lif_out = MultiStepLIF()
        self.conv_out = nn.Conv2d(16, 1, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.lif_in(_fold(self.conv_in, z))
        h = self.lif1(_fold(self.up1, h))
        h = self.lif_out(_fold(self.norm_out, _fold(self.up2, h)))
        return _fold(self.conv_out, h)


class TTSVQVAE(nn.Module):
    """Encoder -> quant_conv -> codebook -> post_quant_conv -> decoder -> mean over time."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = EncoderSnn()
        self.quant_conv = nn.Conv2d(EMBED, EMBED, 1)
        self.quantize = VectorQuantizerSnn()
        self.post_quant_conv = nn.Conv2d(EMBED, EMBED, 1)
        self.decoder = DecoderSnn()
        self.input_shape = INPUT_SHAPE

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: ``[T, B, 1, 16, 16]`` -> (reconstruction ``[B, 1, 16, 16]``, VQ loss)."""
        z = _fold(self.quant_conv, self.encoder(x))
        zq, vq_loss, _ = self.quantize(z)
        rec = self.decoder(_fold(self.post_quant_conv, zq)).mean(dim=0)  # SnnDecoder "mean"
        return rec, vq_loss


def build_full(pretrained: bool = True) -> TTSVQVAE:
    """The full model (its export fails: GroupNorm, attention, gating, codebook, upsampling)."""
    model = TTSVQVAE()
    path = checkpoint_path(NAME)
    if pretrained and path.exists():
        from ._common import load_checkpoint

        load_checkpoint(model, path)
    model.eval()
    return model


def build() -> Stepper:
    """The expressible encoder blocks; ``full`` (not a submodule) is the model they belong to."""
    return _encoder_of(TTSVQVAE())


def _encoder_of(full: TTSVQVAE) -> Stepper:
    enc = full.encoder.blocks
    object.__setattr__(enc, "full", full)  # not registered: the encoder's state_dict stays its own
    return enc


def full_of(module: nn.Module) -> TTSVQVAE:
    """The full model that the encoder blocks ``module`` belong to."""
    return cast(TTSVQVAE, module.__dict__["full"])


def load_pretrained(module: Stepper, path: Any) -> Stepper:
    """The checkpoint holds the full model; load it and hand back its encoder blocks."""
    from ._common import load_checkpoint

    load_checkpoint(full_of(module), path)
    return module


def checkpoint_state(module: Stepper) -> OrderedDict[str, torch.Tensor]:
    """What the checkpoint stores: the full model's state_dict (the decoder is needed for the
    reconstruction metric)."""
    return OrderedDict(full_of(module).state_dict())


# --------------------------------------------------------------------------------------------
# Data


def images(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` grayscale images ``[n, 1, 16, 16]`` in [0, 1]: one or two shapes (disk, rectangle,
    triangle, cross) of random size, position and brightness (0.4-1) on black."""
    r = rng(seed, 4)
    yy, xx = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5, indexing="ij")
    out = np.zeros((n, SIZE, SIZE), np.float32)
    for k in range(n):
        for _ in range(r.integers(1, 3)):
            kind = r.integers(0, 4)
            cx, cy = r.uniform(3, 13, 2)
            s = r.uniform(2.0, 5.0)
            level = r.uniform(0.4, 1.0)
            if kind == 0:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= s * s
            elif kind == 1:
                a, b = s, r.uniform(1.5, 5.0)
                mask = (np.abs(xx - cx) <= a) & (np.abs(yy - cy) <= b)
            elif kind == 2:
                mask = (yy - cy <= s) & (yy - cy >= -s) & (np.abs(xx - cx) <= (yy - cy + s) / 2)
            else:
                w = max(1.0, s / 3)
                mask = ((np.abs(xx - cx) <= w) & (np.abs(yy - cy) <= s)) | \
                    ((np.abs(yy - cy) <= w) & (np.abs(xx - cx) <= s))
            out[k][mask] = np.maximum(out[k][mask], level)
    return torch.from_numpy(out[:, None])


def generate(n: int, T: int = T_STEPS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images repeated over ``T`` steps (direct encoding) ``[T, n, 1, 16, 16]``, and the
    images ``[n, 1, 16, 16]`` (the reconstruction targets)."""
    img = images(n, seed)
    return img[None].expand(T, *img.shape).contiguous(), img


# --------------------------------------------------------------------------------------------
# Training and evaluation


def train(module: Stepper, *, steps: int = 600, batch: int = 64, lr: float = 2e-3,
          seed: int = 0, T: int = T_STEPS, init_gain: float = 4.0,
          show_progress: bool = True) -> dict[str, Any]:
    """Train the full VQ-VAE (and so its encoder blocks): reconstruction MSE + VQ loss. The
    encoder blocks' convolutions start from torch's initialisation times ``init_gain`` (so
    that their LIF neurons spike from the start)."""
    full = full_of(module)
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in module.layers:
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(init_gain)
    full.train()

    def loss_of(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x, target = generate(batch, T, seed=seed * 1_000_003 + step)
        rec, vq_loss = full(x)
        return torch.nn.functional.mse_loss(rec, target) + vq_loss, {}

    final = fit(full.parameters(), loss_of, steps=steps, lr=lr, desc=NAME,
                show_progress=show_progress)
    full.eval()
    return {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "T": T,
            "init_gain": init_gain, "final_loss": final["loss"]}


def evaluate(module: nn.Module, *, n: int = 512, seed: int = 900_004) -> dict[str, Any]:
    """``relative_mse``: the full model's reconstruction MSE over the images' variance (1 for
    predicting the mean image); plus the encoder's spike rate and the codebook use."""
    full = full_of(module)
    full.eval()
    x, target = generate(n, T_STEPS, seed=seed)
    with torch.no_grad():
        rec, _ = full(x)
        spikes = module(x)
        _, _, idx = full.quantize(_fold(full.quant_conv, full.encoder(x)))
    mse = float(((rec - target) ** 2).mean())
    var = float(((target - target.mean(dim=0)) ** 2).mean())
    return {"metric": METRIC, "relative_mse": mse / var, "mse": mse,
            "encoder_spike_rate": float(spikes.mean()),
            "codes_used": int(idx.unique().numel()), "n": n, "T": T_STEPS, "seed": seed}
