"""A driver half and a device half over one real shared region, for the tests; of
either implementation (``HALVES``: the pure-Python one, and the compiled one when it
was built), which the virtqueue tests run both of."""

from dataclasses import dataclass
from types import ModuleType

from amplink.memory import AddressMap, SharedRegion
from amplink.virtio import VirtqueueDevice, VirtqueueDriver, rings, virtqueue
from amplink.wire.vring import VringLayout

BUF = 64

try:
    from amplink.virtio import _vring
except ImportError:  # not built: only the pure-Python halves are tested
    _vring = None

HALVES: dict[str, ModuleType] = {"python": virtqueue} | ({"compiled": _vring} if _vring else {})


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
    num: int = 8,
    align: int = 16,
    writable: bool = True,
    whole_used_len: bool = False,
    halves: ModuleType | None = None,
) -> Pair:
    """Both halves over one region; of ``halves`` (the one amplink runs by default)."""
    impl = halves if halves is not None else rings
    layout = VringLayout(num, align)
    pool = (layout.size + 63) // 64 * 64
    region = SharedRegion.create(pool + num * BUF)
    amap = AddressMap.identity(region.size)
    drv = impl.VirtqueueDriver(region, layout.at(0), "test-drv")
    drv.reset_ring()
    dev = impl.VirtqueueDevice(
        region,
        layout.at(0),
        "test-dev",
        amap.translate,
        writable=writable,
        whole_used_len=whole_used_len,
    )
    return Pair(region, drv, dev, layout, pool)
