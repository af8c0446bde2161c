"""What binds to what a firmware's resource table asks for, in one place, for both roles.

* a **vdev** of id 7 (``VIRTIO_ID_RPMSG``) is driven by rpmsg over virtio: the
  ``id_table`` of :class:`~amplink.rpmsg.virtio_driver.RpmsgVirtioDriver`, registered
  by :func:`virtio_drivers`;
* a **vendor entry of type 129** (``RSC_AMPLINK_GLINK``) is a GLINK edge:
  :class:`GlinkEdgeHandler`, registered by :func:`resource_handlers` beside the trace
  buffers (``RSC_TRACE``) and amplink's features entry (vendor 128).

The host binds its remote processors' vdevs and subdevices with these registries
(:func:`amplink.host.host_drivers`); a firmware finds its rpmsg backend in its loaded
table with the same ones (:func:`firmware_rpmsg`, used by the core process), so both
ends always agree on what an entry means.
"""

from __future__ import annotations

import errno
import logging
import struct
from abc import abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Protocol

from amplink.errors import AmplinkError
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import PAGE_SIZE, SharedRegion
from amplink.remoteproc.crash import CRASH_MMUFAULT
from amplink.remoteproc.resources import FeaturesHandler, TraceHandler
from amplink.remoteproc.subdev import (
    BoundSubdev,
    ResourceContext,
    ResourceHandler,
    ResourceHandlers,
    RprocSubdev,
)
from amplink.remoteproc.vdev import RprocVdev
from amplink.rpmsg.config import RpmsgConfig
from amplink.rpmsg.core import RpmsgLinks
from amplink.rpmsg.polled import PolledLink
from amplink.rpmsg.virtio_driver import RpmsgVirtioDriver
from amplink.virtio.bus import VirtioBus
from amplink.virtio.device import DEVICE
from amplink.wait import AdaptiveSpin
from amplink.wire import rsc_table as rt
from amplink.wire.glink_edge import EDGE_DA_OFF, EDGE_NOTIFYID, RSC_AMPLINK_GLINK, GlinkEdgeSpec

if TYPE_CHECKING:  # a type only: a core process loads GLINK only when its table has an
    # edge (see GlinkEdge.start and firmware_link)
    from amplink.rpmsg.glink_link import GlinkLink

log = logging.getLogger(__name__)
_U32 = struct.Struct("<I")  # the edge entry is little-endian (wire/glink_edge.py)


def virtio_drivers(links: RpmsgLinks | None, config: RpmsgConfig | None = None) -> VirtioBus:
    """The virtio drivers, by device id: rpmsg for ``VIRTIO_ID_RPMSG``.  ``links``: a
    host's (None in firmware); ``config``: the host's rpmsg settings."""
    return VirtioBus([RpmsgVirtioDriver(links, config)])


def resource_handlers(
    links: RpmsgLinks | None, config: RpmsgConfig | None = None
) -> ResourceHandlers:
    """The resource handlers, by type: trace buffers, amplink's features entry, and the
    GLINK edge (vendor 129)."""
    return ResourceHandlers([TraceHandler(), FeaturesHandler(), GlinkEdgeHandler(links, config)])


# -- the GLINK edge ------------------------------------------------------------------
class RpmsgEntryHandler(ResourceHandler):
    """A resource handler whose entry carries rpmsg (the firmware side brings it up)."""

    notifyid: ClassVar[int]

    @abstractmethod
    def firmware_link(
        self,
        name: str,
        entry: rt.Entry,
        window: SharedRegion,
        amap: AddressMap,
        kick: Callable[[int], None],
        spin: bool,
    ) -> PolledLink:
        """The firmware's side of the entry, from the loaded table (``EINVAL`` if the
        host did not place it)."""


