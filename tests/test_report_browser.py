"""The HTML report renders in a real headless browser (Chromium, when installed: .ci/run
installs it): the per-target summary is in the page, and a screenshot 1400 px wide (kept as
a test artifact; its path is printed) shows the summary and a raster's difference markers."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from nrf_nir.conformance.cases import node_cases
from nrf_nir.conformance.report import write_report
from nrf_nir.conformance.runner import run_suite

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 1400, 1400


def _pixels(image, rgb_test) -> int:
    return sum(n for n, rgb in image.getcolors(maxcolors=1 << 24) if rgb_test(*rgb))


def test_report_renders_in_headless_chromium(tmp_path):
    if CHROMIUM is None:
        print("SKIPPED: Chromium is not installed (apt-get install chromium; .ci/run does)")
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does)")
    cases = [c for c in node_cases(T=40, B=2) if c.name in ("node/LIF/scalar", "node/LIF/ge")]
    results = run_suite(cases, ["reference", "norse"], workers=1, progress=False)
    # make the first result differ: 6 spikes moved, so its raster shows extra and missing
    first = results[0]
    assert first.raster is not None
    got = np.array(first.raster["target"])
    spikes = np.argwhere(got[:, :4] != 0)[:6]
    got[spikes[:, 0], spikes[:, 1]] = 0
    got[np.minimum(spikes[:, 0] + 2, got.shape[0] - 1), spikes[:, 1]] = 1
    first.raster = dict(first.raster, target=got)
    first.metrics = {"output": dict(first.metrics["output"], exact=0.5)}
    paths = write_report(results, tmp_path / "report")
    url = paths["html"].resolve().as_uri()
    profile = f"--user-data-dir={tmp_path / 'profile'}"
    dom = subprocess.run([CHROMIUM, *FLAGS, profile, "--dump-dom", url], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert "<table id=\"target-summary\">" in page and "<table id=\"matrix\">" in page
    summary = page[page.index("<table id=\"target-summary\">"):page.index("id=\"matrix\"")]
    assert "runs 2 of 2 cases" in summary and "refused 1 case, 1 reason" in summary
    assert page.count("data:image/png;base64,") == 1
    shot = tmp_path / "report-1400px.png"
    subprocess.run([CHROMIUM, *FLAGS, profile, f"--window-size={WIDTH},{HEIGHT}",
                    f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    print(f"screenshot of the report: {shot}")
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    # the raster is in the first screen at full size: its extra (red) and missing (blue)
    # markers cover enough pixels to be seen, not specks (links are #0000ee: not counted)
    red = _pixels(image, lambda r, g, b: r > 240 and g < 60 and b < 60)
    blue = _pixels(image, lambda r, g, b: b > 245 and r < 60 and g < 60)
    assert red > 100 and blue > 100, (red, blue)
