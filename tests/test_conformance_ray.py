"""--ray-address: the conformance cases run as Ray tasks on a local Ray started by the test,
with the same results as local processes, and no Ray process left behind."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest

from nrf_nir.conformance.cases import node_cases
from nrf_nir.conformance.runner import run_suite


def descendants() -> dict[int, str]:
    """pid -> command name of every live (non-zombie) process below this one."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        if fields[0] == "Z":
            continue
        parents[pid], names[pid] = int(fields[1]), name
    mine, found = os.getpid(), {}
    for pid in parents:
        p = pid
        while p in parents and p not in (0, 1):
            p = parents[p]
            if p == mine:
                found[pid] = names[pid]
                break
    return found


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="Ray is not installed (pip install 'nrf-nir[cluster]')")
def test_ray_runs_equal_local_runs():
    cases = [c for c in node_cases(T=30, B=2)][:5]
    before = set(descendants())
    on_ray = run_suite(cases, ["reference", "norse"], ray_address="local", progress=False)
    local = run_suite(cases, ["reference", "norse"], workers=1, progress=False)

    def strip(results):
        return [r.to_json() | {"seconds": 0} for r in results]

    assert strip(on_ray) == strip(local)
    assert all(r.ok for r in on_ray)
    for _ in range(50):  # Ray's processes exit shortly after shutdown()
        left = {pid: n for pid, n in descendants().items() if pid not in before}
        if not left:
            break
        time.sleep(0.2)
    assert not left, left
