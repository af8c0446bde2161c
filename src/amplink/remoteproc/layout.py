"""The resource tables of amplink's Python firmware, and how much device memory an image
needs.

:func:`default_rsc_table` and :func:`glink_rsc_table` are what a Python firmware program
is packed with (an rpmsg vdev, or a GLINK edge, and the features entry).  The size of a
core's device memory is its image's extent, then room for everything its resources will
place: carveouts, vrings, the buffer memory the driver of each vdev asks for, and what
resource handlers place (a GLINK edge).
"""

from __future__ import annotations

from collections.abc import Mapping

from amplink.memory.region import PAGE_SIZE
from amplink.remoteproc.devmem import Memory
from amplink.remoteproc.drivers import RprocDrivers
from amplink.remoteproc.elf import FirmwareImage
from amplink.remoteproc.resources import memory_needed
from amplink.virtio.constants import VIRTIO_ID_RPMSG, VIRTIO_RPMSG_F_NS
from amplink.wire import rsc_table as rt
from amplink.wire.glink_edge import GlinkEdgeSpec
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
    (the amplink edge entry, see :mod:`amplink.wire.glink_edge`), with the features entry."""
    return rt.ResourceTable([features.entry(), edge.entry()])


def image_region_size(
    image: FirmwareImage, memories: Mapping[str, Memory], drivers: RprocDrivers
) -> int:
    """Device memory for ``image``: its segments and the platform's memories, then
    room for its carveouts and everything :func:`region_size_for` counts."""
    table = image.require_table()
    top = max([image.extent(), *(m.da + m.len for m in memories.values())])
    return align_up(top, PAGE_SIZE) + memory_needed(table) + region_size_for(table, drivers)


def region_size_for(table: rt.ResourceTable, drivers: RprocDrivers) -> int:
    """A region size that holds the table, every vring, the buffer memory the vdevs'
    drivers ask for, and what resource handlers place.

    Anything the firmware placed at a fixed address must fit where it is, and the
    allocator places everything else after the highest of them."""
    size = align_up(len(table.build()), PAGE_SIZE)
    fixed_end = 0
    for vdev in table.vdevs():
        for vr in vdev.vrings:
            vsize = align_up(VringLayout(vr.num, vr.align).size, PAGE_SIZE)
            size += vsize
            if vr.da != rt.FW_RSC_ADDR_ANY:
                fixed_end = max(fixed_end, vr.da + vsize)
        size += align_up(drivers.virtio.dma_size(vdev), PAGE_SIZE)
    for nbytes, da in drivers.resources.placements(table):
        size += align_up(nbytes, PAGE_SIZE)
        if da != rt.FW_RSC_ADDR_ANY:
            fixed_end = max(fixed_end, da + nbytes)
    return align_up(fixed_end + size, PAGE_SIZE)
