"""rpmsg: the bus, endpoints and name service, and its backends."""

from amplink.rpmsg.core import (
    RPMSG_ADDR_ANY,
    RPMSG_NS_ADDR,
    RPMSG_RESERVED_ADDRESSES,
    Endpoint,
    Message,
    RpmsgBus,
    RpmsgDevice,
    RpmsgDriver,
    RpmsgLink,
)
from amplink.rpmsg.ns import NameService

__all__ = [
    "RPMSG_ADDR_ANY",
    "RPMSG_NS_ADDR",
    "RPMSG_RESERVED_ADDRESSES",
    "Endpoint",
    "Message",
    "NameService",
    "RpmsgBus",
    "RpmsgDevice",
    "RpmsgDriver",
    "RpmsgLink",
]
