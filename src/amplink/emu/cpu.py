"""The emulated Cortex-M CPU: unicorn in Thumb/M-profile mode, with what unicorn does
not model around it.

* **Memory** windows are mapped with ``mem_map_ptr`` straight onto the shared region
  the host loaded the firmware into: no copy, no per-access hook.  Peripherals (the
  MU's side B, the System Control Space, the DWT) are MMIO callbacks; any other
  address is unmapped, and touching it is a fault.
* **Exceptions**: unicorn has no NVIC, so entry is done here as ARMv7-M's
  ExceptionEntry does it (B1.5.6: the 8-word frame on the current stack, 8-byte
  aligned with xPSR bit 9 recording the padding, LR = EXC_RETURN, IPSR, the vector
  from VTOR); unicorn reports a branch to EXC_RETURN as an exception-exit interrupt
  and the return is done here too (B1.5.8: pop, restore, re-sample level lines,
  tail-chain into whatever is due).
* **Slices**: the core runs in slices of at most :data:`SLICE` instructions, and
  looks at pending interrupts between them.  A slice cannot be cut short from another
  thread: unicorn's ``emu_stop`` from outside leaves a stale PC (it does not
  synchronise the PC of the translation block it stops before), and resuming there
  executes instructions twice (a ``push`` twice corrupts the stack).  Its instruction
  counter stops precisely, so an interrupt that arrives while the core is busy waits
  at most one slice (about 0.1 ms).
* **WFI/WFE** end a slice; the core then waits, in no busy loop, for an interrupt that
  would wake it (or a halt request): :class:`~amplink.emu.waker.Waker` wakes it.
* **Code sites**: instructions whose effect the emulator must see at once get a
  code hook at their address (found by scanning the executable segments once): CPSIE
  and MSR to PRIMASK/BASEPRI/FAULTMASK stop the slice right after them when an
  interrupt is pending (so it is taken at once), and WFI/WFE mark the slice's end.
  DMB/DSB get none: unicorn's single-threaded TCG drops barriers, which is why the
  host never relies on one of the firmware's (see
  :mod:`amplink.remoteproc.emulated`).
* **Faults** (an unmapped access, an undefined instruction, an exception that cannot
  be taken, a fault during exception entry or return) stop the core and are
  reported with the PC and the address: the platform catches HardFault the way a
  debugger's vector catch does (DEMCR.VC_HARDERR), so the host's remoteproc sees the
  crash at once instead of a firmware handler spinning in it.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import select
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from unicorn import (
    UC_ARCH_ARM,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_CODE,
    UC_HOOK_INTR,
    UC_HOOK_MEM_UNMAPPED,
    UC_MEM_FETCH_UNMAPPED,
    UC_MEM_READ_UNMAPPED,
    UC_MEM_WRITE_UNMAPPED,
    UC_MODE_MCLASS,
    UC_MODE_THUMB,
    UC_PROT_ALL,
    Uc,
    UcError,
)
from unicorn import arm_const as arm

from amplink.emu.registers import Batch, emu_start
from amplink.emu.scs import (
    DWT_BASE,
    DWT_SIZE,
    SCS_BASE,
    SCS_SIZE,
    SVCALL,
    SystemControlSpace,
)
from amplink.emu.soc import NUM_IRQS, CortexMSoc
from amplink.errors import AmplinkError
from amplink.hw import cpu_state as cs
from amplink.hw.core_ctrl import STATUS_BOOTED, STATUS_HALTED, STATUS_WFI, CoreControl
from amplink.irq.line import drain
from amplink.tracing import TRACER

log = logging.getLogger(__name__)

CPU_MODELS = {
    "cortex-m0": arm.UC_CPU_ARM_CORTEX_M0,
    "cortex-m3": arm.UC_CPU_ARM_CORTEX_M3,
    "cortex-m4": arm.UC_CPU_ARM_CORTEX_M4,
    "cortex-m7": arm.UC_CPU_ARM_CORTEX_M7,
    "cortex-m33": arm.UC_CPU_ARM_CORTEX_M33,
}
GPRS = (
    arm.UC_ARM_REG_R0, arm.UC_ARM_REG_R1, arm.UC_ARM_REG_R2, arm.UC_ARM_REG_R3,
    arm.UC_ARM_REG_R4, arm.UC_ARM_REG_R5, arm.UC_ARM_REG_R6, arm.UC_ARM_REG_R7,
    arm.UC_ARM_REG_R8, arm.UC_ARM_REG_R9, arm.UC_ARM_REG_R10, arm.UC_ARM_REG_R11,
    arm.UC_ARM_REG_R12, arm.UC_ARM_REG_SP, arm.UC_ARM_REG_LR, arm.UC_ARM_REG_PC,
)  # fmt: skip
_FRAME_REGS = (
    arm.UC_ARM_REG_R0, arm.UC_ARM_REG_R1, arm.UC_ARM_REG_R2, arm.UC_ARM_REG_R3,
    arm.UC_ARM_REG_R12, arm.UC_ARM_REG_LR,
)  # fmt: skip
MASK_REGS = (arm.UC_ARM_REG_PRIMASK, arm.UC_ARM_REG_BASEPRI, arm.UC_ARM_REG_FAULTMASK)
_FRAME = struct.Struct("<8I")
_WORD = struct.Struct("<I")

# unicorn's interrupt numbers (QEMU's EXCP_*) that reach UC_HOOK_INTR on M-profile
EXCP_UDEF, EXCP_SWI, EXCP_BKPT, EXCP_EXCEPTION_EXIT = 1, 2, 7, 8
EXCP_NOCP, EXCP_INVSTATE, EXCP_UNALIGNED = 17, 18, 22
_EXCP_CAUSES = {
    EXCP_UDEF: cs.CAUSE_UNDEFINED,
    EXCP_NOCP: cs.CAUSE_NO_COPROCESSOR,
    EXCP_INVSTATE: cs.CAUSE_INVALID_STATE,
    EXCP_UNALIGNED: cs.CAUSE_UNALIGNED,
}
_UNMAPPED = {
    UC_MEM_READ_UNMAPPED: cs.CAUSE_UNMAPPED_READ,
    UC_MEM_WRITE_UNMAPPED: cs.CAUSE_UNMAPPED_WRITE,
    UC_MEM_FETCH_UNMAPPED: cs.CAUSE_UNMAPPED_FETCH,
}
_UNMAPPED_ERRORS = {
    UC_ERR_READ_UNMAPPED: cs.CAUSE_UNMAPPED_READ,
    UC_ERR_WRITE_UNMAPPED: cs.CAUSE_UNMAPPED_WRITE,
    UC_ERR_FETCH_UNMAPPED: cs.CAUSE_UNMAPPED_FETCH,
}

XPSR_T = 1 << 24
XPSR_STACK_ALIGN = 1 << 9
CONTROL_SPSEL = 1 << 1
EXC_RETURN_HANDLER = 0xFFFF_FFF1
EXC_RETURN_THREAD_MSP = 0xFFFF_FFF9
EXC_RETURN_THREAD_PSP = 0xFFFF_FFFD
UNTIL = 0xFFFF_FFFE  # an address no Thumb code runs at: emu_start's end
IDLE_BEAT = 0.1  # a core waiting in WFI kicks its watchdog this often (s)
SLICE = 10_000  # instructions per emulation slice: an interrupt waits at most this long

# Code sites, as little-endian Thumb encodings (ARMv7-M, A7.7): CPSIE i/f, MSR to
# PRIMASK/BASEPRI/BASEPRI_MAX/FAULTMASK, WFI, WFE.
_UNMASK_SITES = re.compile(rb"[\x61\x62]\xb6|[\x80-\x8f]\xf3[\x10-\x13]\x88", re.S)
_SLEEP_SITES = re.compile(rb"[\x20\x30]\xbf", re.S)


class Peripheral(Protocol):
    """A device the core reaches through MMIO: ``size`` bytes at ``base``."""

    name: str
    base: int
    size: int

    def read(self, offset: int, size: int) -> int:
        """A load of ``size`` bytes at ``offset``; :class:`BusError` for no register."""

    def write(self, offset: int, size: int, value: int) -> None:
        """A store of ``size`` bytes at ``offset``; :class:`BusError` for no register."""


class BusError(AmplinkError):
    """An access a peripheral does not decode (the core takes a BusFault)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EFAULT, message)


