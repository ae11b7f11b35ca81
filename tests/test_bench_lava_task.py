"""benchmarks/bench_lava_task.py: the zoo's task metrics with the ``loihi`` target run as the
model, and bounds that fail when the target is wrong."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_lava_task",
                                                  ROOT / "benchmarks" / "bench_lava_task.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _main(bench, monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["bench_lava_task.py", *args])
    return int(bench.main())


def test_first_spike_on_loihi_keeps_its_accuracy(bench, monkeypatch, tmp_path):
    out = tmp_path / "task.json"
    assert _main(bench, monkeypatch, "--models", "first-spike", "--n", "32",
                 "--json", str(out)) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model"] == "first-spike" and row["metric"] == "accuracy" and row["n"] == 32
    assert abs(row["float"] - row["target"]) <= 0.01 and row["passed"]
    assert row["decision_agreement"] >= 0.99


def test_a_wrong_target_fails_its_bound(bench, monkeypatch, tmp_path):
    """The target's outputs silenced: decisions go to class 0, the bound is missed, exit 1."""
    real = bench.OnTarget.forward

    def silent(self, x):
        return torch.zeros_like(real(self, x))

    monkeypatch.setattr(bench.OnTarget, "forward", silent)
    out = tmp_path / "task.json"
    assert _main(bench, monkeypatch, "--models", "first-spike", "--n", "32",
                 "--json", str(out)) == 1
    (row,) = json.loads(out.read_text())["rows"]
    assert not row["passed"] and row["decision_agreement"] < 0.99


def test_an_unknown_model_is_refused(bench, monkeypatch, tmp_path, capsys):
    assert _main(bench, monkeypatch, "--models", "no-such", "--json",
                 str(tmp_path / "x.json")) == 2
    assert "unknown model(s) no-such" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
