"""End-to-end demo: export zoo models, deploy them to every available backend, run conformance.

    python examples/demo.py --out demo-out

1. export: Norse models from the zoo (``poker-dvs``, and ``first-spike-xylo`` and
   ``first-spike``, which fit the Xylo and Lava chips) become ``<name>.nir``; the first is
   also ``model.nir``;
2. deploy: every available target is checked against the models in that order and runs the
   first it accepts (or says why it refuses the first); targets with a deployable artifact
   (hardware targets) write it to ``deploy/<target>/``;
3. conformance: every target against the reference on these models and on the node cases,
   reported in ``conformance/report.html`` (also ``report.md`` and ``results.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from nrf_nir.conformance.cases import Case

import nrf_nir
from nrf_nir.errors import NIRError

MODELS = ("poker-dvs", "first-spike-xylo", "first-spike")


def build_models() -> list[tuple[torch.nn.Module, tuple[int, ...], str]]:
    """The zoo models of ``MODELS`` that are there, else a small recurrent Norse classifier."""
    found = []
    try:
        from nrf_nir import models

        for name in MODELS:
            if name in models.names() and models.has_checkpoint(name):
                module = models.build(name)
                found.append((module, tuple(module.input_shape), name))
    except (ImportError, AttributeError, NIRError):
        pass
    if found:
        return found
    import norse.torch as snn

    torch.manual_seed(0)
    model = snn.SequentialState(snn.LIFRecurrentCell(20, 40), torch.nn.Linear(40, 4),
                                snn.LICell())
    with torch.no_grad():
        model[0].input_weights.mul_(3.0)
    return [(model, (20,), "demo-rnn")]


def _cases(exported: list[tuple[str, Any, Path]], steps: int) -> dict[str, Case]:
    """Per model its conformance case: a zoo model's own (generated data, 16 samples, its
    decoding, judged by the manifests' ``model/<name>`` entries), else Bernoulli spikes."""
    from nrf_nir.conformance.cases import file_case

    try:
        from nrf_nir import models

        zoo = {c.name.removeprefix("model/"): c for c in models.conformance_cases(T=steps)}
    except (ImportError, NIRError):
        zoo = {}
    return {name: zoo.get(name) or file_case(str(path), T=steps, B=8)
            for name, _, path in exported}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-out", type=Path)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--no-nodes", action="store_true", help="skip the node cases")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    # 1. export
    exported = []
    for k, (module, shape, name) in enumerate(build_models()):
        graph = nrf_nir.export(module, torch.zeros(1, *shape))
        path = out / f"{name}.nir"
        nrf_nir.save(graph, path)
        if k == 0:
            nrf_nir.save(graph, out / "model.nir")
        exported.append((name, graph, path))
        print(f"1. exported {name} to {path}" + (" (and model.nir)" if k == 0 else ""))

    # 2. deploy: each target runs the first model it accepts
    from nrf_nir.targets import available, get

    cases = _cases(exported, args.steps)
    targets = available()
    for target in targets:
        first_refusal = None
        for name, graph, _ in exported:
            violations = nrf_nir.check(graph, target)
            if violations:
                first_refusal = first_refusal or (name, violations)
                continue
            lowered = nrf_nir.lower(graph, target)
            result = lowered.run(cases[name].inputs)
            spikes = sum(int((v != 0).sum()) for v in result.values())
            line = f"2. {target:12s} ran {name}: {spikes} non-zero outputs"
            writer = getattr(get(target), "artifact", None)
            if writer is not None:
                directory = out / "deploy" / target  # created by the writer, if it writes
                try:
                    files = writer(lowered.backend, directory)
                    line += f"; artifacts: {', '.join(str(Path(f).name) for f in files)}"
                except NIRError as exc:
                    line += f"; no artifact: {exc.message}"
            print(line)
            break
        else:
            assert first_refusal is not None
            name, violations = first_refusal
            print(f"2. {target:12s} refuses every model; {name}: {violations[0]}" + (
                f" (+{len(violations) - 1} more)" if len(violations) > 1 else ""))

    # 3. conformance
    from nrf_nir.conformance.cases import node_cases
    from nrf_nir.conformance.report import write_report
    from nrf_nir.conformance.runner import run_suite, summary

    # the node cases at the suite's own length and batch, which the manifests are set for
    suite = list(cases.values()) + ([] if args.no_nodes else node_cases())
    results = run_suite(suite, targets, progress=sys.stderr.isatty())
    paths = write_report(results, out / "conformance",
                         {"models": ", ".join(cases), "targets": ", ".join(targets)})
    s = summary(results)
    print(f"3. conformance: {s['ok']}/{s['total']} as expected "
          f"({', '.join(f'{k} {v}' for k, v in s['by_status'].items() if v)})")
    for line in s["failed"]:
        print(f"   NOT AS EXPECTED: {line}")
    print(f"\nreport: {paths['html'].resolve()}")
    return 0 if not s["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
