"""Virtqueue driver and device halves and vdev negotiation, over a memory window."""

from amplink.virtio.vdev import VdevConfig
from amplink.virtio.virtqueue import VirtqueueDevice, VirtqueueDriver, Window

__all__ = ["VdevConfig", "VirtqueueDevice", "VirtqueueDriver", "Window"]
