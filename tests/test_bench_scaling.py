"""Smoke test of ``benchmarks/bench_scaling.py --quick``: every point of the small grid runs in
its own process and succeeds, the JSON holds what the docs report, the plots are written."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_scaling.py"
POINT_KEYS = {"axis", "net", "T", "B", "size", "ok", "best_s", "times_s", "steps_per_s",
              "input_bytes", "output_bytes", "peak_total_bytes", "working_bytes",
              "chunk_steps", "others_busy_best"}


@pytest.mark.slow
def test_quick_grid_writes_json_and_plots(tmp_path: Path) -> None:
    out_json, plots = tmp_path / "scaling.json", tmp_path / "img"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--repeats", "1", "--timeout", "120",
         "--json", str(out_json), "--plots", str(plots)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out_json.read_text())
    assert {"config", "machine", "points", "verdict", "plots"} <= set(report)
    assert len(report["machine"]["loadavg_start"]) == 3
    assert len(report["machine"]["loadavg_end"]) == 3
    points = report["points"]
    # the quick grid: T and B axes for both nets, the size axis for nrf and the full backbone
    assert {(p["axis"], p["net"]) for p in points} == {
        ("T", "mlp"), ("B", "mlp"), ("T", "nrf"), ("B", "nrf"), ("size", "nrf"),
        ("size", "nrf_full")}
    for p in points:
        assert p["ok"], p
        assert POINT_KEYS <= set(p), POINT_KEYS - set(p)
        assert len(p["times_s"]) == 1 and p["best_s"] == min(p["times_s"]) > 0
        assert p["steps_per_s"] == pytest.approx(p["T"] / p["best_s"])
        shape = [512] if p["net"] == "mlp" else [2, p["size"], p["size"]]
        assert p["input_bytes"] == 4 * p["T"] * p["B"] * math.prod(shape)
        assert p["output_bytes"] > 0 and p["peak_total_bytes"] > p["input_bytes"]
        assert p["working_bytes"] == (p["peak_total_bytes"] - p["input_bytes"]
                                      - p["output_bytes"])
        assert 1 <= p["chunk_steps"] <= p["T"]
    full = [p for p in points if p["net"] == "nrf_full"]
    assert [p["size"] for p in full] == [64] and full[0]["chunk_steps"] == 1
    verdict = report["verdict"]["working_memory_flat_in_T"]
    assert set(verdict) == {"mlp", "nrf"}
    assert all(v["flat"] is not None and v["ratio"] >= 1 for v in verdict.values())
    assert "working memory flat in T: " in proc.stdout
    assert proc.stdout.count("\n[") >= len(points) - 1  # one progress line per point
    written = sorted(Path(p).name for p in report["plots"])
    assert written == ["scaling_B.png", "scaling_T.png", "scaling_size.png"]
    for name in written:
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 100_000


def test_a_failing_point_is_recorded_not_dropped(tmp_path: Path) -> None:
    """A point whose worker cannot finish in time is kept in the JSON as failed."""
    out_json = tmp_path / "scaling.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--nets", "mlp", "--axes", "T", "--T", "50",
         "--fixed-B", "1", "--repeats", "1", "--timeout", "0.05", "--json", str(out_json),
         "--plots", ""],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out_json.read_text())
    [point] = report["points"]
    assert point["ok"] is False and point["timeout"] is True
    assert "timeout after 0.05 s" in point["error"]
    assert report["plots"] == []
    assert report["verdict"]["working_memory_flat_in_T"]["mlp"]["flat"] is None
    assert "FAILED: timeout" in proc.stdout and "1 point(s) failed" in proc.stdout
