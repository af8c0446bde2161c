"""``rpmsg-tty``: an rpmsg channel as a real pseudo-terminal, like Linux's
``/dev/ttyRPMSGn``.

Register :class:`RpmsgTtyDriver` on a bus; every channel named ``rpmsg-tty`` then
gets a pty whose path (:attr:`RpmsgTty.path`, e.g. ``/dev/pts/5``) ``screen``,
``minicom`` or pyserial can open.  Bytes written to the pty reach the remote, in
messages of at most the channel's MTU (a long write is split, as the kernel's driver
does); each message from the remote is written to the pty.  The pty starts in raw
mode without echo, as a serial line would; a terminal program sets its own modes.

If nobody reads the pty and its buffer fills, further bytes from the remote are
dropped and counted (``dropped``), with a warning, as the kernel drops what does not
fit in the tty buffer.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import tty

from amplink.errors import RpmsgError
from amplink.rpmsg.core import Endpoint, RpmsgDevice
from amplink.rpmsg.per_device import PerDeviceDriver

log = logging.getLogger(__name__)

RPMSG_TTY_SERVICE = "rpmsg-tty"
READ_CHUNK = 4096


class RpmsgTty:
    """One ``rpmsg-tty`` channel bound to a new pseudo-terminal."""

    def __init__(self, rpdev: RpmsgDevice) -> None:
        self.rpdev = rpdev
        self.dropped = 0
        self._master, self._slave = os.openpty()
        self._stop = -1
        self.ept: Endpoint | None = None
        try:
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.path = os.ttyname(self._slave)
            self._stop = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.ept = rpdev.create_ept(self._from_remote)
            self.mtu = self.ept.get_mtu()
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(
            target=self._to_remote, name=f"rpmsg-tty-{self.ept.addr}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"<RpmsgTty {self.path} {self.rpdev.id}>"

    def _from_remote(self, ept: Endpoint, data: bytes, src: int) -> None:
        """A message from the remote: onto the pty (in the receive context)."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                self.dropped += len(view)
                log.warning(
                    "%s: the pty buffer is full (nobody reads %s); dropped %d bytes",
                    self.rpdev.id,
                    self.path,
                    len(view),
                )
                return
            except OSError:
                return  # closed meanwhile
            view = view[n:]

    def _to_remote(self) -> None:
        """Bytes written to the pty: to the remote, in messages of at most the MTU."""
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        poller.register(self._stop, select.POLLIN)
        ept = self.ept
        assert ept is not None
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._stop in ready:
                return
            try:
                data = os.read(self._master, READ_CHUNK)
            except BlockingIOError:
                continue
            except OSError:
                return
            for i in range(0, len(data), self.mtu):
                try:
                    ept.send(data[i : i + self.mtu])
                except RpmsgError as exc:
                    log.warning(
                        "%s: %d bytes typed on %s not sent: %s",
                        self.rpdev.id,
                        len(data) - i,
                        self.path,
                        exc.strerror,
                    )
                    if exc.errno in (errno.EPIPE, errno.ESHUTDOWN):
                        return
                    break

    def close(self) -> None:
        """Stop forwarding, destroy the endpoint, close the pty. Idempotent."""
        if self._stop >= 0:
            os.eventfd_write(self._stop, 1)
            thread = getattr(self, "_thread", None)
            if thread is not None and thread is not threading.current_thread():
                thread.join(5)
        if self.ept is not None:
            self.ept.destroy()
            self.ept = None
        for fd in (self._master, self._slave, self._stop):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = self._stop = -1


class RpmsgTtyDriver(PerDeviceDriver[RpmsgTty]):
    """Binds every ``rpmsg-tty`` channel on the bus to a pty; :attr:`ttys` by device."""

    def __init__(self) -> None:
        super().__init__("rpmsg_tty", (RPMSG_TTY_SERVICE,))

    @property
    def ttys(self) -> dict[str, RpmsgTty]:
        """The ptys by channel id."""
        return self.instances

    def create(self, rpdev: RpmsgDevice) -> RpmsgTty:
        """A pty for a new ``rpmsg-tty`` channel."""
        t = RpmsgTty(rpdev)
        log.info("%s: %s is %s", rpdev.id, RPMSG_TTY_SERVICE, t.path)
        return t

    def destroy(self, obj: RpmsgTty) -> None:
        """Close the pty of a channel that went away."""
        obj.close()

    def wait_tty(self, timeout: float = 10.0) -> RpmsgTty:
        """The first pty this driver created (waits for a channel to appear)."""
        return self.wait_first(timeout)
