"""The name service: rpmsg channels announced by the remote become devices on the bus.

Bound at the fixed address 53 of a link.  A create announcement adds a device
``(name, src=ANY, dst=addr)`` and probes a driver for it; a destroy announcement removes
the matching device, which releases its endpoints.  Malformed announcements (not 40
bytes) are logged and ignored: a bad remote loses its own announcement, nothing else.
"""

from __future__ import annotations

import errno
import logging

from amplink.errors import RpmsgError, WireError
from amplink.rpmsg.core import (
    RPMSG_ADDR_ANY,
    RPMSG_NS_ADDR,
    Endpoint,
    RpmsgBus,
    RpmsgDevice,
    RpmsgLink,
)
from amplink.wire.rpmsg import NsMessage

log = logging.getLogger(__name__)


class NameService:
    """The ``rpmsg_ns`` endpoint of one link, feeding one bus."""

    def __init__(self, bus: RpmsgBus, link: RpmsgLink) -> None:
        self.bus = bus
        self.link = link
        self.ept = link.endpoints.create(self._on_message, RPMSG_NS_ADDR, name="rpmsg_ns")
        self.announcements = 0

    def _on_message(self, _ept: Endpoint, data: bytes, src: int) -> None:
        try:
            msg = NsMessage.unpack(data)
        except WireError as exc:
            log.warning(
                "%s: malformed name-service message from %d ignored: %s",
                self.link.name,
                src,
                exc.strerror,
            )
            return
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
            log.warning(
                "%s: announcement of %r ignored: %s", self.link.name, msg.name, exc.strerror
            )
