"""Hostile output paths: every file nrf-nir writes goes through ``nrf_nir.atomic``.

A write never follows or replaces a symlink, never replaces an input, is all or nothing (one
file, or a folder of artifacts), maps file-system faults (read-only, full) to one line, keeps
permissions as ``open()`` would, and a signal (SIGTERM, SIGINT, SIGHUP) leaves no partial file.
The CLI cases run through ``tests/hostile.py`` (exit 2, one line, nothing partial).
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

import nrf_nir
from nrf_nir.atomic import (
    atomic_folder,
    check_output_file,
    refuse_overwriting_inputs,
    umask,
    write_atomic,
    write_text,
)
from nrf_nir.errors import NIRError
from tests import hostile
from tests.helpers import chain, lif, mlp
from tests.hostile import CANARY_NAME, Case, check_case, register

# --------------------------------------------------------------------------------------------
# File systems: a read-only and a full tmpfs mounted inside the test's folder


_MOUNTS: list[Path] = []


def _mount(point: Path, options: str) -> Path:
    """Mount a tmpfs at ``point`` (unmounted after the test); skip where mounting is denied."""
    point.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs ({exc}); these checks need root")
    if proc.returncode != 0:
        reason = proc.stderr.strip() or f"exit {proc.returncode}"
        print(f"skipping: mount -t tmpfs failed: {reason}")
        pytest.skip(f"cannot mount a tmpfs ({reason}); these checks need root")
    _MOUNTS.append(point)
    return point


@pytest.fixture(autouse=True)
def _unmount_after():
    yield
    while _MOUNTS:
        point = _MOUNTS.pop()
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


def read_only(point: Path) -> Path:
    return _mount(point, "ro,size=64k")


FILLER = "filler"


def full_disk(point: Path) -> Path:
    """A 64 KiB tmpfs filled to the last byte by ``point/filler``."""
    _mount(point, "size=64k")
    with open(point / FILLER, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"f" * 1024)
        except OSError:
            pass
    with pytest.raises(OSError):
        (point / "probe").write_bytes(b"x" * 4096)  # the disk is really full
    (point / "probe").unlink(missing_ok=True)
    return point


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != FILLER)


# --------------------------------------------------------------------------------------------
# Files of the cases


def model(work: Path, name: str = "model.nir", graph=None) -> str:
    nrf_nir.save(graph if graph is not None else mlp([4, 8, 3]), work / name)
    return name


def inputs(work: Path, name: str = "in.npz", T: int = 5) -> str:
    np.savez(work / name, input=(np.random.default_rng(0).random((T, 1, 4)) < 0.2)
             .astype(np.float32))
    return name


def victim(work: Path) -> str:
    (work / "victim").write_bytes(b"the victim's own bytes\n")
    return "victim"


def link(work: Path, name: str, to: str) -> str:
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(to, work / name)
    return name


FACTORY = """import torch


def build():
    module = torch.nn.Sequential(torch.nn.Linear(4, 3))
    module.input_shape = (4,)
    return module
