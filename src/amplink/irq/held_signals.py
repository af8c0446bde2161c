"""Python signal handlers held back while a program's main thread runs interrupt
handlers (Linux runs its handlers with interrupts off; nothing preempts them).

Python runs signal handlers in the main thread, between any two bytecodes, and the
default SIGINT handler raises ``KeyboardInterrupt`` there: in the middle of a primary
that has just masked its device's event, of the domain's bookkeeping, of a vring drain
that took a buffer off the ring.  A main thread that takes a line while it waits
(:meth:`~amplink.irq.domain.IrqDomain.take_while_waiting`) therefore holds every Python
handler back while it handles interrupts, and lets them interrupt only its sleep: a
signal that comes while it sleeps ends the sleep at once (:class:`Held`), one that comes
while it handles an interrupt is held until the handling is over; both run, with their
original handlers, once the line is given back (so Ctrl-C still ends a blocked
``recv()`` at once, and leaves the channel working).  In any other thread this does
nothing: Python never runs a signal handler there.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub: see _getsignal
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, cast

_SIGNALS = tuple(int(s) for s in signal.valid_signals())

PyHandler = Callable[[int, FrameType | None], Any]

# signal's own C functions: signal.getsignal/signal wrap them in enum conversions that
# cost 50 times more, on every recv() that sleeps.
_getsignal: Callable[[int], object] = _signal.getsignal
_setsignal: Callable[[int, object], object] = _signal.signal


class _PythonHandlers:
    """``now()``: ``(signum, handler)`` for every signal that has a Python handler now
    (main thread only).  Reading all handlers in one C-level pass and comparing them
    with the last pass costs a third of a Python loop over them (~1.6 us, ~4.2 us)."""

    def __init__(self) -> None:
        self._handlers: tuple[object, ...] = ()
        self._callables: tuple[tuple[int, PyHandler], ...] = ()

    def now(self) -> tuple[tuple[int, PyHandler], ...]:
        handlers = tuple(map(_getsignal, _SIGNALS))
        if handlers != self._handlers:
            self._handlers = handlers
            pairs = zip(_SIGNALS, handlers, strict=True)
            self._callables = tuple((s, cast(PyHandler, h)) for s, h in pairs if callable(h))
        return self._callables


_python_handlers = _PythonHandlers().now


class Held(BaseException):
    """Not an error: a signal came while the taker slept (raised by a held handler
    while :attr:`HeldSignals.interruptible` is set)."""


class HeldSignals:
    """A context: while it is entered (in the main thread), every signal with a Python
    handler is recorded instead of handled; on exit the original handlers are back
    (except where the code it ran installed another meanwhile: that one stays) and run
    for what was recorded, in order (what they raise goes on up).  One use each."""

    def __init__(self) -> None:
        self.interruptible = False  # set around the sleep: a signal then raises Held
        self._saved: dict[int, PyHandler] = {}
        self._pending: list[tuple[int, FrameType | None]] = []
        self._holding = False

    def __enter__(self) -> HeldSignals:
        if threading.get_ident() != threading.main_thread().ident:
            return self
        self._holding = True
        for sig, handler in _python_handlers():
            self._saved[sig] = handler  # first: a restore must find it
            _setsignal(sig, self._hold)
        return self

    @property
    def pending(self) -> bool:
        """Whether a signal is held (the caller should not go to sleep)."""
        return bool(self._pending)

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        if not self._holding:  # left installed by an exit cut short: act as the original
            self._saved[signum](signum, frame)
            return
        self._pending.append((signum, frame))
        if self.interruptible:
            self.interruptible = False
            raise Held

    def __exit__(self, *exc: object) -> None:
        if not self._holding:
            return
        self._holding = False  # from here a held handler forwards to its original
        hold = self._hold
        for sig, handler in self._saved.items():
            if _getsignal(sig) == hold:  # not replaced meanwhile (by a handler it ran)
                _setsignal(sig, handler)
        pending, self._pending = self._pending, []
        for signum, frame in pending:
            self._saved[signum](signum, frame)
