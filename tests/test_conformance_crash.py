"""A conformance worker that dies (out of memory, a crash in a native library) is a result of
its case, not the end of the suite: the other cases still run and are judged."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import numpy as np

from nrf_nir.cases import Case
from nrf_nir.conformance.runner import run_suite
from tests.helpers import mlp


@dataclass
class DyingCase(Case):
    """A case whose unpickling kills any process but the one that made it (a worker)."""

    origin: int = 0

    def __setstate__(self, state: dict) -> None:
        if state["origin"] != os.getpid():
            os.kill(os.getpid(), signal.SIGKILL)
        self.__dict__.update(state)


def _inputs(n: int) -> dict[str, np.ndarray]:
    return {"input": (np.random.default_rng(0).random((20, 2, n)) < 0.3).astype(np.float32)}


def test_a_dying_worker_becomes_an_error_of_its_case_and_the_rest_run() -> None:
    graph = mlp([4, 6, 3])
    graph.metadata["dt"] = 1e-3
    good = [Case(name=f"node/good{i}", graph=graph, inputs=_inputs(4)) for i in range(3)]
    dying = DyingCase(name="node/dies", graph=graph, inputs=_inputs(4), origin=os.getpid())
    results = run_suite([good[0], dying, *good[1:]], ["norse"], workers=2, progress=False)
    by_case = {r.case: r for r in results}
    assert set(by_case) == {"node/good0", "node/good1", "node/good2", "node/dies"}
    died = by_case["node/dies"]
    assert died.status == "error" and not died.ok
    assert "died (killed by signal 9 (SIGKILL: out of memory?))" in died.message, died.message
    for i in range(3):
        assert by_case[f"node/good{i}"].status in ("pass", "unsupported"), by_case[f"node/good{i}"]