"""


def factory(work: Path) -> str:
    (work / "factory.py").write_text(FACTORY)
    return "factory.py"


def run_args(work: Path, output: str) -> list[str]:
    return ["run", model(work), "--input", inputs(work), "--output", output]


CONFORMANCE = ["--targets", "reference,norse", "--T", "5", "--B", "1", "--workers", "1"]
XYLO_FILES = ("xylo_config.json", "xylo_config.npz", "xylo_report.json", "xylo_report.md",
              "deploy.json")
LAVA_FILES = ("network.net", "lava.json", "quantization.json", "deploy.json")
REPORT_FILES = ("results.json", "report.md", "report.html")


def _in(folder: str, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{folder}/{n}" for n in names)


def _build(*steps: Callable[[Path], object], argv: Callable[[Path], list[str]]
           ) -> Callable[[Path], list[str]]:
    def make(work: Path) -> list[str]:
        for step in steps:
            step(work)
        return argv(work)
    return make


# --------------------------------------------------------------------------------------------
# The corpus

CASES = [
    # planted symlinks: never followed, never replaced
    Case("outputs: deploy xylo onto a planted report symlink",
         _build(victim, lambda w: link(w, "out/xylo_report.json", "../victim"),
                argv=lambda w: ["deploy", model(w), "--target", "xylo", "-o", "out"]),
         expect="symbolic link", untouched=("victim",),
         absent=_in("out", [n for n in XYLO_FILES if n != "xylo_report.json"])),
    Case("outputs: deploy lava-fixed onto a planted network symlink",
         _build(victim, lambda w: link(w, "out/network.net", "../victim"),
                argv=lambda w: ["deploy", model(w), "--target", "lava-fixed", "-o", "out"]),
         expect="symbolic link", untouched=("victim",),
         absent=_in("out", [n for n in LAVA_FILES if n != "network.net"])),
    Case("outputs: deploy.json is a symlink to the canary",
         _build(lambda w: link(w, "out/deploy.json", f"../{CANARY_NAME}"),
                argv=lambda w: ["deploy", model(w), "--target", "xylo", "-o", "out"]),
         expect="symbolic link", untouched=(CANARY_NAME,), absent=_in("out", XYLO_FILES[:4])),
    Case("outputs: run --output is a symlink",
         _build(victim, lambda w: link(w, "out.npz", "victim"),
                argv=lambda w: run_args(w, "out.npz")),
         expect="symbolic link", untouched=("victim",)),
    Case("outputs: run --output is a dangling symlink",
         _build(lambda w: link(w, "out.npz", "created.npz"),
                argv=lambda w: run_args(w, "out.npz")),
         expect="symbolic link", absent=("created.npz",)),
    Case("outputs: conformance report.html is a planted symlink",
         _build(victim, lambda w: link(w, "out/report.html", "../victim"),
                argv=lambda w: ["conformance", model(w), *CONFORMANCE, "--report", "out"]),
         expect="symbolic link", untouched=("victim",),
         absent=_in("out", ["results.json", "report.md"])),
    Case("outputs: conformance --report is a symlink to a file",
         _build(victim, lambda w: link(w, "rep", "victim"),
                argv=lambda w: ["conformance", model(w), *CONFORMANCE, "--report", "rep"]),
         expect="symbolic link", untouched=("victim",)),
    Case("outputs: export -o is a symlink",
         _build(victim, factory, lambda w: link(w, "out.nir", "victim"),
                argv=lambda w: ["export", "factory.py:build", "-o", "out.nir"]),
         expect="symbolic link", untouched=("victim",)),
    # directories, files and special files in the way
    Case("outputs: run --output is a directory",
         _build(lambda w: (w / "outdir").mkdir(), argv=lambda w: run_args(w, "outdir")),
         expect="is a directory"),
    Case("outputs: conformance --report is a file",
         _build(victim, argv=lambda w: ["conformance", model(w), *CONFORMANCE,
                                        "--report", "victim"]),
         expect="not a directory", untouched=("victim",)),
    Case("outputs: deploy -o is a file",
         _build(victim, argv=lambda w: ["deploy", model(w), "--target", "xylo", "-o", "victim"]),
         expect="not a directory", untouched=("victim",)),
    Case("outputs: deploy where a report file is a directory",
         _build(lambda w: (w / "out" / "xylo_report.md").mkdir(parents=True),
                argv=lambda w: ["deploy", model(w), "--target", "xylo", "-o", "out"]),
         expect="is a directory", absent=_in("out", ["xylo_config.json", "deploy.json"])),
    Case("outputs: run --output is a FIFO",
         _build(lambda w: os.mkfifo(w / "out.npz"), argv=lambda w: run_args(w, "out.npz")),
         expect="not a regular file"),
    Case("outputs: run --output below a file",
         _build(argv=lambda w: run_args(w, f"{CANARY_NAME}/out.npz")),
         expect="not a directory", untouched=(CANARY_NAME,)),
    Case("outputs: run --output name too long",
         _build(argv=lambda w: run_args(w, "o" * 300 + ".npz")), expect="name too long"),
    # the output is an input
    Case("outputs: run --output is the model",
         _build(argv=lambda w: run_args(w, "model.nir")),
         expect="is the input file 'model.nir'", untouched=("model.nir",)),
    Case("outputs: run --output is the input arrays",
         _build(argv=lambda w: run_args(w, "in.npz")),
         expect="is the input file 'in.npz'", untouched=("in.npz",)),
    Case("outputs: run --output is a hard link to the model",
         _build(lambda w: model(w), lambda w: os.link(w / "model.nir", w / "alias.nir"),
                argv=lambda w: ["run", "model.nir", "--input", inputs(w), "--output",
                                "alias.nir"]),
         expect="is the input file 'model.nir'", untouched=("model.nir",)),
    Case("outputs: export -o is the weights file",
         _build(factory, lambda w: _weights(w),
                argv=lambda w: ["export", "w.pt", "--model", "factory.py:build", "-o", "w.pt"]),
         expect="is the input file 'w.pt'", untouched=("w.pt",)),
    Case("outputs: export -o is the factory's file",
         _build(factory, argv=lambda w: ["export", "factory.py:build", "-o", "factory.py"]),
         expect="is the input file 'factory.py'", untouched=("factory.py",)),
    Case("outputs: deploy -o is the model",
         _build(argv=lambda w: ["deploy", model(w), "--target", "xylo", "-o", "model.nir"]),
         expect="is the input file 'model.nir'", untouched=("model.nir",)),
    Case("outputs: deploy reads out/deploy.json and writes into out",
         _build(lambda w: (w / "out").mkdir(),
                argv=lambda w: ["deploy", model(w, "out/deploy.json"), "--target", "xylo",
                                "-o", "out"]),
         expect="is the input file", untouched=("out/deploy.json",),
         absent=_in("out", XYLO_FILES[:4])),
    Case("outputs: deploy reads a file an artifact would replace",
         _build(lambda w: (w / "out").mkdir(),
                argv=lambda w: ["deploy", model(w, "out/xylo_report.json"), "--target",
                                "xylo", "-o", "out"]),
         expect="is the input file", untouched=("out/xylo_report.json",),
         absent=_in("out", ["xylo_config.json", "xylo_report.md", "deploy.json"])),
    Case("outputs: conformance --report is the model",
         _build(argv=lambda w: ["conformance", model(w), *CONFORMANCE, "--report", "model.nir"]),
         expect="is the input file 'model.nir'", untouched=("model.nir",)),
    Case("outputs: conformance reads a file the report would replace",
         _build(lambda w: (w / "rep").mkdir(),
                argv=lambda w: ["conformance", model(w, "rep/report.md"), *CONFORMANCE,
                                "--report", "rep"]),
         expect="is the input file", untouched=("rep/report.md",),
         absent=_in("rep", ["results.json", "report.html"])),
    Case("outputs: zoo export -o is the zoo's checkpoint",
         _build(lambda w: link(w, "ckpt.pt", str(_checkpoint())),
                argv=lambda w: ["zoo", "export", "first-spike-xylo", "-o", "ckpt.pt"]),
         expect="is the input file", untouched=("ckpt.pt",)),
    Case("outputs: zoo train -o is a symlink (refused before training)",
         _build(victim, lambda w: link(w, "fs.pt", "victim"),
                argv=lambda w: ["zoo", "train", "first-spike", "--steps", "200",
                                "--no-progress", "-o", "fs.pt"]),
         expect="symbolic link", untouched=("victim",)),
    # a read-only file system
    Case("outputs: run onto a read-only file system",
         _build(lambda w: read_only(w / "ro"), argv=lambda w: run_args(w, "ro/out.npz")),
         expect="read-only file system"),
    Case("outputs: deploy onto a read-only file system",
         _build(lambda w: read_only(w / "ro"),
                argv=lambda w: ["deploy", model(w), "--target", "xylo", "-o", "ro/out"]),
         expect="read-only file system"),
    Case("outputs: conformance onto a read-only file system",
         _build(lambda w: read_only(w / "ro"),
                argv=lambda w: ["conformance", model(w), *CONFORMANCE, "--report", "ro"]),
         expect="read-only file system"),
    # a full disk: refused at write time, nothing partial left on it
    Case("outputs: run onto a full disk",
         _build(lambda w: full_disk(w / "full"), argv=lambda w: run_args(w, "full/out.npz")),
         expect="no space left on device", untouched=(f"full/{FILLER}",),
         absent=("full/out.npz",)),
    Case("outputs: deploy xylo onto a full disk",
         _build(lambda w: full_disk(w / "full"),
                argv=lambda w: ["deploy", model(w), "--target", "xylo", "-o", "full/out"]),
         expect="no space left on device", untouched=(f"full/{FILLER}",), absent=("full/out",)),
    Case("outputs: deploy lava-fixed into a full disk's folder",
         _build(lambda w: full_disk(w / "full"),
                argv=lambda w: ["deploy", model(w), "--target", "lava-fixed", "-o", "full"]),
         expect="no space left on device", untouched=(f"full/{FILLER}",),
         absent=_in("full", LAVA_FILES)),
    Case("outputs: conformance onto a full disk",
         _build(lambda w: full_disk(w / "full"),
                argv=lambda w: ["conformance", model(w), "--targets", "reference", "--T", "5",
                                "--B", "1", "--workers", "1", "--report", "full/rep"]),
         expect="no space left on device", untouched=(f"full/{FILLER}",), absent=("full/rep",)),
    # a target that refuses the graph writes nothing
    Case("outputs: a deploy xylo refuses writes no folder",
         _build(argv=lambda w: ["deploy", model(w, graph=mlp([4, 1100, 3])), "--target", "xylo",
                                "-o", "out"]),
         expect="cannot run this graph", absent=("out",)),
    Case("outputs: a network netx cannot hold writes no folder",
         _build(argv=lambda w: ["deploy", model(w, graph=_two_time_constants()), "--target",
                                "lava-fixed", "-o", "out"]),
         expect="cannot be written as a lava-dl netx", absent=("out",)),
]


def _weights(work: Path) -> None:
    import torch

    torch.save({"0.weight": torch.zeros(3, 4), "0.bias": torch.zeros(3)}, work / "w.pt")


def _checkpoint() -> Path:
    from nrf_nir import models

    path = Path(models.checkpoint_path("first-spike-xylo"))
    assert path.is_file()
    return path


def _two_time_constants():
    """A LIF node of two time constants: Lava runs it as two populations, netx cannot hold
    a layer split that way."""
    import nir

    node = lif(4)
    node.tau = np.array([0.01, 0.005, 0.01, 0.005])
    return chain(nir.Linear(weight=np.ones((4, 4))), node, shape=(4,))


for _case in CASES:
    register(_case)


@pytest.mark.parametrize("case", CASES, ids=[c.name.removeprefix("outputs: ") for c in CASES])
def test_hostile_output(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path / "w")


def test_the_full_disk_cases_fail_at_write_time_not_before(tmp_path: Path) -> None:
    """The preflight does not catch a full disk: these cases prove the write-time path."""
    full = full_disk(tmp_path / "full")
    check_output_file(full / "out.npz")  # nothing to refuse before writing
    with pytest.raises(NIRError, match="No space left on device") as info:
        write_atomic(full / "out.npz", lambda tmp: tmp.write_bytes(b"x" * 100_000))
    assert str(full / "out.npz") in str(info.value) and "\n" not in str(info.value)
    assert _leftovers(full) == []


# --------------------------------------------------------------------------------------------
# The write function itself


def test_write_atomic_replaces_and_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    write_text(target, "one")
    assert target.read_text() == "one"

    def half(tmp: Path) -> None:
        tmp.write_text("tw")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        write_atomic(target, half)
    assert target.read_text() == "one"
    assert os.listdir(tmp_path) == ["f.txt"]


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_removes_the_temporary_file_and_created_folders(tmp_path: Path,
                                                                     raised) -> None:
    seen = []

    def interrupted(tmp: Path) -> None:
        assert tmp.name.startswith(".nrf-nir-f.npz.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"partial")
        seen.append(tmp)
        raise raised

    with pytest.raises(raised):
        write_atomic(tmp_path / "a" / "b" / "f.npz", interrupted)
    assert seen and not seen[0].exists()
    assert os.listdir(tmp_path) == []  # a/b/ made for the file are gone too


def test_write_atomic_refuses_symlinks_directories_and_special_files(tmp_path: Path) -> None:
    (tmp_path / "victim").write_text("v")
    os.symlink("victim", tmp_path / "link")
    os.symlink("nowhere", tmp_path / "dangling")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    for name, message in [("link", "symbolic link"), ("dangling", "symbolic link"),
                          ("dir", "is a directory"), ("fifo", "not a regular file")]:
        with pytest.raises(NIRError, match=message) as info:
            write_text(tmp_path / name, "x")
        assert info.value.file == str(tmp_path / name)
    assert (tmp_path / "victim").read_text() == "v"
    assert os.readlink(tmp_path / "link") == "victim"
    assert not (tmp_path / "nowhere").exists()
    assert sorted(os.listdir(tmp_path)) == ["dangling", "dir", "fifo", "link", "victim"]


def test_a_symlink_planted_during_the_write_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "victim").write_text("v")

    def plant(tmp: Path) -> None:
        tmp.write_text("new")
        os.symlink("victim", tmp_path / "out")

    with pytest.raises(NIRError, match="symbolic link"):
        write_atomic(tmp_path / "out", plant)
    assert os.readlink(tmp_path / "out") == "victim"
    assert (tmp_path / "victim").read_text() == "v"
    assert sorted(os.listdir(tmp_path)) == ["out", "victim"]


def test_write_atomic_on_a_read_only_file_system(tmp_path: Path) -> None:
    ro = read_only(tmp_path / "ro")
    with pytest.raises(NIRError, match="cannot write: Read-only file system"):
        write_text(ro / "f.txt", "x")
    with pytest.raises(NIRError, match="cannot write: Read-only file system"):
        with atomic_folder(ro / "out") as tmp:
            (tmp / "a").write_text("x")
    with pytest.raises(NIRError, match="Read-only file system"):
        check_output_file(ro / "f.txt")
    assert os.listdir(ro) == []


def test_an_oserror_of_the_writer_becomes_one_line(tmp_path: Path) -> None:
    """h5py's errors carry a multi-line text; the message keeps the reason only."""
    def failing(tmp: Path) -> None:
        raise OSError(28, "Can't write data (file write failed:\n errno = 28, ...)")

    with pytest.raises(NIRError) as info:
        write_atomic(tmp_path / "m.nir", failing)
    assert str(info.value) == f"file '{tmp_path / 'm.nir'}': cannot write: No space left on device"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("mask, new, replaced", [(0o022, 0o644, 0o644), (0o077, 0o600, 0o644),
                                                 (0o002, 0o664, 0o640)])