@dataclass(frozen=True)
class Stop:
    """Why the core stopped running: a fault (``cause`` one of
    :data:`amplink.hw.cpu_state.CAUSES`, with the address and PC), or a request."""

    cause: int
    address: int
    pc: int
    detail: str = ""

    @property
    def faulted(self) -> bool:
        """True for a fault, False for a requested stop."""
        return self.cause != cs.CAUSE_NONE

    def describe(self) -> str:
        """The stop in words, with the PC (and the address, for memory faults)."""
        what = cs.CAUSES.get(self.cause, f"cause {self.cause}")
        at = f" at {self.address:#x}" if self.cause in cs.MEMORY_CAUSES else ""
        extra = f" ({self.detail})" if self.detail else ""
        return f"{what}{at} by the instruction at PC {self.pc:#x}{extra}"


class _Fault(Exception):
    """Internal: a fault found outside unicorn (exception entry or return)."""

    def __init__(self, stop: Stop) -> None:
        super().__init__(stop.describe())
        self.stop = stop


class Debugger(Protocol):
    """What the core asks of an attached debugger (:mod:`amplink.emu.gdbstub`)."""

    def attached(self) -> bool:
        """Whether a debugger is connected now."""

    def stopped(self, cpu: CortexM, signal: int) -> None:
        """The core halted (``signal``: 5 SIGTRAP, 2 SIGINT, 11 SIGSEGV, 4 SIGILL);
        serve the debugger until it resumes the core (this runs in the CPU's thread)."""


