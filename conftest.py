"""Test selection: ``slow`` marks what ``make test-fast`` (``pytest -m "not slow"``) skips.

Slow: Lava processes, XyloSim, training and the zoo, the demo, conformance sweeps, the hostile
file/CLI corpus and the other framework-heavy modules, as whole modules (``SLOW_MODULES``),
plus single tests of fast modules that are slow alone (``SLOW_TESTS``: id prefixes). The
rules are by path only; ``make test`` still runs everything.
"""

from __future__ import annotations

import pytest

SLOW_MODULES = (
    "conformance/test_conformance.py",
    "tests/test_compare_norse_to_nir.py",
    "tests/test_conformance_ray.py",
    "tests/test_conformance_suite.py",
    "tests/test_demo.py",
    "tests/test_export.py",
    "tests/test_fuzz_smoke.py",
    "tests/test_hostile_files.py",
    "tests/test_hostile_inputs.py",
    "tests/test_hostile_numbers.py",
    "tests/test_hostile_outputs.py",
    "tests/test_nir_paper.py",
    "tests/test_no_network.py",
    "tests/test_report_browser.py",
    "tests/test_runner.py",
    "tests/test_target_lava.py",
    "tests/test_target_norse.py",
    "tests/test_target_rockpool.py",
    "tests/test_target_snntorch.py",
    "tests/test_target_xylo.py",
    "tests/test_zoo.py",
)

SLOW_TESTS = (
    "tests/test_cli.py::test_user_errors_exit_2_with_one_line[args3-npz]",
    "tests/test_cli_imports.py::test_the_check_sees_torch_when_it_is_imported",
    "tests/test_progress.py::test_the_xylo_and_lava_targets_show_a_progress_bar[lava",
    "tests/test_progress.py::test_an_interrupted_lava_run_with_a_bar_leaves_no_process",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        nodeid = item.nodeid
        if nodeid.split("::", 1)[0] in SLOW_MODULES or nodeid.startswith(SLOW_TESTS):
            item.add_marker(pytest.mark.slow)
