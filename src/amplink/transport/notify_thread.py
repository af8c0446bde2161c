"""A thread that turns doorbell rings into handler calls.

This is the host's receive context until the mailbox/IRQ path exists: it blocks in
``poll()`` on the doorbell (and, optionally, on a pidfd of the peer process, so that a
peer that dies is noticed at once rather than at the next timeout) and runs the
handler in its own thread.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable

from amplink.transport.doorbell import Doorbell

log = logging.getLogger(__name__)


class NotifyThread:
    """Runs ``on_kick()`` after every ring of ``doorbell``; ``on_peer_exit()`` once if
    the process behind ``pidfd`` exits."""

    def __init__(
        self,
        name: str,
        doorbell: Doorbell,
        on_kick: Callable[[], None],
        *,
        pidfd: int | None = None,
        on_peer_exit: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._doorbell = doorbell
        self._on_kick = on_kick
        self._pidfd = pidfd
        self._on_peer_exit = on_peer_exit
        self._stop = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close its private fd. Idempotent; safe before start."""
        if self._stop < 0:
            return
        os.eventfd_write(self._stop, 1)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("%s did not stop within %.1fs", self.name, timeout)
                return
        os.close(self._stop)
        self._stop = -1

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._doorbell.fd, select.POLLIN)
        poller.register(self._stop, select.POLLIN)
        if self._pidfd is not None:
            poller.register(self._pidfd, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._stop in ready:
                return
            if self._doorbell.fd in ready:
                self._doorbell.clear()
                self._call(self._on_kick)
            if self._pidfd is not None and self._pidfd in ready:
                poller.unregister(self._pidfd)
                self._pidfd = None
                # Drain what the peer left in the rings before reporting its death.
                self._call(self._on_kick)
                if self._on_peer_exit is not None:
                    self._call(self._on_peer_exit)

    def _call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("%s: handler failed", self.name)
