"""The conformance report: results.json, report.md and a self-contained report.html.

Both start with a summary per target (cases run, within bounds, refusals grouped by the
target's own reason); then the legend and a case x target matrix coloured by verdict
(refused cells kept faint). The HTML adds per case a metric table and, for each result that
differs from the reference, a raster plot (reference vs target, sample 0, differences
marked) embedded as a palette PNG so the file stands alone: at most ``PLOTS_PER_TARGET`` per
target, those not as expected first, then failures, then the largest differences. Identical
results of several targets (target variants) are shown once.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
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
#: What the other marks mean (report.md and report.html, after ``LEGEND``).
LEGEND_MARKS = ("A '-' cell: the target refuses the case as its manifest expects (the "
                "reasons, grouped, in the per-target summary); 'identical to X': the same "
                "verdict, metrics and outputs as target X, shown once.")

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


#: A value output whose relative RMSE is at most this gets no plot (no trace would show it).
PLOT_MIN_RELATIVE_RMSE = 1e-3
#: Raster figure: inches, PNG dots per inch (1100 x 380 px: markers and legend legible in a
#: 1400 px wide browser) and the colours of the PNG's palette (keeps the report small).
FIGSIZE = (11.0, 3.8)
DPI = 100
PNG_COLOURS = 64
#: Plots per target at most (``plotted``): a target that differs on every case would otherwise
#: fill the page, and the report stays under 1 MB (about 20 KB per plot).
PLOTS_PER_TARGET = 12


def differs(r: Result) -> bool:
    """Whether ``r``'s outputs visibly differ from the reference's: a spike output not exact,
    a value output's relative RMSE above ``PLOT_MIN_RELATIVE_RMSE`` (or undefined), an output
    missing or of another shape. Only such results get a plot."""
    for m in r.metrics.values():
        if m.get("missing") or "shape_mismatch" in m:
            return True
        if output_kind(m) == SPIKES:
            if m.get("exact", 0.0) != 1.0:
                return True
        elif (rel := m.get("relative_rmse")) is None or rel > PLOT_MIN_RELATIVE_RMSE:
            return True
    return False


def _severity(r: Result) -> tuple[int, int, float]:
    """Sort key, most severe first: not as expected, then failed (fail, xfail, error), then
    the lowest spike agreement (or the highest relative RMSE) over the outputs."""
    worst = 0.0
    for m in r.metrics.values():
        if output_kind(m) == SPIKES:
            worst = max(worst, 1.0 - float(m.get("exact") or 0.0))
        else:
            rel = m.get("relative_rmse")
            worst = max(worst, 1.0 if rel is None else min(float(rel), 1.0))
    return (int(r.ok), int(r.status not in ("fail", "xfail", "error")), -worst)


def plotted(results: Sequence[Result], same: dict[tuple[str, str], str]
            ) -> set[tuple[str, str]]:
    """(case, target) of the results that get a plot: those that differ (:func:`differs`) and
    are not shown as identical to another target's, at most ``PLOTS_PER_TARGET`` per target,
    most severe first (:func:`_severity`)."""
    by_target: dict[str, list[Result]] = {}
    for r in results:
        if (r.case, r.target) not in same and differs(r):
            by_target.setdefault(r.target, []).append(r)
    chosen: set[tuple[str, str]] = set()
    for rs in by_target.values():
        chosen.update((r.case, r.target) for r in sorted(rs, key=_severity)[:PLOTS_PER_TARGET])
    return chosen


def _palette_png(png: bytes) -> bytes:
    """``png`` re-encoded with a palette of ``PNG_COLOURS`` colours (smaller than RGB)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=PNG_COLOURS)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def raster_figure(r: Result) -> Any:
    """Reference vs target of sample 0 (``Result.raster``: [step, neuron]) as a matplotlib
    figure of ``FIGSIZE`` (None without a raster). Spikes: two rasters, the target's with
    extra (red) and missing (blue) spikes marked; values: the reference's traces and target -
    reference (at most 8 neurons). Both panels span all the steps. The caller closes it."""
    if not r.raster:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref, got = np.asarray(r.raster["reference"]), np.asarray(r.raster["target"])
    steps, neurons = ref.shape[0], max(1, ref.shape[1])
    spiking = bool(r.raster.get("spiking", True))
    with plt.rc_context({"font.size": 12}):
        fig, axes = plt.subplots(1, 2, figsize=FIGSIZE, sharex=True, sharey=spiking)
        if spiking:
            # a marker as tall as a neuron's row (3 to 10 px), in points squared
            row_px = 0.7 * FIGSIZE[1] * DPI / neurons
            size = (min(10.0, max(3.0, 0.9 * row_px)) * 72 / DPI) ** 2
            for ax, data, title in ((axes[0], ref, "reference"), (axes[1], got, r.target)):
                t, n = np.nonzero(data)
                ax.scatter(t, n, s=size, c="k", marker="|", linewidths=1.2)
                ax.set_title(title, loc="left")
                ax.set_xlabel("step")
            only_ref = np.nonzero((ref != 0) & (got == 0))
            only_got = np.nonzero((got != 0) & (ref == 0))
            axes[1].scatter(only_got[0], only_got[1], s=size * 2, c="red", marker="|",
                            linewidths=2.0, label=f"extra ({len(only_got[0])})")
            axes[1].scatter(only_ref[0], only_ref[1], s=size * 2, c="blue", marker="|",
                            linewidths=2.0, label=f"missing ({len(only_ref[0])})")
            axes[1].legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2,
                           fontsize=12, markerscale=1.5, frameon=False, borderaxespad=0.2)
            axes[0].set_ylabel("neuron")
            axes[0].set_ylim(-0.5, neurons - 0.5)
        else:
            shown_n = min(8, ref.shape[1])
            axes[0].plot(ref[:, :shown_n], lw=1.2)
            axes[0].set_title("reference", loc="left")
            axes[1].plot(got[:, :shown_n] - ref[:, :shown_n], lw=1.2)
            axes[1].set_title(f"{r.target} - reference", loc="left")
            for ax in axes:
                ax.set_xlabel("step")
        axes[0].set_xlim(-0.5, steps - 0.5)  # shared: all the steps in both panels
        output = r.raster.get("output")
        fig.suptitle(f"{r.case} on {r.target}: {r.status}"
                     + (f" (output {output!r}, sample 0)" if output else " (sample 0)"),
                     fontsize=13)
        fig.tight_layout()
    return fig


