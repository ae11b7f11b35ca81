"""Per-target expectations: what each case should achieve on each target.

A manifest is ``conformance/manifests/<target>.toml``::

    [default]
    level = "exact"                      # exact | within | xfail | unsupported

    [cases."node/LIF/exponential"]       # a case name, or a glob ("node/CubaLIF/*")
    level = "unsupported"
    reason = "Norse has no exponential integration"

    [cases."model/poker-dvs"]
    level = "within"
    exact = 0.99                         # tighter than the level's default bounds
    f1_pm3 = 0.95
    decision_agreement = 0.99
    reason = "..."

    [cases."node/IF/*"]
    level = "xfail"
    reason = "..."
    upstream = "https://github.com/.../issues/123"

    [cases."model/tts-encoder"]
    level = "within"
    options = {input_scale = 255}        # target options for this case's run

    [files]                              # user files (cases "file/..."): default exact,
    level = "within"                     # and a refusal by check() is accepted
    relative_rmse_max = 0.01

The most specific match wins (an exact name beats a glob; among globs, the longest). A case
must meet its level; doing better than an ``xfail`` (passing exactly), crashing where an
``xfail`` expects a run that misses its bounds, or running where ``unsupported`` was expected
fails loudly too, so that behaviour changes are noticed.

Bounds (``BOUNDS``): every level that runs a case has default bounds for both output kinds
(``LEVEL_BOUNDS``): spikes (``exact``, ``f1_pm3``, ``count_correlation``) and values
(``relative_rmse_max``), plus ``decision_agreement`` where the case decodes decisions. An
``xfail`` case must fall short of the ``exact`` level's bounds. A manifest entry may tighten a
default bound or add ``rmse_max`` (absolute), never loosen one: a looser number is an error
naming the file, the entry and the key. A bound of an output kind the case has none of (a
spike bound on a case with only membrane read-outs, as globs and ``[files]`` entries cover
both) does not apply; a bound an output of its kind cannot be measured by (e.g.
``decision_agreement`` on a case that decodes no decisions) is an error in the verdict.

``options``: target options the case runs with (``nrf_nir.run(..., **options)``), a table of
numbers, strings and booleans. ``load_manifest`` checks their form; ``check_options`` checks
names and values with the target's own ``check_options`` (a target without one takes none
from a manifest). Either refusal names the file, the entry and the option.
"""

from __future__ import annotations

import fnmatch
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrf_nir.errors import NIRError, shown

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
LEVELS = ("exact", "within", "xfail", "unsupported")
#: The output kinds: spike trains, and values (membrane read-outs, any non-spiking output).
SPIKES, VALUES = "spikes", "values"


@dataclass(frozen=True)
class Bound:
    """A bound a manifest key sets: ``metric`` (a key of an output's metrics) at least
    (``sense`` "min") or at most ("max") the key's number, on outputs of ``kind`` (spikes,
    values, or "any"); valid numbers lie in [``low``, ``high``]."""

    metric: str
    sense: str
    kind: str
    low: float
    high: float
    meaning: str

    def fails(self, value: Any, limit: float) -> bool:
        """Whether ``value`` misses ``limit``; None and non-finite values miss every one."""
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return True
        if not math.isfinite(value):
            return True
        return value < limit if self.sense == "min" else value > limit


#: Manifest key -> bound. One meaning per name (see ``nrf_nir.metrics``).
BOUNDS: dict[str, Bound] = {
    "exact": Bound("exact", "min", SPIKES, 0.0, 1.0,
                   "per-step exact agreement: fraction of (step, sample, neuron) entries equal"),
    "f1_pm3": Bound("f1_pm3", "min", SPIKES, 0.0, 1.0,
                    "F1 of spikes matched within +-3 steps in the same train"),
    "count_correlation": Bound("count_correlation", "min", SPIKES, -1.0, 1.0,
                               "Pearson correlation of spike counts per train"),
    "relative_rmse_max": Bound("relative_rmse", "max", VALUES, 0.0, math.inf,
                               "RMSE divided by the reference's RMS (dimensionless)"),
    "rmse_max": Bound("rmse", "max", VALUES, 0.0, math.inf,
                      "RMSE in the output's units (no level default; only tightens)"),
    "decision_agreement": Bound("decision_agreement", "min", "any", 0.0, 1.0,
                                "fraction of samples whose decoded class agrees"),
}

#: Default bounds per level (an ``xfail`` case must miss those of ``exact``). "exact": bit for
#: bit. "within": what quantized targets (int8 weights, bit-shift decays) must still reach; a
#: manifest entry tightens these where a target does better.
LEVEL_BOUNDS: dict[str, dict[str, float]] = {
    "exact": {"exact": 1.0, "f1_pm3": 1.0, "count_correlation": 1.0, "relative_rmse_max": 0.0,
              "decision_agreement": 1.0},
    "within": {"exact": 0.8, "f1_pm3": 0.5, "count_correlation": 0.5,
               "relative_rmse_max": 0.5, "decision_agreement": 0.9},
}


