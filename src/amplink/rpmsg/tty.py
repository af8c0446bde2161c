"""``rpmsg-tty``: an rpmsg channel as a real pseudo-terminal, like Linux's
``/dev/ttyRPMSGn``.

Register :class:`RpmsgTtyDriver` on a bus; every channel named ``rpmsg-tty`` then
gets a pty whose path (:attr:`RpmsgTty.path`, e.g. ``/dev/pts/5``) ``screen``,
``minicom`` or pyserial can open.  Bytes written to the pty reach the remote, in
messages of at most the channel's MTU (a long write is split, as the kernel's driver
does); each message from the remote is written to the pty.  The pty starts in raw
mode without echo, as a serial line would; a terminal program sets its own modes.

Nothing the remote sends is lost while someone may read it.  What does not fit in the
pty at once waits in a queue here, up to :data:`TTY_BUFFER` bytes (what current Linux's
tty layer buffers before it drops), and goes to the pty as the reader takes it.  Beyond
that the console applies backpressure instead of dropping: it keeps the remote's
messages in the receive buffers they came in (virtio buffers, GLINK intents: both
backends lend them to the ``zero_copy`` endpoint) and gives them back only as the pty
drains, so the remote runs out of buffers and its sends wait (and time out, with an
error the remote sees, if nobody reads for longer than its send timeout).  (A backend
that lent no buffers would have its messages queued here all the same.)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import tty
from collections import deque

from amplink.errors import RpmsgError
from amplink.irq.line import drain
from amplink.rpmsg.core import Endpoint, LentMessage, RpmsgDevice
from amplink.rpmsg.per_device import PerDeviceDriver

log = logging.getLogger(__name__)

RPMSG_TTY_SERVICE = "rpmsg-tty"
READ_CHUNK = 4096
TTY_BUFFER = 640 << 10  # bytes queued for the pty before backpressure
TYPED_WAIT = 0.05  # seconds a send of typed bytes waits for a buffer before the pty is served


class RpmsgTty:
    """One ``rpmsg-tty`` channel bound to a new pseudo-terminal."""

    def __init__(self, rpdev: RpmsgDevice) -> None:
        self.rpdev = rpdev
        self._master, self._slave = os.openpty()
        self._stop = self._wake = -1
        self._typed = b""  # typed on the pty, not yet sent (the remote had no buffer)
        self._out: deque[tuple[memoryview, LentMessage | None]] = deque()  # bytes left, held
        self._queued = 0  # bytes in _out
        self._out_lock = threading.Lock()
        self.ept: Endpoint | None = None
        try:
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.path = os.ttyname(self._slave)
            self._stop = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.ept = rpdev.create_ept(self._from_remote, zero_copy=True)
            self.mtu = self.ept.get_mtu()
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(
            target=self._serve, name=f"rpmsg-tty-{self.ept.addr}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"<RpmsgTty {self.path} {self.rpdev.id}>"

    @property
    def queued(self) -> int:
        """Bytes from the remote waiting for room in the pty."""
        return self._queued

    def _from_remote(self, ept: Endpoint, data: bytes | LentMessage, src: int) -> None:
        """A message from the remote (in the receive context; never blocks): onto the
        pty, or queued, or held (see the module docstring)."""
        held = data if isinstance(data, LentMessage) else None
        view = data.data if isinstance(data, LentMessage) else memoryview(data)
        with self._out_lock:
            if not self._out:
                try:
                    view = view[os.write(self._master, view) :]
                except BlockingIOError:
                    pass
                except OSError:
                    return  # closed meanwhile
                if not view:
                    return
            if held is not None and self._queued + len(view) > TTY_BUFFER:
                self._queue_locked(view, held.hold())  # backpressure: not given back yet
            else:
                self._queue_locked(memoryview(bytes(view)), None)

    def _queue_locked(self, view: memoryview, held: LentMessage | None) -> None:
        was_empty = not self._out
        self._out.append((view, held))
        self._queued += len(view)
        if was_empty:  # after the append: the writer looks at the queue once woken
            os.eventfd_write(self._wake, 1)

    def _flush(self) -> None:
        """Write what is queued while the pty takes it; give back drained buffers."""
        done = []
        with self._out_lock:
            while self._out:
                view, held = self._out[0]
                try:
                    n = os.write(self._master, view)
                except (BlockingIOError, OSError):
                    break
                self._queued -= n
                if n < len(view):
                    self._out[0] = (view[n:], held)
                    break
                self._out.popleft()
                if held is not None:
                    done.append(held)
        for held in done:
            held.release()

    def _serve(self) -> None:
        """Forward typed bytes to the remote and write queued bytes as the pty drains,
        never blocking on either: when the remote has no buffer for typed bytes, the
        pty is not read until it has one."""
        poller = select.poll()
        poller.register(self._stop, select.POLLIN)
        poller.register(self._wake, select.POLLIN)
        while True:
            events = (0 if self._typed else select.POLLIN) | (select.POLLOUT if self._out else 0)
            poller.register(self._master, events)
            ready = dict(poller.poll(0 if self._typed else None))
            if self._stop in ready:
                return
            if self._wake in ready:
                drain(self._wake)
            if ready.get(self._master, 0) & select.POLLOUT:
                self._flush()
            if ready.get(self._master, 0) & select.POLLIN:
                with contextlib.suppress(BlockingIOError):
                    self._typed = os.read(self._master, READ_CHUNK)
            if self._typed and not self._send_typed():
                return

    def _send_typed(self) -> bool:
        """Send what was typed, in messages of at most the MTU, waiting at most
        :data:`TYPED_WAIT` s for a buffer (so that the pty is still written meanwhile);
        False once the channel is gone."""
        ept = self.ept
        if ept is None:
            return False
        while self._typed:
            chunk = self._typed[: self.mtu]
            try:
                ept.send(chunk, timeout=TYPED_WAIT)
            except RpmsgError as exc:
                if exc.errno == errno.ETIMEDOUT:
                    return True  # the remote has no buffer yet: try again soon
                if exc.errno in (errno.EPIPE, errno.ESHUTDOWN):
                    return False
                log.warning(
                    "%s: %d bytes typed on %s not sent: %s",
                    self.rpdev.id,
                    len(chunk),
                    self.path,
                    exc.strerror,
                )
            self._typed = self._typed[len(chunk) :]
        return True

    def close(self) -> None:
        """Stop forwarding, destroy the endpoint, close the pty. Idempotent."""
        if self._stop >= 0:
            os.eventfd_write(self._stop, 1)
            thread = getattr(self, "_thread", None)
            if thread is not None and thread is not threading.current_thread():
                thread.join(5)
        with self._out_lock:
            held = [h for _v, h in self._out if h is not None]
            self._out.clear()
            self._queued = 0
        for h in held:  # before the endpoint goes: the link's memory is still there
            h.release()
        if self.ept is not None:
            self.ept.destroy()
            self.ept = None
        for fd in (self._master, self._slave, self._stop, getattr(self, "_wake", -1)):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = self._stop = self._wake = -1


class RpmsgTtyDriver(PerDeviceDriver[RpmsgTty]):
    """Binds every ``rpmsg-tty`` channel on the bus to a pty; :attr:`ttys` by device."""

    def __init__(self) -> None:
        super().__init__("rpmsg_tty", (RPMSG_TTY_SERVICE,))

    @property
    def ttys(self) -> dict[str, RpmsgTty]:
        """The ptys by channel id."""
        return self.instances

    def create(self, rpdev: RpmsgDevice) -> RpmsgTty:
        """A pty for a new ``rpmsg-tty`` channel (``ENOSPC`` beyond the link's
        ``limits.ttys``)."""
        link = rpdev.link
        with self._changed:
            ttys = sum(1 for d in self._devices.values() if d.link is link)
        if ttys >= link.limits.ttys:
            raise link.over_limit("ttys", f"a pty for {rpdev.id}")
        t = RpmsgTty(rpdev)
        log.info("%s: %s is %s", rpdev.id, RPMSG_TTY_SERVICE, t.path)
        return t

    def destroy(self, obj: RpmsgTty) -> None:
        """Close the pty of a channel that went away."""
        obj.close()

    def wait_tty(self, timeout: float = 10.0) -> RpmsgTty:
        """The first pty this driver created (waits for a channel to appear)."""
        return self.wait_first(timeout)
