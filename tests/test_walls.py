"""The walls between the layers: the import-linter contracts of pyproject.toml, as ``make lint``
runs them.

setuptools maps targets/, exporters/, models/ and conformance/ into ``nrf_nir`` from beside
nrf_nir/, and import-linter's engine (grimp) finds submodules by walking the package's folder;
so the Makefile links nrf_nir/'s entries and the mapped folders into ``build/walls/nrf_nir`` and
runs ``lint-imports`` there. These tests build that tree the same way (``link_tree``; the first
test holds the Makefile to the same folders) and show that the linter sees every module, that
the real contracts hold, and that a forbidden import planted in a copy of the sources breaks
them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT_PACKAGE = "nrf_nir"


def _lint_imports() -> Path | None:
    """The ``lint-imports`` script of this interpreter's environment, or on PATH; None: not
    installed."""
    beside = Path(sys.executable).parent / "lint-imports"
    if beside.exists():
        return beside
    found = shutil.which("lint-imports")
    return Path(found) if found else None


LINT_IMPORTS = _lint_imports()
needs_linter = pytest.mark.skipif(
    LINT_IMPORTS is None,
    reason="lint-imports is not installed (pip install -e '.[dev]' installs import-linter)")


def mapped_folders(root: Path) -> dict[str, str]:
    """Subpackage of ``nrf_nir`` -> its folder, from ``[tool.setuptools.package-dir]``."""
    with open(root / "pyproject.toml", "rb") as handle:
        package_dir: dict[str, str] = tomllib.load(handle)["tool"]["setuptools"]["package-dir"]
    prefix = ROOT_PACKAGE + "."
    return {name.removeprefix(prefix): folder for name, folder in package_dir.items()
            if name.startswith(prefix)}


def link_tree(root: Path, dest: Path) -> Path:
    """What ``make lint`` builds: ``dest/nrf_nir`` holding a link to each entry of
    ``root/nrf_nir`` and to each mapped folder under its subpackage name. Returns ``dest``."""
    package = dest / ROOT_PACKAGE
    package.mkdir(parents=True)
    for entry in (root / ROOT_PACKAGE).iterdir():
        (package / entry.name).symlink_to(entry)
    for name, folder in mapped_folders(root).items():
        (package / name).symlink_to(root / folder)
    return dest


def expected_modules(root: Path) -> set[str]:
    """Every module setuptools installs from ``root``: the files of nrf_nir/ and of each mapped
    folder's packages (folders with an ``__init__.py``), by dotted name."""
    def walk(folder: Path, name: str) -> set[str]:
        found = {name}
        for path in folder.iterdir():
            if path.is_dir() and (path / "__init__.py").exists():
                found |= walk(path, f"{name}.{path.name}")
            elif path.suffix == ".py" and path.name != "__init__.py":
                found.add(f"{name}.{path.stem}")
        return found

    modules = walk(root / ROOT_PACKAGE, ROOT_PACKAGE)
    for name, folder in mapped_folders(root).items():
        modules |= walk(root / folder, f"{ROOT_PACKAGE}.{name}")
    return modules


