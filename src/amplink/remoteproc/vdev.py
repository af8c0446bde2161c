"""Remoteproc virtio devices: a vdev entry of a loaded resource table as a virtio device.

This is the transport of Linux's ``remoteproc_virtio.c`` (``struct rproc_vdev``) and of
OpenAMP's ``remoteproc_virtio``: the status byte, the features and the vrings' places
and notify ids live in the vdev entry of the table both sides map; a vring's notify id
is the word the notify path carries (here: through the platform's ``kick``, an MU
channel for a process core).  One class serves both sides:

* the **host** makes it while it handles the table (:func:`handle_vdev`: vrings placed
  and notify ids given at boot, adopted on attach; the buffer memory the driver of the
  id asks for is reserved), and it is a subdevice: :meth:`RprocVdev.start` binds the
  driver of the device id (the driver side, which sets ``DRIVER_OK``), the core's kicks
  with the vrings' notify ids reach that driver, and :meth:`RprocVdev.stop` removes it
  and resets the device;
* the **firmware** makes one over the table the host loaded (:attr:`RprocVdev.driver_ok`
  says when the host is up) and binds the device side of the same driver.

Any memory window with a resource table in it and a way to kick works: an OpenAMP
"linux machine" peer (a shared-memory file, a UNIX-socket kick) is such a device too.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from amplink.errors import AmplinkError
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import PAGE_SIZE, SharedRegion
from amplink.remoteproc.crash import CRASH_MMUFAULT
from amplink.remoteproc.devmem import DmaPool
from amplink.remoteproc.subdev import BoundSubdev, ResourceContext
from amplink.virtio.bus import Binding, VirtioBus, VirtioDriver
from amplink.virtio.constants import VIRTIO_CONFIG_S_DRIVER_OK
from amplink.virtio.device import DRIVER, Role, VirtioDevice
from amplink.virtio.vdev import VdevConfig
from amplink.wire import rsc_table as rt
from amplink.wire.vring import VringLayout, VringParts, align_up

log = logging.getLogger(__name__)


class RprocVdev(VirtioDevice, BoundSubdev):
    """The vdev ``entry`` of the table at ``table_offset`` in ``window`` (device
    address → offset through ``amap``), seen from ``role``; ``kick(notifyid)`` is the
    notify path.  On the host side, ``driver`` binds to it when it starts, its buffers
    come from ``pool``, and a core that breaks its rings is reported to
    ``report_crash`` (an ``mmufault``).  ``whole_used_len``: the transport's drivers
    want their buffers back whole (:attr:`VirtioDevice.whole_used_len`)."""

    def __init__(
        self,
        name: str,
        window: SharedRegion,
        amap: AddressMap,
        table_offset: int,
        entry: rt.Vdev,
        role: Role,
        kick: Callable[[int], None],
        *,
        spin: bool,
        driver: VirtioDriver | None = None,
        pool: DmaPool | None = None,
        report_crash: Callable[[int, str], None] | None = None,
        whole_used_len: bool = False,
    ) -> None:
        super().__init__(name, entry.id, role, window, spin=spin)
        self.whole_used_len = whole_used_len
        self.entry = entry
        self.config = VdevConfig(window, table_offset, entry)
        self.driver = driver
        self.binding: Binding | None = None
        self._amap = amap
        self._kick = kick
        self._pool = pool
        self._report_crash = report_crash
        self._notifyids: tuple[int, ...] = ()

    # -- the virtio device -----------------------------------------------------------
    @property
    def num_vrings(self) -> int:
        return len(self.entry.vrings)

    def vring(self, index: int) -> VringParts:
        vr = self.entry.vrings[index]
        layout = VringLayout(vr.num, vr.align)
        return layout.at(self._amap.translate(self.config.vring_da(index), layout.size))

    def translate(self, addr: int, length: int) -> int:
        return self._amap.translate(addr, length)

    def notify(self, index: int) -> None:
        self._kick(self._notifyids[index])

    @property
    def notifyids(self) -> tuple[int, ...]:
        """The vrings' notify ids, as the table says (read again by :meth:`bind`)."""
        return tuple(self.config.vring_notifyid(j) for j in range(self.num_vrings))

    def features(self) -> int:
        return self.config.features()

    def negotiate(self, supported: int) -> int:
        return self.config.negotiate(supported)

    @property
    def status(self) -> int:
        return self.config.status

    @status.setter
    def status(self, value: int) -> None:
        self.config.status = value

    @property
    def driver_ok(self) -> bool:
        """True once the driver set ``DRIVER_OK`` (the device side waits for it)."""
        return self.config.driver_ok

    def peer_reset(self) -> bool:
        return not self.config.status & VIRTIO_CONFIG_S_DRIVER_OK  # asked once a loop

    def dma_alloc(self, size: int) -> tuple[int, int]:
        if self._pool is None:
            raise AmplinkError(errno.ENOMEM, f"{self.name} has no buffer memory")
        da = self._pool.alloc(size)
        return da, self._amap.translate(da, size)

    # -- binding ---------------------------------------------------------------------
    def bind(self, driver: VirtioDriver) -> Binding:
        """Probe ``driver`` on this device (the notify ids are read from the table first)."""
        self._notifyids = self.notifyids
        self.binding = driver.probe(self)
        return self.binding

    def broken(self, error: OSError) -> None:
        """The peer broke the rings: on the host, the core made it touch memory outside
        its rings, which is reported as an ``mmufault`` crash."""
        super().broken(error)
        if self._report_crash is not None:
            self._report_crash(CRASH_MMUFAULT, str(error))

    # -- the host's subdevice --------------------------------------------------------
    def start(self) -> None:
        """Bind the driver of the device id; the core's kicks now reach it."""
        if self.driver is None:
            log.warning("%s: no driver for virtio device id %d", self.name, self.device_id)
            return
        self.bind(self.driver).handle_notify()  # a kick that came before had nobody to see it

    def stop(self, error: OSError, *, crashed: bool) -> None:
        """Remove the driver; for a core that still runs, reset the device (status 0)
        and kick it, so that it sees the driver go (a virtio reset)."""
        binding, self.binding = self.binding, None
        if binding is not None and self.driver is not None:
            self.driver.remove(binding, error)
        if self._pool is not None:
            self._pool.reset()
        if not crashed and self._notifyids:
            self.config.status = 0
            self.notify(0)


