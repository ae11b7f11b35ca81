"""The reference's fused neuron kernel (``nrf_nir.fused``): bit-identical to the torch loops it
replaces (spikes and states, float32 and float64, every flag it mirrors), and the torch loop
wherever it does not apply (no numba, not CPU, not contiguous, a tiny chunk, a compile failure,
switched off)."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir import fused
from nrf_nir.reference import Neuron, make_layer
from nrf_nir.semantics import Semantics
from nrf_nir.validate import validate
from tests.helpers import chain, spikes

CPU = torch.device("cpu")
DTYPES = (torch.float32, torch.float64)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns (so that -0.0 and 0.0 differ, and NaNs compare)."""
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int64)


def _node(kind: str, shape: tuple[int, ...], rng: np.random.Generator, *, per_neuron: bool,
          leak: bool, reset: bool, r: bool) -> nir.NIRNode:
    """A neuron of ``kind`` (lif, cubalif, li, cubali) with per-neuron or uniform parameters;
    ``leak``/``reset``/``r``: a non-zero v_leak / v_reset, an r that is not 1."""
    def p(lo: float, hi: float, uniform: float) -> np.ndarray:
        return rng.uniform(lo, hi, shape) if per_neuron else np.full(shape, uniform)

    zeros, ones = np.zeros(shape), np.ones(shape)
    common = {"v_leak": p(-0.2, 0.2, 0.1) if leak else zeros, "r": p(0.5, 2, 1.5) if r else ones}
    firing = {"v_threshold": p(0.5, 1.5, 1.0), "v_reset": p(-0.3, 0.3, 0.2) if reset else zeros}
    if kind == "lif":
        return nir.LIF(tau=p(0.005, 0.05, 0.01), **common, **firing)
    if kind == "li":
        return nir.LI(tau=p(0.005, 0.05, 0.01), **common)
    cuba = {"tau_mem": p(0.005, 0.05, 0.01), "tau_syn": p(0.002, 0.02, 0.005),
            "w_in": p(0.5, 2, 1.0) if per_neuron else ones}
    if kind == "cubalif":
        return nir.CubaLIF(**cuba, **common, **firing)
    return nir.CubaLI(**cuba, **common)


