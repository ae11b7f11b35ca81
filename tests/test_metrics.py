"""Conformance metrics on hand-made spike trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nrf_nir.conformance import metrics as m


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
    assert m.windowed_f1(a, b, k=0) == 0.0
    assert m.windowed_f1(a, b, k=1) == 1.0
    assert m.van_rossum(a, b) > 0


def test_windowed_f1_counts_misses_and_extras():
    a = trains([2, 10, 18])
    b = trains([3, 15])  # 3 matches 2; 15 matches nothing within 3 (10 and 18 are 5/3 away)
    # precision: 3->2 yes, 15->18 yes (3 steps) = 2/2; recall: 2 yes, 10 no, 18 yes = 2/3
    assert m.windowed_f1(a, b, k=3) == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


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
