"""The conformance report: results.json, report.md and a self-contained report.html.

The HTML has a target x case matrix coloured by verdict, metric tables, and for every case
that is not an exact pass a raster plot (reference vs target, sample 0, differences marked),
embedded as PNG so the file stands alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nrf_nir.atomic import atomic_folder
from nrf_nir.conformance.manifest import SPIKES, VALUES
from nrf_nir.conformance.runner import Result, output_kind, summary
from nrf_nir.errors import escape, shown

COLOURS = {"pass": "#2e7d32", "xfail": "#f9a825", "unsupported": "#9e9e9e", "fail": "#c62828",
           "xpass": "#6a1b9a", "error": "#000000"}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


#: What the numbers after a status in the matrix are (report.md and report.html).
LEGEND = ("Numbers after a status: e = per-step exact agreement of the spike outputs "
          "(fraction of (step, sample, neuron) entries equal; the lowest output; shown below "
          "1); r = relative RMSE of the value outputs (membrane read-outs: RMSE / RMS of the "
          "reference; the highest output; shown above 0). Each level's bounds on these and "
          "on the other metrics: docs/conformance.md.")

_KEYS = {SPIKES: ("exact", "first_divergence", "f1_pm3", "count_correlation", "van_rossum",
                  "decision_agreement"),
         VALUES: ("relative_rmse", "rmse", "max_abs", "decision_agreement")}


def _worst(r: Result, kind: str) -> dict[str, Any] | None:
    """The worst output of ``kind``: lowest exact agreement (spikes), highest relative RMSE
    (values; an undefined one is worst)."""
    outputs = [m for m in r.metrics.values() if output_kind(m) == kind]
    if not outputs:
        return None
    if kind == SPIKES:
        return min(outputs, key=lambda m: m.get("exact", 0.0))
    return max(outputs, key=lambda m: (m.get("relative_rmse") is None,
                                       m.get("relative_rmse") or 0.0))


def _headline(r: Result) -> dict[str, Any]:
    """The key metrics of the worst spike output and of the worst value output."""
    out: dict[str, Any] = {}
    for kind in (SPIKES, VALUES):
        worst = _worst(r, kind)
        if worst is not None:
            out.update({k: worst[k] for k in _KEYS[kind] if k in worst})
    return out


def cell_numbers(r: Result) -> str:
    """The numbers after the status in a matrix cell (``LEGEND``): ``e=`` the lowest exact
    agreement of the spike outputs when below 1, ``r=`` the highest relative RMSE of the
    value outputs when above 0 (``undefined``: missing, or a silent reference)."""
    parts = []
    spikes, values = _worst(r, SPIKES), _worst(r, VALUES)
    if spikes is not None and spikes.get("exact", 0.0) != 1.0:
        parts.append(f"e={spikes.get('exact', 0.0):.4f}")
    if values is not None:
        rel = values.get("relative_rmse")
        if rel is None:
            parts.append("r=undefined")
        elif rel > 0:
            parts.append(f"r={rel:.2g}")
    return " ".join(parts)


def raster_png(r: Result) -> bytes | None:
    """Reference vs target raster (spikes) or traces (values) of sample 0."""
    if not r.raster:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref, got = np.asarray(r.raster["reference"]), np.asarray(r.raster["target"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 2.8), sharey=True)
    if r.raster.get("spiking", True):
        for ax, data, title in ((axes[0], ref, "reference"), (axes[1], got, r.target)):
            t, n = np.nonzero(data)
            ax.scatter(t, n, s=3, c="k", marker="|")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("step")
        only_ref = np.nonzero((ref != 0) & (got == 0))
        only_got = np.nonzero((got != 0) & (ref == 0))
        axes[1].scatter(only_got[0], only_got[1], s=10, c="red", marker="|", label="extra")
        axes[1].scatter(only_ref[0], only_ref[1], s=10, c="blue", marker="|", label="missing")
        if len(only_ref[0]) or len(only_got[0]):
            axes[1].legend(fontsize=7, loc="upper right")
        axes[0].set_ylabel("neuron")
    else:
        axes[0].plot(ref[:, : min(8, ref.shape[1])], lw=0.8)
        axes[0].set_title("reference", fontsize=9)
        axes[1].plot(got[:, : min(8, got.shape[1])] - ref[:, : min(8, ref.shape[1])], lw=0.8)
        axes[1].set_title(f"{r.target} - reference", fontsize=9)
    fig.suptitle(f"{r.case} on {r.target}: {r.status}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _matrix(results: Sequence[Result]) -> tuple[list[str], list[str], dict[tuple[str, str],
                                                                           Result]]:
    cases = list(dict.fromkeys(r.case for r in results))
    targets = list(dict.fromkeys(r.target for r in results))
    return cases, targets, {(r.case, r.target): r for r in results}


def _md_text(value: Any) -> str:
    """Free text (messages, reasons, meta values) for Markdown: control characters escaped."""
    return escape(str(value))


def _md_code(name: object, *, table: bool = False) -> str:
    """A name (case, target, node) as a Markdown code span: control characters escaped, long
    names shortened, backticks fenced, and in a table cell ``|`` escaped."""
    text = shown(name, quote=False)
    if table:
        text = text.replace("|", "\\|")
    run = max((len(m) for m in re.findall("`+", text)), default=0)
    pad = " " if run else ""
    fence = "`" * (run + 1)
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_cell(name: object) -> str:
    """A name as plain text in a Markdown table cell (escaped, shortened, ``|`` escaped)."""
    return shown(name, quote=False).replace("|", "\\|")


def write_markdown(results: Sequence[Result], meta: dict[str, Any]) -> str:
    """report.md. Names from files (cases, targets, nodes in messages) are data: escaped,
    shortened and kept from breaking the table (``_md_code``)."""
    s = summary(results)
    cases, targets, cell = _matrix(results)
    lines = ["# nrf-nir conformance report", "",
             f"{s['ok']} of {s['total']} results as expected; "
             + ", ".join(f"{k}: {v}" for k, v in s["by_status"].items() if v), "",
             LEGEND, ""]
    for key, value in meta.items():
        lines.append(f"- {_md_text(key)}: {_md_text(value)}")
    lines += ["", "| case | " + " | ".join(_md_cell(t) for t in targets) + " |",
              "|---|" + "---|" * len(targets)]
    for case in cases:
        row = []
        for t in targets:
            r = cell.get((case, t))
            if r is None:
                row.append("")
                continue
            mark = "" if r.ok else " **!**"
            numbers = cell_numbers(r)
            row.append(f"{r.status}{f' {numbers}' if numbers else ''}{mark}")
        lines.append(f"| {_md_code(case, table=True)} | " + " | ".join(row) + " |")
    unexpected = [r for r in results if not r.ok]
    if unexpected:
        lines += ["", "## Not as expected", ""]
        lines += [f"- {_md_code(r.case)} on {_md_code(r.target)}: {r.status} (expected "
                  f"{r.level}): {_md_text(r.message)}" for r in unexpected]
    notes = [r for r in results if r.ok and r.status in ("xfail", "unsupported")]
    if notes:
        lines += ["", "## Expected differences", ""]
        for r in notes:
            up = f" ({_md_text(r.upstream)})" if r.upstream else ""
            lines.append(f"- {_md_code(r.case)} on {_md_code(r.target)}: {r.status}: "
                         f"{_md_text(r.reason or r.message)}{up}")
    return "\n".join(lines) + "\n"


def write_html(results: Sequence[Result], meta: dict[str, Any]) -> str:
    s = summary(results)
    cases, targets, cell = _matrix(results)
    esc = html.escape
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
           "<title>nrf-nir conformance report</title><style>",
           "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}",
           "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}",
           "td.c{color:white;text-align:center}.bad{outline:3px solid #ff1744}",
           "img{max-width:100%}</style></head><body>",
           "<h1>nrf-nir conformance report</h1>",
           f"<p id='summary'>{s['ok']} of {s['total']} results as expected; "
           + esc(", ".join(f"{k}: {v}" for k, v in s["by_status"].items() if v)) + "</p>",
           f"<p id='legend'>{esc(LEGEND)}</p><ul>"]
    out += [f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in meta.items()]
    out.append("</ul><h2>Matrix</h2><table id='matrix'><tr><th>case</th>")
    out += [f"<th>{esc(t)}</th>" for t in targets]
    out.append("</tr>")
    for case in cases:
        out.append(f"<tr><td><a href='#{esc(case)}'>{esc(case)}</a></td>")
        for t in targets:
            r = cell.get((case, t))
            if r is None:
                out.append("<td></td>")
                continue
            numbers = cell_numbers(r)
            label = r.status + (f" {numbers}" if numbers else "")
            cls = "c" + ("" if r.ok else " bad")
            out.append(f"<td class='{cls}' style='background:{COLOURS[r.status]}' "
                       f"title='{esc(r.message or r.reason)}'>{esc(label)}</td>")
        out.append("</tr>")
    out.append("</table><h2>Cases</h2>")
    for case in cases:
        out.append(f"<h3 id='{esc(case)}'>{esc(case)}</h3><table><tr><th>target</th>"
                   "<th>status</th><th>expected</th><th>metrics (worst spike / value output)</th>"
                   "<th>note</th></tr>")
        pictures = []
        for t in targets:
            r = cell.get((case, t))
            if r is None:
                continue
            metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in _headline(r).items())
            note = r.message or r.reason
            if r.upstream:
                note += f" ({r.upstream})"
            out.append(f"<tr><td>{esc(t)}</td><td>{esc(r.status)}</td><td>{esc(r.level)}</td>"
                       f"<td>{esc(metrics)}</td><td>{esc(note)}</td></tr>")
            if r.metrics and any(m.get("exact") != 1.0 for m in r.metrics.values()):
                png = raster_png(r)
                if png:
                    data = base64.b64encode(png).decode("ascii")
                    pictures.append(f"<img alt='raster {esc(case)} {esc(t)}' "
                                    f"src='data:image/png;base64,{data}'>")
        out.append("</table>")
        out += pictures
    out.append("</body></html>")
    return "\n".join(out)


#: The files ``write_report`` writes, by kind.
REPORT_FILES = {"json": "results.json", "md": "report.md", "html": "report.html"}


def write_report(results: Sequence[Result], directory: Path,
                 meta: dict[str, Any] | None = None, *,
                 protect: Sequence[str | Path] = ()) -> dict[str, Path]:
    """Write results.json, report.md and report.html into ``directory``: all three or none
    (``nrf_nir.atomic.atomic_folder``; ``protect``: files never to replace, the inputs)."""
    directory = Path(directory)
    meta = dict(meta or {})
    payload = {"meta": meta, "summary": summary(results),
               "results": [r.to_json() for r in results]}
    texts = {"json": json.dumps(payload, indent=1, default=str),
             "md": write_markdown(results, meta), "html": write_html(results, meta)}
    with atomic_folder(directory, protect=protect) as tmp:
        for kind, name in REPORT_FILES.items():
            (tmp / name).write_text(texts[kind], encoding="utf8")
    return {kind: directory / name for kind, name in REPORT_FILES.items()}
