"""Adaptive spin-then-block waiting.

Waking a blocked process on another CPU costs ~25 us each way; polling shared memory
costs well under a microsecond.  So a waiter first spins on the ring for a bounded time
and only blocks when that fails.  The bound is a few wake-up costs (100 us): if the
event comes within it we saved a wake-up, if not we wasted at most that much CPU,
which is the classic competitive bound for spin-then-block.

Spinning only pays while the spinner and its peer each have a CPU: a spinner holds
its CPU, and the peer that is to write what it polls for may need that very CPU.
Four mechanisms protect against that:

* placement: :func:`spin_worthwhile` says no when we and the peer can only run on one
  and the same CPU, and spinning is then off;
* contention: a spinner looks at the clock every few polls; a gap much longer than
  those polls take means the scheduler gave its CPU to someone else meanwhile (a CPU
  hog, the peer, another engineer's build).  The spin stops at once and spinning is
  *suspended* for a number of waits that doubles with every spin that is preempted
  again (up to :data:`MAX_SUSPEND` waits), so that on a busy machine the waiter
  blocks, and the peer's notification wakes it with the priority the scheduler gives
  a task that slept, instead of waiting for the next scheduler tick.  A spin never
  calls ``sched_yield()``: that hands the CPU to a CPU-bound neighbour for the rest of
  its time slice (a whole tick, 4 ms at HZ=250), with notifications suppressed, so
  nothing would wake the spinner before (see docs/architecture.md, "Waiting");
* a starved peer: a spinner that is never preempted may still hold the CPU its peer
  waits for (the scheduler put both on one CPU, CPU hogs on the others).  After a
  miss (once per miss, never per poll) the spinner looks where the peer's thread is
  (:func:`peer_waits_for_cpu`, the ``peer`` given to :class:`AdaptiveSpin`): runnable
  and last on our CPU means it waited for the CPU we spun on, and that miss counts
  as a preemption;
* adaptation: over each window of waits, if almost no spin saw its event (the peer is
  idle, slow, or shares our CPU after all), the budget drops to a quarter, down to zero.
  At zero, one wait in ``probe_every`` still spins with the full budget, and a probe
  that succeeds restores the full budget at once.

The budget deliberately does *not* shrink after a single miss: when one side stops
spinning, the other side's waits get longer, which would make it stop too, and both
would settle in the slow, blocking equilibrium.  For the same reason a miss followed
by a long wait (the next spin starts more than :data:`IDLE_NS` later) is not counted:
the peer was idle, not slow, and an idle stretch (a core that waits while another
boots, a watchdog tick) must not leave both sides blocking when traffic resumes.  Such
waits cost one budget of spinning each, at most 100 us in 10 ms.

Where no descriptor can announce that a wait is over (a kernel that gives no POLLOUT
for send space), a waiter retries after :func:`send_retry_delays` instead.

A thread that blocks is woken through a :class:`Wakeup`, whose :meth:`~Wakeup.set` is a
system call that releases the GIL: the woken thread can run at once.  A condition
variable or a queue wakes it while the waker still holds the GIL, so on a CPU they
share it runs only to block on the GIL, and the waker is preempted for nothing: two
more context switches per hand-over (measured: 18 us for a thread ping-pong through
``SimpleQueue``, 7 us through eventfds).
"""

from __future__ import annotations

import ctypes
import os
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

DEFAULT_MAX_SPIN_NS = 100_000
MIN_USEFUL_SPIN_NS = 2_000
WINDOW = 16
IDLE_NS = 10_000_000  # a wait this long after a missed spin: the peer was idle
POLLS_PER_LOOK = 16  # polls between two looks at the clock (a few microseconds)
PREEMPTED_NS = 50_000  # a gap this long between two looks: the CPU was taken away
FIRST_SUSPEND = WINDOW  # waits without spinning after a spin was preempted...
MAX_SUSPEND = 4096  # ...doubling while probes are preempted again, up to this


