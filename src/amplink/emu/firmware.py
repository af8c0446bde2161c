"""What amplink's Cortex-M images (``firmware/cortex-m``, built by ``make firmware``)
offer a host beyond their rpmsg services, mirrored from ``common/faults.h``.

* :data:`DEMO_FAULT_MESSAGE` on the echo channel (``rpmsg-openamp-demo-channel``) of
  ``rpmsg-lite-echo.elf`` and ``rpmsg-lite-faults.elf`` makes the core write to
  unmapped memory (:data:`UNMAPPED_ADDRESS`): a crash remoteproc recovers.
* ``rpmsg-lite-faults.elf`` also announces :data:`FAULTS_SERVICE`; a message naming
  one of :data:`FAULTS` runs it, ``busy N`` loops N times (two instructions each) and
  answers ``busy done``; its resource table asks for a watchdog of
  :data:`FAULTS_WATCHDOG_MS`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from amplink.emu.soc import CortexMSoc, Window

DEMO_FAULT_MESSAGE = b"amplink: please fault (write to unmapped memory)"
UNMAPPED_ADDRESS = 0x6000_0000
FAULTS_SERVICE = "amplink-faults"
FAULTS = ("unmapped-write", "unmapped-read", "undefined", "lockup", "spin", "scribble")
FAULTS_WATCHDOG_MS = 3000
BUSY_INSTRUCTIONS = 2  # per iteration of the busy loop: subs, bne

MU_CHANNEL = 1  # the MU data channel the images kick on, both ways
MU_IRQ = 97  # the MU's NVIC line on the i.MX8M Plus-like M7 (common/soc.h)


def soc(**overrides: Any) -> CortexMSoc:
    """The emulated core the images are built for (``common/soc.h``): ITCM at 0, DTCM at
    0x2000_0000, the shared DDR window at 0x5500_0000 (first: the host's allocations go
    there), the MU's side B at 0x30ab_0000 on line :data:`MU_IRQ`."""
    base = CortexMSoc(
        windows=(
            Window("ddr", 0x5500_0000, 0x10_0000),
            Window("itcm", 0x0000_0000, 0x2_0000),
            Window("dtcm", 0x2000_0000, 0x2_0000),
        ),
        cpu="cortex-m7",
        mu_base=0x30AB_0000,
        mu_irq=MU_IRQ,
    )
    return replace(base, **overrides)
