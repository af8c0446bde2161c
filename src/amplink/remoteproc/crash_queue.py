"""Crash reports of one remote processor, handled one after another in one worker
thread: Linux's ``rproc_report_crash`` queues the crash handler on
``rproc_recovery_wq``, and a report that comes while the handler runs (the recovered
core crashes again during its boot) queues it once more; none is lost."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CrashReport:
    """One ``rproc_report_crash``: about which boot of the core (``boot``, counted from
    1), its type and reason, whether someone asked for it (debugfs ``crash``), and when
    (``time.monotonic``)."""

    boot: int
    kind: int
    reason: str
    requested: bool
    at: float


class CrashQueue:
    """Reports for processor ``name``, each passed to ``handle`` in a worker thread that
    runs while there are any.  :attr:`busy` is set and cleared under ``changed`` (whose
    waiters are woken when the queue is drained)."""

    def __init__(
        self, name: str, handle: Callable[[CrashReport], None], changed: threading.Condition
    ) -> None:
        self.name = name
        self._handle = handle
        self._changed = changed
        self._lock = threading.Lock()  # the queue and the worker
        self._reports: collections.deque[CrashReport] = collections.deque()
        self._worker: threading.Thread | None = None
        self.busy = False  # a report is queued or being handled

    def put(self, report: CrashReport) -> None:
        """Queue ``report`` (from any thread, IRQ threads included), starting the worker
        if it is not running."""
        with self._lock:
            self._reports.append(report)
            with self._changed:
                self.busy = True
            if self._worker is not None:
                return
            t = threading.Thread(target=self._work, name=f"rproc-{self.name}-crash", daemon=True)
            self._worker = t
            t.start()

    def join(self, timeout: float) -> bool:
        """Wait until every report queued so far has been handled; False if the worker
        still runs after ``timeout`` s.  True at once in the worker itself."""
        t = self._worker
        if t is None or t is threading.current_thread():
            return True
        t.join(timeout)
        return not t.is_alive()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._reports:
                    self._worker = None
                    with self._changed:
                        self.busy = False
                        self._changed.notify_all()
                    return
                report = self._reports.popleft()
            try:
                self._handle(report)
            except Exception:  # the worker must go on: later crashes still count
                log.exception("%s: handling a crash failed", self.name)