@dataclass(frozen=True)
class Expectation:
    level: str = "exact"
    thresholds: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    upstream: str = ""
    pattern: str = "default"
    #: A refusal by the target's check() is fine (user files: nothing promises support).
    allow_unsupported: bool = False
    #: The manifest file this expectation comes from ("" for the built-in default).
    source: str = ""
    #: Target options the case runs with (``nrf_nir.run(..., **options)``).
    options: dict[str, Any] = field(default_factory=dict)

    def bounds(self) -> dict[str, float]:
        """Every bound that applies at this level: the level's defaults, tightened by the
        manifest's own ``thresholds`` (none for ``unsupported``)."""
        if self.level == "unsupported":
            return {}
        base = LEVEL_BOUNDS["exact" if self.level == "xfail" else self.level]
        return {**base, **self.thresholds}

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
    low, high = BOUNDS[key].low, BOUNDS[key].high
    if not low <= number <= high:
        bound = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
        raise NIRError(f"must be {bound}, got {number:g}", file=where, node=pattern, field=key)
    return number


def _not_looser(level: str, thresholds: dict[str, float], pattern: str, where: str) -> None:
    """Refuse a threshold looser than the level's default (a manifest only tightens)."""
    if thresholds and level not in LEVEL_BOUNDS:
        raise NIRError(f"an {level!r} expectation takes no bounds (got "
                       f"{', '.join(sorted(thresholds))})", file=where, node=pattern)
    for key, number in thresholds.items():
        default = LEVEL_BOUNDS[level].get(key)
        if default is not None and BOUNDS[key].fails(number, default):
            word = "below" if BOUNDS[key].sense == "min" else "above"
            raise NIRError(f"{number:g} is {word} the {level!r} default {default:g}: a manifest "
                           "may tighten a bound, never loosen it", file=where, node=pattern,
                           field=key)


def _options(value: Any, pattern: str, where: str) -> dict[str, Any]:
    """An entry's ``options``: a table of option names to numbers (finite), strings or
    booleans; ``NIRError`` naming file, entry and option otherwise."""
    if not isinstance(value, dict):
        raise NIRError(f"must be a table of target options (options = {{name = value}}), got "
                       f"{type(value).__name__}", file=where, node=pattern, field="options")
    for name, option in value.items():
        key = f"options.{name}"
        if not name.isidentifier():
            raise NIRError("an option name must be an identifier", file=where, node=pattern,
                           field=key)
        if not isinstance(option, (bool, int, float, str)):
            raise NIRError(f"must be a number, string or boolean, got {type(option).__name__}",
                           file=where, node=pattern, field=key)
        if isinstance(option, float) and not math.isfinite(option):
            raise NIRError(f"must be finite, got {option}", file=where, node=pattern, field=key)
    return dict(value)


def _expectation(pattern: str, entry: Any, where: str) -> Expectation:
    """The expectation of one manifest entry; ``NIRError`` naming file, entry and key."""
    if not isinstance(entry, dict):
        raise NIRError(f"must be a table (level = ..., reason = ...), got "
                       f"{type(entry).__name__}", file=where, node=pattern)
    level = entry.get("level", "exact")
    if not isinstance(level, str) or level not in LEVELS:
        raise NIRError(f"level must be one of {', '.join(LEVELS)}, got {shown(str(level), 40)}",
                       file=where, node=pattern, field="level")
    unknown = set(entry) - {"level", "reason", "upstream", "options", *BOUNDS}
    if unknown:
        raise NIRError(f"unknown key(s) {', '.join(shown(k, 40) for k in sorted(unknown))}",
                       file=where, node=pattern)
    thresholds = {k: _threshold(k, v, pattern, where) for k, v in entry.items() if k in BOUNDS}
    for key in ("reason", "upstream"):
        if key in entry and not isinstance(entry[key], str):
            raise NIRError(f"must be a string, got {type(entry[key]).__name__}", file=where,
                           node=pattern, field=key)
    if level in ("xfail", "unsupported") and not entry.get("reason"):
        raise NIRError(f"an {level!r} expectation needs a reason", file=where, node=pattern)
    _not_looser(level, thresholds, pattern, where)
    options = _options(entry["options"], pattern, where) if "options" in entry else {}
    return Expectation(level, thresholds, entry.get("reason", ""), entry.get("upstream", ""),
                       pattern, allow_unsupported=pattern == "files", source=where,
                       options=options)


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


def check_options(manifest: Manifest,
                  checker: Callable[[Mapping[str, Any]], Any] | None) -> None:
    """Every entry's ``options`` as the target takes them: ``checker`` is the target's
    ``check_options`` (raising ``NIRError`` naming the option as field), None for a target
    that has none (then no entry may set options). ``NIRError`` naming file and entry."""
    for exp in [manifest.default, manifest.files, *manifest.entries.values()]:
        if not exp.options:
            continue
        if checker is None:
            raise NIRError(f"the {manifest.target} target takes no options from a manifest "
                           "(it has no check_options)", file=exp.source, node=exp.pattern,
                           field="options")
        try:
            checker(exp.options)
        except NIRError as exc:
            raise NIRError(exc.message, file=exp.source, node=exp.pattern,
                           field=f"options.{exc.field}" if exc.field not in (None, "options")
                           else "options") from None


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
