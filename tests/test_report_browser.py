"""The HTML report renders in a real headless browser (Chromium, when installed: .ci/run
installs it)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from nrf_nir.conformance.cases import node_cases
from nrf_nir.conformance.report import write_report
from nrf_nir.conformance.runner import run_suite

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                    "chromium; .ci/run does)")
def test_report_renders_in_headless_chromium(tmp_path):
    cases = [c for c in node_cases(T=40, B=2) if c.name in ("node/LIF/scalar", "node/LIF/ge")]
    results = run_suite(cases, ["reference", "norse"], workers=1, progress=False)
    results[0].metrics = {"output": dict(results[0].metrics["output"], exact=0.5)}
    paths = write_report(results, tmp_path / "report")
    url = paths["html"].resolve().as_uri()
    profile = f"--user-data-dir={tmp_path / 'profile'}"
    dom = subprocess.run([CHROMIUM, *FLAGS, profile, "--dump-dom", url], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<table id=\"matrix\">" in dom.stdout
    assert dom.stdout.count("<tr>") >= 3 and "data:image/png;base64," in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, profile, "--window-size=1200,900",
                    f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    from PIL import Image

    image = Image.open(shot).convert("L")
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20  # text, colours and a raster, not blank
