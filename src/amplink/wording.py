"""Counts in messages: ``counted(1, "core")`` is ``1 core``, ``counted(2, "core")`` is
``2 cores``, so that no message says "1 cores"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, in the plural (``plural``, else ``noun + "s"``) unless ``n``
    is 1 (``counted(1, "whole run")`` is ``1 whole run``)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
