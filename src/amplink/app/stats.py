"""Small statistics helpers shared by the demo and the benchmark."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of an already sorted list (nearest rank)."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def latency_summary_us(samples_ns: list[int]) -> tuple[float, float]:
    """(p50, p99) in microseconds of a list of nanosecond samples."""
    s = sorted(samples_ns)
    return percentile(s, 50) / 1000, percentile(s, 99) / 1000
