"""The ``nrf-nir`` command line. User errors print one line and exit with status 2."""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import NIRError

EXIT_USER_ERROR = 2


def _load_npz(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise NIRError("no such file", file=path) from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise NIRError(f"not a readable .npz archive of arrays ({exc})", file=path) from None


def _save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    from .io import write_atomic

    def write(tmp: Any) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]

    write_atomic(path, write)


def cmd_validate(args: argparse.Namespace) -> int:
    from .io import load
    from .semantics import read_semantics
    from .validate import validate

    checked = validate(load(args.file, validate=False))
    sem = read_semantics(checked.graph)
    dt = "no dt (runs need --dt)" if sem.dt is None else f"dt {sem.dt:g} s"
    print(f"{args.file}: valid NIR graph, {len(checked.flat.nodes)} nodes, "
          f"{len(checked.back)} recurrent edges, {dt}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import render, summarize
    from .io import load
    from .validate import validate

    summary = summarize(validate(load(args.file, validate=False)))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render(summary))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .api import lower
    from .io import load

    graph = load(args.file, dialect=args.dialect)
    options = {"progress": sys.stderr.isatty()} if args.target == "reference" else {}
    lowered = lower(graph, args.target, dt=args.dt, dtype=args.dtype, device=args.device,
                    **options)
    arrays = _load_npz(args.input)
    names = lowered.checked.flat.inputs
    if len(names) == 1 and len(arrays) == 1 and names[0] not in arrays:
        arrays = {names[0]: next(iter(arrays.values()))}
    try:
        out = lowered.run(arrays, record=args.record)
    except NIRError as exc:
        raise exc.with_file(args.input) from None
    result = {name: value.detach().cpu().numpy() for name, value in out.items()}
    _save_npz(args.output, result)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in result.items())
    print(f"wrote {args.output}: {shapes}")
    return 0


def _input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 2,34,34, got {text!r}") from None
    if not shape or any(v < 1 for v in shape):
        raise argparse.ArgumentTypeError(f"expected positive integers like 2,34,34, got {text!r}")
    return shape


