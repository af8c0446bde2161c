"""Handling a firmware's resource entries at boot, as ``rproc_handle_resources`` does.

* **carveout**: memory the firmware needs.  If the platform registered a memory of
  the same name (``Rproc(carveouts=...)``), the entry is tied to it: it must not be
  tied already and must fit in it (``ENOMEM``).  Otherwise memory is allocated: at the
  entry's ``da``, or anywhere if it is ``FW_RSC_ADDR_ANY``.  The address and length
  given are written back into the loaded table (``pa`` equals ``da``: the process
  platform's memory is flat), so the firmware reads where its memory is.
* **devmem**: needs an IOMMU to map; the process platform has none (``EINVAL``).
* **trace**: must lie in device memory (``EINVAL``).
* **vendor** (types 128..512): passed to a hook returning ``RSC_HANDLED``,
  ``RSC_IGNORED`` (warned about, boot continues) or a negative errno (boot fails).
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from amplink.errors import AddressError, AmplinkError
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import PAGE_SIZE, SharedRegion
from amplink.wire import rsc_table as rt
from amplink.wire.vring import align_up

log = logging.getLogger(__name__)

RSC_HANDLED = 0
RSC_IGNORED = 1
VendorHook = Callable[[rt.OpaqueEntry], int]
_U32 = struct.Struct("=I")


@dataclass(frozen=True)
class Memory:
    """A named range of device memory: registered by the platform or given to a
    carveout."""

    name: str
    da: int
    len: int


def reserve_platform_memories(amap: AddressMap, memories: Mapping[str, Memory]) -> None:
    """Keep the allocator off the platform's named memories."""
    for mem in memories.values():
        try:
            amap.reserve(mem.da, mem.len)
        except AddressError as exc:
            raise AmplinkError(
                errno.ENOMEM, f"platform memory {mem.name!r}: {exc.strerror}"
            ) from None


def handle_resources(
    region: SharedRegion,
    amap: AddressMap,
    table_off: int,
    table: rt.ResourceTable,
    *,
    memories: Mapping[str, Memory],
    vendor: VendorHook,
) -> list[Memory]:
    """Handle every entry of the loaded ``table`` (at ``table_off``); returns the
    memories given to its carveouts."""
    given: list[Memory] = []
    tied: set[str] = set()
    for i, entry in enumerate(table.entries):
        if isinstance(entry, rt.Devmem):
            raise AmplinkError(
                errno.EINVAL,
                f"resource entry {i}: devmem {entry.name!r} needs an IOMMU to map "
                f"pa {entry.pa:#x} at da {entry.da:#x}; a process-backed core has none",
            )
        if isinstance(entry, rt.Carveout):
            mem = _carveout(i, entry, amap, memories, tied)
            base = table_off + entry.offset
            for field_off, value in (
                (rt.CARVEOUT_DA_OFF, mem.da),
                (rt.CARVEOUT_PA_OFF, mem.da),
                (rt.CARVEOUT_LEN_OFF, mem.len),
            ):
                _U32.pack_into(region.mem, base + field_off, value)
            given.append(mem)
        elif isinstance(entry, rt.Trace):
            try:
                amap.translate(entry.da, entry.len)
            except AddressError:
                raise AmplinkError(
                    errno.EINVAL,
                    f"resource entry {i}: trace buffer {entry.name!r} at da {entry.da:#x} "
                    f"({entry.len:#x} bytes) is not in device memory",
                ) from None
        elif isinstance(entry, rt.OpaqueEntry) and entry.vendor:
            ret = vendor(entry)
            if ret < 0:
                raise AmplinkError(-ret, f"resource entry {i}: vendor type {entry.type} refused")
            if ret == RSC_IGNORED:
                log.warning("resource entry %d: unsupported vendor resource %d", i, entry.type)
    return given


def _carveout(
    i: int, entry: rt.Carveout, amap: AddressMap, memories: Mapping[str, Memory], tied: set[str]
) -> Memory:
    pre = memories.get(entry.name)
    if pre is not None:
        if entry.name in tied:
            raise AmplinkError(
                errno.ENOMEM, f"resource entry {i}: memory {entry.name!r} is already in use"
            )
        da = pre.da if entry.da == rt.FW_RSC_ADDR_ANY else entry.da
        if not (pre.da <= da and da + entry.len <= pre.da + pre.len):
            raise AmplinkError(
                errno.ENOMEM,
                f"resource entry {i}: carveout {entry.name!r} wants {entry.len:#x} bytes at "
                f"{da:#x}, outside the registered memory [{pre.da:#x}, "
                f"{pre.da + pre.len:#x})",
            )
        tied.add(entry.name)
        return Memory(entry.name, da, entry.len)
    try:
        if entry.da == rt.FW_RSC_ADDR_ANY:
            da = amap.allocate(align_up(entry.len, PAGE_SIZE), PAGE_SIZE)
        else:
            amap.reserve(entry.da, entry.len)
            da = entry.da
    except AddressError as exc:
        raise AmplinkError(
            errno.ENOMEM, f"resource entry {i}: carveout {entry.name!r}: {exc.strerror}"
        ) from None
    return Memory(entry.name, da, entry.len)


def memory_needed(table: rt.ResourceTable) -> int:
    """Bytes of device memory the table's anywhere-carveouts will need."""
    return sum(align_up(e.len, PAGE_SIZE) for e in table.carveouts() if e.da == rt.FW_RSC_ADDR_ANY)
