"""``nrf-nir zoo``: list, train, evaluate and export the model zoo.

Wired into the main CLI with ``add_parser(subparsers)``::

    nrf-nir zoo list [--json]
    nrf-nir zoo train NAME [--seed S] [--steps N] [--threads N] [-o FILE] [--no-progress]
    nrf-nir zoo eval NAME [--n N] [--json]
    nrf-nir zoo export NAME -o FILE.nir

Handlers return an exit code (0 ok, 1 when an evaluation misses its target) and raise
``NIRError`` for user errors (unknown model, no checkpoint, bad option).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from nrf_nir.errors import NIRError


def _zoo() -> Any:
    import importlib

    return importlib.import_module("nrf_nir.models")


def _names() -> list[str]:
    names: list[str] = _zoo().names()
    return names


def _check_name(name: str) -> None:
    if name not in _names():
        raise NIRError(f"unknown zoo model {name!r}; the zoo has: {', '.join(_names())}",
                       field="model")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_list(args: argparse.Namespace) -> int:
    models = _zoo()

    rows = [models.info(n) for n in models.names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        target = ("<= " if not r["higher_is_better"] else ">= ") + _fmt(r["target"])
        ckpt = f"checkpoint {r['checkpoint_bytes']} bytes" if r["checkpoint"] else \
            "no checkpoint (train it)"
        shape = "x".join(map(str, r["input_shape"]))
        print(f"{r['name']:<{width}} input {shape:<9} decode {r['decode'] or '-':<6} "
              f"{r['metric']} {target:<8} {ckpt}")
        print(f"{'':{width}} {r['description']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from nrf_nir.atomic import check_output_file

    models = _zoo()

    _check_name(args.name)
    options: dict[str, Any] = {}
    if args.steps is not None:
        if args.steps < 1:
            raise NIRError("--steps must be >= 1", field="steps")
        if args.name == "time-surface":
            raise NIRError("time-surface is calibrated by a grid search, it has no --steps",
                           field="steps")
        options["steps"] = args.steps
    if args.threads is not None and args.threads < 1:
        raise NIRError("--threads must be >= 1", field="threads")
    # refused before minutes of training, not after (the write itself checks again)
    check_output_file(args.output or models.checkpoint_path(args.name))
    result = models.train(args.name, seed=args.seed, show_progress=not args.no_progress,
                          threads=args.threads or 1, path=args.output, **options)
    ev = result["evaluation"]
    print(json.dumps(result, indent=2) if args.json else
          f"{args.name}: trained in {result['seconds']} s, {ev['metric']} "
          f"{_fmt(ev[ev['metric']])} (target {_fmt(ev['target'])}: "
          f"{'met' if ev['passed'] else 'MISSED'}); wrote {result['checkpoint']} "
          f"({result['checkpoint_bytes']} bytes)")
    return 0 if ev["passed"] else 1


def cmd_eval(args: argparse.Namespace) -> int:
    models = _zoo()

    _check_name(args.name)
    options = {}
    if args.n is not None:
        if args.n < 1:
            raise NIRError("--n must be >= 1", field="n")
        options["n"] = args.n
    result = models.evaluate(args.name, **options)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        extra = ", ".join(f"{k} {_fmt(v)}" for k, v in result.items()
                          if k not in ("metric", "target", "passed", result["metric"]))
        print(f"{args.name}: {result['metric']} {_fmt(result[result['metric']])} (target "
              f"{_fmt(result['target'])}: {'met' if result['passed'] else 'MISSED'}); {extra}")
    return 0 if result["passed"] else 1


def cmd_export(args: argparse.Namespace) -> int:
    from nrf_nir.atomic import check_output_file, refuse_overwriting_inputs
    from nrf_nir.io import save

    models = _zoo()

    _check_name(args.name)
    if not models.has_checkpoint(args.name):
        raise NIRError(f"zoo model {args.name!r} has no checkpoint yet; train it first "
                       f"(nrf-nir zoo train {args.name})", field="model")
    refuse_overwriting_inputs(args.output, [models.checkpoint_path(args.name)])
    check_output_file(args.output)
    graph = models.export(args.name)
    save(graph, args.output)
    print(f"{args.output}: {args.name} ({len(graph.nodes)} nodes, dt "
          f"{graph.metadata.get('dt'):g} s)")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``zoo list|train|eval|export`` under the main CLI's subparsers."""
    zoo = subparsers.add_parser("zoo", help="the model zoo: list, train, evaluate, export")
    sub = zoo.add_subparsers(dest="zoo_command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="the zoo's models, metrics and checkpoints")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", help="train a model from scratch on its generator (CPU) and "
                       "write its checkpoint")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (model default)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 1: fastest for these small models)")
    p.add_argument("-o", "--output", default=None, metavar="FILE.pt",
                   help="where to write the checkpoint (default: the zoo's own)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the training record as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="a model's metric on held-out generated data")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--n", type=int, default=None, help="held-out samples (model default)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="export a model (trained weights) to a .nir file")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-o", "--output", required=True, metavar="FILE.nir")
    p.set_defaults(func=cmd_export)
