"""The demo script runs end to end and writes its report."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_demo_writes_model_outputs_and_report(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "demo", Path(__file__).resolve().parents[1] / "examples" / "demo.py")
    assert spec and spec.loader
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main(["--out", str(tmp_path), "--steps", "60"]) == 0
    for name in ("model.nir", "outputs.npz", "raster.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 0
    report = (tmp_path / "report.md").read_text()
    assert "spike agreement: 1.000000" in report
