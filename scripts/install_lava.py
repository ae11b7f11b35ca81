#!/usr/bin/env python
"""Install Intel's Lava (lava-nc 0.10.0, lava-dl 0.6.0) into the running interpreter's
environment and apply the two source fixes it needs on Python 3.11 (see docs/targets/lava.md).

Run it with the project's interpreter: ``.venv/bin/python scripts/install_lava.py``.

lava-nc 0.10.0 and lava-dl 0.6.0 declare Python < 3.11 and pin numpy < 2, torch 2.3,
torchvision, networkx <= 2.8.7 ... They run here with numpy 2 and torch 2.13, so they are
installed with ``--no-deps --ignore-requires-python``; torch and numpy are never touched
(a constraints file pins them to the installed versions). Of Lava's declared dependencies only
these are imported by the parts we use: numpy, scipy, networkx, h5py, matplotlib (the project
installs them already) and asteval (``lava.magma.core.learning.learning_rule_applier``, imported
by every neuron model), which this script installs. scikit-learn, opencv, torchvision, ninja,
pillow, unittest2 and pytest<8 are declared but never imported by lava.proc, lava.magma or
lava.lib.dl.{slayer,netx} once fix 2 is applied; they are not installed.

Fix 1 (lava-nc, nothing imports without it): ``lava/magma/compiler/var_model.py`` declares
dataclass fields with a mutable default ``x: ByteEncoder = ByteEncoder()``, which Python 3.11
rejects; they become ``field(default_factory=ByteEncoder)``.

Fix 2 (lava-dl): ``lava/lib/dl/slayer/__init__.py`` imports ``object_detection``, which needs
cv2 and torchvision (the torchvision wheel here cannot import beside CPU torch); the import
becomes optional.

Each fix checks the exact original text and fails loudly (exit 1) when the installed file is
neither the original nor the fixed text (another Lava version). Running the script again is a
no-op: installed packages at the pinned versions are kept, fixed files are left alone.
"""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import tempfile
from pathlib import Path

LAVA = {"lava-nc": "0.10.0", "lava-dl": "0.6.0"}

#: Run-time needs of Lava that the project does not already install (module -> requirement).
RUNTIME = {"asteval": "asteval>=0.9.31,<2"}

#: Never let pip replace these.
PINNED = {"torch": "torch>=2.13,<2.14"}

FIX1_FILE = "lava/magma/compiler/var_model.py"
FIX1 = [
    ("from dataclasses import dataclass, InitVar\n",
     "from dataclasses import dataclass, InitVar, field\n"),
    ('    """ Encodes a core xyp """\n'
     "    x: ByteEncoder = ByteEncoder()\n"
     "    y: ByteEncoder = ByteEncoder()\n"
     "    p: ByteEncoder = ByteEncoder()\n",
     '    """ Encodes a core xyp """\n'
     "    x: ByteEncoder = field(default_factory=ByteEncoder)\n"
     "    y: ByteEncoder = field(default_factory=ByteEncoder)\n"
     "    p: ByteEncoder = field(default_factory=ByteEncoder)\n"),
    ('    """ Encoding for chip field """\n'
     "    x: ByteEncoder = ByteEncoder()\n"
     "    y: ByteEncoder = ByteEncoder()\n"
     "    z: ByteEncoder = ByteEncoder()\n",
     '    """ Encoding for chip field """\n'
     "    x: ByteEncoder = field(default_factory=ByteEncoder)\n"
     "    y: ByteEncoder = field(default_factory=ByteEncoder)\n"
     "    z: ByteEncoder = field(default_factory=ByteEncoder)\n"),
    ('    """ Encoding for axon field """\n'
     "    hi: ByteEncoder = ByteEncoder()\n"
     "    lo: ByteEncoder = ByteEncoder()\n",
     '    """ Encoding for axon field """\n'
     "    hi: ByteEncoder = field(default_factory=ByteEncoder)\n"
     "    lo: ByteEncoder = field(default_factory=ByteEncoder)\n"),
]

FIX2_FILE = "lava/lib/dl/slayer/__init__.py"
FIX2 = [
    ("from . import utils\nfrom . import object_detection as obd\n",
     "from . import utils\n"
     "try:  # nrf-nir fix: object_detection needs cv2 and torchvision, optional here\n"
     "    from . import object_detection as obd\n"
     "except Exception:  # noqa: BLE001 - cv2/torchvision missing or broken\n"
     "    obd = None\n"),
]


def fail(message: str) -> None:
    print(f"install_lava: ERROR: {message}", file=sys.stderr)
    raise SystemExit(1)


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", *args]
    print("install_lava:", " ".join(cmd[2:]))
    subprocess.run(cmd, check=True)


def version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def constraints() -> Path:
    """A constraints file pinning torch and numpy to what is installed now."""
    lines = []
    for dist, spec in PINNED.items():
        have = version(dist)
        lines.append(f"{dist}=={have}" if have else spec)
    have_numpy = version("numpy")
    if have_numpy:
        lines.append(f"numpy=={have_numpy}")
    tmp = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    tmp.write("\n".join(lines) + "\n")
    tmp.close()
    return Path(tmp.name)


def patch(dist: str, rel: str, edits: list[tuple[str, str]]) -> None:
    path = Path(str(md.distribution(dist).locate_file(rel)))
    if not path.is_file():
        fail(f"{dist} {version(dist)}: {path} not found; expected version {LAVA[dist]}")
    text = path.read_text()
    new = text
    changed = 0
    for k, (old, fixed) in enumerate(edits, 1):
        if fixed in new:
            continue  # already applied
        if new.count(old) != 1:
            fail(f"{path}: edit {k} of {len(edits)}: the original text was not found exactly "
                 f"once (is this {dist} {LAVA[dist]}?). Expected:\n{old}")
        new = new.replace(old, fixed)
        changed += 1
    if changed:
        path.write_text(new)
        print(f"install_lava: fixed {path} ({changed} edit(s))")
    else:
        print(f"install_lava: {path} already fixed")


def main() -> int:
    if sys.version_info[:2] != (3, 11):
        print(f"install_lava: note: Python {sys.version.split()[0]}; the fixes were written for "
              "3.11 (they are harmless on 3.10)")
    torch_before, numpy_before = version("torch"), version("numpy")
    cons = constraints()
    try:
        missing = [req for mod, req in RUNTIME.items() if version(mod) is None]
        if missing:
            pip("-c", str(cons), *missing)
        todo = [f"{d}=={v}" for d, v in LAVA.items() if version(d) != v]
        if todo:
            pip("--no-deps", "--ignore-requires-python", *todo)
        else:
            print("install_lava: lava-nc 0.10.0 and lava-dl 0.6.0 already installed")
    finally:
        cons.unlink(missing_ok=True)
    for d, v in LAVA.items():
        if version(d) != v:
            fail(f"{d} is {version(d)}, expected {v}")
    if (version("torch"), version("numpy")) != (torch_before, numpy_before):
        fail(f"torch/numpy changed: {torch_before}/{numpy_before} -> "
             f"{version('torch')}/{version('numpy')}")
    patch("lava-nc", FIX1_FILE, FIX1)
    patch("lava-dl", FIX2_FILE, FIX2)
    # the proof: both import, and a Lava process graph compiles
    code = ("import lava.magma.compiler.var_model, lava.proc.lif.process, "
            "lava.lib.dl.netx, lava.lib.dl.slayer; print('lava imports')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"lava does not import after the fixes:\n{done.stderr[-2000:]}")
    print("install_lava: ok:", done.stdout.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
