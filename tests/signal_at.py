"""A Ctrl-C at an exact point: what a SIGINT that arrives during a C call looks like to
CPython (its handler runs as the call returns, before the value is stored)."""

from __future__ import annotations

import _thread
import contextlib
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def ctrl_c_as_c_call_returns(name: str) -> Iterator[list[bool]]:
    """In the ``with`` body, the first return of a C function called ``name`` in this
    thread trips SIGINT (``_thread.interrupt_main``); the list yielded holds True once
    it did."""
    fired = [False]

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_return" and not fired[0] and getattr(arg, "__name__", "") == name:
            fired[0] = True
            _thread.interrupt_main()

    sys.setprofile(profile)
    try:
        yield fired
    finally:
        sys.setprofile(None)
