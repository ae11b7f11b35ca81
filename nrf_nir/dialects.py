"""Foreign NIR dialects: conventions of other producers, normalised to nrf-nir's semantics.

NIR files written by snnTorch, Rockpool, Norse or Sinabs follow their producer's conventions
(e.g. snnTorch writes ``r = tau/dt`` for a hard-coded dt of 1e-4, Norse writes tau as
``dt*tau_inv``, Sinabs counts time in steps and fires several spikes per step).
Each dialect is a framework-free module of the core (``nrf_nir.dialect_<name>``: numpy and nir
only, so that loading a file imports no backend framework) and registers here by module path.

``normalize(graph, "auto")`` applies a dialect only on evidence in the file (a structural
fingerprint that only that producer writes; see docs/dialects.md); otherwise the file reads
as plain NIR and one :class:`ConventionsWarning` says which conventions were assumed, and
which producers could have written it when its evidence fits several (or fits one producer
but also a plain file). A
dialect is named, with options, as ``NAME[:key=value,...]`` (e.g.
``snntorch:reset=zero,delay=off``). The result lists every change made, field by field.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

import nir
import numpy as np

from .errors import NIRError, ValidationError, shown
from .graph import walk

#: Node metadata keys a dialect writes on a node it created: the dotted name of the node of
#: the file it was made from, and what made it (e.g. "snntorch dialect").
MADE_FROM = "made_from"
MADE_BY = "made_by"


class ConventionsWarning(UserWarning):
    """What a file was read as: a recognised producer's conventions, or plain NIR's."""


class Dialect(Protocol):
    name: str
    #: option key -> allowed values (an empty tuple: any positive number of seconds)
    options: dict[str, tuple[str, ...]]

    def detect(self, graph: nir.NIRGraph) -> str | None:
        """A one-line reason when ``graph`` carries this producer's fingerprint, else None."""
        ...

    def normalize(self, graph: nir.NIRGraph) -> tuple[nir.NIRGraph, list[str]]:
        """The graph in nrf-nir's conventions, and notes on each convention applied."""
        ...

    def configure(self, options: dict[str, str], dt: float | None) -> Dialect:
        """This dialect with ``options`` (checked by :func:`parse`) and the run's ``dt``
        (seconds, None: not given)."""
        ...

    # Optional: ``lookalike(graph) -> tuple[tuple[str, ...], str] | None``: when ``graph`` is
    # written as this producer writes but carries nothing only it writes (``detect`` is None),
    # the dialects that could read it and why the file does not decide; "auto" then names
    # them in its one warning line (:func:`plain_conventions`).


#: dialect name -> "module:attribute" of the Dialect object (tried in this order by "auto").
_DIALECTS: dict[str, str] = {
    "snntorch": "nrf_nir.dialect_snntorch:DIALECT",
    "rockpool": "nrf_nir.dialect_rockpool:DIALECT",
    "norse": "nrf_nir.dialect_norse:DIALECT",
    "sinabs": "nrf_nir.dialect_sinabs:DIALECT",
}
#: The names ``--dialect`` takes besides the registered dialects.
SPECIAL = ("auto", "none")


def register(name: str, location: str) -> None:
    _DIALECTS[name] = location


def registered() -> list[str]:
    return list(_DIALECTS)


def get(name: str) -> Dialect:
    if name not in _DIALECTS:
        raise NIRError(f"unknown dialect {shown(name)}; valid: "
                       f"{', '.join([*SPECIAL, *_DIALECTS])}", field="dialect")
    module_name, _, attr = _DIALECTS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NIRError(f"dialect {name!r} is not available: {exc}", field="dialect") from None
    dialect: Dialect = getattr(module, attr)
    return dialect


def describe_options(dialect: Dialect) -> str:
    """``key=a|b, key=SECONDS`` for a message, or "no options"."""
    if not dialect.options:
        return "no options"
    return ", ".join(f"{k}={'|'.join(v) if v else 'SECONDS'}" for k, v in dialect.options.items())


