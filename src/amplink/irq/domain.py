"""An interrupt controller and the CPU that takes its interrupts, with Linux's
``request_threaded_irq`` semantics.

:class:`IrqDomain` owns lines and one *dispatcher* thread.  The dispatcher is "hard
IRQ context": it waits on every line at once, and when one fires it runs the line's
primary handlers, one after the other, and wakes the handler threads that asked for it.
Each action with a thread function gets its own thread, ``irq/<n>-<name>``, which runs
that function whenever its primary returned ``IRQ_WAKE_THREAD`` (wakes while it runs
coalesce into one more run, as in Linux).

ONESHOT: the line is masked before the primaries run and stays masked until every
ONESHOT thread that was woken has finished; on a shared line all sharers wait for it.
Without ONESHOT the line is unmasked as soon as the primaries return, so a primary
that wakes a thread must first silence its device (the i.MX MU driver clears the
event's enable bit), or the still-active level line fires again at once.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import math
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from amplink.errors import IrqError
from amplink.irq.flags import (
    IRQ_HANDLED,
    IRQ_NONE,
    IRQ_NOTCONNECTED,
    IRQ_WAKE_THREAD,
    IRQF_COND_ONESHOT,
    IRQF_COND_SUSPEND,
    IRQF_NO_AUTOEN,
    IRQF_NO_DEBUG,
    IRQF_NO_SUSPEND,
    IRQF_ONESHOT,
    IRQF_PERCPU,
    IRQF_PROBE_SHARED,
    IRQF_SHARED,
    IRQF_TRIGGER_HIGH,
    IRQF_TRIGGER_MASK,
    is_edge,
)
from amplink.irq.held_signals import HELD_SIGNALS, Held
from amplink.irq.line import _SINK, IrqLine, IrqWire, drain, new_line_fd
from amplink.irq.spurious import MAX_BOGUS_REPORTS, SpuriousPolicy
from amplink.tracing import TRACER

log = logging.getLogger(__name__)

Handler = Callable[[int, Any], int]
PR_SET_NAME = 15
_get_ident = threading.get_ident
readv = os.readv
_monotonic = time.monotonic
MAX_ONESHOT_SHARERS = 64
_VALID_RETURN = IRQ_HANDLED | IRQ_WAKE_THREAD


def _default_primary(irq: int, dev_id: Any) -> int:
    """Installed when a request has no primary: the thread does all the work."""
    return IRQ_WAKE_THREAD


@dataclass(eq=False, slots=True)
class IrqAction:
    """One handler registered on a line (Linux's ``struct irqaction``)."""

    line: IrqLine
    handler: Handler
    thread_fn: Handler | None
    flags: int
    name: str
    dev_id: Any
    thread_mask: int = 0
    thread: _IrqThread | None = None
    runthread: bool = False
    runner: int = 0  # the thread running thread_fn now (its own, or a taker)
    warned_no_thread: bool = False
    oneshot: bool = field(init=False)  # flags & IRQF_ONESHOT (read per interrupt)
    debug: bool = field(init=False)  # not flags & IRQF_NO_DEBUG: spurious accounting

    def __post_init__(self) -> None:
        self.oneshot = bool(self.flags & IRQF_ONESHOT)
        self.debug = not self.flags & IRQF_NO_DEBUG


class _IrqThread:
    """The thread of one action: runs ``thread_fn`` each time the primary wakes it.

    It sleeps on an eventfd of its own: waking it is a system call that releases the
    GIL, so the woken thread can run at once instead of waking only to wait for the
    GIL of the thread that woke it (which on a shared CPU costs two more switches).
    Wakes while it runs add up to one more run."""

    def __init__(self, domain: IrqDomain, action: IrqAction) -> None:
        self.domain = domain
        self.action = action
        self.name = f"irq/{action.line.irq}-{action.name}"
        self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC)  # closed by the thread as it ends
        self._fd_lock = threading.Lock()  # no write to the fd once it is closed
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.native_id: int | None = None
        self._started = threading.Event()

    def start(self) -> None:
        with HELD_SIGNALS:  # started whole, or (before) not at all: stop() joins it
            self._thread.start()
            self._started.wait()

    def wake(self) -> None:
        with self._fd_lock:  # never into a number the thread closed (and another reused)
            if self._wake_fd >= 0:
                os.eventfd_write(self._wake_fd, 1)

    def stop(self, timeout: float) -> None:
        self._stopping = True
        self.wake()
        if threading.current_thread() is self._thread or self._thread.ident is None:
            return  # (never started: its start failed)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("%s did not finish its handler within %.1fs", self.name, timeout)

    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        _set_os_thread_name(self.name)
        self.domain._apply_rt_priority(self.name)
        self._started.set()
        action = self.action
        line = action.line
        wake_fd = self._wake_fd
        try:
            while True:
                os.eventfd_read(wake_fd)
                if self._stopping:
                    break
                with line.lock:  # a taker may be running fn: one run at a time
                    line.wait_for(lambda: not action.runner, None)
                    action.runthread = False
                    action.runner = _get_ident()
                ret: int = IRQ_NONE
                try:
                    ret = _call_thread_fn(action)
                finally:
                    self.domain._thread_done(action, ret)
        finally:
            with self._fd_lock:
                os.close(wake_fd)
                self._wake_fd = -1
        with line.lock:  # a wake that will never run must not leave the line busy
            if action.runthread:
                action.runthread = False
                line.threads_active -= 1
                line.threads_oneshot &= ~action.thread_mask
                line.cond.notify_all()


