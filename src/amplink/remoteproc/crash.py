"""Crash types, as Linux's ``enum rproc_crash_type`` numbers them and its
``rproc_crash_names`` names them (what sysfs and the crash log show, and what
debugfs ``crash`` takes)."""

from __future__ import annotations

import errno

from amplink.errors import AmplinkError

CRASH_MMUFAULT = 0
CRASH_WATCHDOG = 1
CRASH_FATAL_ERROR = 2
CRASH_NAMES = {
    CRASH_MMUFAULT: "mmufault",
    CRASH_WATCHDOG: "watchdog",
    CRASH_FATAL_ERROR: "fatal error",
}


def crash_name(kind: int) -> str:
    """The crash type's name (``mmufault``, ``watchdog``, ``fatal error``; else ``unknown``)."""
    return CRASH_NAMES.get(kind, "unknown")


def crash_words() -> dict[str, int]:
    """Each crash type by the first word of its name (``fatal`` for a fatal error): what a
    command line accepts."""
    return {name.split()[0]: kind for kind, name in CRASH_NAMES.items()}


def crash_type(word: str) -> int:
    """The crash type a word names (see :func:`crash_words`); ``EINVAL`` otherwise."""
    kinds = crash_words()
    if word not in kinds:
        raise AmplinkError(errno.EINVAL, f"no crash type {word!r} (one of {', '.join(kinds)})")
    return kinds[word]
