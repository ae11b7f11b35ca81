"""The ``nrf-nir`` command line. User errors print one line and exit with status 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .errors import NIRError, escape, shown

EXIT_USER_ERROR = 2
#: Written by ``deploy`` beside the target's artifacts: source, target and files.
DEPLOY_JSON = "deploy.json"


def _load_npz(path: str, input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays of an input ``.npz``, read without trusting it (``nrf_nir.arrays``); keys
    are matched strictly against ``input_names`` later (``api.prepare_inputs``)."""
    from .arrays import read_npz

    return read_npz(path, expected_keys=input_names)


def _save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    from .atomic import write_atomic

    def write(tmp: Any) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]

    write_atomic(path, write)


def _file_warnings() -> tuple[type[Warning], ...]:
    """The warnings of reading a file, each printed as one line (no torch imported)."""
    from .dialects import ConventionsWarning
    from .validate import DtLintWarning

    return ConventionsWarning, DtLintWarning


def cmd_validate(args: argparse.Namespace) -> int:
    from .io import load
    from .semantics import read_semantics
    from .validate import lint_dt, validate

    try:
        with _one_line_warnings(*_file_warnings()):
            checked = validate(load(args.file, validate=False, dialect=args.dialect,
                                    dt=args.dt))
            sem = read_semantics(checked.graph)
            lint_dt(checked)  # one line per neuron node fed spikes without a synapse
    except NIRError as exc:
        raise exc.with_file(args.file) from None
    dt = "no dt (runs need --dt)" if sem.dt is None else f"dt {sem.dt:g} s"
    print(f"{args.file}: valid NIR graph, {len(checked.flat.nodes)} nodes, "
          f"{len(checked.back)} recurrent edges, {dt}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import render, summarize
    from .io import load_normalized
    from .validate import validate

    try:
        with _one_line_warnings(*_file_warnings()):
            loaded = load_normalized(args.file, validate=False, dialect=args.dialect,
                                     dt=args.dt)
        summary = summarize(validate(loaded.graph), loaded)
    except NIRError as exc:
        raise exc.with_file(args.file) from None
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render(summary))
    return 0


def _check_output(path: str, inputs: Sequence[str | None], field: str = "output") -> None:
    """Refuse, before any work, an output file that is an input or that cannot be written."""
    from .atomic import check_output_file, refuse_overwriting_inputs

    refuse_overwriting_inputs(path, inputs, field=field)
    check_output_file(path)


@contextlib.contextmanager
def _one_line_warnings(*categories: type[Warning]) -> Iterator[None]:
    """Print warnings of ``categories`` (default: a run's numeric warnings,
    :class:`~nrf_nir.api.NonFiniteWarning` and :class:`~nrf_nir.validate.UnstableWarning`,
    and those of reading a file) as one ``nrf-nir: warning:`` line each; other warnings are
    shown as usual."""
    import warnings

    if categories:
        ours: tuple[type[Warning], ...] = categories
    else:
        from .api import NonFiniteWarning
        from .validate import UnstableWarning

        ours = (NonFiniteWarning, UnstableWarning, *_file_warnings())
    with warnings.catch_warnings(record=True) as caught:
        for category in ours:
            warnings.simplefilter("always", category)
        yield
    for w in caught:
        if issubclass(w.category, ours):
            print(f"nrf-nir: warning: {escape(str(w.message))}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _progress_option(target: str) -> dict[str, Any]:
    """``{"progress": True}`` on a terminal (stderr) for a target that declares the option
    (``progress = True``: progress bars for its long steps), else no option."""
    from .targets import get

    return {"progress": True} if sys.stderr.isatty() and \
        getattr(get(target), "progress", False) else {}


def _target_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options ``lower`` passes to the target: the automatic ``progress``
    (:func:`_progress_option`), then ``--option``'s (which win)."""
    return {**_progress_option(args.target), **args.options}


def cmd_run(args: argparse.Namespace) -> int:
    from .api import lower
    from .io import load

    _check_output(args.output, [args.file, args.input])
    with _one_line_warnings(*_file_warnings()):
        graph = load(args.file, dialect=args.dialect, dt=args.dt)

    lowered = lower(graph, args.target, dt=args.dt, dtype=args.dtype, device=args.device,
                    strict_numerics=args.strict_numerics, **_target_options(args))
    arrays = _load_npz(args.input, lowered.checked.flat.inputs)
    start = time.monotonic()
    try:
        with _one_line_warnings():
            out = lowered.run(arrays, record=args.record)
    except NIRError as exc:
        from .api import NonFiniteError

        raise exc.with_file(args.file if isinstance(exc, NonFiniteError) else args.input
                            ) from None
    result = {name: value.detach().cpu().numpy() for name, value in out.items()}
    _save_npz(args.output, result)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in result.items())
    first = next(iter(arrays.values()))
    print(f"wrote {args.output}: {shapes} ({first.shape[0]} steps x {first.shape[1]} samples "
          f"on {args.target} in {time.monotonic() - start:.1f} s)")
    return 0