def _call_thread_fn(action: IrqAction) -> int:
    """Run ``action``'s thread function once (its ``runner`` set); what it returned."""
    fn = action.thread_fn
    assert fn is not None
    line = action.line
    t0 = time.perf_counter_ns() if TRACER.enabled else 0
    ret: int
    try:
        ret = fn(line.irq, action.dev_id)
    except Exception:
        log.exception("irq/%d-%s: thread handler raised", line.irq, action.name)
        ret = IRQ_NONE
    if t0:
        TRACER.span("irq", "thread", t0, irq=line.irq, action=action.name, ret=ret)
    return ret


def _set_os_thread_name(name: str) -> None:
    """Show the Linux name (``irq/5-foo``) in ``ps -L`` / ``top -H`` too."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


class IrqDomain:
    """An interrupt controller with its lines, handler threads and dispatcher."""

    def __init__(
        self,
        name: str,
        *,
        spurious: SpuriousPolicy | None = None,
        rt_priority: int | None = None,
        thread_stop_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.spurious = spurious if spurious is not None else SpuriousPolicy()
        self.rt_priority = rt_priority
        self.thread_stop_timeout = thread_stop_timeout
        self._lines: dict[int, IrqLine] = {}
        self._by_fd: dict[int, IrqLine] = {}
        self._lock = threading.Lock()
        self._ctl = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ep = select.epoll()  # what the dispatcher waits on: _ctl and every line
        self._ep.register(self._ctl, select.EPOLLIN)
        self._hardirq: set[int] = set()  # threads running primaries (dispatcher, takers)
        self._takers = 0  # threads in take_while_waiting
        self._taken: set[int] = set()  # the lines they take
        self._takers_poll = threading.local()  # each taker's poll object, kept
        self._takers_gone = threading.Condition(self._lock)
        self._release = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # set at close
        self._replay: set[IrqLine] = set()
        self._closing = False
        self._dispatcher: threading.Thread | None = None
        self._bogus_reports = 0
        self._rt_warned = False

    def __repr__(self) -> str:
        return f"<IrqDomain {self.name} lines={sorted(self._lines)}>"

    # -- lines -----------------------------------------------------------------------
    def add_line(
        self,
        irq: int,
        *,
        trigger: int = IRQF_TRIGGER_HIGH,
        fd: int | None = None,
        counter: bool = True,
    ) -> IrqLine:
        """Create input ``irq``.  Without ``fd`` a new eventfd is made (and owned);
        with one (e.g. inherited from the peer process) it is used and closed at
        :meth:`close`.  ``counter=False`` is for fds that become readable once and
        stay so (a pidfd); such lines must be edge-triggered."""
        if irq in self._lines or irq == IRQ_NOTCONNECTED:
            raise IrqError(errno.EEXIST, f"{self.name}: interrupt line {irq} already exists")
        if not counter and not is_edge(trigger):
            raise IrqError(errno.EINVAL, "a line fed by a non-counter fd must be edge-triggered")
        line = IrqLine(irq, new_line_fd() if fd is None else fd, trigger=trigger, counter=counter)
        with self._lock:
            self._lines[irq] = line
            self._by_fd[line.fd] = line
            self._ep.register(line.fd, select.EPOLLIN)
        return line

    def line(self, irq: int) -> IrqLine:
        """The line numbered ``irq``; ``EINVAL`` if there is none."""
        if irq == IRQ_NOTCONNECTED:
            raise IrqError(errno.ENOTCONN, f"interrupt {irq:#x} is not connected")
        try:
            return self._lines[irq]
        except KeyError:
            raise IrqError(errno.EINVAL, f"{self.name} has no interrupt line {irq}") from None

    @property
    def lines(self) -> list[IrqLine]:
        """Every line of the domain."""
        return list(self._lines.values())

    # -- taking interrupts -----------------------------------------------------------
    def start(self) -> None:
        """Start taking interrupts (the dispatcher thread)."""
        if self._dispatcher is not None:
            return
        t = threading.Thread(target=self._dispatch_loop, name=f"irq-{self.name}", daemon=True)
        with HELD_SIGNALS:  # a Ctrl-C meanwhile must not lose the thread close() joins
            t.start()
            self._dispatcher = t

    def in_hardirq(self) -> bool:
        """Whether the caller is running a primary handler of this domain."""
        return threading.get_ident() in self._hardirq

    def _poke(self) -> None:
        os.eventfd_write(self._ctl, 1)

    def _repoll(self, line: IrqLine) -> None:
        """Make the dispatcher look at ``line`` again (after an unmask or enable)."""
        with self._lock:
            self._replay.add(line)
        self._poke()

    def _dispatch_loop(self) -> None:
        _set_os_thread_name(f"irq-{self.name}")
        ep = self._ep
        ctl = self._ctl
        by_fd = self._by_fd
        # line -> known to be still active (True), pulsed (False), or looked at again
        # after an unmask or enable (None: no pulse, so an inactive level is no
        # interrupt at all)
        pending: dict[IrqLine, bool | None] = {}
        while True:
            for fd, _ev in ep.poll(0 if pending else -1):
                line = by_fd.get(fd)
                if line is not None:
                    if line.counter:
                        drain(fd)
                    else:  # readable once and for ever: take it as one edge
                        with self._lock:
                            del by_fd[fd]
                            ep.unregister(fd)
                    pending.setdefault(line, False)
                elif fd == ctl:
                    drain(ctl)
                    if self._closing:
                        return
                    with self._lock:
                        replay, self._replay = self._replay, set()
                        for line in replay:
                            self._watch(line)
                    for line in replay:
                        if line.edge:  # an edge is replayed only if one was missed
                            with line.lock:
                                missed, line.replay = line.replay, False
                            if not missed:
                                continue
                        pending.setdefault(line, None)
            for line, active in list(pending.items()):
                if self._handle(line, active):
                    pending[line] = True
                else:
                    del pending[line]

    def _handle(
        self,
        line: IrqLine,
        active: bool | None = False,
        wake: Callable[[IrqAction], None] | None = None,
    ) -> bool:
        """Take one interrupt on ``line``; True if the line is still active (a level
        line whose device still asserts it: it must be taken again).  ``active``: the
        caller knows it is (it was still active after the last one); False: the line
        was pulsed; None: no pulse, only a look (after an unmask or enable).  ``wake`` gets
        each action whose primary returned ``IRQ_WAKE_THREAD`` (default: its thread is
        woken).  A line another thread is taking now is left to it: that thread looks at
        the level again when its primaries return (Linux's ``irq_may_run``)."""
        with line.lock:
            actions = line.actions
            if line.depth or line.masked or not actions:
                if line.edge:
                    line.replay = True
                return False
            if line.in_progress:
                return False
            if not active and not line.edge and not line.active():
                # A pulse with nothing pending: an interrupt no handler claims (a
                # peer that pulses the line in a loop is a storm, as a stuck device is).
                policy = self.spurious
                if (
                    active is False
                    and actions[0].debug
                    and policy.enabled
                    and line.spurious.note(IRQ_NONE, line.threads_handled, policy)
                ):
                    self._disable_stuck(line)
                return False
            oneshot = actions[0].oneshot  # (a shared line's sharers agree on it)
            if oneshot:
                line.masked = True
            line.in_progress = True
            line.count += 1
            if wake is not None:  # only a taker passes its own
                line.taken += 1
        if wake is None:
            wake = self._wake_thread
        ret = 0
        stuck = False
        irq = line.irq
        me = _get_ident()
        hardirq = self._hardirq
        hardirq.add(me)
        try:
            for action in actions:
                try:
                    r = action.handler(irq, action.dev_id)
                except Exception:
                    log.exception("irq %d (%s): primary handler raised", irq, action.name)
                    r = IRQ_NONE
                if r & IRQ_WAKE_THREAD:
                    wake(action)
                ret |= r
            if TRACER.enabled:
                TRACER.event("irq", "handled", irq=irq, ret=ret)
            if actions[0].debug and self.spurious.enabled:
                sp = line.spurious
                if ret & ~_VALID_RETURN:
                    self._report_bogus(line, ret)
                elif sp.unhandled or ret == IRQ_NONE:
                    stuck = sp.note(ret, line.threads_handled, self.spurious)
                elif ret == IRQ_WAKE_THREAD:  # (note()'s common cases, without its call)
                    if not sp.deferred:
                        sp.deferred = True
                    else:
                        handled = line.threads_handled
                        if handled == sp.threads_handled_last:
                            stuck = sp.note(ret, handled, self.spurious)
                        else:
                            sp.threads_handled_last = handled
                elif ret & IRQ_WAKE_THREAD:
                    sp.deferred = False
        finally:  # also when a taker's thread gets a KeyboardInterrupt meanwhile
            hardirq.discard(me)
            with line.lock:
                line.in_progress = False
                if stuck:
                    self._disable_stuck(line)
                if oneshot and line.masked and line.threads_oneshot == 0:
                    line.masked = False
                if line.waiters:
                    line.cond.notify_all()
                done = line.edge or line.depth or line.masked
        return not done and line.active()

    # -- a thread that takes a line's interrupts while it waits ----------------------
    def take_while_waiting(
        self,
        irq: int,
        fds: Sequence[int],
        timeout: float | None,
        ready: Callable[[], bool] | None = None,
        start: Callable[[], object] | None = None,
    ) -> bool | None:
        """Sleep until one of ``fds`` is readable or ``ready()`` holds after an
        interrupt (True), or until ``timeout`` s pass (False),
        taking level-triggered line ``irq``'s interrupts in the calling thread
        meanwhile: its primaries, and the thread functions they wake, run here instead
        of in the dispatcher and the action threads (a thread function its own thread
        is running already is left to that thread, which runs it again).

        A waiter whose wake-up comes through this line (rpmsg's ``recv()``, a core's
        event loop) so wakes on the peer's interrupt itself, as a Pipe's reader wakes
        on the write, instead of through three threads (see docs/architecture.md,
        "Waiting").  The dispatcher stops watching the line meanwhile, and watches it
        again as this returns: an interrupt between two waits goes through the
        dispatcher (keeping the line from it a while longer needs a timer per wait,
        which costs more than such interrupts: see docs/architecture.md).  One
        thread takes a line at a time: None means the line is taken by another, is
        edge-triggered, or the domain is closing, and the caller waits the ordinary
        way.  Running from a line's thread function must not free or synchronize
        that line (``EDEADLK``, as from the action's own thread).

        ``start``, if given, is called once the line is taken, before the sleep: what
        makes the peer answer (a send) goes out after this thread took the line, so the
        answer cannot reach the dispatcher first (prepare to wait, then ask).  It is not
        called when the result is None."""
        line = self._lines.get(irq)
        if line is None or line.edge or irq in self._taken:
            return None
        held = HELD_SIGNALS  # a main thread's signal handlers wait for a safe point
        with held:
            with self._lock:
                if self._closing or irq in self._taken or line.fd < 0 or line.spurious_disabled:
                    return None
                self._taken.add(irq)
                self._takers += 1
                self._ep.modify(line.fd, 0)
            # ``quiet``: the last interrupt taken found the line inactive (or left it to
            # the thread taking it then), so the level is not looked at again as the
            # line is given back: whatever changed it since pulsed the line after its
            # last drain, and that pulse is still on the descriptor for the dispatcher.
            quiet = False
            try:
                if start is not None:
                    start()
                cached = self._takers_poll.__dict__.get("cached")
                if cached is not None and cached[0] == irq and cached[1] == fds:
                    poller = cached[2]
                else:  # a thread waits on the same descriptors again and again: keep it
                    poller = select.poll()
                    poller.register(line.fd, select.POLLIN)
                    poller.register(self._release, select.POLLIN)
                    for fd in fds:
                        poller.register(fd, select.POLLIN)
                    self._takers_poll.cached = (irq, tuple(fds), poller)
                deadline = None if timeout is None else _monotonic() + timeout
                active = False  # the line was still active after the last interrupt
                line_fd = line.fd
                release = self._release
                woken: list[IrqAction] = []  # the actions an interrupt's primaries woke
                wake = woken.append
                while True:
                    if active:
                        wait_ms = 0
                    elif deadline is None:
                        wait_ms = -1
                    else:
                        wait_ms = max(0, math.ceil((deadline - _monotonic()) * 1000))
                    woke = pulsed = False
                    events = held.poll(poller, wait_ms)  # only the sleep may be interrupted
                    if events is None:
                        return True  # a signal is held: its handler runs as held exits
                    for fd, _ev in events:
                        if fd == line_fd:
                            try:  # noqa: SIM105 (drain(fd) without its frame; no suppress())
                                readv(fd, _SINK)
                            except BlockingIOError:
                                pass
                            pulsed = True
                        elif fd == release:
                            return False
                        else:
                            woke = True
                    if pulsed or active:
                        quiet = False  # (until it returns: a handler may raise)
                        # One interrupt, the thread functions it woke run here.  A
                        # KeyboardInterrupt in this thread hands what was still to run
                        # to the action threads before it goes on up.
                        try:
                            active = self._handle(line, active and not pulsed, wake)
                            while woken:
                                self._run_here(woken.pop(0))
                        except BaseException:
                            for action in woken:
                                self._wake_thread(action)
                            raise
                        quiet = not active
                        if self._closing:
                            return False  # close() may release the line's descriptor now
                        if ready is not None and ready():
                            return True
                    if woke:
                        return True
                    if deadline is not None and _monotonic() >= deadline:
                        return False  # also while a flood of interrupts keeps coming
            except Held:  # a signal came while it slept: its handler runs as held exits
                return True
            finally:
                # The dispatcher watches the line again.  If the device still asserts it
                # (the waiter was satisfied before the line was quiet: its descriptor is
                # drained, so no pulse will come), it is pulsed again, so that the
                # dispatcher (or the next taker) looks; this is done while still counted
                # as a taker, so that close() cannot release the descriptor meanwhile.
                if not quiet and not self._closing and line.active():
                    IrqWire(line.fd).pulse()
                with self._lock:
                    self._taken.discard(irq)
                    self._takers -= 1
                    if self._closing:
                        if not self._takers:
                            self._takers_gone.notify_all()
                    elif not line.spurious_disabled:  # (_watch(line), without its frame)
                        self._ep.modify(line.fd, select.EPOLLIN)

    def _run_here(self, action: IrqAction) -> None:
        """Run a woken action's thread function in this thread, as its thread would
        (or wake that thread if it is running the function now, or there is none):
        ``_call_thread_fn`` and ``_thread_done`` without their frames."""
        line = action.line
        with line.lock:
            if action.thread is None or action.runner or action.runthread:
                busy = True
            else:
                busy = False
                action.runner = _get_ident()
                line.threads_oneshot |= action.thread_mask
                line.threads_active += 1
        if busy:
            self._wake_thread(action)
            return
        ret: int = IRQ_NONE
        done = False
        try:
            if TRACER.enabled:
                ret = _call_thread_fn(action)
            else:
                try:
                    ret = action.thread_fn(line.irq, action.dev_id)  # type: ignore[misc]
                except Exception:
                    log.exception("irq/%d-%s: thread handler raised", line.irq, action.name)
                    ret = IRQ_NONE
            done = True
        finally:
            unmasked = False
            with line.lock:
                action.runner = 0
                if ret == IRQ_HANDLED:
                    line.threads_handled += 1
                if action.thread_mask and not action.runthread:
                    line.threads_oneshot &= ~action.thread_mask
                    if line.threads_oneshot == 0 and line.masked and not line.in_progress:
                        line.masked = False
                        unmasked = line.depth == 0
                line.threads_active -= 1
                if line.waiters:
                    line.cond.notify_all()
            if unmasked:
                self._repoll(line)
            if not done:  # interrupted (KeyboardInterrupt): its thread runs it again
                self._wake_thread(action)

    def _wake_thread(self, action: IrqAction) -> None:
        thread = action.thread
        if thread is None:
            if not action.warned_no_thread:
                action.warned_no_thread = True
                log.warning(
                    "irq %d (%s): primary returned IRQ_WAKE_THREAD but there is no "
                    "thread function; nothing will run",
                    action.line.irq,
                    action.name,
                )
            return
        line = action.line
        with line.lock:
            if action.runthread:
                return
            action.runthread = True
            line.threads_oneshot |= action.thread_mask
            line.threads_active += 1
        thread.wake()

    def _thread_done(self, action: IrqAction, ret: int) -> None:
        line = action.line
        unmasked = False
        with line.lock:
            action.runner = 0
            if ret == IRQ_HANDLED:
                line.threads_handled += 1
            if action.thread_mask and not action.runthread:
                line.threads_oneshot &= ~action.thread_mask
                if line.threads_oneshot == 0 and line.masked and not line.in_progress:
                    line.masked = False
                    unmasked = line.depth == 0
            line.threads_active -= 1
            if line.waiters:
                line.cond.notify_all()
        if unmasked:
            self._repoll(line)

    def _report_bogus(self, line: IrqLine, ret: int) -> None:
        if self._bogus_reports >= MAX_BOGUS_REPORTS:
            return
        self._bogus_reports += 1
        log.error(
            "irq %d: bogus return value %#x from its handlers (%s); valid values are "
            "IRQ_NONE, IRQ_HANDLED and IRQ_WAKE_THREAD",
            line.irq,
            ret,
            ", ".join(a.name for a in line.actions),
        )

    def _watch(self, line: IrqLine) -> None:
        """Whether the dispatcher's epoll watches ``line`` (``_lock`` held): not while
        a taker has it, nor while the spurious detector keeps it disabled (a storm
        must not wake anyone, or it goes on costing the CPU it was disabled for)."""
        if not line.counter or line.fd < 0:
            return  # (a once-readable line is unregistered after its one edge)
        off = line.spurious_disabled or line.irq in self._taken
        self._ep.modify(line.fd, 0 if off else select.EPOLLIN)

    def _disable_stuck(self, line: IrqLine) -> None:
        line.spurious_disabled = True
        line.depth += 1
        with self._lock:  # (the only lock order: a line's lock, then the domain's)
            if not self._closing:
                self._watch(line)
        policy = self.spurious
        log.error(
            "%s: irq %d: nobody cared: more than %d of the last %d interrupts were not "
            "handled; disabling irq %d. Handlers: %s. A device keeps this level-triggered "
            "line active and no handler clears it (fix the driver that should acknowledge "
            "it), or the peer pulses the line with no event pending (restart the remote "
            "processor; its line is enabled again when a handler is requested anew).",
            self.name,
            line.irq,
            policy.threshold,
            policy.window,
            line.irq,
            ", ".join(a.name for a in line.actions) or "none",
        )

    # -- requesting and freeing ------------------------------------------------------
    def request_threaded_irq(
        self,
        irq: int,
        handler: Handler | None,
        thread_fn: Handler | None,
        flags: int = 0,
        name: str = "",
        dev_id: Any = None,
    ) -> IrqAction:
        """Install a primary handler and/or a thread function on line ``irq``.

        Refusals raise :class:`IrqError` with Linux's errno: ``EINVAL`` (no such line,
        no handler at all, SHARED without ``dev_id``, a thread-only request without
        ONESHOT), ``EBUSY`` (the line's other users disagree on SHARED, trigger type,
        ONESHOT or PERCPU, or too many ONESHOT sharers), ``ENOTCONN``.
        """
        line = self.line(irq)
        if flags & IRQF_SHARED and dev_id is None:
            raise IrqError(errno.EINVAL, f"irq {irq}: a SHARED request needs a dev_id")
        if flags & IRQF_SHARED and flags & IRQF_NO_AUTOEN:
            raise IrqError(errno.EINVAL, f"irq {irq}: SHARED and NO_AUTOEN exclude each other")
        if flags & IRQF_COND_SUSPEND and (not flags & IRQF_SHARED or flags & IRQF_NO_SUSPEND):
            raise IrqError(errno.EINVAL, f"irq {irq}: COND_SUSPEND needs SHARED, not NO_SUSPEND")
        if handler is None and thread_fn is None:
            raise IrqError(errno.EINVAL, f"irq {irq}: neither a handler nor a thread function")
        if handler is None:
            if not flags & IRQF_ONESHOT:
                log.error(
                    "irq %d (%s): threaded irq requested with handler=None and without "
                    "IRQF_ONESHOT: a level line would fire again as soon as it is unmasked",
                    irq,
                    name,
                )
                raise IrqError(
                    errno.EINVAL,
                    f"irq {irq}: a request without a primary handler needs IRQF_ONESHOT",
                )
            handler = _default_primary
        trigger = flags & IRQF_TRIGGER_MASK or line.trigger
        with line.lock:
            if line.actions:
                old = line.actions[0]
                if old.flags & IRQF_ONESHOT and flags & IRQF_COND_ONESHOT:
                    flags |= IRQF_ONESHOT
                mismatch = (
                    not (old.flags & flags & IRQF_SHARED)
                    or trigger != line.trigger
                    or (old.flags ^ flags) & (IRQF_ONESHOT | IRQF_PERCPU)
                )
                if mismatch:
                    if not flags & IRQF_PROBE_SHARED:
                        log.error(
                            "flags mismatch irq %d. %08x (%s) vs. %08x (%s)",
                            irq,
                            flags,
                            name,
                            old.flags,
                            old.name,
                        )
                    raise IrqError(
                        errno.EBUSY,
                        f"irq {irq} is in use by {old.name!r} with incompatible flags "
                        f"({old.flags:#x} vs {flags:#x}); sharers must all be SHARED and "
                        "agree on trigger type and ONESHOT",
                    )
            mask = 0
            if flags & IRQF_ONESHOT:
                used = 0
                for a in line.actions:
                    used |= a.thread_mask
                if used == (1 << MAX_ONESHOT_SHARERS) - 1:
                    raise IrqError(errno.EBUSY, f"irq {irq}: too many ONESHOT sharers")
                mask = ~used & (used + 1)  # the lowest free bit
            action = IrqAction(line, handler, thread_fn, flags, name, dev_id, thread_mask=mask)
        if thread_fn is not None:
            action.thread = _IrqThread(self, action)
            action.thread.start()
        with line.lock:
            first = not line.actions
            line.actions = (*line.actions, action)
            line.trigger = trigger
            line.spurious.reset()
            if first:
                line.masked = False
                line.depth = 1 if flags & IRQF_NO_AUTOEN else 0
                line.spurious_disabled = False
            elif line.spurious_disabled:
                line.spurious_disabled = False
                line.depth -= 1
        self._repoll(line)
        return action

    def request_irq(
        self, irq: int, handler: Handler, flags: int = 0, name: str = "", dev_id: Any = None
    ) -> IrqAction:
        """A request without a thread (it adopts a sharer's ONESHOT, as in Linux)."""
        return self.request_threaded_irq(
            irq, handler, None, flags | IRQF_COND_ONESHOT, name, dev_id
        )

    def free_irq(self, irq: int, dev_id: Any) -> str | None:
        """Remove the action of ``dev_id`` from ``irq``, wait for its handlers to finish
        and stop its thread.  Returns the action's name (None if there was none)."""
        line = self.line(irq)
        self._refuse_in_irq(line, "free_irq")
        with line.lock:
            action = next((a for a in line.actions if a.dev_id is dev_id), None)
            if action is None:
                log.warning("trying to free already-free irq %d (dev_id %r)", irq, dev_id)
                return None
            line.actions = tuple(a for a in line.actions if a is not action)
            if not line.actions:
                line.spurious.reset()
            line.wait_for(lambda: not line.in_progress, None)
            if not line.wait_for(lambda: not action.runner, self.thread_stop_timeout):
                log.error(
                    "irq %d (%s): its thread function did not finish within %.1fs",
                    irq,
                    action.name,
                    self.thread_stop_timeout,
                )
        if action.thread is not None:
            action.thread.stop(self.thread_stop_timeout)
        return action.name

    def _refuse_in_irq(self, line: IrqLine, what: str) -> None:
        me = threading.get_ident()
        if self.in_hardirq() or any(
            a.runner == me or (a.thread is not None and a.thread.is_current()) for a in line.actions
        ):
            raise IrqError(
                errno.EDEADLK,
                f"{what}({line.irq}) called from that interrupt's own handler would wait "
                "for itself; call it from process context",
            )

    def synchronize_irq(self, irq: int, timeout: float | None = None) -> bool:
        """Wait until no primary or thread of ``irq`` is running; False on timeout."""
        line = self.line(irq)
        self._refuse_in_irq(line, "synchronize_irq")
        with line.lock:
            return line.wait_for(lambda: not line.in_progress and line.threads_active == 0, timeout)

    # -- enable, disable, mask -------------------------------------------------------
    def disable_irq_nosync(self, irq: int) -> None:
        """Stop delivering ``irq`` (nests); handlers already running may still run."""
        line = self.line(irq)
        with line.lock:
            line.depth += 1

    def disable_irq(self, irq: int) -> None:
        """Stop delivering ``irq`` and wait for its running handlers to finish."""
        self.disable_irq_nosync(irq)
        self.synchronize_irq(irq)

    def enable_irq(self, irq: int) -> None:
        """Undo one disable; the line is delivered again when the count reaches zero."""
        line = self.line(irq)
        with line.lock:
            if line.depth == 0:
                log.warning("unbalanced enable for irq %d", irq)
                return
            line.depth -= 1
            if line.depth == 0:
                line.spurious_disabled = False
        self._repoll(line)

    def mask_irq(self, irq: int) -> None:
        """Mask at the controller (what a ONESHOT flow does around the thread)."""
        line = self.line(irq)
        with line.lock:
            line.masked = True

    def unmask_irq(self, irq: int) -> None:
        """Unmask line ``irq`` at the controller (after a ONESHOT thread ran)."""
        line = self.line(irq)
        with line.lock:
            line.masked = False
        self._repoll(line)

    # -- RT priority and teardown ----------------------------------------------------
    def _apply_rt_priority(self, thread_name: str) -> None:
        if self.rt_priority is None:
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.rt_priority))
        except OSError as exc:
            if not self._rt_warned:
                self._rt_warned = True
                log.warning(
                    "%s: cannot run irq threads SCHED_FIFO priority %d (%s); they run "
                    "SCHED_OTHER (needs CAP_SYS_NICE or an RLIMIT_RTPRIO)",
                    self.name,
                    self.rt_priority,
                    exc.strerror or exc,
                )

    def close(self) -> None:
        """Free every action, stop every thread and close the lines. Idempotent."""
        if self._ctl < 0:
            return
        for line in list(self._lines.values()):
            for action in line.actions:
                self.free_irq(line.irq, action.dev_id)
        with self._lock:
            self._closing = True
            os.eventfd_write(self._release, 1)  # takers let go of their lines
            if not self._takers_gone.wait_for(lambda: not self._takers, self.thread_stop_timeout):
                log.error(
                    "%s: a thread taking interrupts did not finish its handler within %.1fs",
                    self.name,
                    self.thread_stop_timeout,
                )
        self._poke()
        if self._dispatcher is not None and self._dispatcher is not threading.current_thread():
            self._dispatcher.join(self.thread_stop_timeout)
        for line in self._lines.values():
            line.close()
        self._lines.clear()
        self._by_fd.clear()
        self._ep.close()
        os.close(self._ctl)
        self._ctl = -1
        os.close(self._release)