def handle_vdev(index: int, entry: rt.Vdev, ctx: ResourceContext, virtio: VirtioBus) -> RprocVdev:
    """``rproc_handle_vdev`` for vdev number ``index``: at boot, give each vring memory
    (fixed ``da`` reserved, ``FW_RSC_ADDR_ANY`` allocated page-aligned) and a notify id,
    write both into the loaded table, and reserve the buffer memory the driver of the
    device id will allocate; on attach, adopt what the boot loader placed."""
    memory = ctx.memory
    table_offset = memory.table_offset
    config = VdevConfig(memory.region, table_offset, entry)
    if ctx.placing:
        for j, vr in enumerate(entry.vrings):
            size = align_up(VringLayout(vr.num, vr.align).size, PAGE_SIZE)
            if vr.da == rt.FW_RSC_ADDR_ANY:
                da = memory.amap.allocate(size, PAGE_SIZE)
            else:
                da = vr.da
                memory.amap.reserve(da, size)
            config.set_vring(j, da, ctx.next_notifyid())
        dma = virtio.dma_size(entry)
        if dma:
            size = align_up(dma, PAGE_SIZE)
            pool_da = memory.amap.allocate(size, PAGE_SIZE)
            memory.pools[entry.offset] = DmaPool(f"{ctx.name}.vdev{index}", pool_da, size)
    vdev = RprocVdev(
        f"{ctx.name}.vdev{index}",
        memory.region,
        memory.amap,
        table_offset,
        entry,
        DRIVER,
        ctx.kick,
        spin=ctx.spin,
        driver=virtio.driver_for(entry.id),
        pool=memory.pools.get(entry.offset),
        report_crash=ctx.report_crash,
    )
    vdev.take_notifications = ctx.take_notifications
    vdev.spin_peer = ctx.peer_pid
    for notifyid in set(vdev.notifyids):
        ctx.route(notifyid, vdev.handle_notify)
    return vdev
