"""The vhost-user messages a virtio device process exchanges with its front end.

vhost-user is how a virtual machine monitor (QEMU, or User-Mode Linux's ``virtio_uml``)
hands a virtio device's rings to another process: requests over a UNIX stream socket,
file descriptors (guest memory, kick and call notifiers) passed alongside as
``SCM_RIGHTS``.  This module only encodes and decodes the bytes, and checks every
length and count a front end sends; the socket and the fds are
:mod:`amplink.transport.vhost_user`'s.

Numbers are host-native (the protocol says so); ``=`` keeps the standard sizes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from amplink.errors import WireError

HEADER = struct.Struct("=III")  # request, flags, size
HEADER_SIZE = HEADER.size
VERSION = 0x1
VERSION_MASK = 0x3
FLAG_REPLY = 1 << 2
FLAG_NEED_REPLY = 1 << 3
MAX_PAYLOAD = 4096  # far above any request handled here; a larger size is an error
MAX_REGIONS = 8  # VHOST_MEMORY_MAX_NREGIONS
MAX_CONFIG_SIZE = 256  # VHOST_USER_MAX_CONFIG_SIZE: the config window's limit
MAX_FDS = MAX_REGIONS

F_PROTOCOL_FEATURES = 30  # VHOST_USER_F_PROTOCOL_FEATURES, a device feature bit
PROTOCOL_F_MQ = 0
PROTOCOL_F_REPLY_ACK = 3
PROTOCOL_F_SLAVE_REQ = 5
PROTOCOL_F_CONFIG = 9

VRING_INDEX_MASK = 0xFF
VRING_NOFD = 1 << 8  # in SET_VRING_KICK/CALL: no fd, the ring is polled

U64 = struct.Struct("=Q")
VRING_STATE = struct.Struct("=II")  # index, num
VRING_ADDR = struct.Struct("=IIQQQQ")  # index, flags, desc, used, avail, log
MEM_TABLE_HEAD = struct.Struct("=II")  # nregions, padding
MEM_REGION = struct.Struct("=QQQQ")  # guest_phys_addr, memory_size, userspace_addr, mmap_offset
CONFIG_HEAD = struct.Struct("=III")  # offset, size, flags


class Request(IntEnum):
    """``enum vhost_user_request`` (front end to device)."""

    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_SLAVE_REQ_FD = 21
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25


@dataclass(frozen=True, slots=True)
class Header:
    """The 12 bytes in front of every message."""

    request: int
    flags: int
    size: int

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        """Decode and check a header: version 1, a payload size this side accepts."""
        if len(data) != HEADER_SIZE:
            raise WireError("truncated", f"vhost-user header of {len(data)} bytes, need 12")
        request, flags, size = HEADER.unpack(data)
        if flags & VERSION_MASK != VERSION:
            raise WireError(
                "version", f"vhost-user version {flags & VERSION_MASK} (flags {flags:#x}); want 1"
            )
        if size > MAX_PAYLOAD:
            raise WireError("size", f"vhost-user payload of {size} bytes (limit {MAX_PAYLOAD})")
        return cls(request, flags, size)

    @property
    def need_reply(self) -> bool:
        """The front end waits for an acknowledgement (REPLY_ACK negotiated)."""
        return bool(self.flags & FLAG_NEED_REPLY)


def reply(request: int, payload: bytes) -> bytes:
    """A reply to ``request``: version 1 with the REPLY flag (flags exactly 0x5)."""
    return HEADER.pack(request, VERSION | FLAG_REPLY, len(payload)) + payload


def message(request: int, payload: bytes = b"", *, need_reply: bool = False) -> bytes:
    """A request as a front end sends it (used by test front ends)."""
    flags = VERSION | (FLAG_NEED_REPLY if need_reply else 0)
    return HEADER.pack(request, flags, len(payload)) + payload


def _exact(what: str, payload: bytes, st: struct.Struct) -> tuple[int, ...]:
    if len(payload) < st.size:
        raise WireError("truncated", f"{what} payload of {len(payload)} bytes, need {st.size}")
    return st.unpack_from(payload)


def u64(payload: bytes, what: str) -> int:
    """A request whose payload is one u64 (features, kick/call index and flags)."""
    return _exact(what, payload, U64)[0]


@dataclass(frozen=True, slots=True)
class VringState:
    """``struct vhost_vring_state``: a queue index and a number (size or base)."""

    index: int
    num: int

    @classmethod
    def unpack(cls, payload: bytes) -> VringState:
        """Decode the payload of SET_VRING_NUM/BASE/ENABLE or GET_VRING_BASE."""
        index, num = _exact("vring state", payload, VRING_STATE)
        return cls(index, num)

    def pack(self) -> bytes:
        """The 8-byte payload."""
        return VRING_STATE.pack(self.index, self.num)


@dataclass(frozen=True, slots=True)
class VringAddr:
    """``struct vhost_vring_addr``: where a queue's three parts are, in the front end's
    user (virtual) addresses."""

    index: int
    flags: int
    desc: int
    used: int
    avail: int
    log: int = 0

    @classmethod
    def unpack(cls, payload: bytes) -> VringAddr:
        """Decode the payload of SET_VRING_ADDR."""
        return cls(*_exact("vring address", payload, VRING_ADDR))

    def pack(self) -> bytes:
        """The 40-byte payload."""
        return VRING_ADDR.pack(self.index, self.flags, self.desc, self.used, self.avail, self.log)


@dataclass(frozen=True, slots=True)
class MemRegion:
    """One region of guest memory: its guest-physical and front-end virtual address,
    its size, and where it starts in the file descriptor passed with it."""

    guest_addr: int
    size: int
    user_addr: int
    mmap_offset: int

    def pack(self) -> bytes:
        """The 32-byte region record."""
        return MEM_REGION.pack(self.guest_addr, self.size, self.user_addr, self.mmap_offset)


def unpack_mem_table(payload: bytes) -> list[MemRegion]:
    """Decode SET_MEM_TABLE: a count, padding, then that many region records; every
    region must be non-empty and not wrap around the 64-bit address space."""
    nregions, _pad = _exact("memory table", payload, MEM_TABLE_HEAD)
    if not 0 < nregions <= MAX_REGIONS:
        raise WireError("regions", f"memory table with {nregions} regions (1..{MAX_REGIONS})")
    need = MEM_TABLE_HEAD.size + nregions * MEM_REGION.size
    if len(payload) < need:
        raise WireError(
            "truncated",
            f"memory table of {nregions} regions needs {need} bytes, got {len(payload)}",
        )
    regions = []
    for i in range(nregions):
        r = MemRegion(*MEM_REGION.unpack_from(payload, MEM_TABLE_HEAD.size + i * MEM_REGION.size))
        for what, base in (("guest", r.guest_addr), ("user", r.user_addr)):
            if r.size == 0 or base + r.size > 1 << 64:
                raise WireError(
                    "region", f"memory region {i}: {what} range {base:#x}+{r.size:#x} is invalid"
                )
        regions.append(r)
    return regions


def pack_mem_table(regions: list[MemRegion]) -> bytes:
    """The SET_MEM_TABLE payload for ``regions`` (used by test front ends)."""
    return MEM_TABLE_HEAD.pack(len(regions), 0) + b"".join(r.pack() for r in regions)


@dataclass(frozen=True, slots=True)
class ConfigRequest:
    """GET/SET_CONFIG: a window into the device's config space."""

    offset: int
    size: int
    flags: int

    @classmethod
    def unpack(cls, payload: bytes) -> ConfigRequest:
        """Decode the fixed part of a GET/SET_CONFIG payload."""
        return cls(*_exact("config", payload, CONFIG_HEAD))

    @property
    def in_bounds(self) -> bool:
        """The window lies within the protocol's 256 bytes of config space."""
        return self.size <= MAX_CONFIG_SIZE and self.offset <= MAX_CONFIG_SIZE - self.size

    def __str__(self) -> str:
        return f"{self.size} bytes at offset {self.offset} (limit {MAX_CONFIG_SIZE})"
