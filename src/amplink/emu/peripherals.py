"""The SoC's devices as an emulated core reaches them: MMIO onto amplink's models."""

from __future__ import annotations

from amplink.emu.cpu import BusError
from amplink.emu.soc import MU_SIZE
from amplink.hw.imx_mu import ImxMuSide
from amplink.hw.mmio import MmioError


class MuPeripheral:
    """Side B of an i.MX MU at ``base``: 32-bit accesses to its registers go to the
    model in the MMIO window (:class:`~amplink.hw.imx_mu.ImxMuSide`), which the host's
    side A shares; anything else is a bus error."""

    size = MU_SIZE

    def __init__(self, side: ImxMuSide, base: int) -> None:
        self.side = side
        self.base = base
        self.name = f"MU {side.name}"

    def read(self, offset: int, size: int) -> int:
        """A load from the unit's registers."""
        self._check(offset, size, "read")
        try:
            return self.side.readl(offset)
        except MmioError as exc:
            raise BusError(f"{self.name}: {exc.strerror}") from None

    def write(self, offset: int, size: int, value: int) -> None:
        """A store to the unit's registers."""
        self._check(offset, size, "write")
        try:
            self.side.writel(offset, value)
        except MmioError as exc:
            raise BusError(f"{self.name}: {exc.strerror}") from None

    def _check(self, offset: int, size: int, what: str) -> None:
        if size != 4 or offset % 4:
            raise BusError(f"{self.name}: {size}-byte {what} at offset {offset:#x} (32-bit only)")
