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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrf_nir.errors import NIRError

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


def _expectation(pattern: str, entry: dict[str, Any], where: str) -> Expectation:
    level = entry.get("level", "exact")
    if level not in LEVELS:
        raise NIRError(f"level must be one of {', '.join(LEVELS)}, got {level!r}", file=where,
                       node=pattern, field="level")
    thresholds = {k: float(v) for k, v in entry.items() if k in (*LOWER_BOUNDS, "rmse_max")}
    unknown = set(entry) - {"level", "reason", "upstream", *LOWER_BOUNDS, "rmse_max"}
    if unknown:
        raise NIRError(f"unknown key(s) {', '.join(sorted(unknown))}", file=where, node=pattern)
    if level == "within" and not thresholds:
        raise NIRError("a 'within' expectation needs at least one threshold", file=where,
                       node=pattern)
    if level in ("xfail", "unsupported") and not entry.get("reason"):
        raise NIRError(f"an {level!r} expectation needs a reason", file=where, node=pattern)
    return Expectation(level, thresholds, str(entry.get("reason", "")),
                       str(entry.get("upstream", "")), pattern,
                       allow_unsupported=pattern == "files")


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
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise NIRError(f"not valid TOML: {exc}", file=str(path)) from None
    default = _expectation("default", data.get("default", {}), str(path))
    entries = {name: _expectation(name, entry, str(path))
               for name, entry in data.get("cases", {}).items()}
    manifest = Manifest(target, default, entries)
    if "files" in data:
        manifest.files = _expectation("files", data["files"], str(path))
    return manifest
