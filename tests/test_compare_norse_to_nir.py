"""examples/compare_norse_to_nir.py: nrf-nir's exporter is exact where Norse's is not.

Runs the script in --quick mode and checks the measured rows: nrf-nir's graphs agree with the
original Norse models on every entry, and Norse's exporter (``norse.torch.to_nir``) fails or
disagrees on every failure class its source predicts (``Case.predicted``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "compare_norse_to_nir.py"
DT = 1e-3


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("compare_norse_to_nir", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        out = tmp_path_factory.mktemp("compare")
        doc, rows = out / "norse-to-nir.md", out / "rows.json"
        assert module.main(["--out", str(doc), "--quick", "--json", str(rows)]) == 0
        cases = {c.name: c for c in module.CASES}
    finally:
        sys.modules.pop(spec.name, None)
    results = json.loads(rows.read_text())
    by = {(r["case"], r["exporter"]): r for r in results}
    return doc, cases, by


def test_document_is_written(measured):
    doc, cases, _ = measured
    text = doc.read_text()
    assert text.startswith("# ")
    assert "--quick" in text  # the exact command is recorded
    for name in cases:
        assert f"`{name}`" in text


def test_ours_agrees_exactly_on_every_model(measured):
    _, cases, by = measured
    for name in cases:
        r = by[(name, "nrf-nir")]
        assert r["exported"] and r["ran"], (name, r["export"], r["runs"])
        assert r["agreement"] == 1.0, (name, r["agreement"])
        assert r["first_divergence"] is None
        assert r["spikes_exported"] == r["spikes_original"]
        assert r["nir_write"] == "ok", (name, r["nir_write"])


def test_models_are_not_trivially_silent(measured):
    _, cases, by = measured
    for name in cases:
        assert by[(name, "nrf-nir")]["spikes_original"] > 0, name


def test_norse_exporter_never_reproduces_a_model(measured):
    _, cases, by = measured
    for name in cases:
        r = by[(name, "norse.to_nir")]
        assert not r["exported"] or not r["ran"] or r["agreement"] < 1.0, name


def test_norse_exporter_fails_where_predicted(measured):
    _, cases, by = measured
    for name, case in cases.items():
        r = by[(name, "norse.to_nir")]
        facts = r["facts"]
        if "crash" in case.predicted or "per-neuron" in case.predicted:
            assert not r["exported"], (name, r["export"])
            continue
        assert r["exported"], (name, r["export"])
        if "missing" in case.predicted:
            assert facts["none_nodes"], name
            assert not r["ran"], (name, r["runs"])
        if "tau" in case.predicted:
            low, high = min(facts["tau_ratios"]), max(facts["tau_ratios"])
            assert low == pytest.approx(DT, rel=1e-5) and high == pytest.approx(DT, rel=1e-5)
            if r["ran"]:
                assert r["agreement"] < 1.0
                assert r["first_divergence"] is not None
                assert r["spikes_exported"] != r["spikes_original"]
        if "v_reset" in case.predicted:
            assert facts["v_reset_lost"], name


def test_norse_specific_measurements(measured):
    _, _, by = measured
    # Conv2d(bias=False) crashes in Norse's exporter on `module.bias.detach()`.
    assert "NoneType" in by[("conv-nobias", "norse.to_nir")]["export"]
    # LICell, LIFRecurrentCell, AvgPool2d and Flatten become None nodes.
    assert by[("li-readout", "norse.to_nir")]["facts"]["none_nodes"] == ["3"]
    assert by[("recurrent", "norse.to_nir")]["facts"]["none_nodes"] == ["0"]
    assert by[("conv-bias", "norse.to_nir")]["facts"]["none_nodes"] == ["2", "3"]
    # Default (scalar) parameters stay 0-d, and the sample's batch axis is part of the Input.
    lifbox = by[("lifbox", "norse.to_nir")]
    assert lifbox["facts"]["scalar_params"] and lifbox["facts"]["batch_in_input"]
    # IAF: r = 1 where Norse's `v + x` needs r = 1/dt; the exported layer is silent.
    iaf = by[("iaf", "norse.to_nir")]
    assert iaf["facts"]["if_r_ratio"] == pytest.approx(DT)
    assert iaf["spikes_exported"] == 0 < iaf["spikes_original"]
    # from_nir silently drops the None LI readout and returns its input instead.
    assert by[("li-readout", "norse.to_nir")]["from_nir_agreement"] == 0.0
