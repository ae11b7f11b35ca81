"""README.md as tests: every code block runs as written, in order, in one temporary folder.

``python`` blocks run with this interpreter (the venv's); a block whose first line is a comment
naming a ``.py`` path (``# mypkg/models.py``) is that file's content and is written there.
``sh`` blocks run in bash with the venv's ``bin`` first on ``PATH`` (what ``. .venv/bin/activate``
does), so ``nrf-nir`` is the installed console script. Blocks that cannot run in a test are
listed in ``NOT_RUN`` by their first line, with the reason; a block that is neither run nor
listed fails the test, and so does a listed block that is gone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: Languages whose blocks run.
RUN = ("python", "sh")
#: First line of a block that is not run -> why.
NOT_RUN = {
    "make test    # creates .venv if needed, installs everything, runs the tests":
        "installs and runs the whole suite, this test included",
    ". .venv/bin/activate":
        "needs the checkout's .venv; the blocks run with its bin first on PATH already",
    "nrf-nir conformance --nodes --targets all --report out/       # the node suite (minutes)":
        "the node suite on every target takes minutes; tests/test_conformance_suite.py runs it",
    "nrf-nir zoo eval poker-dvs           # prints the metric of the committed checkpoint":
        "evaluation and training take 10 s to minutes; tests/test_zoo.py covers both",
    "nrf_nir/       the core (imports no layer above it; finds them by location with importlib)":
        "the Layout section: a tree of folders, not code",
}
#: A Python block that is a file: its first line names the path.
FILE_HEADER = re.compile(r"#\s*([\w./-]+\.py)\s*$")
#: Seconds one block may take (conformance and deploy are the slowest, ~15 s).
BLOCK_TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language ('' when none), code and 1-based line number."""

    language: str
    code: str
    line: int

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0].strip() if self.code.strip() else ""


def readme_blocks(text: str) -> list[Block]:
    """The fenced (```) code blocks of a Markdown text, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```\s*([\w+-]*)\s*$", lines[i])
        if fence is None:
            i += 1
            continue
        start = i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"README.md:{start + 1}: code block never closed")
        blocks.append(Block(fence.group(1), "\n".join(body) + "\n", start + 1))
        i += 1
    return blocks


def _to_run(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.language in RUN and b.first_line not in NOT_RUN]


def test_readme_blocks_are_parsed_with_language_and_line() -> None:
    text = "intro\n```python\nprint(1)\n```\n\n```\ntree\n```\n```sh\nls\nls -l\n```\n"
    blocks = readme_blocks(text)
    assert [(b.language, b.code, b.line) for b in blocks] == [
        ("python", "print(1)\n", 2), ("", "tree\n", 6), ("sh", "ls\nls -l\n", 9)]
    with pytest.raises(AssertionError, match="never closed"):
        readme_blocks("```sh\nls\n")


def test_every_readme_block_is_run_or_listed_with_a_reason() -> None:
    blocks = readme_blocks(README.read_text(encoding="utf8"))
    unlisted = [f"README.md:{b.line} ({b.language or 'no language'}): {b.first_line}"
                for b in blocks if b.language not in RUN and b.first_line not in NOT_RUN]
    assert not unlisted, "blocks neither run (python, sh) nor listed in NOT_RUN: " + \
        "; ".join(unlisted)
    firsts = {b.first_line for b in blocks}
    stale = [line for line in NOT_RUN if line not in firsts]
    assert not stale, f"NOT_RUN lists blocks the README no longer has: {stale}"
    assert {b.language for b in _to_run(blocks)} == set(RUN)


def _run_block(block: Block, work: Path, env: dict[str, str]) -> None:
    if block.language == "python":
        header = FILE_HEADER.match(block.first_line)
        if header is not None:
            path = work / header.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code, encoding="utf8")
            return
        argv = [sys.executable, "-c", block.code]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", block.code]
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S, stdin=subprocess.DEVNULL)
    where = f"README.md:{block.line} ({block.language} block starting {block.first_line!r})"
    assert proc.returncode == 0, (f"{where} exited {proc.returncode}\nstdout: "
                                  f"{proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}")
    assert "Traceback" not in proc.stderr, f"{where}: {proc.stderr[-3000:]}"


@pytest.mark.slow  # about 35 s: exports, runs, deploys to Xylo and Lava, runs conformance
def test_readme_blocks_run_as_written_in_order(tmp_path: Path) -> None:
    blocks = _to_run(readme_blocks(README.read_text(encoding="utf8")))
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "nrf-nir").exists(), f"no nrf-nir console script in {bin_dir}"
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    for block in blocks:
        _run_block(block, tmp_path, env)
    # what the blocks say they write is there
    for name in ("mypkg/models.py", "model.nir", "weights.pt", "run.ckpt", "model.json",
                 "in.npz", "out.npz", "xylo-out/deploy.json", "lava-out/deploy.json", "nrf.nir",
                 "report/report.html"):
        assert (tmp_path / name).is_file(), f"the README's blocks did not write {name}"
    import numpy as np

    with np.load(tmp_path / "out.npz") as out:
        assert {"output", "1", "1.v"} <= set(out.files)
        assert out["output"].shape == (1000, 8, 4)
