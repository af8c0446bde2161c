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

Run by the server as ``python -m amplink.remote.vhost_session --fd CONN`` plus what
every session gets (:func:`amplink.remote.served.session_main`: a report pipe, the
firmware program's source in a memfd, the setup timeout).
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from amplink.bindings import virtio_drivers
from amplink.errors import AddressError
from amplink.remote.runtime import Relinked
from amplink.remote.served import EXIT_DROPPED, FirmwareSession, SessionSettings, session_main
from amplink.rpmsg.polled import PolledLink
from amplink.transport.vhost_user import VhostUserSession

log = logging.getLogger("amplink.remote.vhost")


class GuestSession(FirmwareSession):
    """The firmware served to one front end's connection."""

    def __init__(
        self,
        conn: socket.socket,
        settings: SessionSettings,
    ) -> None:
        super().__init__(settings)
        self.session = VhostUserSession(conn, f"{self.name}-vhost")
        self._drivers = virtio_drivers(None)

    def _next_link(self) -> Relinked | None:
        session = self.session
        if self._drop_if_broken():
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

    def close(self) -> None:
        """Close the connection and release everything. Idempotent."""
        self.session.close()
        super().close()


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fd", type=int, required=True, help="the front end's connection")


def _session(args: argparse.Namespace, settings: SessionSettings) -> GuestSession:
    return GuestSession(socket.socket(fileno=args.fd), settings)


def main(argv: list[str] | None = None) -> int:
    """The session process's entry point; returns its exit status."""
    return session_main("python -m amplink.remote.vhost_session", argv, _arguments, _session)


if __name__ == "__main__":
    sys.exit(main())
