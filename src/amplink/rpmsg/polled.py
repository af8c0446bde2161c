"""What every shared-memory backend does around its receive path, whatever its rings.

A backend's receive side runs in one *receive context* at a time (the rx lock): the
thread that handles the peer's notification, a thread polling explicitly
(:meth:`PolledLink.poll_rx`), or a thread busy-polling while it waits in
:meth:`~amplink.rpmsg.core.Endpoint.recv`.  Callbacks run there and may send.

Busy-polling follows the suppression protocol both backends share: tell the peer not
to notify (:meth:`~PolledLink.suppress_rx`), poll, then ask for notifications again and
drain once more if something slipped in between (:meth:`~PolledLink.unsuppress_rx`).
A drain is bounded (see :data:`RX_SLICE`): a peer that writes as fast as the host
reads must not keep a host thread in it, be it an interrupt thread, a ``recv()`` caller
that took the interrupt line, or a crash handler taking in what a core sent.  A drain
that stops on its budget with data left asks for the receive path to run again
(:meth:`PolledLink._rx_more`): the link's :attr:`~PolledLink.rx_again` if its owner gave
one (a core's event loop is woken), else the link's own worker thread (made when first
needed, as NAPI's softirq leaves what its budget did not cover to ``ksoftirqd``); no
notification from the peer is needed for it.
A backend whose memory the peer broke raises one of ``broken_by_peer`` from its drain;
that fails the link (its users see ``EPIPE``), never the process.  :meth:`fail` is
never called with the TX lock held, nor with the rx lock held by a drain (its
listeners take the TX lock, wake senders, remove devices): the error travels up to
where the lock is released.  A callback that finds the link broken runs it in the
receive context, as any other callback code.
"""

from __future__ import annotations

import math
import threading
import time
from abc import abstractmethod
from collections.abc import Callable
from typing import ClassVar, TypeVar

from amplink.errors import FifoError, VirtqueueError
from amplink.irq.held_signals import HELD_SIGNALS
from amplink.irq.workqueue import Work, Workqueue
from amplink.rpmsg.core import RpmsgLink
from amplink.wait import AdaptiveSpin, Wakeup

get_ident = threading.get_ident

_T = TypeVar("_T")
FIRST_WAIT_SLICE = 50e-6  # a blocked sender's first sleep, doubled up to...
MAX_WAIT_SLICE = 0.01  # ...this, between two looks when no notification woke it
QUIESCE_POLL = 0.0005  # s between two looks at a lock quiesce() waits to see free
RX_SLICE = 0.002
"""s: the longest a drain keeps dispatching before it leaves the rest to the next run
of the receive path (looked at between messages and between batches, so a callback
that runs longer still runs to its end).  NAPI's ``netdev_budget_usecs`` (2 ms at
HZ=1000): short against the timeouts users give ``recv()``, long against a message's
cost (3-4 us of CPU per side in a stream, 50-70 us in a round trip), so a stream is
cut into slices of hundreds of messages."""


def _unlist(waiting: list[int], me: int) -> bool:
    """Take ``me`` off ``waiting``; whether it was there."""
    try:
        waiting.remove(me)
    except ValueError:
        return False
    return True


