"""A shared memory region that several processes map.

Backed by ``memfd_create``: the memory has no name in ``/dev/shm`` and disappears when
the last file descriptor and mapping are gone, so a crashed run leaves nothing behind.
Another process maps it from an inherited file descriptor (``pass_fds``); the file is
sealed at its size first, so that process cannot shrink it under the host's mapping.

Mapping one checks the host first (:func:`~amplink.memory.barrier.require_memory_model`):
what amplink puts in shared memory is only correct under x86-64's memory model.

Views into the mapping are handed out by :meth:`SharedRegion.view` and
:meth:`SharedRegion.cast` and tracked, because an ``mmap`` cannot be closed while any
``memoryview`` of it is alive; :meth:`close` releases them newest first.
"""

from __future__ import annotations

import fcntl
import mmap
import os
from typing import Literal

from amplink.errors import AddressError
from amplink.memory.barrier import require_memory_model

PAGE_SIZE = mmap.PAGESIZE
FIXED_SIZE_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
"""The seals every region made here carries: whoever else holds its descriptor (a core
process) can neither shrink it (the next access here would die of SIGBUS), nor grow
or truncate-and-regrow it (which would zero it), nor add seals of its own (a
``F_SEAL_FUTURE_WRITE`` would stop the host from mapping it again): each gets
``EPERM``."""


class SharedRegion:
    """A mapping of ``size`` bytes of a file (a memfd here, a guest's memory file for
    vhost-user) from ``offset`` on, readable and writable."""

    def __init__(
        self, fd: int, size: int, name: str, *, owns_fd: bool = True, offset: int = 0
    ) -> None:
        require_memory_model()
        self.fd = fd
        self.size = size
        self.name = name
        self._owns_fd = owns_fd
        self._mm: mmap.mmap | None = mmap.mmap(fd, size, mmap.MAP_SHARED, offset=offset)
        self._views: dict[int, memoryview] = {}  # by identity: views compare by content
        self.mem = self.view(0, size)

    @property
    def map(self) -> mmap.mmap:
        """The mapping itself: a slice of it is ``bytes`` (one copy, where ``bytes(mem[a:b])``
        makes a view first) and it takes slice assignment.  Closed by :meth:`close`."""
        return self._check(0, 0)

    @classmethod
    def create(cls, size: int, name: str = "amplink") -> SharedRegion:
        """Create a new zero-filled region of ``size`` bytes (rounded up to a page),
        sealed at that size (:data:`FIXED_SIZE_SEALS`)."""
        if size <= 0:
            raise ValueError(f"region size must be positive, got {size}")
        size = -(-size // PAGE_SIZE) * PAGE_SIZE
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, FIXED_SIZE_SEALS)
            return cls(fd, size, name)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def attach(cls, fd: int, name: str = "amplink") -> SharedRegion:
        """Map a region from a file descriptor inherited from its creator."""
        size = os.fstat(fd).st_size
        return cls(fd, size, name)

    def _check(self, offset: int, length: int) -> mmap.mmap:
        if self._mm is None:
            raise ValueError(f"region {self.name!r} is closed")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise AddressError(
                f"range [{offset:#x}, {offset + length:#x}) is outside region "
                f"{self.name!r} of {self.size:#x} bytes"
            )
        return self._mm

    def view(self, offset: int, length: int) -> memoryview:
        """A writable byte view of ``[offset, offset+length)``, released by :meth:`close`."""
        mm = self._check(offset, length)
        mv = memoryview(mm)[offset : offset + length]
        self._views[id(mv)] = mv
        return mv

    def cast(self, offset: int, length: int, fmt: Literal["H", "I", "Q"]) -> memoryview:
        """A typed view (``'H'``, ``'I'``, ``'Q'``...) in host-native order."""
        mv = self.view(offset, length).cast(fmt)
        self._views[id(mv)] = mv
        return mv

    def forget(self, view: memoryview) -> None:
        """Stop tracking a view its user released (short-lived views lent out)."""
        self._views.pop(id(view), None)

    def close(self) -> None:
        """Release every view, unmap, and close the descriptor. Idempotent."""
        if self._mm is None:
            return
        for mv in reversed(self._views.values()):
            mv.release()
        self._views.clear()
        self._mm.close()
        self._mm = None
        if self._owns_fd:
            os.close(self.fd)

    def __enter__(self) -> SharedRegion:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