def _import_from_working_directory() -> None:
    """Put the working directory first on ``sys.path``, as ``python -m`` does, so that a
    factory ``package.module:function`` is found in the folder the command runs in."""
    import os

    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


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
    from .exporters.modules import SampleShapeError
    from .io import save

    source: str = args.source
    factories = [spec.partition(":")[0] for spec in (source, args.model or "") if ":" in spec]
    _check_output(args.output, [source, *(f for f in factories if f.endswith(".py"))])
    if any(not f.endswith(".py") for f in factories):
        _import_from_working_directory()
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
    try:
        graph = export(module, sample, dt=args.dt)
    except SampleShapeError as exc:
        given = ("--input-shape " if args.input_shape else "the module's input_shape ") + \
            ",".join(map(str, shape))
        raise NIRError(f"{exc.layer} takes one time step {exc.layout}, but {given} gives "
                       f"{exc.shape}", node=exc.node, field="input_shape") from None
    save(graph, args.output)
    sem = graph.metadata
    print(f"wrote {args.output}: {len(graph.nodes)} nodes, dt {sem.get('dt')} s, "
          f"reset {sem.get('reset')}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .api import lower
    from .atomic import atomic_folder, check_output_folder, refuse_overwriting_inputs
    from .io import load
    from .targets import get

    refuse_overwriting_inputs(args.output, [args.file], names=(DEPLOY_JSON,))
    check_output_folder(args.output, names=(DEPLOY_JSON,))
    with _one_line_warnings(*_file_warnings()):
        graph = load(args.file, dialect=args.dialect, dt=args.dt)
    target = get(args.target)
    lowered = lower(graph, args.target, dt=args.dt, strict=True, **_target_options(args))
    writer = getattr(target, "artifact", None)
    if writer is None:
        raise NIRError(f"target {args.target!r} has no deployable artifact; it runs in-process "
                       "(use 'nrf-nir run --target ...')", field="target")
    out = Path(args.output)
    # the lossy changes the target made (None: it does not report them)
    describe = getattr(target, "changes", None)
    changes: list[str] | None = describe(lowered.backend) if describe is not None else None
    # every file or none: a refusal or a fault leaves OUT as it was (absent if it was)
    with atomic_folder(out, protect=[args.file]) as tmp:
        written = writer(lowered.backend, tmp)
        summary = {"source": str(args.file), "target": args.target, "files": sorted(
            str(out / Path(p).relative_to(tmp)) for p in written), "changes": changes}
        (tmp / DEPLOY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"deployed {args.file} to {args.target}: {out}/ ({', '.join(summary['files'])})")
    if changes is None:
        print(f"  ({args.target} does not list its lossy changes; see its report)")
    elif not changes:
        print("  no lossy changes: the target computes the graph as the reference does")
    else:
        print(f"  lossy changes ({len(changes)}; also in {out / DEPLOY_JSON}):")
        print("\n".join(f"  - {escape(line)}" for line in changes))
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .atomic import check_output_folder, refuse_overwriting_inputs
    from .conformance.cases import file_case, model_cases, node_cases
    from .conformance.report import REPORT_FILES, write_report
    from .conformance.runner import run_suite, summary
    from .targets import available, registered

    refuse_overwriting_inputs(args.report, args.files, field="report",
                              names=REPORT_FILES.values())
    check_output_folder(args.report, names=REPORT_FILES.values())

    if args.targets == "all":
        targets = available()
    else:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        unknown = [t for t in targets if t not in registered()]
        if unknown:
            raise NIRError(f"unknown target(s) {', '.join(unknown)}; registered: "
                           f"{', '.join(registered())}", field="targets")
    with _one_line_warnings(*_file_warnings()):
        cases = [file_case(f, T=args.T, B=args.B, dialect=args.dialect, dt=args.dt)
                 for f in args.files]
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
    paths = write_report(results, Path(args.report), meta, protect=args.files)
    s = summary(results)
    counts = ", ".join(f"{k} {v}" for k, v in s["by_status"].items() if v)
    print(f"{s['ok']}/{s['total']} as expected ({counts})")
    for line in s["failed"]:
        print(f"  NOT AS EXPECTED: {line}")
    print(f"report: {paths['html']} (also {paths['md'].name}, {paths['json'].name})")
    return 0 if not s["failed"] else 1


def cmd_targets(args: argparse.Namespace) -> int:
    """Each target, whether its framework is installed and its description; imports none of
    them (``nrf_nir.targets.describe``)."""
    from .targets import describe, registered

    width = max(map(len, registered()), default=0)
    for name in registered():
        ok, desc = describe(name)
        status = "available" if ok else "unavailable"
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


#: Largest ``--T`` (steps), ``--B`` (samples) and ``--workers`` (processes) accepted.
MAX_STEPS = 10_000_000
MAX_BATCH = 1_000_000
MAX_WORKERS = 1024


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high:,}], got "
                                             f"{shown(text)}")
        return value

    return parse