def raster_png(r: Result) -> bytes | None:
    """``raster_figure`` as a palette PNG at ``DPI`` (1100 x 380 px), or None."""
    fig = raster_figure(r)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return _palette_png(buf.getvalue())


def _ran(r: Result) -> bool:
    """Whether the target ran the case to the end (it has measurements)."""
    return bool(r.metrics)


def _within(r: Result) -> bool:
    """Whether the result meets its bounds (pass, or an exact pass where a failure was
    expected)."""
    return r.status in ("pass", "xpass")


_TARGET_PREFIX = re.compile(r"^\[[^\]]*\] ")
_NODE_PREFIX = re.compile(r"""^node (?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")(?:, |: )""")


def refusal_reasons(r: Result) -> list[str]:
    """The target's own refusals of ``r`` (``Result.violations``, its check's messages) without
    the target and node names, distinct, in order; the message when there are none."""
    texts = [_NODE_PREFIX.sub("", _TARGET_PREFIX.sub("", v)) for v in r.violations]
    return list(dict.fromkeys(texts or [r.message or r.reason or "refused"]))


@dataclass
class RefusalGroup:
    """One reason for refusals on a target: its text (the first case's; ``varies``: other
    cases' texts differ only in numbers) and the cases refused for it."""

    text: str
    cases: list[str]
    varies: bool = False


