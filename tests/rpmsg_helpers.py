"""Both rpmsg-over-virtio roles over one real shared region, in one process.

Notifications are only counted; the tests pump the receive paths explicitly
(:meth:`Loop.pump`), so every exchange is deterministic and needs no thread.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from amplink.errors import RpmsgError
from amplink.memory import AddressMap, SharedRegion
from amplink.remoteproc.layout import default_rsc_table, load_rpmsg_vdev, region_size_for
from amplink.rpmsg import NameService, RpmsgBus
from amplink.rpmsg.core import announce
from amplink.rpmsg.virtio_link import VirtioRpmsgHost, VirtioRpmsgRemote
from amplink.transport.spin import AdaptiveSpin
from amplink.virtio.vdev import VdevConfig
from amplink.wire import rsc_table


@dataclass
class Loop:
    region: SharedRegion
    host: VirtioRpmsgHost
    remote: VirtioRpmsgRemote
    bus: RpmsgBus
    ns: NameService
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
        self.region.close()


def make_loop(
    num: int = 16, send_timeout: float = 0.3, table: rsc_table.ResourceTable | None = None
) -> Loop:
    table = table if table is not None else default_rsc_table(num=num, align=16)
    region = SharedRegion.create(region_size_for(table))
    amap = AddressMap.identity(region.size)
    layout = load_rpmsg_vdev(region, amap, table)
    loop_kicks = {"to_remote": 0, "to_host": 0}

    def kick(key):
        def f(index):
            assert index in (0, 1)
            loop_kicks[key] += 1

        return f

    host = VirtioRpmsgHost(
        "host",
        region,
        amap,
        layout.vdev,
        kick("to_remote"),
        pool_da=layout.pool_da,
        send_timeout=send_timeout,
        spin=AdaptiveSpin(enabled=False),
    )
    off = amap.translate(layout.table_da, layout.table_len)
    parsed = rsc_table.parse(region.mem[off : off + layout.table_len])
    remote_vdev = VdevConfig(region, off, parsed.vdevs()[0])
    remote = VirtioRpmsgRemote.over_vdev(
        "remote",
        region,
        amap,
        remote_vdev,
        kick("to_host"),
        send_timeout=send_timeout,
        spin=AdaptiveSpin(enabled=False),
    )
    bus = RpmsgBus()
    ns = NameService(bus, host)
    host.fail_listeners.append(lambda err: bus.remove_link(host, err))
    return Loop(region, host, remote, bus, ns, loop_kicks)


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
