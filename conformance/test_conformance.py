"""``pytest conformance/``: every node case and zoo model case on every available target,
against its manifest.

A target that is not installed is skipped with the reason printed; a case whose result differs
from its manifest entry (in either direction) fails with the metrics that show where. The two
largest zoo models run on ``lava-float`` (Lava's CPU simulator: about 40 s each at 4 samples
of 100 steps here) at 1 sample of 20 steps (``SMALLER``), judged by the same manifest entry.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from nrf_nir.conformance.cases import Case, model_cases, node_cases
from nrf_nir.conformance.manifest import load_manifest
from nrf_nir.conformance.runner import judge, run_case
from nrf_nir.errors import NIRError
from nrf_nir.targets import get, registered

CASES = node_cases() + model_cases(T=100, B=4)
#: (case, target) -> (steps, samples) it runs at instead
SMALLER = {("model/nrf", "lava-float"): (20, 1), ("model/time-surface", "lava-float"): (20, 1)}


def _available(name: str) -> str | None:
    try:
        get(name)
    except NIRError as exc:
        return exc.message
    return None


@pytest.mark.parametrize("target", registered())
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_meets_manifest(case: Case, target: str) -> None:
    missing = _available(target)
    if missing:
        pytest.skip(f"target {target} unavailable here: {missing}")
    if (case.name, target) in SMALLER:
        T, B = SMALLER[(case.name, target)]
        case = replace(case, inputs={k: v[:T, :B] for k, v in case.inputs.items()})
    (raw,) = run_case(case, (target,))
    result = judge(raw, load_manifest(target).expect(case.name))
    assert result.ok, (f"{case.name} on {target}: {result.status} (expected {result.level}): "
                       f"{result.message}; metrics {result.metrics}")
