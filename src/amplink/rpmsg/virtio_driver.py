"""rpmsg as the virtio driver of ``VIRTIO_ID_RPMSG`` devices, on both sides.

This is where amplink says that a virtio device of id 7 carries rpmsg (the ``id_table``
of Linux's ``virtio_rpmsg_bus``), once for the host and the firmware alike: on the
driver side :meth:`RpmsgVirtioDriver.probe` makes a :class:`VirtioRpmsgHost` (and, on a
host with a bus, the name service that turns the firmware's announcements into
channels); on the device side a :class:`VirtioRpmsgRemote`.  A link whose peer broke
its rings is reported to the device's transport (:meth:`VirtioDevice.broken`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from amplink.rpmsg.config import RpmsgConfig
from amplink.rpmsg.core import RpmsgLinks
from amplink.rpmsg.ns import NameService
from amplink.rpmsg.virtio_link import (
    DEFAULT_SEND_TIMEOUT,
    VirtioRpmsgHost,
    VirtioRpmsgLink,
    VirtioRpmsgRemote,
)
from amplink.virtio.bus import Binding, VirtioDriver
from amplink.virtio.constants import VIRTIO_ID_RPMSG
from amplink.virtio.device import DRIVER, VirtioDevice
from amplink.wire import rsc_table as rt


class RpmsgVirtioDriver(VirtioDriver):
    """rpmsg over virtio.  ``links``: where a host's links go (None in firmware, which
    uses the link :meth:`probe` returns); ``config``: buffers and send timeout."""

    id_table: ClassVar[tuple[int, ...]] = (VIRTIO_ID_RPMSG,)
    name: ClassVar[str] = "virtio_rpmsg_bus"

    def __init__(self, links: RpmsgLinks | None = None, config: RpmsgConfig | None = None) -> None:
        self.links = links
        self.config = config if config is not None else RpmsgConfig()

    def dma_size(self, vrings: Sequence[rt.Vring]) -> int:
        """The buffer pool of :attr:`config`'s geometry for these vrings."""
        if len(vrings) != 2:
            return 0
        return self.config.buffers.pool_bytes(vrings[0].num, vrings[1].num)

    def probe(self, vdev: VirtioDevice) -> VirtioRpmsgLink:
        """The link over ``vdev`` on its side (see the module docstring)."""
        timeout = self.config.send_timeout
        timeout = DEFAULT_SEND_TIMEOUT if timeout is None else timeout
        link: VirtioRpmsgLink
        if vdev.role == DRIVER:
            link = VirtioRpmsgHost(
                vdev.name, vdev, buffers=self.config.buffers, send_timeout=timeout
            )
        else:
            link = VirtioRpmsgRemote(vdev.name, vdev, send_timeout=timeout)

        if vdev.role == DRIVER:
            link.limits = self.config.limits
        link.take_notifications = vdev.take_notifications

        def failed(error: OSError) -> None:
            if isinstance(error, link.broken_by_peer):
                vdev.broken(error)

        link.fail_listeners.append(failed)
        if self.links is not None and vdev.role == DRIVER:
            self.links.add(link)
            NameService(self.links.bus, link)
        return link

    def remove(self, binding: Binding, error: OSError) -> None:
        """Fail the link's users with ``error``, wait until its rings are left alone."""
        super().remove(binding, error)
        if self.links is not None and isinstance(binding, VirtioRpmsgLink):
            self.links.remove(binding)