def parse(spec: str) -> tuple[str, dict[str, str]]:
    """``NAME[:key=value,...]`` as (name, options); unknown names, keys or values are one-line
    :class:`NIRError` s (field ``dialect``) naming the valid ones."""
    name, _, rest = str(spec).strip().partition(":")
    name = name.strip()
    if name in SPECIAL:
        if rest.strip():
            raise NIRError(f"{name!r} takes no options", field="dialect")
        return name, {}
    dialect = get(name)
    options: dict[str, str] = {}
    for item in (part.strip() for part in rest.split(",")):
        if not item:
            continue
        key, eq, value = (s.strip() for s in item.partition("="))
        if key not in dialect.options:
            raise NIRError(f"unknown option {shown(key)} for the {name} dialect; valid: "
                           f"{describe_options(dialect)}", field="dialect")
        allowed = dialect.options[key]
        if not eq or (allowed and value not in allowed):
            raise NIRError(f"option {key} of the {name} dialect must be one of "
                           f"{', '.join(allowed)}; got {shown(value)}" if allowed else
                           f"option {key} of the {name} dialect needs a value", field="dialect")
        if not allowed:
            try:
                seconds = float(value)
            except ValueError:
                seconds = float("nan")
            if not 0 < seconds < float("inf"):
                raise NIRError(f"option {key} of the {name} dialect must be a number of seconds "
                               f"> 0; got {shown(value)}", field="dialect")
        options[key] = value
    return name, options


@dataclass(frozen=True)
class Change:
    """One change a dialect (or ``dt``) made to the file as written.

    node: dotted node name (None: the graph itself: its metadata or edges); field: the
    field, ``metadata.KEY``, ``node`` (added or removed) or ``type``; before/after: the values
    as text (arrays summarised: one value, or shape and range).
    """

    node: str | None
    field: str
    before: str
    after: str

    def __str__(self) -> str:
        where = f"{self.node}.{self.field}" if self.node else self.field
        return f"{where}: {self.before} -> {self.after}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Normalized:
    """A graph read with a dialect: the graph, the dialect applied (None: plain NIR or
    nrf-nir's own), why it was applied, the notes on what it assumed, and every change."""

    graph: nir.NIRGraph
    dialect: str | None
    notes: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    reason: str | None = None


def normalize(graph: nir.NIRGraph, dialect: str = "auto", *, dt: float | None = None
              ) -> Normalized:
    """Apply a producer's conventions, then ``dt``.

    dialect: "auto" (apply a dialect only when the file carries its fingerprint; files with
    nrf-nir metadata are left alone; a file with neither, nor any of nrf-nir's semantics keys
    (``dt``, ``reset``, ...), reads as plain NIR with one :class:`ConventionsWarning` saying
    what was assumed), "none" (as written), or
    ``NAME[:key=value,...]``. dt: seconds; replaces the graph's metadata ``dt`` (and is the
    time step a dialect assumes where the file states none, e.g. Norse's ``to_nir``).
    """
    name, options = parse(dialect)
    result = _normalize(graph, name, options, dt)
    if dt is not None:
        from .semantics import read_semantics

        fixed = result.graph
        if fixed is graph:
            fixed = _copy_top(graph)
        before, assumed = _stated(graph), _stated(fixed)
        fixed.metadata["dt"] = float(dt)
        read_semantics(fixed)  # a bad dt is an error here, naming the field
        result.changes = [c for c in result.changes if c.field != "metadata.dt"]
        if before != float(dt):
            why = "dt given" if assumed in (None, before, float(dt)) else \
                f"dt given, instead of the dialect's {assumed:g}"
            result.changes.append(Change(None, "metadata.dt", "absent" if before is None
                                         else f"{before:g}", f"{float(dt):g} ({why})"))
        result.graph = fixed
    return result


def _stated(graph: nir.NIRGraph) -> float | None:
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    try:
        return float(meta["dt"]) if "dt" in meta else None
    except (TypeError, ValueError):
        return None


def _copy_top(graph: nir.NIRGraph) -> nir.NIRGraph:
    """A new top-level graph sharing the nodes, with its own metadata dict."""
    new = nir.NIRGraph(nodes=dict(graph.nodes), edges=list(graph.edges), type_check=False)
    new.metadata = dict(graph.metadata) if isinstance(graph.metadata, dict) else {}
    return new