class CortexM:
    """One emulated core over ``memory`` (each window of ``soc`` with the host address
    its bytes are at), its ``peripherals``, the core-control block (status, heartbeat)
    and the CPU-state block the host reads."""

    def __init__(
        self,
        soc: CortexMSoc,
        memory: Iterable[tuple[int, int, int]],
        peripherals: Iterable[Peripheral],
        *,
        control: CoreControl | None = None,
        state: cs.CpuStateBlock | None = None,
    ) -> None:
        self.soc = soc
        self.control = control
        self.state = state
        self.uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(CPU_MODELS[soc.cpu])
        self.scs = SystemControlSpace(
            soc.cpu, soc.clock_hz, NUM_IRQS, soc.vtor, ipsr=self._ipsr, on_change=self.attention
        )
        self.debugger: Debugger | None = None
        self.halt_requested = threading.Event()
        self.halt_signal = 2  # what a debugger is told a requested halt was (SIGINT)
        self.stop_requested = threading.Event()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.line_fds: tuple[int, ...] = ()  # interrupt lines a core in WFI watches too
        self._att_lock = threading.Lock()
        self._attention = False
        self._fault: Stop | None = None
        self._unmask_at = -1  # an unmasking instruction stopped before, to be stepped
        self._skip_site = -1
        self._sleep_at = -1  # where the last WFI/WFE was
        self._sleep_is_wfe = False
        self._event = False  # WFE's event register
        self._breakpoint_hit = -1
        self._skip_breakpoint = -1
        self._breakpoints: dict[int, int] = {}  # address -> hook handle
        self._hooks: list[Any] = []
        self.interrupts_taken = 0
        self.pc = 0
        self._thread = -1  # the thread that runs the core
        for da, size, address in memory:
            self.uc.mem_map_ptr(da, size, UC_PROT_ALL, address)
        self._map_mmio(
            SCS_BASE, SCS_SIZE, self.scs.read, self.scs.write, "the System Control Space"
        )
        self._map_mmio(DWT_BASE, DWT_SIZE, self.scs.dwt_read, self.scs.dwt_write, "the DWT")
        for p in peripherals:
            self._map_mmio(p.base, p.size, p.read, p.write, p.name)
        self._masks = Batch(self.uc, MASK_REGS)
        self._entry_regs = Batch(self.uc, (arm.UC_ARM_REG_XPSR, arm.UC_ARM_REG_CONTROL,
                                           arm.UC_ARM_REG_SP, *_FRAME_REGS))  # fmt: skip
        self._entry_write = Batch(self.uc, (arm.UC_ARM_REG_SP, arm.UC_ARM_REG_LR,
                                            arm.UC_ARM_REG_XPSR, arm.UC_ARM_REG_PC))  # fmt: skip
        self._return_regs = Batch(self.uc, (arm.UC_ARM_REG_PC, arm.UC_ARM_REG_XPSR,
                                            arm.UC_ARM_REG_MSP, arm.UC_ARM_REG_PSP))  # fmt: skip
        self._frame_write = Batch(self.uc, (*_FRAME_REGS, arm.UC_ARM_REG_XPSR))
        self._pc_reg = Batch(self.uc, (arm.UC_ARM_REG_PC,))
        self._all_regs = Batch(self.uc, (*GPRS, arm.UC_ARM_REG_XPSR))
        self._hook(UC_HOOK_INTR, self._on_interrupt)
        self._hook(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        self._hook_code_sites()

    # -- set-up ------------------------------------------------------------------------
    def _hook(self, kind: int, callback: Callable[..., Any], begin: int = 1, end: int = 0) -> Any:
        handle = self.uc.hook_add(kind, callback, begin=begin, end=end)
        self._hooks.append(handle)
        return handle

    def _map_mmio(
        self,
        base: int,
        size: int,
        read: Callable[[int, int], int],
        write: Callable[[int, int, int], None],
        name: str,
    ) -> None:
        def on_read(uc: Uc, offset: int, width: int, _: object) -> int:
            try:
                return read(offset, width)
            except BusError as exc:
                self._bus_error(base + offset, exc)
                return 0

        def on_write(uc: Uc, offset: int, width: int, value: int, _: object) -> None:
            try:
                write(offset, width, value)
            except BusError as exc:
                self._bus_error(base + offset, exc)

        self.uc.mmio_map(base, size, on_read, None, on_write, None)
        log.debug("%s at %#x (%#x bytes)", name, base, size)

    def _bus_error(self, address: int, exc: BusError) -> None:
        # unicorn gives MMIO callbacks no exact PC: the last one it synchronised
        pc = self.uc.reg_read(arm.UC_ARM_REG_PC)
        self._fail(Stop(cs.CAUSE_BUS_ERROR, address, pc, exc.strerror or ""))

    def _hook_code_sites(self) -> None:
        """Hook the unmask and sleep instructions of the executable ranges."""
        for da, size in self.soc.code:
            code = bytes(self.uc.mem_read(da, size))
            for regex, install in (
                (_UNMASK_SITES, self._unmask_site),
                (_SLEEP_SITES, self._sleep_site),
            ):
                for m in regex.finditer(code):
                    if m.start() % 2 == 0:  # Thumb instructions are halfword aligned
                        install(da + m.start(), m.group())

    def _unmask_site(self, address: int, insn: bytes) -> None:
        def check(uc: Uc, addr: int, size: int, _: object) -> None:
            if addr == self._skip_site:
                self._skip_site = -1  # this is the step that executes it
            elif self.scs.takeable_pending():
                self._unmask_at = addr
                uc.emu_stop()  # before it: the run loop steps it, then takes what is due

        self._hook(UC_HOOK_CODE, check, address, address)

    def _sleep_site(self, address: int, insn: bytes) -> None:
        wfe = insn == b"\x20\xbf"

        def mark(uc: Uc, addr: int, size: int, _: object) -> None:
            self._sleep_at = addr
            self._sleep_is_wfe = wfe

        self._hook(UC_HOOK_CODE, mark, address, address)

    def close(self) -> None:
        """Remove the hooks and release the wake-up descriptor (the emulator itself
        goes with the last reference to it)."""
        for handle in [*self._hooks, *self._breakpoints.values()]:
            self.uc.hook_del(handle)
        self._hooks.clear()
        self._breakpoints.clear()
        with self._att_lock:  # a GDB client's thread may still ask for attention
            fd, self._wake_fd = self._wake_fd, -1
        if fd >= 0:
            os.close(fd)

    # -- registers -----------------------------------------------------------------------
    def _ipsr(self) -> int:
        return int(self.uc.reg_read(arm.UC_ARM_REG_IPSR)) & 0x1FF

    def registers(self) -> tuple[tuple[int, ...], int]:
        """``(r0..r15, xpsr)`` now (R15 is the PC the core resumes at)."""
        *regs, xpsr = self._all_regs.read()
        regs[15] = self.pc
        return tuple(regs), xpsr

    def read32(self, address: int) -> int:
        """A word of the core's memory (``UcError`` if it is not mapped)."""
        return int(_WORD.unpack(self.uc.mem_read(address, 4))[0])

    # -- the host's side: attention ------------------------------------------------------
    def attention(self) -> None:
        """Something changed (a line, SysTick, a request): the core looks at it when
        its current slice ends, or at once if it waits in WFI.  Any thread."""
        with self._att_lock:  # never into a descriptor close() released (and the
            self._attention = True  # kernel may have given to someone else)
            if self._wake_fd >= 0:
                os.eventfd_write(self._wake_fd, 1)

    # -- running -------------------------------------------------------------------------
    def reset(self) -> None:
        """Reset: SP and PC from the vector table at VTOR, thread mode, privileged."""
        vtor = self.scs.vtor
        try:
            sp, pc = self.read32(vtor), self.read32(vtor + 4)
        except UcError:
            raise _Fault(Stop(cs.CAUSE_LOCKUP, vtor, 0, "no vector table at VTOR")) from None
        self.uc.reg_write(arm.UC_ARM_REG_CONTROL, 0)
        self.uc.reg_write(arm.UC_ARM_REG_MSP, sp)
        self.uc.reg_write(arm.UC_ARM_REG_SP, sp)
        self.uc.reg_write(arm.UC_ARM_REG_XPSR, XPSR_T)
        if not pc & 1:
            raise _Fault(Stop(cs.CAUSE_LOCKUP, vtor + 4, pc, "reset vector without the Thumb bit"))
        self.pc = pc & ~1
        if self.control is not None:
            self.control.set_status(STATUS_BOOTED, STATUS_WFI | STATUS_HALTED)

    def run(self) -> Stop:
        """Reset and run until a fault or :attr:`stop_requested`; returns why it stopped."""
        self._thread = threading.get_ident()
        try:
            self.reset()
            while not self.stop_requested.is_set():
                if self.halt_requested.is_set():
                    self._halt(self.halt_signal)
                    continue
                self.scs.sample_lines()
                self._take_due_exception()
                if self._fault is not None:
                    break
                self._execute()
                if self._fault is not None:
                    break
                if self._breakpoint_hit >= 0:
                    self._breakpoint_hit = -1
                    self._halt(5)
                elif self._sleep_at >= 0 and self.pc == self._sleep_at + 2:
                    self._sleep_at = -1
                    self._sleep()
                elif self._unmask_at >= 0 and self.pc == self._unmask_at:
                    self._unmask_at = -1
                    self._skip_site = self.pc
                    self._step()
        except _Fault as exc:
            self._fault = exc.stop
        stop = self._fault or Stop(cs.CAUSE_NONE, 0, self.pc)
        if stop.faulted and self.debugger is not None and self.debugger.attached():
            self.pc = stop.pc
            signal = 11 if stop.cause in cs.MEMORY_CAUSES else 4
            self.debugger.stopped(self, signal)  # the debugger sees the fault first
        self._record(cs.STATE_FAULTED if stop.faulted else cs.STATE_HALTED, stop)
        return stop

    def _execute(self) -> None:
        """One emulation slice, from :attr:`pc`: at most :data:`SLICE` instructions."""
        with self._att_lock:
            if self._attention:
                self._attention = False
                return  # re-evaluate before running
        try:
            emu_start(self.uc, self.pc | 1, UNTIL, SLICE)
        except UcError as exc:
            self._emulation_error(exc)
        self.pc = self._pc_reg.read()[0]
        if self.pc == UNTIL & ~1 and self._fault is None:
            self._fail(Stop(cs.CAUSE_UNMAPPED_FETCH, UNTIL, self.pc))
        if self.scs.reset_requested and self._fault is None:
            self._fail(Stop(cs.CAUSE_ESCALATED, 0, self.pc, "AIRCR.SYSRESETREQ: a system reset"))

    def _emulation_error(self, exc: UcError) -> None:
        if self._fault is not None:
            return  # a hook recorded it with the details
        pc = int(self.uc.reg_read(arm.UC_ARM_REG_PC))
        if exc.errno == UC_ERR_INSN_INVALID:
            self._fault = Stop(cs.CAUSE_UNDEFINED, 0, pc)
        elif exc.errno in _UNMAPPED_ERRORS:
            self._fault = Stop(_UNMAPPED_ERRORS[exc.errno], pc, pc)
        else:
            self._fault = Stop(cs.CAUSE_ESCALATED, 0, pc, f"emulator: {exc}")

    def _fail(self, stop: Stop) -> None:
        if self._fault is None:
            self._fault = stop
        self.uc.emu_stop()

    def _sleep(self) -> None:
        """WFI/WFE: wait for a wake-up event, beating the watchdog meanwhile."""
        if self._sleep_is_wfe and self._event:
            self._event = False
            return
        control = self.control
        if control is not None:
            control.set_status(STATUS_WFI)
            control.heartbeat()
        if TRACER.enabled:
            TRACER.event("emu", "wfi", pc=self.pc)
        try:
            while not (self.stop_requested.is_set() or self.halt_requested.is_set()):
                self.scs.sample_lines()
                _, basepri, faultmask = self._masks.read()
                if self.scs.wakes_from_wfi(basepri, faultmask):
                    return
                ready = select.select([self._wake_fd, *self.line_fds], [], [], IDLE_BEAT)[0]
                if control is not None:  # asleep is alive, whatever woke the loop
                    control.heartbeat()
                for fd in ready:
                    drain(fd)  # a line's pulse only says "look": sampled above
        finally:
            self._event = False
            if control is not None:
                control.set_status(0, STATUS_WFI)

    def _halt(self, signal: int) -> None:
        """A debug halt: record the registers for the host, then serve a debugger once
        one is attached; without one, stay halted while the halt is requested (the host
        halts a core before resetting it; ``gdb_wait`` holds it until GDB attaches)."""
        self._record(cs.STATE_HALTED, None)
        if self.control is not None:
            self.control.set_status(STATUS_HALTED)
        try:
            while not self.stop_requested.is_set():
                if self.debugger is not None and self.debugger.attached():
                    self.halt_requested.clear()
                    self.debugger.stopped(self, signal)
                    return
                if not self.halt_requested.is_set():
                    return
                self.stop_requested.wait(IDLE_BEAT)
        finally:
            if self.control is not None:
                self.control.set_status(0, STATUS_HALTED)
            if self.state is not None:
                self.state.running()

    def _record(self, state: int, stop: Stop | None) -> None:
        if self.state is None:
            return
        regs, xpsr = self.registers()
        if stop is not None and stop.faulted:
            regs = (*regs[:15], stop.pc)
        self.state.write(
            state, regs, xpsr, stop.cause if stop else cs.CAUSE_NONE, stop.address if stop else 0
        )

    # -- stepping, for a debugger --------------------------------------------------------
    def step(self) -> Stop | None:
        """Execute one instruction (taking a due exception first); the fault if it
        faulted."""
        try:
            self._take_due_exception()
        except _Fault as exc:
            return exc.stop
        if self._fault is None:
            self._skip_breakpoint = self._skip_site = self.pc
            self._step()
        self._breakpoint_hit = -1
        return self._fault

    def _step(self) -> None:
        """Execute exactly the instruction at :attr:`pc`."""
        try:
            emu_start(self.uc, self.pc | 1, UNTIL, 1)
        except UcError as exc:
            self._emulation_error(exc)
        self.pc = self._pc_reg.read()[0]

    def add_breakpoint(self, address: int) -> None:
        """Stop before executing the instruction at ``address``."""
        if address in self._breakpoints:
            return

        def hit(uc: Uc, addr: int, size: int, _: object) -> None:
            if addr == self._skip_breakpoint:
                self._skip_breakpoint = -1  # resuming from this one: run it
                return
            self._breakpoint_hit = addr
            uc.emu_stop()

        self._breakpoints[address] = self.uc.hook_add(UC_HOOK_CODE, hit, begin=address, end=address)
        self.uc.ctl_remove_cache(address, address + 4)  # translated without the hook

    def remove_breakpoint(self, address: int) -> None:
        """Forget the breakpoint at ``address`` (if there is one)."""
        handle = self._breakpoints.pop(address, None)
        if handle is not None:
            self.uc.hook_del(handle)
            self.uc.ctl_remove_cache(address, address + 4)

    def remove_breakpoints(self) -> None:
        """Forget every breakpoint."""
        for address in list(self._breakpoints):
            self.remove_breakpoint(address)

    def skip_breakpoint_at_pc(self) -> None:
        """Resuming: do not stop again at a breakpoint on the current instruction."""
        self._skip_breakpoint = self.pc

    # -- exceptions ----------------------------------------------------------------------
    def _take_due_exception(self) -> None:
        if not self.scs.takeable_pending():
            return
        exc = self.scs.next_exception(*self._masks.read())
        if exc is not None:
            self._enter(exc, self.pc)

    def _enter(self, exc: int, return_pc: int) -> None:
        """ExceptionEntry: push the frame, switch to handler mode, jump to the vector."""
        uc = self.uc
        xpsr, control, sp, *values = self._entry_regs.read()
        thread = xpsr & 0x1FF == 0
        on_psp = thread and bool(control & CONTROL_SPSEL)
        frame_sp = (sp - 32) & ~7
        pad = XPSR_STACK_ALIGN if (sp - 32) & 4 else 0
        frame = _FRAME.pack(*values, return_pc & ~1, (xpsr & ~XPSR_STACK_ALIGN) | pad)
        vector_at = self.scs.vtor + 4 * exc
        try:
            uc.mem_write(frame_sp, frame)
            vector = self.read32(vector_at)
        except UcError:
            raise _Fault(
                Stop(cs.CAUSE_LOCKUP, frame_sp, return_pc,
                     f"taking exception {exc}: its frame or vector is not in memory")
            ) from None  # fmt: skip
        if not vector & 1:
            raise _Fault(
                Stop(cs.CAUSE_LOCKUP, vector_at, return_pc,
                     f"exception {exc}'s vector {vector:#x} has no Thumb bit")
            )  # fmt: skip
        if on_psp:  # handler mode runs on the main stack
            uc.reg_write(arm.UC_ARM_REG_PSP, frame_sp)
            uc.reg_write(arm.UC_ARM_REG_CONTROL, control & ~CONTROL_SPSEL)
            sp = int(uc.reg_read(arm.UC_ARM_REG_MSP))
        else:
            sp = frame_sp
        if not thread:
            lr = EXC_RETURN_HANDLER
        else:
            lr = EXC_RETURN_THREAD_PSP if on_psp else EXC_RETURN_THREAD_MSP
        self.pc = vector & ~1
        # the Thumb bit: an even PC selects ARM
        self._entry_write.write((sp, lr, XPSR_T | exc, self.pc | 1))
        self.scs.activate(exc)
        self.interrupts_taken += 1
        if TRACER.enabled:
            TRACER.event("emu", "exception", number=exc, pc=return_pc)

    def _return(self) -> None:
        """ExceptionReturn, for the EXC_RETURN value the core branched to."""
        uc = self.uc
        exc_return, xpsr_now, msp, psp = self._return_regs.read()
        exc_return |= 1
        exc = xpsr_now & 0x1FF
        if exc_return not in (EXC_RETURN_HANDLER, EXC_RETURN_THREAD_MSP, EXC_RETURN_THREAD_PSP):
            raise _Fault(
                Stop(cs.CAUSE_BAD_EXC_RETURN, 0, exc_return,
                     f"EXC_RETURN {exc_return:#x}: floating-point frames are not modelled")
            )  # fmt: skip
        if not exc or not self.scs.deactivate(exc):
            raise _Fault(
                Stop(cs.CAUSE_BAD_EXC_RETURN, 0, exc_return, f"exception {exc} is not active")
            )
        to_thread = exc_return != EXC_RETURN_HANDLER
        to_psp = exc_return == EXC_RETURN_THREAD_PSP
        sp = psp if to_psp else msp
        try:
            values = _FRAME.unpack(bytes(uc.mem_read(sp, 32)))
        except UcError:
            raise _Fault(
                Stop(cs.CAUSE_LOCKUP, sp, exc_return, "returning: the frame is not in memory")
            ) from None
        pc, xpsr = values[6], values[7]
        if to_thread != (xpsr & 0x1FF == 0):
            raise _Fault(
                Stop(cs.CAUSE_BAD_EXC_RETURN, 0, pc, "the stacked IPSR does not match EXC_RETURN")
            )
        if not xpsr & XPSR_T:
            raise _Fault(Stop(cs.CAUSE_INVALID_STATE, 0, pc, "the stacked xPSR has no Thumb bit"))
        sp += 32 + (4 if xpsr & XPSR_STACK_ALIGN else 0)
        self._frame_write.write((*values[:6], xpsr & ~XPSR_STACK_ALIGN))  # thread or handler
        if to_psp:
            uc.reg_write(arm.UC_ARM_REG_PSP, sp)
            control = int(uc.reg_read(arm.UC_ARM_REG_CONTROL))
            uc.reg_write(arm.UC_ARM_REG_CONTROL, control | CONTROL_SPSEL)  # SP is the PSP again
        else:
            uc.reg_write(arm.UC_ARM_REG_SP, sp)
        self._event = True
        self.pc = pc & ~1
        self._pc_reg.write((self.pc | 1,))  # the Thumb bit: an even PC selects ARM

    # -- unicorn's callbacks -------------------------------------------------------------
    def _on_interrupt(self, uc: Uc, intno: int, _: object) -> None:
        try:
            if intno == EXCP_EXCEPTION_EXIT:
                self._return()
                self.scs.sample_lines()
                self._take_due_exception()  # tail-chain into what is due now
            elif intno == EXCP_SWI:
                self._svc(int(uc.reg_read(arm.UC_ARM_REG_PC)))  # already past the SVC
            elif intno == EXCP_BKPT:
                self._bkpt(int(uc.reg_read(arm.UC_ARM_REG_PC)))
            else:
                pc = int(uc.reg_read(arm.UC_ARM_REG_PC))
                cause = _EXCP_CAUSES.get(intno, cs.CAUSE_ESCALATED)
                self._fail(
                    Stop(cause, 0, pc, "" if intno in _EXCP_CAUSES else f"exception {intno}")
                )
        except _Fault as exc:
            self._fail(exc.stop)
        except UcError as exc:
            self._fail(Stop(cs.CAUSE_LOCKUP, 0, self.pc, f"emulator: {exc}"))

    def _svc(self, return_pc: int) -> None:
        """SVCall, taken at once (it is synchronous) unless its priority cannot be:
        then it escalates to HardFault."""
        if not self.scs.can_preempt(SVCALL, *self._masks.read()):
            raise _Fault(Stop(cs.CAUSE_ESCALATED, 0, return_pc - 2,
                              "SVC while its priority cannot be taken"))  # fmt: skip
        self.scs.set_pending(SVCALL)
        self.pc = return_pc
        self._take_due_exception()

    def _bkpt(self, pc: int) -> None:
        if self.debugger is not None and self.debugger.attached():
            self._breakpoint_hit = pc
            self.uc.emu_stop()
            return
        raise _Fault(Stop(cs.CAUSE_BREAKPOINT, 0, pc))

    def _on_unmapped(
        self, uc: Uc, access: int, address: int, size: int, value: int, _: object
    ) -> bool:
        pc = int(uc.reg_read(arm.UC_ARM_REG_PC))
        cause = _UNMAPPED.get(access, cs.CAUSE_BUS_ERROR)
        if self._fault is None:
            self._fault = Stop(cause, address, pc, f"{size}-byte access")
        return False


def host_address(view: memoryview) -> tuple[int, Callable[[], None]]:
    """The host address of a writable ``view`` (what ``mem_map_ptr`` maps), and the
    function that releases the export that keeps it valid."""
    holder: Any = (ctypes.c_char * len(view)).from_buffer(view)
    address = ctypes.addressof(holder)

    def release() -> None:
        nonlocal holder
        holder = None

    return address, release
