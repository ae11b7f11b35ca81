"""The hostile-input harness: run the CLI as a user would on a planted case and check the
contract of issue "closed files": exit 2, one line, no canary bytes anywhere, nothing partial,
no leftover process, a planted symlink's target untouched, under 1 GB and 5 s of CPU.

A case builds its files in an empty folder ``work`` (the current directory of the run) where
a canary file ``CANARY_NAME`` holding ``CANARY`` is already planted, and returns the CLI
arguments. Helpers below plant symlinks and check what must stay untouched.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: A secret no output may ever contain. Files that refer to it point at ``work/CANARY_NAME``.
CANARY = b"NRF-NIR-CANARY-7f3a9c1e-do-not-leak"
CANARY_NAME = "canary.secret"
#: Address-space limit of the CLI process under test (the issue's 1 GB bound).
MEMORY_LIMIT = 1 << 30
#: CPU seconds a refusal may take (user + system, the CLI and its children).
CPU_LIMIT_S = 5.0
REPO = Path(__file__).resolve().parents[1]
#: Run the cases forked from a warm interpreter (fast) instead of as fresh processes;
#: ``NRF_NIR_HOSTILE_FRESH=1`` runs each case as ``python -m nrf_nir.cli`` from scratch.
FORKED = os.environ.get("NRF_NIR_HOSTILE_FRESH", "0") != "1"


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    cpu_s: float
    wall_s: float
    work: Path


@dataclass
class Case:
    """One hostile case: ``make(work) -> argv`` (without the leading ``nrf-nir``)."""

    name: str
    make: Callable[[Path], Sequence[str]]
    #: Text the one-line error must contain (case-insensitive).
    expect: str = ""
    rc: int = 2
    #: Files (relative to work) whose bytes must be the same after the run as before it.
    untouched: Sequence[str] = field(default_factory=tuple)
    #: Files (relative to work) that must not exist after the run.
    absent: Sequence[str] = field(default_factory=tuple)
    #: Extra environment for the run.
    env: dict[str, str] = field(default_factory=dict)
    #: Command prefix run before the CLI (e.g. to mount a small file system); None: plain.
    prefix: Sequence[str] = field(default_factory=tuple)


def plant_canary(work: Path) -> Path:
    path = work / CANARY_NAME
    path.write_bytes(CANARY + b"\n")
    return path


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    os.setsid()  # its own process group: leftover children are found by group


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        # fields: state ppid pgrp ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def _no_group_left(pgid: int, argv: Sequence[str]) -> None:
    """Processes of the CLI's group that outlive it (re-parented children) must not exist;
    any found are killed and the check fails."""
    deadline = time.monotonic() + 2.0
    while (alive := _group_alive(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive:
        for child in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        raise AssertionError(f"{argv}: processes left running after the CLI exited: {alive}")


def run_cli(argv: Sequence[str], work: Path, *, env: dict[str, str] | None = None,
            timeout: float = 60.0) -> Outcome:
    """``python -m nrf_nir.cli ARGV`` in ``work`` under the memory limit, in its own group."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "nrf_nir.cli", *argv], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                            preexec_fn=_limit_memory, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"{argv}: no answer within {timeout} s; stderr: {err[-500:]!r}") from None
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    _no_group_left(proc.pid, argv)
    return Outcome(proc.returncode, out.decode("utf8", "replace"),
                   err.decode("utf8", "replace"), cpu, wall, work)


# The CLI runs forked from a warm interpreter ("zygote") that has imported nrf-nir and torch
# once: each case then costs its own work, not 2-3 s of imports. The forked process is set up
# as a fresh one would be (own session, 1 GiB address space, working directory, environment,
# stdin from /dev/null, stdout and stderr to files) and runs ``nrf_nir.cli.main(argv)``.
_ZYGOTE = r"""
import json, os, resource, sys, traceback
import nrf_nir.api, nrf_nir.cli  # noqa: F401 - the imports every case would repeat
out = sys.stdout
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            resource.setrlimit(resource.RLIMIT_AS, (req["memory"], req["memory"]))
            os.chdir(req["cwd"])
            os.environ.update(req["env"])
            for fd, name, flags in ((0, os.devnull, os.O_RDONLY),
                                    (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                    (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
                os.dup2(os.open(name, flags, 0o600), fd)
            try:
                code = nrf_nir.cli.main(req["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:
                    pass
            os._exit(code)
    out.write(json.dumps({"pid": pid}) + "\n")
    out.flush()
    _, status, usage = os.wait4(pid, 0)
    out.write(json.dumps({"rc": os.waitstatus_to_exitcode(status),
                          "cpu": usage.ru_utime + usage.ru_stime}) + "\n")
    out.flush()
"""
_zygote: subprocess.Popen[str] | None = None


