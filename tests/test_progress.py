"""Progress on long runs: a bar on a terminal for the targets that step in this process (the
torch targets, Xylo's calibration and engines, the Lava targets and the loihi emulator), off
by default, and one summary line (steps, samples, target, seconds) from `nrf-nir run` either
way."""

from __future__ import annotations

import re
import sys

import nir
import numpy as np
import pytest
import torch

import nrf_nir
from tests.helpers import chain, lif, mlp


@pytest.mark.parametrize("target", ["reference", "norse", "snntorch"])
def test_the_torch_targets_show_a_progress_bar(target, capsys):
    pytest.importorskip(target if target != "reference" else "torch")
    x = (np.random.default_rng(0).random((50, 2, 4)) < 0.3).astype(np.float32)
    lowered = nrf_nir.lower(mlp([4, 8, 3]), target, progress=True)
    assert nrf_nir.targets.get(target).progress is True
    lowered.run(x)
    err = capsys.readouterr().err
    assert "/50 " in err and "step/s" in err, err
    nrf_nir.lower(mlp([4, 8, 3]), target).run(x)  # off by default
    assert "step" not in capsys.readouterr().err


def test_run_ends_with_one_summary_line(tmp_path, capsys):
    from nrf_nir import cli

    nrf_nir.save(mlp([4, 8, 3]), tmp_path / "m.nir")
    np.savez(tmp_path / "in.npz", input=np.zeros((30, 2, 4), np.float32))
    assert cli.main(["run", str(tmp_path / "m.nir"), "--input", str(tmp_path / "in.npz"),
                     "--output", str(tmp_path / "out.npz"), "--target", "norse"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "(30 steps x 2 samples on norse in " in lines[0], lines


# ------------------------------------------------------------------------ Xylo and Lava targets

def _spiking() -> nir.NIRGraph:
    """4 -> LIF 8 -> LIF 3 with positive-leaning weights: both layers spike on the inputs of
    :func:`_events` (Xylo and Lava need two neuron layers; the outputs are compared)."""
    rng = np.random.default_rng(0)
    return chain(nir.Linear(weight=rng.uniform(-0.5, 1.5, (8, 4))), lif(8, tau=0.004),
                 nir.Linear(weight=rng.uniform(-0.5, 1.5, (3, 8))), lif(3, tau=0.004),
                 shape=(4,))


def _events(T: int = 20, B: int = 2) -> np.ndarray:
    """``[T, B, 4]`` spikes (0/1, float32), half the channels and steps."""
    return (np.random.default_rng(1).random((T, B, 4)) < 0.5).astype(np.float32)


#: target -> (the bar's description, its unit, its total for T = 20 steps and B = 2 samples;
#: None: not fixed here, as Lava's latency adds steps)
BARS = {
    "xylo": ("xylo", "sample", 2),
    "xylosim": ("xylosim", "sample", 2),
    "loihi": ("loihi (2 layers)", "step", 40),
    "lava-float": ("lava (2 runs)", "step", None),
    "lava-fixed": ("lava (2 runs)", "step", None),
}


def _target_or_skip(name: str) -> None:
    try:
        nrf_nir.targets.get(name)
    except ImportError as exc:
        print(f"\n[test_progress] {name} skipped: {exc}")
        pytest.skip(f"{name} cannot be imported: {exc}")


@pytest.mark.parametrize("target", list(BARS))
def test_the_xylo_and_lava_targets_show_a_progress_bar(target, capsys):
    """A bar on stderr with the option, nothing without it; the same outputs either way (the
    kernel runs chunks of samples and Lava chunks of steps only with the bar)."""
    _target_or_skip(target)
    desc, unit, total = BARS[target]
    x = _events()
    # one sample per Lava network: two runs, each in several chunks of steps
    options = {"copies": 1} if target.startswith("lava") else {}
    assert nrf_nir.targets.get(target).progress is True
    with_bar = nrf_nir.lower(_spiking(), target, progress=True, **options).run(x, record=("n1",))
    err = capsys.readouterr().err
    assert f"{desc}:" in err and f"{unit}/s" in err, err
    if total is not None:
        assert f"/{total} " in err, err
    else:
        assert re.search(r"/(\d+) ", err) and int(re.search(r"/(\d+) ", err)[1]) >= 2 * 20, err
    plain = nrf_nir.lower(_spiking(), target, **options).run(x, record=("n1",))  # off: default
    assert capsys.readouterr().err == ""
    assert len(plain) == 2 and all(float(v.abs().sum()) > 0 for v in plain.values()), plain
    for key in plain:
        assert torch.equal(with_bar[key], plain[key]), key


def test_xylo_kernel_chunks_of_samples_give_the_same_states(monkeypatch, capsys):
    """The compiled kernel in chunks of as few samples as it runs threads (the bar's way)
    equals one call over the batch, every recorded state."""
    from nrf_nir.targets.xylo import XyloEmulator, emulator

    lowered = nrf_nir.lower(_spiking(), "xylo").backend
    emu = XyloEmulator(lowered.config, device="cpu")
    if emu.engine != "kernel":
        pytest.skip("the compiled Xylo kernel needs numba")
    monkeypatch.setattr(emulator, "PROGRESS_SECONDS", 0.0)  # smallest chunks
    x = torch.as_tensor(_events(B=5)).to(torch.int32)
    record = emulator.RECORDABLE
    chunked = emu.run(x, record=record, progress=True)
    assert "/5 " in capsys.readouterr().err
    whole = emu.run(x, record=record)
    assert int(whole["spikes"].sum()) > 0
    for key in whole:
        assert torch.equal(chunked[key], whole[key]), key


def test_xylo_torch_engine_shows_steps(capsys):
    from nrf_nir.targets.xylo import XyloEmulator

    cfg = nrf_nir.lower(_spiking(), "xylo").backend.config
    x = torch.as_tensor(_events()).to(torch.int32)
    emu = XyloEmulator(cfg, device="cpu", engine="torch", chunk=8)
    bar = emu.run(x, progress=True)
    err = capsys.readouterr().err
    assert "xylo:" in err and "/20 " in err and "step/s" in err, err
    assert torch.equal(bar["spikes_out"], emu.run(x)["spikes_out"])
    assert capsys.readouterr().err == ""


def test_xylo_calibration_shows_the_reference_run_and_the_candidates(capsys):
    x = _events()
    nrf_nir.lower(_spiking(), "xylo", calibration=x, calibration_headrooms=(1.0, 2.0, 4.0),
                  progress=True)
    err = capsys.readouterr().err
    assert "run:" in err and "/20 " in err, err  # the float64 reference, steps
    assert "calibrate:" in err and "/3 " in err and "headroom/s" in err, err
    nrf_nir.lower(_spiking(), "xylo", calibration=x, calibration_headrooms=(1.0, 2.0, 4.0))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("tty", [True, False])
def test_deploy_asks_for_progress_on_a_terminal_only(tty, tmp_path, monkeypatch, capsys):
    from nrf_nir import cli

    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    assert cli._progress_option("xylo") == ({"progress": True} if tty else {})
    assert cli._progress_option("rockpool") == {}  # declares no progress option
    asked = []
    lower = nrf_nir.api.lower

    def spy(*args, **kwargs):
        asked.append(kwargs.get("progress", False))
        return lower(*args, **kwargs)

    monkeypatch.setattr(nrf_nir.api, "lower", spy)
    nrf_nir.save(_spiking(), tmp_path / "m.nir")
    assert cli.main(["deploy", str(tmp_path / "m.nir"), "--target", "xylo",
                     "-o", str(tmp_path / "out")]) == 0
    assert asked == [tty]


def test_an_interrupted_lava_run_with_a_bar_leaves_no_process(capsys):
    """Lava in chunks of steps (the bar's way): an interrupt mid-run still ends every process
    the run started, and the bar is closed."""
    _target_or_skip("lava-fixed")
    from nrf_nir.targets.lava import runner

    prog = nrf_nir.lower(_spiking(), "lava-fixed").backend
    spec = nrf_nir.targets.get("lava-fixed").spec(prog)
    before = runner.children()
    calls = []

    def interrupt_mid_run() -> None:  # called while Lava's run is in progress
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_network(spec, _events(T=3000), {1}, _while_running=interrupt_mid_run,
                           progress=True)
    assert len(calls) == 3 and runner.children() == before
    assert "lava (1 run):" in capsys.readouterr().err
