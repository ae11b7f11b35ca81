"""``benchmarks/bench_loihi.py`` end to end: ``--quick`` on the conv net and on the zoo's
poker-dvs writes its JSON with the ratio and ``bit_exact`` true (Lava and the ``loihi``
emulator side by side); and the emulator's pooled convolution path, which the conv net's speed
rests on, against Lava's own fixed-point convolution function."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.targets.lava.conv import lava_kernel
from nrf_nir.targets.lava.emulator import _Conv
from tests.test_target_lava import needs_lava

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_loihi.py"

def bench() -> ModuleType:
    """The benchmark script as a module (run in this process: no second interpreter start)."""
    spec = importlib.util.spec_from_file_location("bench_loihi", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@needs_lava
@pytest.mark.parametrize("net,compared", [("conv", ["if4", "output"]),
                                          ("poker-dvs", ["output", "rnn.lif"])])
def test_quick_run_writes_the_ratio_and_is_bit_exact(net: str, compared: list[str],
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    out = tmp_path / "result.json"
    code = bench().main(["--quick", "--net", net, "--repeats", "1", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["net"] == net and result["quick"] is True
    assert result["bit_exact"] is True
    assert result["compared"]["outputs"] == compared and result["compared"]["samples"] == 1
    sps = result["samples_per_s"]
    assert result["ratio_loihi_over_lava"] == pytest.approx(sps["loihi"] / sps["lava_fixed"])
    assert result["ratio_loihi_over_lava"] > 10  # hundreds measured; Lava pays per sample
    (row,) = result["emulator_by_config"]
    assert (row["B"], row["threads"], row["bit_exact"]) == (result["emulator_batch"], 1, True)
    assert len(result["load_average"]["before"]) == len(result["load_average"]["after"]) == 3
    spiking = [k for k in compared if k != "output" or net == "conv"]
    assert all(result["output_means"][k] > 0 for k in spiking)  # exactness on real activity
    assert f"wrote {out}" in capsys.readouterr().out


def lava_conv_of(weight: np.ndarray, geo, x: np.ndarray) -> np.ndarray:
    """Lava 0.10's ``PyConvModelFixed`` on each row of ``x`` ``[m, C*H*W]``: its ``conv`` on
    ``(W, H, C)`` arrays with the flipped kernel, then the 24-bit ``signed_clamp``."""
    from lava.proc.conv import utils as lava_conv

    C, H, W = geo.in_shape
    k = lava_kernel(weight).astype(np.int32)
    rows = []
    for row in x:
        xs = row.reshape(C, H, W).transpose(2, 1, 0).astype(np.int32)
        out = lava_conv.conv(xs, k, k.shape[1:3], geo.stride[::-1],
                             (geo.padding[1][0], geo.padding[0][0]), geo.dilation[::-1],
                             geo.groups)
        rows.append(lava_conv.signed_clamp(out.astype(np.int64), bits=24)
                    .transpose(2, 1, 0).reshape(-1))
    return np.stack(rows)


@needs_lava
def test_pooled_convolution_path_is_lavas_conv() -> None:
    """The conv net's ``SumPool2d(2) -> Conv2d(3x3)`` pairs are planned as 6x6 stride-2
    kernels; the emulator runs each as the sum pool, then the 3x3 block kernel
    (``_Conv.block``), and must equal Lava's convolution of the 6x6 kernel: for spikes
    (float32 path) and for graded inputs large enough to wrap 24 bits (float64 path). A kernel
    that is not constant on 2x2 blocks takes the plain path, equally exact."""
    g = bench().conv_network(18, (3, 4, 4), 8)
    fixed = nrf_nir.lower(g, "loihi", device="cpu").backend.fixed
    folded = [syn for fl in fixed.layers for syn in fl.inputs
              if syn.kind == "conv" and syn.geometry.stride == (2, 2)]
    assert len(folded) == 2 and all(syn.weight.shape[2:] == (6, 6) for syn in folded)
    rng = np.random.default_rng(7)
    for syn in folded:
        broken = np.array(syn.weight)
        broken[0, 0, 0, 1] += 2  # no longer constant on the 2x2 block at (0, 0)
        for weight, pooled in ((np.asarray(syn.weight), True), (broken, False)):
            conv = _Conv(torch.as_tensor(weight, dtype=torch.int64), syn.geometry)
            assert (conv.block is not None) is pooled
            n_in = int(np.prod(syn.geometry.in_shape))
            for x_max in (1, 40_000):
                x = rng.integers(0 if x_max == 1 else -x_max, x_max + 1, (3, n_in))
                got = conv.matmul(torch.as_tensor(x), float(x_max))
                want = lava_conv_of(weight, syn.geometry, x)
                assert np.abs(want).max() > 0
                if x_max > 1:
                    assert got.dtype == torch.int64 and conv.row_bound * x_max >= 2**23
                np.testing.assert_array_equal(got.numpy(), want)
