"""Python signal handlers held back while a program's main thread is in a critical
section (Linux runs its interrupt handlers, and a driver its ring updates, with
interrupts off; nothing preempts them).

Python runs signal handlers in the main thread, between any two bytecodes, and the
default SIGINT handler raises ``KeyboardInterrupt`` there (a SIGTERM handler may raise
``SystemExit``): in the middle of a primary that has just masked its device's event, of
a vring update before its kick, of a batch taken off a ring before its index moves, of
a GLINK intent taken and not yet written.  Each of those is a *section* entered with
``with HELD_SIGNALS:``; a signal that comes while the main thread is inside one is
recorded, and its handler runs as the outermost section ends (what it raises goes on
up from there: its traceback ends at the section's ``with``, or in the handler, never
in the delivery).  Waiting is not held: a section that has to wait (a sender for a
buffer or an intent) waits in ``with HELD_SIGNALS.let_through:``, where signals run
their handlers as usual (a section's bookkeeping around the wait, and its clean-up when
the wait ends with ``KeyboardInterrupt``, stay held).  A main thread that takes an
interrupt line while it waits (:meth:`~amplink.irq.domain.IrqDomain.take_while_waiting`)
makes only its sleep (:meth:`HeldSignals.poll`) *interruptible*: a signal that comes
then ends the sleep at once (:class:`Held`), so Ctrl-C still ends a blocked ``recv()``
at once and leaves the channel working.

How, at the cost of about two uncontended ``with lock:`` per section (two Python
calls, a thread check, a look at SIGINT's and SIGTERM's handlers): the handlers are not
swapped at every section (a ``sigaction`` each, 0.4 us per signal) but wrapped once.  The
first section the main thread enters puts a :class:`HeldHandler` in place of every
Python handler; it calls the handler it wraps unless the main thread is in a section.
From then on ``signal.signal`` installs a handler wrapped at once, and it and
``signal.getsignal`` answer with the program's own handlers, never a wrapper (so
``signal.getsignal(SIGINT) is signal.default_int_handler`` holds as before, which
``asyncio.run`` relies on; those two functions are replaced in the ``signal`` module by
ones that do this and call the originals).  A handler installed by other means (the
original ``signal.signal`` bound before, ``_signal.signal``) is wrapped as a section
begins: SIGINT's and SIGTERM's are looked at as every outermost section begins, the
others every :data:`LOOK_EVERY` sections.  A held signal runs the handler installed when it
is delivered (as a blocked signal does on Linux): ignored if that is ``SIG_IGN``, its
default action if ``SIG_DFL``.  A signal that comes again while held is held once (a
standard signal is pending or not).  In any other thread a section does nothing:
Python never runs a signal handler there.

A section's entry and exit (three per round trip of a message) and a taker's sleep
(:meth:`HeldSignals.poll`) are compiled in ``_held.c`` when it was built
(:func:`compiled_sections`; ``AMPLINK_PURE_PYTHON=1``
picks this module's own, its twin, as :mod:`amplink.virtio.rings` does):
:data:`COMPILED` says which runs.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub: see _getsignal
import functools
import importlib
import os
import select
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

_SIGNALS = tuple(int(s) for s in signal.valid_signals())
_SIGINT = int(signal.SIGINT)
_SIGTERM = int(signal.SIGTERM)
_SIG_IGN = int(signal.SIG_IGN)
LOOK_EVERY = 4096  # outermost sections between two looks at every handler (~2 us each)

PyHandler = Callable[[int, FrameType | None], Any]

# signal's own C functions: signal.getsignal/signal wrap them in enum conversions that
# cost 50 times more.
_getsignal: Callable[[int], object] = _signal.getsignal
_setsignal: Callable[[int, object], object] = _signal.signal
_get_ident = threading.get_ident


class Held(BaseException):
    """Not an error: a signal came while the taker slept (raised by a held handler
    during :meth:`HeldSignals.poll`)."""


class HeldHandler:
    """A Python signal handler as :class:`HeldSignals` wraps it: calls :attr:`wrapped`
    with the same arguments, or, while the main thread is in a section, records the
    signal for the section's end."""

    __slots__ = ("_held", "wrapped")

    def __init__(self, held: HeldSignals, wrapped: PyHandler) -> None:
        self._held = held
        self.wrapped = wrapped

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        try:
            self._held._came(signum, frame, self.wrapped)
        except BaseException as raised:  # the program's handler's (Ctrl-C): not amplink's
            _cut_delivery(raised)
            raise

    def __repr__(self) -> str:
        return f"<held {self.wrapped!r}>"


