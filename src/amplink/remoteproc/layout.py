"""Laying out a remote core's device memory: firmware segments, the loaded resource
table, vrings, buffers.

This is the part of the remoteproc boot sequence that turns a firmware image into
memory: load its segments, copy the cached resource table over its loaded location
(the copy both sides use from then on), give every vring memory and a notify id, and
reserve the rpmsg buffer pool.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from amplink.errors import AddressError, AmplinkError
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import PAGE_SIZE, SharedRegion
from amplink.remoteproc.elf import FirmwareError, FirmwareImage
from amplink.remoteproc.resources import (
    RSC_HANDLED,
    RSC_IGNORED,
    Memory,
    VendorHook,
    handle_resources,
    memory_needed,
    reserve_platform_memories,
)
from amplink.rpmsg.virtio_link import DEFAULT_BUFFERS, RpmsgBuffers
from amplink.virtio.constants import VIRTIO_ID_RPMSG, VIRTIO_RPMSG_F_NS
from amplink.virtio.vdev import VdevConfig
from amplink.wire import rsc_table as rt
from amplink.wire.glink import EDGE_DA_OFF, RSC_AMPLINK_GLINK, GlinkEdgeSpec
from amplink.wire.protocol import Features
from amplink.wire.vring import VringLayout, align_up

DEFAULT_VRING_NUM = 256
DEFAULT_VRING_ALIGN = 4096


DEFAULT_FEATURES = Features(graceful_shutdown=True)
DEFAULT_EDGE = GlinkEdgeSpec()


def default_rsc_table(
    num: int = DEFAULT_VRING_NUM,
    align: int = DEFAULT_VRING_ALIGN,
    features: Features = DEFAULT_FEATURES,
) -> rt.ResourceTable:
    """The table of a firmware with one rpmsg vdev (name service on, host-placed
    vrings) and the amplink features entry (by default: graceful shutdown, the
    handshake that :class:`~amplink.remote.Core`'s loop implements)."""
    vrings = [rt.Vring(rt.FW_RSC_ADDR_ANY, align, num), rt.Vring(rt.FW_RSC_ADDR_ANY, align, num)]
    return rt.ResourceTable(
        [
            features.entry(),
            rt.Vdev(VIRTIO_ID_RPMSG, dfeatures=1 << VIRTIO_RPMSG_F_NS, vrings=vrings),
        ]
    )


def glink_rsc_table(
    edge: GlinkEdgeSpec = DEFAULT_EDGE, features: Features = DEFAULT_FEATURES
) -> rt.ResourceTable:
    """The table of a firmware that speaks rpmsg over a GLINK edge instead of virtio
    (the amplink edge entry, see :mod:`amplink.wire.glink`), with the features entry."""
    return rt.ResourceTable([features.entry(), edge.entry()])


@dataclass(frozen=True)
class GlinkEdgeLayout:
    """Where a booted image's GLINK edge is: its address and what it is."""

    da: int
    offset: int  # in the region
    spec: GlinkEdgeSpec


@dataclass(frozen=True)
class RpmsgVdevLayout:
    """Where one rpmsg vdev's pieces live after :func:`load_rpmsg_vdev`."""

    table_da: int
    table_len: int
    vdev: VdevConfig
    pool_da: int
    buffers: RpmsgBuffers


@dataclass(frozen=True)
class LoadedImage:
    """Where a booted image's table is, what its carveouts got, and its rpmsg vdev
    (None when the firmware has none: a core without rpmsg, e.g. only a trace)."""

    table_da: int
    table_len: int
    carveouts: tuple[Memory, ...]
    rpmsg: RpmsgVdevLayout | None
    glink: GlinkEdgeLayout | None = None


def load_rpmsg_vdev(
    region: SharedRegion,
    amap: AddressMap,
    table: rt.ResourceTable,
    *,
    buffers: RpmsgBuffers = DEFAULT_BUFFERS,
) -> RpmsgVdevLayout:
    """Load a bare ``table`` (no firmware image) at the start of the region and place its
    first rpmsg vdev; for hosts and tests that have a table but no ELF."""
    raw = table.build()
    table_da = amap.allocate(len(raw), PAGE_SIZE)
    table_off = amap.translate(table_da, len(raw))
    region.mem[table_off : table_off + len(raw)] = raw
    return _place_rpmsg_vdev(region, amap, table_da, len(raw), buffers)


def load_image(
    region: SharedRegion,
    amap: AddressMap,
    image: FirmwareImage,
    *,
    buffers: RpmsgBuffers = DEFAULT_BUFFERS,
    memories: Mapping[str, Memory] | None = None,
    vendor: VendorHook = lambda entry: RSC_IGNORED,
) -> LoadedImage:
    """Load a firmware image as Linux boots one: copy its segments to device memory,
    copy the cached resource table over its loaded location (the ``.resource_table``
    section's address), handle its resources (carveouts, traces, vendor entries; the
    platform's named ``memories`` are kept off the allocator), then place the rpmsg
    vdev in the memory that is left."""
    table = image.require_table()
    memories = memories or {}
    reserve_platform_memories(amap, memories)  # first: segments may load into them

    def in_platform_memory(da: int, size: int) -> bool:
        return any(m.da <= da and da + size <= m.da + m.len for m in memories.values())

    image.load(region, amap, in_platform_memory)
    assert image.table_da is not None
    size = len(image.table_bytes)
    try:
        table_off = amap.translate(image.table_da, size)
    except AddressError:
        raise FirmwareError(
            "table-da",
            f"{image.name}: the resource table's address {image.table_da:#x} is outside "
            "device memory",
        ) from None
    region.mem[table_off : table_off + size] = image.table_bytes

    def vendor_or_edge(entry: rt.OpaqueEntry) -> int:
        return RSC_HANDLED if entry.type == RSC_AMPLINK_GLINK else vendor(entry)

    given = handle_resources(
        region, amap, table_off, table, memories=memories, vendor=vendor_or_edge
    )
    rpmsg = None
    if any(v.id == VIRTIO_ID_RPMSG for v in table.vdevs()):
        rpmsg = _place_rpmsg_vdev(region, amap, image.table_da, size, buffers)
    glink = _place_glink_edge(region, amap, table_off, table)
    return LoadedImage(image.table_da, size, tuple(given), rpmsg, glink)


def _place_glink_edge(
    region: SharedRegion, amap: AddressMap, table_off: int, table: rt.ResourceTable
) -> GlinkEdgeLayout | None:
    """Give the table's GLINK edge zeroed memory and write its address into the loaded
    table, where the core reads it."""
    found = GlinkEdgeSpec.of(table)
    if found is None:
        return None
    entry, spec = found
    if spec.da == rt.FW_RSC_ADDR_ANY:
        da = amap.allocate(spec.size, PAGE_SIZE)
    else:
        da = spec.da
        amap.reserve(da, spec.size)
    off = amap.translate(da, spec.size)
    region.mem[off : off + spec.size] = bytes(spec.size)
    struct.pack_into("<I", region.mem, table_off + entry.offset + EDGE_DA_OFF, da)
    return GlinkEdgeLayout(da, off, spec)


def _place_rpmsg_vdev(
    region: SharedRegion, amap: AddressMap, table_da: int, table_len: int, buffers: RpmsgBuffers
) -> RpmsgVdevLayout:
    """Give the loaded table's first rpmsg vdev its vrings, notify ids and buffer pool.

    Vrings with a fixed ``da`` must lie inside mapped memory; vrings at
    ``FW_RSC_ADDR_ANY`` get page-aligned memory.  Notify ids are allocated from 0 in
    table order, as the Linux core does.
    """
    table_off = amap.translate(table_da, table_len)
    loaded = rt.parse(region.mem[table_off : table_off + table_len])
    entry = next((v for v in loaded.vdevs() if v.id == VIRTIO_ID_RPMSG), None)
    if entry is None or len(entry.vrings) != 2:
        raise AmplinkError(errno.EINVAL, "the resource table has no rpmsg vdev with two vrings")
    vdev = VdevConfig(region, table_off, entry)
    for j, vr in enumerate(entry.vrings):
        size = align_up(VringLayout(vr.num, vr.align).size, PAGE_SIZE)
        if vr.da == rt.FW_RSC_ADDR_ANY:
            da = amap.allocate(size, PAGE_SIZE)
        else:
            da = vr.da
            amap.reserve(da, size)
        vdev.set_vring(j, da, j)
    pool = buffers.pool_bytes(entry.vrings[0].num, entry.vrings[1].num)
    pool_da = amap.allocate(pool, PAGE_SIZE)
    return RpmsgVdevLayout(table_da, table_len, vdev, pool_da, buffers)


def image_region_size(
    image: FirmwareImage,
    buffers: RpmsgBuffers = DEFAULT_BUFFERS,
    memories: Mapping[str, Memory] | None = None,
) -> int:
    """Device memory for ``image``: its segments and the platform's memories, then
    room for carveouts, vrings and buffers."""
    table = image.require_table()
    top = max([image.extent(), *(m.da + m.len for m in (memories or {}).values())])
    return align_up(top, PAGE_SIZE) + memory_needed(table) + region_size_for(table, buffers)


def region_size_for(table: rt.ResourceTable, buffers: RpmsgBuffers = DEFAULT_BUFFERS) -> int:
    """A region size that holds the table, every vring and a full buffer pool.

    Vrings the firmware placed at fixed addresses must fit where they are, and the
    allocator places everything else after the highest of them.
    """
    size = align_up(len(table.build()), PAGE_SIZE)
    fixed_end = 0
    for vdev in table.vdevs():
        for vr in vdev.vrings:
            vsize = align_up(VringLayout(vr.num, vr.align).size, PAGE_SIZE)
            size += vsize
            if vr.da != rt.FW_RSC_ADDR_ANY:
                fixed_end = max(fixed_end, vr.da + vsize)
        if vdev.id == VIRTIO_ID_RPMSG and len(vdev.vrings) == 2:
            size += align_up(buffers.pool_bytes(vdev.vrings[0].num, vdev.vrings[1].num), PAGE_SIZE)
    edge = GlinkEdgeSpec.of(table)
    if edge is not None:
        size += align_up(edge[1].size, PAGE_SIZE)
        if edge[1].da != rt.FW_RSC_ADDR_ANY:
            fixed_end = max(fixed_end, edge[1].da + edge[1].size)
    return align_up(fixed_end + size, PAGE_SIZE)
