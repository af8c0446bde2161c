"""Adaptive spinning: the budget logic, independent of timing."""

from amplink.transport.spin import WINDOW, AdaptiveSpin, spin_worthwhile


def test_hits_keep_full_budget():
    s = AdaptiveSpin(50_000, enabled=True)
    for _ in range(3 * WINDOW):
        assert s.spin(lambda: True)
    assert s.budget_ns == 50_000 and s.hits == 3 * WINDOW


def test_misses_shrink_budget_to_zero_then_probe_restores():
    s = AdaptiveSpin(8_000, enabled=True, probe_every=4)
    for _ in range(2 * WINDOW):
        assert not s.spin(lambda: False)
    assert s.budget_ns == 0
    calls = []

    def ready():
        calls.append(1)
        return True

    results = [s.spin(ready) for _ in range(4)]
    assert results == [False, False, False, True]  # only the 4th wait probes
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
