"""A Rockchip-style mailbox: per-channel command/data registers in each direction,
interrupt enables, and write-1-to-clear status, in shared memory.

Register map (byte offsets, as in Linux's driver; A is the application CPU, B the MCU):

=========== ================ =====================================================
offset      name             meaning
=========== ================ =====================================================
0x00        A2B_INTEN        bit x enables B's interrupt for channel x
0x04        A2B_STATUS       bit x: A wrote channel x and B has not cleared it (W1C)
0x08 + 8x   A2B_CMD(x)       command word A sends on channel x
0x0C + 8x   A2B_DAT(x)       data word; **writing it** raises the status bit
0x28        B2A_INTEN        the same four, B to A
0x2C        B2A_STATUS
0x30 + 8x   B2A_CMD(x)
0x34 + 8x   B2A_DAT(x)
=========== ================ =====================================================

One interrupt line per channel and direction, active while ``STATUS & INTEN`` has the
channel's bit.  Both CPUs see the same window; which CPU writes which register is the
protocol's business, but the counters behind STATUS each have one writer (see
:mod:`amplink.hw.mmio`).  Which write raises the status bit is not in the reference;
the data write is chosen because Linux's driver writes the command first.
"""

from __future__ import annotations

from collections.abc import Sequence

from amplink.hw.mmio import MASK32, MmioError, pulse
from amplink.irq.line import IrqWire
from amplink.memory.barrier import full_fence

NUM_CHANS = 4
A2B, B2A = 0, 1
A2B_INTEN = 0x00
A2B_STATUS = 0x04
B2A_INTEN = 0x28
B2A_STATUS = 0x2C
_DIR_BASE = (0x00, 0x28)


def A2B_CMD(x: int) -> int:
    """Offset of the A-to-B command register of channel ``x``."""
    return 0x08 + 8 * x


def A2B_DAT(x: int) -> int:
    """Offset of the A-to-B data register of channel ``x``."""
    return 0x0C + 8 * x


def B2A_CMD(x: int) -> int:
    """Offset of the B-to-A command register of channel ``x``."""
    return 0x30 + 8 * x


def B2A_DAT(x: int) -> int:
    """Offset of the B-to-A data register of channel ``x``."""
    return 0x34 + 8 * x


# state words per direction: INTEN, CMD[4], DAT[4], SEQ[4] (sender), ACK[4] (receiver)
_INTEN = 0
_CMD = 1
_DAT = 5
_SEQ = 9
_ACK = 13
DIR_WORDS = 17
SIZE = 2 * DIR_WORDS * 4


class RockchipMailbox:
    """The whole unit over ``words`` (a ``'I'`` view of :data:`SIZE` bytes).

    ``wires[d][x]`` is the interrupt output of channel ``x`` in direction ``d``
    (``A2B`` lines interrupt B, ``B2A`` lines interrupt A); None where unreachable.
    """

    def __init__(
        self,
        name: str,
        words: memoryview,
        wires: Sequence[Sequence[IrqWire | None]] | None = None,
    ) -> None:
        if len(words) < 2 * DIR_WORDS:
            raise ValueError(f"a Rockchip mailbox needs {SIZE} bytes of state")
        self.name = name
        self._w = words
        self.wires = wires or ((None,) * NUM_CHANS, (None,) * NUM_CHANS)

    def _decode(self, offset: int) -> tuple[int, int, int]:
        """``(direction, kind, channel)``; kind is a state-word index (-1: STATUS)."""
        for d, base in enumerate(_DIR_BASE):
            rel = offset - base
            if rel == 0:
                return d, _INTEN, 0
            if rel == 4:
                return d, -1, 0
            if 8 <= rel < 8 + 8 * NUM_CHANS and rel % 4 == 0:
                x = (rel - 8) // 8
                return d, (_CMD if rel % 8 == 0 else _DAT), x
        raise MmioError(self.name, offset, "")

    def status(self, d: int) -> int:
        """The status word of direction ``d`` (pending channels)."""
        w = self._w
        b = d * DIR_WORDS
        return sum(1 << x for x in range(NUM_CHANS) if w[b + _SEQ + x] != w[b + _ACK + x])

    def irq_active(self, d: int, x: int) -> bool:
        """The level of channel ``x``'s line in direction ``d``."""
        return bool(self.status(d) & self._w[d * DIR_WORDS + _INTEN] & (1 << x))

    def _raise_active(self, d: int, channels: range) -> None:
        full_fence()
        for x in channels:
            if self.irq_active(d, x):
                pulse(self.wires[d][x])

    def readl(self, offset: int) -> int:
        """Read the register at ``offset``."""
        d, kind, x = self._decode(offset)
        if kind < 0:
            return self.status(d)
        return self._w[d * DIR_WORDS + kind + (x if kind != _INTEN else 0)]

    def writel(self, offset: int, value: int) -> None:
        """Write the register at ``offset`` (status is write-one-to-clear)."""
        d, kind, x = self._decode(offset)
        w = self._w
        b = d * DIR_WORDS
        value &= MASK32
        if kind < 0:  # write 1 to clear
            for c in range(NUM_CHANS):
                if value & (1 << c):
                    w[b + _ACK + c] = w[b + _SEQ + c]
        elif kind == _INTEN:
            w[b + _INTEN] = value & ((1 << NUM_CHANS) - 1)
            self._raise_active(d, range(NUM_CHANS))
        elif kind == _CMD:
            w[b + _CMD + x] = value
        else:
            w[b + _DAT + x] = value
            w[b + _SEQ + x] = (w[b + _SEQ + x] + 1) & MASK32
            self._raise_active(d, range(x, x + 1))