def _device(text: str) -> str:
    """An argparse type: a torch device that exists on this machine (``api.check_device``)."""
    from .api import check_device

    try:
        return str(check_device(text))
    except NIRError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _dialect(text: str) -> str:
    """An argparse type: ``NAME[:key=value,...]`` checked against the registered dialects and
    their options (``nrf_nir.dialects.parse``; imports no framework)."""
    from .dialects import parse

    try:
        parse(text)
    except NIRError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text


#: ``--dialect``'s help (the options of each dialect: docs/dialects.md).
DIALECT_HELP = ("conventions of the file's producer: auto (a producer's conventions only on "
                "its fingerprint in the file, else plain NIR), none (as written), or "
                "NAME[:key=value,...]: snntorch[:reset=subtract|zero,delay=on|off], "
                "rockpool[:spikes=multi|single], "
                "norse[:dt=SECONDS], sinabs[:spikes=multi|single,floor=threshold|none,"
                "norm_input=on|off] (docs/dialects.md)")


def _file_options(p: argparse.ArgumentParser, dt_help: str) -> None:
    """``--dialect`` and ``--dt``: every command that reads a .nir file takes both."""
    p.add_argument("--dialect", type=_dialect, default="auto", metavar="NAME[:key=value,...]",
                   help=DIALECT_HELP)
    p.add_argument("--dt", type=_positive_float, default=None, metavar="S", help=dt_help)


class _NamesAction(argparse.Action):
    """An option that accumulates names: each occurrence adds its comma-separated names
    (``--record a --record b,c`` gives ``[a, b, c]``); an empty name is an error."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        names = [name.strip() for name in str(values).split(",")]
        if not all(names):
            raise argparse.ArgumentError(self, f"empty name in {shown(str(values))}")
        setattr(namespace, self.dest, [*getattr(namespace, self.dest), *names])


#: ``nrf_nir.lower``'s own parameters: the command's arguments set them, ``--option`` not.
LOWER_PARAMETERS = ("graph", "target", "dt", "dtype", "device", "strict", "strict_numerics",
                    "dialect")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def option_value(text: str) -> bool | int | float | str:
    """``--option``'s VALUE: ``true``/``false`` (any case) a bool, an integer literal an int,
    a decimal literal (``0.5``, ``1e-3``) a float, anything else the text itself. ValueError
    for a number that is not finite (``nan``, ``inf``, ``1e999``) or an integer too long."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _INTEGER.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # beyond Python's limit on the digits of an int
            raise ValueError(f"must be an integer of at most {sys.get_int_max_str_digits()} "
                             "digits") from None
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number if _DECIMAL.fullmatch(text) else text