class PolledLink(RpmsgLink):
    """An :class:`RpmsgLink` with a receive path that can be notified or polled."""

    broken_by_peer: ClassVar[tuple[type[Exception], ...]] = (VirtqueueError, FifoError)

    # Slots: a link has over 30 attributes with its backend's, past what CPython keeps
    # in a shared-key instance dict, and they are read on every message (the base's
    # few stay in the dict, where a backend's own may go too)
    __slots__ = (
        "_quiesced",
        "_rx_lock",
        "_rx_owed",
        "_rx_owner",
        "_rx_peek",
        "_rx_slice",
        "_rx_taker",
        "_rx_waiting",
        "_rx_work",
        "_rx_worker",
        "_rx_worker_ending",
        "_rx_worker_lock",
        "_suppress",
        "_tx_lock",
        "_tx_waiters",
        "_tx_wakeup",
        "_unsuppress",
        "_users",
        "rx_again",
        "spin",
    )

    def __init__(self, name: str, *, ns_supported: bool, spin: AdaptiveSpin | None) -> None:
        super().__init__(name, ns_supported=ns_supported)
        self.spin = spin if spin is not None else AdaptiveSpin()
        self._rx_lock = threading.Lock()
        self._tx_lock = threading.Lock()
        self._rx_owner = 0
        self._tx_waiters = 0  # senders waiting in _send_wait (counted under the TX lock)
        self._tx_wakeup: Wakeup | None = None  # what they sleep on (made by the first)
        self.fail_listeners.append(self._release_senders)
        # One entry per spinning waiter reading shared memory outside the locks (a list:
        # append and pop are atomic under the GIL, a lock would cost two atomic
        # instructions per wait); quiesce() waits until it is empty: the last user sets
        # _quiesced.
        self._users: list[int] = []
        self._quiesced: threading.Event | None = None
        # What busy_poll calls, where a backend can give its ring's own methods (one
        # call less each): rx_pending() without its failure test (a poll has just made
        # it), suppress_rx() and unsuppress_rx()
        self._rx_peek: Callable[[], bool] = self.rx_pending
        self._suppress: Callable[[], None] = self.suppress_rx
        self._unsuppress: Callable[[], bool] = self.unsuppress_rx
        # Who runs the receive path again after a drain stopped on its budget (called
        # from any thread): None, the link's own worker (self._rx_worker).
        self.rx_again: Callable[[], None] | None = None
        self._rx_slice = RX_SLICE  # the running drain's (rx lock held)
        self._rx_taker = False  # the running drain calls no callback (rx lock held)
        # A drain stopped on its budget and the receive path runs again: a notification
        # needs no drain of its own until a drain finds the ring empty (which clears
        # this before it fences and looks a last time: see _drain's unless_owed).
        self._rx_owed = False
        self._rx_worker: Workqueue | None = None
        self._rx_worker_ending: Workqueue | None = None  # for quiesce() to end
        self._rx_work = Work(self._run_again, f"{name}-rx")
        self._rx_waiting: list[int] = []  # threads waiting for the rx lock (a list: atomic)
        self._rx_worker_lock = threading.Lock()  # making it against stopping it
        self.fail_listeners.append(self._stop_rx_worker)

    @abstractmethod
    def _drain_rx(self) -> int:
        """Dispatch every message received so far (a backend may read its ring's index
        once for the whole batch; what comes later, the next poll or notification
        finds); rx lock held. Returns how many.  A backend whose peer can keep it
        reading stops once it has read its budget or after ``self._rx_slice`` s, and
        calls :meth:`_rx_more` if it left anything; so does one that stops before a
        message for an endpoint with a callback when ``self._rx_taker`` (see
        :meth:`_drain_as_taker`).  It clears ``_rx_owed`` once nothing is left and
        before its last look at the ring (or where a drain starts, if what the last
        one left is taken in first there)."""

    def _rx_more(self) -> None:
        """A drain stopped on its budget with messages left: have the receive path run
        again soon, without a notification from the peer (which may not come: it was
        told we poll, or its kick was for what was left)."""
        self._rx_owed = True
        again = self.rx_again
        if again is not None:
            again()
            return
        with self._rx_worker_lock:
            if self.failure is not None:
                return  # (_stop_rx_worker has run, or will find no worker)
            worker = self._rx_worker
            if worker is None:
                worker = self._rx_worker = Workqueue(f"{self.name}-rx")
            worker.queue_work(self._rx_work)

    def _stop_rx_worker(self, _error: OSError) -> None:
        """The link failed: its worker runs what is queued (which finds the failure)
        and ends.  From the receive context (a callback's send found the ring broken)
        it cannot be waited for, as it may wait for the rx lock: :meth:`quiesce` ends
        it then."""
        with self._rx_worker_lock:
            worker, self._rx_worker = self._rx_worker, None
        if worker is None:
            return
        if self.in_rx_context():
            self._rx_worker_ending = worker
        else:
            worker.destroy()

    @abstractmethod
    def rx_pending(self) -> bool:
        """Whether received messages are waiting (lock-free peek)."""

    @abstractmethod
    def suppress_rx(self) -> None:
        """Ask the peer not to notify us of new messages (we are polling)."""

    @abstractmethod
    def unsuppress_rx(self) -> bool:
        """Ask for notifications again; True if messages arrived meanwhile."""

    @abstractmethod
    def handle_notify(self) -> None:
        """The peer notified us: wake waiting senders and dispatch what arrived."""

    def peer_reset(self) -> bool:
        """True when the peer reset the link and a new one must be brought up (the
        virtio device role sees its driver clear ``DRIVER_OK``)."""
        return False

    def poll_rx(self) -> int:
        """Dispatch the received messages now (one bounded drain: what its budget left
        is dispatched by the next, see :meth:`_rx_more`); returns how many were
        dispatched."""
        held = HELD_SIGNALS  # see _drain (the drain's own section is this one; its
        held.__enter__()  # methods called, as send's: `with` would make two bound methods)
        try:
            return self._drain(True, RX_SLICE, False, True)
        finally:
            held.__exit__(None, None, None)

    def take_in_last(self) -> None:
        """The peer died, or is being stopped as crashed: dispatch what it had sent.  A
        drain with no time slice, so that nothing a dead peer left is cut off by a slow
        callback; still bounded by what the rings hold (a backend whose peer could keep
        it reading stops after one ring's worth), so a crashed core that keeps writing
        cannot keep the crash handler here."""
        self._drain(blocking=True, rx_slice=math.inf)

    def _drain(
        self,
        blocking: bool,
        rx_slice: float = RX_SLICE,
        unless_owed: bool = False,
        held: bool = False,
    ) -> int:
        """Take the receive context (or give up at once if it is busy and not
        ``blocking``) and drain for at most ``rx_slice`` s (:data:`RX_SLICE`); a ring
        the peer broke fails the link once the rx lock is free again, so that no
        failure listener runs under it.  ``unless_owed``: give up if a drain stopped on
        its budget and the receive path runs again anyway (a notification, or a look
        for what came unnotified, then need not wait for the rx lock, which a worker
        draining a stream in slices could take again and again before it).
        The drain is one section (:mod:`amplink.irq.held_signals`): a Ctrl-C in a main
        thread that drains waits until the batch taken off the ring is dispatched, its
        buffers or intents given back and the peer kicked, so none is lost half-way (the
        receive callbacks it runs run in it too, as in an IRQ thread).  ``held``: the
        caller is in a section already, which is then the drain's (one section per
        drain, not a section in a section)."""
        lock = self._rx_lock
        if (not blocking and lock.locked()) or (unless_owed and self._rx_owed):
            return 0
        me = get_ident()
        takers = self.takers
        if takers and me in takers:
            return self._drain_as_taker(me)  # (its signals are held: see there)
        waiting = self._rx_waiting
        try:
            if blocking and (self._rx_worker is not None or lock.locked()):
                waiting.append(me)  # in line: the worker does not take the lock first
            # Outside a section `with`, never acquire() then try: a Ctrl-C between the
            # two would leave the lock held and the link deaf; in one (``held``) no
            # signal handler runs between them, and `with` would make two bound methods.
            # (Not blocking: if another thread took it since the look, this waits for
            # that drain.)
            if held:
                lock.acquire()
                try:
                    return self._drain_locked(me, rx_slice)
                finally:
                    lock.release()
            with lock, HELD_SIGNALS:
                return self._drain_locked(me, rx_slice)
        except self.broken_by_peer as exc:
            self.fail(exc)  # type: ignore[arg-type]
            return 0
        finally:
            # A Ctrl-C before the lock was taken: the worker may have let this thread
            # go first, so the run that is owed is asked for again.
            if waiting and _unlist(waiting, me) and self._rx_owed:
                self._rx_more()

    def _drain_locked(self, me: int, rx_slice: float) -> int:
        """:meth:`_drain`'s drain, the rx lock taken, in a section."""
        waiting = self._rx_waiting
        if waiting:
            _unlist(waiting, me)
        if self.failure is not None:
            return 0
        try:
            self._rx_owner = me
            self._rx_slice = rx_slice
            self._rx_taker = False
            return self._drain_rx()
        finally:
            self._rx_owner = 0

    def _drain_as_taker(self, me: int) -> int:
        """The drain of a thread that takes the peer's notifications while it waits
        (:meth:`~amplink.rpmsg.core.RpmsgLink.take_as_taker`): it never waits for the
        rx lock (held: the worker drains after its holder), and the backend stops
        before a message for an endpoint with a callback and leaves the rest to the
        worker, so that no callback, however slow, runs in a thread that has a
        deadline.  ``acquire`` then ``try`` is safe here: a taker runs the line's
        handlers with its signals held (:class:`~amplink.irq.held_signals.HeldSignals`)."""
        lock = self._rx_lock
        if not lock.acquire(blocking=False):
            self._rx_more()
            return 0
        try:
            if self.failure is not None:
                return 0
            try:  # (the owner is set inside: the finally must undo it whatever comes)
                self._rx_owner = me
                self._rx_slice = RX_SLICE
                self._rx_taker = True
                return self._drain_rx()
            finally:
                self._rx_owner = 0
        except self.broken_by_peer as exc:
            failed = exc
        finally:
            lock.release()
        self.fail(failed)  # type: ignore[arg-type]
        return 0

    def _run_again(self) -> None:
        """The worker's run of the receive path: none if a thread waits for the rx
        lock (its drain reads on, and asks again if it too stops on its budget)."""
        if not self._rx_waiting:
            self._drain(blocking=True)

    def in_rx_context(self) -> bool:
        return self._rx_owner == get_ident()

    def sleeps(self) -> bool:
        """Spinning is off (``spin=False``, or not worthwhile here): a waiter sleeps
        at once.  (A policy that only suspends or cuts spinning for a while is not off:
        its waits must keep calling it, to learn when spinning pays again.)"""
        return not self.spin.enabled

    def busy_poll(self, ready: Callable[[], bool]) -> bool:
        if not self.spin.enabled:
            return False
        # One section (amplink.irq.held_signals), the spin too (it is bounded by its
        # budget): a Ctrl-C waits until the thread is no longer counted and the peer's
        # notifications are on again (else a blocked recv() would be deaf), and until
        # every drain in it is done.
        with HELD_SIGNALS:
            try:
                if not self._enter_memory():
                    return False
                try:
                    self._suppress()
                    peek = self._rx_peek
                    drain = self._drain

                    def poll_once() -> bool:  # (one frame per look at the ring)
                        if self.failure is not None:
                            return True  # stop spinning: the caller finds out why
                        if peek():
                            drain(False, RX_SLICE, False, True)  # (in this section)
                        return ready()

                    return self.spin.spin(poll_once)
                finally:
                    if self.failure is None and self._unsuppress():
                        self._drain(True, RX_SLICE, True, True)  # (unless owed, held)
            finally:
                self._leave_memory()

    def spin_rx(self, reset: Callable[[], bool]) -> bool:
        """A core's spin (its event loop's, the peer's notifications suppressed by the
        caller): poll the receive ring for at most the spin's budget (:attr:`spin`) and
        drain what comes at once, in one section with the spin (as :meth:`busy_poll`):
        no return to the loop, no section of its own between a message's arrival and
        its dispatch.  ``reset()`` is asked once something is there and before any
        read of it: True leaves it unread (the peer reset the link; the loop brings a
        new one up).  True if something came (dispatched, unless ``reset()`` said no,
        or the link failed), False when the spin gave up (as ``spin.spin``)."""
        peek = self._rx_peek
        drain = self._drain

        def look() -> bool:  # (one frame per look at the ring, as rx_pending's)
            if self.failure is not None:
                return True  # the caller finds out why
            if not peek():
                return False
            if not reset():
                drain(False, RX_SLICE, False, True)  # (in this section)
            return True

        with HELD_SIGNALS:
            return self.spin.spin(look)

    def _release_senders(self, _error: OSError) -> None:
        """The link failed (never called under its locks): wake the waiting senders,
        the last of which closes their wakeup as it leaves, or close it now."""
        with self._tx_lock:
            if self._tx_waiters:
                self._wake_senders()
            else:
                self._close_tx_wakeup()

    def _wake_senders(self) -> None:
        """Wake the senders waiting in :meth:`_send_wait` (they look again)."""
        if self._tx_waiters:
            wakeup = self._tx_wakeup
            if wakeup is not None:
                wakeup.set()

    def _send_wait(
        self,
        attempt: Callable[[], _T | None],
        deadline: float,
        retry: Callable[[], bool],
        timed_out: Callable[[], OSError],
    ) -> _T:
        """How a blocked sender waits (the TX lock held): call ``attempt`` until it
        gives a result (it raises when the link fails).  After a miss, ``retry`` may do
        what can help at once (ask for a notification that may have raced, read the
        peer's commands itself) and say whether to try again now; otherwise the thread
        releases the TX lock and sleeps until the receive context wakes it
        (:meth:`_wake_senders`; taking the peer's notification itself, see
        :meth:`_sleep`), for a slice that doubles from 50 us to 10 ms, so that
        a sender that is itself the receive context (whom nobody else wakes) still
        looks again.  ``timed_out()`` is raised once ``deadline``
        (``time.monotonic()``) has passed.  A sender's section
        (:mod:`amplink.irq.held_signals`) lets signals through only while it sleeps."""
        wait = FIRST_WAIT_SLICE
        retried = False
        if self.failure is not None:
            raise self.dead_error()
        wakeup = self._tx_wakeup
        if wakeup is None:
            wakeup = self._tx_wakeup = Wakeup()
        self._tx_waiters += 1
        try:
            while True:
                got = attempt()
                if got is not None:
                    return got
                if not retried and retry():
                    retried = True
                    continue
                retried = False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise timed_out()
                self._tx_lock.release()
                try:
                    with HELD_SIGNALS.let_through:  # a Ctrl-C ends the wait, not the send
                        self._sleep(wakeup, min(wait, remaining))
                finally:
                    self._tx_lock.acquire()
                wait = min(wait * 2, MAX_WAIT_SLICE)
        finally:
            self._tx_waiters -= 1
            if not self._tx_waiters and self.failure is not None:
                self._close_tx_wakeup()

    def _sleep(self, wakeup: Wakeup, timeout: float) -> None:
        """A blocked sender's sleep: on the peer's notification itself where the
        transport allows it (it then runs the receive path here, as ``recv()`` does),
        unless this thread is the receive context (whose drain it would re-enter)."""
        if (
            self.take_notifications is None
            or self._rx_owner == get_ident()
            or self.take_as_taker((wakeup.fileno(),), timeout, None) is None
        ):
            wakeup.wait(timeout)
        else:
            wakeup.clear()

    def _close_tx_wakeup(self) -> None:
        """Once the link failed and no sender waits (TX lock held); a sender that comes
        later raises at once."""
        if self._tx_wakeup is not None:
            self._tx_wakeup.close()
            self._tx_wakeup = None

    def _enter_memory(self) -> bool:
        """Count this thread as reading shared memory outside the locks (a spinning
        waiter), so that :meth:`quiesce` waits for it; False once the link has failed
        (then the memory must not be touched).  Always followed by :meth:`_leave_memory`
        in a ``finally`` whose ``try`` holds this call."""
        self._users.append(get_ident())  # first: quiesce() then waits for us, or...
        return self.failure is None  # ...we see the failure it comes after

    def _leave_memory(self) -> None:
        """Undo :meth:`_enter_memory` (also after one that failed or was cut short)."""
        users = self._users
        try:
            users.remove(get_ident())
        except ValueError:
            return  # not counted (a Ctrl-C came before the append)
        if not users and self._quiesced is not None:  # quiesce() made it before it looked
            self._quiesced.set()

    def quiesce(self, timeout: float = 5.0) -> bool:
        """After :meth:`fail`: wait until no thread touches the shared memory any more,
        so that it can be unmapped.  False if some thread did not let go in time."""
        quiesced = self._quiesced
        if quiesced is None:
            quiesced = self._quiesced = threading.Event()
        if not self._users:  # looked at after the event exists: see _leave_memory
            quiesced.set()
        deadline = time.monotonic() + timeout
        done = quiesced.wait(timeout)
        for lock in (self._rx_lock, self._tx_lock):  # whoever held them has checked the
            while lock.locked():  # failure and let go (looked at, not taken: a Ctrl-C
                if time.monotonic() >= deadline:  # cannot leave it held; and bounded)
                    done = False
                    break
                time.sleep(QUIESCE_POLL)
        ending, self._rx_worker_ending = self._rx_worker_ending, None
        if ending is not None:
            ending.destroy(max(deadline - time.monotonic(), 0.0))
        return done
