"""Limits a user can set through environment variables (sizes checked before allocating)."""

from __future__ import annotations

import os

from .errors import NIRError, shown


def env_limit(name: str, default: int) -> int:
    """The positive integer in environment variable ``name`` (``2e9`` is accepted), or
    ``default`` when it is unset or empty; anything else is a ``NIRError`` naming it."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (1 <= value < float(1 << 62)) or value != int(value):
        raise NIRError(f"must be a positive integer, got {shown(text)}", field=name)
    return int(value)
