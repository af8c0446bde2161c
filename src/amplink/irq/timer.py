"""A one-shot timer that is a file descriptor: Linux's ``timerfd`` on CLOCK_MONOTONIC.

The descriptor becomes readable when the timer expires, so a thread that waits in
``epoll`` on other descriptors can wait on it too.  Python's ``os`` module has timerfd
only from 3.13; on 3.11 and 3.12 it is called in libc through ``ctypes``.
"""

from __future__ import annotations

import ctypes
import os

CLOCK_MONOTONIC = 1
_NONBLOCK_CLOEXEC = os.O_NONBLOCK | os.O_CLOEXEC  # TFD_NONBLOCK, TFD_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(None, use_errno=True)


class OneShotTimer:
    """``arm(ns)`` (re)starts the timer; the descriptor :attr:`fd` is readable once it
    expired until :meth:`consume`.  ``OSError`` if the kernel refuses a timerfd."""

    __slots__ = ("_spec", "fd")

    def __init__(self) -> None:
        fd = _libc.timerfd_create(CLOCK_MONOTONIC, _NONBLOCK_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self.fd: int = fd
        self._spec = _Itimerspec()

    def arm(self, ns: int) -> None:
        """Expire ``ns`` nanoseconds from now (replacing any earlier arming); 0
        disarms it."""
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(ns, 1_000_000_000)
        _libc.timerfd_settime(self.fd, 0, ctypes.byref(self._spec), None)

    def consume(self) -> None:
        """Take the expiry (the descriptor is not readable afterwards)."""
        try:  # noqa: SIM105 (no context manager on a path taken per interrupt)
            os.read(self.fd, 8)
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Release the descriptor. Idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
