"""Sans-I/O codecs for the bytes that cross shared memory.

Nothing here touches a file descriptor, a thread or a process: every function works on
``bytes``/``memoryview`` and validates every offset and length before it reads.
"""

from amplink.wire.rpmsg import (
    RPMSG_HDR_SIZE,
    RPMSG_NS_CREATE,
    RPMSG_NS_DESTROY,
    RPMSG_NS_MSG_SIZE,
    NsMessage,
    RpmsgHeader,
)
from amplink.wire.vring import VringLayout

__all__ = [
    "RPMSG_HDR_SIZE",
    "RPMSG_NS_CREATE",
    "RPMSG_NS_DESTROY",
    "RPMSG_NS_MSG_SIZE",
    "NsMessage",
    "RpmsgHeader",
    "VringLayout",
]
