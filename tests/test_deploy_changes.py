"""`nrf-nir deploy` says what it changed: every lossy change on the console and in deploy.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest

import nrf_nir
from tests.helpers import chain, lif, mlp

pytest.importorskip("numba")


def deploy(tmp_path: Path, graph, target: str = "xylo") -> tuple[str, dict]:
    nrf_nir.save(graph, tmp_path / "m.nir")
    proc = subprocess.run([sys.executable, "-m", "nrf_nir.cli", "deploy", "m.nir", "--target",
                           target, "-o", "out"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads((tmp_path / "out" / "deploy.json").read_text())


def test_deploy_lists_the_lossy_changes(tmp_path: Path) -> None:
    out, summary = deploy(tmp_path, mlp([4, 8, 3]))
    changes = summary["changes"]
    assert changes and all(isinstance(line, str) for line in changes)
    assert f"lossy changes ({len(changes)}; also in out/deploy.json)" in out
    for line in changes:  # the console shows each one
        assert f"  - {line}" in out
    layers = [line for line in changes if line.startswith(("n1 (LIF", "n3 (LIF"))]
    assert len(layers) == 2 and all("weights int8 (rms error" in line for line in layers)
    assert any("tau_mem" in line and " ms (up to " in line for line in layers)
    assert any("Xylo subtracts the threshold" in line for line in changes)  # the reset mode


def test_a_broken_weight_shows_as_zeroed_weights(tmp_path: Path) -> None:
    """One first-layer weight of 500 sets the layer's scale: most other weights round to 0,
    and the summary says how many."""
    graph = mlp([4, 8, 3])
    graph.nodes["n0"].weight = np.array(graph.nodes["n0"].weight)
    graph.nodes["n0"].weight[0, 0] = 500.0
    _, summary = deploy(tmp_path, graph)
    (first,) = [line for line in summary["changes"] if line.startswith("n1 (LIF")]
    zeroed = int(first.split(" of 32 zeroed")[0].rsplit(", ", 1)[1])
    assert zeroed >= 10, first


def test_a_target_without_a_summary_says_so(tmp_path: Path, monkeypatch, capsys) -> None:
    from nrf_nir import cli
    from nrf_nir.targets import get

    target = get("xylo")
    monkeypatch.delattr(type(target), "changes")
    nrf_nir.save(mlp([4, 8, 3]), tmp_path / "m.nir")
    assert cli.main(["deploy", str(tmp_path / "m.nir"), "--target", "xylo", "-o",
                     str(tmp_path / "out")]) == 0
    assert "does not list its lossy changes" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "deploy.json").read_text())["changes"] is None


def test_a_leaky_integrator_readout_is_summarised_too(tmp_path: Path) -> None:
    """README journey 1's shape: Linear -> LIF -> Linear -> LI (a read-out with no threshold)."""
    rng = np.random.default_rng(1)
    graph = chain(linear(rng, 8, 10), lif(8), linear(rng, 4, 8),
                  nir.LI(tau=np.full(4, 0.02), r=np.ones(4), v_leak=np.zeros(4)), shape=(10,))
    _, summary = deploy(tmp_path, graph)
    readout = [line for line in summary["changes"] if line.startswith("n3 (LI")]
    assert len(readout) == 1 and "threshold" not in readout[0], summary["changes"]


def linear(rng: np.random.Generator, n_out: int, n_in: int) -> nir.Linear:
    return nir.Linear(weight=rng.normal(0, 1.0, (n_out, n_in)))