class GlinkEdgeHandler(RpmsgEntryHandler):
    """Vendor 129: one GLINK edge per core (layout in :mod:`amplink.wire.glink_edge`).  The
    host places it like a vring (zeroed memory, its address written into the loaded
    table) and carries it as a :class:`GlinkEdge` subdevice, as Linux's
    ``qcom_add_glink_subdev`` does; the firmware opens the other end."""

    rsc_type: ClassVar[int] = RSC_AMPLINK_GLINK
    notifyid: ClassVar[int] = EDGE_NOTIFYID

    def __init__(self, links: RpmsgLinks | None, config: RpmsgConfig | None = None) -> None:
        self.links = links
        self.config = config if config is not None else RpmsgConfig()

    def placement(self, entry: rt.Entry) -> tuple[int, int] | None:
        assert isinstance(entry, rt.OpaqueEntry)
        spec = GlinkEdgeSpec.from_entry(entry)
        return spec.size, spec.da

    def handle(self, index: int, entry: rt.Entry, ctx: ResourceContext) -> RprocSubdev | None:
        assert isinstance(entry, rt.OpaqueEntry)
        spec = GlinkEdgeSpec.from_entry(entry)
        memory = ctx.memory
        da_at = memory.table_offset + entry.offset + EDGE_DA_OFF
        if ctx.placing:
            if spec.da == rt.FW_RSC_ADDR_ANY:
                da = memory.amap.allocate(spec.size, PAGE_SIZE)
            else:
                da = spec.da
                memory.amap.reserve(da, spec.size)
            _U32.pack_into(memory.region.mem, da_at, da)
        da = _U32.unpack_from(memory.region.mem, da_at)[0]
        offset = memory.amap.translate(da, spec.size)
        if ctx.placing:
            memory.region.mem[offset : offset + spec.size] = bytes(spec.size)
        edge = GlinkEdge(f"{ctx.name}.glink", memory.region, offset, spec, ctx, self)
        ctx.route(self.notifyid, edge.handle_notify)
        return edge

    def firmware_link(
        self,
        name: str,
        entry: rt.Entry,
        window: SharedRegion,
        amap: AddressMap,
        kick: Callable[[int], None],
        spin: bool,
    ) -> GlinkLink:
        from amplink.rpmsg.glink_link import GlinkLink  # noqa: PLC0415 (only with an edge)

        assert isinstance(entry, rt.OpaqueEntry)
        spec = GlinkEdgeSpec.from_entry(entry)
        if spec.da == rt.FW_RSC_ADDR_ANY:
            raise AmplinkError(errno.EINVAL, "the host did not place the GLINK edge")
        notifyid = self.notifyid
        return GlinkLink(
            f"{name}.glink",
            window,
            amap.translate(spec.da, spec.size),
            spec,
            "remote",
            lambda: kick(notifyid),
            spin=AdaptiveSpin(enabled=spin),
        )


class GlinkEdge(BoundSubdev):
    """The host's end of a core's GLINK edge: up after the core started, its channels on
    the host's bus; down (``EPIPE`` or ``ESHUTDOWN`` to its users) before it stops."""

    detachable: ClassVar[bool] = False  # the edge has no way to tell the core
    link: GlinkLink | None = None

    def __init__(
        self,
        name: str,
        region: SharedRegion,
        offset: int,
        spec: GlinkEdgeSpec,
        ctx: ResourceContext,
        handler: GlinkEdgeHandler,
    ) -> None:
        self.name = name
        self._region = region
        self._offset = offset
        self._spec = spec
        self._ctx = ctx
        self._handler = handler

    def start(self) -> None:
        from amplink.rpmsg.glink_link import (  # noqa: PLC0415 (only with an edge)
            DEFAULT_SEND_TIMEOUT,
            GlinkChannels,
            GlinkLink,
        )

        ctx, handler = self._ctx, self._handler
        if handler.links is None:
            raise AmplinkError(errno.EINVAL, f"{self.name}: a GLINK edge needs a host's links")
        timeout = handler.config.send_timeout
        notifyid = handler.notifyid
        link = GlinkLink(
            self.name,
            self._region,
            self._offset,
            self._spec,
            "host",
            lambda: ctx.kick(notifyid),
            send_timeout=DEFAULT_SEND_TIMEOUT if timeout is None else timeout,
            spin=AdaptiveSpin(enabled=ctx.spin, peer=ctx.peer_pid),
            limits=handler.config.limits,
        )
        link.take_notifications = ctx.take_notifications

        def failed(error: OSError) -> None:
            if isinstance(error, link.broken_by_peer):
                ctx.report_crash(CRASH_MMUFAULT, str(error))

        link.fail_listeners.append(failed)
        handler.links.add(link)
        GlinkChannels(handler.links.bus, link)
        self.binding = self.link = link
        link.handle_notify()  # a kick that came before had nobody to see it

    def stop(self, error: OSError, *, crashed: bool) -> None:
        link, self.link, self.binding = self.link, None, None
        if link is None:
            return
        link.fail(error)
        if not link.quiesce():
            log.error("%s: a thread still uses the GLINK edge after 5 s", self.name)
        if self._handler.links is not None:
            self._handler.links.remove(link)


