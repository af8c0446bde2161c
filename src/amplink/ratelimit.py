"""Rate-limited logging: what a peer can provoke is logged, never without bound.

Linux logs what hostile or broken hardware makes it see with ``dev_err_ratelimited``:
at most ``burst`` messages per ``interval`` from one call site (the defaults,
``DEFAULT_RATELIMIT_BURST`` and ``DEFAULT_RATELIMIT_INTERVAL``, are 10 per 5 s), then
silence, and once a message passes again a line that says how many were suppressed.
Here the limit is kept per *source* (the core or link that provoked it: one core's
flood does not silence another's errors) and per *kind* (the message's format string:
the call site), and the suppressed messages are counted per source for status views
(:func:`suppressed`).
"""

from __future__ import annotations

import logging
import threading
import time

DEFAULT_INTERVAL = 5.0  # s: Linux's DEFAULT_RATELIMIT_INTERVAL (5 * HZ)
DEFAULT_BURST = 10  # Linux's DEFAULT_RATELIMIT_BURST


class RateLimit:
    """One ratelimit state (Linux's ``struct ratelimit_state``): :meth:`allow` says
    whether the next event may be reported; :attr:`missed` counts those that were not
    since the last one that was."""

    __slots__ = ("begin", "burst", "interval", "missed", "printed")

    def __init__(self, interval: float = DEFAULT_INTERVAL, burst: int = DEFAULT_BURST) -> None:
        self.interval = interval
        self.burst = burst
        self.begin = 0.0
        self.printed = 0
        self.missed = 0

    def allow(self, now: float) -> bool:
        """True if an event at ``now`` (``time.monotonic()``) may be reported (Linux's
        ``___ratelimit``: a new window opens ``interval`` s after the last one did)."""
        if now - self.begin >= self.interval:
            self.begin = now
            self.printed = 0
        if self.printed < self.burst:
            self.printed += 1
            return True
        self.missed += 1
        return False


_lock = threading.Lock()
_states: dict[tuple[str, str, str], RateLimit] = {}
_suppressed: dict[str, int] = {}


def log_ratelimited(
    logger: logging.Logger,
    level: int,
    source: str,
    msg: str,
    *args: object,
    exc_info: bool = False,
) -> None:
    """``logger.log(level, msg, *args, exc_info=exc_info)`` unless ``source`` has logged
    ``msg`` (the format string: the kind) ``DEFAULT_BURST`` times in the last
    ``DEFAULT_INTERVAL`` s.  The first message that passes after some were suppressed is
    preceded by ``"<source>: <n> messages like '<msg>' suppressed"``."""
    if not logger.isEnabledFor(level):
        return
    key = (logger.name, source, msg)
    with _lock:
        state = _states.get(key)
        if state is None:
            state = _states[key] = RateLimit()
        if not state.allow(time.monotonic()):
            _suppressed[source] = _suppressed.get(source, 0) + 1
            return
        missed, state.missed = state.missed, 0
    if missed:
        logger.log(level, "%s: %d messages like %r suppressed", source, missed, msg)
    logger.log(level, msg, *args, exc_info=exc_info)


def suppressed(source: str) -> int:
    """How many messages provoked by ``source`` were suppressed, in all."""
    with _lock:
        return _suppressed.get(source, 0)
