"""Loading, validating and inspecting a file, and the CLI's ``--help``, ``validate``,
``inspect`` and ``targets``, import no backend framework (not even torch): each is run in a
fresh interpreter and ``sys.modules`` is read afterwards."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path

import nir
import pytest

import nrf_nir
from nrf_nir import targets
from nrf_nir.cli import ZOO_HELP, build_parser
from nrf_nir.dialects import normalize
from tests.helpers import dialect_graphs, recurrent

#: Top-level modules none of the file commands may import.
FRAMEWORKS = ("torch", "norse", "snntorch", "rockpool", "sinabs", "xylosim", "lava", "samna",
              "numba")
MARK = "FRAMEWORKS="


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file of ours and a metadata-less file of each dialect (written by nir itself)."""
    folder = tmp_path_factory.mktemp("files")
    paths = {"ours": folder / "ours.nir"}
    nrf_nir.save(recurrent(4, 6), paths["ours"])
    for name, graph in dialect_graphs().items():
        paths[name] = folder / f"{name}.nir"
        nir.write(paths[name], graph)
    return paths


def _frameworks_after(body: str) -> tuple[list[str], str]:
    """Run ``body`` in a fresh interpreter; the framework modules it imported, and its output."""
    script = (f"import json, sys, warnings\nwarnings.simplefilter('ignore')\n{body}\n"
              f"print({MARK!r} + json.dumps(sorted({{m.split('.')[0] for m in sys.modules}}"
              f" & set({FRAMEWORKS!r}))))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out, _, found = proc.stdout.rpartition(MARK)
    return json.loads(found), out


def _cli(*argv: str) -> tuple[list[str], str]:
    return _frameworks_after(
        "from nrf_nir.cli import main\n"
        f"try:\n    rc = main({list(argv)!r})\nexcept SystemExit as exc:\n    rc = exc.code\n"
        "assert rc == 0, rc")


def test_dialect_files_are_recognised(files):
    for name in ("snntorch", "rockpool", "norse"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = nrf_nir.load(files[name], dialect="none", validate=False)
            assert normalize(raw).dialect == name


@pytest.mark.parametrize("name", ["ours", "snntorch", "rockpool", "norse"])
def test_load_validate_inspect_import_no_framework(files, name):
    found, _ = _frameworks_after(
        f"import nrf_nir\nfrom nrf_nir.inspect import summarize\n"
        f"graph = nrf_nir.load({str(files[name])!r})\n"
        f"summarize(nrf_nir.validate({str(files[name])!r}))")
    assert found == []


@pytest.mark.parametrize("name", ["ours", "snntorch", "rockpool", "norse"])
def test_cli_file_commands_import_no_framework(files, name):
    path = str(files[name])
    found, out = _cli("validate", path)
    assert "valid NIR graph" in out and found == []
    found, out = _cli("inspect", path)
    assert "neurons" in out and found == []
    found, out = _cli("inspect", path, "--json")
    assert json.loads(out)["counts"]["neurons"] > 0 and found == []


def test_cli_help_and_targets_import_no_framework():
    found, out = _cli("--help")
    assert "validate" in out and "zoo" in out and found == []
    found, out = _cli("targets")
    assert "reference" in out and found == []


def test_the_check_sees_torch_when_it_is_imported(files):
    """The probe is not blind: a run, or the zoo, does import torch."""
    found, _ = _frameworks_after(
        f"import numpy as np, nrf_nir\n"
        f"nrf_nir.run({str(files['ours'])!r}, np.zeros((2, 1, 4), np.float32), device='cpu')")
    assert "torch" in found
    found, _ = _cli("zoo", "list")
    assert "torch" in found


def test_lazy_api_names():
    from nrf_nir import api, run

    assert run is api.run and nrf_nir.lower is api.lower and nrf_nir.Lowered is api.Lowered
    assert nrf_nir.validate is api.validate and callable(nrf_nir.validate)
    with pytest.raises(AttributeError, match="no attribute 'banana'"):
        nrf_nir.banana  # noqa: B018


def test_zoo_stand_in_has_the_zoo_help():
    """``--help`` without the zoo's parser (no torch) reads as with it."""
    assert build_parser(zoo=False).format_help() == build_parser().format_help()
    assert ZOO_HELP in build_parser().format_help()


@pytest.mark.parametrize("name", targets.registered())
def test_describe_agrees_with_importing_the_target(name):
    """``nrf-nir targets`` (find_spec, no import) says what importing the target finds."""
    ok, text = targets.describe(name)
    try:
        description = targets.get(name).description
    except nrf_nir.NIRError as exc:
        assert (ok, text) == (False, exc.message)
    else:
        assert (ok, text) == (True, description)


@pytest.mark.parametrize(("absent", "name"), [("norse", "norse"), ("lava", "lava-fixed"),
                                              ("xylosim", "xylosim-imu"), ("torch", "xylosim")])
def test_describe_a_missing_framework(monkeypatch, absent, name):
    """With a framework absent, ``describe`` says unavailable with the message that importing
    the target gives (xylosim: the xylo package's own find_spec check)."""
    real = importlib.util.find_spec

    def find_spec(module: str, package: str | None = None):  # type: ignore[no-untyped-def]
        return None if module == absent else real(module, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    ok, text = targets.describe(name)
    assert not ok and text.startswith(f"target {name!r} is not available: ")
    if absent == "xylosim":
        targets._LOADED.pop(name, None)
        with pytest.raises(nrf_nir.NIRError) as exc:
            targets.get(name)
        assert text == exc.value.message
    else:
        assert text.endswith(f"No module named {absent!r}")
