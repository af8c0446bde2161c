"""An eventfd doorbell: one side rings, the other waits.

Rings coalesce (the counter is summed and cleared by one read), which matches virtio
kicks: a notification says "look at the rings", never "one message arrived".
"""

from __future__ import annotations

import os
import select


class Doorbell:
    """A non-blocking eventfd; pass :attr:`fd` to the peer process with ``pass_fds``."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def fileno(self) -> int:
        return self.fd

    def ring(self) -> None:
        """Notify the waiter (never blocks)."""
        os.eventfd_write(self.fd, 1)

    def clear(self) -> bool:
        """Consume pending rings; True if there were any."""
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            return False
        return True

    def wait(self, timeout: float | None) -> bool:
        """Block until rung (consuming the rings) or ``timeout`` seconds pass."""
        ms = None if timeout is None else max(0, int(timeout * 1000))
        if self._poll.poll(ms):
            return self.clear()
        return False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
