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

from amplink.emu.soc import IMX8MP_M7, CortexMSoc

DEMO_FAULT_MESSAGE = b"amplink: please fault (write to unmapped memory)"
UNMAPPED_ADDRESS = 0x6000_0000
FAULTS_SERVICE = "amplink-faults"
FAULTS = ("unmapped-write", "unmapped-read", "undefined", "lockup", "spin", "scribble")
FAULTS_WATCHDOG_MS = 3000
BUSY_INSTRUCTIONS = 2  # per iteration of the busy loop: subs, bne


def soc(**overrides: Any) -> CortexMSoc:
    """The emulated core the images are built for (:data:`~amplink.emu.soc.IMX8MP_M7`),
    with ``overrides`` (a GDB port, say)."""
    return replace(IMX8MP_M7, **overrides)
