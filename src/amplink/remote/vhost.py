"""A firmware program served as the virtio-rpmsg device of Linux guests, over
vhost-user (``amplink serve-linux``).

The program is the same one a core process runs under amplink's own host: here its
:class:`~amplink.remote.runtime.Core` gets the link the same virtio driver
(:func:`amplink.bindings.virtio_drivers`) makes over the device a vhost-user front end
(User-Mode Linux's ``virtio_uml``, QEMU) sets up, and waits on the guest's kick eventfds
instead of a mailbox interrupt.  No remoteproc host drives this
core: there is no control block, no shutdown handshake and no watchdog.

:class:`LinuxGuestDevice` listens on the socket and serves **each connection in a
process of its own** (:mod:`amplink.remote.vhost_session`), which runs the firmware
afresh for that guest, as a board runs a fresh firmware at each boot.  What a front
end controls cannot reach the server: a front end that shrinks the memory file it
handed over (UML's is a tmpfs file, which cannot be sealed) kills only its session
with SIGBUS; one that sends hostile requests or rings, or never finishes its setup
(``setup_timeout``), is dropped; none of them blocks another guest.  Up to
``max_guests`` sessions run at once; a connection beyond that is refused.  The
sessions' log records come back over a pipe and are logged here, under their own
logger names (:mod:`amplink.remote.served`, shared with ``amplink openamp remote``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from amplink.remote.served import (
    EXIT_FIRMWARE_CRASHED,
    SETUP_TIMEOUT,
    SessionProcess,
    Sessions,
    until_signal,
)
from amplink.transport.vhost_user import VhostUserServer

log = logging.getLogger(__name__)

MAX_GUESTS = 8
REFUSAL_LOG_INTERVAL = 1.0  # s between log lines about refused connections
SIGBUS_MEANS = (
    "its front end made the guest memory it handed over shorter (a memory file that "
    "cannot be sealed)"
)


class LinuxGuestDevice:
    """Serves one firmware program (``program``: its source and file name, as
    :meth:`amplink.remoteproc.fwref.FirmwareRef.program` reads them from an ELF
    image, a ``.py`` file or a module) to the Linux guests that connect to ``socket_path``, each
    in a session process of its own (:class:`~amplink.remote.served.Sessions`).
    ``once``: stop when the first guest's session ends."""

    def __init__(
        self,
        socket_path: str,
        program: tuple[str, str],
        *,
        name: str = "linux",
        once: bool = False,
        spin: bool = False,
        setup_timeout: float = SETUP_TIMEOUT,
        max_guests: int = MAX_GUESTS,
    ) -> None:
        self.name = name
        self.once = once
        self.max_guests = max_guests
        self.sessions = Sessions(
            program,
            "amplink.remote.vhost_session",
            spin=spin,
            setup_timeout=setup_timeout,
            sigbus=SIGBUS_MEANS,
            on_end=self._ended,
        )
        try:
            self.server = VhostUserServer(socket_path, f"{name}-vhost")
        except BaseException:
            self.sessions.close()
            raise
        self.connections = 0
        self._refused = 0
        self._refusal_logged = 0.0
        self._status = 0

    @property
    def guests(self) -> int:
        """Guests whose rpmsg driver came up."""
        return self.sessions.ready

    def stop(self) -> None:
        """Make :meth:`run` return (safe from signal handlers and other threads)."""
        self.server.stop()

    def run(self) -> int:
        """Serve until stopped (or, with ``once``, until the first guest's session
        ends): 0, or 1 if that session's firmware crashed (``once``)."""
        poller = self.sessions.poller
        poller.register(self.server.fileno())
        poller.register(self.server.stop_fd)
        try:
            while not self.server.stopped:
                if self.once and self.connections and not self.sessions:
                    break
                for fd, _ev in poller.poll():
                    if fd == self.server.fileno():
                        self._accept()
                    else:
                        self.sessions.handle(fd)
            return self._status
        finally:
            self.close()

    def _accept(self) -> None:
        conn = self.server.accept()
        if conn is None:
            return
        with conn:
            if len(self.sessions) >= self.max_guests or (self.once and self.connections):
                self._refuse()
                return
            self.connections += 1
            name = f"{self.name}#{self.connections}"
            session = self.sessions.start(name, ["--fd", str(conn.fileno())], [conn.fileno()])
        log.info("%s: a guest connected (session pid %d)", name, session.proc.pid)

    def _refuse(self) -> None:
        """A connection over the limit: closed; logged at most once a second."""
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:
            self._refusal_logged = now
            log.error(
                "%s: refused %d connection(s): %s",
                self.name,
                self._refused,
                "serving one guest only (--once)"
                if self.once
                else f"already serving {self.max_guests} guest(s), the limit",
            )
            self._refused = 0

    def _ended(self, _session: SessionProcess, returncode: int) -> None:
        if self.once:
            self._status = 1 if returncode == EXIT_FIRMWARE_CRASHED else 0

    def close(self) -> None:
        """Stop every session and release the socket. Idempotent."""
        self.sessions.close()
        self.server.close()


def serve_linux(
    program: tuple[str, str],
    socket_path: str,
    *,
    once: bool = False,
    spin: bool = False,
    setup_timeout: float = SETUP_TIMEOUT,
    on_listening: Callable[[str], None] | None = None,
) -> int:
    """Serve a firmware ``program`` (source, file name) as the rpmsg device for the
    Linux guests connecting to ``socket_path``; SIGINT and SIGTERM stop it.  Returns the
    exit status."""
    device = LinuxGuestDevice(socket_path, program, once=once, spin=spin,
                              setup_timeout=setup_timeout)  # fmt: skip

    def run() -> int:
        if on_listening is not None:
            on_listening(socket_path)
        return device.run()

    return until_signal(device.stop, run)