class HeldSignals:
    """Sections of the main thread in which its Python signal handlers are held (a
    reentrant context manager, one for the process: :data:`HELD_SIGNALS`); see the
    module docstring."""

    def __init__(self) -> None:
        self._main = threading.main_thread().ident
        # The main thread's nesting of sections, and the depth above which signals are
        # held (1 in let_through, else 0): ``depth > floor`` says that the main thread's
        # signals are held now, so that code that would enter a section inside one (a
        # counter bump) may skip it (from any other thread it may skip it too: a
        # section does nothing there).
        self.depth = 0
        self.floor = 0
        self.let_through = _LetThrough(self)
        self._pending: dict[int, FrameType | None] = {}  # in the order they came
        self._interruptible = False
        self._delivering = False  # _deliver runs: a signal that comes meanwhile waits
        self._sigint: object = None  # SIGINT's and SIGTERM's handlers, as last wrapped
        self._sigterm: object = None
        self._looks_in = 0  # outermost sections until the next look at all handlers
        self._hooked = False  # signal.signal and signal.getsignal replaced (see _hook)
        os.register_at_fork(after_in_child=self._forked)

    def __enter__(self) -> HeldSignals:
        if _get_ident() != self._main:
            return self
        depth = self.depth
        if depth:
            self.depth = depth + 1
            return self
        looks_in = self._looks_in - 1
        self._looks_in = looks_in
        if (
            looks_in <= 0
            or _getsignal(_SIGINT) is not self._sigint
            or _getsignal(_SIGTERM) is not self._sigterm
        ):
            self._wrap()  # (a handler that raises meanwhile raises outside the section)
        self.depth = 1
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if _get_ident() != self._main:
            return
        depth = self.depth - 1
        self.depth = depth
        if self._pending and depth == self.floor:
            try:
                self._deliver()
            except BaseException as raised:  # a held handler's (Ctrl-C): not amplink's
                _cut_delivery(raised)
                raise

    def _deliver_held(self) -> None:
        """The compiled :meth:`__exit__`'s delivery (its outermost exit with signals
        held): :meth:`_deliver`, with this module's frames cut from what a handler
        raises (the pure ``__exit__`` does it inline: a call would add its own frame)."""
        try:
            self._deliver()
        except BaseException as raised:  # a held handler's (Ctrl-C): not amplink's
            _cut_delivery(raised)
            raise

    def poll(self, poller: select.poll, timeout_ms: int) -> list[tuple[int, int]] | None:
        """``poller.poll(timeout_ms)``, a sleep that a signal may end: in the main
        thread's outermost section (or one right inside :attr:`let_through`), a signal
        that comes during it raises :class:`Held` (once).  None, without sleeping, when
        a signal is held already that the end of that section will deliver (the caller
        should not sleep).  In any other thread it is just the poll.  One call, not a
        flag set and cleared around the sleep: it is on every taker's wait."""
        if _get_ident() != self._main:
            return poller.poll(timeout_ms)
        self._interruptible = True  # before the look: a signal after it ends the sleep
        try:
            if self._pending and self.depth == self.floor + 1:
                return None
            return poller.poll(timeout_ms)
        finally:
            self._interruptible = False

    def _came(self, signum: int, frame: FrameType | None, handler: PyHandler) -> None:
        """A wrapped handler's signal (main thread)."""
        if self.depth > self.floor or self._delivering:
            self._pending.setdefault(signum, frame)  # (while delivering: delivered next)
            if self._interruptible and self.depth == self.floor + 1 and not self._delivering:
                self._interruptible = False
                raise Held
        elif self._pending:  # left by a handler that raised: they came first
            self._pending.setdefault(signum, frame)
            self._deliver()
        else:
            floor, self.floor = self.floor, 0  # (see _deliver)
            handler(signum, frame)
            self.floor = floor

    def _deliver(self) -> None:
        """Run the handlers of the held signals, in the order they came, each popped
        first: if one raises, the others wait for the next delivery.  Inside
        :attr:`let_through` the section is held again while they run, and stays so if
        one raises: the section's clean-up runs held."""
        floor, self.floor = self.floor, 0
        pending = self._pending
        self._delivering = True  # a signal that comes meanwhile is added, not delivered
        try:  # in a nested call that would pop what this one is about to pop
            while pending:
                signum = next(iter(pending))
                frame = pending.pop(signum)
                handler = _getsignal(signum)
                if isinstance(handler, HeldHandler):
                    handler.wrapped(signum, frame)
                elif callable(handler):
                    handler(signum, frame)
                elif handler != _SIG_IGN:
                    signal.raise_signal(signum)  # its default action (or a C handler's)
        finally:
            self._delivering = False
        self.floor = floor
        if pending and self.depth == floor:  # came after the last look: not held now
            self._deliver()

    def _wrap(self) -> None:
        """Wrap every Python handler not wrapped yet (main thread, outside a section)."""
        if not self._hooked:
            self._hook()
        for sig in _SIGNALS:
            handler = _getsignal(sig)
            if callable(handler) and not isinstance(handler, HeldHandler):
                _setsignal(sig, HeldHandler(self, handler))
        self._sigint = _getsignal(_SIGINT)
        self._sigterm = _getsignal(_SIGTERM)
        self._looks_in = LOOK_EVERY

    def _hook(self) -> None:
        """Replace ``signal.signal`` and ``signal.getsignal`` by functions that call
        them, wrapping what is installed and unwrapping what they answer."""
        self._hooked = True
        install = signal.signal
        look_up = signal.getsignal

        @functools.wraps(install)
        def signal_(signalnum: Any, handler: Any) -> Any:
            if callable(handler) and not isinstance(handler, HeldHandler):
                handler = HeldHandler(self, handler)
            return _unwrapped(install(signalnum, handler))

        @functools.wraps(look_up)
        def getsignal(signalnum: Any) -> Any:
            return _unwrapped(look_up(signalnum))

        signal.signal = signal_
        signal.getsignal = getsignal

    def _forked(self) -> None:
        """In a child: the forking thread is its main thread, in no section."""
        self._main = threading.get_ident()
        self.depth = 0
        self.floor = 0
        self._pending.clear()
        self._interruptible = False
        self._delivering = False


