"""The compiled Xylo kernel is cached on disk: a new process does not compile it again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WARM = "from nrf_nir.targets.xylo.kernel import warm; print(warm())"


@pytest.mark.slow  # compiles the kernel once from nothing (15-20 s)
def test_a_second_process_loads_the_kernel_from_the_cache(tmp_path: Path) -> None:
    pytest.importorskip("numba")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}

    def seconds() -> float:
        proc = subprocess.run([sys.executable, "-c", WARM], env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return float(proc.stdout.split()[-1])

    cold = seconds()
    entries = sorted(p.name for p in tmp_path.rglob("*.nbi"))
    assert entries, "nothing was cached"
    warm = seconds()
    assert warm < 3.0 and warm < cold / 3, (cold, warm)
    # the second process found the entries instead of adding new ones
    assert sorted(p.name for p in tmp_path.rglob("*.nbi")) == entries
    assert len(list(tmp_path.rglob("*.nbc"))) <= 3
