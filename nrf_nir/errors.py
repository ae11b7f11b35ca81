"""Errors that name the file, node and field at fault."""

from __future__ import annotations


class NIRError(ValueError):
    """A user-facing error: bad file, bad graph, bad input or bad option.

    The CLI prints ``str(error)`` on one line and exits with status 2.
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
            where.append(f"file {self.file!r}")
        if self.node:
            where.append(f"node {self.node!r}")
        if self.field:
            where.append(f"field {self.field!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def with_file(self, file: str) -> NIRError:
        """Return the same error, now naming ``file``."""
        if self.file is None:
            self.file = file
            self.args = (self._render(),)
        return self


class ValidationError(NIRError):
    """The graph is malformed (types, shapes, values, structure)."""


class UnsupportedError(NIRError):
    """A target or front-end cannot express something in the graph."""
