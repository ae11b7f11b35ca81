"""The report for people (conformance/report.py), on hand-made results: the per-target
summary counts, refusals grouped under the target's own reason, identical results of target
variants shown once, and plots only where a result differs from the reference."""

from __future__ import annotations

import io
import re

import numpy as np

from nrf_nir.conformance.report import (
    DPI,
    FIGSIZE,
    PLOTS_PER_TARGET,
    abbreviate,
    raster_figure,
    raster_png,
    same_as,
    target_summaries,
    write_report,
)
from nrf_nir.conformance.runner import Result

GENERIC = "the manifest's generic reason"
RESET = "LIF: 'subtract' reset: the chip resets v to 0"


def _spikes(exact: float) -> dict[str, dict[str, float | str]]:
    return {"output": {"kind": "spikes", "exact": exact, "f1_pm3": 1.0,
                       "count_correlation": 1.0}}


def _raster(flip: int = 0, seed: int = 0) -> dict[str, object]:
    """A 60-step, 8-neuron raster pair; ``flip``: entries of the target that differ."""
    ref = (np.random.default_rng(seed).random((60, 8)) < 0.2).astype(np.float32)
    got = ref.copy()
    got.flat[:flip] = 1 - got.flat[:flip]
    return {"reference": ref, "target": got, "spiking": True, "output": "output"}


def _refused(case: str, target: str, *violations: str, ok: bool = True) -> Result:
    return Result(case, target, "unsupported", ok, "unsupported", reason=GENERIC,
                  message="; ".join(violations), violations=list(violations))


def _results() -> list[Result]:
    """Target ``chip``: 6 cases, 3 run (a pass, an xfail, a failure), 3 refused for two
    reasons (one of them in two wordings differing only in a number)."""
    return [
        Result("node/a", "chip", "pass", True, "within", metrics=_spikes(0.9),
               raster=_raster(3)),
        Result("node/b", "chip", "xfail", True, "xfail", message="output: exact 0.5",
               reason="quantized", metrics=_spikes(0.5), raster=_raster(9)),
        Result("node/c", "chip", "fail", False, "within", message="output: exact 0.1",
               metrics=_spikes(0.1), raster=_raster(20)),
        _refused("node/LIF/x", "chip", f"[chip] node 'lif': field 'reset': {RESET}"),
        _refused("node/LIF/y", "chip", f"[chip] node 'lif2': field 'reset': {RESET}",
                 "[chip] field 'shape': 70 inputs > 16"),
        _refused("model/m", "chip", "[chip] field 'shape': 2450 inputs > 16"),
    ]


def test_summary_counts_runs_within_bounds_and_refusals():
    (chip,) = target_summaries(_results())
    assert (chip.cases, chip.ran, chip.within, chip.expected_failures, chip.not_as_expected,
            chip.refused) == (6, 3, 1, 1, 1, 3)
    assert chip.line() == ("runs 3 of 6 cases; 1 within bounds; 1 expected failures; "
                           "1 not as expected; refused 3 (2 reasons)")
    reset, shape = chip.refusals  # most cases first
    assert reset.cases == ["node/LIF/x", "node/LIF/y"] and not reset.varies
    assert shape.cases == ["node/LIF/y", "model/m"] and shape.varies


def test_report_opens_with_the_summary_and_groups_refusals_by_the_real_reason(tmp_path):
    paths = write_report(_results(), tmp_path)
    md, page = paths["md"].read_text(), paths["html"].read_text()
    summary_line = "runs 3 of 6 cases; 1 within bounds"
    assert md.index(summary_line) < md.index("| case |")  # at the top, before the matrix
    table = page[page.index("<table id='target-summary'>"):page.index("id='matrix'")]
    assert "<td>runs 3 of 6 cases</td><td>1 within bounds</td><td>1</td>" in table
    # one line per reason: its count, the target's own text (no node name), the cases
    assert f"  - 2: field 'reset': {RESET} — node/LIF/{{x, y}}" in md
    assert ("  - 2: field 'shape': 70 inputs > 16 (numbers differ per case) — node/LIF/y, "
            "model/m") in md
    assert GENERIC not in md and GENERIC not in page and "'lif2'" not in md
    # refused cells are a faint '-', not one status cell each
    row = next(line for line in md.splitlines() if line.startswith("| `node/LIF/x`"))
    assert row == "| `node/LIF/x` | - |" and "unsupported" not in row
    assert page.count("<details class='refused'>") == 1 + 3  # the summary, each case
    details = page[page.index("<details class='refused'>"):]
    assert "refused 3 cases, 2 reasons" in details and RESET.replace("'", "&#x27;") in details


def test_a_refusal_not_as_expected_stays_a_status_cell(tmp_path):
    bad = _refused("node/q", "chip", "[chip] field 'x': no", ok=False)
    md = write_report([bad], tmp_path)["md"].read_text()
    assert "| `node/q` | unsupported **!** |" in md and "## Not as expected" in md