def spin_worthwhile(mine: set[int] | None = None, peer: set[int] | None = None) -> bool:
    """Whether we and the peer can run on different CPUs (else spinning starves it).

    ``None`` means "any CPU this process may use".
    """
    allowed = os.sched_getaffinity(0)
    mine = allowed if mine is None else mine
    peer = allowed if peer is None else peer
    return len(mine | peer) > 1


_sched_getcpu = ctypes.CDLL(None, use_errno=True).sched_getcpu  # (vDSO: no system call)


def peer_waits_for_cpu(pid: int) -> bool:
    """Whether the main thread of process ``pid`` is runnable (state R) and last ran on
    the CPU the calling thread runs on: it waits for the CPU we hold (fields 3 and 39
    of ``/proc/PID/stat``, proc(5)).  False if that cannot be read (the peer is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rindex(b")") + 2 :].split()
    return fields[0] == b"R" and int(fields[36]) == _sched_getcpu()


class AdaptiveSpin:
    """Spin on a predicate for an adaptive budget; the caller blocks if this fails."""

    def __init__(
        self,
        max_spin_ns: int = DEFAULT_MAX_SPIN_NS,
        *,
        enabled: bool | None = None,
        probe_every: int = 64,
        peer: Callable[[], int | None] | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
        starved: Callable[[int], bool] = peer_waits_for_cpu,
    ) -> None:
        """``peer`` gives the pid of the process whose main thread writes what we poll
        for (None while unknown; it may be set later, as :attr:`peer`): after each miss
        ``starved(pid)`` says whether it waited for our CPU (then the miss counts as a
        preemption).  ``clock`` (ns) and ``starved`` are only replaced by tests."""
        if enabled is None:
            enabled = spin_worthwhile()
        self.enabled = enabled and max_spin_ns > 0
        self.max_spin_ns = max_spin_ns
        self.budget_ns = max_spin_ns if self.enabled else 0
        self.probe_every = probe_every
        self._since_probe = 0
        self._window_hits = 0
        self._window_total = 0
        self.peer = peer
        self._clock = clock
        self._starved = starved
        self._missed_at = 0  # when the last miss ended, until it is counted or forgiven
        self._suspended = 0  # waits left without spinning (the CPU was contended)
        self._suspend_next = FIRST_SUSPEND
        self.hits = 0
        self.misses = 0
        self.preempted = 0  # spins cut short because the spinner lost its CPU...
        self.starving = 0  # ...or missed while the peer waited for it (among those)

    def spin(self, ready: Callable[[], bool]) -> bool:
        """Call ``ready`` until it returns True (-> True) or the budget runs out, or the
        spinner is preempted (-> False)."""
        if self._suspended:
            self._suspended -= 1
            return False
        if self._missed_at:
            self._count_miss()
        budget = self.budget_ns
        probing = False
        if budget == 0:
            if not self.enabled:
                return False
            self._since_probe += 1
            if self._since_probe < self.probe_every:
                return False
            self._since_probe = 0
            budget = self.max_spin_ns
            probing = True
        now = self._clock
        last = now()
        deadline = last + budget
        while True:
            for _ in range(POLLS_PER_LOOK):
                if ready():
                    self.hits += 1
                    if probing:
                        self.budget_ns = self.max_spin_ns
                        self._window_hits = self._window_total = 0
                        return True
                    self._window_hits += 1
                    self._window_total += 1
                    if self._window_total >= WINDOW:
                        self._close_window()
                    return True
            t = now()
            if t - last > PREEMPTED_NS:
                self._preempted()
                return False
            if t >= deadline:
                break
            last = t
        self.misses += 1
        pid = self.peer() if self.peer is not None else None
        if pid is not None and self._starved(pid):
            self.starving += 1
            self._preempted()  # we held the CPU the peer needed (see the docstring)
            return False
        self._missed_at = now()  # counted at the next spin, unless that is much later
        return False

    def _preempted(self) -> None:
        """The CPU was taken away mid-spin: stop spinning for a while (see the module
        docstring); the suspension doubles while it keeps happening."""
        self.preempted += 1
        self._suspended = self._suspend_next
        self._suspend_next = min(self._suspend_next * 2, MAX_SUSPEND)
        self._window_hits = self._window_total = 0

    def _count_miss(self) -> None:
        """Count the last miss, unless the wait that followed it was an idle one."""
        if self._clock() - self._missed_at < IDLE_NS:
            self._window_total += 1
            if self._window_total >= WINDOW:
                self._close_window()
        self._missed_at = 0

    def _close_window(self) -> None:
        """A window of waits is complete: keep the full budget, or cut it."""
        if self._window_hits * 8 < self._window_total:
            budget = self.budget_ns // 4
            self.budget_ns = budget if budget >= MIN_USEFUL_SPIN_NS else 0
        else:
            self.budget_ns = self.max_spin_ns
            self._suspend_next = FIRST_SUSPEND  # a whole window without preemption
        self._window_hits = self._window_total = 0


class TakeNotifications(Protocol):
    """How a waiter takes its peer's notifications itself: ``(fds, timeout, ready,
    start=None)``, sleep until one of the descriptors is readable or ``ready()`` holds
    after a notification (True), or until the timeout (s) passes (False), handling the
    peer's notifications in the calling thread meanwhile; None if that cannot be done
    now (then the caller waits the ordinary way).  ``start``, if given, is called once
    the notifications are taken, before the sleep (what makes the peer answer), and not
    when None is returned.  A transport whose notifications arrive as an interrupt
    gives one (:meth:`amplink.irq.domain.IrqDomain.take_while_waiting`)."""

    def __call__(
        self,
        fds: Sequence[int],
        timeout: float | None,
        ready: Callable[[], bool] | None,
        start: Callable[[], object] | None = None,
        /,
    ) -> bool | None: ...


SEND_RETRY_DELAYS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01)  # s


def send_retry_delays() -> Iterator[float]:
    """The waits (s) between tries of a send no descriptor can announce: short first (a
    buffer usually comes back within a round trip), then every 10 ms."""
    yield from SEND_RETRY_DELAYS
    while True:
        yield SEND_RETRY_DELAYS[-1]


class Wakeup:
    """An auto-reset wake-up on an eventfd (see the module docstring): :meth:`set`
    from any thread, :meth:`wait` in the threads that sleep on it; wake-ups are never
    lost (a ``set`` before the ``wait`` makes it return at once).  :meth:`close` it
    once nobody waits any more; a ``set`` after that does nothing.  Its two
    descriptors (the eventfd and the epoll instance) live and die together: one that
    is dropped unclosed releases both when it is collected, never only the epoll."""

    __slots__ = ("_ep", "_fd", "_lock", "_set")

    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ep = select.epoll()  # several threads may sleep on it at once
        self._ep.register(self._fd, select.EPOLLIN)
        self._lock = threading.Lock()
        self._set = False  # set since the last clear (the eventfd is read only then)

    def set(self) -> None:
        """Wake the sleepers (or the next one to sleep)."""
        with self._lock:
            if self._fd >= 0:
                os.eventfd_write(self._fd, 1)
                self._set = True  # after the write: a clear between reads it next time

    def wait(self, timeout: float | None) -> bool:
        """Sleep until :meth:`set` or ``timeout`` s (None: for ever); False on timeout.
        Not after :meth:`close`."""
        if not self._ep.poll(-1.0 if timeout is None else max(timeout, 0.0)):
            return False
        self.clear()  # another sleeper may have taken it: both look
        return True

    def fileno(self) -> int:
        """The eventfd: readable once :meth:`set` (for a caller that polls it among
        others; it then calls :meth:`clear`)."""
        return self._fd

    def clear(self) -> None:
        """Take a wake-up that is pending (after polling :meth:`fileno`); no system
        call when none was set since the last clear."""
        if not self._set:
            return
        self._set = False  # before the read: a set meanwhile is read now or next time
        try:  # noqa: SIM105 (on the message path: no context manager)
            os.eventfd_read(self._fd)
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Release the eventfd and the epoll instance. Idempotent."""
        with self._lock:
            if self._fd >= 0:
                self._ep.close()
                os.close(self._fd)
                self._fd = -1

    def __del__(self) -> None:
        self.close()
