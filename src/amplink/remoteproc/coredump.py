"""Core dumps of a crashed remote core: an ELF core file of its device memory.

Modes, as Linux's ``coredump`` attribute: ``disabled`` (the default), ``enabled`` (the
whole image is copied when the crash is handled, then recovery goes on) and ``inline``
(only the headers are prepared; the segments are read from device memory when the
dump is read, and recovery waits until it has been read, discarded, or until a
timeout: devcoredump's ``data`` file, read or written to).

The file is ``ET_CORE`` with the firmware's ELF class, machine type and entry point,
one ``PT_LOAD`` segment per dumped memory range (``p_vaddr == p_paddr ==`` device
address, flags RWX; also a section named after the memory, so ``readelf -S`` shows
them and ``readelf -a`` finds every table it looks for) and, when the platform knows
the core's registers (an emulated core), a ``PT_NOTE`` with them; ``readelf`` and
pyelftools read it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field

from amplink.errors import AmplinkError
from amplink.remoteproc.elf_writer import ET_CORE, PF_R, PF_W, PF_X, Note, OutSegment, write_elf

log = logging.getLogger(__name__)

DISABLED = "disabled"
ENABLED = "enabled"
INLINE = "inline"
MODES = (DISABLED, ENABLED, INLINE)


@dataclass
class Coredump:
    """One dump.  ``data`` is there at once (``enabled``) or on :meth:`read` (``inline``);
    with a ``path``, the first read also writes the file there."""

    name: str
    crash: int
    mode: str
    machine: int
    entry: int
    ranges: list[tuple[int, memoryview, str]] = field(default_factory=list)
    elfclass: int = 64
    notes: tuple[Note, ...] = ()
    path: str | None = None
    data: bytes | None = None
    write_error: str = ""  # why the file at ``path`` could not be written, if it could not
    discarded: bool = False
    released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def pending(self) -> bool:
        """An ``inline`` dump neither read nor discarded yet: recovery waits for it."""
        return not self.released.is_set()

    def _build(self) -> bytes:
        segs = [
            OutSegment(da, bytes(mem), PF_R | PF_W | PF_X, section=name or f"load{i}")
            for i, (da, mem, name) in enumerate(self.ranges)
        ]
        return write_elf(
            segs, elf_type=ET_CORE, machine=self.machine, entry=self.entry,
            elfclass=self.elfclass, notes=self.notes,
        )  # fmt: skip

    @property
    def written(self) -> str | None:
        """The file the dump was written to, or None (not yet, no :attr:`path`, or the
        write failed: :attr:`write_error` says why)."""
        return self.path if self.data is not None and not self.write_error else None

    def read(self) -> bytes:
        """The ELF core file, written to :attr:`path` at the first read (for ``inline``,
        reading is what lets recovery go on, as reading devcoredump's ``data`` does);
        ``ENODATA`` once discarded unread.  A file that cannot be written loses nothing
        else: the dump is returned, and :attr:`write_error` (also logged) says why."""
        with self._lock:
            try:
                if self.data is None:
                    if self.discarded:
                        raise AmplinkError(
                            errno.ENODATA,
                            f"{self.name}: the inline coredump of crash #{self.crash} was "
                            "discarded unread",
                        )
                    self.data = self._build()
                    self.ranges = []  # device memory may go away once recovery continues
                    if self.path is not None:
                        self._write(self.path, self.data)
                return self.data
            finally:
                self.released.set()

    def _write(self, path: str, data: bytes) -> None:
        """Write ``data`` to a new file beside ``path`` and rename it there: a write cut
        short (a full disk) removes only that new file, never one that was there."""
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".part")
            with open(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            self.write_error = f"cannot write {path}: {exc.strerror or exc}"
            log.error("%s: core dump of crash #%d: %s", self.name, self.crash, self.write_error)
            return
        log.info("%s: core dump written to %s", self.name, path)

    def discard(self, why: str) -> bool:
        """Drop an unread dump (devcoredump's release), logging ``why``; recovery goes
        on.  False if it had been read (or discarded) already."""
        with self._lock:
            if not self.pending:
                return False
            self.discarded = True
            self.ranges = []
            self.released.set()
        log.warning(
            "%s: inline coredump of crash #%d was not read %s; discarding it",
            self.name,
            self.crash,
            why,
        )
        return True


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
    path: str | None = None,
) -> Coredump | None:
    """Dump ``ranges`` (device address, memory, name) and ``notes`` per ``mode``: built
    (and written to ``path``) now for ``enabled``; for ``inline``, when read (see
    :func:`wait_inline`)."""
    if mode == DISABLED:
        return None
    dump = Coredump(name, crash, mode, machine, entry, ranges, elfclass, notes, path)
    if mode == ENABLED:
        dump.read()
    return dump


def wait_inline(dump: Coredump, timeout: float) -> None:
    """Recovery waits for an inline dump to be read or discarded, as Linux waits for
    devcoredump; unread after ``timeout`` s, it is discarded."""
    if not dump.released.wait(timeout):
        dump.discard(f"within {timeout:g}s")
