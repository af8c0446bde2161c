"""A firmware program served as the virtio-rpmsg device of OpenAMP host applications,
over the OpenAMP linux-machine layout (``amplink openamp remote``).

The program is the same one a core process runs under amplink's own host (the bundled
echo, the user's own): here its :class:`~amplink.remote.runtime.Core` gets a
:class:`VirtioRpmsgRemote` over the rings in the shared-memory object, and wakes on the
host's kicks on the UNIX socket.  The device side of the port's handshake: be the
socket server (writing the resource table before listening, as OpenAMP's proc 0 does)
or its client, wait for the host's ``DRIVER_OK`` in the table's status byte, then serve.
When the host leaves (it closed the socket: OpenAMP has no reset handshake), the core
waits for the next host and announces its channels again, unless ``once`` is set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from amplink.irq.line import new_line_fd
from amplink.remote.runtime import Core, Relinked
from amplink.remote.served import run_firmware, until_signal
from amplink.rpmsg.virtio_link import VirtioRpmsgRemote
from amplink.transport.openamp_linux import (
    KickListener,
    Session,
    ShmObject,
    connect,
    open_session,
    shm_path,
)
from amplink.transport.openamp_peer import PeerProcess
from amplink.transport.spin import AdaptiveSpin
from amplink.transport.unix import readable
from amplink.wire import openamp_linux as ol

log = logging.getLogger(__name__)

STATUS_POLL = 0.001  # s: how often the status byte is read while waiting (as OpenAMP)


class OpenAmpHostDevice:
    """Serves one firmware program to the OpenAMP hosts that connect, one at a time.

    ``command`` starts the host application (isolated unless ``isolate=False``, see
    :mod:`amplink.transport.openamp_peer`); the device then serves that one host and
    :meth:`run` ends when it leaves.  ``connect_timeout`` bounds the wait of a client
    for its server (a server waits for its client until stopped)."""

    def __init__(
        self,
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
    ) -> None:
        self.name = name
        self.server = server
        self.once = once or command is not None
        self.connect_timeout = connect_timeout
        self.spin = AdaptiveSpin(enabled=spin)
        isolated = self.isolated = bool(command) and isolate
        self.shm_name = shm or (f"amplink-openamp-{os.getpid()}" if isolated else ol.SHM_NAME)
        self.shm_path = shm_path(self.shm_name)  # EINVAL for a bad name, before any wait
        self.peer = PeerProcess(command, isolate=isolate) if command else None
        self.socket_path = (
            self.peer.socket_path if isolated and self.peer else socket_path or ol.SOCKET_PATH
        )
        # A server keeps one object (and its guard) for every host; so does a device
        # whose host it starts, isolated (the object must exist before the host starts).
        try:
            self._shm = ShmObject(self.shm_name, owner=True) if server or isolated else None
        except BaseException:
            if self.peer is not None:
                self.peer.close()
            raise
        self._stop = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wake = new_line_fd()  # written for each batch of kicks, and when a host leaves
        self._session: Session | None = None
        self._link: VirtioRpmsgRemote | None = None
        self._core: Core | None = None
        self.hosts = 0

    def stop(self) -> None:
        """Make :meth:`run` return (safe from signal handlers and other threads)."""
        os.eventfd_write(self._stop, 1)
        if self._core is not None:
            self._core.stop()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return bool(readable([self._stop], 0))

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            link = self._link
            if link is not None and isinstance(link.failure, VirtioRpmsgRemote.broken_by_peer):
                log.error("%s: the host broke its rings (%s); dropping it", self.name, link.failure)
            session.close()
            if session.shm is not self._shm:
                session.shm.close()

    def _connect(self) -> Session | None:
        """The next host's session (None when stopped, or when the started host
        application ended)."""
        shm = self._shm
        listener = None
        if shm is not None:
            shm.write_table()  # fresh for each host: status 0, features not negotiated
        if self.server:
            listener = KickListener(self.socket_path)
        peer = self.peer
        if peer is not None and peer.proc is None:
            peer.start(self.shm_path)
        watch = [self._stop] + ([peer.pidfd] if peer is not None else [])
        if listener is not None:
            try:
                kicks = listener.accept(watch, None)
            finally:
                listener.close()
        else:
            kicks = connect(self.socket_path, watch, self.connect_timeout)
        if kicks is None:
            return None
        self._session = open_session(shm, kicks, self.shm_name, f"{self.name}.socket")
        return self._session

    def _wait_driver_ok(self, session: Session) -> bool:
        """Poll the table's status byte until the host sets DRIVER_OK (as OpenAMP's
        device does); False if the host left or we were stopped first."""
        vdev = session.vdev()
        while not vdev.driver_ok:
            ready = readable([session.kicks.fileno(), self._stop], STATUS_POLL)
            if self._stop in ready:
                return False
            if session.kicks.fileno() in ready and not session.kicks.drain():
                return False
        return True

    def _next_link(self) -> Relinked | None:
        """Wait for a host whose driver is up and give the rpmsg link over its rings."""
        while not self.stopped:
            had_host = self._session is not None
            self._close_session()
            if had_host and self.once:
                return None
            session = self._connect()
            if session is None:
                return None
            log.info("%s: a host connected", self.name)
            try:
                if self._wait_driver_ok(session):
                    return self._bring_up(session), [self._wake]
            except OSError as exc:
                log.error("%s: cannot serve this host: %s", self.name, exc.strerror or exc)
        return None

    def _bring_up(self, session: Session) -> VirtioRpmsgRemote:
        vdev = session.vdev()
        kicks = session.kicks
        link = self._link = VirtioRpmsgRemote.over_vdev(
            f"{self.name}.vdev0",
            session.shm.region,
            session.shm.amap,
            vdev,
            lambda _index: kicks.kick(),
            spin=self.spin,
            whole_used_len=True,
        )
        # OpenAMP has no reset handshake: when the host leaves (or breaks its rings), the
        # device marks the vdev reset itself, which is what the core's loop watches
        # (peer_reset: DRIVER_OK gone) to come back to _next_link for the next host.
        wake = self._wake

        def reset(_err: OSError | None = None) -> None:
            vdev.status = 0
            os.eventfd_write(wake, 1)

        link.fail_listeners.append(reset)
        session.start(lambda: os.eventfd_write(wake, 1), reset)
        self.hosts += 1
        log.info("%s: the host's rpmsg driver is up", self.name)
        return link

    def run(self, main: Callable[[Core], object]) -> int:
        """Serve until stopped (or, with ``once`` or a command, until the first host
        leaves): 0, or 1 if the firmware raised."""
        try:
            return run_firmware(self.name, self._next_link, main, self._set_core)
        finally:
            self.close()

    def _set_core(self, core: Core) -> None:
        self._core = core
        if self.stopped:  # a stop that came before the core existed
            core.stop()

    def close(self) -> None:
        """Release the session, the started host application and the descriptors.
        Idempotent."""
        self._close_session()
        if self._shm is not None:
            self._shm.close()
            self._shm = None
        if self.peer is not None:
            self.peer.close()
        for attr in ("_stop", "_wake"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)


def serve_openamp(
    main: Callable[[Core], object],
    device: OpenAmpHostDevice,
    on_ready: Callable[[OpenAmpHostDevice], None] | None = None,
) -> int:
    """Run a firmware's ``main`` as the rpmsg device of the OpenAMP hosts ``device``
    meets; SIGINT and SIGTERM stop it.  Returns the exit status."""

    def run() -> int:
        if on_ready is not None:
            on_ready(device)
        return device.run(main)

    return until_signal(device.stop, run)
