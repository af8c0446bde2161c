"""The user-space interfaces ``/dev/rpmsg_ctrlN`` and ``/dev/rpmsgN``, as objects.

* :class:`RpmsgCtrl` (``rpmsg_ctrl``): create endpoint files bound to (name, src,
  dst), and create or release channels (the remote sees the name-service message).
* :class:`RpmsgEptFile` (``rpmsg_char``): whole messages with :meth:`~RpmsgEptFile.read`
  and :meth:`~RpmsgEptFile.write`, blocking or not (``EAGAIN``), ``EMSGSIZE`` above
  the MTU, ``EPIPE`` once the endpoint is gone, and real file descriptors for
  ``select``/``selectors``/``asyncio``: :meth:`~RpmsgEptFile.fileno` is readable when
  a message is queued, :meth:`~RpmsgEptFile.writer_fileno` is writable when a send
  would not wait (a kernel file has one descriptor for both; an eventfd cannot be
  "not readable and not writable" at once, so here there are two).  Both become
  ready when the endpoint goes away (a channel removed, its core stopped or crashed),
  so a waiter finds out, as Linux's poll reports EPOLLERR/EPOLLHUP; reads and writes
  then fail with ``EPIPE`` and the descriptors stay valid until the file is closed.
  A descriptor is made when first asked for, and closed by :meth:`close` (or when
  the file object is garbage-collected).
* :class:`RpmsgCharDriver` gives every channel named ``rpmsg-raw`` an endpoint file on
  the channel's default endpoint, as the kernel does.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
import weakref
from collections import deque

from amplink.errors import RpmsgError
from amplink.irq.held_signals import HELD_SIGNALS
from amplink.irq.line import drain
from amplink.rpmsg.core import RPMSG_ADDR_ANY, Endpoint, RpmsgBus, RpmsgDevice, announce
from amplink.rpmsg.per_device import PerDeviceDriver

RPMSG_RAW_SERVICE = "rpmsg-raw"
_NOT_WRITABLE = 0xFFFF_FFFF_FFFF_FFFE  # an eventfd at its maximum is not writable
# What a non-blocking send raises when it would wait: virtio has no free buffer, GLINK
# no free intent from the remote, or no room in its FIFO.
NO_BUFFER = (errno.ENOMEM, errno.EBUSY, errno.EAGAIN)


class RpmsgEptFile:
    """One endpoint as ``/dev/rpmsgN`` (see the module docstring)."""

    def __init__(
        self, ept: Endpoint, dst: int, *, nonblocking: bool = False, default: bool = False
    ) -> None:
        self.ept = ept
        self.dst = dst
        self.nonblocking = nonblocking
        self.default = default  # an rpmsg-raw channel's endpoint: DESTROY_EPT refused
        self._queue: deque[bytes] = deque()
        self._lock = threading.Condition(threading.Lock())
        self._fds = [-1, -1]  # reader, writer: made when asked for (see fileno)
        self._closed = False
        weakref.finalize(self, _close_all, self._fds)
        self._tx_blocked = False
        self._flow_updated = False  # the remote's flow control changed: POLLPRI
        ept.callback = self._on_message
        ept.on_release(self._on_release)
        ept.on_flow(self._on_flow)

    def __repr__(self) -> str:
        return f"<RpmsgEptFile {self.ept.name} src={self.ept.addr} dst={self.dst}>"

    # -- descriptors -----------------------------------------------------------------
    def fileno(self) -> int:
        """Readable while a message is queued, the remote's flow control changed, or
        the endpoint is gone (-1 once closed)."""
        with self._lock:
            if self._fds[0] < 0 and not self._closed:
                self._fds[0] = _eventfd()
                if self._queue or self._flow_updated or self.ept.released is not None:
                    os.eventfd_write(self._fds[0], 1)
            return self._fds[0]

    def writer_fileno(self) -> int:
        """Writable while a send would not wait, or the endpoint is gone (-1 once
        closed)."""
        with self._lock:
            if self._fds[1] < 0 and not self._closed:
                self._fds[1] = _eventfd()
                if self._tx_blocked and self.ept.released is None:
                    os.eventfd_write(self._fds[1], _NOT_WRITABLE)
            return self._fds[1]

    @property
    def _rfd(self) -> int:
        return self._fds[0]

    @property
    def _wfd(self) -> int:
        return self._fds[1]

    def poll(self) -> int:
        """``POLLIN`` / ``POLLOUT`` / ``POLLPRI`` (flow control changed) / ``POLLERR``
        as ``rpmsg_char``'s poll reports them."""
        if self.ept.released is not None:
            return select.POLLERR | (select.POLLIN if self._queue else 0)
        mask = select.POLLIN | select.POLLRDNORM if self._queue else 0
        mask |= select.POLLPRI if self._flow_updated else 0
        return mask | (select.POLLOUT if self.ept.poll() else 0)

    def _on_message(self, ept: Endpoint, data: bytes, src: int) -> None:
        with self._lock:
            self._queue.append(data)
            if len(self._queue) == 1 and self._rfd >= 0:
                os.eventfd_write(self._rfd, 1)
            self._lock.notify()

    def _on_release(self, ept: Endpoint, reason: OSError) -> None:
        with self._lock:
            if self._rfd >= 0:
                os.eventfd_write(self._rfd, 1)
            if self._wfd >= 0:
                drain(self._wfd)
            self._lock.notify_all()
        ept.callback = None  # the endpoint no longer refers to this file (no cycle)

    def _writable(self) -> None:
        """The link has a free send buffer again."""
        with self._lock:
            self._tx_blocked = False
            if self._wfd >= 0:
                drain(self._wfd)

    # -- read and write --------------------------------------------------------------
    def read(self, timeout: float | None = None) -> bytes:
        """The next message: ``EAGAIN`` if none and non-blocking, ``ETIMEDOUT`` after
        ``timeout`` s, ``EPIPE`` once the endpoint is gone and nothing is queued."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # wait with the lock, then take the message in a section of its own
            with self._lock:  # (a Ctrl-C as this lock is let go takes nothing with it)
                if not self._queue:
                    if self.ept.released is not None:
                        raise RpmsgError(errno.EPIPE, f"endpoint {self.ept.addr} is gone")
                    if self.nonblocking:
                        raise RpmsgError(errno.EAGAIN, "no message queued")
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if not self._lock.wait_for(
                        lambda: self._queue or self.ept.released is not None, remaining
                    ):
                        raise RpmsgError(errno.ETIMEDOUT, f"no message within {timeout}s")
                    if not self._queue:
                        raise RpmsgError(errno.EPIPE, f"endpoint {self.ept.addr} is gone")
            data = None
            try:  # with handlers held, the lock let go inside: a signal must not drop it
                with HELD_SIGNALS, self._lock:
                    if self._queue:  # (another reader may have taken it meanwhile)
                        data = self._queue.popleft()
                        if not self._queue and self.ept.released is None and self._rfd >= 0:
                            drain(self._rfd)
            except BaseException:
                if data is not None:  # back at the head, and readable again
                    self._queue.appendleft(data)
                    if len(self._queue) == 1 and self._rfd >= 0:
                        os.eventfd_write(self._rfd, 1)
                raise
            if data is not None:
                return data

    def write(self, data: bytes, timeout: float | None = None) -> int:
        """Send ``data`` as one message to :attr:`dst`; returns its length.  Non-blocking:
        ``EAGAIN`` when no send buffer is free (the writer descriptor then stops being
        writable until one is)."""
        if self.ept.released is not None:
            raise RpmsgError(errno.EPIPE, f"endpoint {self.ept.addr} is gone")
        if not self.nonblocking:
            self.ept.sendto(data, self.dst, timeout)
            return len(data)
        try:
            self.ept.trysendto(data, self.dst)
        except RpmsgError as exc:
            if exc.errno not in NO_BUFFER:
                raise
            with self._lock:
                if not self._tx_blocked:
                    self._tx_blocked = True
                    if self._wfd >= 0:
                        os.eventfd_write(self._wfd, _NOT_WRITABLE)
            self.ept.link.when_can_send(self.ept.addr, self._writable)
            raise RpmsgError(errno.EAGAIN, "no free send buffer") from None
        return len(data)

    def _on_flow(self, ept: Endpoint, paused: bool) -> None:
        with self._lock:
            self._flow_updated = True
            if self._rfd >= 0:
                os.eventfd_write(self._rfd, 1)
            self._lock.notify_all()

    def get_outgoing_flowcontrol(self) -> int:
        """``RPMSG_GET_OUTGOING_FLOWCONTROL``: 1 if the remote asked us to pause (GLINK
        signals; never over virtio).  Clears the ``POLLPRI`` its change raised.  As in
        Linux, writes are not refused while paused: honouring it is the writer's job."""
        with self._lock:
            self._flow_updated = False
            if not self._queue and self.ept.released is None and self._rfd >= 0:
                drain(self._rfd)
        return int(self.ept.remote_paused)

    def set_incoming_flowcontrol(self, value: int) -> None:
        """``RPMSG_SET_INCOMING_FLOWCONTROL``: 1 asks the remote to pause, 0 to resume
        (``EINVAL`` otherwise; ``EOPNOTSUPP`` on backends without flow control)."""
        if value not in (0, 1):
            raise RpmsgError(errno.EINVAL, f"flow control is 0 or 1, not {value}")
        self.ept.set_flow_control(bool(value), self.dst)

    def close(self) -> None:
        """Destroy the endpoint (unless it is a channel's default one) and drop what is
        queued. Idempotent."""
        if not self.default:
            self.ept.destroy()
        with self._lock:
            self._queue.clear()
            self._closed = True
            _close_all(self._fds)

    def __enter__(self) -> RpmsgEptFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _eventfd() -> int:
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