def _warm() -> subprocess.Popen[str]:
    global _zygote
    if _zygote is None or _zygote.poll() is not None:
        _zygote = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
        atexit.register(_zygote.kill)
    return _zygote


def _answer(zygote: subprocess.Popen[str], timeout: float) -> dict[str, float] | None:
    assert zygote.stdout is not None
    ready, _, _ = select.select([zygote.stdout], [], [], timeout)
    if not ready:
        return None
    line = zygote.stdout.readline()
    if not line:
        raise AssertionError("the warm interpreter running the CLI died")
    answer: dict[str, float] = json.loads(line)
    return answer


def run_forked(argv: Sequence[str], work: Path, *, env: dict[str, str] | None = None,
               timeout: float = 60.0) -> Outcome:
    """``nrf_nir.cli.main(ARGV)`` in ``work``, forked from the warm interpreter, under the
    memory limit, in its own session; what ``run_cli`` checks, without the start-up cost."""
    zygote = _warm()
    assert zygote.stdin is not None
    with tempfile.TemporaryDirectory() as streams:
        out_path, err_path = Path(streams, "stdout"), Path(streams, "stderr")
        start = time.monotonic()
        zygote.stdin.write(json.dumps({
            "argv": list(argv), "cwd": str(work), "env": env or {}, "memory": MEMORY_LIMIT,
            "stdout": str(out_path), "stderr": str(err_path)}) + "\n")
        zygote.stdin.flush()
        started = _answer(zygote, 30.0)
        assert started is not None, "the warm interpreter did not fork"
        pid = int(started["pid"])
        done = _answer(zygote, timeout)
        if done is None:
            os.killpg(pid, signal.SIGKILL)
            _answer(zygote, 30.0)
            raise AssertionError(f"{argv}: no answer within {timeout} s; stderr: "
                                 f"{err_path.read_text(errors='replace')[-500:]!r}")
        wall = time.monotonic() - start
        out, err = out_path.read_bytes(), err_path.read_bytes()
    _no_group_left(pid, argv)
    return Outcome(int(done["rc"]), out.decode("utf8", "replace"),
                   err.decode("utf8", "replace"), float(done["cpu"]), wall, work)


def _leaked(work: Path) -> list[str]:
    """Files under ``work`` (other than the canary itself) that contain the canary."""
    hits = []
    for path in work.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.name == CANARY_NAME:
            continue
        try:
            if CANARY in path.read_bytes():
                hits.append(str(path.relative_to(work)))
        except OSError:
            continue
    return hits


def _partials(work: Path) -> list[str]:
    return [str(p.relative_to(work)) for p in work.rglob("*")
            if p.name.endswith(".tmp") or p.name.startswith(".nrf-nir-")]


def check_case(case: Case, work: Path) -> Outcome:
    """Build, run and check one case; raises AssertionError naming what broke."""
    work.mkdir(parents=True, exist_ok=True)
    plant_canary(work)
    argv = list(case.make(work))
    sums = {name: _digest(work / name) for name in case.untouched}
    files_before = {p for p in work.rglob("*")}
    outcome = (run_forked if FORKED else run_cli)(argv, work, env=case.env)
    where = f"case {case.name!r} ({' '.join(argv)})"
    assert outcome.rc == case.rc, (
        f"{where}: exit {outcome.rc}, expected {case.rc}; stderr: {outcome.stderr[-2000:]}")
    if case.rc == 2:
        lines = [line for line in outcome.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"{where}: expected one line on stderr, got {outcome.stderr!r}"
        assert lines[0].startswith("nrf-nir: error: "), f"{where}: {lines[0]!r}"
        assert "Traceback" not in outcome.stderr
        if case.expect:
            assert case.expect.lower() in lines[0].lower(), \
                f"{where}: expected {case.expect!r} in {lines[0]!r}"
    text = CANARY.decode()
    assert text not in outcome.stdout and text not in outcome.stderr, \
        f"{where}: the canary reached the terminal"
    assert not _leaked(work), f"{where}: the canary reached {_leaked(work)}"
    for name, digest in sums.items():
        assert _digest(work / name) == digest, f"{where}: {name} was changed"
    for name in case.absent:
        assert not (work / name).exists() or work / name in files_before, \
            f"{where}: {name} was written"
    assert not _partials(work), f"{where}: partial files left: {_partials(work)}"
    assert outcome.cpu_s < CPU_LIMIT_S, f"{where}: took {outcome.cpu_s:.1f} s of CPU"
    return outcome


#: Every registered case; test modules add theirs with ``register``.
CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    if case.name in CASES:
        raise ValueError(f"duplicate hostile case {case.name!r}")
    CASES[case.name] = case
    return case