def _normalize(graph: nir.NIRGraph, name: str, options: dict[str, str], dt: float | None
               ) -> Normalized:
    if name == "none":
        return Normalized(graph, None)
    if name != "auto":
        chosen = get(name).configure(options, dt)
        reason = "named by the caller"
        fixed, notes = _rewrite(chosen, graph, reason)
        for note in notes:
            warnings.warn(f"{name} dialect ({reason}): {note}", ConventionsWarning,
                          stacklevel=3)
        return Normalized(fixed, name, notes, diff(graph, fixed, name), reason)
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    if "semantics_version" in meta:  # written by nrf-nir: already canonical
        return Normalized(graph, None)
    found: list[tuple[str, Dialect, str]] = []  # (name, dialect, evidence)
    lookalikes: list[tuple[tuple[str, ...], str]] = []
    for candidate_name in _DIALECTS:
        try:
            candidate = get(candidate_name)
        except NIRError:
            continue
        evidence = candidate.detect(graph)
        if evidence:
            found.append((candidate_name, candidate, evidence))
        elif (lookalike := getattr(candidate, "lookalike", None)) is not None:
            if (fits := lookalike(graph)) is not None:
                lookalikes.append(fits)
    if len(found) == 1:
        candidate_name, candidate, evidence = found[0]
        candidate = candidate.configure({}, dt)
        fixed, notes = _rewrite(candidate, graph, f"recognised: {evidence}")
        for note in notes:
            warnings.warn(f"{candidate_name} dialect ({evidence}): {note}",
                          ConventionsWarning, stacklevel=3)
        return Normalized(fixed, candidate_name, [f"recognised {candidate_name}: "
                                                  f"{evidence}", *notes],
                          diff(graph, fixed, candidate_name), evidence)
    from .semantics import CHOICES

    if not found and any(key in meta for key in ("dt", *CHOICES)):  # nrf-nir's keys
        return Normalized(graph, None)
    if found:  # the evidence of several producers: none is picked
        could_be = (tuple(name for name, _, _ in found), "it carries the fingerprints of "
                    + " and ".join(f"{name} ({evidence})" for name, _, evidence in found))
    elif lookalikes:
        names = tuple(dict.fromkeys(n for names, _ in lookalikes for n in names))
        could_be = (names, "; ".join(why for _, why in lookalikes))
    else:
        could_be = None
    line = plain_conventions(graph, dt, could_be)
    warnings.warn(line, ConventionsWarning, stacklevel=3)
    return Normalized(graph, None, [line])


def plain_conventions(graph: nir.NIRGraph, dt: float | None = None,
                      could_be: tuple[tuple[str, ...], str] | None = None) -> str:
    """The one line saying what a file with no producer's fingerprint is read as.

    could_be: the dialects whose producers could have written the file although its evidence
    does not single one out, and why (None: no producer's writing fits it)."""
    from .semantics import read_semantics

    try:
        sem = read_semantics(graph).with_dt(dt)
    except NIRError as exc:
        return f"read as plain NIR, but its metadata is unreadable: {exc}"
    step = "not stated (pass --dt)" if sem.dt is None else f"{sem.dt:g} s"
    read = (f"read as plain NIR with reset {sem.reset!r}, integration {sem.integration!r}, "
            f"threshold {sem.threshold!r}, initial state {sem.initial_state!r}, dt {step}")
    if could_be is None:
        return (f"no nrf-nir metadata and no producer's fingerprint ({', '.join(_DIALECTS)}): "
                f"{read}; --dialect NAME applies a producer's conventions")
    names, why = could_be
    choose = " or ".join(f"--dialect {name}" for name in names)
    return (f"no nrf-nir metadata, and the evidence does not single out a producer: {why}; "
            f"{read}; {choose} applies "
            + ("that producer's conventions" if len(names) == 1 else
               "one producer's conventions"))


def _rewrite(dialect: Dialect, graph: nir.NIRGraph, reason: str
             ) -> tuple[nir.NIRGraph, list[str]]:
    """``dialect.normalize(graph)``, refusing values that are invalid as written and a
    rescaling whose results are not finite or cannot run at the dt it assumes (float64)."""
    from .semantics import read_semantics
    from .validate import check_values

    check_values(graph)  # errors name the values as written
    with np.errstate(all="ignore"):  # an overflow is refused below, with its node and field
        fixed, notes = dialect.normalize(graph)
    try:
        check_values(fixed, read_semantics(fixed))
    except NIRError as exc:
        raise ValidationError(
            f"as rescaled by the {dialect.name} dialect ({reason}), "
            f"{exc.message}; --dialect none reads the file as written", node=exc.node,
            field=exc.field) from None
    return fixed, notes


# ---------------------------------------------------------------- what a dialect changed

