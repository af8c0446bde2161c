"""The name service: the endpoint at the fixed address 53 that hears announcements.

:func:`bind_name_service` binds it on a link and decodes what arrives; malformed
announcements (not 40 bytes) are logged and ignored: a bad peer loses its own
announcement, nothing else.  On the host, :class:`NameService` turns them into devices on
a bus: a create announcement adds a device ``(name, src=ANY, dst=addr)`` and probes a
driver for it; a destroy announcement removes the matching device, which releases its
endpoints.  Firmware hears the host's announcements through the same function
(:meth:`amplink.remote.Core.on_announcement`).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from amplink.errors import RpmsgError, WireError
from amplink.ratelimit import log_ratelimited
from amplink.rpmsg.core import (
    RPMSG_ADDR_ANY,
    RPMSG_NS_ADDR,
    Endpoint,
    RpmsgBus,
    RpmsgDevice,
    RpmsgLink,
)
from amplink.wire.rpmsg import NsMessage, encode_name

log = logging.getLogger(__name__)


def bind_name_service(link: RpmsgLink, handle: Callable[[NsMessage], None]) -> Endpoint:
    """Bind the ``rpmsg_ns`` endpoint (address 53) on ``link``: every well-formed
    announcement goes to ``handle``; ``EADDRINUSE`` if 53 is taken."""

    def on_message(_ept: Endpoint, data: bytes, src: int) -> None:
        try:
            msg = NsMessage.unpack(data)
            encode_name(msg.name)  # a name a channel can carry (rpmsg_ns_cb's checks)
        except WireError as exc:
            log_ratelimited(
                log,
                logging.WARNING,
                link.name,
                "%s: malformed name-service message from %d ignored: %s",
                link.name,
                src,
                exc.strerror,
            )
            return
        handle(msg)

    return link.endpoints.create(on_message, RPMSG_NS_ADDR, name="rpmsg_ns")


class NameService:
    """The ``rpmsg_ns`` endpoint of one link, feeding one bus."""

    def __init__(self, bus: RpmsgBus, link: RpmsgLink) -> None:
        self.bus = bus
        self.link = link
        self.announcements = 0
        self.ept = bind_name_service(link, self._announced)

    def _announced(self, msg: NsMessage) -> None:
        self.announcements += 1
        if msg.destroy:
            for rpdev in self.bus.devices(msg.name):
                if rpdev.link is self.link and rpdev.dst == msg.addr:
                    self.bus.remove_device(
                        rpdev,
                        RpmsgError(errno.EPIPE, f"remote withdrew channel {msg.name!r}"),
                    )
            return
        rpdev = RpmsgDevice(self.link, msg.name, RPMSG_ADDR_ANY, msg.addr)
        try:
            self.bus.add_device(rpdev)
        except RpmsgError as exc:
            log_ratelimited(
                log,
                logging.WARNING,
                self.link.name,
                "%s: announcement of %r ignored: %s",
                self.link.name,
                msg.name,
                exc.strerror,
            )
