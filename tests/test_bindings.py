"""What binds to what: the registries both roles use, and a core whose table has a
vdev nobody drives beside the rpmsg one."""

import errno
import logging

import pytest

from amplink.bindings import GlinkEdgeHandler, firmware_rpmsg, resource_handlers, virtio_drivers
from amplink.errors import AmplinkError
from amplink.host import Rproc
from amplink.memory import AddressMap, SharedRegion
from amplink.remoteproc.layout import default_rsc_table, glink_rsc_table
from amplink.remoteproc.resources import FeaturesHandler, TraceHandler
from amplink.rpmsg.virtio_driver import RpmsgVirtioDriver
from amplink.virtio.constants import VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_ID_RPMSG
from amplink.wire import rsc_table as rt
from amplink.wire.glink_edge import RSC_AMPLINK_GLINK
from amplink.wire.protocol import RSC_AMPLINK_FEATURES
from resources import snapshot

VIRTIO_ID_CONSOLE = 3  # a virtio device amplink has no driver for
SERVICE = "rpmsg-openamp-demo-channel"


def test_the_registries_bind_rpmsg_and_the_glink_edge():
    bus = virtio_drivers(None)
    assert isinstance(bus.driver_for(VIRTIO_ID_RPMSG), RpmsgVirtioDriver)
    assert bus.driver_for(VIRTIO_ID_CONSOLE) is None
    handlers = resource_handlers(None)
    assert isinstance(handlers.get(RSC_AMPLINK_GLINK), GlinkEdgeHandler)
    assert isinstance(handlers.get(RSC_AMPLINK_FEATURES), FeaturesHandler)
    assert isinstance(handlers.get(rt.RSC_TRACE), TraceHandler)
    assert handlers.get(140) is None


def test_the_firmware_finds_its_backend_by_the_same_registries():
    with SharedRegion.create(4096, "fw-rpmsg") as region:
        amap = AddressMap.identity(region.size)

        def find(table):
            raw = table.build()  # loaded at offset 0, as a host would
            region.mem[: len(raw)] = raw
            return firmware_rpmsg("fw", region, amap, 0, rt.parse(raw), lambda n: None, False)

        assert find(default_rsc_table()).notifyids == frozenset({0})  # vrings not placed
        assert find(glink_rsc_table()).notifyids == frozenset({0})  # GLINK's kick word
        with pytest.raises(AmplinkError) as exc:
            find(rt.ResourceTable([rt.Trace(0, 64, "trace0")]))
        assert exc.value.errno == errno.EINVAL and "neither" in exc.value.strerror


def test_a_vdev_without_a_driver_is_placed_and_left_alone(caplog):
    """vdev 0 is a virtio console nobody drives: its vrings get memory and notify ids
    0 and 1 (so rpmsg's get 2 and 3), its status stays 0, and rpmsg on vdev 1 works on
    both sides."""
    table = default_rsc_table(num=16)
    console = rt.Vdev(VIRTIO_ID_CONSOLE, vrings=[rt.Vring(rt.FW_RSC_ADDR_ANY, 4096, 16)] * 2)
    table.entries.insert(1, console)
    before = snapshot()
    caplog.set_level(logging.WARNING)
    with Rproc("twovdevs", "amplink.firmware.echo", table=table) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        ept.send(b"past the console")
        assert ept.recv(10).data == b"past the console"
        loaded = rp.loaded_table()
        assert loaded is not None
        first, second = loaded.vdevs()
        assert [v.notifyid for v in first.vrings] == [0, 1]
        assert [v.notifyid for v in second.vrings] == [2, 3]
        assert first.status == 0 and second.status & VIRTIO_CONFIG_S_DRIVER_OK
        assert rp.link is not None and rp.link.name == "twovdevs.vdev1"
    assert "no driver for virtio device id 3" in caplog.text
    assert snapshot() == before
