"""One Linux guest's session of ``amplink serve-linux``, in a process of its own: the
vhost-user connection of one front end, and the firmware program running over the
rings it shares.

:class:`GuestSession` is the firmware side of one connection: it waits (at most
``setup_timeout`` s) until the front end has set both rings up and the guest's driver
has kicked vring 0, gives the firmware's :class:`~amplink.remote.runtime.Core` the link
that the virtio driver bound to the device's id makes over them
(:func:`amplink.bindings.virtio_drivers`), and brings the link up again when the guest
resets its driver on the same connection.  A guest that breaks its
rings, gives ring addresses outside its memory table, or does not finish its setup in
time is dropped with a logged error: this process exits, and the server
(:mod:`amplink.remote.vhost`) serves the others.

Why a process: the guest's memory arrives as file descriptors that this side maps.
Where the file can be sealed against shrinking, it is
(:func:`~amplink.transport.vhost_user.seal_against_shrinking`); UML's memory is a
plain tmpfs file that cannot be, and a front end that shrinks it makes the next ring
access raise SIGBUS, which no Python code can catch.  In its own process that kills
only this guest's session.

Run by the server as ``python -m amplink.remote.vhost_session``, with the connection,
a report pipe and a memfd holding the firmware program's source as inherited
descriptors; it reports its log records and the
moment the guest's driver is up as JSON lines on that pipe, and stops when its
standard input closes (the server is gone) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType

from amplink.bindings import virtio_drivers
from amplink.errors import AddressError
from amplink.remote.program import load_program
from amplink.remote.runtime import Core, FirmwarePlatform
from amplink.rpmsg.polled import PolledLink
from amplink.transport.vhost_user import VhostUserSession

log = logging.getLogger("amplink.remote.vhost")

EXIT_LEFT = 0  # the guest went away, or the session was stopped
EXIT_FIRMWARE_CRASHED = 1
EXIT_DROPPED = 2  # the guest was dropped: bad requests or rings, or setup too slow


class GuestSession:
    """The firmware served to one front end's connection."""

    def __init__(
        self,
        conn: socket.socket,
        name: str,
        *,
        spin: bool,
        setup_timeout: float,
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self.setup_timeout = setup_timeout
        self.on_ready = on_ready
        self.spin = spin
        self.session = VhostUserSession(conn, f"{name}-vhost")
        self._drivers = virtio_drivers(None)
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._link: PolledLink | None = None
        self._core: Core | None = None
        self._stopping = False
        self.status = EXIT_LEFT

    def stop(self) -> None:
        """Make :meth:`run` return (safe from signal handlers and other threads)."""
        self._stopping = True
        if self._stop_fd >= 0:
            os.eventfd_write(self._stop_fd, 1)
        if self._core is not None:
            self._core.stop()

    def _drop(self, why: str) -> None:
        log.error("%s: %s; closing its connection", self.name, why)
        self.status = EXIT_DROPPED

    def _broken(self) -> bool:
        link = self._link
        return link is not None and isinstance(link.failure, link.broken_by_peer)

    def _next_link(self) -> tuple[PolledLink, list[int]] | None:
        """Wait until the guest's driver is up and give the rpmsg link over its rings;
        None when the guest left, was dropped, or the session was stopped."""
        session = self.session
        if self._broken():
            assert self._link is not None
            self._drop(f"the guest broke its rings ({self._link.failure})")
            return None
        if not session.wait_ready(self._stop_fd, self.setup_timeout):
            if session.error is not None:
                self.status = EXIT_DROPPED  # already logged by the session
            elif not session.closed and not self._stopping:
                self._drop(f"the guest did not finish its setup within {self.setup_timeout:g} s")
            return None
        try:
            device = session.device(f"{self.name}.vdev0", spin=self.spin)
        except AddressError as exc:
            self._drop(f"bad vring addresses: {exc.strerror}")
            return None
        driver = self._drivers.driver_for(device.device_id)
        if driver is None:
            self._drop(f"no driver for virtio device id {device.device_id}")
            return None
        log.info("%s: the guest's rpmsg driver is up", self.name)
        self.on_ready()
        link = driver.probe(device)
        assert isinstance(link, PolledLink)
        self._link = link
        return link, session.wake_fds

    def run(self, main: Callable[[Core], object]) -> int:
        """Serve the guest until it leaves, is dropped, or :meth:`stop`; the exit
        status (``EXIT_*``)."""
        try:
            first = self._next_link()
            if first is None:
                return self.status
            link, kicks = first
            core = self._core = Core(self.name, link, kicks, FirmwarePlatform(self._next_link))
            try:
                main(core)
            except Exception:
                log.exception("%s: the firmware crashed", self.name)
                return EXIT_FIRMWARE_CRASHED
            finally:
                core.close()
            if self._broken() and self.status == EXIT_LEFT:
                assert self._link is not None
                self._drop(f"the guest broke its rings ({self._link.failure})")
            return self.status
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection and release everything. Idempotent."""
        self.session.close()
        if self._stop_fd >= 0:
            os.close(self._stop_fd)
            self._stop_fd = -1


class _ReportHandler(logging.Handler):
    """Log records as JSON lines on the report pipe, for the server to log."""

    def __init__(self, report: _Report) -> None:
        super().__init__()
        self.report = report
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.report.send({"log": [record.levelno, record.name, self.format(record)]})


class _Report:
    """The pipe to the server: one JSON object per line."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()

    def send(self, message: dict[str, object]) -> None:
        data = (json.dumps(message) + "\n").encode()
        with self._lock:
            try:
                while data:
                    data = data[os.write(self.fd, data) :]
            except OSError:
                pass  # the server is gone; standard input closing stops this process


def main(argv: list[str] | None = None) -> int:
    """The session process's entry point; returns its exit status."""
    parser = argparse.ArgumentParser(prog="python -m amplink.remote.vhost_session")
    parser.add_argument("--fd", type=int, required=True, help="the front end's connection")
    parser.add_argument("--report-fd", type=int, required=True, help="the pipe to the server")
    parser.add_argument("--program-fd", type=int, required=True, help="the program's source")
    parser.add_argument("--program-name", required=True, help="the program's file name")
    parser.add_argument("--name", required=True)
    parser.add_argument("--setup-timeout", type=float, required=True)
    parser.add_argument("--log-level", type=int, default=logging.WARNING)
    parser.add_argument("--no-spin", action="store_true")
    args = parser.parse_args(argv)
    report = _Report(args.report_fd)
    root = logging.getLogger()
    root.setLevel(args.log_level)
    root.addHandler(_ReportHandler(report))
    source = os.pread(args.program_fd, os.fstat(args.program_fd).st_size, 0)
    os.close(args.program_fd)
    program = load_program(source.decode(), args.program_name)
    guest = GuestSession(
        socket.socket(fileno=args.fd),
        args.name,
        spin=not args.no_spin,
        setup_timeout=args.setup_timeout,
        on_ready=lambda: report.send({"ready": True}),
    )

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        guest.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    def watch_server() -> None:  # standard input is a pipe the server holds open
        while os.read(0, 4096):
            pass
        guest.stop()

    threading.Thread(target=watch_server, name="server-watch", daemon=True).start()
    return guest.run(program)


if __name__ == "__main__":
    sys.exit(main())
