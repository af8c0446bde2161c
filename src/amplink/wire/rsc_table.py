"""The remoteproc resource table: parse, validate and build.

Layout (all u32 unless noted, packed, host-native endian)::

    ver | num | reserved[2] | offset[num] | entries...

Each entry is ``u32 type`` followed by a body whose layout depends on the type.  The
parser enforces every rule the Linux remoteproc core enforces, and a few stricter ones
that the kernel leaves to luck (an entry offset pointing into the header, a vring count
that is not a power of two); each violation raises :class:`ResourceTableError` with a
stable ``rule`` name.

Parsed entries remember their offset in the table (``entry.offset``, the offset of the
type word), so a host can update fields in place in the loaded copy: see the
``*_OFF`` constants for field offsets relative to an entry's type word.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from amplink.errors import ResourceTableError
from amplink.wire.rpmsg import decode_name

log = logging.getLogger(__name__)

RSC_CARVEOUT = 0
RSC_DEVMEM = 1
RSC_TRACE = 2
RSC_VDEV = 3
RSC_LAST = 4
RSC_VENDOR_START = 128
RSC_VENDOR_END = 512
FW_RSC_ADDR_ANY = 0xFFFFFFFF
RVDEV_NUM_VRINGS = 2

RSC_NAME_SIZE = 32
HEADER = struct.Struct("=IIII")
U32 = struct.Struct("=I")
CARVEOUT_BODY = struct.Struct(f"=IIIII{RSC_NAME_SIZE}s")  # 52 bytes; DEVMEM identical
TRACE_BODY = struct.Struct(f"=III{RSC_NAME_SIZE}s")  # 44 bytes
VDEV_BODY = struct.Struct("=IIIIIBBBB")  # 24 bytes
VRING = struct.Struct("=IIIII")  # 20 bytes

# Field offsets relative to the entry's type word (entry.offset), for in-place updates.
TYPE_SIZE = 4
CARVEOUT_DA_OFF = TYPE_SIZE + 0
CARVEOUT_PA_OFF = TYPE_SIZE + 4
CARVEOUT_LEN_OFF = TYPE_SIZE + 8
VDEV_NOTIFYID_OFF = TYPE_SIZE + 4
VDEV_DFEATURES_OFF = TYPE_SIZE + 8
VDEV_GFEATURES_OFF = TYPE_SIZE + 12
VDEV_STATUS_OFF = TYPE_SIZE + 20
VDEV_VRINGS_OFF = TYPE_SIZE + VDEV_BODY.size
VRING_DA_OFF = 0
VRING_NOTIFYID_OFF = 12
VRING_PA_OFF = 16


def _fail(rule: str, message: str) -> ResourceTableError:
    return ResourceTableError(rule, f"resource table: {message}")


def _encode_rsc_name(name: str, what: str) -> bytes:
    raw = name.encode()
    if len(raw) >= RSC_NAME_SIZE:
        raise _fail("name", f"{what} name {name!r} is longer than {RSC_NAME_SIZE - 1} bytes")
    return raw


@dataclass(slots=True)
class _MemoryEntry:
    """The layout CARVEOUT and DEVMEM share: da, pa, len, flags, reserved, name[32]."""

    da: int
    pa: int
    len: int
    flags: int = 0
    name: str = ""
    offset: int = field(default=-1, compare=False)

    TYPE: ClassVar[int]
    KIND: ClassVar[str]

    def body(self) -> bytes:
        name = _encode_rsc_name(self.name, self.KIND)
        return CARVEOUT_BODY.pack(self.da, self.pa, self.len, self.flags, 0, name)


@dataclass(slots=True)
class Carveout(_MemoryEntry):
    """Physically contiguous memory the remote needs (``fw_rsc_carveout``)."""

    TYPE = RSC_CARVEOUT
    KIND = "carveout"


@dataclass(slots=True)
class Devmem(_MemoryEntry):
    """A device memory region to map for the remote (``fw_rsc_devmem``)."""

    TYPE = RSC_DEVMEM
    KIND = "devmem"


@dataclass(slots=True)
class Trace:
    """A trace (log) buffer the remote writes and the host reads (``fw_rsc_trace``)."""

    da: int
    len: int
    name: str = ""
    offset: int = field(default=-1, compare=False)

    TYPE = RSC_TRACE

    def body(self) -> bytes:
        """The entry's body in wire order."""
        return TRACE_BODY.pack(self.da, self.len, 0, _encode_rsc_name(self.name, "trace"))


