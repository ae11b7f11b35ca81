"""Target options from the command line: ``nrf-nir run|deploy --option KEY=VALUE`` (repeatable)
reaches ``nrf_nir.lower(..., **options)`` with VALUE typed (bool, int, float or text), an
explicit ``progress`` beating the automatic one; every target checks its options' values, and
each misuse (malformed pair, repeated or reserved key, unknown option, bad type or range,
nan) exits 2 with one line (the harness of ``tests/hostile.py``)."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest

import nrf_nir
from nrf_nir import cli
from nrf_nir.cli import LOWER_PARAMETERS, main, option_value
from nrf_nir.errors import NIRError
from nrf_nir.targets import Options, get
from tests import helpers
from tests.hostile import Case, check_case
from tests.test_target_lava import needs_lava


def _files(work: Path) -> tuple[str, str]:
    """A small spiking net (input 3) and inputs ``[5, 2, 3]`` (integers that make it fire) in
    ``work``."""
    nrf_nir.save(helpers.mlp([3, 4]), work / "m.nir")
    x = np.random.default_rng(0).integers(0, 30, (5, 2, 3)).astype(np.float32)
    np.savez(work / "in.npz", input=x)
    return str(work / "m.nir"), str(work / "in.npz")


def _run_argv(work: Path, out: str, *extra: str) -> list[str]:
    model, inputs = _files(work)
    return ["run", model, "--input", inputs, "--output", str(work / out), *extra]


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("False", False), ("3", 3), ("-2", -2), ("0.5", 0.5), ("1e-3", 1e-3),
    ("255.", 255.0), ("abc", "abc"), ("1_000", "1_000"), (" 3", " 3"), ("", ""),
])
def test_values_are_typed(text: str, value: Any) -> None:
    got = option_value(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text", ["nan", "-inf", "Infinity", "1e999", "9" * 5000])
def test_values_not_finite_or_too_long_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="finite|at most"):
        option_value(text)


def test_reserved_keys_are_the_parameters_of_lower() -> None:
    params = inspect.signature(nrf_nir.lower).parameters.values()
    assert set(LOWER_PARAMETERS) == {p.name for p in params if p.kind != p.VAR_KEYWORD}


def test_run_passes_the_options_and_stepwise_equals_the_default_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = get("reference")
    seen: list[dict[str, Any]] = []
    lower = target.lower

    def spy(checked: Any, semantics: Any, options: Options) -> Any:
        seen.append(dict(options.extra or {}))
        return lower(checked, semantics, options)

    monkeypatch.setattr(target, "lower", spy)
    assert main(_run_argv(tmp_path, "plain.npz")) == 0
    assert main(_run_argv(tmp_path, "step.npz", "--option", "stepwise=true",
                          "--option", "chunk_bytes=64")) == 0
    # an explicit progress wins over the automatic one (given on a terminal)
    monkeypatch.setattr(cli, "_progress_option", lambda name: {"progress": True})
    assert main(_run_argv(tmp_path, "quiet.npz", "--option", "progress=false")) == 0
    assert seen == [{}, {"stepwise": True, "chunk_bytes": 64}, {"progress": False}]
    plain, step = np.load(tmp_path / "plain.npz"), np.load(tmp_path / "step.npz")
    assert plain["output"].sum() > 0
    assert np.array_equal(plain["output"], step["output"])
    assert "wrote" in capsys.readouterr().out


@needs_lava
def test_deploy_lava_fixed_with_an_input_scale_states_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    graph = helpers.chain(nir.Linear(weight=rng.normal(0, 3, (6, 5))),
                          helpers.lif(6, tau=0.005), shape=(5,))
    nrf_nir.save(graph, tmp_path / "a.nir")
    out = tmp_path / "out"
    assert main(["deploy", str(tmp_path / "a.nir"), "--target", "lava-fixed", "-o", str(out),
                 "--option", "input_scale=255"]) == 0
    meta = json.loads((out / "lava.json").read_text())
    assert meta["input"]["input_scale"] == 255
    assert "input_message_bits=24" in meta["load"]
    assert json.loads((out / "deploy.json").read_text())["target"] == "lava-fixed"


def _run_case(*extra: str, target: str = "reference") -> Callable[[Path], list[str]]:
    """A ``Case.make``: ``run`` on the files of :func:`_files` with ``extra`` arguments."""
    def make(work: Path) -> list[str]:
        return _run_argv(work, "o.npz", "--target", target, *extra)
    return make


BAD = [
    ("unknown option", _run_case("--option", "colour=red"),
     "unknown option(s) for the reference target: colour"),
    ("bad int", _run_case("--option", "chunk_bytes=abc"),
     "the option chunk_bytes must be an integer >= 1, got 'abc'"),
    ("zero int", _run_case("--option", "chunk_bytes=0"), "chunk_bytes must be an integer"),
    ("bad bool", _run_case("--option", "stepwise=3"),
     "the option stepwise must be true or false, got 3"),
    ("no =", _run_case("--option", "x"), "argument --option: expected KEY=VALUE, got 'x'"),
    ("empty key", _run_case("--option", "=3"), "KEY must be a name"),
    ("key not a name", _run_case("--option", "a-b=1"), "got 'a-b' in 'a-b=1'"),
    ("same key twice", _run_case("--option", "stepwise=true", "--option", "stepwise=false"),
     "stepwise given twice"),
    ("a parameter of lower", _run_case("--option", "dtype=float64"),
     "dtype is not a target option"),
    ("negative scale", _run_case("--option", "input_scale=-1", target="loihi"),
     "input_scale must be a positive finite number"),
    ("nan scale", _run_case("--option", "input_scale=nan", target="loihi"),
     "input_scale: must be a finite number, got 'nan'"),
]


@pytest.mark.parametrize(("name", "make", "expect"), BAD, ids=[b[0] for b in BAD])
def test_misuse_exits_2_with_one_line(name: str, make: Any, expect: str,
                                      tmp_path: Path) -> None:
    check_case(Case(f"--option {name}", make, expect, absent=("o.npz",)), tmp_path / "w")


def test_deploy_checks_option_values(tmp_path: Path) -> None:
    def make(work: Path) -> list[str]:
        nrf_nir.save(helpers.mlp([3, 4, 2]), work / "m.nir")  # Xylo: a hidden layer first
        return ["deploy", "m.nir", "--target", "xylo", "-o", "out", "--option", "headroom=0.5"]
    check_case(Case("deploy --option headroom=0.5", make, "headroom must be a finite number >= 1",
                    absent=("out",)), tmp_path / "w")


#: (target, option, bad value, what the error says): every target checks its options' values.
TARGET_CASES = [
    ("reference", "fused", "yes", "true or false"),
    ("xylo", "chunk", 2.5, "an integer >= 1"),
    ("xylo", "headroom", math.inf, "finite number >= 1"),
    ("xylo", "headroom", 10 ** 400, "finite number >= 1"),
    ("xylo", "calibration_headrooms", (), "non-empty sequence"),
    ("xylo", "calibration", "calib.npz", "input arrays"),
    ("xylo", "align_latency", 1, "true or false"),
    ("norse", "surrogate", "magic", "one of heaviside, super"),
    ("snntorch", "fuse", "no", "true or false"),
    ("sinabs", "chunk_bytes", True, "an integer >= 1"),
    ("rockpool", "leak", "banana", "one of exact, tau"),
]


@pytest.mark.parametrize(("target", "option", "value", "match"), TARGET_CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(TARGET_CASES)])
def test_targets_refuse_bad_option_values_naming_them(target: str, option: str, value: Any,
                                                      match: str) -> None:
    try:
        backend = get(target)
    except NIRError as exc:
        pytest.skip(str(exc))
    checked = nrf_nir.validate(helpers.mlp([3, 4]))
    semantics = nrf_nir.read_semantics(checked.graph)
    with pytest.raises(NIRError, match=match) as err:
        backend.lower(checked, semantics, Options(extra={option: value}))
    assert err.value.field == option and option in err.value.message
