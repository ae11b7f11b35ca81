#!/usr/bin/env python
"""Start-up time of the ``nrf-nir`` commands that read a file, against a bare interpreter.

Each command runs as a fresh process (the ``nrf-nir`` console script beside this interpreter,
else ``python -m nrf_nir.cli``), wall time from start to exit:

* ``python -c pass``: the bare interpreter, the floor;
* ``nrf-nir --help`` and ``nrf-nir targets``;
* ``nrf-nir validate F``, ``inspect F`` and ``inspect F --json`` for F: a small saved graph of
  ours (``tests.helpers.recurrent(4, 6)``, 9 nodes) and a metadata-less file of each dialect
  (snnTorch, Rockpool, Norse; ``tests.helpers.dialect_graphs``, written by ``nir.write``).

Rounds are interleaved (every command once per round) so that a change in the machine's load
touches all alike; best and median of the rounds. The issue's goal: each command within
``--goal`` (0.6 s) of the bare interpreter. The load average is recorded with the results: on a
loaded machine every start is slower. JSON to ``benchmarks/results/bench_cli.json``.

Usage: python benchmarks/bench_cli.py [--repeats 5] [--goal 0.6] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import nir  # noqa: E402

from tests.helpers import dialect_graphs, recurrent  # noqa: E402


def write_files(folder: Path) -> dict[str, Path]:
    """The graph of ours and one metadata-less file per dialect."""
    import nrf_nir

    paths = {"ours": folder / "ours.nir"}
    nrf_nir.save(recurrent(4, 6), paths["ours"])
    for name, graph in dialect_graphs().items():
        paths[name] = folder / f"{name}.nir"
        nir.write(str(paths[name]), graph)
    return paths


def cli() -> list[str]:
    script = Path(sys.executable).with_name("nrf-nir")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nrf_nir.cli"]


def commands(files: dict[str, Path]) -> dict[str, list[str]]:
    nrf = cli()
    out = {"python -c pass": [sys.executable, "-c", "pass"],
           "nrf-nir --help": [*nrf, "--help"],
           "nrf-nir targets": [*nrf, "targets"]}
    for name, path in files.items():
        out[f"nrf-nir validate {name}"] = [*nrf, "validate", str(path)]
        out[f"nrf-nir inspect {name}"] = [*nrf, "inspect", str(path)]
        out[f"nrf-nir inspect {name} --json"] = [*nrf, "inspect", str(path), "--json"]
    return out


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (best of N)")
    ap.add_argument("--goal", type=float, default=0.6,
                    help="seconds above the bare interpreter each command may take")
    ap.add_argument("--json", default=str(HERE / "results" / "bench_cli.json"))
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench_cli_"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cmds = commands(write_files(folder))
        for argv in cmds.values():  # warm the file system cache and compiled bytecode
            time_once(argv)
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.repeats):
            for name, argv in cmds.items():
                times[name].append(time_once(argv))
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    bare = min(times["python -c pass"])
    rows = []
    for name, ts in times.items():
        best = min(ts)
        rows.append({"command": name, "best_s": round(best, 4),
                     "median_s": round(statistics.median(ts), 4),
                     "over_bare_s": round(best - bare, 4),
                     "within_goal": best - bare <= args.goal})
    width = max(len(r["command"]) for r in rows)
    print(f"{'command':<{width}}  {'best s':>7}  {'median s':>8}  {'- bare s':>8}  goal")
    for r in rows:
        print(f"{r['command']:<{width}}  {r['best_s']:7.3f}  {r['median_s']:8.3f}  "
              f"{r['over_bare_s']:8.3f}  {'ok' if r['within_goal'] else 'MISSED'}")
    print(f"best of {args.repeats} interleaved rounds; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after ({os.cpu_count()} CPUs)")

    result = {"repeats": args.repeats, "goal_over_bare_s": args.goal, "rows": rows,
              "all_within_goal": all(r["within_goal"] for r in rows),
              "loadavg_before": load_before, "loadavg_after": load_after,
              "cpus": os.cpu_count(), "python": platform.python_version(),
              "platform": platform.platform(), "cli": cli()}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