@dataclass(slots=True)
class Vring:
    """One vring of a vdev (``fw_rsc_vdev_vring``); ``pa`` was ``reserved`` in older kernels."""

    da: int
    align: int
    num: int
    notifyid: int = 0
    pa: int = 0

    def pack(self) -> bytes:
        """The 20-byte vring descriptor of a vdev entry."""
        return VRING.pack(self.da, self.align, self.num, self.notifyid, self.pa)


@dataclass(slots=True)
class Vdev:
    """A virtio device offered by the firmware (``fw_rsc_vdev``) with its vrings and config."""

    id: int
    notifyid: int = 0
    dfeatures: int = 0
    gfeatures: int = 0
    status: int = 0
    vrings: list[Vring] = field(default_factory=list)
    config: bytes = b""
    offset: int = field(default=-1, compare=False)

    TYPE = RSC_VDEV

    def body(self) -> bytes:
        """The entry's body in wire order (with its vrings and config space)."""
        if len(self.vrings) > RVDEV_NUM_VRINGS:
            raise _fail("vrings", f"a vdev has at most {RVDEV_NUM_VRINGS} vrings")
        head = VDEV_BODY.pack(
            self.id,
            self.notifyid,
            self.dfeatures,
            self.gfeatures,
            len(self.config),
            self.status,
            len(self.vrings),
            0,
            0,
        )
        return head + b"".join(v.pack() for v in self.vrings) + self.config


@dataclass(slots=True)
class OpaqueEntry:
    """An entry amplink does not interpret: a vendor type (128..512) or an unknown one.

    The body runs to the next entry (or the end of the table) and is kept verbatim, so
    that vendor drivers can interpret it and tables round-trip.
    """

    type: int
    data: bytes = b""
    offset: int = field(default=-1, compare=False)

    @property
    def vendor(self) -> bool:
        """True for a vendor-specific type (128..512)."""
        return RSC_VENDOR_START <= self.type <= RSC_VENDOR_END

    def body(self) -> bytes:
        """The entry's body, as read."""
        return self.data

    def unpack(self, layout: struct.Struct, what: str) -> tuple[int, ...]:
        """The body decoded with ``layout``; ``truncated`` if it is shorter."""
        if len(self.data) < layout.size:
            raise ResourceTableError(
                "truncated", f"{what}: {len(self.data)} of {layout.size} bytes"
            )
        return layout.unpack_from(self.data)


Entry = Carveout | Devmem | Trace | Vdev | OpaqueEntry


@dataclass(slots=True)
class ResourceTable:
    """A whole resource table: its entries in table order."""

    entries: list[Entry] = field(default_factory=list)

    def build(self) -> bytes:
        """Serialise: header, offset array, then the entries back to back."""
        bodies = [(entry_type(e), e.body()) for e in self.entries]
        offsets = []
        pos = HEADER.size + 4 * len(bodies)
        for _, body in bodies:
            offsets.append(pos)
            pos += TYPE_SIZE + len(body)
        out = bytearray(HEADER.pack(1, len(bodies), 0, 0))
        for off in offsets:
            out += U32.pack(off)
        for rtype, body in bodies:
            out += U32.pack(rtype) + body
        return bytes(out)

    def vdevs(self) -> list[Vdev]:
        """The vdev entries, in table order."""
        return [e for e in self.entries if isinstance(e, Vdev)]

    def traces(self) -> list[Trace]:
        """The trace entries, in table order."""
        return [e for e in self.entries if isinstance(e, Trace)]

    def carveouts(self) -> list[Carveout]:
        """The carveout entries, in table order."""
        return [e for e in self.entries if isinstance(e, Carveout)]


def entry_type(entry: Entry) -> int:
    """The type word of ``entry`` (``RSC_CARVEOUT``... or the vendor/unknown type)."""
    return entry.type if isinstance(entry, OpaqueEntry) else entry.TYPE


