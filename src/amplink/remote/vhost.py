"""A firmware program served as the virtio-rpmsg device of a Linux guest, over
vhost-user (``amplink serve-linux``).

The program is the same one a core process runs under amplink's own host: here its
:class:`~amplink.remote.runtime.Core` gets a :class:`VirtioRpmsgRemote` over the rings a
vhost-user front end (User-Mode Linux's ``virtio_uml``, QEMU) shares, and waits on the
guest's kick eventfds instead of a mailbox interrupt.  No remoteproc host drives this
core: there is no control block, no shutdown handshake and no watchdog.  When the guest
goes away (it powered off or reset its driver), the core waits for the next guest on
the same socket and announces its channels again, unless ``once`` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from amplink.remote.runtime import Core
from amplink.remote.served import run_firmware, until_signal
from amplink.rpmsg.virtio_link import VirtioRpmsgRemote
from amplink.transport.spin import AdaptiveSpin
from amplink.transport.vhost_user import VhostUserServer, VhostUserSession
from amplink.virtio.constants import VIRTIO_RPMSG_F_NS

log = logging.getLogger(__name__)


class LinuxGuestDevice:
    """Serves one firmware program to the Linux guests that connect to ``socket_path``,
    one at a time."""

    def __init__(
        self, socket_path: str, *, name: str = "linux", once: bool = False, spin: bool = True
    ) -> None:
        self.name = name
        self.once = once
        self.server = VhostUserServer(socket_path, f"{name}-vhost")
        self.spin = AdaptiveSpin(enabled=spin)
        self._session: VhostUserSession | None = None
        self._core: Core | None = None
        self._link: VirtioRpmsgRemote | None = None
        self.guests = 0

    def _peer_gone(self, gone: Callable[[], bool]) -> Callable[[], bool]:
        """When the link must be brought up again: the guest left, or broke its rings."""
        return lambda: gone() or self._broken()

    def _broken(self) -> bool:
        """The current guest broke its rings: it is dropped and the next one served."""
        link = self._link
        return link is not None and isinstance(link.failure, VirtioRpmsgRemote.broken_by_peer)

    def stop(self) -> None:
        """Make :meth:`run` return (safe from signal handlers and other threads)."""
        self.server.stop()
        if self._core is not None:
            self._core.stop()

    def _next_link(self) -> tuple[VirtioRpmsgRemote, list[int]] | None:
        """Wait for a guest whose driver is up and give the rpmsg link over its rings."""
        if self._broken() and self._session is not None and not self._session.closed:
            assert self._link is not None
            log.error(
                "%s: the guest broke its rings (%s); closing its connection",
                self.name,
                self._link.failure,
            )
            self._session.close()
        while not self.server.stopped:
            session = self._session
            if session is not None and session.closed:
                session.close()
                self._session = session = None
                if self.once:
                    return None
            if session is None:
                session = self._session = self.server.accept()
                if session is None:
                    return None
                log.info("%s: a guest connected (%s)", self.name, session.name)
            if not session.wait_ready(self.server.stop_fd):
                continue
            queues = session.queues(f"{self.name}.vdev0")
            self.guests += 1
            log.info("%s: the guest's rpmsg driver is up", self.name)
            link = self._link = VirtioRpmsgRemote(
                f"{self.name}.vdev0",
                queues.window,
                queues.tx,
                queues.rx,
                queues.notify,
                ns_supported=bool(queues.features & (1 << VIRTIO_RPMSG_F_NS)),
                peer_reset=self._peer_gone(queues.gone),
                spin=self.spin,
            )
            return link, session.wake_fds
        return None

    def run(self, main: Callable[[Core], object]) -> int:
        """Serve until stopped (or, with ``once``, until the first guest leaves): 0, or
        1 if the firmware raised."""
        try:
            return run_firmware(self.name, self._next_link, main, self._set_core)
        finally:
            self.close()

    def _set_core(self, core: Core) -> None:
        self._core = core
        if self.server.stopped:  # a stop that came before the core existed
            core.stop()

    def close(self) -> None:
        """Release the session and the socket. Idempotent."""
        if self._session is not None:
            self._session.close()
            self._session = None
        self.server.close()


def serve_linux(
    main: Callable[[Core], object],
    socket_path: str,
    *,
    once: bool = False,
    spin: bool = True,
    on_listening: Callable[[str], None] | None = None,
) -> int:
    """Run a firmware's ``main`` as the rpmsg device for Linux guests connecting to
    ``socket_path``; SIGINT and SIGTERM stop it.  Returns the exit status."""
    device = LinuxGuestDevice(socket_path, once=once, spin=spin)

    def run() -> int:
        if on_listening is not None:
            on_listening(socket_path)
        return device.run(main)

    return until_signal(device.stop, run)
