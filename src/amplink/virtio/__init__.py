"""Virtqueue driver and device halves and vdev negotiation, over a memory window."""

from amplink.virtio.rings import VirtqueueDevice, VirtqueueDriver
from amplink.virtio.vdev import VdevConfig
from amplink.virtio.virtqueue import Window

__all__ = ["VdevConfig", "VirtqueueDevice", "VirtqueueDriver", "Window"]
