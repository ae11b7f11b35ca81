"""The deployable Xylo artifact (``nrf-nir deploy FILE --target xylo -o OUT/``).

Files written into the directory:

- ``xylo_config.npz`` + ``xylo_config.json``: the integer configuration (see
  ``config.py``); ``XyloConfig.load(OUT)`` reads it back, ``XyloConfig.specification()``
  gives the keyword arguments of Rockpool's ``XyloSim.from_specification`` /
  ``config_from_specification`` that reproduce the run;
- ``xylo_report.json``: the design rules checked, the quantization (scale and limiting
  factor per layer, weight shifts, weight/threshold/bias errors, tau errors per layer and per
  distinct time constant, latency per layer) and the notes on semantic differences;
- ``xylo_report.md``: the same, for a person.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nrf_nir.atomic import atomic_folder

from .config import XyloConfig, _jsonable

REPORT_JSON = "xylo_report.json"
REPORT_MD = "xylo_report.md"


def write_artifact(lowered: Any, directory: str | Path) -> list[Path]:
    """Write the configuration and the report of a ``XyloLowered``; return the paths.

    All files or none (``nrf_nir.atomic.atomic_folder``): a file in ``directory`` that is a
    symlink or a folder is refused and ``directory`` is left as it was.
    """
    d = Path(directory)
    report = _jsonable(lowered.report)
    markdown = render_markdown(report, lowered.config)
    with atomic_folder(d) as tmp:
        names = [p.name for p in lowered.config.save(tmp)]
        (tmp / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
        (tmp / REPORT_MD).write_text(markdown)
    return [d / name for name in (*names, REPORT_JSON, REPORT_MD)]


def load_artifact(directory: str | Path) -> XyloConfig:
    """The configuration of an artifact directory."""
    return XyloConfig.load(directory)


def changes(report: dict[str, Any]) -> list[str]:
    """The lossy changes a deployment made, one line each, from a Xylo report: per layer the
    weight rounding (relative RMS error, weights zeroed or clipped), threshold and bias
    errors, the membrane time constants Xylo can hold (bit-shift decays), the latency; then
    the departures from the reference semantics (reset, initial state, missing currents)."""
    def pct(x: float) -> str:
        return f"{100 * x:.2g}%"

    lines = []
    for la in report["quantization"]["layers"]:
        w, th = la["weights"], la.get("threshold")
        bias, tau = la.get("bias"), la.get("tau_mem")
        parts = [f"weights int8 (rms error {pct(w['relative_rms_error'])}"
                 + (f", {w['zeroed']} of {w['nonzero']} zeroed" if w["zeroed"] else "")
                 + (f", {w['clipped']} clipped" if w["clipped"] else "") + ")"]
        if th:
            parts.append(f"threshold error <= {pct(th['max_relative_error'])}")
        if bias and (bias.get("clipped") or bias.get("max_abs_error")):
            parts.append(f"bias error <= {bias['max_abs_error']:.3g} units"
                         + (f" ({bias['clipped']} clipped)" if bias["clipped"] else ""))
        err = tau.get("max_abs_relative_error") if tau else None
        if tau and err:
            taus = ", ".join(f"{v['tau'] * 1e3:.3g} -> {v['tau_xylo'] * 1e3:.3g} ms"
                             for v in tau["values"][:3])
            more = f" and {len(tau['values']) - 3} more" if len(tau["values"]) > 3 else ""
            parts.append(f"tau_mem {taus}{more} (up to {pct(err)} off)")
        if la.get("lag_steps"):
            parts.append(f"{la['lag_steps']} step(s) late")
        lines.append(f"{la['name']} ({la['type']}, {la['neurons']} neurons): "
                     + "; ".join(parts))
    lines += list(report["quantization"].get("notes", []))
    return lines


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def render_markdown(report: dict[str, Any], config: XyloConfig) -> str:
    q = report["quantization"]
    res = q["resources"]
    lines = [
        f"# Xylo deployment report ({report['chip']})", "",
        f"Target `{report['target']}`; dt = {config.dt:g} s; headroom {q['headroom']:g}.",
        "",
        f"Resources: {res['inputs'][0]}/{res['inputs'][1]} input channels, "
        f"{res['hidden'][0]}/{res['hidden'][1]} hidden neurons, {res['outputs'][0]}/"
        f"{res['outputs'][1]} output neurons; synapse 2 "
        f"{'used' if res['synapse2_used'] else 'unused'}.",
        "",
        f"Weight shifts: input {q['weight_shifts']['in']}, recurrent "
        f"{q['weight_shifts']['rec']}, readout {q['weight_shifts']['out']}.", "",
        "## Design rules (all passed)", "",
        *[f"- {rule}" for rule in report["design_rules"]["rules"]], "",
        "## Layers", "",
        "| node | role | neurons | first index | scale (units per 1.0) | limited by | "
        "weight rms error | weights zeroed | threshold error | tau_mem error (max) | lag |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for la in q["layers"]:
        th = la["threshold"]
        lines.append(
            f"| {la['name']} | {la['role']} ({la['readout']}) | {la['neurons']} | "
            f"{la['first_index']} | {la['scale']:.4g} | {la['scale_limited_by']} | "
            f"{_pct(la['weights']['relative_rms_error'])} | {la['weights']['zeroed']}/"
            f"{la['weights']['nonzero']} | {_pct(th['max_relative_error']) if th else '-'} | "
            f"{_pct(la['tau_mem']['max_abs_relative_error'])} | {la['lag_steps']} |")
    lines += ["", "## Time constants", "",
              "| node | state | tau (s) | dash | Xylo tau (s) | error |",
              "|---|---|---|---|---|---|"]
    for la in q["layers"]:
        for row in la["tau_mem"]["values"]:
            lines.append(f"| {la['name']} | membrane | {row['tau']:.4g} | {row['dash']} | "
                         f"{row['tau_xylo']:.4g} | {_pct(row['relative_error'])} |")
        for syn in la["synapses"]:
            if "tau" not in syn:
                lines.append(f"| {la['name']} | synapse {syn['slot']} ({syn['kind']}) | - | "
                             "1 | - | - |")
                continue
            for row in syn["tau"]["values"]:
                lines.append(f"| {syn['node']} | synapse {syn['slot']} ({syn['kind']}) | "
                             f"{row['tau']:.4g} | {row['dash']} | {row['tau_xylo']:.4g} | "
                             f"{_pct(row['relative_error'])} |")
    if report.get("calibration"):
        lines += ["", "## Calibration (windowed F1 against the reference)", "",
                  "| headroom | score |", "|---|---|"]
        lines += [f"| {c['headroom']:g} | {c['score']:.4f} |" for c in report["calibration"]]
    if q["notes"]:
        lines += ["", "## Differences from the reference semantics", ""]
        lines += [f"- {n}" for n in q["notes"]]
    lines += ["", "## Reproduce in XyloSim", "", "```python",
              "from nrf_nir.targets.xylo import XyloConfig, run_xylosim",
              "cfg = XyloConfig.load('.')  # this directory",
              "out = run_xylosim(cfg, counts)  # counts: [T, B, n_in] events per step",
              "```", ""]
    return "\n".join(lines)
