"""A core-control block: what a host can see of a remote core's execution state.

Modelled on what TI-SCI reports for a processor (``PROC_BOOT_STATUS_FLAG_CPU_WFI``)
plus a heartbeat for a watchdog.  Each word has one writer (see :mod:`amplink.hw.mmio`):

====== =========== ======= ==========================================================
offset name        writer  meaning
====== =========== ======= ==========================================================
0x00   STATUS      core    BOOTED (bit 0): executing its firmware; WFI (bit 1): the
                           core waits for an interrupt (as TI-SCI's flag 0x2);
                           HALTED (bit 2): it stopped itself after a shutdown request;
                           UNBOUND (bit 3): it holds no rpmsg vdev rings (it waits for
                           the host's driver), reported by firmware that sets
                           REPORTS_UNBOUND (bit 4)
0x04   HEARTBEAT   core    incremented by the firmware to kick its watchdog
0x08   BOOT_ADDR   host    where the core starts executing
====== =========== ======= ==========================================================
"""

from __future__ import annotations

from amplink.hw.mmio import MASK32, MmioError

CC_STATUS = 0x00
CC_HEARTBEAT = 0x04
CC_BOOT_ADDR = 0x08
STATUS_BOOTED = 0x1
STATUS_WFI = 0x2
STATUS_HALTED = 0x4
STATUS_UNBOUND = 0x8
STATUS_REPORTS_UNBOUND = 0x10
SIZE = 16
_WORDS = {CC_STATUS: 0, CC_HEARTBEAT: 1, CC_BOOT_ADDR: 2}


class CoreControl:
    """The block over ``words`` (a ``'I'`` view of :data:`SIZE` bytes)."""

    def __init__(self, name: str, words: memoryview) -> None:
        self.name = name
        self._w = words

    def readl(self, offset: int) -> int:
        """Read the register at ``offset``."""
        try:
            return self._w[_WORDS[offset]]
        except KeyError:
            raise MmioError(self.name, offset, "readable") from None

    def writel(self, offset: int, value: int) -> None:
        """Write ``value`` to the register at ``offset``."""
        try:
            self._w[_WORDS[offset]] = value & MASK32
        except KeyError:
            raise MmioError(self.name, offset, "writable") from None

    # -- the core's side -------------------------------------------------------------
    def set_status(self, set_bits: int = 0, clear_bits: int = 0) -> None:
        """Core side: update STATUS (only the core writes it; its event loop does it
        around every sleep, so straight to the word)."""
        w, i = self._w, _WORDS[CC_STATUS]
        w[i] = ((w[i] & ~clear_bits) | set_bits) & MASK32

    def heartbeat(self) -> None:
        """Core side: kick the watchdog."""
        self.writel(CC_HEARTBEAT, self.readl(CC_HEARTBEAT) + 1)
