"""End-to-end demo: export a model, deploy it to every available backend, run conformance.

    python examples/demo.py --out demo-out

1. export: a Norse model (a zoo model when the zoo provides one) becomes ``model.nir``;
2. deploy: the file is checked against, and run on, every available target; targets with a
   deployable artifact (hardware targets) write it to ``deploy/<target>/``;
3. conformance: every target against the reference on this model and on the node cases,
   reported in ``conformance/report.html`` (also ``report.md`` and ``results.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import nrf_nir
from nrf_nir.errors import NIRError


def build_model() -> tuple[torch.nn.Module, tuple[int, ...], str]:
    """A zoo model when available, else a small recurrent Norse classifier."""
    try:
        from nrf_nir import models

        for name in ("poker-dvs", "first-spike"):
            if name in models.names():
                module = models.build(name)
                return module, tuple(module.input_shape), name
    except (ImportError, AttributeError, NIRError):
        pass
    import norse.torch as snn

    torch.manual_seed(0)
    model = snn.SequentialState(snn.LIFRecurrentCell(20, 40), torch.nn.Linear(40, 4),
                                snn.LICell())
    with torch.no_grad():
        model[0].input_weights.mul_(3.0)
    return model, (20,), "demo-rnn"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-out", type=Path)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--no-nodes", action="store_true", help="skip the node cases")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    # 1. export
    module, shape, name = build_model()
    graph = nrf_nir.export(module, torch.zeros(1, *shape))
    model_path = out / "model.nir"
    nrf_nir.save(graph, model_path)
    print(f"1. exported {name} to {model_path}")

    # 2. deploy
    from nrf_nir.conformance.cases import file_case
    from nrf_nir.targets import available, get

    case = file_case(str(model_path), T=args.steps, B=8)
    targets = available()
    for target in targets:
        violations = nrf_nir.check(graph, target)
        if violations:
            print(f"2. {target:12s} refuses: {violations[0]}" + (
                f" (+{len(violations) - 1} more)" if len(violations) > 1 else ""))
            continue
        lowered = nrf_nir.lower(graph, target)
        result = lowered.run(case.inputs)
        spikes = sum(int((v != 0).sum()) for v in result.values())
        line = f"2. {target:12s} ran: {spikes} non-zero outputs"
        writer = getattr(get(target), "artifact", None)
        if writer is not None:
            directory = out / "deploy" / target
            directory.mkdir(parents=True, exist_ok=True)
            files = writer(lowered.backend, directory)
            line += f"; artifacts: {', '.join(str(Path(f).name) for f in files)}"
        print(line)

    # 3. conformance
    from nrf_nir.conformance.cases import node_cases
    from nrf_nir.conformance.report import write_report
    from nrf_nir.conformance.runner import run_suite, summary

    cases = [case] + ([] if args.no_nodes else node_cases(T=60, B=2))
    results = run_suite(cases, targets, progress=sys.stderr.isatty())
    paths = write_report(results, out / "conformance",
                         {"model": name, "targets": ", ".join(targets)})
    s = summary(results)
    print(f"3. conformance: {s['ok']}/{s['total']} as expected "
          f"({', '.join(f'{k} {v}' for k, v in s['by_status'].items() if v)})")
    for line in s["failed"]:
        print(f"   NOT AS EXPECTED: {line}")
    print(f"\nreport: {paths['html'].resolve()}")
    return 0 if not s["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