def test_identical_results_of_target_variants_are_shown_once(tmp_path):
    def run(target: str, flip: int) -> Result:
        return Result("node/a", target, "pass", True, "within", metrics=_spikes(0.9),
                      raster=_raster(flip))

    results = [run("chip", 3), run("chip-sim", 3), run("chip-imu", 3), run("other", 5)]
    assert same_as(results) == {("node/a", "chip-sim"): "chip", ("node/a", "chip-imu"): "chip"}
    page = write_report(results, tmp_path)["html"].read_text()
    assert page.count("<img") == 2  # chip (for its variants too) and other
    assert "<figcaption>chip (identical: chip-sim, chip-imu)</figcaption>" in page
    assert page.count("identical to chip</td>") == 2


def test_only_results_that_differ_get_a_plot(tmp_path):
    exact = Result("node/a", "t", "pass", True, "exact", metrics=_spikes(1.0), raster=_raster())
    rounding = Result("node/b", "t", "pass", True, "within", raster=_raster(),
                      metrics={"v": {"kind": "values", "rmse": 1e-7, "relative_rmse": 1e-7}})
    lossy = Result("node/c", "t", "pass", True, "within", raster=_raster(),
                   metrics={"v": {"kind": "values", "rmse": 0.1, "relative_rmse": 0.05}})
    page = write_report([exact, rounding, lossy], tmp_path)["html"].read_text()
    assert re.findall(r"alt='raster ([^']*)'", page) == ["node/c t"]


def test_raster_is_large_and_both_panels_span_the_same_steps():
    import matplotlib.pyplot as plt
    from PIL import Image

    r = Result("node/a", "t", "fail", False, "within", metrics=_spikes(0.5),
               raster=_raster(12))
    png = raster_png(r)
    assert png is not None
    image = Image.open(io.BytesIO(png))
    assert image.size == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI)) == (1100, 380)
    assert image.mode == "P"  # a palette PNG: small
    # all 60 steps in both panels, although the target is silent and the reference spikes
    # only in the first 10 steps
    early = np.zeros((60, 8), np.float32)
    early[:10] = _raster()["reference"][:10]  # type: ignore[index]
    silent = Result("node/b", "t", "fail", False, "within", raster={
        "reference": early, "target": np.zeros_like(early), "spiking": True})
    fig = raster_figure(silent)
    try:
        left, right = fig.axes[:2]
        assert left.get_xlim() == right.get_xlim() == (-0.5, 59.5)
        legend = right.get_legend()
        assert legend is not None and legend.get_texts()[1].get_fontsize() >= 12
        assert [t.get_text() for t in legend.get_texts()] == [
            "extra (0)", f"missing ({int(early.sum())})"]
    finally:
        plt.close(fig)
    values = Result("node/c", "t", "fail", False, "within", raster={
        "reference": np.ones((30, 2), np.float32), "target": np.zeros((30, 2), np.float32),
        "spiking": False})
    fig = raster_figure(values)
    try:
        assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim() == (-0.5, 29.5)
    finally:
        plt.close(fig)


def test_abbreviate_folds_parents_and_counts_the_rest():
    names = [f"node/LIF/{i}" for i in "abc"] + ["model/m", "node/Delay"]
    assert abbreviate(names) == "node/LIF/{a, b, c}, model/m, node/Delay"
    assert abbreviate(names, limit=2) == "node/LIF/{a, b}, +3 more"


def test_refusal_lines_escape_and_shorten_case_names(tmp_path):
    evil = "node/x\x1b[2J" + "L" * 5000
    md = write_report([_refused(evil, "chip", "[chip] field 'x': no \x1b[31m")],
                      tmp_path)["md"].read_text()
    assert "\x1b" not in md and "\\x1b[2J" in md and "no \\x1b[31m" in md
    assert max(map(len, md.splitlines())) < 400


def test_plots_per_target_are_capped_most_severe_first(tmp_path):
    """A target differing on 20 cases gets PLOTS_PER_TARGET plots: the result not as expected
    (listed last, barely differing) first, then the lowest agreement; the rest say why they
    have no plot. Another target's plot is not taken by the first one's budget."""
    many = [Result(f"node/c{i:02d}", "t", "pass", True, "within",
                   metrics=_spikes(0.99 - 0.01 * i), raster=_raster(i + 1, seed=i))
            for i in range(19)]
    bad = Result("node/z", "t", "fail", False, "within", metrics=_spikes(0.999),
                 raster=_raster(1))
    other = Result("node/c00", "u", "pass", True, "within", metrics=_spikes(0.5),
                   raster=_raster(9, seed=5))
    page = write_report([*many, bad, other], tmp_path)["html"].read_text()
    shown = re.findall(r"alt='raster ([^']*)'", page)
    on_t = [s for s in shown if s.endswith(" t")]
    assert len(on_t) == PLOTS_PER_TARGET < len(many) + 1
    assert "node/z t" in on_t  # not as expected: plotted although it differs least
    # then the lowest agreement: c18 (exact 0.81) ... down to the budget
    lowest = [f"node/c{i:02d} t" for i in range(18, 18 - (PLOTS_PER_TARGET - 1), -1)]
    assert set(lowest) <= set(on_t) and "node/c00 t" not in on_t
    assert "node/c00 u" in shown
    assert page.count("no plot: at most") == len(many) + 1 - PLOTS_PER_TARGET