def test_modes_follow_the_umask_and_the_replaced_file(tmp_path: Path, mask: int, new: int,
                                                      replaced: int) -> None:
    """As ``open(path, "w")``: a new file gets 0o666 & ~umask, a replaced one keeps its mode."""
    old_file = tmp_path / "old.txt"
    old_file.write_text("old")
    os.chmod(old_file, replaced)
    before = os.umask(mask)
    try:
        assert umask() == mask
        write_text(tmp_path / "new.txt", "x")
        write_text(old_file, "x")
        with atomic_folder(tmp_path / "folder") as tmp:
            (tmp / "a.txt").write_text("a")
    finally:
        os.umask(before)
    assert stat.S_IMODE(os.stat(tmp_path / "new.txt").st_mode) == new
    assert stat.S_IMODE(os.stat(old_file).st_mode) == replaced
    assert stat.S_IMODE(os.stat(tmp_path / "folder" / "a.txt").st_mode) == new
    assert stat.S_IMODE(os.stat(tmp_path / "folder").st_mode) == 0o777 & ~mask


def test_cli_outputs_get_the_umask_mode(tmp_path: Path) -> None:
    """A run under umask 022 writes 0644 (it wrote 0600); replacing a 0644 file keeps 0644;
    under umask 077 a new output is 0600."""
    work = tmp_path
    argv = [sys.executable, "-m", "nrf_nir.cli", "run", model(work), "--input", inputs(work)]
    env = {**os.environ, "PYTHONPATH": str(hostile.REPO)}

    def run(output: str, mask: int) -> None:
        proc = subprocess.run([*argv, "--output", output], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120,
                              preexec_fn=lambda: os.umask(mask))
        assert proc.returncode == 0, proc.stderr

    run("a.npz", 0o022)
    assert stat.S_IMODE(os.stat(work / "a.npz").st_mode) == 0o644
    run("a.npz", 0o022)
    assert stat.S_IMODE(os.stat(work / "a.npz").st_mode) == 0o644
    run("b.npz", 0o077)
    assert stat.S_IMODE(os.stat(work / "b.npz").st_mode) == 0o600
    assert not hostile._partials(work)