def _params(node: nir.NIRNode) -> dict[str, Any]:
    return {k: v for k, v in vars(node).items() if isinstance(v, np.ndarray)}


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether each fused attempt ran the kernel (True) or fell back (False)."""
    calls: list[bool] = []
    run_chunk = fused.run_chunk

    def spy(*args: Any, **kwargs: Any) -> bool:
        ran = run_chunk(*args, **kwargs)
        calls.append(ran)
        return ran

    monkeypatch.setattr(fused, "run_chunk", spy)
    monkeypatch.delenv(fused.ENV, raising=False)
    yield calls


def _layer_runs(node: nir.NIRNode, sem: Semantics, x: torch.Tensor, *, use: bool,
                chunks: int = 2) -> list[torch.Tensor]:
    """The layer's outputs of ``chunks`` consecutive chunks of ``x`` (the state carried
    across), then its final state."""
    shape = tuple(x.shape[2:])
    layer = make_layer(node, _params(node), shape, shape, sem, x.dtype, CPU, fused=use)
    assert isinstance(layer, Neuron)
    state = layer.init_state(x.shape[1])
    outs = []
    for part in x.chunk(chunks):
        out = torch.empty_like(part)
        state = layer.run([part] if layer.separate else part, state, out, None)
        outs.append(out)
    return [*outs, *state]


numba_required = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                    reason="the kernel needs numba")

KINDS = [("lif", th, rs) for th in ("gt", "ge") for rs in ("value", "subtract")] + [
    ("cubalif", th, rs) for th in ("gt", "ge") for rs in ("value", "subtract")] + [
    ("li", "gt", "value"), ("cubali", "gt", "value")]


@numba_required
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("kind", "threshold", "reset_mode"), KINDS)
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
def test_bit_identical_to_the_torch_loops(kernel_calls, dtype, kind, threshold, reset_mode,
                                          per_neuron):
    """Every flag combination the kernel mirrors, on random inputs that fire often, two chunks
    with the state carried: outputs and states equal bit for bit."""
    rng = np.random.default_rng(3)
    shape = (4, 37)
    sem = Semantics(dt=1e-3, threshold=threshold, reset=reset_mode)
    x = torch.from_numpy(rng.normal(0.4, 1.2, (40, 3, *shape))).to(dtype)
    for leak, reset, r in [(False, False, False), (True, True, False), (True, False, True),
                           (False, True, True)]:
        node = _node(kind, shape, rng, per_neuron=per_neuron, leak=leak, reset=reset, r=r)
        want = _layer_runs(node, sem, x, use=False)
        kernel_calls.clear()
        got = _layer_runs(node, sem, x, use=True)
        assert kernel_calls == [True, True], "the kernel did not run"
        for a, b in zip(want, got, strict=True):
            assert torch.equal(_bits(a), _bits(b)), (leak, reset, r)
        if kind in ("lif", "cubalif"):
            assert 0 < float(want[0].mean()) < 0.9  # spikes happen, not everywhere


@numba_required
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["lif", "cubalif", "li"])
@pytest.mark.parametrize("threshold", ["gt", "ge"])
def test_non_finite_values_as_the_torch_loops(kernel_calls, dtype, kind, threshold):
    """inf, -inf, NaN and huge inputs: the same NaNs in the same places, every other value
    equal (torch's sign(NaN) is 0, so a NaN membrane fires under ge in Firing.fire)."""
    rng = np.random.default_rng(5)
    shape = (120,)
    x = rng.normal(0.3, 1.0, (20, 2, *shape))
    u = rng.random(x.shape)
    x[u < 0.01], x[(u > 0.5) & (u < 0.51)], x[u > 0.995] = np.inf, -np.inf, np.nan
    x[(u > 0.3) & (u < 0.32)] = 1e300
    xt = torch.from_numpy(x).to(dtype)
    node = _node(kind, shape, rng, per_neuron=True, leak=True, reset=True, r=False)
    sem = Semantics(dt=1e-3, threshold=threshold)
    want = _layer_runs(node, sem, xt, use=False, chunks=1)
    got = _layer_runs(node, sem, xt, use=True, chunks=1)
    assert kernel_calls == [True]
    for a, b in zip(want, got, strict=True):
        assert torch.equal(a.isnan(), b.isnan())
        assert torch.equal(a.nan_to_num(nan=7.0), b.nan_to_num(nan=7.0))
    assert bool(want[0].isnan().any() or want[-1].isnan().any())  # the case is exercised


def _mixed_graph(n: int) -> nir.NIRGraph:
    """input -> Affine -> LIF (v_leak, v_reset) -> Affine -> CubaLIF -> Affine -> LI."""
    rng = np.random.default_rng(11)
    lif = nir.LIF(tau=rng.uniform(0.005, 0.02, n), r=np.ones(n), v_leak=np.full(n, 0.05),
                  v_threshold=np.ones(n), v_reset=np.full(n, -0.1))
    cuba = nir.CubaLIF(tau_mem=np.full(n, 0.01), tau_syn=np.full(n, 0.005), r=np.ones(n),
                       v_leak=np.zeros(n), v_threshold=np.full(n, 0.8), v_reset=np.zeros(n))
    li = nir.LI(tau=np.full(4, 0.02), r=np.ones(4), v_leak=np.zeros(4))

    def affine(a: int, b: int) -> nir.Affine:
        return nir.Affine(weight=rng.normal(0, 2.0 / np.sqrt(a), (b, a)),
                          bias=rng.normal(0.6, 0.2, b))

    return chain(affine(8, n), lif, affine(n, n), cuba, affine(n, 4), li, shape=(8,))


@numba_required
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("steps", [7, 60], ids=["9_chunks", "one_chunk"])
def test_whole_runs_equal_with_the_kernel_off(kernel_calls, dtype, batch, steps):
    """nrf_nir.run with the kernel on and off (fused=False): every output and recorded
    neuron output equal bit for bit, the state carried across chunks of ``steps`` steps."""
    graph = _mixed_graph(300)
    x = spikes((60, batch, 8), rate=0.3, seed=2)
    record = ("n1", "n3")
    outputs = sum(math.prod(s) for s in validate(graph).out_shapes.values())
    chunk_bytes = steps * batch * torch.finfo(dtype).bits // 8 * outputs  # runner.chunk_steps
    want = nrf_nir.run(graph, x, dtype=dtype, device="cpu", record=record,
                       chunk_bytes=chunk_bytes, fused=False)
    assert kernel_calls == []
    got = nrf_nir.run(graph, x, dtype=dtype, device="cpu", record=record,
                      chunk_bytes=chunk_bytes)
    assert kernel_calls == [True] * (3 * -(-60 // steps))  # 3 neurons, every chunk
    assert set(got) == set(want)
    for key, value in want.items():
        assert torch.equal(_bits(value), _bits(got[key])), key
    assert float(want["n1"].mean()) > 0.01 and float(want["n3"].mean()) > 0.01


@numba_required
def test_recorded_states_take_the_torch_loop(kernel_calls):
    """A recorded membrane needs every step's state: that neuron runs its torch loop (and the
    results do not change)."""
    graph = _mixed_graph(300)
    x = spikes((30, 2, 8), rate=0.3, seed=4)
    want = nrf_nir.run(graph, x, device="cpu", record=("n1.v",), fused=False)
    got = nrf_nir.run(graph, x, device="cpu", record=("n1.v",))
    assert kernel_calls == [True, True]  # n3 and n5; n1 fell back before asking
    for key, value in want.items():
        assert torch.equal(value, got[key]), key


def test_the_switches_keep_the_torch_loop(kernel_calls, monkeypatch):
    """NRF_NIR_FUSED=0 and fused=False never ask for the kernel."""
    graph = _mixed_graph(300)
    x = spikes((30, 2, 8), rate=0.3, seed=4)
    want = nrf_nir.run(graph, x, device="cpu", fused=False)
    monkeypatch.setenv(fused.ENV, "0")
    got = nrf_nir.run(graph, x, device="cpu")
    assert kernel_calls == []
    assert not fused.enabled()
    monkeypatch.setenv(fused.ENV, "1")
    assert fused.enabled() and not fused.enabled(False)
    for key, value in want.items():
        assert torch.equal(value, got[key]), key


def _lif_case(T: int = 8, B: int = 2, n: int = 600, dtype: torch.dtype = torch.float32
              ) -> tuple[fused.NeuronKind, np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    kind = fused.NeuronKind(li=False, synapse=False, spiking=True, has_leak=False)
    prm = fused.parameters({fused.ROW_C: torch.tensor(0.1, dtype=dtype),
                            fused.ROW_TH: torch.tensor(1.0, dtype=dtype)}, (n,), dtype)
    x = torch.full((T, B, n), 2.0, dtype=dtype)
    return kind, prm, x, torch.zeros(B, n, dtype=dtype), torch.empty_like(x)


@numba_required
def test_run_chunk_declines_what_it_cannot_run():
    """Not contiguous, wrong dtype, a gradient to track, a one-step chunk, a device that is
    not the CPU, mismatched shapes: False, and nothing written."""
    kind, prm, x, v, out = _lif_case()
    assert fused.run_chunk(kind, prm, x, v, None, out)  # the case itself runs
    assert bool(out.any()) and v.abs().sum() > 0
    cases: list[Callable[[], bool]] = [
        lambda: fused.run_chunk(kind, prm, x.transpose(1, 2).contiguous().transpose(1, 2),
                                v, None, out),
        lambda: fused.run_chunk(kind, prm, x.double(), v.double(), None, out.double()),
        lambda: fused.run_chunk(kind, prm, x.requires_grad_(True), v, None, out),
        lambda: fused.run_chunk(kind, prm, x[:1], v, None, out[:1]),
        lambda: fused.run_chunk(kind, prm, x.to("meta"), v, None, out),
        lambda: fused.run_chunk(kind, prm, x, v[:1], None, out),
        lambda: fused.run_chunk(replace_synapse(kind), prm, x, v, None, out),
    ]
    for i, case in enumerate(cases):
        kind, prm, x, v, out = _lif_case()
        out.fill_(-5.0)
        assert not case(), i
        assert bool((out == -5.0).all()) and not bool(v.any()), i
    kind, prm, x, v, out = _lif_case(T=fused.MIN_STEPS)
    assert fused.run_chunk(kind, prm, x, v, None, out)


@numba_required
def test_parameters_are_expanded_once(kernel_calls):
    """The per-neuron parameter rows are built on the first fused chunk and reused."""
    rng = np.random.default_rng(0)
    node = _node("lif", (50,), rng, per_neuron=False, leak=True, reset=True, r=False)
    layer = make_layer(node, _params(node), (50,), (50,), Semantics(dt=1e-3), torch.float32,
                       CPU)
    assert isinstance(layer, Neuron) and layer._fused_params is None
    state = layer.init_state(2)
    x = torch.ones(5, 2, 50)
    state = layer.run(x, state, torch.empty_like(x), None)
    first = layer._fused_params
    assert first is not None and first.shape == (fused.N_ROWS, 50)
    assert first[fused.ROW_LEAK].tolist() == [np.float32(0.1)] * 50
    layer.run(x, state, torch.empty_like(x), None)
    assert layer._fused_params is first and kernel_calls == [True, True]


@numba_required
def test_numbas_thread_count_is_restored():
    """A small chunk runs on one thread; numba's thread count, which other kernels (Xylo's)
    share, is set back afterwards."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one thread only: nothing to restore")
    numba.set_num_threads(2)
    kind, prm, x, v, out = _lif_case()
    assert x.numel() < fused.PARALLEL_WORK  # run_chunk picks one thread
    assert fused.run_chunk(kind, prm, x, v, None, out)
    assert numba.get_num_threads() == 2


def replace_synapse(kind: fused.NeuronKind) -> fused.NeuronKind:
    """The kind with a synapse (whose current the caller then fails to pass)."""
    return fused.NeuronKind(li=kind.li, synapse=True, spiking=kind.spiking,
                            has_leak=kind.has_leak)


def test_without_numba_the_torch_loop_runs(kernel_calls, monkeypatch):
    """numba missing (its import fails): the kernel is None, every neuron runs its torch loop,
    and the results are the same."""
    graph = _mixed_graph(300)
    x = spikes((30, 2, 8), rate=0.3, seed=4)
    want = nrf_nir.run(graph, x, device="cpu", fused=False)
    monkeypatch.setattr(fused, "_KERNEL", None)
    monkeypatch.setattr(fused, "_BROKEN", None)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    monkeypatch.delitem(sys.modules, "nrf_nir._fused_numba", raising=False)
    got = nrf_nir.run(graph, x, device="cpu")
    assert kernel_calls == [False, False, False]
    assert fused.kernel() is None and "numba unavailable" in str(fused.unavailable())
    for key, value in want.items():
        assert torch.equal(value, got[key]), key


def test_a_kernel_that_fails_to_compile_warns_once_and_falls_back(kernel_calls, monkeypatch):
    """The first failure warns and marks the kernel unusable (raised before anything is
    written); that chunk and every later one run the torch loop."""
    def broken(*args: Any) -> None:
        raise RuntimeError("no compiler")

    monkeypatch.setattr(fused, "_KERNEL", broken)
    monkeypatch.setattr(fused, "_NUMBA", types.SimpleNamespace(
        config=types.SimpleNamespace(NUMBA_NUM_THREADS=2), get_num_threads=lambda: 1,
        set_num_threads=lambda n: None))
    monkeypatch.setattr(fused, "_BROKEN", None)
    graph = _mixed_graph(300)
    x = spikes((30, 2, 8), rate=0.3, seed=4)
    want = nrf_nir.run(graph, x, device="cpu", fused=False)
    with pytest.warns(RuntimeWarning, match="no compiler"):
        got = nrf_nir.run(graph, x, device="cpu")
    assert kernel_calls == [False, False, False]
    assert "no compiler" in str(fused.unavailable())
    for key, value in want.items():
        assert torch.equal(value, got[key]), key


@pytest.mark.parametrize(("batch", "size", "threads", "expected"), [
    (64, 6272, 2, 2),  # conv layer: 3136-neuron blocks, 128 of them
    (64, 512, 2, 1),  # MLP layer: one block per sample
    (1, 8192, 2, 8),  # one sample: split into MIN_BLOCK-or-more blocks for the threads
    (1, 16, 2, 1),  # smaller than a block
])
def test_blocks_per_sample(batch, size, threads, expected):
    nsplit = fused.blocks_per_sample(batch, size, threads)
    assert nsplit == expected
    assert -(-size // nsplit) <= fused.MAX_BLOCK


def test_cache_dir_falls_back_to_the_home_cache(tmp_path, monkeypatch):
    """A read-only package directory and no NUMBA_CACHE_DIR: numba caches under
    ~/.cache/nrf-nir/numba, which is created."""
    fake = types.SimpleNamespace(config=types.SimpleNamespace(CACHE_DIR=""))
    monkeypatch.setenv("HOME", str(tmp_path))
    real_access = os.access
    package = os.path.dirname(os.path.abspath(fused.__file__))
    monkeypatch.setattr(os, "access", lambda path, mode: False if path == package
                        else real_access(path, mode))
    assert fused.numba_cache_ready(fake)
    assert fake.config.CACHE_DIR == str(tmp_path / ".cache" / "nrf-nir" / "numba")
    assert os.path.isdir(fake.config.CACHE_DIR)
    preset = types.SimpleNamespace(config=types.SimpleNamespace(CACHE_DIR="/somewhere"))
    assert fused.numba_cache_ready(preset) and preset.config.CACHE_DIR == "/somewhere"


def test_building_and_loading_import_no_numba():
    """The core imports numba only when a chunk first asks for the kernel: building a
    reference program does not."""
    script = ("import sys, numpy as np, nrf_nir\nfrom tests.helpers import mlp\n"
              "nrf_nir.lower(mlp([4, 6, 3]), device='cpu')\n"
              "print('numba' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.stdout.strip().splitlines()[-1] == "False"
