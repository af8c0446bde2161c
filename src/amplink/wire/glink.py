"""GLINK on the wire: the commands of Qualcomm's GLINK transport, and amplink's edge.

**Commands** (the facts of ``qcom_glink_native``): every command starts with an 8-byte
header ``{cmd le16, param1 le16, param2 le32}`` and is padded to 8 bytes in the FIFO.
A command about a channel carries the *sender's* channel id, except the two acks
(``OPEN_ACK``, ``CLOSE_ACK``), which carry the id they acknowledge.

=================== ============== ============================================
command             param1         param2, then body
=================== ============== ============================================
VERSION, _ACK       version        features
OPEN                lcid           name length incl. NUL; the name
OPEN_ACK, CLOSE_ACK acked id       0
CLOSE               lcid           0
INTENT              lcid           count; count x {size le32, iid le32}
RX_DONE(_W_REUSE)   lcid           iid
RX_INTENT_REQ       lcid           size
RX_INTENT_REQ_ACK   lcid           1 granted, 0 denied
TX_DATA, _CONT      lcid           iid; chunk_size le32, left_size le32; data
READ_NOTIF          0              0 (kick me once you have read)
SIGNALS             lcid           signal bits (DTR/DSR bit 31, RTS/CTS bit 30)
=================== ============== ============================================

**The edge** (amplink's own layout: real GLINK finds its FIFOs in Qualcomm's SMEM, which
amplink does not model).  A vendor resource entry (type :data:`RSC_AMPLINK_GLINK`) in
the firmware's resource table asks for one edge; the host gives it memory and writes
the address back, as it does for vrings.  Entry body, 16 bytes of le32:

====== ============ ================================================================
offset field        meaning
====== ============ ================================================================
0      version      1
4      da           where the edge is (``FW_RSC_ADDR_ANY``: the host places it)
8      fifo_size    bytes per direction, a power of two, 1 KiB..1 MiB
12     max_message  the largest message either side accepts (≥ 1)
====== ============ ================================================================

Edge memory: a 128-byte header, then the host→remote FIFO, then the remote→host FIFO.
Each side writes only its own cache line of the header (one writer per word):

====== =============================================================================
offset word (all le32)
====== =============================================================================
0      host→remote head (host writes)
4      remote→host tail (host writes)
8      host polls: do not kick it after writing (host writes)
64     remote→host head (remote writes)
68     host→remote tail (remote writes)
72     remote polls: do not kick it after writing (remote writes)
====== =============================================================================
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from amplink.errors import ResourceTableError
from amplink.wire import rsc_table as rt

VERSION = 0
VERSION_ACK = 1
OPEN = 2
CLOSE = 3
OPEN_ACK = 4
INTENT = 5
RX_DONE = 6
RX_INTENT_REQ = 7
RX_INTENT_REQ_ACK = 8
TX_DATA = 9
CLOSE_ACK = 11
TX_DATA_CONT = 12
READ_NOTIF = 13
RX_DONE_W_REUSE = 14
SIGNALS = 15

COMMAND_NAMES = {
    VERSION: "VERSION",
    VERSION_ACK: "VERSION_ACK",
    OPEN: "OPEN",
    CLOSE: "CLOSE",
    OPEN_ACK: "OPEN_ACK",
    INTENT: "INTENT",
    RX_DONE: "RX_DONE",
    RX_INTENT_REQ: "RX_INTENT_REQ",
    RX_INTENT_REQ_ACK: "RX_INTENT_REQ_ACK",
    TX_DATA: "TX_DATA",
    CLOSE_ACK: "CLOSE_ACK",
    TX_DATA_CONT: "TX_DATA_CONT",
    READ_NOTIF: "READ_NOTIF",
    RX_DONE_W_REUSE: "RX_DONE_W_REUSE",
    SIGNALS: "SIGNALS",
}

GLINK_VERSION = 1
FEATURE_INTENTLESS = 1 << 1
SIG_DTR_DSR = 1 << 31
SIG_RTS_CTS = 1 << 30
MAX_CHUNK = 8192  # a blocking send fragments into chunks of at most this many bytes
MAX_CID = 0xFFFF

HDR = struct.Struct("<HHI")
DATA_HDR = struct.Struct("<HHIII")  # HDR + chunk_size + left_size
INTENT_PAIR = struct.Struct("<II")
NAME_MAX = 32  # with its NUL, as rpmsg channel names


def pad8(n: int) -> int:
    """``n`` rounded up to a multiple of 8 (GLINK pads every command)."""
    return (n + 7) & ~7


def command(cmd: int, param1: int = 0, param2: int = 0, body: bytes = b"") -> bytes:
    """One command, header and body, padded to 8 bytes."""
    raw = HDR.pack(cmd, param1, param2) + body
    return raw + bytes(pad8(len(raw)) - len(raw))


def open_command(lcid: int, name: str) -> bytes:
    """An OPEN command for channel ``lcid`` named ``name`` (padded)."""
    encoded = name.encode() + b"\0"
    if len(encoded) > NAME_MAX:
        raise ValueError(f"GLINK channel name {name!r} is longer than {NAME_MAX - 1} bytes")
    return command(OPEN, lcid, len(encoded), encoded)


def intent_command(lcid: int, intents: list[tuple[int, int]]) -> bytes:
    """INTENT advertising ``(size, iid)`` pairs."""
    body = b"".join(INTENT_PAIR.pack(size, iid) for size, iid in intents)
    return command(INTENT, lcid, len(intents), body)


def data_header(cmd: int, lcid: int, iid: int, chunk: int, left: int) -> bytes:
    """The 16-byte header of a TX_DATA or TX_DATA_CONT command."""
    return DATA_HDR.pack(cmd, lcid, iid, chunk, left)


# -- the edge --------------------------------------------------------------------------
RSC_AMPLINK_GLINK = 129
EDGE_BODY = struct.Struct("<IIII")
EDGE_VERSION = 1
EDGE_HEADER_SIZE = 128
HOST_WORDS = 0  # host→remote head, remote→host tail, host polls
REMOTE_WORDS = 64  # remote→host head, host→remote tail, remote polls
MIN_FIFO = 1024
MAX_FIFO = 1 << 20
DEFAULT_FIFO_SIZE = 32768
DEFAULT_MAX_MESSAGE = 65536
EDGE_DA_OFF = rt.TYPE_SIZE + 4  # in the loaded table, from the entry's type word


@dataclass(frozen=True)
class GlinkEdgeSpec:
    """What a firmware's GLINK entry asks for (and, once loaded, where the edge is)."""

    da: int = rt.FW_RSC_ADDR_ANY
    fifo_size: int = DEFAULT_FIFO_SIZE
    max_message: int = DEFAULT_MAX_MESSAGE

    def __post_init__(self) -> None:
        size = self.fifo_size
        if not MIN_FIFO <= size <= MAX_FIFO or size & (size - 1):
            raise ResourceTableError(
                "glink-fifo",
                f"GLINK edge: fifo_size {size} is not a power of two in {MIN_FIFO}..{MAX_FIFO}",
                errno.EINVAL,
            )
        if self.max_message < 1:
            raise ResourceTableError(
                "glink-max-message", "GLINK edge: max_message must be at least 1", errno.EINVAL
            )

    @property
    def size(self) -> int:
        """Bytes of edge memory: the header and both FIFOs."""
        return EDGE_HEADER_SIZE + 2 * self.fifo_size

    def entry(self) -> rt.OpaqueEntry:
        """This edge as a vendor resource-table entry."""
        return rt.OpaqueEntry(
            RSC_AMPLINK_GLINK,
            EDGE_BODY.pack(EDGE_VERSION, self.da, self.fifo_size, self.max_message),
        )

    @classmethod
    def from_entry(cls, entry: rt.OpaqueEntry) -> GlinkEdgeSpec:
        """Decode and check a vendor entry of type 129."""
        version, da, fifo_size, max_message = entry.unpack(EDGE_BODY, "GLINK edge entry")
        if version != EDGE_VERSION:
            raise ResourceTableError(
                "version",
                f"GLINK edge entry: version {version} (expected {EDGE_VERSION})",
                errno.EINVAL,
            )
        return cls(da, fifo_size, max_message)

    @classmethod
    def of(cls, table: rt.ResourceTable) -> tuple[rt.OpaqueEntry, GlinkEdgeSpec] | None:
        """The table's GLINK edge entry and what it says, if it has one."""
        for e in table.entries:
            if isinstance(e, rt.OpaqueEntry) and e.type == RSC_AMPLINK_GLINK:
                return e, cls.from_entry(e)
        return None
