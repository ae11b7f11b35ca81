"""The package's own configuration builds without warnings, and the wheel carries its data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_builds_without_warnings_and_carries_its_data(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    warnings = [line for line in text.splitlines() if "Warning" in line]
    assert warnings == [], "\n".join(warnings)
    (wheel,) = tmp_path.glob("nrf_nir-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    manifests = {p.name for p in (REPO / "conformance" / "manifests").glob("*.toml")}
    checkpoints = {p.name for p in (REPO / "models" / "checkpoints").glob("*.pt")}
    assert manifests and checkpoints
    assert {n.rsplit("/", 1)[1] for n in names if "/manifests/" in n} == manifests
    assert {n.rsplit("/", 1)[1] for n in names if "/checkpoints/" in n} == checkpoints
    assert "nrf_nir/targets/xylo/rules.py" in names and "nrf_nir/runner.py" in names
