"""The metrics (nrf_nir.metrics) on hand-made spike trains; one definition per metric."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nrf_nir import metrics as m


def trains(*steps_per_train: list[int], T: int = 20) -> np.ndarray:
    x = np.zeros((T, 1, len(steps_per_train)))
    for n, steps in enumerate(steps_per_train):
        x[steps, 0, n] = 1
    return x


def test_identical_trains():
    a = trains([1, 5, 9], [3])
    res = m.compare(a, a)
    assert res["exact"] == 1.0 and res["first_divergence"] is None
    assert res["f1_pm3"] == 1.0 and res["count_correlation"] == 1.0 and res["van_rossum"] == 0


def test_one_step_shift():
    a, b = trains([5, 12]), trains([6, 13])
    assert m.first_divergence(a, b) == 5
    assert m.exact_agreement(a, b) == pytest.approx(16 / 20)
    assert m.windowed_f1(a, b, window=0) == 0.0
    assert m.windowed_f1(a, b, window=1) == 1.0
    assert m.van_rossum(a, b) > 0


def test_windowed_f1_counts_misses_and_extras():
    a = trains([2, 10, 18])
    b = trains([3, 15])  # 3 matches 2; 15 matches nothing within 3 (10 and 18 are 5/3 away)
    # precision: 3->2 yes, 15->18 yes (3 steps) = 2/2; recall: 2 yes, 10 no, 18 yes = 2/3
    assert m.windowed_f1(a, b, window=3) == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


def test_count_correlation_and_silence():
    a = trains([1, 2, 3], [4], [])
    b = trains([1, 2], [5], [])
    assert m.count_correlation(a, b) == pytest.approx(
        np.corrcoef([3, 1, 0], [2, 1, 0])[0, 1])
    silent = np.zeros_like(a)
    assert m.windowed_f1(silent, silent) == 1.0
    assert m.windowed_f1(a, silent) == 0.0
    assert m.count_correlation(a, silent) is None


def test_van_rossum_of_one_extra_spike():
    a, b = np.zeros((2000, 1, 1)), np.zeros((2000, 1, 1))
    b[0, 0, 0] = 1
    # sum_t exp(-2t/tau) / tau -> 1 / (tau (1 - e^{-2/tau})) ~ 1/2 for large tau
    expected = np.sqrt(1 / (10 * (1 - np.exp(-2 / 10))))
    assert m.van_rossum(a, b, tau_steps=10) == pytest.approx(expected)


def test_decisions():
    out = torch.zeros(10, 2, 3)
    out[4, 0, 2] = 1
    out[2, 0, 1] = 1
    out[[1, 2, 3], 1, 0] = 1
    out[0, 1, 2] = 1
    assert m.decisions(out, "first").tolist() == [1, 2]
    assert m.decisions(out, "count").tolist() == [1, 0]
    volts = torch.randn(10, 4, 5)
    assert m.decision_agreement(volts, volts, "max") == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        m.exact_agreement(np.zeros((3, 1, 2)), np.zeros((3, 1, 3)))


def test_exact_agreement_compares_values_spike_agreement_spike_or_not():
    a = trains([1, 5])
    b = a.copy()
    b[5, 0, 0] = 2  # two spikes instead of one: a spike on both sides, different values
    assert m.exact_agreement(a, b) == pytest.approx(19 / 20)
    assert m.spike_agreement(a, b) == 1.0
    b[7, 0, 0] = 1  # a spike where the reference is silent
    assert m.spike_agreement(a, b) == pytest.approx(19 / 20)


def test_undefined_correlation_is_none_never_nan():
    silent = np.zeros((5, 2, 3))
    assert m.pearson(silent, np.ones_like(silent)) is None
    assert m.pearson(silent[:1, :1, :1], silent[:1, :1, :1] + 1) is None  # one entry
    x = np.arange(6.0).reshape(3, 2, 1)
    assert m.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert m.pearson(x, -x) == pytest.approx(-1.0)
    one = trains([1, 2])  # a single train: counts differ, no variance on either side
    assert m.count_correlation(one, trains([1])) is None
    assert m.count_correlation(silent, silent) == 1.0  # identical counts: 1.0, even if silent
    res = m.compare(trains([1], []), trains([], [1]))
    assert res["count_correlation"] == pytest.approx(-1.0)
    res = m.compare(trains([1], [2]), np.zeros((20, 1, 2)))
    assert res["count_correlation"] is None and json.loads(json.dumps(res)) == res


def test_f1_window_default_is_the_conformance_column():
    a, b = trains([2]), trains([2 + m.F1_WINDOW])
    assert m.windowed_f1(a, b) == 1.0
    assert m.windowed_f1(trains([2]), trains([3 + m.F1_WINDOW])) == 0.0
    assert f"f1_pm{m.F1_WINDOW}" == "f1_pm3"  # manifests' key
    assert f"f1_pm{m.F1_WINDOW}" in m.compare(a, b)


# the folders that make up the nrf_nir package (pyproject maps them into the namespace)
PACKAGE_DIRS = ("nrf_nir", "targets", "conformance", "models", "exporters")
ROOT = Path(__file__).resolve().parent.parent


def defined_functions(root: Path, dirs: tuple[str, ...] = PACKAGE_DIRS) -> dict[str, list[str]]:
    """Function name -> the modules (``dir/file.py:line``) that define it, at any depth."""
    found: dict[str, list[str]] = {}
    for d in dirs:
        for path in sorted((root / d).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    where = f"{path.relative_to(root).as_posix()}:{node.lineno}"
                    found.setdefault(node.name, []).append(where)
    return found


def metric_names() -> list[str]:
    return [n for n in m.__all__ if callable(getattr(m, n))]


def duplicates(root: Path, dirs: tuple[str, ...] = PACKAGE_DIRS) -> dict[str, list[str]]:
    """Public metric names defined anywhere but nrf_nir/metrics.py."""
    defs = defined_functions(root, dirs)
    return {n: others for n in metric_names()
            if (others := [w for w in defs.get(n, []) if not w.startswith("nrf_nir/metrics.py:")])}


def test_each_metric_is_defined_once_in_the_package():
    assert len(metric_names()) >= 10
    defs = defined_functions(ROOT)
    for name in metric_names():  # the checker sees the real definitions
        assert [w.split(":")[0] for w in defs[name]] == ["nrf_nir/metrics.py"], name
    assert duplicates(ROOT) == {}


def test_the_one_definition_check_can_fail(tmp_path: Path):
    (tmp_path / "nrf_nir").mkdir()
    (tmp_path / "nrf_nir" / "metrics.py").write_text("def windowed_f1(a, b): ...\n")
    (tmp_path / "targets" / "xylo").mkdir(parents=True)
    (tmp_path / "targets" / "xylo" / "metrics.py").write_text(
        "class Scores:\n    def count_correlation(self): ...\n\ndef windowed_f1(a, b, w=2): ...\n")
    (tmp_path / "targets" / "xylo" / "other.py").write_text("def shift(x, k): ...\n")
    assert duplicates(tmp_path, ("nrf_nir", "targets")) == {
        "count_correlation": ["targets/xylo/metrics.py:2"],
        "windowed_f1": ["targets/xylo/metrics.py:4"],
    }


def test_relative_rmse_is_in_units_of_the_reference_size():
    from nrf_nir.metrics import compare_values, relative_rmse, rms

    ref = np.full((4, 2, 3), 2.0)
    assert rms(ref) == 2.0
    assert relative_rmse(ref, ref) == 0.0
    assert relative_rmse(ref, ref + 1.0) == pytest.approx(0.5)
    assert relative_rmse(np.zeros((3, 1, 2)), np.zeros((3, 1, 2))) == 0.0
    assert relative_rmse(np.zeros((3, 1, 2)), np.ones((3, 1, 2))) is None
    got = ref.copy()
    got[0, 0, 0] = np.nan
    m = compare_values(ref, got, decode="max")
    assert m["rmse"] is None and m["relative_rmse"] is None and "decision_agreement" in m
    m = compare_values(ref, ref * 1.5)
    assert m["relative_rmse"] == pytest.approx(0.5) and m["reference_rms"] == 2.0