class _OptionsAction(argparse.Action):
    """``--option KEY=VALUE``, repeatable: a dict of target options (values:
    :func:`option_value`). A malformed pair, a KEY given twice or one of
    :data:`LOWER_PARAMETERS` is an error naming it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        pair = str(values)
        key, equals, text = pair.partition("=")
        given: dict[str, Any] = getattr(namespace, self.dest)
        if not equals:
            raise argparse.ArgumentError(self, f"expected KEY=VALUE, got {shown(pair)}")
        if not key.isidentifier():
            raise argparse.ArgumentError(
                self, f"KEY must be a name (letters, digits, _), got {shown(key)} in "
                      f"{shown(pair)}")
        if key in LOWER_PARAMETERS:
            raise argparse.ArgumentError(self, f"{key} is not a target option: the command's "
                                               "own arguments set it")
        if key in given:
            raise argparse.ArgumentError(self, f"{key} given twice")
        try:
            value = option_value(text)
        except ValueError as exc:
            raise argparse.ArgumentError(self, f"{key}: {exc}, got {shown(text)}") from None
        setattr(namespace, self.dest, {**given, key: value})


OPTION_HELP = ("a target option (repeat for more), e.g. input_scale=255 for lava-fixed or "
               "stepwise=true for reference; VALUE: true/false, an integer, a decimal "
               "number or text (docs/targets/)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line, like every user error: ``nrf-nir: error: COMMAND: MESSAGE``."""
        command = self.prog.partition(" ")[2]
        where = f"{command}: " if command else ""
        self.exit(EXIT_USER_ERROR, f"nrf-nir: error: {where}{escape(message)} (see "
                                   f"'{self.prog} --help')\n")


#: ``nrf-nir zoo``'s help line (as ``nrf_nir.models.cli`` gives it), for the stand-in parser.
ZOO_HELP = "the model zoo: list, train, evaluate, export"