# -- the firmware side ---------------------------------------------------------------
class FirmwareRpmsg(Protocol):
    """How a firmware's rpmsg comes up: :meth:`ready` once the host is up,
    :meth:`probe` then gives the link; :attr:`notifyids` are the kick words for it."""

    notifyids: frozenset[int]

    def ready(self) -> bool:
        """Whether the host has its side up (``DRIVER_OK``; a GLINK edge: always)."""

    def probe(self) -> PolledLink:
        """The firmware's link (call again after the host reset the device)."""


class _VdevRpmsg:
    def __init__(self, vdev: RprocVdev, bus: VirtioBus) -> None:
        self._vdev = vdev
        self._bus = bus
        self.notifyids = frozenset(vdev.notifyids)

    def ready(self) -> bool:
        return self._vdev.driver_ok

    def probe(self) -> PolledLink:
        vdev = self._vdev
        driver = self._bus.driver_for(vdev.device_id)
        assert driver is not None
        self.notifyids = frozenset(vdev.notifyids)
        link = vdev.bind(driver)
        if not isinstance(link, PolledLink):
            raise AmplinkError(errno.EINVAL, f"{vdev.name}: its driver gives no rpmsg link")
        return link


class _EntryRpmsg:
    def __init__(self, make: Callable[[], PolledLink], notifyid: int) -> None:
        self._make = make
        self.notifyids = frozenset({notifyid})

    def ready(self) -> bool:
        return True

    def probe(self) -> PolledLink:
        return self._make()


def firmware_rpmsg(
    name: str,
    window: SharedRegion,
    amap: AddressMap,
    table_offset: int,
    table: rt.ResourceTable,
    kick: Callable[[int], None],
    spin: bool,
    *,
    whole_used_len: bool = False,
) -> FirmwareRpmsg:
    """The firmware's rpmsg: the first entry of its loaded ``table`` (at
    ``table_offset`` in ``window``) that a virtio driver or a resource handler above
    makes rpmsg of, brought up on the device side; ``EINVAL`` if there is none.
    ``whole_used_len``: the transport's vdev gives buffers back whole
    (:attr:`amplink.virtio.device.VirtioDevice.whole_used_len`)."""
    bus = virtio_drivers(None)
    handlers = resource_handlers(None)
    vdevs = 0
    for entry in table.entries:
        if isinstance(entry, rt.Vdev):
            if bus.driver_for(entry.id) is not None:
                vdev = RprocVdev(
                    f"{name}.vdev{vdevs}",
                    window,
                    amap,
                    table_offset,
                    entry,
                    DEVICE,
                    kick,
                    spin=spin,
                    whole_used_len=whole_used_len,
                )
                return _VdevRpmsg(vdev, bus)
            vdevs += 1
            continue
        handler = handlers.get(rt.entry_type(entry))
        if isinstance(handler, RpmsgEntryHandler):
            edge = handler

            def make(edge: RpmsgEntryHandler = edge, entry: rt.Entry = entry) -> PolledLink:
                return edge.firmware_link(name, entry, window, amap, kick, spin)

            return _EntryRpmsg(make, edge.notifyid)
    raise AmplinkError(errno.EINVAL, "the table has neither an rpmsg vdev nor a GLINK edge")
