"""A core's device memory: one shared region, device address = region offset.

:class:`DeviceMemory` is what the loader fills (segments, the loaded resource table,
carveouts, vrings) and what the remoteproc core, its subdevices and the core's platform
share.  :class:`DmaPool` is the memory a vdev's driver allocates its buffers from (as
``dma_alloc_coherent`` does from a vdev's reserved memory on Linux): placed by the
loader at the size the driver asked for, kept with the memory so that a host attaching
later finds it, and given back whole when the driver goes.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from amplink.errors import AmplinkError
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import SharedRegion


@dataclass(frozen=True)
class Memory:
    """A named range of device memory: registered by the platform or given to a
    carveout."""

    name: str
    da: int
    len: int


class DmaPool:
    """``size`` bytes at device address ``da`` for one driver's buffers (a bump
    allocator: everything is given back at once by :meth:`reset`)."""

    def __init__(self, name: str, da: int, size: int) -> None:
        self.name = name
        self.da = da
        self.size = size
        self._used = 0

    def alloc(self, size: int) -> int:
        """The device address of ``size`` fresh bytes; ``ENOMEM`` when they do not fit."""
        if size < 0 or self._used + size > self.size:
            raise AmplinkError(
                errno.ENOMEM,
                f"{self.name}: {size} bytes of buffer memory asked for, "
                f"{self.size - self._used} of {self.size} free",
            )
        da = self.da + self._used
        self._used += size
        return da

    def reset(self) -> None:
        """Give every allocation back (the driver went away)."""
        self._used = 0


@dataclass
class DeviceMemory:
    """A core's device memory with an image loaded into it.

    ``table_da``/``table_len`` locate the loaded resource table; ``carveouts`` are what
    the firmware's carveouts got; ``pools`` the vdevs' buffer memory, by the offset of
    their entry in the table."""

    region: SharedRegion
    amap: AddressMap
    table_da: int = 0
    table_len: int = 0
    carveouts: tuple[Memory, ...] = ()
    pools: dict[int, DmaPool] = field(default_factory=dict)

    @property
    def table_offset(self) -> int:
        """Where the loaded resource table is in the region."""
        return self.amap.translate(self.table_da, self.table_len)

    def read(self, da: int, size: int) -> bytes:
        """A copy of ``size`` bytes at device address ``da`` (bounds-checked)."""
        off = self.amap.translate(da, size)
        return bytes(self.region.mem[off : off + size])

    def write(self, da: int, data: bytes) -> None:
        """Write ``data`` at device address ``da`` (bounds-checked)."""
        off = self.amap.translate(da, len(data))
        self.region.mem[off : off + len(data)] = data

    def table(self) -> bytes:
        """The loaded resource table as it is now."""
        return self.read(self.table_da, self.table_len)

    def close(self) -> None:
        """Unmap the region (every view of it dies). Idempotent."""
        self.region.close()
