"""``lower``'s ``strict``: check runs once per lower, and its result is what lower acts on."""

from __future__ import annotations

from typing import Any

import nir
import numpy as np
import pytest

import nrf_nir
from nrf_nir import targets
from nrf_nir.errors import NIRError
from tests.helpers import chain, cuba, lif


def two_layers(v_th_hidden: float = 1.0, reset: str = "value") -> nir.NIRGraph:
    """input -> Linear -> CubaLIF 6 -> Linear -> CubaLIF 3 -> output: every target runs it
    (Rockpool with the subtract reset)."""
    rng = np.random.default_rng(0)
    return chain(nir.Linear(weight=rng.normal(0.3, 1.0, (6, 4))),
                 cuba(6, 0.004, 0.008, v_th_hidden),
                 nir.Linear(weight=rng.normal(0.3, 1.0, (3, 6))), cuba(3, 0.004, 0.008),
                 shape=(4,), reset=reset)


def lif_two_layers() -> nir.NIRGraph:
    """The same with LIF neurons, for Sinabs (no Cuba node: its current decays first)."""
    rng = np.random.default_rng(0)
    return chain(nir.Linear(weight=rng.normal(0.3, 1.0, (6, 4))), lif(6),
                 nir.Linear(weight=rng.normal(0.3, 1.0, (3, 6))), lif(3), shape=(4,))


#: targets that import no framework (torch only): the rest are slow to import (make test-fast)
LIGHT = ("reference", "xylo", "xylo-imu", "xylo-audio3", "loihi")


@pytest.mark.parametrize("name", [n if n in LIGHT else pytest.param(n, marks=pytest.mark.slow)
                                  for n in targets.registered()])
def test_check_runs_once_per_lower(name, monkeypatch):
    try:
        target = targets.get(name)
    except NIRError as exc:
        pytest.skip(exc.message)
    calls: list[Any] = []
    original = target.check

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, "check", counted)
    for strict in (True, False):
        calls.clear()
        reset = "subtract" if name == "rockpool" else "value"
        graph = lif_two_layers() if name == "sinabs" else two_layers(reset=reset)
        lowered = nrf_nir.lower(graph, name, strict=strict)
        assert len(calls) == 1, (name, strict, len(calls))
        assert lowered.violations == []


def test_lower_reuses_the_analysis_of_check(monkeypatch):
    """Xylo's mapping and the Lava plan are made once (by check), not again by lower."""
    from nrf_nir.targets.lava import common
    from nrf_nir.targets.xylo import target as xylo

    counts = {"xylo": 0, "loihi": 0}

    def counting(module: Any, key: str) -> None:
        original = module.analyse

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, "analyse", wrapped)

    counting(xylo, "xylo")
    counting(common, "loihi")
    nrf_nir.lower(two_layers(), "xylo")
    nrf_nir.lower(two_layers(), "loihi")
    assert counts == {"xylo": 1, "loihi": 1}


@pytest.mark.slow
def test_rockpool_plans_each_neuron_once(monkeypatch):
    pytest.importorskip("rockpool")
    from nrf_nir.targets import rockpool

    planned: list[str] = []
    original = rockpool.neuron_plan

    def counted(node: Any, *args: Any, **kwargs: Any) -> Any:
        planned.append(type(node).__name__)
        return original(node, *args, **kwargs)

    monkeypatch.setattr(rockpool, "neuron_plan", counted)
    nrf_nir.lower(two_layers(reset="subtract"), "rockpool")
    assert planned == ["CubaLIF", "CubaLIF"]
    planned.clear()
    # check plans under the leak option, and lower reuses those plans
    nrf_nir.lower(two_layers(reset="subtract"), "rockpool", leak="tau")
    assert planned == ["CubaLIF", "CubaLIF"]


SATURATING = 1e5  # a hidden threshold at which Xylo's int8 weights round to 0


def test_strict_refuses_a_precision_violation():
    found = nrf_nir.check(two_layers(SATURATING), "xylo")
    assert [(v.node, v.field) for v in found] == [("n1", "weight")]
    with pytest.raises(NIRError, match="target 'xylo' cannot run this graph: .*int8 weights "
                                       "vanish"):
        nrf_nir.lower(two_layers(SATURATING), "xylo")


def test_not_strict_lowers_a_precision_violation_and_returns_it():
    lowered = nrf_nir.lower(two_layers(SATURATING), "xylo", strict=False)
    assert [(v.node, v.field) for v in lowered.violations] == [("n1", "weight")]
    report = lowered.backend.report["design_rules"]["violations"]
    assert len(report) == 1 and "int8 weights vanish" in report[0]
    config = lowered.backend.config
    assert not np.any(config.weights_in) and np.any(config.weights_out)  # what it said


@pytest.mark.slow  # compiles the emulator's kernel
def test_not_strict_runs_a_precision_violation():
    lowered = nrf_nir.lower(two_layers(SATURATING), "xylo", strict=False)
    x = (np.random.default_rng(1).random((40, 2, 4)) < 0.5).astype(np.float32)
    out = lowered.run(x, record=("n1",))
    assert out["output"].shape == (40, 2, 3)
    assert float(out["n1"].sum()) == 0.0  # the weights vanished: the hidden layer is silent


def test_not_strict_still_refuses_what_cannot_run():
    """A violation that leaves no mapping raises even with strict=False (the target's own
    message)."""
    with pytest.raises(NIRError, match="the xylo target cannot run this graph: .*v_threshold "
                                       "must be above v_leak"):
        nrf_nir.lower(two_layers(-1.0), "xylo", strict=False)


@pytest.mark.slow
def test_not_strict_rockpool_refuses_every_violation():
    """Rockpool runs none of its violations (here: no value reset) even with strict=False."""
    pytest.importorskip("rockpool")
    with pytest.raises(NIRError, match="the rockpool target cannot run this graph: .*reset"):
        nrf_nir.lower(two_layers(), "rockpool", strict=False)


def test_a_direct_lower_checks_itself():
    """Without ``options.violations`` (a call of the target's lower, not nrf_nir.lower) the
    target checks and refuses as strict."""
    from nrf_nir.semantics import read_semantics

    checked = nrf_nir.validate(two_layers(SATURATING))
    target = targets.get("xylo")
    with pytest.raises(NIRError, match="the xylo target cannot run"):
        target.lower(checked, read_semantics(checked.graph), targets.Options())