def _show(value: Any) -> str:
    """A field's value for a change line: one number, or shape and range."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        value = next(iter(value.values()), None) if value else None
        return "none" if value is None else f"shape {_show_list(value)}"
    if isinstance(value, str):
        return repr(value)
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return repr(value)[:60]
    if arr.size == 0:
        return f"empty {list(arr.shape)}"
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if lo == hi or np.isnan(lo):
        one = f"{float(arr.reshape(-1)[0]):.6g}"
        return one if arr.ndim == 0 else f"{one} (shape {list(arr.shape)})"
    return f"[{lo:.6g} .. {hi:.6g}] (shape {list(arr.shape)})"


def _show_list(value: Any) -> str:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return str(np.asarray(value).astype(np.int64).reshape(-1).tolist())
    except (TypeError, ValueError):
        return repr(value)[:60]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        a1 = next(iter(a.values()), None) if isinstance(a, dict) and a else a
        b1 = next(iter(b.values()), None) if isinstance(b, dict) and b else b
        return _same(a1, b1)
    if a is None or b is None:
        return a is None and b is None
    try:
        x = np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a)
        y = np.asarray(b.detach().cpu().numpy() if hasattr(b, "detach") else b)
        return x.shape == y.shape and bool(np.array_equal(x, y, equal_nan=x.dtype.kind == "f"
                                                          and y.dtype.kind == "f"))
    except (TypeError, ValueError):
        return bool(a == b)


def _fields(node: nir.NIRNode) -> list[str]:
    if not dataclasses.is_dataclass(node):
        return []
    return [f.name for f in dataclasses.fields(node) if f.name != "metadata"]


def diff(before: nir.NIRGraph, after: nir.NIRGraph, made_by: str) -> list[Change]:
    """Every difference between a file as written and as a dialect rewrote it: node fields,
    node types, nodes added (with the node they were made from) or removed, edges and graph
    metadata."""
    changes: list[Change] = []
    old, new = dict(walk(before)), dict(walk(after))
    for name, node in old.items():
        if name not in new:
            changes.append(Change(name, "node", type(node).__name__, "removed"))
            continue
        other = new[name]
        if isinstance(node, nir.NIRGraph) or isinstance(other, nir.NIRGraph):
            if type(node) is not type(other):
                changes.append(Change(name, "type", type(node).__name__,
                                      type(other).__name__))
            continue
        if type(node) is not type(other):
            changes.append(Change(name, "type", type(node).__name__, type(other).__name__))
        for key in dict.fromkeys([*_fields(node), *_fields(other)]):
            a, b = getattr(node, key, None), getattr(other, key, None)
            if not _same(a, b):
                changes.append(Change(name, key, _show(a), _show(b)))
    for name, node in new.items():
        if name not in old:
            origin = origin_of(node)
            changes.append(Change(name, "node", "absent", type(node).__name__
                                  + (f" ({origin})" if origin else f" (made by the "
                                                                   f"{made_by} dialect)")))
    graphs = [("", before, after)] + [(n, g, new[n]) for n, g in old.items()
                                      if isinstance(g, nir.NIRGraph)
                                      and isinstance(new.get(n), nir.NIRGraph)]
    for name, g_old, g_new in graphs:
        e_old = {(str(a), str(b)) for a, b in g_old.edges}
        e_new = {(str(a), str(b)) for a, b in g_new.edges}
        if e_old != e_new:
            removed = ", ".join(f"{a}->{b}" for a, b in sorted(e_old - e_new)) or "none"
            added = ", ".join(f"{a}->{b}" for a, b in sorted(e_new - e_old)) or "none"
            changes.append(Change(name or None, "edges", f"removed {removed}",
                                  f"added {added}"))
    m_old = before.metadata if isinstance(before.metadata, dict) else {}
    m_new = after.metadata if isinstance(after.metadata, dict) else {}
    for key in dict.fromkeys([*m_old, *m_new]):
        a, b = m_old.get(key), m_new.get(key)
        if not _same(a, b):
            changes.append(Change(None, f"metadata.{key}", "absent" if key not in m_old
                                  else _show(a), "absent" if key not in m_new else _show(b)))
    return changes


def origin_of(node: Any) -> str | None:
    """"made from 'X' by the Y" for a node a dialect or pass created (its metadata says so),
    else None."""
    meta = getattr(node, "metadata", None)
    if not isinstance(meta, dict) or MADE_FROM not in meta:
        return None
    by = meta.get(MADE_BY) or "nrf-nir"
    return f"made from {shown(str(meta[MADE_FROM]))} by the {by}"
