"""The in-memory format of a packed Python firmware program (see ``amplink fw pack``).

At the firmware's entry point: a 24-byte header (:data:`PY_MAGIC`, the source length
as a u32, 4 reserved bytes), then the UTF-8 source.  The core process decodes it from
*device memory*, so what runs is what the host's loader put there.
"""

from __future__ import annotations

import struct

from amplink.errors import WireError

PY_MAGIC = b"AMPLINK-PYTHON\0\0"
PY_HEADER = struct.Struct("<16sII")


def encode_program(source: str) -> bytes:
    """A Python program as loaded at the entry point: a header, then the UTF-8 source."""
    program = source.encode()
    return PY_HEADER.pack(PY_MAGIC, len(program), 0) + program


def program_length(header: bytes | memoryview) -> int:
    """The source length announced by a header; ``WireError`` if it is not one."""
    if len(header) < PY_HEADER.size:
        raise WireError("entry", "truncated packed-program header")
    magic, length, _reserved = PY_HEADER.unpack_from(header)
    if magic != PY_MAGIC:
        raise WireError("entry", "no packed Python program at the entry point")
    return int(length)


def decode_source(body: bytes | memoryview) -> str:
    """The source text of a program body; ``EINVAL`` if it is not UTF-8."""
    try:
        return bytes(body).decode()
    except UnicodeDecodeError as exc:
        raise WireError("entry", f"the packed program is not UTF-8: {exc}") from None
