"""What host and core agree on beyond the resource table's standard entries.

**Mailbox messages** (TI's ``omap_rp_mbox_messages`` with the K3 graceful-shutdown
numbering): 32-bit words on the same channel as vring kicks; anything below
``RP_MBOX_READY`` is a vring notify id.

**The amplink features entry**, a vendor resource (type :data:`RSC_AMPLINK_FEATURES`,
in Linux's vendor range 128..512) that tells the host what the firmware supports, as
the reviewers of the K3 series asked for (NXP uses a similar vendor flag).  Body,
16 bytes, little-endian u32s:

====== ============ ==============================================================
offset field        meaning
====== ============ ==============================================================
0      version      1
4      features     bit 0: the firmware answers ``RP_MBOX_SHUTDOWN`` (graceful
                    shutdown); bit 1: the firmware kicks a watchdog
8      watchdog_ms  the watchdog period: no heartbeat for this long is a crash
12     reserved     0
====== ============ ==============================================================

A table without the entry means: no handshake (stop resets the core at once), no
watchdog.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from amplink.errors import ResourceTableError
from amplink.wire import rsc_table as rt

RP_MBOX_READY = 0xFFFFFF00
RP_MBOX_PENDING_MSG = 0xFFFFFF01
RP_MBOX_CRASH = 0xFFFFFF02
RP_MBOX_ECHO_REQUEST = 0xFFFFFF03
RP_MBOX_ECHO_REPLY = 0xFFFFFF04
RP_MBOX_ABORT_REQUEST = 0xFFFFFF05
RP_MBOX_SHUTDOWN = 0xFFFFFF14
RP_MBOX_SHUTDOWN_ACK = 0xFFFFFF15
RP_MBOX_END_MSG = 0xFFFFFF16

RSC_AMPLINK_FEATURES = 128
FEATURES_BODY = struct.Struct("<IIII")
FEATURES_VERSION = 1
F_GRACEFUL_SHUTDOWN = 1 << 0
F_WATCHDOG = 1 << 1


@dataclass(frozen=True)
class Features:
    """What the firmware's features entry says (all off without one)."""

    graceful_shutdown: bool = False
    watchdog_ms: int = 0

    def entry(self) -> rt.OpaqueEntry:
        """The vendor entry that announces these features."""
        bits = (F_GRACEFUL_SHUTDOWN if self.graceful_shutdown else 0) | (
            F_WATCHDOG if self.watchdog_ms else 0
        )
        return rt.OpaqueEntry(
            RSC_AMPLINK_FEATURES, FEATURES_BODY.pack(FEATURES_VERSION, bits, self.watchdog_ms, 0)
        )

    @classmethod
    def from_entry(cls, entry: rt.OpaqueEntry) -> Features:
        """Decode and check amplink's features entry."""
        version, bits, watchdog_ms, reserved = entry.unpack(FEATURES_BODY, "amplink features entry")
        if version != FEATURES_VERSION or reserved:
            raise ResourceTableError(
                "version",
                f"amplink features entry: version {version}, reserved {reserved:#x} "
                f"(expected {FEATURES_VERSION} and 0)",
                errno.EINVAL,
            )
        return cls(bool(bits & F_GRACEFUL_SHUTDOWN), watchdog_ms if bits & F_WATCHDOG else 0)

    @classmethod
    def of(cls, table: rt.ResourceTable) -> Features:
        """The features announced in ``table`` (the first features entry)."""
        for e in table.entries:
            if isinstance(e, rt.OpaqueEntry) and e.type == RSC_AMPLINK_FEATURES:
                return cls.from_entry(e)
        return cls()
