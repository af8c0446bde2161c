"""Virtio drivers and the registry that binds them to devices by device id.

As on Linux's virtio bus, a driver says which device ids it drives (``id_table``, as
``virtio_rpmsg_bus`` lists ``VIRTIO_ID_RPMSG``) and a :class:`VirtioBus` matches each
device a transport brings to the driver of its id.  One driver class serves both sides
of a device: :meth:`VirtioDriver.probe` gets a :class:`~amplink.virtio.device.VirtioDevice`
whose ``role`` says whether this process drives the rings (a host) or implements the
device (firmware).  What ``probe`` returns is the driver's side of that one device (its
*binding*, Linux's driver data): the transport hands it the peer's notifications, and
takes it down when the peer goes away.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import ClassVar, Protocol

from amplink.virtio.device import VirtioDevice
from amplink.wire import rsc_table as rt

log = logging.getLogger(__name__)


class Binding(Protocol):
    """A driver's side of one device (or of whatever a core carries), as its transport
    uses it."""

    def handle_notify(self) -> None:
        """The peer notified one of the device's vrings: take in what changed."""

    def take_in_last(self) -> None:
        """For a peer that died (or is stopped as crashed): take in what it had sent,
        at most what the rings hold, so that a peer still writing cannot keep the
        caller here."""

    def unconsumed(self) -> dict[int, int]:
        """For a peer that died: what was sent to it and never consumed, counted by a
        key of the driver's (rpmsg: the source address)."""

    def fail(self, error: OSError) -> None:
        """The peer is gone: every user of the device gets ``error``. Idempotent."""

    def quiesce(self, timeout: float = 5.0) -> bool:
        """After :meth:`fail`: wait until no thread touches the window any more (so it
        can be unmapped); False if one did not let go within ``timeout`` s."""


class VirtioDriver(ABC):
    """Drives the devices whose id is in :attr:`id_table` (Linux: ``struct
    virtio_driver``), on either side."""

    id_table: ClassVar[tuple[int, ...]]
    name: ClassVar[str]

    def dma_size(self, vrings: Sequence[rt.Vring]) -> int:
        """Driver side: the bytes this driver's probe will :meth:`~amplink.virtio.device.
        VirtioDevice.dma_alloc` for a device with these vrings, so that the transport can
        reserve them (0: none)."""
        return 0

    @abstractmethod
    def probe(self, vdev: VirtioDevice) -> Binding:
        """Bring the device up on ``vdev.role``'s side and return the binding.  A driver
        side probe sets ``DRIVER_OK``; a device side probe runs once the driver did."""

    def remove(self, binding: Binding, error: OSError) -> None:
        """Take the device down: its users get ``error``; returns once no thread uses
        its memory (logged if one holds on for 5 s)."""
        binding.fail(error)
        if not binding.quiesce():
            log.error("%s: a thread still uses the device's rings after 5 s", self.name)


class VirtioBus:
    """The virtio drivers of one system, by device id (a device id has one driver)."""

    def __init__(self, drivers: Iterable[VirtioDriver] = ()) -> None:
        self._by_id: dict[int, VirtioDriver] = {}
        for drv in drivers:
            self.register_driver(drv)

    def register_driver(self, drv: VirtioDriver) -> None:
        """Drive every id in ``drv.id_table`` with ``drv`` (a later driver for the same
        id replaces the earlier one)."""
        for device_id in drv.id_table:
            self._by_id[device_id] = drv

    def driver_for(self, device_id: int) -> VirtioDriver | None:
        """The driver of ``device_id``, if this system has one."""
        return self._by_id.get(device_id)

    def dma_size(self, vdev: rt.Vdev) -> int:
        """Bytes the driver of a table's vdev entry will allocate for it (0 without one)."""
        drv = self._by_id.get(vdev.id)
        return drv.dma_size(vdev.vrings) if drv is not None else 0