# --------------------------------------------------------------------------------------------
# The folder variant


def test_atomic_folder_creates_the_folder_only_when_everything_is_written(tmp_path: Path):
    target = tmp_path / "a" / "out"
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "one").write_text("1")
            raise RuntimeError("the second file fails")
    assert os.listdir(tmp_path) == []  # neither out nor the a/ made for it
    with atomic_folder(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".nrf-nir-out.")
        (tmp / "one").write_text("1")
        (tmp / "two").write_text("2")
    assert sorted(os.listdir(target)) == ["one", "two"]
    assert os.listdir(target.parent) == ["out"]


def test_atomic_folder_leaves_an_existing_folder_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "one").write_text("old 1")
    (target / "keep").write_text("k")
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(target) as tmp:
            (tmp / "one").write_text("new 1")
            raise KeyboardInterrupt
    assert sorted(os.listdir(target)) == ["keep", "one"]
    assert (target / "one").read_text() == "old 1"
    with atomic_folder(target) as tmp:
        (tmp / "one").write_text("new 1")
        (tmp / "two").write_text("2")
    assert sorted(os.listdir(target)) == ["keep", "one", "two"]
    assert (target / "one").read_text() == "new 1"


def test_atomic_folder_checks_every_destination_before_moving_any(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "a").write_text("old a")
    (tmp_path / "victim").write_text("v")
    with pytest.raises(NIRError, match="symbolic link") as info:
        with atomic_folder(target) as tmp:
            (tmp / "a").write_text("new a")
            (tmp / "b").write_text("new b")
            os.symlink("../victim", target / "b")  # planted while the files are built
    assert info.value.file == str(target / "b")
    assert (target / "a").read_text() == "old a"  # "a" sorts first: still not replaced
    assert (tmp_path / "victim").read_text() == "v"
    assert sorted(os.listdir(target)) == ["a", "b"]


