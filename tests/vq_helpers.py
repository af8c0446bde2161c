"""A driver half and a device half over one real shared region, for the tests."""

from dataclasses import dataclass

from amplink.memory import AddressMap, SharedRegion
from amplink.virtio import VirtqueueDevice, VirtqueueDriver
from amplink.wire.vring import VringLayout

BUF = 64


@dataclass
class Pair:
    region: SharedRegion
    driver: VirtqueueDriver
    device: VirtqueueDevice
    layout: VringLayout
    pool: int

    def buf_addr(self, i: int) -> int:
        return self.pool + i * BUF


def make_pair(
    num: int = 8, align: int = 16, writable: bool = True, whole_used_len: bool = False
) -> Pair:
    layout = VringLayout(num, align)
    pool = (layout.size + 63) // 64 * 64
    region = SharedRegion.create(pool + num * BUF)
    amap = AddressMap.identity(region.size)
    drv = VirtqueueDriver(region, layout.at(0), "test-drv")
    drv.reset_ring()
    dev = VirtqueueDevice(
        region,
        layout.at(0),
        "test-dev",
        amap.translate,
        writable=writable,
        whole_used_len=whole_used_len,
    )
    return Pair(region, drv, dev, layout, pool)