def _close_all(fds: list[int]) -> None:
    for i, fd in enumerate(fds):
        if fd >= 0:
            os.close(fd)
            fds[i] = -1


class RpmsgCtrl:
    """``/dev/rpmsg_ctrlN`` of one rpmsg device (its link and bus)."""

    def __init__(self, rpdev: RpmsgDevice, bus: RpmsgBus) -> None:
        self.rpdev = rpdev
        self.bus = bus

    def create_ept(
        self, name: str, src: int = RPMSG_ADDR_ANY, dst: int = RPMSG_ADDR_ANY, **kw: bool
    ) -> RpmsgEptFile:
        """``RPMSG_CREATE_EPT_IOCTL``: an endpoint file bound to (name, src, dst)."""
        ept = self.rpdev.link.endpoints.create(None, src, name=name, dst=dst)
        return RpmsgEptFile(ept, dst, **kw)

    def destroy_ept(self, f: RpmsgEptFile) -> None:
        """``RPMSG_DESTROY_EPT_IOCTL``: refused (``EINVAL``) for a default endpoint."""
        if f.default:
            raise RpmsgError(errno.EINVAL, "a channel's default endpoint cannot be destroyed")
        f.close()

    def create_dev(self, name: str, src: int = RPMSG_ADDR_ANY) -> RpmsgDevice:
        """``RPMSG_CREATE_DEV_IOCTL``: a local channel, matched to drivers and
        announced to the remote (name-service create) from its endpoint's address."""
        link = self.rpdev.link
        rpdev = self.bus.add_device(RpmsgDevice(link, name, src, RPMSG_ADDR_ANY, announce=True))
        if rpdev.driver is None:  # no driver took it: it still gets an endpoint and is announced
            rpdev.ept = rpdev.create_ept(None, src)
            rpdev.src = rpdev.ept.addr
            announce(link, name, rpdev.src, destroy=False)
        return rpdev

    def release_dev(self, name: str, src: int = RPMSG_ADDR_ANY) -> None:
        """``RPMSG_RELEASE_DEV_IOCTL``: withdraw a local channel (``EINVAL`` if none)."""
        for rpdev in self.bus.devices(name):
            mine = rpdev.announce and rpdev.link is self.rpdev.link
            if mine and src in (RPMSG_ADDR_ANY, rpdev.src):
                if rpdev.driver is None:  # a driver's removal announces it by itself
                    announce(rpdev.link, name, rpdev.src, destroy=True)
                self.bus.remove_device(
                    rpdev, RpmsgError(errno.ESHUTDOWN, f"channel {name} released")
                )
                return
        raise RpmsgError(errno.EINVAL, f"no local channel {name!r} to release")


class RpmsgCharDriver(PerDeviceDriver[RpmsgEptFile]):
    """Gives every ``rpmsg-raw`` channel an endpoint file on its default endpoint."""

    def __init__(self) -> None:
        super().__init__("rpmsg_chrdev", (RPMSG_RAW_SERVICE,), callback=lambda *a: None)

    @property
    def files(self) -> dict[str, RpmsgEptFile]:
        """The endpoint files by channel id."""
        return self.instances

    def create(self, rpdev: RpmsgDevice) -> RpmsgEptFile:
        """An endpoint file on the channel's default endpoint."""
        assert rpdev.ept is not None  # the bus made the default endpoint (callback set)
        return RpmsgEptFile(rpdev.ept, rpdev.dst, default=True)

    def destroy(self, obj: RpmsgEptFile) -> None:
        """The channel went away: its file is hung up (its endpoint was released, so
        waiters woke and reads give ``EPIPE``), not closed: a user's descriptors stay
        valid until the user closes the file."""

    def wait_file(self, timeout: float = 10.0) -> RpmsgEptFile:
        """The first endpoint file this driver made (waits for an rpmsg-raw channel)."""
        return self.wait_first(timeout)
