"""Device-address translation: which bytes of a region a device address names.

A remote core sees memory at device addresses (``da``); in amplink every such range is
backed by a range of a :class:`~amplink.memory.region.SharedRegion`.  Everything that
arrives from shared memory (vring addresses, descriptor addresses, resource-table
entries) is translated through an :class:`AddressMap`, which refuses any range that is
not entirely inside one mapping, so a hostile peer cannot make us touch other memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from amplink.errors import AddressError


@dataclass(frozen=True, slots=True)
class Mapping:
    """``size`` bytes at device address ``da`` backed by region offset ``offset``."""

    da: int
    size: int
    offset: int
    name: str = ""

    def contains(self, da: int, length: int) -> bool:
        """True if ``[da, da + length)`` lies inside this mapping."""
        return self.da <= da and da + length <= self.da + self.size


class AddressMap:
    """A set of non-overlapping device-address ranges and a bump allocator over them."""

    def __init__(self, mappings: list[Mapping] | None = None) -> None:
        self._maps: list[Mapping] = []
        self._alloc_next: dict[str, int] = {}
        self._used: list[tuple[int, int]] = []  # [start, end) of every reserved range
        for m in mappings or []:
            self.add(m)

    @classmethod
    def identity(cls, size: int, name: str = "shm") -> AddressMap:
        """Device address == region offset for the whole region (OpenAMP linux layout)."""
        return cls([Mapping(0, size, 0, name)])

    @property
    def mappings(self) -> tuple[Mapping, ...]:
        """The mappings, in the order they were added."""
        return tuple(self._maps)

    def add(self, m: Mapping) -> None:
        """Add a mapping; ``ValueError`` if it is empty, negative, or overlaps another."""
        if m.size <= 0 or m.da < 0 or m.offset < 0:
            raise ValueError(f"invalid mapping {m}")
        for other in self._maps:
            if m.da < other.da + other.size and other.da < m.da + m.size:
                raise ValueError(f"mapping {m} overlaps {other}")
        self._maps.append(m)

    def translate(self, da: int, length: int) -> int:
        """Region offset of ``[da, da+length)``; AddressError unless fully mapped."""
        if length >= 0:
            for m in self._maps:
                if m.contains(da, length):
                    return m.offset + (da - m.da)
        raise AddressError(
            f"device address range [{da:#x}, {da + length:#x}) is not inside any mapped memory"
        )

    def to_da(self, offset: int) -> int:
        """Device address of a region offset (first mapping that covers it)."""
        for m in self._maps:
            if m.offset <= offset < m.offset + m.size:
                return m.da + (offset - m.offset)
        raise AddressError(f"region offset {offset:#x} is not mapped at any device address")

    def allocate(self, size: int, align: int, *, mapping: str | None = None) -> int:
        """Reserve ``size`` bytes aligned to ``align`` and return their device address.

        Allocation is a bump pointer per mapping, starting at the mapping's base; it is
        meant for laying out one system at start-up, not as a general heap.
        """
        for m in self._maps:
            if mapping is not None and m.name != mapping:
                continue
            nxt = self._alloc_next.get(m.name, m.da)
            da = -(-nxt // align) * align
            if da + size <= m.da + m.size:
                self._alloc_next[m.name] = da + size
                self._used.append((da, da + size))
                return da
        raise AddressError(
            f"no room for {size:#x} bytes aligned to {align:#x}"
            + (f" in mapping {mapping!r}" if mapping else "")
        )

    def reserve(self, da: int, size: int) -> None:
        """Mark ``[da, da+size)`` as used so :meth:`allocate` does not hand it out.

        A range that overlaps one already allocated or reserved is refused: two things
        placed on the same bytes (a firmware vring on top of the loaded resource table,
        say) would silently corrupt each other.
        """
        self.translate(da, size)
        for start, end in self._used:
            if da < end and start < da + size:
                raise AddressError(
                    f"range [{da:#x}, {da + size:#x}) overlaps [{start:#x}, {end:#x}), "
                    "which is already in use"
                )
        self._used.append((da, da + size))
        for m in self._maps:
            if m.contains(da, size):
                self._alloc_next[m.name] = max(self._alloc_next.get(m.name, m.da), da + size)