@dataclass
class TargetSummary:
    """One target's results: ``cases`` in all, ``ran`` to the end, ``within`` bounds (pass or
    xpass), ``expected_failures`` (xfail), ``not_as_expected`` (any status the manifest does
    not expect), ``errors``, ``refused`` and the refusals grouped by reason (most cases first;
    a case refused for several reasons is in each group)."""

    target: str
    cases: int = 0
    ran: int = 0
    within: int = 0
    expected_failures: int = 0
    not_as_expected: int = 0
    errors: int = 0
    refused: int = 0
    refusals: list[RefusalGroup] = field(default_factory=list)

    def line(self) -> str:
        """'runs N of M cases; K within bounds; ...; refused R (G reasons)'."""
        parts = [f"runs {self.ran} of {self.cases} cases", f"{self.within} within bounds"]
        if self.expected_failures:
            parts.append(f"{self.expected_failures} expected failures")
        if self.not_as_expected:
            parts.append(f"{self.not_as_expected} not as expected")
        if self.errors:
            parts.append(f"{self.errors} errors")
        if self.refused:
            parts.append(f"refused {self.refused} ({_count(len(self.refusals), 'reason')})")
        return "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def target_summaries(results: Sequence[Result]) -> list[TargetSummary]:
    """Per target, in order of appearance: counts and refusals grouped by reason (texts that
    differ only in numbers are one reason)."""
    out: dict[str, TargetSummary] = {}
    groups: dict[str, dict[str, RefusalGroup]] = {}
    for r in results:
        s = out.setdefault(r.target, TargetSummary(r.target))
        s.cases += 1
        s.ran += _ran(r)
        s.within += _within(r)
        s.expected_failures += r.status == "xfail"
        s.not_as_expected += not r.ok
        s.errors += r.status == "error"
        if r.status != "unsupported":
            continue
        s.refused += 1
        for text in refusal_reasons(r):
            key = re.sub(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", text)
            group = groups.setdefault(r.target, {}).setdefault(key, RefusalGroup(text, []))
            group.varies |= text != group.text
            if r.case not in group.cases:
                group.cases.append(r.case)
    for target, s in out.items():
        s.refusals = sorted(groups.get(target, {}).values(), key=lambda g: -len(g.cases))
    return list(out.values())


def abbreviate(names: Sequence[str], limit: int = 10) -> str:
    """Case names in short: those sharing a parent folded (``node/LIF/{scalar, ge}``), the
    first ``limit`` names, then ``+N more``."""
    parents: dict[str, list[str]] = {}
    for name in names[:limit]:
        parent, sep, leaf = name.rpartition("/")
        parents.setdefault(parent + sep, []).append(leaf)
    entries = [f"{p}{leaves[0]}" if len(leaves) == 1 else f"{p}{{{', '.join(leaves)}}}"
               for p, leaves in parents.items()]
    rest = len(names) - limit
    return ", ".join(entries) + (f", +{rest} more" if rest > 0 else "")


def _short(names: Sequence[str]) -> list[str]:
    """Names as messages show them: escaped, long ones shortened (``nrf_nir.errors.shown``)."""
    return [shown(n, quote=False) for n in names]


def _refusals_key(s: TargetSummary) -> list[tuple[str, list[str]]]:
    return [(g.text, g.cases) for g in s.refusals]


def _same_refusals(summaries: Sequence[TargetSummary]) -> dict[str, str]:
    """target -> the first earlier target refusing the same cases for the same reasons."""
    out: dict[str, str] = {}
    for i, s in enumerate(summaries):
        for earlier in summaries[:i]:
            if s.refusals and earlier.target not in out and (
                    _refusals_key(s) == _refusals_key(earlier)):
                out[s.target] = earlier.target
                break
    return out


def _fingerprint(r: Result) -> tuple[Any, ...]:
    raster = r.raster or {}
    arrays = tuple(np.asarray(raster[k]).tobytes() for k in ("reference", "target")
                   if k in raster)
    return (r.status, r.ok, r.level, r.message, arrays,
            json.dumps(r.metrics, sort_keys=True, default=str))


def same_as(results: Sequence[Result]) -> dict[tuple[str, str], str]:
    """(case, target) -> the first target (in order) with the identical result for that case:
    same verdict, message, metrics and raster sample (target variants that compute the same,
    such as the Xylo simulators and chips). Only results that ran; the first of each kind
    is not a key."""
    first: dict[tuple[str, tuple[Any, ...]], str] = {}
    out: dict[tuple[str, str], str] = {}
    for r in results:
        if not _ran(r):
            continue
        key = (r.case, _fingerprint(r))
        if key in first:
            out[(r.case, r.target)] = first[key]
        else:
            first[key] = r.target
    return out


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


def _overall(results: Sequence[Result]) -> str:
    s = summary(results)
    return (f"{s['ok']} of {s['total']} results as expected; "
            + ", ".join(f"{k}: {v}" for k, v in s["by_status"].items() if v))


def _reason_text(group: RefusalGroup) -> str:
    return group.text + (" (numbers differ per case)" if group.varies else "")


def write_markdown(results: Sequence[Result], meta: dict[str, Any]) -> str:
    """report.md: the per-target summary with refusals grouped by reason, the legend, the
    matrix (refused cells '-') and the results not as expected / failing as expected
    (identical results of several targets once). Names from files are data: escaped,
    shortened and kept from breaking the table (``_md_code``)."""
    cases, targets, cell = _matrix(results)
    summaries = target_summaries(results)
    same = same_as(results)
    lines = ["# nrf-nir conformance report", "", _overall(results), "", "## Per target", "",
             "| target | summary |", "|---|---|"]
    lines += [f"| {_md_code(s.target, table=True)} | {s.line()} |" for s in summaries]
    if any(s.refusals for s in summaries):
        lines += ["", "### Refused, by reason", "",
                  "The target's own refusal (its check's message); a case refused for several "
                  "reasons counts under each.", ""]
        twins = _same_refusals(summaries)
        for s in summaries:
            if not s.refusals:
                continue
            head = f"- {_md_code(s.target)} refuses {_count(s.refused, 'case')}"
            if s.target in twins:
                lines.append(f"{head}: the same cases for the same reasons as "
                             f"{_md_code(twins[s.target])}")
                continue
            lines.append(head + ":")
            lines += [f"  - {len(g.cases)}: {_md_text(_reason_text(g))} — "
                      f"{_md_text(abbreviate(_short(g.cases)))}" for g in s.refusals]
    lines += ["", LEGEND, "", LEGEND_MARKS, ""]
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
            elif r.status == "unsupported" and r.ok:
                row.append("-")
            else:
                numbers = cell_numbers(r)
                mark = "" if r.ok else " **!**"
                row.append(f"{r.status}{f' {numbers}' if numbers else ''}{mark}")
        lines.append(f"| {_md_code(case, table=True)} | " + " | ".join(row) + " |")
    unexpected = [r for r in results if not r.ok]
    if unexpected:
        lines += ["", "## Not as expected", ""]
        lines += [f"- {_md_code(r.case)} on {_md_code(r.target)}: {r.status} (expected "
                  f"{r.level}): {_md_text(r.message)}" for r in unexpected]
    notes = [r for r in results if r.ok and r.status == "xfail"
             and (r.case, r.target) not in same]
    if notes:
        lines += ["", "## Expected failures", ""]
        for r in notes:
            alike = [t for t in targets if same.get((r.case, t)) == r.target]
            also = (" (identical on " + ", ".join(_md_code(t) for t in alike) + ")"
                    if alike else "")
            up = f" ({_md_text(r.upstream)})" if r.upstream else ""
            lines.append(f"- {_md_code(r.case)} on {_md_code(r.target)}{also}: "
                         f"{_md_text(r.message)}; manifest: {_md_text(r.reason)}{up}")
    return "\n".join(lines) + "\n"


_CSS = ("body{font-family:sans-serif;margin:1.5em;font-size:14px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
        "font-size:13px;vertical-align:top}td.c{color:white;text-align:center;white-space:nowrap}"
        "td.r{color:#999;background:#f7f7f7;text-align:center}"
        ".bad{outline:3px solid #ff1744}#target-summary td{font-size:14px}"
        "details li{margin:2px 0}.cases{color:#555}figure{margin:0.5em 0}"
        "img{max-width:100%}")


def _html_refusals(s: TargetSummary, twin: str | None) -> str:
    if not s.refusals:
        return ""
    esc = html.escape
    if twin:
        return (f"refused {_count(s.refused, 'case')}: the same cases for the same reasons "
                f"as {esc(twin)}")
    items = "".join(f"<li><b>{len(g.cases)}</b>: {esc(_reason_text(g))} "
                    f"<span class='cases'>({esc(abbreviate(_short(g.cases)))})</span></li>"
                    for g in s.refusals)
    return (f"<details class='refused'><summary>refused {_count(s.refused, 'case')}, "
            f"{_count(len(s.refusals), 'reason')}</summary><ul>{items}</ul></details>")


def write_html(results: Sequence[Result], meta: dict[str, Any]) -> str:
    """report.html, self-contained: the per-target summary (refusals in ``<details>`` by
    reason), the legend, the matrix, and per case the targets that ran it with a plot for
    each result that differs from the reference (identical results of several targets
    once)."""
    cases, targets, cell = _matrix(results)
    same = same_as(results)
    esc = html.escape
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
           f"<title>nrf-nir conformance report</title><style>{_CSS}</style></head><body>",
           "<h1>nrf-nir conformance report</h1>",
           f"<p id='summary'>{esc(_overall(results))}</p>",
           "<table id='target-summary'><tr><th>target</th><th>runs</th><th>within bounds</th>"
           "<th>expected failures</th><th>not as expected</th><th>refused</th></tr>"]
    summaries = target_summaries(results)
    twins = _same_refusals(summaries)
    for s in summaries:
        bad = " class='bad'" if s.not_as_expected else ""
        refusals = _html_refusals(s, twins.get(s.target))
        out.append(f"<tr><td>{esc(s.target)}</td><td>runs {s.ran} of {s.cases} cases</td>"
                   f"<td>{s.within} within bounds</td><td>{s.expected_failures}</td>"
                   f"<td{bad}>{s.not_as_expected}</td><td>{refusals}</td></tr>")
    out.append(f"</table><p id='legend'>{esc(LEGEND)}<br>{esc(LEGEND_MARKS)}</p><ul>")
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
            elif r.status == "unsupported" and r.ok:
                out.append("<td class='r'>-</td>")  # the reasons: summary, case section
            else:
                numbers = cell_numbers(r)
                label = r.status + (f" {numbers}" if numbers else "")
                twin = same.get((case, t))
                tip = f"identical to {twin}" if twin else (r.message or r.reason)
                cls = "c" + ("" if r.ok else " bad")
                out.append(f"<td class='{cls}' style='background:{COLOURS[r.status]}' "
                           f"title='{esc(tip)}'>{esc(label)}</td>")
        out.append("</tr>")
    out.append("</table><h2>Cases</h2>")
    chosen = plotted(results, same)
    for case in cases:
        out += _html_case(case, targets, cell, same, chosen)
    out.append("</body></html>")
    return "\n".join(out)


