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


class CtrlCAsLockIsLetGo:
    """A stand-in for a lock (or condition) whose ``__exit__`` in a function called
    ``where`` trips SIGINT once :attr:`armed` (then disarms), after letting ``skip``
    such exits pass: a signal that arrives as a ``with`` block on that lock ends, the
    moment CPython would run its handler."""

    def __init__(self, inner: Any, where: str, skip: int = 0) -> None:
        self.inner, self.where, self.skip = inner, where, skip
        self.passed = 0
        self._armed = False
        self.fired = 0

    @property
    def armed(self) -> bool:
        return self._armed

    @armed.setter
    def armed(self, on: bool) -> None:
        self._armed, self.passed = on, 0

    def __enter__(self) -> Any:
        return self.inner.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        out = self.inner.__exit__(*exc)
        if self._armed and exc[0] is None and sys._getframe(1).f_code.co_name == self.where:
            self.passed += 1
            if self.passed > self.skip:
                self._armed = False
                self.fired += 1
                _thread.interrupt_main()
        return out

    def __getattr__(self, name: str) -> Any:  # acquire, release, wait_for, notify...
        return getattr(self.inner, name)
