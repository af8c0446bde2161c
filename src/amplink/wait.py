"""Adaptive spin-then-block waiting.

Waking a blocked process on another CPU costs ~25 us each way; polling shared memory
costs well under a microsecond.  So a waiter first spins on the ring for a bounded time
and only blocks when that fails.  The bound is a few wake-up costs (100 us): if the
event comes within it we saved a wake-up, if not we wasted at most that much CPU,
which is the classic competitive bound for spin-then-block.

Spinning only pays when the peer runs on *another* CPU: if it shares ours, every
microsecond we spin is one it cannot run.  Two mechanisms protect against that:

* placement: :func:`spin_worthwhile` says no when we and the peer can only run on one
  and the same CPU, and spinning is then off;
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
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

yield_cpu = os.sched_yield

DEFAULT_MAX_SPIN_NS = 100_000
MIN_USEFUL_SPIN_NS = 2_000
WINDOW = 16
IDLE_NS = 10_000_000  # a wait this long after a missed spin: the peer was idle


def spin_worthwhile(mine: set[int] | None = None, peer: set[int] | None = None) -> bool:
    """Whether we and the peer can run on different CPUs (else spinning starves it).

    ``None`` means "any CPU this process may use".
    """
    allowed = os.sched_getaffinity(0)
    mine = allowed if mine is None else mine
    peer = allowed if peer is None else peer
    return len(mine | peer) > 1


class AdaptiveSpin:
    """Spin on a predicate for an adaptive budget; the caller blocks if this fails."""

    def __init__(
        self,
        max_spin_ns: int = DEFAULT_MAX_SPIN_NS,
        *,
        enabled: bool | None = None,
        probe_every: int = 64,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        """``clock`` (ns) is only replaced by tests that play with time."""
        if enabled is None:
            enabled = spin_worthwhile()
        self.enabled = enabled and max_spin_ns > 0
        self.max_spin_ns = max_spin_ns
        self.budget_ns = max_spin_ns if self.enabled else 0
        self.probe_every = probe_every
        self._since_probe = 0
        self._window_hits = 0
        self._window_total = 0
        self._clock = clock
        self._missed_at = 0  # when the last miss ended, until it is counted or forgiven
        self.hits = 0
        self.misses = 0

    def spin(self, ready: Callable[[], bool]) -> bool:
        """Call ``ready`` until it returns True (-> True) or the budget runs out (-> False)."""
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
        deadline = now() + budget
        hit = False
        while not hit:
            for _ in range(16):
                if ready():
                    hit = True
                    break
            else:
                if now() >= deadline:
                    break
                yield_cpu()  # lets a peer that shares our CPU run now
        if not hit:
            self.misses += 1
            self._missed_at = now()  # counted at the next spin, unless that is much later
            return False
        self.hits += 1
        if probing:
            self.budget_ns = self.max_spin_ns
            self._window_hits = self._window_total = 0
            return True
        self._account(True)
        return True

    def _count_miss(self) -> None:
        """Count the last miss, unless the wait that followed it was an idle one."""
        if self._clock() - self._missed_at < IDLE_NS:
            self._account(False)
        self._missed_at = 0

    def _account(self, hit: bool) -> None:
        self._window_hits += hit
        self._window_total += 1
        if self._window_total < WINDOW:
            return
        if self._window_hits * 8 < self._window_total:
            budget = self.budget_ns // 4
            self.budget_ns = budget if budget >= MIN_USEFUL_SPIN_NS else 0
        else:
            self.budget_ns = self.max_spin_ns
        self._window_hits = self._window_total = 0


SEND_RETRY_DELAYS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01)  # s


def send_retry_delays() -> Iterator[float]:
    """The waits (s) between tries of a send no descriptor can announce: short first (a
    buffer usually comes back within a round trip), then every 10 ms."""
    yield from SEND_RETRY_DELAYS
    while True:
        yield SEND_RETRY_DELAYS[-1]
