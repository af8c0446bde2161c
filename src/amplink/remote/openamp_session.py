"""One OpenAMP host's session of ``amplink openamp remote``, in a process of its own:
the firmware program served as the virtio-rpmsg device over the host's shared-memory
object and its kick socket (the linux-machine transport,
:mod:`amplink.transport.openamp_linux`).

:class:`HostSession` maps the object (the only process of amplink's remote side that
does: a host that shrinks it kills this session with SIGBUS, and the server logs it and
serves the next), checks its resource table as hostile input, waits for the host's
``DRIVER_OK`` in the table's status byte (polled, as OpenAMP's devices do, for at most
``setup_timeout``), and gives the firmware's :class:`~amplink.remote.runtime.Core` the
link that the virtio driver bound to the table's device id makes over the vdev, found
in the table as a core process finds its own (:func:`amplink.bindings.firmware_rpmsg`,
with the transport's whole used lengths: OpenAMP's hosts size their next send from
them).  OpenAMP has no reset handshake: the host closing its socket fails the link
(``EPIPE``) and ends the session.

Run by the server as ``python -m amplink.remote.openamp_session --shm-fd FD --sock-fd
FD`` plus what every session gets (:func:`amplink.remote.served.session_main`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import socket
import sys
import threading
import time

from amplink.bindings import FirmwareRpmsg, firmware_rpmsg
from amplink.errors import AddressError, ResourceTableError, RpmsgError
from amplink.memory.addrmap import AddressMap
from amplink.remote.runtime import Relinked
from amplink.remote.served import FirmwareSession, SessionSettings, session_main
from amplink.transport.openamp_linux import TABLE_MAX, KickSocket, check_table, map_shm
from amplink.transport.unix import readable
from amplink.wire import openamp_linux as ol
from amplink.wire import rsc_table as rt

log = logging.getLogger("amplink.remote.openamp")

STATUS_POLL = 0.001  # s: how often the status byte is read while waiting (as OpenAMP)


class HostSession(FirmwareSession):
    """The firmware served to one OpenAMP host: the object open at ``shm_fd`` and the
    host's connection ``conn`` (both taken over)."""

    def __init__(
        self,
        shm_fd: int,
        conn: socket.socket,
        settings: SessionSettings,
    ) -> None:
        super().__init__(settings)
        self.kicks = KickSocket(conn)
        try:
            self.region = map_shm(shm_fd, self.name)
        except BaseException:
            self.kicks.close()
            raise
        self._gone = threading.Event()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # kicks, the end
        self._quit = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._started = False
        self._reader = threading.Thread(target=self._read_kicks, name="kicks", daemon=True)
        self._reader.start()

    def _read_kicks(self) -> None:
        """The host's kicks wake the core; its end fails the link (the session ends)."""
        while True:
            ready = readable([self.kicks.fileno(), self._quit], None)
            if self._quit in ready:
                return
            if not self.kicks.drain():
                log.info("%s: the host closed its socket", self.name)
                self._gone.set()
                link = self._link
                if link is not None:  # a sender waiting for the host's buffer stops now
                    link.fail(RpmsgError(errno.EPIPE, "the host closed its socket"))
                os.eventfd_write(self._wake, 1)
                return
            os.eventfd_write(self._wake, 1)

    def _next_link(self) -> Relinked | None:
        if self._started:  # the host reset its driver or left: its session is over
            self._drop_if_broken()
            return None
        self._started = True
        region = self.region
        page = bytes(region.mem[:TABLE_MAX])  # ring addresses read later: bounds-checked
        try:
            check_table(page, self.name)
            table = rt.parse(page)
            up = firmware_rpmsg(self.name, region, AddressMap.identity(region.size, "shm"),
                                ol.RSC_TABLE_PA, table, lambda _id: self.kicks.kick(),
                                self.spin, whole_used_len=True)  # fmt: skip
        except (ResourceTableError, AddressError) as exc:
            self._drop(f"its resource table is unusable: {exc.strerror}")
            return None
        if not self._wait_driver_ok(up):
            return None
        try:
            link = up.probe()
        except AddressError as exc:
            self._drop(f"bad vring addresses: {exc.strerror}")
            return None
        self._link = link
        if self._gone.is_set():  # it left while the driver came up
            link.fail(RpmsgError(errno.EPIPE, "the host closed its socket"))
        log.info("%s: the host's rpmsg driver is up", self.name)
        self.on_ready()
        return link, [self._wake]

    def _wait_driver_ok(self, up: FirmwareRpmsg) -> bool:
        """Poll the status byte until the host sets ``DRIVER_OK``; False (logged) if it
        left, did not within ``setup_timeout``, or the session was stopped."""
        deadline = time.monotonic() + self.setup_timeout
        while not up.ready():
            if self._gone.is_set() or self._stopping:
                return False
            if time.monotonic() > deadline:
                self._drop(f"the host did not bring its driver up within {self.setup_timeout:g} s")
                return False
            if readable([self._wake, self._stop_fd], STATUS_POLL):
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake)
        return True

    def close(self) -> None:
        """Close the connection, unmap the object, release everything. Idempotent."""
        if self._quit >= 0:
            os.eventfd_write(self._quit, 1)
            self._reader.join()
            for fd in (self._quit, self._wake):
                os.close(fd)
            self._quit = self._wake = -1
            self.kicks.close()
            self.region.close()
        super().close()


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shm-fd", type=int, required=True, help="the shared-memory object")
    parser.add_argument("--sock-fd", type=int, required=True, help="the host's connection")


def _session(args: argparse.Namespace, settings: SessionSettings) -> HostSession:
    return HostSession(args.shm_fd, socket.socket(fileno=args.sock_fd), settings)


def main(argv: list[str] | None = None) -> int:
    """The session process's entry point; returns its exit status."""
    return session_main("python -m amplink.remote.openamp_session", argv, _arguments, _session)


if __name__ == "__main__":
    sys.exit(main())
