"""What every device model shares: state words in shared memory, accessed as MMIO.

A real register can have side effects on access (reading a receive register clears
"receive full"; writing 1 to a status bit clears it) and can be changed by both CPUs
at once without losing an update, because the bus serialises accesses.  Shared memory
has neither, so a model keeps its *state*, not its register values, in shared memory,
laid out so that every word has exactly one writer (one side of the unit).  Registers
are computed from that state by ``readl``/``writel``, which also apply the side
effects.  Example: "receive register n full" is "the peer's send counter for n differs
from my acknowledge counter for n"; the peer only ever increments the first, I only
ever copy it into the second.  No read-modify-write of a shared word ever happens
across processes, so no update can be lost.

After a change that may activate an interrupt output, the writer fences (the reader
of the enable bits does the same on its side: a Dekker handshake) and pulses the
output's wire if the event it raised is enabled.  Events that were pending before
had their pulse when they were raised, so that is when the output becomes active; a
pulse only says "look" (level lines), and the controller takes the line again for as
long as it stays active.
"""

from __future__ import annotations

import errno

from amplink.errors import AmplinkError
from amplink.irq.line import IrqWire

MASK32 = 0xFFFF_FFFF


class MmioError(AmplinkError):
    """An access to an offset where the unit has no register (a bus error)."""

    def __init__(self, unit: str, offset: int, what: str) -> None:
        super().__init__(errno.EFAULT, f"{unit}: no {what} register at offset {offset:#x}")
        self.offset = offset


def pulse(wire: IrqWire | None) -> None:
    """Raise an interrupt on ``wire`` if the device model has one."""
    if wire is not None:
        wire.pulse()
