"""amplink's GLINK edge: the resource entry that asks for one, and its memory layout.

Real GLINK finds its FIFOs in Qualcomm's SMEM, which amplink does not model; the
commands that travel through them are in :mod:`amplink.wire.glink`.

A vendor resource entry (type :data:`RSC_AMPLINK_GLINK`) in the firmware's resource
table asks for one edge; the host gives it memory and writes
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
12     host waits for an intent: kick it after writing only ``RX_DONE`` s (host writes)
64     remote→host head (remote writes)
68     host→remote tail (remote writes)
72     remote polls: do not kick it after writing (remote writes)
76     remote waits for an intent: kick it after writing only ``RX_DONE`` s (remote writes)
====== =============================================================================

A writer kicks the reader after writing unless the reader's polling word (8/72) is
set (it spins on its FIFO, or is reading it until it is empty), and, unless a sender
there waits for an intent (12/76, below), kicks once until the reader's tail has
passed what that kick was for: a kicked reader reads until its FIFO is empty, clears
its polling word, and after a fence looks at the head once more before it stops, so
what was written meanwhile is found without a kick (but ``RX_DONE`` s alone, below).
A sender that waits inside its
side's receive context clears that side's polling word first: it is not reading on.

A side that writes nothing but ``RX_DONE`` commands (intents given back) kicks the
other only while the other's word at 12/76 says a sender there waits for an intent
(a blocked send, a readiness waiter, or a send that found none since its last one):
a side that has intents to spare reads them back when it next reads its FIFO, and
one notification per message, not two, crosses the edge.  So a reader that stops (or a
spinning one) counts up to 8 ``RX_DONE`` s written after its last read as nothing while
its own word at 12/76 is clear, and takes them first when it next reads: a receiver
whose message is in does not wait for the one the peer writes after its reply (that
peer's callback returned).  The host goes further and
holds its ``RX_DONE`` s back until it writes another command or the remote's word
says it waits; the remote kicks the host as it sets the word.  The remote writes
its own after each batch it has read: the host counts what a dead core never
consumed from the intents that did not come back.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from amplink.errors import ResourceTableError
from amplink.wire import rsc_table as rt

RSC_AMPLINK_GLINK = 129
EDGE_BODY = struct.Struct("<IIII")
EDGE_VERSION = 1
EDGE_HEADER_SIZE = 128
HOST_WORDS = 0  # host→remote head, remote→host tail, host polls, host waits for an intent
REMOTE_WORDS = 64  # remote→host head, host→remote tail, remote polls, remote waits...
MIN_FIFO = 1024
MAX_FIFO = 1 << 20
DEFAULT_FIFO_SIZE = 131072
DEFAULT_MAX_MESSAGE = 65536
EDGE_DA_OFF = rt.TYPE_SIZE + 4  # in the loaded table, from the entry's type word
EDGE_NOTIFYID = 0  # the kick word that means "look at the edge", both ways


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
