"""The MMIO window shared by a host and one remote core: where each device model's
state lives in it.

====== ============================= =====================================
offset block                          model
====== ============================= =====================================
0x000  i.MX MU (kick channel and more) :mod:`amplink.hw.imx_mu`
0x100  core control (status, heartbeat) :mod:`amplink.hw.core_ctrl`
0x180  CPU state (emulated cores)       :mod:`amplink.hw.cpu_state`
====== ============================= =====================================
"""

from __future__ import annotations

from amplink.hw import core_ctrl, cpu_state, imx_mu
from amplink.hw.core_ctrl import CoreControl
from amplink.hw.cpu_state import CpuStateBlock
from amplink.memory.region import SharedRegion

MU_OFFSET = 0x000
CORE_CTRL_OFFSET = 0x100
CPU_STATE_OFFSET = 0x180
MMIO_SIZE = 0x200
assert imx_mu.SIZE <= CORE_CTRL_OFFSET - MU_OFFSET
assert CORE_CTRL_OFFSET + core_ctrl.SIZE <= CPU_STATE_OFFSET
assert CPU_STATE_OFFSET + cpu_state.SIZE <= MMIO_SIZE


def mmio_region(name: str) -> SharedRegion:
    """A new shared region holding one host/core pair's device models."""
    return SharedRegion.create(MMIO_SIZE, f"{name}-mmio")


def mu_words(mmio: SharedRegion) -> memoryview:
    """The MU's registers in the MMIO window, as 32-bit words."""
    return mmio.cast(MU_OFFSET, imx_mu.SIZE, "I")


def core_control(mmio: SharedRegion, name: str) -> CoreControl:
    """The core-control block in the MMIO window."""
    return CoreControl(f"{name}-ctrl", mmio.cast(CORE_CTRL_OFFSET, core_ctrl.SIZE, "I"))


def cpu_state_block(mmio: SharedRegion) -> CpuStateBlock:
    """The CPU-state block an emulated core writes in the MMIO window."""
    return CpuStateBlock(mmio.view(CPU_STATE_OFFSET, cpu_state.SIZE))
