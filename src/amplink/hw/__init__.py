"""Device models whose state lives in shared memory: mailbox units.

Both processes of a system map the same state and drive their own side of a unit
through ``readl``/``writel``, which apply each register's side effects; interrupt
outputs are :class:`~amplink.irq.line.IrqWire` pulses.
"""

from amplink.hw.imx_mu import ImxMu, ImxMuSide
from amplink.hw.mmio import MmioError
from amplink.hw.rockchip import RockchipMailbox

__all__ = ["ImxMu", "ImxMuSide", "MmioError", "RockchipMailbox"]
