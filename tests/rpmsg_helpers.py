"""Both sides of rpmsg over virtio over one real shared region, in one process: the
host's side made as a remoteproc host makes it (the table's vdev handled, its driver
bound), the firmware's as a core process makes it (a device-side vdev over the same
table, the same driver).

Notifications are only counted; the tests pump the receive paths explicitly
(:meth:`Loop.pump`), so every exchange is deterministic and needs no thread.
"""

import errno
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from amplink.errors import RpmsgError
from amplink.host import host_drivers
from amplink.memory import AddressMap, SharedRegion
from amplink.memory.region import PAGE_SIZE
from amplink.remoteproc.devmem import DeviceMemory
from amplink.remoteproc.layout import default_rsc_table, region_size_for
from amplink.remoteproc.resources import handle_resources
from amplink.remoteproc.subdev import ResourceContext
from amplink.remoteproc.vdev import RprocVdev
from amplink.rpmsg import RpmsgBus
from amplink.rpmsg.config import RpmsgConfig
from amplink.rpmsg.core import RpmsgLinks, announce
from amplink.rpmsg.virtio_driver import RpmsgVirtioDriver
from amplink.rpmsg.virtio_link import VirtioRpmsgHost, VirtioRpmsgRemote
from amplink.virtio.device import DEVICE
from amplink.wire import rsc_table


@dataclass
class Loop:
    region: SharedRegion
    host: VirtioRpmsgHost
    remote: VirtioRpmsgRemote
    bus: RpmsgBus
    kicks: dict = field(default_factory=lambda: {"to_remote": 0, "to_host": 0})

    def pump(self) -> int:
        """Run both receive paths until neither has anything left."""
        total = 0
        while True:
            n = self.remote.poll_rx() + self.host.poll_rx()
            total += n
            if not n:
                return total

    def remote_ept(self, name, callback=None):
        ept = self.remote.endpoints.create(callback, name=name, learn_dst=True)
        announce(self.remote, name, ept.addr, destroy=False)
        return ept

    def close(self) -> None:
        """As a stop does: both links fail (which releases their endpoints and their
        blocked senders' wakeups at once, not when the garbage collector gets to them)
        and let go of the memory, which is then unmapped."""
        for link in (self.host, self.remote):
            if link.failure is None:
                link.fail(RpmsgError(errno.ESHUTDOWN, "the loop is closed"))
            link.quiesce(10)
        self.region.close()


def make_loop(
    num: int = 16, send_timeout: float = 0.3, table: rsc_table.ResourceTable | None = None
) -> Loop:
    table = table if table is not None else default_rsc_table(num=num, align=16)
    bus = RpmsgBus()
    config = RpmsgConfig(send_timeout=send_timeout)
    drivers = host_drivers((), RpmsgLinks(bus), config)
    region = SharedRegion.create(region_size_for(table, drivers))
    amap = AddressMap.identity(region.size)
    raw = table.build()
    memory = DeviceMemory(region, amap, amap.allocate(len(raw), PAGE_SIZE), len(raw))
    memory.write(memory.table_da, raw)
    loop_kicks = {"to_remote": 0, "to_host": 0}

    def kick(key):
        def f(notifyid):
            assert notifyid in (0, 1)
            loop_kicks[key] += 1

        return f

    ctx = ResourceContext(
        "host",
        memory,
        placing=True,
        kick=kick("to_remote"),
        route=lambda notifyid, handler: None,
        next_notifyid=itertools.count().__next__,
        spin=False,
        report_crash=lambda kind, reason: None,
    )
    parsed = rsc_table.parse(memory.table())
    subdevs = handle_resources(
        parsed, ctx, virtio=drivers.virtio, handlers=drivers.resources, memories={}, vendor=None
    )
    (host_vdev,) = [s for s in subdevs if isinstance(s, RprocVdev)]
    host_vdev.start()  # the host's driver binds: DRIVER_OK
    assert isinstance(host_vdev.binding, VirtioRpmsgHost)
    remote_vdev = RprocVdev(
        "remote", region, amap, memory.table_offset, parsed.vdevs()[0], DEVICE, kick("to_host"),
        spin=False,
    )  # fmt: skip
    remote = remote_vdev.bind(RpmsgVirtioDriver(None, config))
    assert isinstance(remote, VirtioRpmsgRemote)
    return Loop(region, host_vdev.binding, remote, bus, loop_kicks)


def send_in_thread(send: Callable[[], object]) -> tuple[threading.Thread, list[int]]:
    """Start ``send`` (a blocking send) in a thread; the list gets the errno it fails
    with, if it does."""
    outcome: list[int] = []

    def run() -> None:
        try:
            send()
        except RpmsgError as exc:
            outcome.append(exc.errno)

    t = threading.Thread(target=run)
    t.start()
    return t, outcome


class Traffic:
    """Round trips on ``ept`` in a thread until one fails (a peer killed mid-traffic)."""

    def __init__(self, ept, payload: bytes, timeout: float) -> None:
        self.errors: list[OSError] = []
        self._thread = threading.Thread(target=self._run, args=(ept, payload, timeout))
        self._thread.start()

    def _run(self, ept, payload: bytes, timeout: float) -> None:
        try:
            while True:
                ept.send(payload)
                ept.recv(timeout=timeout)
        except OSError as exc:
            self.errors.append(exc)

    def join(self, timeout: float) -> list[OSError]:
        """The failure that ended it; asserts that it did end within ``timeout``."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "a sender hung after the peer died"
        return self.errors
