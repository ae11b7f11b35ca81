"""Write the hostile-input corpus to a folder, one sub-folder per case, to reproduce by hand.

    python scripts/make_hostile_corpus.py [OUT]        # default: tests/data/hostile/

Each case folder holds the files the case plants (a canary secret ``canary.secret`` among
them) and ``command.txt``, the ``nrf-nir`` command that must exit with status 2 and one line,
without the canary reaching the terminal or any file. The tests (``tests/test_hostile_*.py``)
build the same folders in a temporary directory and check exactly that; cases that need a
small or read-only file system mount a tmpfs and are written here only when mounting works
(they are unmounted again at the end, so their folders stay empty).
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("tests.test_hostile_files", "tests.test_hostile_inputs",
           "tests.test_hostile_outputs", "tests.test_hostile_numbers")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "tests" / "data" / "hostile")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    for module in MODULES:
        importlib.import_module(module)
    from tests.hostile import CASES, plant_canary

    args.out.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, []
    for name, case in sorted(CASES.items()):
        work = args.out / _slug(name)
        work.mkdir(parents=True, exist_ok=True)
        plant_canary(work)
        try:
            command = ["nrf-nir", *case.make(work)]
        except BaseException as exc:  # noqa: BLE001 - a case that needs root, pytest.skip
            skipped.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in case.env.items())
        (work / "command.txt").write_text(
            f"# expect exit {case.rc}, one line containing {case.expect!r}\n"
            f"{env + ' ' if env else ''}{shlex.join(command)}\n")
        written += 1
    for mount in sorted(args.out.rglob("*")):
        if mount.is_dir() and mount.is_mount():
            subprocess.run(["umount", "-l", str(mount)], check=False)
    print(f"wrote {written} cases to {args.out}")
    for line in skipped:
        print(f"  not written: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