def build_parser(zoo: bool = True) -> argparse.ArgumentParser:
    """The command line's parser. ``zoo=False``: a stand-in ``zoo`` command with the same help
    line, so that building the parser imports no torch (``main`` asks for the real one only
    when ``zoo`` is among the arguments)."""
    from . import __version__

    parser = _Parser(prog="nrf-nir", description="A hardware-portable compiler for spiking "
                     "neural networks built on NIR.")
    parser.add_argument("--version", action="version", version=f"nrf-nir {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("validate", help="check a .nir file: structure, values and shapes")
    p.add_argument("file")
    _file_options(p, "time step in seconds (overrides the file's)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("inspect", help="nodes, shapes, parameters, semantics and counts")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print JSON")
    _file_options(p, "time step in seconds (overrides the file's)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("run", help="simulate a .nir file on inputs from an .npz archive")
    p.add_argument("file")
    p.add_argument("--input", required=True, metavar="IN.npz",
                   help="arrays [T, B, *shape] keyed by Input node name")
    p.add_argument("--output", required=True, metavar="OUT.npz",
                   help="written atomically, keyed by Output node (and recorded) name")
    p.add_argument("--target", default="reference")
    _file_options(p, "time step in seconds (overrides the file's)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--device", type=_device, default=None,
                   help="torch device: cpu, cuda or cuda:N (default: cuda if present)")
    p.add_argument("--record", action=_NamesAction, default=[], metavar="NAME[,NAME...]",
                   help="also record these nodes or '<neuron>.v' / '<neuron>.i' states; "
                        "repeat the option or separate names with commas")
    p.add_argument("--strict-numerics", action="store_true",
                   help="a run that produces NaN or inf is an error (exit 2) naming the node, "
                        "instead of a warning")
    p.add_argument("--option", dest="options", action=_OptionsAction, default={},
                   metavar="KEY=VALUE", help=OPTION_HELP)
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
    _file_options(p, "time step in seconds (overrides the file's)")
    p.add_argument("--option", dest="options", action=_OptionsAction, default={},
                   metavar="KEY=VALUE", help=OPTION_HELP)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("conformance", help="run cases on targets, compare with the reference, "
                       "write results.json, report.md and report.html")
    p.add_argument("files", nargs="*", metavar="FILE", help=".nir files to use as cases")
    p.add_argument("--nodes", action="store_true", help="the node cases (default with no FILE)")
    p.add_argument("--zoo", action="store_true", help="the model zoo's cases")
    p.add_argument("--targets", default="all", help="'all' (available ones) or a,b,c")
    p.add_argument("--report", required=True, metavar="DIR")
    p.add_argument("--workers", type=_int_in(1, MAX_WORKERS), default=None,
                   help="local processes (default: CPUs)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="run cases on a Ray cluster ('local' starts one)")
    p.add_argument("--T", type=_int_in(1, MAX_STEPS), default=100,
                   help="steps per file/node case")
    p.add_argument("--B", type=_int_in(1, MAX_BATCH), default=8, help="samples per file case")
    _file_options(p, "time step in seconds of each FILE case (overrides the file's)")
    p.set_defaults(func=cmd_conformance)

    p = sub.add_parser("targets", help="list registered targets and whether they are available")
    p.set_defaults(func=cmd_targets)

    if zoo:
        from nrf_nir.models.cli import add_parser as add_zoo_parser

        add_zoo_parser(sub)
    else:  # never selected: "zoo" is not among the arguments
        sub.add_parser("zoo", help=ZOO_HELP)
    return parser


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so that every cleanup (temporary files,
    child processes) runs as for ``KeyboardInterrupt``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: Signals that become exceptions while a command runs (exit status 128 + number).
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


#: The signal being handled (None when none): its exception is raised again if Python drops it.
_caught: int | None = None
#: The unraisable hook in place before ``main`` (reports everything that is not the signal's).
_previous_hook: Callable[[Any], Any] = sys.__unraisablehook__


def _signal_exception(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _on_signal(signum: int, frame: object) -> None:
    global _caught
    for sig in _SIGNALS:  # the first signal starts the cleanup; more must not interrupt it
        signal.signal(sig, signal.SIG_IGN)
    _caught = signum
    raise _signal_exception(signum)


def _raise_again(signum: int, frame: object) -> None:
    if _caught is not None:
        raise _signal_exception(_caught)


def _on_unraisable(unraisable: Any) -> None:
    """Python drops an exception raised inside ``__del__``, a weakref or GC callback: when
    that exception is the signal's, raise it again 1 ms later (SIGALRM), where it can land;
    otherwise report as usual. Without this a signal that arrives while a finaliser runs is
    lost and the command goes on to finish (and write its outputs)."""
    if _caught is not None and isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)):
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGALRM, _raise_again)
            signal.setitimer(signal.ITIMER_REAL, 0.001)
        return
    _previous_hook(unraisable)


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP into exceptions (main thread only; signals ignored by the
    caller, e.g. under ``nohup``, stay ignored); the previous handlers come back after."""
    global _caught, _previous_hook
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    for sig in _SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            old[sig] = signal.signal(sig, _on_signal)
    old_alarm = signal.getsignal(signal.SIGALRM)
    old_hook = _previous_hook = sys.unraisablehook
    sys.unraisablehook = _on_unraisable
    try:
        yield
    finally:
        if _caught is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_alarm)
        _caught = None
        sys.unraisablehook = old_hook
        for sig, handler in old.items():
            signal.signal(sig, handler)


#: Exit status when the reader of standard output went away (``... | head``): that of a
#: process killed by SIGPIPE, as other Unix tools end.
EXIT_CLOSED_PIPE = 128 + signal.SIGPIPE


def _stdout_is_closed_pipe() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll reports an error)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no descriptor behind sys.stdout
        return False


def _stdout_closed() -> int:
    """The reader of standard output closed the pipe: drop what is still buffered (point the
    descriptor at ``/dev/null``, so that Python's final flush does not report the error) and
    end quietly with :data:`EXIT_CLOSED_PIPE`."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_CLOSED_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    with _signals_raise():
        try:
            argv = sys.argv[1:] if argv is None else list(argv)
            parser = build_parser(zoo="zoo" in argv)  # the zoo's parser imports torch
            args = parser.parse_args(argv)
            func: Callable[[argparse.Namespace], int] = args.func
            code = func(args)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
            return code
        except BrokenPipeError:
            if not _stdout_is_closed_pipe():
                raise
            return _stdout_closed()
        except NIRError as exc:
            print(f"nrf-nir: error: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print("nrf-nir: interrupted", file=sys.stderr)
            return 128 + signal.SIGINT
        except Terminated as exc:
            print("nrf-nir: terminated", file=sys.stderr)
            return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
