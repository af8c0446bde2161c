"""Waiting in tests for a state another process or thread reaches: poll a condition
until it holds, failing with what was awaited after a timeout (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(cond: Callable[[], T], what: str = "the condition", timeout: float = 30.0) -> T:
    """Poll ``cond`` every 5 ms until it gives a true value, and return that value;
    ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.005)
    return got
