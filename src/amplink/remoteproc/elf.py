"""Firmware images: ELF files read with pyelftools and checked like Linux's ELF loader.

:meth:`FirmwareImage.parse` applies the kernel's sanity checks (size, magic, class,
byte order, section and program header tables inside the file, at least one program
header), collects the loadable segments (``PT_LOAD`` with a non-zero ``p_memsz``,
placed at ``p_paddr``) and finds the ``.resource_table`` section, which it validates
and keeps as the *cached* table.  Each failure is a :class:`FirmwareError` with a
stable ``rule`` and a message that names the offending field.

:meth:`FirmwareImage.load` copies the segments into device memory through device
address translation, zero-filling the rest of each segment, exactly once per start.
"""

from __future__ import annotations

import errno
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_E_MACHINE
from elftools.elf.sections import ARMAttributesSection

from amplink.errors import AddressError, ResourceTableError, WireError
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import SharedRegion
from amplink.wire import rsc_table as rt

ELF_MAGIC = b"\x7fELF"
ELF32_HDR_SIZE = 52
ELF64_HDR_SIZE = 64
ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELFDATA2MSB = 2
RSC_TABLE_SECTION = ".resource_table"
ARM_ATTRIBUTES_SECTION = ".ARM.attributes"
# Tag_CPU_arch values of the M profile (the ARM ELF ABI's build attributes)
_ARM_M_ARCHS = {
    10: "ARMv7-M",
    11: "ARMv6-M",
    12: "ARMv6S-M",
    13: "ARMv7E-M",
    16: "ARMv8-M.baseline",
    17: "ARMv8-M.mainline",
    21: "ARMv8.1-M.mainline",
}
_MACHINE_NAMES = {v: k for k, v in ENUM_E_MACHINE.items() if isinstance(v, int)}


HOST_MACHINE = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}.get(os.uname().machine, "?")


class FirmwareError(WireError):
    """A firmware image that cannot be used; ``rule`` says which check failed."""

    def __init__(self, rule: str, message: str, code: int = errno.EINVAL) -> None:
        super().__init__(rule, message, code)


@dataclass(frozen=True)
class Segment:
    """One loadable segment: ``memsz`` bytes at device address ``da``."""

    da: int
    memsz: int
    data: bytes  # the p_filesz bytes from the file
    flags: int
    offset: int

    @property
    def filesz(self) -> int:
        """Bytes of the segment stored in the file (the rest up to memsz is zero)."""
        return len(self.data)


