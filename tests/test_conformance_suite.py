"""The conformance machinery: manifests fail loudly in both directions, parallel runs equal
serial ones, and the report is written and well formed."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from nrf_nir.cli import main
from nrf_nir.conformance.cases import node_cases
from nrf_nir.conformance.manifest import load_manifest
from nrf_nir.conformance.report import write_report
from nrf_nir.conformance.runner import run_suite
from nrf_nir.errors import NIRError

SOME = [c for c in node_cases(T=40, B=2) if c.name in (
    "node/LIF/scalar", "node/LIF/ge", "node/CubaLI/leak", "node/recurrent-nested/value")]


def test_parallel_equals_serial_and_is_deterministic():
    a = run_suite(SOME, ["reference", "norse"], workers=1, progress=False)
    b = run_suite(SOME, ["reference", "norse"], workers=2, progress=False)
    assert [r.to_json() | {"seconds": 0} for r in a] == [r.to_json() | {"seconds": 0} for r in b]
    assert all(r.ok for r in a)
    statuses = {(r.case, r.target): r.status for r in a}
    assert statuses[("node/LIF/ge", "norse")] == "unsupported"
    assert statuses[("node/LIF/scalar", "norse")] == "pass"


def test_manifest_changes_fail_loudly_in_both_directions(tmp_path):
    (tmp_path / "norse.toml").write_text(
        '[cases."node/LIF/scalar"]\nlevel = "xfail"\nreason = "pretend it is broken"\n'
        '[cases."node/LIF/ge"]\nlevel = "exact"\n')
    results = {r.case: r for r in run_suite(SOME[:2], ["norse"], workers=1, progress=False,
                                            manifest_dir=tmp_path)}
    assert results["node/LIF/scalar"].status == "xpass" and not results["node/LIF/scalar"].ok
    assert results["node/LIF/ge"].status == "unsupported" and not results["node/LIF/ge"].ok
    (tmp_path / "norse.toml").write_text('[cases."node/LIF/*"]\nlevel = "unsupported"\n'
                                         'reason = "pretend"\n')
    (result,) = run_suite(SOME[:1], ["norse"], workers=1, progress=False,
                          manifest_dir=tmp_path)
    assert result.status == "fail" and "now runs" in result.message


def test_bad_manifests_are_refused(tmp_path):
    (tmp_path / "x.toml").write_text('[cases."a"]\nlevel = "within"\nf1_pm3 = 0.1\n')
    with pytest.raises(NIRError, match="never loosen"):
        load_manifest("x", tmp_path)
    (tmp_path / "x.toml").write_text('[cases."a"]\nlevel = "xfail"\n')
    with pytest.raises(NIRError, match="reason"):
        load_manifest("x", tmp_path)
    (tmp_path / "x.toml").write_text("[[[")
    with pytest.raises(NIRError, match="TOML"):
        load_manifest("x", tmp_path)


def _analog_case():
    """A tiny Linear -> LIF case whose inputs are analog, in [0, 1): the fixed-point targets
    run it only with the option input_scale."""
    import nir
    import numpy as np

    from nrf_nir.cases import Case
    from tests import helpers

    rng = np.random.default_rng(0)
    graph = helpers.chain(nir.Linear(weight=rng.normal(0, 3, (6, 5))),
                          helpers.lif(6, tau=0.005), shape=(5,))
    x = np.random.default_rng(1).random((30, 2, 5)).astype(np.float32)
    return Case("model/analog", graph, {"input": x})


def test_manifest_options_reach_the_target(tmp_path):
    case = _analog_case()
    entry = '[cases."model/analog"]\nlevel = "within"\n'
    (tmp_path / "loihi.toml").write_text(entry + "options = {input_scale = 255}\n")
    (result,) = run_suite([case], ["loihi"], workers=1, progress=False, manifest_dir=tmp_path)
    assert (result.status, result.options) == ("pass", {"input_scale": 255}), result.message
    page = write_report([result], tmp_path / "rep")["html"].read_text()
    assert "within (options: input_scale=255)" in page
    (tmp_path / "loihi.toml").write_text(entry)  # the same case without the option
    (result,) = run_suite([case], ["loihi"], workers=1, progress=False, manifest_dir=tmp_path)
    assert result.status == "error" and "input_scale" in result.message


@pytest.mark.parametrize(("options", "field", "match"), [
    ("3", "options", "must be a table"),
    ("{input_scale = [1]}", "options.input_scale", "number, string or boolean"),
    ("{input_scale = nan}", "options.input_scale", "finite"),
    ("{speed = 2}", "options", "unknown option"),               # the target's own check
    ("{input_scale = -1}", "options.input_scale", "positive finite"),
])
def test_bad_manifest_options_are_refused(tmp_path, options, field, match):
    (tmp_path / "loihi.toml").write_text(f'[cases."model/analog"]\noptions = {options}\n')
    with pytest.raises(NIRError, match=match) as err:
        run_suite([_analog_case()], ["loihi"], workers=1, progress=False,
                  manifest_dir=tmp_path)
    assert (err.value.node, err.value.field) == ("model/analog", field)
    assert err.value.file == str(tmp_path / "loihi.toml")


def test_a_target_without_an_option_check_takes_no_manifest_options(tmp_path):
    (tmp_path / "norse.toml").write_text('[cases."node/*"]\noptions = {stepwise = true}\n')
    with pytest.raises(NIRError, match="takes no options") as err:
        run_suite(SOME[:1], ["norse"], workers=1, progress=False, manifest_dir=tmp_path)
    assert (err.value.node, err.value.field) == ("node/*", "options")


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_report_files(tmp_path):
    results = run_suite(SOME, ["reference", "norse"], workers=1, progress=False)
    # make one mismatch so that a raster is drawn
    results[0].metrics = {"output": dict(results[0].metrics["output"], exact=0.5)}
    paths = write_report(results, tmp_path, {"note": "test"})
    data = json.loads(paths["json"].read_text())
    assert data["summary"]["total"] == len(results)
    assert "| case | reference | norse |" in paths["md"].read_text()
    parser = _Collect()
    parser.feed(paths["html"].read_text())
    ids = {attrs.get("id") for _, attrs in parser.tags}
    assert {"matrix", "summary"} <= ids
    images = [a for t, a in parser.tags if t == "img"]
    assert images and all(a["src"].startswith("data:image/png;base64,") for a in images)
    assert "legend" in ids


def test_report_legend_and_value_outputs_show_relative_rmse(tmp_path):
    """The number after a status is explained, and for a value output it is the relative RMSE
    (not the exact-equality fraction, 0.0 for any rounding)."""
    from nrf_nir.conformance.report import LEGEND, cell_numbers
    from nrf_nir.conformance.runner import Result

    values = {"kind": "values", "exact": 0.189, "rmse": 1e-6, "reference_rms": 2.0,
              "relative_rmse": 5e-7}
    spikes = {"kind": "spikes", "exact": 0.75, "f1_pm3": 0.9, "count_correlation": 0.8}
    mixed = Result("node/x", "t", "pass", True, "within", metrics={"v": values, "s": spikes})
    assert cell_numbers(mixed) == "e=0.7500 r=5e-07"
    only_values = Result("node/y", "t", "pass", True, "within", metrics={"v": values})
    assert cell_numbers(only_values) == "r=5e-07" and "0.189" not in cell_numbers(only_values)
    silent = Result("node/z", "t", "fail", False, "within",
                    metrics={"v": dict(values, relative_rmse=None)})
    assert cell_numbers(silent) == "r=undefined"
    paths = write_report([mixed, only_values, silent], tmp_path)
    md, page = paths["md"].read_text(), paths["html"].read_text()
    assert LEGEND in md and "pass e=0.7500 r=5e-07" in md and "pass r=5e-07" in md
    assert "relative RMSE" in md and "id='legend'" in page and "pass r=5e-07" in page


def test_cli_conformance_exit_codes(tmp_path, capsys):
    assert main(["conformance", "--targets", "reference,norse", "--report",
                 str(tmp_path / "rep"), "--workers", "1", "--T", "30"]) == 0
    out = capsys.readouterr().out
    assert "as expected" in out and (tmp_path / "rep" / "report.html").exists()
    assert main(["conformance", "--targets", "banana", "--report", str(tmp_path / "r2")]) == 2


def test_demo_report_stays_under_a_megabyte(tmp_path):
    """The demo's conformance step (its zoo models at 200 steps and every node case, on every
    available target): report.html under 1 MB, with a plot only per differing result."""
    import importlib.util
    import re
    from pathlib import Path

    from nrf_nir import models
    from nrf_nir.targets import available

    spec = importlib.util.spec_from_file_location(
        "demo", Path(__file__).resolve().parents[1] / "examples" / "demo.py")
    assert spec and spec.loader
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    zoo = [c for c in models.conformance_cases(T=200)
           if c.name.removeprefix("model/") in demo.MODELS]
    targets = available()
    results = run_suite(zoo + node_cases(), targets, progress=False)
    paths = write_report(results, tmp_path, {"targets": ", ".join(targets)})
    size = paths["html"].stat().st_size
    page = paths["html"].read_text()
    print(f"demo report: {size} bytes, {page.count('<img')} plots, {len(results)} results")
    assert size < 1_000_000
    assert paths["md"].stat().st_size < 100_000
    plotted = re.findall(r"alt='raster ([^']*)'", page)
    assert len(plotted) == len(set(plotted)) < len(results) // 10
