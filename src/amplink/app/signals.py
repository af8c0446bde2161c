"""Ctrl-C and SIGTERM for the ``amplink`` command.

Core processes run in process groups of their own, so a terminal's Ctrl-C reaches only
the host, which then stops them in order.  A command ends with exit code 128 + the
signal's number (130 for SIGINT, 143 for SIGTERM), as a shell reports a command a
signal ended.  While the host stops the board, further signals do not interrupt it:
they are noted, and a message says that it is stopping.  Once a :func:`stop_event`
has ended with a signal (the stop it asked for is done), the process ignores SIGINT
and SIGTERM until it exits: a late Ctrl-C neither interrupts its clean-up nor kills
it, so it still ends with the first signal's code.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The command was interrupted by ``signum`` (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal's number."""
        return 128 + self.signum


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """In the ``with`` body (main thread), SIGINT and SIGTERM raise :class:`Interrupted`."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    with _handlers(handler):
        yield


@contextlib.contextmanager
def shielded(what: str = "stopping the board") -> Iterator[None]:
    """In the ``with`` body, SIGINT and SIGTERM only print that ``what`` goes on."""

    def handler(signum: int, frame: FrameType | None) -> None:
        print(f"amplink: {what}, please wait", file=sys.stderr, flush=True)

    with _handlers(handler):
        yield


@contextlib.contextmanager
def stop_event() -> Iterator[StopSignal]:
    """In the ``with`` body, SIGINT and SIGTERM set the yielded event (and remember
    which signal it was)."""
    stop = StopSignal()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.signum = stop.signum or signum
        stop.set()

    with _handlers(handler, final=lambda: stop.signum != 0):
        yield stop


class StopSignal(threading.Event):
    """An event set by a signal; :attr:`signum` says which (0: set otherwise)."""

    signum = 0


_ending: list[bool] = []  # not empty once the process is on its way out


@contextlib.contextmanager
def _handlers(
    handler: signal.Handlers | object, final: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """``handler`` for the body; then the old handlers back, or, if ``final()`` says the
    process is ending (and from then on), SIGINT and SIGTERM ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may install handlers; others run as told
        return
    old = {s: signal.signal(s, handler) for s in SIGNALS}  # type: ignore[arg-type]
    try:
        yield
    finally:
        if final():
            _ending.append(True)
        for s, h in old.items():
            signal.signal(s, signal.SIG_IGN if _ending else h)
