"""A firmware program served as the virtio-rpmsg device of a Linux guest, over
vhost-user (``amplink serve-linux``).

The program is the same one a core process runs under amplink's own host: here its
:class:`~amplink.remote.runtime.Core` gets the link the same virtio driver
(:func:`amplink.bindings.virtio_drivers`) makes over the device a vhost-user front end
(User-Mode Linux's ``virtio_uml``, QEMU) sets up, and waits on the guest's kick eventfds
instead of a mailbox interrupt.  No remoteproc host drives this
core: there is no control block, no shutdown handshake and no watchdog.  When the guest
goes away (it powered off or reset its driver), the core waits for the next guest on
the same socket and announces its channels again, unless ``once`` is set.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType

from amplink.bindings import virtio_drivers
from amplink.remote.runtime import Core, FirmwarePlatform
from amplink.rpmsg.polled import PolledLink
from amplink.transport.vhost_user import VhostUserServer, VhostUserSession

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
        self.spin = spin
        self._drivers = virtio_drivers(None)
        self._session: VhostUserSession | None = None
        self._core: Core | None = None
        self._link: PolledLink | None = None
        self.guests = 0

    def _broken(self) -> bool:
        """The current guest broke its rings: it is dropped and the next one served."""
        link = self._link
        return link is not None and isinstance(link.failure, link.broken_by_peer)

    def stop(self) -> None:
        """Make :meth:`run` return (safe from signal handlers and other threads)."""
        self.server.stop()
        if self._core is not None:
            self._core.stop()

    def _next_link(self) -> tuple[PolledLink, list[int]] | None:
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
            device = session.device(f"{self.name}.vdev0", spin=self.spin)
            driver = self._drivers.driver_for(device.device_id)
            assert driver is not None
            self.guests += 1
            log.info("%s: the guest's rpmsg driver is up", self.name)
            link = driver.probe(device)
            assert isinstance(link, PolledLink)
            self._link = link
            return link, session.wake_fds
        return None

    def run(self, main: Callable[[Core], object]) -> int:
        """Serve until stopped (or, with ``once``, until the first guest leaves): 0, or
        1 if the firmware raised."""
        try:
            first = self._next_link()
            if first is None:
                return 0
            link, kicks = first
            core = self._core = Core(self.name, link, kicks, FirmwarePlatform(self._next_link))
            try:
                main(core)
            except Exception:
                log.exception("firmware crashed")
                return 1
            finally:
                core.close()
            return 0
        finally:
            self.close()

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

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        device.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_listening is not None:
            on_listening(socket_path)
        return device.run(main)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
