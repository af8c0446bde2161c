"""What a remote processor binds what it finds to.

Linux finds a core's platform driver through the device tree, the driver of a virtio
device through the virtio bus, and the handler of a resource type in a table of the
remoteproc core.  :class:`RprocDrivers` holds all three for one system; which drivers a
system has is decided in one place (:mod:`amplink.bindings`), for the host and the
firmware alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from amplink.remoteproc.subdev import ResourceHandlers
from amplink.virtio.bus import VirtioBus

if TYPE_CHECKING:  # a type only: firmware uses the drivers, never a platform
    from amplink.remoteproc.platform import PlatformDriver


@dataclass(frozen=True)
class RprocDrivers:
    """``platforms``: which platform runs an image (the first whose ``runs()`` says so);
    ``virtio``: the driver of each virtio device id (bound to the core's vdevs);
    ``resources``: the handler of each resource type (makes the core's subdevices)."""

    platforms: tuple[PlatformDriver, ...]
    virtio: VirtioBus = field(default_factory=VirtioBus)
    resources: ResourceHandlers = field(default_factory=ResourceHandlers)