def test_atomic_folder_never_replaces_a_protected_input(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "model.nir").write_text("the input")
    with pytest.raises(NIRError, match="is the input file"):
        with atomic_folder(target, protect=[target / "model.nir"]) as tmp:
            (tmp / "model.nir").write_text("an output")
            (tmp / "other").write_text("x")
    assert (target / "model.nir").read_text() == "the input"
    assert os.listdir(target) == ["model.nir"]


def test_atomic_folder_refuses_a_file_and_a_symlinked_file_as_the_folder(tmp_path: Path):
    (tmp_path / "file").write_text("f")
    os.symlink("file", tmp_path / "link")
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "dirlink")
    for name, message in [("file", "not a directory"), ("link", "symbolic link")]:
        with pytest.raises(NIRError, match=message):
            with atomic_folder(tmp_path / name) as tmp:
                (tmp / "x").write_text("x")
    with atomic_folder(tmp_path / "dirlink") as tmp:  # a link to a folder is that folder
        (tmp / "x").write_text("x")
    assert (tmp_path / "real" / "x").read_text() == "x"
    assert (tmp_path / "file").read_text() == "f"
    assert sorted(os.listdir(tmp_path)) == ["dirlink", "file", "link", "real"]


def test_atomic_folder_on_a_full_disk_names_the_final_file(tmp_path: Path) -> None:
    """Nested writers (an artifact writing a config) report the file the user asked for,
    never a temporary name."""
    full = full_disk(tmp_path / "full")
    with pytest.raises(NIRError, match="No space left on device") as info:
        with atomic_folder(full / "out") as outer:
            write_atomic(outer / "big.bin", lambda tmp: tmp.write_bytes(b"x" * 100_000))
    assert info.value.file == str(full / "out" / "big.bin")
    assert ".nrf-nir-" not in str(info.value)
    assert _leftovers(full) == []


