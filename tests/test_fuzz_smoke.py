"""A short run of ``benchmarks/fuzz_nir.py`` must end with no unhandled exception, no badly
formed error, no canary leak and no damage; and each of the fuzzer's detectors must fire on a
planted fault (an escaping exception, a hang, a long error, canary values, text and bytes, a
changed victim, a partial file, a worker crash)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import nrf_nir
from nrf_nir.errors import NIRError

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "fuzz_nir.py"


def _load_fuzzer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_nir", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_nir"] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzzer()


def _run_fuzzer(tmp: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = tmp / "fuzz.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", str(report), "--corpus", str(tmp / "crashes"),
         *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "NRF_NIR_READ_TIMEOUT": "5", **(env or {})})
    assert report.exists(), f"no report; stdout {done.stdout[-3000:]}; stderr {done.stderr[-3000:]}"
    return done, json.loads(report.read_text())


def test_300_fuzz_cases_end_without_unhandled_errors_leaks_or_damage(tmp_path):
    """300 cases, one worker, seed 0: every family is drawn, and every case either ran or was
    refused with a well-formed NIRError. On failure the message shows the counts per family
    and outcome and every failure kind (files and tracebacks under the corpus folder)."""
    start = time.monotonic()
    done, report = _run_fuzzer(tmp_path, "--count", "300", "--workers", "1", "--seed", "0")
    table = fuzz.render(report)
    assert report["count"] == 300, table
    for family, counts in report["families"].items():
        assert sum(counts.values()) > 0, f"family {family} was never drawn\n{table}"
    bad = {o: report["outcomes"][o] for o in fuzz.FAILURES if report["outcomes"][o]}
    assert not bad, f"fuzzing found {bad} (in {time.monotonic() - start:.0f} s):\n{table}"
    assert done.returncode == 0, done.stderr[-2000:]
    # the hostile families were refused, not silently accepted
    for family in ("external_storage", "external_link", "soft_link", "virtual", "hard_link"):
        assert report["families"][family]["refused"] > 0, table


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = fuzz.Work(tmp_path_factory.mktemp("fuzz") / "root", mounts=False)
    yield w
    w.unmount()


def _input_case(w, timeout: float = 10.0) -> dict:
    return fuzz.run_case(w, 0, 0, ("input",), timeout)


def test_a_valid_run_is_counted_as_ran(work):
    """Control: with nothing planted, the detectors stay quiet."""
    record = _input_case(work)
    assert record["family"] == "input"
    assert record["outcome"] in ("ran", "refused"), record
    plan = fuzz.Plan("clean", lambda: nrf_nir.run(work.graph(0)[0], np.ones(
        (3, 1, *work.graph(0)[1].out_shapes["input"]), np.float32), dt=1e-3))
    work.fresh_case()
    assert fuzz.execute(work, plan, 10.0)[0] == "ran"


def test_an_escaping_exception_is_unhandled_and_saved(work, monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise KeyError("planted")

    monkeypatch.setattr(nrf_nir, "run", broken)
    record = _input_case(work)
    assert record["outcome"] == "unhandled"
    assert record["key"].startswith("KeyError: 'planted'")
    dest = fuzz.save_failure(tmp_path / "corpus", work.case, record, 0, ("input",))
    text = (dest / "failure.txt").read_text()
    assert "KeyError: 'planted'" in text and "--replay 0" in text and "Traceback" in text


def test_a_hang_is_cut_at_the_case_timeout(work, monkeypatch):
    monkeypatch.setattr(nrf_nir, "run", lambda *a, **k: time.sleep(30))
    start = time.monotonic()
    record = _input_case(work, timeout=0.5)
    assert time.monotonic() - start < 10
    assert record["outcome"] == "unhandled"
    assert record["key"] == "timeout: no answer within 0.5 s"


class _TwoLines(NIRError):
    def __str__(self) -> str:  # NIRError itself escapes newlines; a subclass might not
        return "first\nsecond"


class _Long(NIRError):
    def __str__(self) -> str:  # NIRError itself keeps 1,000 characters; a subclass might not
        return "x" * 3000


def test_a_long_or_multiline_error_is_a_bad_error(work, monkeypatch):
    for error, key in ((_Long("long"), "bad error: a message over 2,000 characters"),
                       (_TwoLines("two"), "bad error: a message of several lines")):
        def refuse(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(nrf_nir, "run", refuse)
        record = _input_case(work)
        assert (record["outcome"], record["key"]) == ("bad_error", key)


def test_a_cli_error_that_names_no_file_is_a_bad_error(work, monkeypatch):
    from nrf_nir import cli

    path = work.root / "base0.nir"
    plan = fuzz.Plan("validate", lambda: fuzz.consume_cli(["validate", str(path)]))
    for error, expected in ((NIRError("bad dt", field="dt"), ("bad_error", "bad error: "
                                                                "the CLI's error names no file")),
                            (NIRError("bad dt", field="dt", file=str(path)), ("refused", None))):
        def refuse(args, error=error):
            raise error

        monkeypatch.setattr(cli, "cmd_validate", refuse)
        work.fresh_case()
        assert fuzz.execute(work, plan, 10.0)[:2] == expected


def test_canary_values_text_and_bytes_are_leaks(work, monkeypatch):
    canary = work.canary
    values = np.fromfile(canary.raw, np.float32, count=4)
    secret = canary.secret

    def written(*args, **kwargs):
        (work.case / "out.bin").write_bytes(b"head" + canary.raw.read_bytes()[250:300])
        return {}

    def warned(*args, **kwargs):
        warnings.warn(f"assumed {secret}", stacklevel=1)
        return {}

    def raised(*args, **kwargs):
        raise NIRError(f"tau must be > 0, got {float(values[0])}")

    leaks = {
        "leak: canary in the result": lambda *a, **k: {"output": torch.from_numpy(values)},
        "leak: canary in the error message": raised,
        "leak: canary in the warning": warned,
        "leak: canary in the printed output": lambda *a, **k: print(secret),
        "leak: canary in the written file": written,
    }
    for key, planted in leaks.items():
        monkeypatch.setattr(nrf_nir, "run", planted)
        record = _input_case(work)
        assert (record["outcome"], record.get("key")) == ("leak", key), record
    # values reach a result as float64, as integers' bit patterns, inside a NIR graph
    graph = work.graph(0)[0]
    assert canary.find(graph) is None
    node = next(iter(n for n in graph.nodes.values() if hasattr(n, "weight")))
    original = node.weight
    try:
        node.weight = np.full((2, 2), fuzz.CANARY_VALUE, np.float32).astype(np.float64)
        assert canary.find(graph) is not None
        node.weight = values.view(np.int32)
        assert canary.find({"x": [graph]}) is not None
    finally:
        node.weight = original
    assert canary.find({"a": np.arange(10.0), "b": "text"}) is None


def test_a_changed_victim_or_a_partial_file_is_damage(work, monkeypatch):
    def through_link(graph, path):
        with open(path, "wb") as handle:  # follows the planted symlink to the victim
            handle.write(b"overwritten")

    def partial(graph, path):
        (Path(path).parent / ".nrf-nir-model.nir.tmp").write_bytes(b"half")
        raise NIRError("disk full")

    for save, key in ((through_link, "damage: victim.secret was changed"),
                      (partial, "damage: partial files left: .nrf-nir-model.nir.tmp")):
        monkeypatch.setattr(nrf_nir, "save", save)
        rng = np.random.default_rng(1)
        while True:  # a case that saves (not the CLI run) onto the symlink
            work.fresh_case()
            plan = fuzz.plan_output(work, rng, variant="symlink")
            if plan.what.startswith("save"):
                break
        outcome, found, _ = fuzz.execute(work, plan, 10.0)
        assert (outcome, found) == ("damage", key)


def test_every_family_builds_its_cases(work):
    """No family's builder fails on the base graphs (a fuzzer bug would hide the library's)."""
    for family in fuzz.FAMILIES:
        for i in range(3):
            work.fresh_case()
            rng = np.random.default_rng([7, i])
            plan = fuzz.BUILDERS[family](work, rng)
            assert plan.what, family


def test_a_worker_crash_is_recorded_and_the_run_goes_on(tmp_path):
    """A worker killed by a signal (here planted at case 3) costs that case only: it is
    recorded as unhandled, saved, and a new worker fuzzes the rest."""
    done, report = _run_fuzzer(tmp_path, "--count", "8", "--families", "input", "--no-mounts",
                               env={fuzz.CRASH_AT_ENV: "3"})
    assert done.returncode == 1
    assert report["count"] == 8
    assert report["outcomes"]["unhandled"] == 1
    assert report["failures"]["worker died (signal 11)"]["first_case"] == 3
    assert report["worker_restarts"] == 1
    assert (tmp_path / "crashes" / "input_0_3" / "failure.txt").exists()
