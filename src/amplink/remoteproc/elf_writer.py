"""Writing ELF files: packed firmware images (ELF64) and core dumps (the class of the
firmware they dump: ELF32 for a Cortex-M).

pyelftools only reads ELF, so amplink writes the few shapes it produces itself: a
header, an optional ``PT_NOTE`` segment (a core dump's registers), one program header
per segment and, optionally, named sections with a section-name string table.  Every
image written here is read back with pyelftools in the tests, and ``readelf``
accepts it.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
EHDR32 = struct.Struct("<16sHHIIIIIHHHHHH")
PHDR32 = struct.Struct("<IIIIIIII")
SHDR32 = struct.Struct("<IIIIIIIIII")
NHDR = struct.Struct("<III")
ET_EXEC = 2
ET_CORE = 4
EM_NONE = 0
EM_ARM = 40
PT_LOAD = 1
PT_NOTE = 4
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


@dataclass(frozen=True)
class Note:
    """One ELF note: ``desc`` of type ``type`` from ``name`` (``CORE``, ``LINUX``...)."""

    name: str
    type: int
    desc: bytes

    def encode(self) -> bytes:
        """The note as it is in a PT_NOTE segment (name and desc padded to 4 bytes)."""
        name = self.name.encode() + b"\0"
        out = NHDR.pack(len(name), len(self.desc), self.type) + name + bytes(-len(name) % 4)
        return out + self.desc + bytes(-len(self.desc) % 4)


def write_elf(
    segments: list[OutSegment],
    *,
    elf_type: int,
    machine: int = EM_NONE,
    entry: int = 0,
    elfclass: int = 64,
    notes: Sequence[Note] = (),
) -> bytes:
    """An ELF file (``elfclass`` 64 or 32) in host byte order (little-endian hosts
    only) with ``segments``, after a PT_NOTE segment holding ``notes`` if any."""
    if sys.byteorder != "little":  # pragma: no cover - every supported host is LE
        raise NotImplementedError("writing big-endian ELF files")
    ehdr, phdr, shdr = (EHDR, PHDR, SHDR) if elfclass == 64 else (EHDR32, PHDR32, SHDR32)
    note_data = b"".join(n.encode() for n in notes)
    named = [s for s in segments if s.section]
    shstrtab = b"\0"
    name_off = {}
    for s in named:
        assert s.section is not None
        name_off[s.section] = len(shstrtab)
        shstrtab += s.section.encode() + b"\0"
    shstrtab_name = len(shstrtab)
    shstrtab += b".shstrtab\0"

    phoff = ehdr.size
    pos = phoff + phdr.size * (len(segments) + bool(notes))
    note_off = pos = -(-pos // 4) * 4
    pos += len(note_data)
    offsets = []
    for s in segments:
        pos = -(-pos // 16) * 16
        offsets.append(pos)
        pos += len(s.data)
    shstr_off = pos
    pos += len(shstrtab)
    shoff = -(-pos // 8) * 8 if named else 0
    shnum = len(named) + 2 if named else 0

    ident = b"\x7fELF" + bytes([elfclass // 32, 1, 1, 0]) + bytes(8)
    out = bytearray(
        ehdr.pack(
            ident, elf_type, machine, 1, entry, phoff, shoff, 0, ehdr.size, phdr.size,
            len(segments) + bool(notes), shdr.size if named else 0, shnum,
            shnum - 1 if named else 0,
        )
    )  # fmt: skip
    headers = [(PT_NOTE, 0, note_off, 0, len(note_data), 0)] if notes else []
    for s, off in zip(segments, offsets, strict=True):
        memsz = len(s.data) if s.memsz is None else s.memsz
        headers.append((PT_LOAD, s.flags, off, s.da, len(s.data), memsz))
    for kind, flags, off, da, filesz, memsz in headers:
        if elfclass == 64:
            out += PHDR.pack(kind, flags, off, da, da, filesz, memsz, 0)
        else:
            out += PHDR32.pack(kind, off, da, da, filesz, memsz, flags, 4 if kind == PT_NOTE else 0)
    out += bytes(note_off - len(out)) + note_data
    for s, off in zip(segments, offsets, strict=True):
        out += bytes(off - len(out)) + s.data
    out += shstrtab
    if named:
        out += bytes(shoff - len(out))
        out += bytes(shdr.size)  # the null section
        for s, off in zip(segments, offsets, strict=True):
            if s.section:
                nobits = not s.data and bool(s.memsz)  # like .bss: memory, no file bytes
                out += shdr.pack(
                    name_off[s.section], SHT_NOBITS if nobits else SHT_PROGBITS,
                    s.section_flags, s.da, off, s.memsz if nobits else len(s.data), 0, 0, 4, 0,
                )  # fmt: skip
        out += shdr.pack(shstrtab_name, SHT_STRTAB, 0, 0, shstr_off, len(shstrtab), 0, 0, 1, 0)
    return bytes(out)
