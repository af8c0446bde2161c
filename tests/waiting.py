"""Waiting in tests for a state another process or thread reaches: poll a condition
until it holds, failing with what was awaited after a timeout (never a bare sleep)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(cond: Callable[[], T], what: str = "the condition", timeout: float = 30.0) -> T:
    """Poll ``cond`` every 5 ms until it gives a true value, and return that value;
    ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.005)
    return got


@contextlib.contextmanager
def entered_in_another_thread(cm: Callable[[], AbstractContextManager[Any]]) -> Iterator[None]:
    """Another thread enters the context ``cm()`` makes there and stays in it for the
    ``with`` body (waited for, 10 s at most), then leaves it and ends."""
    entered, release = threading.Event(), threading.Event()

    def stay() -> None:
        with cm():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=stay)
    thread.start()
    try:
        assert entered.wait(10), "the other thread did not enter"
        yield
    finally:
        release.set()
        thread.join(10)