@dataclass
class FirmwareImage:
    """A parsed firmware ELF.  ``table`` is the cached resource table (None if absent;
    ``table_problem`` then says why)."""

    name: str
    elfclass: int
    little_endian: bool
    machine: int
    elf_type: str
    entry: int
    segments: list[Segment] = field(default_factory=list)
    sections: list[tuple[str, int, int, int]] = field(default_factory=list)
    table_da: int | None = None
    table_bytes: bytes = b""
    table: rt.ResourceTable | None = None
    table_problem: str = ""
    arm_profile: str = ""  # EM_ARM build attributes: "M", "R" or "A" (empty if none)
    arm_arch: str = ""  # and the architecture ("ARMv7E-M"...)

    @property
    def machine_name(self) -> str:
        """The ELF machine as a name (``EM_ARM``, ``EM_X86_64``...)."""
        return _MACHINE_NAMES.get(self.machine, f"machine {self.machine}")

    @classmethod
    def from_file(cls, path: str) -> FirmwareImage:
        """Read and check the ELF file at ``path``."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise FirmwareError(
                "missing",
                f"cannot read firmware {path!r}: {exc.strerror}",
                exc.errno or errno.ENOENT,
            ) from None
        return cls.parse(data, path)

    @classmethod
    def parse(cls, data: bytes, name: str = "firmware") -> FirmwareImage:
        """Check ``data`` as Linux's ELF loader does, then read it with pyelftools."""
        size = len(data)
        if not size:
            raise FirmwareError("size", f"{name}: an empty file, not an ELF file")
        if not data.startswith(ELF_MAGIC[: min(size, len(ELF_MAGIC))]):
            raise FirmwareError(
                "size" if size < ELF32_HDR_SIZE else "magic",
                f"{name}: not an ELF file ({_bytes(size)}, starting with {data[:4]!r}, not "
                f"{ELF_MAGIC!r})",
            )
        if size < ELF32_HDR_SIZE:
            raise FirmwareError(
                "size",
                f"{name}: a truncated ELF header: the file has {_bytes(size)}, an ELF header "
                f"takes {ELF32_HDR_SIZE} (ELF32) or {ELF64_HDR_SIZE} (ELF64)",
            )
        elfclass, encoding = data[4], data[5]
        if elfclass not in (ELFCLASS32, ELFCLASS64):
            raise FirmwareError(
                "class",
                f"{name}: not a valid ELF file ({_bytes(size)}): after the ELF magic, its class "
                f"byte is {elfclass}, not {ELFCLASS32} (ELF32) or {ELFCLASS64} (ELF64); a "
                "damaged or truncated ELF header",
            )
        if elfclass == ELFCLASS64 and size < ELF64_HDR_SIZE:
            raise FirmwareError(
                "size",
                f"{name}: a truncated ELF64 header: the file has {_bytes(size)}, the header "
                f"takes {ELF64_HDR_SIZE}",
            )
        host = ELFDATA2LSB if sys.byteorder == "little" else ELFDATA2MSB
        if encoding != host:
            raise FirmwareError(
                "endian",
                f"{name}: byte order {encoding} differs from this host's ({host}); the "
                "resource table and rings are in the firmware's order",
            )
        try:
            elf = ELFFile(io.BytesIO(data))
            hdr = elf.header
            if size < hdr["e_shoff"] + hdr["e_shentsize"]:
                raise FirmwareError(
                    "shoff",
                    f"{name}: a truncated ELF file ({_bytes(size)}): its section headers at "
                    f"{hdr['e_shoff']:#x} lie beyond its end",
                )
            if hdr["e_phnum"] == 0:
                raise FirmwareError("phnum", f"{name}: no program headers, nothing to load")
            if hdr["e_phoff"] > size:
                raise FirmwareError(
                    "phoff",
                    f"{name}: a truncated ELF file ({_bytes(size)}): its program headers at "
                    f"{hdr['e_phoff']:#x} lie beyond its end",
                )
            image = cls(
                name,
                32 if elfclass == ELFCLASS32 else 64,
                encoding == ELFDATA2LSB,
                _machine_number(hdr["e_machine"]),
                str(hdr["e_type"]),
                hdr["e_entry"],
            )
            image.segments = _segments(elf, data, name)
            image.sections = [
                (s.name, s["sh_addr"], s["sh_offset"], s["sh_size"]) for s in elf.iter_sections()
            ]
            image._find_table(elf, data)
            image._read_arm_attributes(elf)
        except ELFError as exc:
            raise FirmwareError(
                "elf", f"{name}: a malformed or truncated ELF file ({_bytes(size)}): {exc}"
            ) from None
        return image

    def _find_table(self, elf: ELFFile, data: bytes) -> None:
        sec = elf.get_section_by_name(RSC_TABLE_SECTION)
        if sec is None:
            self.table_problem = f"{self.name} has no {RSC_TABLE_SECTION} section"
            return
        off, size = sec["sh_offset"], sec["sh_size"]
        if off + size > len(data):
            self.table_problem = (
                f"{RSC_TABLE_SECTION} of {self.name} lies beyond the end of the file"
            )
            return
        raw = data[off : off + size]
        try:
            self.table = rt.parse(raw)
        except ResourceTableError as exc:
            self.table_problem = f"{RSC_TABLE_SECTION} of {self.name} is invalid: {exc.strerror}"
            return
        self.table_da = sec["sh_addr"]
        self.table_bytes = raw

    def _read_arm_attributes(self, elf: ELFFile) -> None:
        """The CPU profile and architecture an ARM image was built for."""
        sec = elf.get_section_by_name(ARM_ATTRIBUTES_SECTION)
        if not isinstance(sec, ARMAttributesSection) or self.machine_name != "EM_ARM":
            return
        for sub in sec.iter_subsections():
            for subsub in sub.iter_subsubsections():
                for attr in subsub.iter_attributes():
                    if attr.tag == "TAG_CPU_ARCH_PROFILE" and isinstance(attr.value, int):
                        self.arm_profile = chr(attr.value) if attr.value else ""
                    elif attr.tag == "TAG_CPU_ARCH" and isinstance(attr.value, int):
                        self.arm_arch = _ARM_M_ARCHS.get(attr.value, f"arch {attr.value}")

    @property
    def cortex_m(self) -> bool:
        """Whether this is an image for a Cortex-M (EM_ARM, M-profile, ELF32)."""
        return self.machine_name == "EM_ARM" and self.arm_profile == "M" and self.elfclass == 32

    def require_table(self) -> rt.ResourceTable:
        """The cached table, or ``FirmwareError`` (rule ``no-table``) saying why not."""
        if self.table is None:
            raise FirmwareError(
                "no-table", f"{self.table_problem}; remoteproc needs one to boot this firmware"
            )
        return self.table

    @property
    def native(self) -> bool:
        """Whether this is an executable for this machine (run as the core process)."""
        return self.machine_name == HOST_MACHINE and self.elf_type in ("ET_EXEC", "ET_DYN")

    def extent(self) -> int:
        """One past the highest device address any segment occupies."""
        return max((s.da + s.memsz for s in self.segments), default=0)

    def load(
        self,
        region: SharedRegion,
        amap: AddressMap,
        reserved: Callable[[int, int], bool] = lambda da, size: False,
    ) -> None:
        """Copy every segment to device memory and reserve its range in ``amap``;
        segments inside a range for which ``reserved(da, size)`` is true (a core-local
        memory the platform reserved already) are copied without reserving."""
        mem = region.mem
        for seg in self.segments:
            try:
                off = amap.translate(seg.da, seg.memsz)
                if not reserved(seg.da, seg.memsz):
                    amap.reserve(seg.da, seg.memsz)
            except AddressError as exc:
                raise FirmwareError(
                    "segment-da",
                    f"{self.name}: segment at da {seg.da:#x} ({seg.memsz:#x} bytes) does not "
                    f"fit device memory: {exc.strerror}",
                ) from None
            mem[off : off + seg.filesz] = seg.data
            mem[off + seg.filesz : off + seg.memsz] = bytes(seg.memsz - seg.filesz)


def _machine_number(value: object) -> int:
    if isinstance(value, int):
        return value
    number = ENUM_E_MACHINE.get(str(value))
    return number if isinstance(number, int) else -1


def _segments(elf: ELFFile, data: bytes, name: str) -> list[Segment]:
    out = []
    for i, seg in enumerate(elf.iter_segments()):
        h = seg.header
        if h["p_type"] != "PT_LOAD" or h["p_memsz"] == 0:
            continue
        if h["p_filesz"] > h["p_memsz"]:
            raise FirmwareError(
                "segment-filesz",
                f"{name}: segment {i} has filesz {h['p_filesz']:#x} > memsz {h['p_memsz']:#x}",
            )
        if h["p_offset"] + h["p_filesz"] > len(data):
            raise FirmwareError(
                "segment-offset", f"{name}: segment {i} runs past the end of the file"
            )
        start = h["p_offset"]
        out.append(
            Segment(
                h["p_paddr"], h["p_memsz"], data[start : start + h["p_filesz"]], h["p_flags"], start
            )
        )
    return out


def _bytes(n: int) -> str:
    return f"{n} byte" if n == 1 else f"{n:,} bytes"