def test_output_is_input_is_refused_naming_both(tmp_path: Path) -> None:
    (tmp_path / "model.nir").write_text("m")
    os.link(tmp_path / "model.nir", tmp_path / "alias.nir")
    os.symlink("model.nir", tmp_path / "link.nir")
    for out in ("model.nir", "alias.nir", "link.nir"):
        with pytest.raises(NIRError, match="is the input file") as info:
            refuse_overwriting_inputs(tmp_path / out, [tmp_path / "model.nir"])
        assert str(tmp_path / out) in str(info.value)
        assert str(tmp_path / "model.nir") in str(info.value)
    refuse_overwriting_inputs(tmp_path / "other.nir", [tmp_path / "model.nir"])
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.md").write_text("an input")
    with pytest.raises(NIRError, match="is the input file"):
        refuse_overwriting_inputs(tmp_path / "rep", [tmp_path / "rep" / "report.md"],
                                  names=["results.json", "report.md"])


def test_the_writers_write_all_or_nothing(tmp_path: Path) -> None:
    """Xylo's config and artifact, Lava's netx artifact, the conformance report and the zoo's
    checkpoints go through the atomic folder / file: a symlink in the way refuses the lot."""
    from nrf_nir.conformance.report import write_report
    from nrf_nir.models import save_checkpoint

    (tmp_path / "victim").write_text("v")
    graph = mlp([4, 8, 3])
    writers: list[tuple[str, str, Callable[[Path], object]]] = [
        ("report", "report.html", lambda d: write_report([], d))]
    if "xylo" in nrf_nir.targets.available():
        xylo = nrf_nir.lower(graph, "xylo").backend
        writers += [("config", "xylo_config.json", lambda d: xylo.config.save(d)),
                    ("xylo", "xylo_report.md", lambda d: _target("xylo").artifact(xylo, d))]
    if "lava-fixed" in nrf_nir.targets.available():
        lava = nrf_nir.lower(graph, "lava-fixed").backend
        writers.append(("lava", "quantization.json",
                        lambda d: _target("lava-fixed").artifact(lava, d)))
    for folder, poisoned, write in writers:
        d = tmp_path / folder
        d.mkdir()
        os.symlink("../victim", d / poisoned)
        with pytest.raises(NIRError, match="symbolic link"):
            write(d)
        assert os.listdir(d) == [poisoned], folder
        os.unlink(d / poisoned)
        paths = write(d)
        files = paths.values() if isinstance(paths, dict) else paths
        assert sorted(os.listdir(d)) == sorted(Path(p).name for p in files), folder
    assert (tmp_path / "victim").read_text() == "v"
    os.symlink("victim", tmp_path / "ckpt.pt")
    with pytest.raises(NIRError, match="symbolic link"):
        save_checkpoint({"w": __import__("torch").ones(2)}, tmp_path / "ckpt.pt")
    assert (tmp_path / "victim").read_text() == "v"


