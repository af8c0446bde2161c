"""The physical address space of one system: shared regions, address maps, fences."""

from amplink.memory.addrmap import AddressMap, Mapping
from amplink.memory.barrier import full_fence
from amplink.memory.region import SharedRegion

__all__ = ["AddressMap", "Mapping", "SharedRegion", "full_fence"]
