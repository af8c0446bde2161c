"""Handling a firmware's resource entries at boot, as ``rproc_handle_resources`` does.

Every entry of the loaded table is handled in table order:

* **carveout**: memory the firmware needs.  If the platform registered a memory of the
  same name (``RprocConfig.memories``), the entry is tied to it: it must not be tied
  already and must fit in it (``ENOMEM``).  Otherwise memory is allocated: at the
  entry's ``da``, or anywhere if it is ``FW_RSC_ADDR_ANY``.  The address and length
  given are written back into the loaded table (``pa`` equals ``da``: the process
  platform's memory is flat), so the firmware reads where its memory is.
* **devmem**: needs an IOMMU to map; the process platform has none (``EINVAL``).
* **vdev**: a remoteproc virtio device (:func:`amplink.remoteproc.vdev.handle_vdev`):
  its vrings are placed and the driver of its id will bind to it.
* **every other type** (trace buffers, vendor entries) goes to the resource handler of
  its type (:class:`~amplink.remoteproc.subdev.ResourceHandlers`), which may make a
  subdevice of it.  A vendor entry no handler claims is passed to the platform's hook,
  which returns ``RSC_HANDLED``, ``RSC_IGNORED`` (warned about, boot continues) or a
  negative errno (boot fails).

Two handlers live here because the remoteproc core itself uses what they find:
:class:`TraceHandler` (trace buffers, read through ``Rproc.trace``) and
:class:`FeaturesHandler` (amplink's features entry: graceful shutdown, watchdog).
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Mapping
from typing import ClassVar

from amplink.errors import AddressError, AmplinkError
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import PAGE_SIZE
from amplink.remoteproc.devmem import DeviceMemory, Memory
from amplink.remoteproc.subdev import (
    RSC_HANDLED,
    RSC_IGNORED,
    ResourceContext,
    ResourceHandler,
    ResourceHandlers,
    RprocSubdev,
    VendorHook,
)
from amplink.remoteproc.vdev import handle_vdev
from amplink.virtio.bus import VirtioBus
from amplink.wire import rsc_table as rt
from amplink.wire.protocol import RSC_AMPLINK_FEATURES, Features
from amplink.wire.trace import read_trace
from amplink.wire.vring import align_up

log = logging.getLogger(__name__)

_U32 = struct.Struct("=I")

__all__ = ["RSC_HANDLED", "RSC_IGNORED", "Memory", "VendorHook", "handle_resources"]


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
    table: rt.ResourceTable,
    ctx: ResourceContext,
    *,
    virtio: VirtioBus,
    handlers: ResourceHandlers,
    memories: Mapping[str, Memory],
    vendor: VendorHook | None,
) -> list[RprocSubdev]:
    """Handle every entry of ``table`` (the loaded one, parsed) for the core of ``ctx``;
    returns the subdevices made, in table order (carveouts go to ``ctx.memory``)."""
    memory = ctx.memory
    subdevs: list[RprocSubdev] = []
    given: list[Memory] = []
    tied: set[str] = set()
    vdevs = 0
    for i, entry in enumerate(table.entries):
        if isinstance(entry, rt.Devmem):
            raise AmplinkError(
                errno.EINVAL,
                f"resource entry {i}: devmem {entry.name!r} needs an IOMMU to map "
                f"pa {entry.pa:#x} at da {entry.da:#x}; a process-backed core has none",
            )
        if isinstance(entry, rt.Carveout):
            if ctx.placing:
                given.append(_carveout(i, entry, memory, memories, tied))
        elif isinstance(entry, rt.Vdev):
            subdevs.append(handle_vdev(vdevs, entry, ctx, virtio))
            vdevs += 1
        else:
            subdev = _by_handler(i, entry, ctx, handlers, vendor)
            if subdev is not None:
                subdevs.append(subdev)
    if ctx.placing:
        memory.carveouts = tuple(given)
    return subdevs


def _by_handler(
    i: int,
    entry: rt.Entry,
    ctx: ResourceContext,
    handlers: ResourceHandlers,
    vendor: VendorHook | None,
) -> RprocSubdev | None:
    handler = handlers.get(rt.entry_type(entry))
    if handler is not None:
        return handler.handle(i, entry, ctx)
    if isinstance(entry, rt.OpaqueEntry) and entry.vendor:
        ret = vendor(entry) if vendor is not None else RSC_IGNORED
        if ret < 0:
            raise AmplinkError(-ret, f"resource entry {i}: vendor type {entry.type} refused")
        if ret == RSC_IGNORED:
            log.warning("resource entry %d: unsupported vendor resource %d", i, entry.type)
    return None


def _carveout(
    i: int, entry: rt.Carveout, memory: DeviceMemory, memories: Mapping[str, Memory], tied: set[str]
) -> Memory:
    """Tie or allocate the carveout and write where it is into the loaded table."""
    mem = _carveout_memory(i, entry, memory.amap, memories, tied)
    base = memory.table_offset + entry.offset
    for field_off, value in (
        (rt.CARVEOUT_DA_OFF, mem.da),
        (rt.CARVEOUT_PA_OFF, mem.da),
        (rt.CARVEOUT_LEN_OFF, mem.len),
    ):
        _U32.pack_into(memory.region.mem, base + field_off, value)
    return mem


def _carveout_memory(
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


class TraceBuffer(RprocSubdev):
    """A trace buffer the firmware writes and the host reads (debugfs ``trace<N>``)."""

    def __init__(self, entry: rt.Trace, memory: DeviceMemory) -> None:
        self.name = entry.name
        self.da = entry.da
        self.len = entry.len
        self._memory = memory

    def read(self) -> str:
        """The text in the buffer now."""
        return read_trace(self._memory.read(self.da, self.len))


class TraceHandler(ResourceHandler):
    """``RSC_TRACE``: the buffer must lie in device memory (``EINVAL``)."""

    rsc_type: ClassVar[int] = rt.RSC_TRACE

    def handle(self, index: int, entry: rt.Entry, ctx: ResourceContext) -> RprocSubdev | None:
        assert isinstance(entry, rt.Trace)
        try:
            ctx.memory.amap.translate(entry.da, entry.len)
        except AddressError:
            raise AmplinkError(
                errno.EINVAL,
                f"resource entry {index}: trace buffer {entry.name!r} at da {entry.da:#x} "
                f"({entry.len:#x} bytes) is not in device memory",
            ) from None
        return TraceBuffer(entry, ctx.memory)


class FeaturesEntry(RprocSubdev):
    """What the firmware's amplink features entry announces (the platform acts on it)."""

    name = "amplink features"

    def __init__(self, features: Features) -> None:
        self.features = features


class FeaturesHandler(ResourceHandler):
    """``RSC_AMPLINK_FEATURES`` (vendor 128, :mod:`amplink.wire.protocol`)."""

    rsc_type: ClassVar[int] = RSC_AMPLINK_FEATURES

    def handle(self, index: int, entry: rt.Entry, ctx: ResourceContext) -> RprocSubdev | None:
        assert isinstance(entry, rt.OpaqueEntry)
        return FeaturesEntry(Features.from_entry(entry))
