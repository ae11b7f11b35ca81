"""Errors that name the file, node and field at fault.

Names come from files and options, so they are data: when an error is rendered, control
characters (C0, DEL, C1, ANSI escape sequences, bidi overrides) are escaped as ``\\x1b`` etc.
and long names are shortened in the middle (``shown``), so one error stays one harmless line.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Longest name (in rendered characters) an error message shows; longer ones keep both ends.
NAME_LIMIT = 120
#: The same for file paths, which are longer by nature.
PATH_LIMIT = 240
#: Longest message text an error shows (after escaping); longer ones keep both ends.
MESSAGE_LIMIT = 1000


def _escape_char(char: str, quote: str = "'") -> str:
    """One character of a name: itself when printable, else its Python escape."""
    if char == quote or char == "\\":
        return "\\" + char
    if char.isprintable():
        return char
    return char.encode("unicode_escape", "backslashreplace").decode("ascii")


def escape(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\n``, ``\\u202e``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def shown(name: object, limit: int = NAME_LIMIT, *, quote: bool = True) -> str:
    """A name as a message shows it: quoted, escaped, at most ``limit`` characters between
    the quotes (the middle replaced by ``...``). quote=False: without the quotes."""
    text = name if isinstance(name, str) else str(name)
    cut = len(text) > 2 * limit  # only the ends can be shown: escape just those
    mark = "'" if quote else ""
    pieces = [_escape_char(c, mark) for c in (text[:limit] + text[-limit:] if cut else text)]
    if cut or sum(map(len, pieces)) > limit:
        budget = (limit - 3) // 2
        head: list[str] = []
        tail: list[str] = []
        for source, kept in ((pieces, head), (pieces[::-1], tail)):
            used = 0
            for piece in source:
                if used + len(piece) > budget:
                    break
                kept.append(piece)
                used += len(piece)
        return mark + "".join(head) + "..." + "".join(reversed(tail)) + mark
    return mark + "".join(pieces) + mark


def brief(values: object, most: int = 8) -> str:
    """A value from a file for a message: a list of at most ``most`` numbers, else its shape
    and first numbers (an array of millions of values must not become the message)."""
    import numpy as np

    arr = np.asarray(values)
    if arr.size <= most:
        return str(arr.tolist())
    head = ", ".join(str(v) for v in arr.reshape(-1)[:most].tolist())
    return f"an array of shape {list(arr.shape)} ({head}, ...)"


def listed(names: Iterable[object], most: int = 8) -> str:
    """Names for a message: escaped and shortened (``shown`` without quotes), at most ``most``
    of them, then how many more."""
    items = list(names)
    text = ", ".join(shown(n, quote=False) for n in items[:most])
    return text + (f" and {len(items) - most:,} more" if len(items) > most else "")


class NIRError(ValueError):
    """A user-facing error: bad file, bad graph, bad input or bad option.

    The CLI prints ``str(error)`` on one line and exits with status 2. File, node and field
    names are shown escaped and shortened (``shown``); non-printable characters in the message
    are escaped (``escape``), so nothing from a file reaches the terminal raw.
    """

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        field: str | None = None,
        file: str | None = None,
    ) -> None:
        self.message = message
        self.node = node
        self.field = field
        self.file = file
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(f"file {shown(self.file, PATH_LIMIT)}")
        if self.node:
            where.append(f"node {shown(self.node)}")
        if self.field:
            where.append(f"field {shown(self.field)}")
        prefix = ", ".join(where)
        message = escape(str(self.message))
        if len(message) > MESSAGE_LIMIT:  # a value from a file, shown whole: keep the ends
            cut = len(message) - MESSAGE_LIMIT
            half = MESSAGE_LIMIT // 2
            message = f"{message[:half]} ...({cut:,} characters)... {message[-half:]}"
        return f"{prefix}: {message}" if prefix else message

    def with_file(self, file: str) -> NIRError:
        """Return the same error, now naming ``file``."""
        if self.file is None:
            self.file = file
            self.args = (self._render(),)
        return self

    def with_prefix(self, text: str) -> NIRError:
        """Return the same error, its message starting with ``text`` (once)."""
        if not str(self.message).startswith(text):
            self.message = f"{text}{self.message}"
            self.args = (self._render(),)
        return self


class ValidationError(NIRError):
    """The graph is malformed (types, shapes, values, structure)."""


class UnsupportedError(NIRError):
    """A target or front-end cannot express something in the graph."""