def _cut_delivery(raised: BaseException) -> None:
    """Cut this module's frames (the delivery) from the traceback of what a handler
    raised, before a bare ``raise`` (which adds none) sends it on: it then shows from
    the section's end, or where the signal came, on to the handler's own frames, and a
    Ctrl-C's traceback does not end in amplink's internals."""
    tb = raised.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    raised.with_traceback(tb)


def _unwrapped(handler: object) -> object:
    """The program's own handler, where ``handler`` may be a :class:`HeldHandler`."""
    return handler.wrapped if isinstance(handler, HeldHandler) else handler


class _LetThrough:
    """``HELD_SIGNALS.let_through``: in the outermost section of the main thread,
    signals run their handlers as usual inside it (held ones first); anywhere else
    (a section inside another, as a send from a receive callback; not in a section;
    another thread) it does nothing.  A handler that raises in it leaves it held
    again at once, so the section's ``finally`` clauses run held.  Not nested in
    itself."""

    __slots__ = ("_held",)

    def __init__(self, held: HeldSignals) -> None:
        self._held = held

    def __enter__(self) -> None:
        held = self._held
        if _get_ident() != held._main or held.depth != 1 or held.floor:
            return
        while True:
            if held._pending:
                try:
                    held._deliver()  # (what it raises goes up: not let through yet)
                except BaseException as raised:  # a held handler's (Ctrl-C)
                    _cut_delivery(raised)
                    raise
            held.floor = 1
            if not held._pending:  # none came since the look
                return
            held.floor = 0

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        held = self._held
        if _get_ident() == held._main and held.depth == 1:
            held.floor = 0


PURE_PYTHON_ENV = "AMPLINK_PURE_PYTHON"  # (amplink.virtio.rings's switch: the same floor)


def compiled_sections() -> type[HeldSignals] | None:
    """:class:`HeldSignals` with the compiled ``__enter__``, ``__exit__`` and ``poll`` of
    ``_held.c`` put first (the same answers and updates of the same fields); None if
    ``_held`` was not built."""
    try:
        _held = importlib.import_module("amplink.irq._held")
    except ImportError:  # not built (no compiler when it was installed)
        return None

    class CompiledHeldSignals(_held.Sections, HeldSignals):  # type: ignore[name-defined,misc]
        __doc__ = HeldSignals.__doc__

    return CompiledHeldSignals


_compiled = None if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0") else compiled_sections()
COMPILED = _compiled is not None  # whether HELD_SIGNALS's entry and exit are compiled
HELD_SIGNALS: HeldSignals = (_compiled or HeldSignals)()
