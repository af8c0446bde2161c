"""A firmware program served as the virtio-rpmsg device of OpenAMP host applications,
over the OpenAMP linux-machine layout (``amplink openamp remote``).

The program is the same one a core process runs under amplink's own host (the bundled
echo, the user's own).  :class:`OpenAmpHostDevice` is the server side of the port's
handshake: it owns the shared-memory object when it is the socket server (it writes the
resource table before it listens, as OpenAMP's proc 0 does) or opens the one its server
made (as a client, after connecting), and serves **each host in a session process of
its own** (:mod:`amplink.remote.openamp_session`, run by
:class:`~amplink.remote.served.Sessions` as ``serve-linux``'s are), which maps the
object and runs the firmware afresh for that host.  One host at a time (they would
share the object): while a session runs, the server does not listen.  A host that
shrinks the object kills only its session (SIGBUS), one that breaks its rings or never
brings its driver up is dropped; either way the next host is served, unless ``once``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from amplink.remote.served import (
    EXIT_FIRMWARE_CRASHED,
    SETUP_TIMEOUT,
    SessionProcess,
    Sessions,
    until_signal,
)
from amplink.transport.openamp_linux import (
    KickListener,
    KickSocket,
    ShmFile,
    connect,
    shm_path,
)
from amplink.transport.openamp_peer import PeerProcess
from amplink.transport.unix import readable
from amplink.wire import openamp_linux as ol

log = logging.getLogger(__name__)

SIGBUS_MEANS = "the host made the shared-memory object shorter than the layout"
PEER_EXIT_GRACE = 5.0  # s a started host gets to exit after its session ended


class OpenAmpHostDevice:
    """Serves one firmware ``program`` (its source and file name, as
    :meth:`amplink.remoteproc.fwref.FirmwareRef.program` reads them) to the OpenAMP hosts
    that connect, one at a time.

    ``command`` starts the host application (isolated unless ``isolate=False``, see
    :mod:`amplink.transport.openamp_peer`); the device then serves that one host and
    :meth:`run` ends when it leaves (as with ``once``).  ``connect_timeout`` bounds the
    wait of a client for its server (a server waits for its client until stopped);
    ``setup_timeout`` how long a connected host may take to bring its driver up."""

    def __init__(
        self,
        program: tuple[str, str],
        *,
        server: bool = True,
        shm: str | None = None,
        socket_path: str | None = None,
        command: list[str] | None = None,
        isolate: bool = True,
        once: bool = False,
        spin: bool = True,
        name: str = "openamp",
        connect_timeout: float = 60.0,
        setup_timeout: float = SETUP_TIMEOUT,
    ) -> None:
        self.name = name
        self.server = server
        self.once = once or command is not None
        self.connect_timeout = connect_timeout
        isolated = bool(command) and isolate
        self.shm_name = shm or (f"amplink-openamp-{os.getpid()}" if isolated else ol.SHM_NAME)
        self.shm_path = shm_path(self.shm_name)  # EINVAL for a bad name, before any wait
        self.sessions = Sessions(
            program,
            "amplink.remote.openamp_session",
            spin=spin,
            setup_timeout=setup_timeout,
            sigbus=SIGBUS_MEANS,
            on_end=self._ended,
        )
        self.peer: PeerProcess | None = None
        self._shm: ShmFile | None = None
        self._listener: KickListener | None = None
        self._stop = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._status = 0
        self._served = 0
        try:
            self.peer = PeerProcess(command, isolate=isolate) if command else None
            self.socket_path = (
                self.peer.socket_path if isolated and self.peer else socket_path or ol.SOCKET_PATH
            )
            # A server keeps one object for every host; so does a device whose host it
            # starts, isolated (the object must exist before the host starts).
            if server or isolated:
                self._shm = ShmFile(self.shm_name, owner=True)
                self._shm.write_table()  # before anyone can connect
            if server:
                self._listener = KickListener(self.socket_path)
        except BaseException:
            self.close()
            raise

    @property
    def hosts(self) -> int:
        """Hosts whose rpmsg driver came up."""
        return self.sessions.ready

    def stop(self) -> None:
        """Make :meth:`run` return (safe from signal handlers and other threads)."""
        if self._stop >= 0:
            os.eventfd_write(self._stop, 1)

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return bool(readable([self._stop], 0))

    def run(self) -> int:
        """Serve until stopped (or, with ``once`` or a command, until the first host's
        session ends): 0, or 1 if that session's firmware crashed."""
        try:
            while not self.stopped and not (self.once and self._served):
                kicks = self._next_host()
                if kicks is None:
                    break
                self._serve(kicks)
            return self._status
        finally:
            self.close()

    def _next_host(self) -> KickSocket | None:
        """The next host's connection (None when stopped, or when the started host
        application ended first)."""
        if self._served:
            if self._shm is not None:
                self._shm.write_table()  # fresh for each host: status 0, no features
            if self._listener is not None:
                self._listener.relisten()
        peer = self.peer
        if peer is not None and peer.proc is None:
            peer.start(self.shm_path)
        watch = [self._stop] + ([peer.pidfd] if peer is not None else [])
        if self._listener is not None:
            return self._listener.accept(watch, None)
        return connect(self.socket_path, watch, self.connect_timeout)

    def _serve(self, kicks: KickSocket) -> None:
        """Start the session of the host on ``kicks`` and wait until it ends."""
        self._served += 1
        name = f"{self.name}#{self._served}"
        shm = self._shm
        try:
            if shm is None:  # a client opens the object its server made before listening
                shm = ShmFile(self.shm_name, owner=False, create=False)
            session = self.sessions.start(
                name,
                ["--shm-fd", str(shm.fd), "--sock-fd", str(kicks.fileno())],
                [shm.fd, kicks.fileno()],
            )
        finally:
            kicks.close()  # the session holds the host's end alone
            if shm is not None and shm is not self._shm:
                shm.close()
        log.info("%s: a host connected (session pid %d)", name, session.proc.pid)
        poller = self.sessions.poller
        poller.register(self._stop)
        try:
            while self.sessions and not self.stopped:
                for fd, _ev in poller.poll():
                    self.sessions.handle(fd)
        finally:
            poller.unregister(self._stop)

    def _ended(self, _session: SessionProcess, returncode: int) -> None:
        self._status = 1 if returncode == EXIT_FIRMWARE_CRASHED else 0

    def close(self) -> None:
        """Stop the session, release the socket and the object (removed if this side
        made it), end the started host application. Idempotent."""
        self.sessions.close()
        if self.peer is not None and self._served and not self.stopped:
            self.peer.wait(PEER_EXIT_GRACE)  # the host left its session: it is exiting
        for res in (self._listener, self._shm, self.peer):
            if res is not None:
                res.close()
        self._listener = self._shm = None
        if self._stop >= 0:
            os.close(self._stop)
            self._stop = -1


def serve_openamp(
    device: OpenAmpHostDevice, on_ready: Callable[[OpenAmpHostDevice], None] | None = None
) -> int:
    """Run ``device`` (its firmware served to the OpenAMP hosts it meets); SIGINT and
    SIGTERM stop it.  Returns the exit status."""

    def run() -> int:
        if on_ready is not None:
            on_ready(device)
        return device.run()

    return until_signal(device.stop, run)
