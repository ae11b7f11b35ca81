"""The demo runs the three journeys end to end and writes its report."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_demo_exports_deploys_and_reports(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "demo", Path(__file__).resolve().parents[1] / "examples" / "demo.py")
    assert spec and spec.loader
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main(["--out", str(tmp_path), "--no-nodes"]) == 0
    out = capsys.readouterr().out
    assert "1. exported" in out and "2. reference" in out and "3. conformance" in out
    for name in ("model.nir", "conformance/report.html", "conformance/report.md",
                 "conformance/results.json"):
        assert (tmp_path / name).stat().st_size > 0
