"""Adaptive spinning: the budget logic, independent of timing."""

from amplink.wait import IDLE_NS, WINDOW, AdaptiveSpin, spin_worthwhile


def test_hits_keep_full_budget():
    s = AdaptiveSpin(50_000, enabled=True)
    for _ in range(3 * WINDOW):
        assert s.spin(lambda: True)
    assert s.budget_ns == 50_000 and s.hits == 3 * WINDOW


def test_misses_shrink_budget_to_zero_then_probe_restores():
    s = AdaptiveSpin(8_000, enabled=True, probe_every=4)
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
    s = AdaptiveSpin(10_000, enabled=True)
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


class FakeClock:
    """Nanoseconds that pass only when the test says (each reading moves 1 us)."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        self.ns += 1_000
        return self.ns


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
