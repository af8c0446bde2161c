"""A virtio device as its transport presents it, to either side of its rings.

Linux gives a virtio driver a ``struct virtio_device`` whose transport ops read and write
its status and features and find its vrings; OpenAMP uses one such struct for both
sides, with a role (``VIRTIO_DEV_DRIVER``, ``VIRTIO_DEV_DEVICE``).  :class:`VirtioDevice`
is that object here.  A transport supplies only what differs between transports:

* the **memory window** the rings and buffers are in, where each vring lies in it
  (:meth:`~VirtioDevice.vring`) and how a buffer address translates to a window offset
  (:meth:`~VirtioDevice.translate`), both bounds-checked (``AddressError``);
* the **notify path** to the peer (:meth:`~VirtioDevice.notify`); what arrives from the
  peer the transport hands to the bound driver's ``handle_notify()``;
* the **config**: status and features (driver side), the negotiated features and
  whether the driver went away (device side), and memory for the driver's buffers
  (:meth:`~VirtioDevice.dma_alloc`, as ``dma_alloc_coherent`` on the device).

Transports: a remoteproc vdev in a loaded resource table, kicked through a mailbox
(:class:`amplink.remoteproc.vdev.RprocVdev`, both roles), and a vhost-user front end
(:class:`amplink.transport.vhost_user.VhostUserDevice`, device side).  A driver bound by
device id (:mod:`amplink.virtio.bus`) builds its virtqueue halves over the device with
:meth:`~VirtioDevice.driver_vq` or :meth:`~VirtioDevice.device_vq`.
"""

from __future__ import annotations

import errno
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

from amplink.errors import AmplinkError
from amplink.memory.region import SharedRegion
from amplink.virtio.rings import VirtqueueDevice, VirtqueueDriver
from amplink.wait import TakeNotifications
from amplink.wire.vring import VringParts

log = logging.getLogger(__name__)

Role = Literal["driver", "device"]
DRIVER: Role = "driver"  # VIRTIO_DEV_DRIVER: owns the buffers (a host)
DEVICE: Role = "device"  # VIRTIO_DEV_DEVICE: consumes them (firmware, a vhost-user backend)


class VirtioDevice(ABC):
    """One virtio device of id ``device_id``, seen from ``role``.

    ``window`` holds the rings and the buffers; ``spin`` says whether polling the
    peer's rings is worthwhile (the peer can run on another CPU: see
    :func:`amplink.wait.spin_worthwhile`)."""

    whole_used_len = False
    """Device side: give the driver's buffers back with their whole length as the used
    length, where the virtio spec and Linux write the bytes the device wrote (0 for a
    buffer it only read).  A transport whose drivers size their next buffer from it
    (OpenAMP's linux-machine hosts) says True."""

    take_notifications: TakeNotifications | None = None
    """How a waiter takes the peer's notifications in its own thread, when the
    transport's notifications are an interrupt line (a remoteproc platform's mailbox);
    the bound driver hands it to its waiters (:data:`amplink.wait.TakeNotifications`)."""

    def __init__(
        self, name: str, device_id: int, role: Role, window: SharedRegion, *, spin: bool
    ) -> None:
        self.name = name
        self.device_id = device_id
        self.role = role
        self.window = window
        self.spin = spin
        self.spin_peer: Callable[[], int | None] | None = None  # (AdaptiveSpin's peer)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} id {self.device_id} ({self.role} side)>"

    # -- the rings -------------------------------------------------------------------
    @property
    @abstractmethod
    def num_vrings(self) -> int:
        """How many vrings the device has."""

    @abstractmethod
    def vring(self, index: int) -> VringParts:
        """Where vring ``index`` lies in :attr:`window` (``AddressError`` if outside)."""

    @abstractmethod
    def translate(self, addr: int, length: int) -> int:
        """The window offset of the buffer ``[addr, addr + length)`` named in a
        descriptor (``AddressError`` if any of it is outside the window)."""

    @abstractmethod
    def notify(self, index: int) -> None:
        """Tell the peer that vring ``index`` changed (the transport's notify path)."""

    def broken(self, error: OSError) -> None:
        """The driver found the peer broke the device's rings (a ``VirtqueueError``):
        the driver has failed its users; the transport reacts (logged by default)."""
        log.error("%s: the peer broke the device: %s", self.name, error.strerror or error)

    def driver_vq(self, index: int, name: str) -> VirtqueueDriver:
        """The driver half of vring ``index``."""
        return VirtqueueDriver(self.window, self.vring(index), name)

    def device_vq(self, index: int, name: str, *, writable: bool) -> VirtqueueDevice:
        """The device half of vring ``index``, whose buffers the device writes
        (``writable``) or reads."""
        return VirtqueueDevice(
            self.window,
            self.vring(index),
            name,
            self.translate,
            writable=writable,
            whole_used_len=self.whole_used_len,
        )

    # -- config ----------------------------------------------------------------------
    @abstractmethod
    def features(self) -> int:
        """The negotiated feature bits (what the device offers and the driver accepted)."""

    def negotiate(self, supported: int) -> int:
        """Driver side: accept the offered features that are ``supported``; returns them."""
        raise self._wrong_side("negotiate features")

    @property
    def status(self) -> int:
        """Driver side: the device status byte (ACKNOWLEDGE, DRIVER, DRIVER_OK...)."""
        raise self._wrong_side("read the status")

    @status.setter
    def status(self, value: int) -> None:
        raise self._wrong_side("write the status")

    def dma_alloc(self, size: int) -> tuple[int, int]:
        """Driver side: ``size`` bytes for the driver's buffers, as ``(address,
        window offset)``; ``ENOMEM`` when the transport has no room."""
        raise self._wrong_side("allocate buffers")

    def peer_reset(self) -> bool:
        """Device side: True once the driver reset the device or went away (a new
        driver must bring it up again)."""
        raise self._wrong_side("watch for a reset")

    def _wrong_side(self, what: str) -> AmplinkError:
        return AmplinkError(errno.EOPNOTSUPP, f"{self.name}: the {self.role} side cannot {what}")