def options_text(options: dict[str, Any]) -> str:
    """``input_scale=255, vth=100``: the target options a case ran with."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in options.items())


def _html_case(case: str, targets: Sequence[str], cell: dict[tuple[str, str], Result],
               same: dict[tuple[str, str], str], chosen: set[tuple[str, str]]
               ) -> list[str]:
    """One case's section: a row per target that ran it (or whose status is not as
    expected), the targets refusing it, and the plots."""
    esc = html.escape
    out = [f"<h3 id='{esc(case)}'>{esc(case)}</h3><table><tr><th>target</th><th>status</th>"
           "<th>expected</th><th>metrics (worst spike / value output)</th><th>note</th></tr>"]
    pictures: list[str] = []
    refused: dict[str, list[str]] = {}  # reasons -> the targets refusing for them
    for t in targets:
        r = cell.get((case, t))
        if r is None:
            continue
        if r.status == "unsupported" and r.ok:
            refused.setdefault("; ".join(refusal_reasons(r)), []).append(t)
            continue
        twin = same.get((case, t))
        if twin:
            metrics, note = "", f"identical to {twin}"
        else:
            metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in _headline(r).items())
            note = r.message + (f" (manifest: {r.reason})" if r.status == "xfail" else "")
            note += f" ({r.upstream})" if r.upstream else ""
            if differs(r) and (case, t) not in chosen:
                note += (f" (no plot: at most {PLOTS_PER_TARGET} per target, the largest "
                         "differences first)")
        expected = r.level + (f" (options: {options_text(r.options)})" if r.options else "")
        out.append(f"<tr><td>{esc(t)}</td><td>{esc(r.status)}</td><td>{esc(expected)}</td>"
                   f"<td>{esc(metrics)}</td><td>{esc(note)}</td></tr>")
        if (case, t) in chosen and (png := raster_png(r)):
            twins = [x for x in targets if same.get((case, x)) == t]
            caption = t + (f" (identical: {', '.join(twins)})" if twins else "")
            data = base64.b64encode(png).decode("ascii")
            pictures.append(f"<figure><img alt='raster {esc(case)} {esc(t)}' "
                            f"src='data:image/png;base64,{data}'><figcaption>{esc(caption)}"
                            "</figcaption></figure>")
    out.append("</table>")
    if refused:
        n = sum(map(len, refused.values()))
        items = "".join(f"<li>{esc(', '.join(ts))}: {esc(reasons)}</li>"
                        for reasons, ts in refused.items())
        out.append(f"<details class='refused'><summary>refused by {_count(n, 'target')}: "
                   f"{esc(', '.join(t for ts in refused.values() for t in ts))}</summary>"
                   f"<ul>{items}</ul></details>")
    return out + pictures


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