def _target(name: str):
    from nrf_nir.targets import get

    return get(name)


# --------------------------------------------------------------------------------------------
# Signals


def _popen(argv: Sequence[str], work: Path, code: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(hostile.REPO)}
    cmd = [sys.executable, "-m", "nrf_nir.cli", *argv] if code is None else \
        [sys.executable, "-c", code, *argv]
    return subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, "the awaited moment never came"
        time.sleep(0.005)


def _finish(proc: subprocess.Popen, sent_at: float) -> tuple[int, str, float]:
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err.decode("utf8", "replace"), time.monotonic() - sent_at


#: The CLI, marking (file MARK) the moment the simulation starts.
MARK_COMPUTING = """
import sys
from pathlib import Path
from nrf_nir import api, cli

mark = Path(sys.argv.pop())  # the last argument
real = api.Lowered.run

def run(self, *args, **kwargs):
    mark.touch()
    return real(self, *args, **kwargs)

api.Lowered.run = run
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_while_computing_a_long_run_leaves_nothing(tmp_path: Path) -> None:
    """A long run (10^6 steps, about 20 s) terminated 0.5 s into the simulation: exit 143,
    no output, no temporary file, within a few seconds."""
    work = tmp_path / "w"
    work.mkdir()
    mark = tmp_path / "computing"
    argv = run_args(work, "out.npz")
    inputs(work, T=1_000_000)
    proc = _popen([*argv, str(mark)], work, MARK_COMPUTING)
    _wait_for(mark.exists, proc, 120)
    time.sleep(0.5)
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGTERM)
    rc, err, took = _finish(proc, time.monotonic())
    assert rc == 143, err
    assert err.strip() == "nrf-nir: terminated"
    assert took < 10
    assert sorted(p.name for p in work.iterdir()) == ["in.npz", "model.nir"]


#: The CLI with np.savez / np.savez_compressed slowed down: they write their data, then wait
#: (a slow disk), so that a signal arrives while the temporary file is being written.
SLOW_WRITES = """
import sys, time
import numpy as np
from nrf_nir import cli

def slow(real):
    def write(file, *args, **kwargs):
        real(file, *args, **kwargs)
        file.flush()
        time.sleep(60)
    return write

np.savez = slow(np.savez)
np.savez_compressed = slow(np.savez_compressed)
sys.exit(cli.main(sys.argv[1:]))
"""


def _tmp_with_data(work: Path) -> bool:
    """Whether a temporary file (or a file in a temporary folder) holds data yet."""
    for path in work.rglob("*"):
        inside = any(part.startswith(".nrf-nir-") for part in path.relative_to(work).parts)
        try:
            if inside and path.is_file() and path.stat().st_size > 0:
                return True
        except OSError:  # removed meanwhile
            continue
    return False


@pytest.mark.parametrize("sig, rc, line", [(signal.SIGTERM, 143, "nrf-nir: terminated"),
                                           (signal.SIGINT, 130, "nrf-nir: interrupted"),
                                           (signal.SIGHUP, 129, "nrf-nir: terminated")])
def test_a_signal_during_a_write_removes_the_temporary_file(tmp_path: Path, sig, rc, line):
    work = tmp_path
    proc = _popen(run_args(work, "out.npz"), work, SLOW_WRITES)
    _wait_for(lambda: _tmp_with_data(work), proc, 120)
    os.kill(proc.pid, sig)
    got, err, took = _finish(proc, time.monotonic())
    assert got == rc, err
    assert err.strip() == line
    assert took < 10
    assert sorted(p.name for p in work.iterdir()) == ["in.npz", "model.nir"]


def test_sigterm_during_a_deploy_leaves_no_folder(tmp_path: Path) -> None:
    work = tmp_path
    proc = _popen(["deploy", model(work), "--target", "xylo", "-o", "out"], work, SLOW_WRITES)
    _wait_for(lambda: _tmp_with_data(work), proc, 120)
    os.kill(proc.pid, signal.SIGTERM)
    got, err, _ = _finish(proc, time.monotonic())
    assert got == 143, err
    assert sorted(p.name for p in work.iterdir()) == ["model.nir"]


#: The CLI whose write runs a finaliser (``__del__``) that marks MARK and then computes for
#: 3 s: a signal sent meanwhile is raised inside ``__del__``, where Python drops exceptions.
SIGNAL_IN_FINALISER = """
import sys, time
from pathlib import Path
import numpy as np
from nrf_nir import cli

