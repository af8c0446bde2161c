"""Core dumps of a crashed remote core: an ELF core file of its device memory.

Modes, as Linux's ``coredump`` attribute: ``disabled`` (the default), ``enabled`` (the
whole image is copied when the crash is handled, then recovery goes on) and ``inline``
(only the headers are prepared; the segments are read from device memory when the
dump is read, and recovery waits until it has been read, or until a timeout).

The file is ``ET_CORE`` with the firmware's ELF class, machine type and entry point,
one ``PT_LOAD`` segment per dumped memory range (``p_vaddr == p_paddr ==`` device
address, flags RWX; also a section named after the memory, so ``readelf -S`` shows
them and ``readelf -a`` finds every table it looks for) and, when the platform knows
the core's registers (an emulated core), a ``PT_NOTE`` with them; ``readelf`` and
pyelftools read it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from amplink.remoteproc.elf_writer import ET_CORE, PF_R, PF_W, PF_X, Note, OutSegment, write_elf

log = logging.getLogger(__name__)

DISABLED = "disabled"
ENABLED = "enabled"
INLINE = "inline"
MODES = (DISABLED, ENABLED, INLINE)


@dataclass
class Coredump:
    """One dump.  ``data`` is there at once (``enabled``) or on :meth:`read` (``inline``)."""

    name: str
    crash: int
    mode: str
    machine: int
    entry: int
    ranges: list[tuple[int, memoryview, str]] = field(default_factory=list)
    elfclass: int = 64
    notes: tuple[Note, ...] = ()
    data: bytes | None = None
    read_done: threading.Event = field(default_factory=threading.Event)

    def _build(self) -> bytes:
        segs = [
            OutSegment(da, bytes(mem), PF_R | PF_W | PF_X, section=name or f"load{i}")
            for i, (da, mem, name) in enumerate(self.ranges)
        ]
        return write_elf(
            segs, elf_type=ET_CORE, machine=self.machine, entry=self.entry,
            elfclass=self.elfclass, notes=self.notes,
        )  # fmt: skip

    def read(self) -> bytes:
        """The ELF core file (for ``inline``, this is what lets recovery go on)."""
        if self.data is None:
            self.data = self._build()
            self.ranges = []  # device memory may go away once recovery continues
        self.read_done.set()
        return self.data

    def save(self, path: str) -> None:
        """Write the dump, an ELF core file, to ``path``."""
        with open(path, "wb") as f:
            f.write(self.read())


def take(
    name: str,
    crash: int,
    mode: str,
    machine: int,
    entry: int,
    ranges: list[tuple[int, memoryview, str]],
    *,
    elfclass: int = 64,
    notes: tuple[Note, ...] = (),
) -> Coredump | None:
    """Dump ``ranges`` (device address, memory, name) and ``notes`` per ``mode``: built now
    for ``enabled``; for ``inline``, built when read (see :func:`wait_inline`)."""
    if mode == DISABLED:
        return None
    dump = Coredump(name, crash, mode, machine, entry, ranges, elfclass, notes)
    if mode == ENABLED:
        dump.read()
    return dump


def wait_inline(dump: Coredump, timeout: float) -> None:
    """Recovery waits for an inline dump to be read, as Linux waits for devcoredump."""
    if not dump.read_done.wait(timeout):
        log.warning(
            "%s: inline coredump of crash #%d was not read within %gs; discarding it",
            dump.name,
            dump.crash,
            timeout,
        )
    dump.ranges = []