def cmd_export(args: argparse.Namespace) -> int:
    import os

    import torch

    from .exporters import export
    from .exporters.checkpoint import build_module, load_weights
    from .io import save

    source: str = args.source
    if os.path.isfile(source):
        if not args.model:
            raise NIRError("a weights file needs --model NAME_OR_FACTORY to build the "
                           "architecture", file=source, field="model")
        module = load_weights(build_module(args.model), source)
    elif ":" in source:
        if args.model:
            raise NIRError("--model is only for weights files; SOURCE is already a factory",
                           field="model")
        module = build_module(source)
    else:
        raise NIRError("no such file, and not a factory 'package.module:function'", file=source)
    shape = args.input_shape or getattr(module, "input_shape", None)
    if not shape:
        raise NIRError("the input shape is unknown: pass --input-shape (e.g. 2,34,34), or give "
                       "the module an input_shape attribute", field="input_shape")
    sample = torch.zeros(1, *tuple(int(s) for s in shape))
    graph = export(module, sample, dt=args.dt)
    save(graph, args.output)
    sem = graph.metadata
    print(f"wrote {args.output}: {len(graph.nodes)} nodes, dt {sem.get('dt')} s, "
          f"reset {sem.get('reset')}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .api import lower
    from .io import load, write_atomic
    from .targets import get

    graph = load(args.file, dialect=args.dialect)
    target = get(args.target)
    lowered = lower(graph, args.target, dt=args.dt, strict=True)
    writer = getattr(target, "artifact", None)
    if writer is None:
        raise NIRError(f"target {args.target!r} has no deployable artifact; it runs in-process "
                       "(use 'nrf-nir run --target ...')", field="target")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise NIRError("exists and is not a directory", file=str(out))
    out.mkdir(parents=True, exist_ok=True)
    written = writer(lowered.backend, out)
    summary = {"source": str(args.file), "target": args.target, "files": sorted(
        str(p) for p in written)}
    write_atomic(out / "deploy.json",
                 lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    print(f"deployed {args.file} to {args.target}: {out}/ ({', '.join(summary['files'])})")
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .conformance.cases import file_case, model_cases, node_cases
    from .conformance.report import write_report
    from .conformance.runner import run_suite, summary
    from .targets import available, registered

    if args.targets == "all":
        targets = available()
    else:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        unknown = [t for t in targets if t not in registered()]
        if unknown:
            raise NIRError(f"unknown target(s) {', '.join(unknown)}; registered: "
                           f"{', '.join(registered())}", field="targets")
    cases = [file_case(f, T=args.T, B=args.B) for f in args.files]
    if args.nodes or not (args.files or args.zoo):
        cases += node_cases(T=args.T, B=min(args.B, 4))
    if args.zoo:
        zoo = model_cases()
        if not zoo:
            raise NIRError("the model zoo provides no conformance cases yet", field="zoo")
        cases += zoo
    results = run_suite(cases, targets, workers=args.workers, ray_address=args.ray_address,
                        progress=sys.stderr.isatty())
    meta = {"targets": ", ".join(targets), "cases": len(cases), "T": args.T, "B": args.B}
    paths = write_report(results, Path(args.report), meta)
    s = summary(results)
    counts = ", ".join(f"{k} {v}" for k, v in s["by_status"].items() if v)
    print(f"{s['ok']}/{s['total']} as expected ({counts})")
    for line in s["failed"]:
        print(f"  NOT AS EXPECTED: {line}")
    print(f"report: {paths['html']} (also {paths['md'].name}, {paths['json'].name})")
    return 0 if not s["failed"] else 1


def cmd_targets(args: argparse.Namespace) -> int:
    from .targets import get, registered

    width = max(map(len, registered()), default=0)
    for name in registered():
        try:
            desc = get(name).description
            status = "available"
        except NIRError as exc:
            desc, status = exc.message, "unavailable"
        print(f"{name:{width}s} {status:12s} {desc}")
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="nrf-nir", description="A hardware-portable compiler for spiking "
                     "neural networks built on NIR.")
    parser.add_argument("--version", action="version", version=f"nrf-nir {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("validate", help="check a .nir file: structure, values and shapes")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("inspect", help="nodes, shapes, parameters, semantics and counts")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("run", help="simulate a .nir file on inputs from an .npz archive")
    p.add_argument("file")
    p.add_argument("--input", required=True, metavar="IN.npz",
                   help="arrays [T, B, *shape] keyed by Input node name")
    p.add_argument("--output", required=True, metavar="OUT.npz",
                   help="written atomically, keyed by Output node (and recorded) name")
    p.add_argument("--target", default="reference")
    p.add_argument("--dt", type=_positive_float, default=None, metavar="S",
                   help="time step in seconds (overrides the file's)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    p.add_argument("--record", nargs="*", default=[], metavar="NAME",
                   help="also record these nodes or '<neuron>.v' / '<neuron>.i' states")
    p.add_argument("--dialect", default="auto",
                   help="conventions of the file's producer: auto (recognise snnTorch, "
                        "Rockpool, Norse files), none, or a dialect name")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("export", help="export a Norse / PyTorch model to a .nir file")
    p.add_argument("source", metavar="SOURCE",
                   help="a factory 'package.module:function' (or 'file.py:function'), or a "
                        "state_dict / Lightning .ckpt file together with --model")
    p.add_argument("-o", "--output", required=True, metavar="FILE.nir")
    p.add_argument("--model", metavar="NAME_OR_FACTORY",
                   help="architecture for a weights file: a zoo name or a factory")
    p.add_argument("--dt", type=_positive_float, default=None, metavar="S",
                   help="time step in seconds (default: the cells' dt; must agree with it)")
    p.add_argument("--input-shape", type=_input_shape, default=None, metavar="D[,D...]",
                   help="per-sample input shape, e.g. 2,34,34 (default: module.input_shape)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("deploy", help="lower a .nir file to a hardware target and write its "
                       "artifacts (configuration, design-rule and quantization report)")
    p.add_argument("file")
    p.add_argument("--target", required=True)
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--dt", type=_positive_float, default=None, metavar="S")
    p.add_argument("--dialect", default="auto")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("conformance", help="run cases on targets, compare with the reference, "
                       "write results.json, report.md and report.html")
    p.add_argument("files", nargs="*", metavar="FILE", help=".nir files to use as cases")
    p.add_argument("--nodes", action="store_true", help="the node cases (default with no FILE)")
    p.add_argument("--zoo", action="store_true", help="the model zoo's cases")
    p.add_argument("--targets", default="all", help="'all' (available ones) or a,b,c")
    p.add_argument("--report", required=True, metavar="DIR")
    p.add_argument("--workers", type=int, default=None, help="local processes (default: CPUs)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="run cases on a Ray cluster ('local' starts one)")
    p.add_argument("--T", type=int, default=100, help="steps per file/node case")
    p.add_argument("--B", type=int, default=8, help="samples per file case")
    p.set_defaults(func=cmd_conformance)

    p = sub.add_parser("targets", help="list registered targets and whether they are available")
    p.set_defaults(func=cmd_targets)

    from nrf_nir.models.cli import add_parser as add_zoo_parser

    add_zoo_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except NIRError as exc:
        print(f"nrf-nir: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("nrf-nir: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
