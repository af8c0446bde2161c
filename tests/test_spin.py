"""Adaptive spinning (the budget logic, independent of timing) and the GIL-free wake-up."""

import os
import subprocess
import threading
import time

from amplink.wait import (
    FIRST_SUSPEND,
    IDLE_NS,
    MAX_SUSPEND,
    PREEMPTED_NS,
    WINDOW,
    AdaptiveSpin,
    Wakeup,
    peer_waits_for_cpu,
    spin_worthwhile,
)


class FakeClock:
    """Nanoseconds that pass only when the test says (each reading moves 1 us)."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        self.ns += 1_000
        return self.ns


def test_hits_keep_full_budget():
    s = AdaptiveSpin(50_000, enabled=True)
    for _ in range(3 * WINDOW):
        assert s.spin(lambda: True)
    assert s.budget_ns == 50_000 and s.hits == 3 * WINDOW


def test_misses_shrink_budget_to_zero_then_probe_restores():
    s = AdaptiveSpin(8_000, enabled=True, probe_every=4, clock=FakeClock())
    for _ in range(2 * WINDOW + 1):  # a miss is counted when the next wait begins
        assert not s.spin(lambda: False)
    assert s.budget_ns == 0
    calls = []

    def ready():
        calls.append(1)
        return True

    results = [s.spin(ready) for _ in range(4)]
    # The last wait of the loop above was the first at zero budget: the 4th probes,
    # and its success restores the budget for the next one.
    assert results == [False, False, True, True]
    assert s.budget_ns == 8_000


def test_single_miss_does_not_shrink():
    s = AdaptiveSpin(10_000, enabled=True, clock=FakeClock())
    s.spin(lambda: False)
    for _ in range(WINDOW - 1):
        s.spin(lambda: True)
    assert s.budget_ns == 10_000


def test_disabled_never_calls_ready():
    s = AdaptiveSpin(enabled=False)
    assert not s.spin(lambda: 1 / 0)


def test_spin_worthwhile():
    assert not spin_worthwhile({0}, {0})
    assert spin_worthwhile({0}, {1})
    assert spin_worthwhile({0, 1}, {0})


def test_a_miss_before_an_idle_stretch_is_forgiven():
    clock = FakeClock()
    s = AdaptiveSpin(8_000, enabled=True, clock=clock)
    for _ in range(4 * WINDOW):
        assert not s.spin(lambda: False)
        clock.ns += IDLE_NS  # the peer stayed silent for longer than IDLE_NS
    assert s.budget_ns == 8_000 and s.misses == 4 * WINDOW


def test_misses_in_busy_traffic_still_shrink():
    clock = FakeClock()
    s = AdaptiveSpin(8_000, enabled=True, clock=clock)
    for _ in range(WINDOW + 1):
        s.spin(lambda: False)
        clock.ns += IDLE_NS // 100  # the event came soon after the spin gave up
    assert s.budget_ns == 2_000


class PreemptingClock(FakeClock):
    """A clock under which the spinner loses its CPU at the ``at``-th reading."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.readings = 0
        self.at = at

    def __call__(self) -> int:
        self.readings += 1
        if self.readings == self.at:
            self.ns += PREEMPTED_NS * 2
        return super().__call__()


def test_a_preempted_spin_stops_and_suspends_spinning():
    clock = PreemptingClock(at=3)
    s = AdaptiveSpin(100_000, enabled=True, clock=clock)
    polls = []
    assert not s.spin(lambda: polls.append(1) and False)
    assert s.preempted == 1 and s.misses == 0
    assert len(polls) < 100  # it stopped at the gap, long before the budget ran out
    for _ in range(FIRST_SUSPEND):  # then it blocks at once, without polling
        assert not s.spin(lambda: 1 / 0)
    assert s.spin(lambda: True)  # and spins again afterwards


def test_suspension_doubles_while_spins_keep_being_preempted_and_resets():
    s = AdaptiveSpin(100_000, enabled=True, clock=FakeClock())
    suspensions = []
    for _ in range(10):
        s._clock = PreemptingClock(at=2)
        assert not s.spin(lambda: False)
        suspensions.append(s._suspended)
        s._suspended = 0
    assert suspensions[:3] == [FIRST_SUSPEND, 2 * FIRST_SUSPEND, 4 * FIRST_SUSPEND]
    assert max(suspensions) == MAX_SUSPEND
    s._clock = FakeClock()
    for _ in range(WINDOW):  # a whole window of clean hits
        assert s.spin(lambda: True)
    s._clock = PreemptingClock(at=2)
    s.spin(lambda: False)
    assert s._suspended == FIRST_SUSPEND


def test_a_miss_while_the_peer_waits_for_our_cpu_suspends_spinning():
    asked = []

    def starved(pid: int) -> bool:
        asked.append(pid)
        return True

    s = AdaptiveSpin(8_000, enabled=True, peer=lambda: 42, clock=FakeClock(), starved=starved)
    assert s.spin(lambda: True) and asked == []  # a hit never looks at the peer
    assert not s.spin(lambda: False)
    assert asked == [42]  # once per miss, not per poll
    assert s.misses == 1 and s.preempted == 1 and s.starving == 1
    for _ in range(FIRST_SUSPEND):  # it blocks at once, as after a preemption
        assert not s.spin(lambda: 1 / 0)
    assert s.spin(lambda: True)


def test_a_miss_while_the_peer_runs_elsewhere_is_an_ordinary_miss():
    asked = []

    def starved(pid: int) -> bool:
        asked.append(pid)
        return False

    peer: list[int | None] = [None]
    s = AdaptiveSpin(8_000, enabled=True, peer=lambda: peer[0], clock=FakeClock(), starved=starved)
    assert not s.spin(lambda: False)
    assert asked == []  # no peer known yet (the core is not started): nothing to look at
    peer[0] = 7
    for _ in range(WINDOW):
        assert not s.spin(lambda: False)
    assert asked == [7] * WINDOW and s.preempted == 0 and s._suspended == 0
    assert s.budget_ns == 2_000  # the window of misses cut the budget as before


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_peer_waits_for_cpu_reads_the_peer():
    assert peer_waits_for_cpu(os.getpid())  # we run (R), on the CPU we run on
    child = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while _state(child.pid) != "S":  # until it sleeps (it runs while it starts)
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert not peer_waits_for_cpu(child.pid)  # asleep: it waits for no CPU
    finally:
        child.kill()
        child.wait()
    assert not peer_waits_for_cpu(2**22 + 1)  # past pid_max: no such process


def test_wakeup_is_never_lost_and_closes():
    fds = len(os.listdir("/proc/self/fd"))
    w = Wakeup()
    w.set()  # before anyone sleeps: the next sleep returns at once
    assert w.wait(5)
    assert not w.wait(0.01)  # auto-reset: nothing more to see
    woke = threading.Event()

    def sleeper() -> None:
        if w.wait(5):
            woke.set()

    t = threading.Thread(target=sleeper)
    t.start()
    w.set()
    t.join(5)
    assert woke.is_set()
    w.close()
    w.set()  # after close: nothing, and no error
    w.close()
    assert len(os.listdir("/proc/self/fd")) == fds
    dropped = Wakeup()
    dropped.set()
    del dropped  # never closed: both of its descriptors go with it, not only the epoll
    assert len(os.listdir("/proc/self/fd")) == fds
