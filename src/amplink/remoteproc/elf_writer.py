"""Writing ELF64 files: packed firmware images and core dumps.

pyelftools only reads ELF, so amplink writes the few shapes it produces itself: a
header, one program header per segment and, optionally, named sections with a
section-name string table.  Every image written here is read back with pyelftools in
the tests, and ``readelf`` accepts it.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
ET_EXEC = 2
ET_CORE = 4
EM_NONE = 0
PT_LOAD = 1
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS = 1
SHT_STRTAB = 3
SHT_NOBITS = 8
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4


@dataclass(frozen=True)
class OutSegment:
    """A PT_LOAD segment: ``data`` at device address ``da``, ``memsz`` bytes in memory."""

    da: int
    data: bytes
    flags: int = PF_R | PF_W
    memsz: int | None = None
    section: str | None = None  # also describe it as a section of this name
    section_flags: int = SHF_ALLOC


def write_elf(
    segments: list[OutSegment], *, elf_type: int, machine: int = EM_NONE, entry: int = 0
) -> bytes:
    """An ELF64 file in host byte order (little-endian hosts only) with ``segments``."""
    if sys.byteorder != "little":  # pragma: no cover - every supported host is LE
        raise NotImplementedError("writing big-endian ELF files")
    named = [s for s in segments if s.section]
    shstrtab = b"\0"
    name_off = {}
    for s in named:
        assert s.section is not None
        name_off[s.section] = len(shstrtab)
        shstrtab += s.section.encode() + b"\0"
    shstrtab_name = len(shstrtab)
    shstrtab += b".shstrtab\0"

    phoff = EHDR.size
    pos = phoff + PHDR.size * len(segments)
    offsets = []
    for s in segments:
        pos = -(-pos // 16) * 16
        offsets.append(pos)
        pos += len(s.data)
    shstr_off = pos
    pos += len(shstrtab)
    shoff = -(-pos // 8) * 8 if named else 0
    shnum = len(named) + 2 if named else 0

    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    out = bytearray(
        EHDR.pack(
            ident, elf_type, machine, 1, entry, phoff, shoff, 0, EHDR.size, PHDR.size,
            len(segments), SHDR.size if named else 0, shnum, shnum - 1 if named else 0,
        )
    )  # fmt: skip
    for s, off in zip(segments, offsets, strict=True):
        memsz = len(s.data) if s.memsz is None else s.memsz
        out += PHDR.pack(PT_LOAD, s.flags, off, s.da, s.da, len(s.data), memsz, 0)
    for s, off in zip(segments, offsets, strict=True):
        out += bytes(off - len(out)) + s.data
    out += shstrtab
    if named:
        out += bytes(shoff - len(out))
        out += bytes(SHDR.size)  # the null section
        for s, off in zip(segments, offsets, strict=True):
            if s.section:
                nobits = not s.data and bool(s.memsz)  # like .bss: memory, no file bytes
                out += SHDR.pack(
                    name_off[s.section], SHT_NOBITS if nobits else SHT_PROGBITS,
                    s.section_flags, s.da, off, s.memsz if nobits else len(s.data), 0, 0, 4, 0,
                )  # fmt: skip
        out += SHDR.pack(shstrtab_name, SHT_STRTAB, 0, 0, shstr_off, len(shstrtab), 0, 0, 1, 0)
    return bytes(out)