def parse(data: bytes | bytearray | memoryview) -> ResourceTable:
    """Parse and validate a resource table; raise ResourceTableError on any violation."""
    buf = bytes(data)
    size = len(buf)
    if size < HEADER.size:
        raise _fail("truncated", f"{size} bytes is shorter than the 16-byte header")
    ver, num, res0, res1 = HEADER.unpack_from(buf)
    if ver != 1:
        raise _fail("version", f"unsupported version {ver} (only version 1 exists)")
    if res0 or res1:
        raise _fail("reserved", f"header reserved words must be zero, got {res0:#x}, {res1:#x}")
    header_end = HEADER.size + 4 * num
    if header_end > size:
        raise _fail("truncated", f"{num} entries need a {header_end}-byte header, table has {size}")
    offsets = [U32.unpack_from(buf, HEADER.size + 4 * i)[0] for i in range(num)]
    for i, off in enumerate(offsets):
        if off < header_end:
            raise _fail("offset", f"entry {i} offset {off:#x} points into the header")
        if off + TYPE_SIZE > size:
            raise _fail("offset", f"entry {i} offset {off:#x} lies outside the {size}-byte table")
    ends = [*sorted(set(offsets)), size]
    entries: list[Entry] = []
    for i, off in enumerate(offsets):
        rtype = U32.unpack_from(buf, off)[0]
        body_off = off + TYPE_SIZE
        avail = size - body_off
        nxt = ends[ends.index(off) + 1]
        entries.append(_parse_entry(buf, i, rtype, off, body_off, avail, nxt))
    return ResourceTable(entries)


def _need(i: int, what: str, need: int, avail: int) -> None:
    if avail < need:
        raise _fail("truncated", f"entry {i} ({what}) needs {need} bytes, only {avail} remain")


def _parse_entry(
    buf: bytes, i: int, rtype: int, off: int, body: int, avail: int, nxt: int
) -> Entry:
    if rtype in (RSC_CARVEOUT, RSC_DEVMEM):
        cls: type[Carveout] | type[Devmem] = Carveout if rtype == RSC_CARVEOUT else Devmem
        what = cls.KIND
        _need(i, what, CARVEOUT_BODY.size, avail)
        da, pa, length, flags, reserved, name = CARVEOUT_BODY.unpack_from(buf, body)
        if reserved:
            raise _fail("reserved", f"entry {i} ({what}) reserved word is {reserved:#x}")
        return cls(da, pa, length, flags, decode_name(name), offset=off)
    if rtype == RSC_TRACE:
        _need(i, "trace", TRACE_BODY.size, avail)
        da, length, reserved, name = TRACE_BODY.unpack_from(buf, body)
        if reserved:
            raise _fail("reserved", f"entry {i} (trace) reserved word is {reserved:#x}")
        return Trace(da, length, decode_name(name), offset=off)
    if rtype == RSC_VDEV:
        return _parse_vdev(buf, i, off, body, avail)
    if not (RSC_VENDOR_START <= rtype <= RSC_VENDOR_END):
        log.warning("resource table entry %d: unsupported type %d, skipped", i, rtype)
    return OpaqueEntry(rtype, buf[body:nxt], offset=off)


def _parse_vdev(buf: bytes, i: int, off: int, body: int, avail: int) -> Vdev:
    _need(i, "vdev", VDEV_BODY.size, avail)
    vid, notifyid, dfeat, gfeat, cfg_len, status, nvr, r0, r1 = VDEV_BODY.unpack_from(buf, body)
    if r0 or r1:
        raise _fail("reserved", f"entry {i} (vdev) reserved bytes are {r0:#x}, {r1:#x}")
    if nvr > RVDEV_NUM_VRINGS:
        raise _fail(
            "vrings", f"entry {i} (vdev) has {nvr} vrings, at most {RVDEV_NUM_VRINGS} allowed"
        )
    need = VDEV_BODY.size + VRING.size * nvr + cfg_len
    _need(i, "vdev with vrings and config space", need, avail)
    vrings = []
    for j in range(nvr):
        da, align, num, vnotify, pa = VRING.unpack_from(buf, body + VDEV_BODY.size + VRING.size * j)
        if num == 0:
            raise _fail("vring-num", f"entry {i} (vdev) vring {j} has num 0")
        if num & (num - 1):
            raise _fail("vring-num", f"entry {i} (vdev) vring {j} num {num} is not a power of two")
        if align == 0:
            raise _fail("vring-align", f"entry {i} (vdev) vring {j} has align 0")
        vrings.append(Vring(da, align, num, vnotify, pa))
    cfg_off = body + VDEV_BODY.size + VRING.size * nvr
    config = buf[cfg_off : cfg_off + cfg_len]
    return Vdev(vid, notifyid, dfeat, gfeat, status, vrings, config, offset=off)
