"""The platform driver for an emulated Cortex-M core: real firmware (an ARM ELF image)
executed by :mod:`amplink.emu` in the core's process.

Everything the process platform does stays as it is (:class:`ProcessPlatform`: the
MMIO window with the MU and core control, the two interrupt lines, the host's MU kick
path, death as an interrupt, the watchdog); this driver changes what runs and what the
device memory is:

* it runs what a Cortex-M executes (ELF32, little-endian, ``EM_ARM``, an executable,
  built for the M profile or without build attributes);
* device memory is the SoC's memory windows (ITCM, DTCM, shared DDR... at their
  device addresses), laid out one after the other in one shared region
  (:meth:`EmulatedPlatform.memory_map`), so segments, the resource table, vrings and
  buffers land at the addresses the firmware was linked for;
* the core process is ``python -m amplink.emu`` with the core's description, whose MU
  line is the wiring's ``core_irq`` (an NVIC line);
* the host never busy-polls the core's rings (``spin`` off): polling suppresses
  notifications, and the handshake that ends it relies on the firmware's memory
  barriers, which the emulator does not turn into host fences (unicorn drops
  DMB/DSB); with notifications always on, the firmware always kicks;
* a crash the core reports by ending its process carries the fault (kind, PC,
  address) from the CPU-state block; before any reset the core is halted (SIGUSR1, a
  debug halt) so that a core dump has its registers, in an ``NT_PRSTATUS`` note.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from amplink.emu.soc import IMX8MP_M7, CortexMSoc
from amplink.errors import AmplinkError
from amplink.hw import cpu_state as cs
from amplink.hw.core_ctrl import STATUS_BOOTED
from amplink.hw.soc import cpu_state_block
from amplink.mailbox.mu_path import MuWiring
from amplink.memory.addrmap import Mapping
from amplink.remoteproc.config import RprocConfig
from amplink.remoteproc.crash import CRASH_FATAL_ERROR, CRASH_MMUFAULT
from amplink.remoteproc.elf import FirmwareImage
from amplink.remoteproc.elf_writer import EM_ARM, PF_X, Note
from amplink.remoteproc.process import ProcessPlatform

log = logging.getLogger(__name__)

HALT_TIMEOUT = 0.5  # how long a reset waits for the core to halt first (s)
NT_PRSTATUS = 1
SIGNALS = {"memory": 11, "fatal": 4, "halted": 19}  # SIGSEGV, SIGILL, SIGSTOP
# Linux's 32-bit ARM struct elf_prstatus (148 bytes): si_signo, si_code, si_errno,
# pr_cursig (+2 pad), sigpend, sighold, pid, ppid, pgrp, sid, four timevals, then
# pr_reg (r0..r15, cpsr, orig_r0) and pr_fpvalid; the layout GDB and readelf know.
_PRSTATUS = struct.Struct("<iiih2xIIiiii32x18Ii")


class EmulatedPlatformDriver:
    """Runs Cortex-M executables on an emulated core of ``soc`` (by default the
    i.MX8M Plus-like Cortex-M7 amplink's images are built for)."""

    name = "emulated"

    def __init__(self, soc: CortexMSoc = IMX8MP_M7) -> None:
        soc.check()
        self.soc = soc

    def runs(self, image: FirmwareImage) -> bool:
        """An executable for a Cortex-M: ELF32, little-endian, ``EM_ARM``, built for
        the M profile (or without build attributes)."""
        return (
            image.machine == EM_ARM
            and image.elfclass == 32
            and image.little_endian
            and image.elf_type == "ET_EXEC"
            and image.arm_profile in ("", "M")
        )

    def describe(self) -> str:
        """What :meth:`runs` accepts, in words."""
        return f"Cortex-M executables (ELF32 EM_ARM, M profile) on an emulated {self.soc.cpu}"

    def wiring(self, config: RprocConfig) -> MuWiring:
        """The MU wiring of a core: ``config.mailbox``, else the SoC's (its MU channel
        both ways and its NVIC line, as an i.MX device tree wires it)."""
        if config.mailbox is not None:
            return config.mailbox
        return MuWiring(tx=self.soc.mu_channel, rx=self.soc.mu_channel, core_irq=self.soc.mu_irq)

    def create(self, name: str, image: FirmwareImage, config: RprocConfig) -> EmulatedPlatform:
        """The platform of core ``name`` running ``image``; ``EINVAL`` if the wiring's
        ``core_irq`` is not a line of the NVIC."""
        wiring = self.wiring(config)
        code = tuple((s.da, s.memsz) for s in image.segments if s.flags & PF_X)
        soc = replace(self.soc, mu_irq=wiring.core_irq, code=code)
        try:
            soc.check()
        except AmplinkError as exc:
            raise AmplinkError(errno.EINVAL, f"{name}: {exc.strerror}") from None
        return EmulatedPlatform(
            name,
            image.name,
            soc,
            cpu=config.cpu,
            delivery=config.delivery,
            rt_priority=config.rt_priority,
            boot_timeout=config.boot_timeout,
            mailbox=wiring,
        )


class EmulatedPlatform(ProcessPlatform):
    """One emulated core process and the hardware around it; created per start."""

    RETURNED = None  # an emulated CPU has no main() that returns: a fault or a reset ends it

    def __init__(self, name: str, firmware: str, soc: CortexMSoc, **kwargs: Any) -> None:
        """``kwargs``: :class:`ProcessPlatform`'s (``spin`` is always off here)."""
        super().__init__(name, firmware, spin=False, **kwargs)
        self.soc = soc
        self.last_state: cs.CpuState | None = None  # registers when it last stopped
        self._last_pid = 0

    def memory_map(self) -> Sequence[Mapping]:
        """The SoC's memory windows, one after the other in the core's region."""
        return self.soc.layout()

    def _executable(self) -> list[str]:
        return [sys.executable, "-m", "amplink.emu"]

    def _extra_args(self) -> list[str]:
        return ["--soc", self.soc.to_json()]

    def cpu_state(self) -> cs.CpuState | None:
        """The CPU-state block as the core last wrote it (None once released)."""
        return cpu_state_block(self._mmio).read() if self._mmio is not None else None

    def _exit_crash(self, code: int | None) -> tuple[int, str]:
        state = self.cpu_state()
        if state is None or state.state != cs.STATE_FAULTED:
            return super()._exit_crash(code)
        self.last_state = state
        kind = CRASH_MMUFAULT if state.memory_fault else CRASH_FATAL_ERROR
        return kind, f"the core faulted: {state.describe()}"

    def halt(self, timeout: float = HALT_TIMEOUT) -> cs.CpuState | None:
        """Halt the core (a debug halt request) and return its registers; None if it
        does not halt within ``timeout`` s (or is not running)."""
        proc, before = self.proc, self.cpu_state()
        if proc is None or before is None or not self.status() & STATUS_BOOTED:
            return None  # not executing yet: nothing to halt, and no handler for the signal
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:
            state = self.cpu_state()
            if state is None:
                return None
            if state.state == cs.STATE_FAULTED or (
                state.state == cs.STATE_HALTED and state.seq != before.seq
            ):
                return state
            if proc.poll() is not None or time.monotonic() > deadline:
                return None
            time.sleep(0.001)

    def _reset(self) -> None:
        if self.proc is not None:
            self._last_pid = self.proc.pid
            state = self.halt()
            if state is not None:
                self.last_state = state
        super()._reset()

    def coredump_notes(self) -> tuple[Note, ...]:
        """The registers when the core was reset (or faulted), as Linux's ARM
        ``NT_PRSTATUS``: ``arm-none-eabi-gdb`` shows its backtrace."""
        state = self.last_state
        if state is None:
            return ()
        if state.state == cs.STATE_FAULTED:
            signo = SIGNALS["memory"] if state.memory_fault else SIGNALS["fatal"]
        else:
            signo = SIGNALS["halted"]
        desc = _PRSTATUS.pack(
            signo, 0, 0, signo, 0, 0, self._last_pid, 0, 0, 0, *state.regs, state.xpsr, 0, 0
        )
        return (Note("CORE", NT_PRSTATUS, desc),)
