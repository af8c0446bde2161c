"""Spurious-interrupt ("nobody cared") detection, with the kernel's accounting.

A level-triggered line that a device keeps asserting while no handler clears it fires
again the instant it is unmasked: an interrupt storm that would eat a CPU forever.  The
kernel counts, per line, how many interrupts nobody handled; when more than 99,900 of
a window of 100,000 were unhandled (and unhandled ones kept coming less than 100 ms
apart), it reports the line and disables it.  The rest of the system keeps running.

Threaded handlers complicate "handled": the primary only says ``IRQ_WAKE_THREAD``, and
whether the thread handled anything is known later.  So a wake-only result is judged
one interrupt late, by whether the line's count of threads that returned
``IRQ_HANDLED`` moved since the previous interrupt.

The thresholds are a :class:`SpuriousPolicy` so that a test can trigger detection in
a few hundred interrupts instead of a hundred thousand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from amplink.irq.flags import IRQ_HANDLED, IRQ_NONE, IRQ_WAKE_THREAD

MAX_BOGUS_REPORTS = 100


@dataclass(frozen=True)
class SpuriousPolicy:
    """When a line counts as stuck: more than ``threshold`` unhandled interrupts in a
    window of ``window``, unhandled ones less than ``reset_s`` seconds apart."""

    window: int = 100_000
    threshold: int = 99_900
    reset_s: float = 0.1
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.threshold < self.window:
            raise ValueError(
                f"spurious threshold must be in (0, window): {self.threshold}/{self.window}"
            )


class SpuriousState:
    """The per-line counters; :meth:`note` returns True when the line must be disabled."""

    __slots__ = ("deferred", "irq_count", "last_unhandled", "threads_handled_last", "unhandled")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start counting afresh (a new handler was installed)."""
        self.irq_count = 0
        self.unhandled = 0
        self.last_unhandled = 0.0
        self.threads_handled_last = 0
        self.deferred = False

    def note(self, ret: int, threads_handled: int, policy: SpuriousPolicy) -> bool:
        """Account one hard interrupt whose handlers returned ``ret`` (OR'ed)."""
        if ret & IRQ_WAKE_THREAD:
            if ret == IRQ_WAKE_THREAD:
                if not self.deferred:
                    self.deferred = True
                    return False
                if threads_handled != self.threads_handled_last:
                    self.threads_handled_last = threads_handled
                    ret = IRQ_HANDLED
                else:
                    ret = IRQ_NONE
            else:
                self.deferred = False
        if ret == IRQ_NONE:
            now = time.monotonic()
            if now - self.last_unhandled > policy.reset_s:
                self.unhandled = 1
            else:
                self.unhandled += 1
            self.last_unhandled = now
        if not self.unhandled:
            return False
        self.irq_count += 1
        if self.irq_count < policy.window:
            return False
        self.irq_count = 0
        stuck = self.unhandled > policy.threshold
        self.unhandled = 0
        return stuck
