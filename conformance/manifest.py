"""Per-target expectations: what each case should achieve on each target.

A manifest is ``conformance/manifests/<target>.toml``::

    [default]
    level = "exact"                      # exact | within | xfail | unsupported

    [cases."node/LIF/exponential"]       # a case name, or a glob ("node/CubaLIF/*")
    level = "unsupported"
    reason = "Norse has no exponential integration"

    [cases."model/poker-dvs"]
    level = "within"
    exact = 0.99                         # minimum per-step exact agreement
    f1_pm3 = 0.95                        # minimum +/-3-step F1
    decision_agreement = 0.99
    reason = "..."

    [cases."node/IF/*"]
    level = "xfail"
    reason = "..."
    upstream = "https://github.com/.../issues/123"

    [files]                              # user files (cases "file/..."): default exact,
    level = "within"                     # and a refusal by check() is accepted
    rmse_max = 1e-4

The most specific match wins (an exact name beats a glob; among globs, the longest). A case
must meet its level; doing better than an ``xfail`` (passing exactly) or running where
``unsupported`` was expected fails loudly too, so that behaviour changes are noticed.
"""

from __future__ import annotations

import fnmatch
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrf_nir.errors import NIRError, shown

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
LEVELS = ("exact", "within", "xfail", "unsupported")
#: Metrics a "within" expectation may bound from below (rmse_max bounds from above).
LOWER_BOUNDS = ("exact", "f1_pm3", "count_correlation", "decision_agreement")


@dataclass(frozen=True)
class Expectation:
    level: str = "exact"
    thresholds: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    upstream: str = ""
    pattern: str = "default"
    #: A refusal by the target's check() is fine (user files: nothing promises support).
    allow_unsupported: bool = False


#: Metrics that are fractions in [0, 1]; count_correlation is in [-1, 1]; rmse_max >= 0.
FRACTIONS = ("exact", "f1_pm3", "decision_agreement")
#: Largest manifest file read, in bytes.
MAX_MANIFEST_BYTES = 1 << 20


def _threshold(key: str, value: Any, pattern: str, where: str) -> float:
    """One threshold, checked: a finite number within the metric's range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NIRError(f"must be a number, got {type(value).__name__} {shown(str(value), 40)}",
                       file=where, node=pattern, field=key)
    number = float(value)
    if not math.isfinite(number):
        raise NIRError(f"must be finite, got {number}", file=where, node=pattern, field=key)
    low, high = ((0.0, 1.0) if key in FRACTIONS else (-1.0, 1.0) if key == "count_correlation"
                 else (0.0, math.inf))
    if not low <= number <= high:
        bound = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
        raise NIRError(f"must be {bound}, got {number:g}", file=where, node=pattern, field=key)
    return number


def _expectation(pattern: str, entry: Any, where: str) -> Expectation:
    """The expectation of one manifest entry; ``NIRError`` naming file, entry and key."""
    if not isinstance(entry, dict):
        raise NIRError(f"must be a table (level = ..., reason = ...), got "
                       f"{type(entry).__name__}", file=where, node=pattern)
    level = entry.get("level", "exact")
    if not isinstance(level, str) or level not in LEVELS:
        raise NIRError(f"level must be one of {', '.join(LEVELS)}, got {shown(str(level), 40)}",
                       file=where, node=pattern, field="level")
    unknown = set(entry) - {"level", "reason", "upstream", *LOWER_BOUNDS, "rmse_max"}
    if unknown:
        raise NIRError(f"unknown key(s) {', '.join(shown(k, 40) for k in sorted(unknown))}",
                       file=where, node=pattern)
    thresholds = {k: _threshold(k, v, pattern, where) for k, v in entry.items()
                  if k in (*LOWER_BOUNDS, "rmse_max")}
    for key in ("reason", "upstream"):
        if key in entry and not isinstance(entry[key], str):
            raise NIRError(f"must be a string, got {type(entry[key]).__name__}", file=where,
                           node=pattern, field=key)
    if level == "within" and not thresholds:
        raise NIRError("a 'within' expectation needs at least one threshold", file=where,
                       node=pattern)
    if level in ("xfail", "unsupported") and not entry.get("reason"):
        raise NIRError(f"an {level!r} expectation needs a reason", file=where, node=pattern)
    return Expectation(level, thresholds, entry.get("reason", ""), entry.get("upstream", ""),
                       pattern, allow_unsupported=pattern == "files")


@dataclass
class Manifest:
    target: str
    default: Expectation
    entries: dict[str, Expectation]
    files: Expectation = field(default_factory=lambda: Expectation(
        pattern="files", allow_unsupported=True))

    def expect(self, case: str) -> Expectation:
        if case in self.entries:
            return self.entries[case]
        globs = [p for p in self.entries if any(c in p for c in "*?[")
                 and fnmatch.fnmatchcase(case, p)]
        if globs:
            return self.entries[max(globs, key=len)]
        if case.startswith("file/"):
            return self.files
        return self.default


def load_manifest(target: str, directory: Path = MANIFEST_DIR) -> Manifest:
    """The manifest of ``target`` (everything ``exact`` when it has none)."""
    path = directory / f"{target}.toml"
    if not path.exists():
        return Manifest(target, Expectation(), {})
    where = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise NIRError(f"cannot read the manifest ({exc.strerror})", file=where) from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise NIRError(f"larger than {MAX_MANIFEST_BYTES} bytes: not a manifest", file=where)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NIRError(f"not UTF-8 text (byte {exc.start})", file=where) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NIRError(f"not valid TOML: {exc}", file=where) from None
    unknown = set(data) - {"default", "cases", "files"}
    if unknown:
        raise NIRError(f"unknown table(s) {', '.join(shown(k, 40) for k in sorted(unknown))} "
                       "(expected default, cases, files)", file=where)
    cases = data.get("cases", {})
    if not isinstance(cases, dict):
        raise NIRError(f"must be a table of case names, got {type(cases).__name__}", file=where,
                       node="cases")
    default = _expectation("default", data.get("default", {}), where)
    entries = {name: _expectation(name, entry, where) for name, entry in cases.items()}
    manifest = Manifest(target, default, entries)
    if "files" in data:
        manifest.files = _expectation("files", data["files"], where)
    return manifest
