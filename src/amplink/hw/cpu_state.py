"""What a debugger's access port shows of an emulated CPU: whether it is halted, why
it stopped (the fault, with its address), and its core registers.

An emulated core (:mod:`amplink.emu`) writes this block in its MMIO window when it
stops: on a fault, before it ends its process, and when the host halts it (a debug
halt request, like setting DHCSR.C_HALT, before a reset or a core dump).  The host
only reads it.  Words, little-endian u32 (one writer: the core):

====== ========= ==============================================================
offset name      meaning
====== ========= ==============================================================
0x00   STATE     0 running, 1 halted (registers valid), 2 faulted (all valid)
0x04   CAUSE     what stopped it (:data:`CAUSES`; 0 when halted on request)
0x08   ADDRESS   the address the faulting access went to (0 if none)
0x0c   SEQ       incremented at every stop: a host waiting for a halt sees it move
0x10   R0..R15   the core registers (R13 = SP, R14 = LR, R15 = PC)
0x50   XPSR      the program status register
====== ========= ==============================================================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

STATE_RUNNING = 0
STATE_HALTED = 1
STATE_FAULTED = 2

# What stopped a core: a memory fault reports as remoteproc's "mmufault", the rest
# as "fatal error" (the core took a HardFault, or locked up).
CAUSE_NONE = 0
CAUSE_UNMAPPED_READ = 1
CAUSE_UNMAPPED_WRITE = 2
CAUSE_UNMAPPED_FETCH = 3
CAUSE_BUS_ERROR = 4
CAUSE_UNDEFINED = 5
CAUSE_INVALID_STATE = 6
CAUSE_NO_COPROCESSOR = 7
CAUSE_UNALIGNED = 8
CAUSE_BREAKPOINT = 9
CAUSE_ESCALATED = 10
CAUSE_BAD_EXC_RETURN = 11
CAUSE_LOCKUP = 12
CAUSES = {
    CAUSE_NONE: "halted",
    CAUSE_UNMAPPED_READ: "read from unmapped memory",
    CAUSE_UNMAPPED_WRITE: "write to unmapped memory",
    CAUSE_UNMAPPED_FETCH: "instruction fetch from unmapped memory",
    CAUSE_BUS_ERROR: "bus error at a peripheral",
    CAUSE_UNDEFINED: "undefined instruction",
    CAUSE_INVALID_STATE: "invalid state (ARM instruction set or a bad Thumb bit)",
    CAUSE_NO_COPROCESSOR: "coprocessor or FPU instruction with the FPU disabled",
    CAUSE_UNALIGNED: "unaligned access",
    CAUSE_BREAKPOINT: "breakpoint instruction with no debugger attached",
    CAUSE_ESCALATED: "exception that could not be taken (escalated to HardFault)",
    CAUSE_BAD_EXC_RETURN: "exception return to a state that is not active (INVPC)",
    CAUSE_LOCKUP: "lockup: a fault while the core could not take one",
}
MEMORY_CAUSES = frozenset(
    {CAUSE_UNMAPPED_READ, CAUSE_UNMAPPED_WRITE, CAUSE_UNMAPPED_FETCH, CAUSE_BUS_ERROR}
)

_HEAD = struct.Struct("<IIII")
_REGS = struct.Struct("<16II")
SIZE = _HEAD.size + _REGS.size
REG_NAMES = (*(f"r{i}" for i in range(13)), "sp", "lr", "pc")


@dataclass(frozen=True)
class CpuState:
    """One snapshot of the block."""

    state: int
    cause: int
    address: int
    seq: int
    regs: tuple[int, ...]  # r0..r15
    xpsr: int

    @property
    def pc(self) -> int:
        """The program counter (where the core stopped)."""
        return self.regs[15]

    @property
    def memory_fault(self) -> bool:
        """Whether the core stopped on a memory access (remoteproc's ``mmufault``)."""
        return self.state == STATE_FAULTED and self.cause in MEMORY_CAUSES

    def describe(self) -> str:
        """The fault in words, with the PC and the address (``write to unmapped memory
        at 0x60000000 by the instruction at PC 0x1018``)."""
        what = CAUSES.get(self.cause, f"cause {self.cause}")
        at = f" at {self.address:#x}" if self.cause in MEMORY_CAUSES else ""
        return f"{what}{at} by the instruction at PC {self.pc:#x}"


class CpuStateBlock:
    """The block over ``mem`` (:data:`SIZE` bytes of the MMIO window)."""

    def __init__(self, mem: memoryview) -> None:
        self._mem = mem

    def read(self) -> CpuState:
        """The block as it is now."""
        state, cause, address, seq = _HEAD.unpack_from(self._mem, 0)
        *regs, xpsr = _REGS.unpack_from(self._mem, _HEAD.size)
        return CpuState(state, cause, address, seq, tuple(regs), xpsr)

    def write(
        self, state: int, regs: tuple[int, ...], xpsr: int, cause: int = CAUSE_NONE,
        address: int = 0,
    ) -> None:  # fmt: skip
        """Core side: record a stop (the registers first, STATE and SEQ last)."""
        _REGS.pack_into(self._mem, _HEAD.size, *regs, xpsr)
        seq = _HEAD.unpack_from(self._mem, 0)[3]
        _HEAD.pack_into(self._mem, 0, state, cause, address, (seq + 1) & 0xFFFF_FFFF)

    def running(self) -> None:
        """Core side: the core runs again (the registers are stale from now on)."""
        struct.pack_into("<I", self._mem, 0, STATE_RUNNING)
