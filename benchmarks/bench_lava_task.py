#!/usr/bin/env python
"""The zoo's task metrics on Loihi fixed point: each model's own metric (its ``evaluate``, on
its own held-out data) computed with the float torch model and with the ``loihi`` target
(bit-exact with ``lava-fixed``: ``tests/test_lava_zoo.py``, ``tests/test_target_lava.py``),
side by side in one run, on the same samples.

The target is run as the model: a module whose ``forward`` lowers nothing and runs the lowered
NIR graph (exported from the same checkpoint) on ``[T, B, *input_shape]``; for
``tts-encoder`` it replaces the full VQ-VAE's spiking encoder blocks, whose decoder the metric
needs. Classifiers also get the decision agreement (the model's decoding) between the float
model and the target on every evaluated sample.

Bounds (docs/targets/lava.md, "The zoo on Lava"): accuracy within 1 percentage point of the
float model's and decision agreement >= 0.99 (poker-dvs, first-spike); selectivity equal to the
float model's (time-surface); position error within 10 % of the float model's (nrf);
reconstruction relative MSE within 0.01 of the float model's (tts-encoder, its images fed as
``round(255 x)`` payloads: target option ``input_scale``). A model that misses its bound is
listed as FAIL and the exit code is 1.

Usage: python benchmarks/bench_lava_task.py [--models poker-dvs,first-spike,...] [--n N]
       [--target loihi] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch import nn  # noqa: E402

import nrf_nir  # noqa: E402
from nrf_nir import models  # noqa: E402
from nrf_nir.metrics import decision_agreement  # noqa: E402

MODELS = ("poker-dvs", "first-spike", "time-surface", "nrf", "tts-encoder")
#: Target options per model (the fixed-point targets take integer inputs).
OPTIONS: dict[str, dict[str, Any]] = {"tts-encoder": {"input_scale": 255}}


class Recorder(nn.Module):
    """``module`` as it is, keeping every output ``[T, B, ...]`` it returns (in call order)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = module
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x)
        self.outputs.append(out.detach().cpu())
        return out


class OnTarget(nn.Module):
    """A lowered NIR graph as a torch module ``[T, B, *shape] -> [T, B, ...]`` (its one
    output), on CPU float32."""

    def __init__(self, lowered: Any, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.lowered = lowered
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lowered.run({"input": x})
        (value,) = out.values()
        return value.to(torch.float32).cpu().reshape(x.shape[0], x.shape[1], *self.shape)


Bound = Callable[[float, float], bool]
#: model -> (metric, bound on (float value, target value), bound in words)
BOUNDS: dict[str, tuple[str, Bound, str]] = {
    "poker-dvs": ("accuracy", lambda f, t: abs(f - t) <= 0.01, "within 1 pp"),
    "first-spike": ("accuracy", lambda f, t: abs(f - t) <= 0.01, "within 1 pp"),
    "time-surface": ("selectivity", lambda f, t: t >= f, "equal (1.0)"),
    "nrf": ("error_px", lambda f, t: t <= 1.10 * f, "within 10 %"),
    "tts-encoder": ("relative_mse", lambda f, t: t <= f + 0.01, "within 0.01"),
}
MIN_AGREEMENT = 0.99


def measure(name: str, target: str, n: int | None) -> dict[str, Any]:
    spec = models.spec(name)
    module = models.build(name)
    graph = models.export(name, module)
    lowered = nrf_nir.lower(graph, target, **OPTIONS.get(name, {}))
    options = {} if n is None else {"n": n}
    float_rec = Recorder(module)
    t0 = time.perf_counter()
    if name == "tts-encoder":
        value_f = models.evaluate(name, module, **options)
    else:
        value_f = models.evaluate(name, float_rec, **options)
    t_float = time.perf_counter() - t0
    with torch.no_grad():  # the output shape of one sample, one step
        probe = module(torch.zeros(1, 1, *spec.INPUT_SHAPE))
    on_target = OnTarget(lowered, tuple(probe.shape[2:]))
    target_rec = Recorder(on_target)
    t0 = time.perf_counter()
    if name == "tts-encoder":
        full = spec.full_of(module)
        full.encoder.blocks = on_target
        object.__setattr__(on_target, "full", full)
        value_t = models.evaluate(name, on_target, **options)
    else:
        value_t = models.evaluate(name, target_rec, **options)
    t_target = time.perf_counter() - t0
    metric, ok, words = BOUNDS[name]
    f, t = float(value_f[metric]), float(value_t[metric])
    row: dict[str, Any] = {"model": name, "metric": metric, "float": f, "target": t,
                           "bound": words, "n": value_f.get("n"), "T": value_f.get("T"),
                           "seconds_float": round(t_float, 1),
                           "seconds_target": round(t_target, 1)}
    passed = ok(f, t)
    if spec.DECODE in ("max", "first") and metric == "accuracy":
        ref = torch.cat([o.double() for o in float_rec.outputs], dim=1)
        got = torch.cat([o.double() for o in target_rec.outputs], dim=1)
        row["decision_agreement"] = decision_agreement(ref, got, spec.DECODE)
        passed = passed and row["decision_agreement"] >= MIN_AGREEMENT
    row["passed"] = passed
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--n", type=int, default=None, help="samples (default: the model's own)")
    ap.add_argument("--target", default="loihi", choices=("loihi", "lava-fixed"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "lava-task.json"))
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        print(f"error: unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}",
              file=sys.stderr)
        return 2
    rows = []
    for name in names:
        row = measure(name, args.target, args.n)
        rows.append(row)
        agree = (f"  decisions agree {row['decision_agreement']:.4f}"
                 if "decision_agreement" in row else "")
        print(f"{name:<13} {row['metric']:<13} float {row['float']:.4f}  {args.target} "
              f"{row['target']:.4f}  ({row['bound']}){agree}  "
              f"{'pass' if row['passed'] else 'FAIL'}  [{row['seconds_float']} s / "
              f"{row['seconds_target']} s]", flush=True)
    result = {"target": args.target, "rows": rows, "torch": torch.__version__,
              "machine": platform.machine(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg()}
    from nrf_nir.atomic import write_text

    write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