def run_linter(tree: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` run in ``tree`` (first on its sys.path) with the contracts of
    ``config``, as the Makefile runs it."""
    assert LINT_IMPORTS is not None
    return subprocess.run([str(LINT_IMPORTS), "--no-logo", "--no-cache", str(config)],
                          cwd=tree, capture_output=True, text=True, timeout=300, check=False)


def test_the_makefile_links_every_mapped_folder():
    makefile = (REPO / "Makefile").read_text()
    loop = re.search(r"for p in ([\w ]+); do ln -s \$\(CURDIR\)/\$\$p \$\(WALLS\)/nrf_nir/\$\$p",
                     makefile)
    assert loop, "the lint target no longer links the mapped folders into $(WALLS)"
    folders = mapped_folders(REPO)
    assert all(name == folder for name, folder in folders.items()), \
        "the Makefile links each folder under its own name"
    assert sorted(loop.group(1).split()) == sorted(folders.values())
    assert "ln -s $(CURDIR)/nrf_nir/* $(WALLS)/nrf_nir/" in makefile
    assert re.search(r"cd \$\(WALLS\) && \S*lint-imports .*pyproject\.toml", makefile)


@needs_linter
def test_the_linter_sees_every_module(tmp_path):
    tree = link_tree(REPO, tmp_path / "walls")
    script = ("import json, sys\nsys.path.insert(0, '.')\nimport grimp\n"
              f"print(json.dumps(sorted(grimp.build_graph({ROOT_PACKAGE!r}).modules)))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tree, capture_output=True,
                          text=True, timeout=300, check=True)
    seen = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    expected = expected_modules(REPO)
    assert {"nrf_nir.targets.xylo.rules", "nrf_nir.exporters.checkpoint", "nrf_nir.models.cli",
            "nrf_nir.conformance.cases", "nrf_nir.api"} <= expected
    assert seen == expected


@needs_linter
def test_the_contracts_hold(tmp_path):
    proc = run_linter(link_tree(REPO, tmp_path / "walls"), REPO / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout and "KEPT" in proc.stdout


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python files of nrf_nir/ and the mapped folders, and pyproject.toml, copied."""
    root = tmp_path_factory.mktemp("sources")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    for folder in [ROOT_PACKAGE, *mapped_folders(REPO).values()]:
        shutil.copytree(REPO / folder, root / folder, ignore=lambda where, names: [
            n for n in names if not (n.endswith(".py") or (Path(where) / n).is_dir())
            or n == "__pycache__"])
    return root


#: (file to write or extend in the copy, the line, what lint-imports must say of it)
PLANTED = {
    "exporters import the zoo": (
        "exporters/_planted.py", "import nrf_nir.models",
        "nrf_nir.exporters is not allowed to import nrf_nir.models"),
    "conformance imports the zoo": (
        "conformance/_planted.py", "from nrf_nir.models import build",
        "nrf_nir.conformance is not allowed to import nrf_nir.models"),
    "a target imports another, deep inside": (
        "targets/xylo/_planted.py", "from nrf_nir.targets import norse",
        "nrf_nir.targets.xylo is not allowed to import nrf_nir.targets.norse"),
    "a core module imports the exporters": (
        "nrf_nir/io.py", "from nrf_nir.exporters import checkpoint",
        "nrf_nir.io is not allowed to import nrf_nir.exporters"),
    "a new core module is not in the layers": (
        "nrf_nir/_planted.py", "from nrf_nir import errors",
        "not listed as layers:\n\n- nrf_nir._planted"),
    "the package root imports the zoo": (
        "nrf_nir/__init__.py", "from nrf_nir import models",
        "nrf_nir is not allowed to import nrf_nir.models"),
    "the registry imports a target": (
        "targets/__init__.py", "from nrf_nir.targets import reference",
        "nrf_nir.targets is not allowed to import nrf_nir.targets.reference"),
    "the zoo imports the registry": (
        "models/_planted.py", "from nrf_nir.targets import get",
        "nrf_nir.models is not allowed to import nrf_nir.targets"),
    "conformance imports a target": (
        "conformance/_planted.py", "import nrf_nir.targets.lava",
        "nrf_nir.conformance is not allowed to import nrf_nir.targets.lava"),
}


@needs_linter
@pytest.mark.parametrize("plant", PLANTED, ids=list(PLANTED))
def test_a_planted_import_breaks_a_wall(plant, source_copy, tmp_path):
    relative, line, said = PLANTED[plant]
    root = tmp_path / "sources"
    shutil.copytree(source_copy, root)
    target = root / relative
    before = target.read_text() if target.exists() else ""
    target.write_text(f"{before}\n{line}\n")
    proc = run_linter(link_tree(root, tmp_path / "walls"), root / "pyproject.toml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert said in out, out


# --------------------------------------------------------------------------------------------
# How a layer reaches one above it without importing it: by location (nrf_nir.plugins,
# nrf_nir.cases), imported only when called.


def test_the_suite_and_the_exporters_import_no_zoo():
    script = ("import sys\nimport nrf_nir.api, nrf_nir.conformance.cases, "
              "nrf_nir.conformance.runner, nrf_nir.conformance.report, "
              "nrf_nir.exporters.checkpoint\n"
              "print(sorted(m for m in sys.modules if m.startswith('nrf_nir.models')))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def _two_cases(T: int = 200, B: int = 16, seed: int = 0) -> list[Any]:
    """A case provider for the tests: two one-node cases of ``T`` steps, ``B`` samples."""
    import nir
    import numpy as np

    from nrf_nir.cases import Case

    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2])),
                                "output": nir.Output(output_type=np.array([2]))},
                         edges=[("input", "output")], type_check=False)
    x = np.random.default_rng(seed).random((T, B, 2)).astype(np.float32)
    return [Case(f"test/{i}", graph, {"input": x}, tags=("test",)) for i in range(2)]


def test_case_providers_are_found_by_location(monkeypatch):
    from nrf_nir import cases
    from nrf_nir.conformance.cases import Case, model_cases

    assert Case is cases.Case  # one type: the suite's name for the core's
    monkeypatch.setattr(cases, "_PROVIDERS", {"absent": "nrf_nir.no_such_layer:cases"})
    cases.register_provider("test", f"{__name__}:_two_cases")
    assert cases.providers() == ["absent", "test"]
    assert cases.provider("absent") is None  # not installed: no cases, no error
    found = model_cases(T=3, B=2, seed=7)
    assert [c.name for c in found] == ["test/0", "test/1"]
    assert found[0].inputs["input"].shape == (3, 2, 2)
    assert np.array_equal(found[0].inputs["input"], _two_cases(3, 2, 7)[0].inputs["input"])
    monkeypatch.setattr(cases, "_PROVIDERS", {})
    assert model_cases() == []
    with pytest.raises(KeyError):
        cases.provider("test")


def test_a_provider_that_fails_to_import_is_an_error(monkeypatch, tmp_path):
    """Only a provider whose own package is absent is skipped: one that is installed but breaks
    on import (a missing dependency inside it) must not make its cases vanish silently."""
    from nrf_nir import cases

    (tmp_path / "broken_provider.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cases, "_PROVIDERS", {"broken": "broken_provider:cases"})
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        cases.provided_cases()


def test_plugins_load_by_location():
    from nrf_nir import errors, plugins

    assert plugins.load("nrf_nir.errors:NIRError") is errors.NIRError
    with pytest.raises(ImportError, match="no_such_name"):
        plugins.load("nrf_nir.errors:no_such_name")
    with pytest.raises(ImportError):
        plugins.load("nrf_nir.no_such_module:x")
    with pytest.raises(ValueError, match="package.module:attribute"):
        plugins.load("nrf_nir.errors")
