"""Progress on long runs: a bar on a terminal for the targets that step in this process, and
one summary line (steps, samples, target, seconds) from `nrf-nir run` either way."""

from __future__ import annotations

import numpy as np
import pytest

import nrf_nir
from tests.helpers import mlp


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
