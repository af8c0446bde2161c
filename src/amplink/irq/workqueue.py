"""A workqueue: a pool of worker threads that run deferred work items, like kworkers.

This is the *other* way to get an interrupt's work into preemptible context: the
handler queues a work item and a worker runs it later.  Before the 2026 i.MX series,
``imx_rproc`` had to do that for every vring kick.  The cost is visible in
``amplink bench``: a work item waits behind whatever else the pool is busy with, while
a dedicated IRQ thread does not.

A :class:`Work` is queued at most once at a time (``queue_work`` returns False while it
is pending), and its pending state is cleared just before it runs, so a queue_work
during the run schedules one more run: the same contract as Linux's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from queue import SimpleQueue

log = logging.getLogger(__name__)


class Work:
    """A deferred function call (Linux's ``struct work_struct``)."""

    __slots__ = ("func", "name", "pending")

    def __init__(self, func: Callable[[], object], name: str = "") -> None:
        self.func = func
        self.name = name or getattr(func, "__qualname__", "work")
        self.pending = False

    def __repr__(self) -> str:
        return f"<Work {self.name}{' pending' if self.pending else ''}>"


class Workqueue:
    """``max_active`` worker threads named ``kworker/<name>:<i>`` sharing one queue."""

    def __init__(self, name: str = "events", max_active: int = 1) -> None:
        if max_active < 1:
            raise ValueError(f"a workqueue needs at least one worker, not {max_active}")
        self.name = name
        self._q: SimpleQueue[Work | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._outstanding = 0
        self._closed = False
        self._workers = [
            threading.Thread(target=self._run, name=f"kworker/{name}:{i}", daemon=True)
            for i in range(max_active)
        ]
        for w in self._workers:
            w.start()

    def queue_work(self, work: Work) -> bool:
        """Queue ``work``; False (and nothing queued) if it is already pending."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"workqueue {self.name} is destroyed")
            if work.pending:
                return False
            work.pending = True
            self._outstanding += 1
        self._q.put(work)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued item has run; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    def destroy(self, timeout: float = 5.0) -> None:
        """Run what is queued, then stop the workers. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._workers:
            self._q.put(None)
        for w in self._workers:
            if w is not threading.current_thread():
                w.join(timeout)
                if w.is_alive():
                    log.error("%s did not finish its work item within %.1fs", w.name, timeout)

    def _run(self) -> None:
        q = self._q
        while (work := q.get()) is not None:
            with self._lock:
                work.pending = False
            try:
                work.func()
            except Exception:
                log.exception("workqueue %s: work item %s raised", self.name, work.name)
            with self._lock:
                self._outstanding -= 1
                if self._outstanding == 0:
                    self._idle.notify_all()
