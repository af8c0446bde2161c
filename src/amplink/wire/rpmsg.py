"""The rpmsg message header and the name-service message.

Both are host-native endian: remoteproc vdevs never negotiate VIRTIO_F_VERSION_1, so the
legacy rule (device endianness = host endianness) applies, exactly as in Linux and
OpenAMP.  ``=`` in the struct formats means native order with standard sizes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from amplink.errors import WireError

RPMSG_HDR = struct.Struct("=IIIHH")
RPMSG_HDR_SIZE = RPMSG_HDR.size  # 16
RPMSG_NAME_SIZE = 32
RPMSG_NS_MSG = struct.Struct(f"={RPMSG_NAME_SIZE}sII")
RPMSG_NS_MSG_SIZE = RPMSG_NS_MSG.size  # 40
RPMSG_NS_CREATE = 0
RPMSG_NS_DESTROY = 1


@dataclass(frozen=True, slots=True)
class RpmsgHeader:
    """``struct rpmsg_hdr``: src, dst, reserved, len, flags (16 bytes, then the payload)."""

    src: int
    dst: int
    length: int
    flags: int = 0
    reserved: int = 0

    def pack(self) -> bytes:
        """The 16-byte header in wire order."""
        return RPMSG_HDR.pack(self.src, self.dst, self.reserved, self.length, self.flags)

    @classmethod
    def unpack(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> RpmsgHeader:
        """Decode a header at ``offset``; the payload it announces must fit in ``buf``."""
        if offset < 0 or offset + RPMSG_HDR_SIZE > len(buf):
            raise WireError(
                "truncated",
                f"rpmsg header needs {RPMSG_HDR_SIZE} bytes at offset {offset}, "
                f"buffer has {len(buf)}",
            )
        src, dst, reserved, length, flags = RPMSG_HDR.unpack_from(buf, offset)
        if offset + RPMSG_HDR_SIZE + length > len(buf):
            raise WireError(
                "length",
                f"rpmsg header announces {length} payload bytes but only "
                f"{len(buf) - offset - RPMSG_HDR_SIZE} follow it",
            )
        return cls(src, dst, length, flags, reserved)


def encode_name(name: str) -> bytes:
    """Encode a channel name for a 32-byte, NUL-terminated field (at most 31 bytes)."""
    raw = name.encode()
    if not raw or len(raw) >= RPMSG_NAME_SIZE or b"\0" in raw:
        raise WireError(
            "name",
            f"rpmsg name {name!r} must be 1..{RPMSG_NAME_SIZE - 1} bytes without NUL",
        )
    return raw


def decode_name(field: bytes) -> str:
    """Decode a 32-byte name field up to its first NUL.

    Bytes after the NUL are ignored: OpenAMP leaves uninitialised stack bytes there.
    Linux forces byte 31 to NUL, so a name is never longer than 31 bytes.
    """
    raw = field[: RPMSG_NAME_SIZE - 1].split(b"\0", 1)[0]
    return raw.decode(errors="replace")


@dataclass(frozen=True, slots=True)
class NsMessage:
    """``struct rpmsg_ns_msg``: a service announcement (create) or its withdrawal."""

    name: str
    addr: int
    flags: int = RPMSG_NS_CREATE

    @property
    def destroy(self) -> bool:
        """True for a destroy announcement (flags = RPMSG_NS_DESTROY)."""
        return bool(self.flags & RPMSG_NS_DESTROY)

    def pack(self) -> bytes:
        """The 40-byte name-service message."""
        return RPMSG_NS_MSG.pack(encode_name(self.name), self.addr, self.flags)

    @classmethod
    def unpack(cls, payload: bytes | bytearray | memoryview) -> NsMessage:
        """Decode an announcement; anything but exactly 40 bytes is malformed."""
        if len(payload) != RPMSG_NS_MSG_SIZE:
            raise WireError(
                "length",
                f"name-service message must be {RPMSG_NS_MSG_SIZE} bytes, got {len(payload)}",
            )
        name, addr, flags = RPMSG_NS_MSG.unpack_from(payload)
        return cls(decode_name(name), addr, flags)