mark = Path(sys.argv.pop())  # the last argument

class Finaliser:
    def __del__(self):
        mark.touch()
        end = time.monotonic() + 3
        while time.monotonic() < end:
            pass

def slow(real):
    def write(file, *args, **kwargs):
        real(file, *args, **kwargs)
        Finaliser()  # dropped at once: its __del__ runs here
        time.sleep(60)
    return write

np.savez_compressed = slow(np.savez_compressed)
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_signal_that_lands_in_a_finaliser_is_not_lost(tmp_path: Path) -> None:
    """The handler's exception, dropped by Python inside ``__del__`` ("Exception ignored"), is
    raised again: the deploy still ends with 143 at once and writes nothing. (Before, it slept
    on and then deployed with exit 0; seen once in CI as a 60 s hang.)"""
    work = tmp_path / "w"
    work.mkdir()
    mark = tmp_path / "in-finaliser"
    argv = ["deploy", model(work), "--target", "xylo", "-o", "out", str(mark)]
    proc = _popen(argv, work, SIGNAL_IN_FINALISER)
    _wait_for(mark.exists, proc, 120)
    os.kill(proc.pid, signal.SIGTERM)
    got, err, took = _finish(proc, time.monotonic())
    assert got == 143, err
    assert err.strip() == "nrf-nir: terminated"
    assert took < 10
    assert sorted(p.name for p in work.iterdir()) == ["model.nir"]


def test_other_unraisable_exceptions_are_still_reported(tmp_path: Path) -> None:
    from nrf_nir import cli

    seen: list[object] = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_value)
    try:
        with cli._signals_raise():
            class Broken:
                def __del__(self) -> None:
                    raise ValueError("from a finaliser")
            Broken()
    finally:
        sys.unraisablehook = old
    assert [type(e) for e in seen] == [ValueError]
    assert signal.getsignal(signal.SIGTERM) is not cli._on_signal


def test_signal_handlers_are_restored_after_main(tmp_path: Path) -> None:
    from nrf_nir import cli

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    assert cli.main(["validate", str(tmp_path / model(tmp_path))]) == 0
    assert {s: signal.getsignal(s) for s in before} == before


# --------------------------------------------------------------------------------------------
# No writer bypasses nrf_nir.atomic

#: A write to a path: its first argument must be the temporary path given by nrf_nir.atomic.
_PATH_WRITES = re.compile(r"\.write_(text|bytes)\(|(?<![\w.])open\([^)]*[\"'][wax]b?\+?[\"']|"
                          r"h5py\.File\([^)]*[\"'][wax]")
#: Writers that take a file: it must be an open handle or an in-memory buffer.
_HANDLE_WRITES = re.compile(r"(savez(_compressed)?|savefig)\((\w+)|torch\.save\([^,]+,\s*(\w+)")
_HANDLES = {"handle", "f", "fh", "buf", "buffer"}
PACKAGE_DIRS = ("nrf_nir", "targets", "exporters", "models", "conformance", "examples")


def direct_writes(text: str) -> list[str]:
    """Lines of ``text`` that write a file without nrf_nir.atomic."""
    bad = []
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if _PATH_WRITES.search(code) and "tmp" not in code:
            bad.append(line.strip())
        for match in _HANDLE_WRITES.finditer(code):
            name = match.group(3) or match.group(4)
            if name not in _HANDLES:
                bad.append(line.strip())
    return bad


def test_the_write_check_finds_direct_writes() -> None:
    assert direct_writes("    (d / NAME).write_text(x)") != []
    assert direct_writes('    with open(path, "wb") as f:') != []
    assert direct_writes("    np.savez(path, **arrays)") != []
    assert direct_writes("    torch.save(state, path)") != []
    assert direct_writes('    h5py.File(path, "w")') != []
    assert direct_writes("    (tmp / NAME).write_text(x)") == []
    assert direct_writes("    torch.save(state, buffer)") == []


def test_no_writer_bypasses_the_atomic_functions() -> None:
    found = {}
    for folder in PACKAGE_DIRS:
        for path in (hostile.REPO / folder).rglob("*.py"):
            if path.name == "atomic.py":
                continue
            bad = direct_writes(path.read_text())
            if bad:
                found[str(path.relative_to(hostile.REPO))] = bad
    assert not found, found
