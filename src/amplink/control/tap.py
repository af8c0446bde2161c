"""A host endpoint on one channel shared by ``amplink up``'s ``send`` and ``listen``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from amplink.rpmsg.core import Endpoint, RpmsgDevice

Event = tuple[str, Any, Any]  # ("message", data, src) | ("closed", reason, None)


class Tap:
    """A host endpoint on one channel whose received messages go to subscribers
    (callables, run in the receive context: they must not block)."""

    def __init__(self, rpdev: RpmsgDevice, on_gone: Callable[[Tap], None]) -> None:
        self._subscribers: set[Callable[[Event], None]] = set()
        self._lock = threading.Lock()
        self._on_gone = on_gone
        self.ept = rpdev.create_ept(self._on_message)
        self.ept.on_release(self._on_release)

    def subscribe(self, deliver: Callable[[Event], None]) -> None:
        """Give every event from now on to ``deliver``."""
        with self._lock:
            self._subscribers.add(deliver)
        if self.ept.released is not None:  # released before we subscribed
            deliver(("closed", self.ept.released.strerror, None))

    def unsubscribe(self, deliver: Callable[[Event], None]) -> None:
        """Stop giving events to ``deliver``."""
        with self._lock:
            self._subscribers.discard(deliver)

    def _publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for deliver in subscribers:
            deliver(event)

    def _on_message(self, _ept: Endpoint, data: bytes, src: int) -> None:
        self._publish(("message", bytes(data), src))

    def _on_release(self, _ept: Endpoint, err: OSError) -> None:
        self._on_gone(self)
        self._publish(("closed", err.strerror or str(err), None))
