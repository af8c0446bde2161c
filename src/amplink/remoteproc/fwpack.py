"""Python firmware packed into an ELF image (``amplink fw pack``).

The image is what a firmware build would produce for a real core, with a Python
program where the machine code would be:

* ``.resource_table`` (a PT_LOAD segment at device address 0): the table;
* ``.text.python`` (a PT_LOAD segment at the next page, the entry point): a 24-byte
  header (:data:`PY_MAGIC`, the source length, 4 reserved bytes) then the UTF-8 source.

The machine type is ``EM_NONE``.  The core process runs what the host *loaded into its
memory* at the entry point (format: :mod:`amplink.wire.pyprog`), not the file.
"""

from __future__ import annotations

import errno

from amplink.remoteproc.elf import FirmwareError, FirmwareImage
from amplink.remoteproc.elf_writer import (
    EM_NONE,
    ET_EXEC,
    PF_R,
    PF_W,
    PF_X,
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHF_WRITE,
    OutSegment,
    write_elf,
)
from amplink.wire import rsc_table as rt
from amplink.wire.pyprog import PY_HEADER, PY_MAGIC, decode_source, encode_program, program_length
from amplink.wire.vring import align_up

TABLE_DA = 0x0
PAGE = 0x1000
TRACE_SIZE = 0x1000


def pack_python(source: str, table: rt.ResourceTable, *, trace_size: int = TRACE_SIZE) -> bytes:
    """An ELF image that runs ``source`` (whose ``main(core)`` is the firmware).

    Unless ``table`` has a trace entry already or ``trace_size`` is 0, a ``.trace``
    segment (zero-filled when loaded) follows the program, with a ``trace0`` entry
    added to the table, which the core's log goes to."""
    text = encode_program(source)
    ours = bool(trace_size) and not table.traces()
    if ours:  # the entry's size does not depend on its address: place it, then fill it in
        sized = rt.ResourceTable([*table.entries, rt.Trace(0, trace_size, "trace0")])
        entry = align_up(TABLE_DA + len(sized.build()), PAGE)
        trace = rt.Trace(align_up(entry + len(text), PAGE), trace_size, "trace0")
        table = rt.ResourceTable([*table.entries, trace])
    raw_table = table.build()
    entry = align_up(TABLE_DA + len(raw_table), PAGE)
    segments = [
        OutSegment(
            TABLE_DA, raw_table, PF_R | PF_W, section=".resource_table",
            section_flags=SHF_ALLOC | SHF_WRITE,
        ),
        OutSegment(
            entry, text, PF_R | PF_X, section=".text.python",
            section_flags=SHF_ALLOC | SHF_EXECINSTR,
        ),
    ]  # fmt: skip
    if ours:  # a table that has its own trace entries places their buffers itself
        segments.append(
            OutSegment(
                trace.da, b"", PF_R | PF_W, memsz=trace.len, section=".trace",
                section_flags=SHF_ALLOC | SHF_WRITE,
            )
        )  # fmt: skip
    return write_elf(segments, elf_type=ET_EXEC, entry=entry)


def _entry_bytes(image: FirmwareImage) -> bytes:
    """The file bytes of the segment holding the entry point, from the entry on."""
    if image.machine == EM_NONE:
        for seg in image.segments:
            if seg.da <= image.entry < seg.da + seg.filesz:
                return bytes(seg.data[image.entry - seg.da : seg.filesz])
    return b""


def packed_python(image: FirmwareImage) -> bool:
    """Whether ``image`` carries a packed Python program at its entry point."""
    return _entry_bytes(image)[: len(PY_MAGIC)] == PY_MAGIC


def image_program(image: FirmwareImage) -> str:
    """The source of the packed Python program at ``image``'s entry point
    (``ENOEXEC`` if there is none)."""
    data = _entry_bytes(image)
    if data[: len(PY_MAGIC)] != PY_MAGIC:
        raise FirmwareError(
            "entry", f"{image.name} has no packed Python program at its entry point: it "
            "is native firmware (for a core with platform = \"emulated\"); this command runs "
            "Python firmware: a .py file, a module, or an image made by amplink fw pack",
            errno.ENOEXEC,
        )  # fmt: skip
    length = program_length(data)
    body = data[PY_HEADER.size : PY_HEADER.size + length]
    if len(body) != length:
        raise FirmwareError("entry", f"{image.name}: the packed program is truncated")
    return decode_source(body)
