"""The legacy split-virtqueue memory layout (``vring_init`` with an ``align``).

A vring of ``num`` entries is: the descriptor table (16 bytes each), the avail ring
(flags, idx, ring[num], used_event; all u16) right after it, and the used ring (flags,
idx, ring[num] of {u32 id, u32 len}, avail_event) at the next multiple of ``align``.
"""

from __future__ import annotations

from dataclasses import dataclass

from amplink.errors import WireError

VRING_DESC_SIZE = 16
VRING_USED_ELEM_SIZE = 8
VRING_MAX_NUM = 32768  # the u16 free-running indices allow at most 2**15 entries


def align_up(value: int, align: int) -> int:
    """Round ``value`` up to a multiple of ``align`` (any positive ``align``)."""
    return -(-value // align) * align


@dataclass(frozen=True, slots=True)
class VringLayout:
    """Byte offsets of every part of a split vring, relative to its start (the desc table)."""

    num: int
    align: int

    def __post_init__(self) -> None:
        if self.num <= 0 or self.num & (self.num - 1) or self.num > VRING_MAX_NUM:
            raise WireError(
                "vring-num",
                f"vring num must be a power of two in 1..{VRING_MAX_NUM}, got {self.num}",
            )
        if self.align <= 0:
            raise WireError("vring-align", f"vring align must be positive, got {self.align}")

    @property
    def desc(self) -> int:
        """Offset of the descriptor table."""
        return 0

    @property
    def avail(self) -> int:
        """Offset of the available ring."""
        return VRING_DESC_SIZE * self.num

    @property
    def used_event(self) -> int:
        """Offset of ``avail->ring[num]``, the driver's event index."""
        return self.avail + 4 + 2 * self.num

    @property
    def used(self) -> int:
        """Offset of the used ring (aligned)."""
        return align_up(self.avail + 2 * (3 + self.num), self.align)

    @property
    def avail_event(self) -> int:
        """Offset of ``used->ring[num]``, the device's event index."""
        return self.used + 4 + VRING_USED_ELEM_SIZE * self.num

    @property
    def size(self) -> int:
        """Total bytes, as the kernel's ``vring_size(num, align)``."""
        return self.used + 6 + VRING_USED_ELEM_SIZE * self.num

    def at(self, offset: int) -> VringParts:
        """The parts of this vring placed at ``offset`` of a window."""
        return VringParts(self.num, offset + self.desc, offset + self.avail, offset + self.used)


@dataclass(frozen=True, slots=True)
class VringParts:
    """Where the three parts of a vring of ``num`` entries lie in a window (offsets).

    A remoteproc vring is one block (:meth:`VringLayout.at`); a vhost-user front end
    gives each part its own address, so the parts may be anywhere.
    """

    num: int
    desc: int
    avail: int
    used: int

    def __post_init__(self) -> None:
        VringLayout(self.num, 1)  # the same rule on num

    @property
    def desc_size(self) -> int:
        """Bytes of the descriptor table."""
        return VRING_DESC_SIZE * self.num

    @property
    def avail_size(self) -> int:
        """Bytes of the avail ring, ``used_event`` included."""
        return 2 * (3 + self.num)

    @property
    def used_size(self) -> int:
        """Bytes of the used ring, ``avail_event`` included."""
        return 6 + VRING_USED_ELEM_SIZE * self.num
