"""The System Control Space of an emulated Cortex-M: the NVIC, the System Control
Block, SysTick and the DWT cycle counter, as the registers ARMv7-M defines
(ARM DDI 0403, B3.2-B3.4; C1.8.8 for the DWT) over exception state the CPU uses.

Exception numbers are the architecture's: 1 reset, 2 NMI, 3 HardFault, 4-6 the
configurable faults, 11 SVCall, 12 DebugMonitor, 14 PendSV, 15 SysTick, 16+n external
interrupt n.  The NVIC keeps, per exception, whether it is enabled, pending and active,
and its priority (only the implemented high bits: four on a Cortex-M4/M7).  SysTick
counts at the core's clock on the host's monotonic clock.  Interrupt lines are level
sensitive: a line's source is sampled when its wire is pulsed, when its enable changes
and when an exception returns, and sets the interrupt pending while it is active.

What has no model here reads as zero and ignores writes, with one warning per register
(MPU, caches, the debug registers): enough for startup code that configures them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

SCS_BASE = 0xE000_E000
SCS_SIZE = 0x1000
DWT_BASE = 0xE000_1000
DWT_SIZE = 0x1000

NMI = 2
HARDFAULT = 3
SVCALL = 11
PENDSV = 14
SYSTICK = 15
FIRST_IRQ = 16
FIXED_PRIORITY = {1: -3, NMI: -2, HARDFAULT: -1}
NO_PRIORITY = 0x100  # the execution priority with nothing active: below every priority

CPUIDS = {
    "cortex-m0": 0x410C_C200,
    "cortex-m3": 0x412F_C231,
    "cortex-m4": 0x410F_C241,
    "cortex-m7": 0x411F_C272,
    "cortex-m33": 0x411F_D210,
}
PRIORITY_MASKS = {"cortex-m0": 0xC0, "cortex-m3": 0xE0, "cortex-m33": 0xE0}
VECTKEY = 0x05FA

# SysTick and ICSR bits
CSR_ENABLE, CSR_TICKINT, CSR_CLKSOURCE, CSR_COUNTFLAG = 1 << 0, 1 << 1, 1 << 2, 1 << 16
CALIB_NOREF_SKEW = 0xC000_0000
ICSR_NMIPENDSET, ICSR_PENDSVSET, ICSR_PENDSVCLR = 1 << 31, 1 << 28, 1 << 27
ICSR_PENDSTSET, ICSR_PENDSTCLR, ICSR_ISRPENDING, ICSR_RETTOBASE = 1 << 26, 1 << 25, 1 << 22, 1 << 11
AIRCR_SYSRESETREQ, AIRCR_VECTCLRACTIVE = 1 << 2, 1 << 1
SCR_SLEEPONEXIT = 1 << 1
DEMCR_TRCENA = 1 << 24
DWT_CTRL_CYCCNTENA = 1

# Registers that only hold what is written (no side effects modelled).
_STORAGE = {0x008, 0xD10, 0xD14, 0xD24, 0xD84, 0xD88, 0xDFC, 0xF34, 0xF38, 0xF3C}
_STORAGE |= set(range(0xD90, 0xDBC + 1, 4))  # MPU: accepted, not enforced
# Write-only maintenance operations (caches, branch predictor): nothing to do.
_IGNORED_WRITES = set(range(0xF50, 0xF78 + 1, 4))


class SystemControlSpace:
    """The registers of one core.  ``ipsr()`` reads the CPU's current exception
    number; ``on_change()`` is called after a write that may let an exception be taken
    (the CPU then checks at once); ``clock()`` gives nanoseconds."""

    def __init__(
        self,
        cpu: str,
        clock_hz: int,
        num_irqs: int,
        vtor: int,
        *,
        ipsr: Callable[[], int] = lambda: 0,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.lock = threading.RLock()
        self.cpuid = CPUIDS[cpu]
        self.prio_mask = PRIORITY_MASKS.get(cpu, 0xF0)
        self.clock_hz = clock_hz
        self.num_irqs = num_irqs
        self.vtor = vtor
        self._ipsr = ipsr
        self._on_change = on_change
        self._clock = clock
        self.lines: dict[int, Callable[[], bool]] = {}  # irq -> level of its source
        self.timer_changed: Callable[[], None] = lambda: None  # SysTick was reprogrammed
        self.enabled = 0  # bit n: external interrupt n enabled
        self.pending = 0  # bit e: exception e pending
        self.active: list[int] = []  # active exceptions, innermost last
        self.priority = bytearray(FIRST_IRQ + num_irqs)
        self.prigroup = 0
        self.store: dict[int, int] = {0xD14: 0x200}  # CCR: STKALIGN set, as on v7-M
        self.reset_requested = False
        self._warned: set[int] = set()
        # SysTick
        self.syst_csr = 0
        self.syst_rvr = 0
        self._syst_start = 0  # ns when the counter last (re)started from RVR
        self._syst_wraps_read = 0  # wraps already seen by a CSR read (COUNTFLAG)
        self._syst_wraps_fired = 0  # wraps already turned into a SysTick exception
        # DWT cycle counter
        self._dwt_ctrl = 0
        self._cyccnt_base = 0
        self._cyccnt_start = 0

    # -- exception state (the CPU's side) ------------------------------------------
    def exception_priority(self, exc: int) -> int:
        """The priority of exception ``exc`` (fixed ones negative)."""
        return FIXED_PRIORITY.get(exc, self.priority[exc] if exc < len(self.priority) else 0)

    def _group(self, prio: int) -> int:
        """The group priority that decides preemption (AIRCR.PRIGROUP)."""
        if prio < 0:
            return prio
        return prio & ~((2 << self.prigroup) - 1) & 0xFF

    def execution_priority(self, primask: int, basepri: int, faultmask: int) -> int:
        """The priority the core runs at now: its active exceptions, BASEPRI, PRIMASK
        and FAULTMASK (B1.5.4)."""
        prio = NO_PRIORITY
        for exc in self.active:
            prio = min(prio, self._group(self.exception_priority(exc)))
        if basepri & self.prio_mask:
            prio = min(prio, self._group(basepri & self.prio_mask))
        if primask & 1:
            prio = min(prio, 0)
        if faultmask & 1:
            prio = min(prio, -1)
        return prio

    def _pending_taken(self) -> int | None:
        """The pending exception that would be taken first (None if none can be)."""
        best: int | None = None
        best_key = (NO_PRIORITY + 1, 0)
        bits = self.pending
        while bits:
            exc = (bits & -bits).bit_length() - 1
            bits &= bits - 1
            if exc >= FIRST_IRQ and not self.enabled >> (exc - FIRST_IRQ) & 1:
                continue
            key = (self.exception_priority(exc), exc)
            if key < best_key:
                best, best_key = exc, key
        return best

    def next_exception(self, primask: int, basepri: int, faultmask: int) -> int | None:
        """The exception to take now, if one may preempt what runs."""
        with self.lock:
            exc = self._pending_taken()
            if exc is None:
                return None
            limit = self.execution_priority(primask, basepri, faultmask)
            return exc if self._group(self.exception_priority(exc)) < limit else None

    def can_preempt(self, exc: int, primask: int, basepri: int, faultmask: int) -> bool:
        """Whether ``exc`` would be taken now if it were the only one pending."""
        with self.lock:
            limit = self.execution_priority(primask, basepri, faultmask)
            return self._group(self.exception_priority(exc)) < limit

    def takeable_pending(self) -> bool:
        """Whether an exception is pending that its enable bit allows (a cheap test
        for the CPU's hot paths; priorities are not considered)."""
        return bool(self.pending & ((self.enabled << FIRST_IRQ) | ((1 << FIRST_IRQ) - 1)))

    def wakes_from_wfi(self, basepri: int, faultmask: int) -> bool:
        """Whether WFI ends: an exception that would preempt if PRIMASK were clear."""
        return self.next_exception(0, basepri, faultmask) is not None

    def set_pending(self, exc: int) -> None:
        """Make exception ``exc`` pending."""
        with self.lock:
            self.pending |= 1 << exc

    def activate(self, exc: int) -> None:
        """The core took ``exc``: it is active and no longer pending."""
        with self.lock:
            self.pending &= ~(1 << exc)
            self.active.append(exc)

    def deactivate(self, exc: int) -> bool:
        """The core returned from ``exc``; False if it was not active (INVPC)."""
        with self.lock:
            if exc not in self.active:
                return False
            self.active.remove(exc)
            return True

    def sample_lines(self) -> bool:
        """Set every external interrupt whose line is active pending; True if any
        became pending."""
        raised = False
        with self.lock:
            for irq, level in self.lines.items():
                bit = 1 << (FIRST_IRQ + irq)
                if not self.pending & bit and level():
                    self.pending |= bit
                    raised = True
        return raised

    # -- SysTick on the host's clock -----------------------------------------------
    def _systick_wraps(self, now: int) -> int:
        period = self.syst_rvr + 1
        cycles = (now - self._syst_start) * self.clock_hz // 1_000_000_000
        return cycles // period if self.syst_rvr else 0

    def systick_deadline(self) -> int | None:
        """When SysTick next wraps with its interrupt enabled (ns), or None."""
        with self.lock:
            if self.syst_csr & (CSR_ENABLE | CSR_TICKINT) != CSR_ENABLE | CSR_TICKINT:
                return None
            if not self.syst_rvr:
                return None
            period_ns = (self.syst_rvr + 1) * 1_000_000_000 / self.clock_hz
            return self._syst_start + int((self._syst_wraps_fired + 1) * period_ns)

    def systick_expire(self) -> bool:
        """Pend SysTick if it wrapped since the last call (several wraps make one
        exception, as on hardware when the handler is late); True if pended."""
        with self.lock:
            if self.systick_deadline() is None:
                return False
            wraps = self._systick_wraps(self._clock())
            if wraps <= self._syst_wraps_fired:
                return False
            self._syst_wraps_fired = wraps
            self.pending |= 1 << SYSTICK
            return True

    def _systick_restart(self) -> None:
        self._syst_start = self._clock()
        self._syst_wraps_read = self._syst_wraps_fired = 0

    # -- registers -----------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        """A load of ``size`` bytes at ``offset`` in the SCS page."""
        with self.lock:
            word = self._read_word(offset & ~3)
        shift = (offset & 3) * 8
        return (word >> shift) & ((1 << (size * 8)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        """A store of ``size`` bytes at ``offset`` in the SCS page."""
        with self.lock:
            if 0x400 <= offset < 0x400 + self.num_irqs or 0xD18 <= offset < 0xD24:
                for i in range(size):  # priority registers are byte-addressable
                    self._write_priority(offset + i, (value >> (8 * i)) & 0xFF)
            else:
                base, shift = offset & ~3, (offset & 3) * 8
                if size < 4:  # merge into the word, as a byte lane write would
                    mask = ((1 << (size * 8)) - 1) << shift
                    value = (self._read_word(base) & ~mask) | ((value << shift) & mask)
                self._write_word(base, value & 0xFFFF_FFFF)
        self._on_change()

    def _write_priority(self, offset: int, value: int) -> None:
        exc = FIRST_IRQ + offset - 0x400 if offset >= 0x400 else offset - 0xD18 + 4
        if exc not in FIXED_PRIORITY:
            self.priority[exc] = value & self.prio_mask

    def _bank(self, offset: int, base: int) -> int:
        return (offset - base) // 4

    def _read_word(self, off: int) -> int:
        if off == 0x004:  # ICTR
            return (self.num_irqs + 31) // 32 - 1
        if off == 0x010:
            csr = self.syst_csr
            wraps = self._systick_wraps(self._clock()) if csr & CSR_ENABLE else 0
            if wraps > self._syst_wraps_read:
                csr |= CSR_COUNTFLAG
                self._syst_wraps_read = wraps
            return csr
        if off == 0x014:
            return self.syst_rvr
        if off == 0x018:
            if not self.syst_csr & CSR_ENABLE or not self.syst_rvr:
                return 0
            cycles = (self._clock() - self._syst_start) * self.clock_hz // 1_000_000_000
            return self.syst_rvr - cycles % (self.syst_rvr + 1)
        if off == 0x01C:
            return CALIB_NOREF_SKEW
        if 0x100 <= off < 0x140 or 0x180 <= off < 0x1C0:  # ISER / ICER
            return (self.enabled >> (32 * (self._bank(off, off & ~0x3F)))) & 0xFFFF_FFFF
        if 0x200 <= off < 0x240 or 0x280 <= off < 0x2C0:  # ISPR / ICPR
            n = self._bank(off, off & ~0x3F)
            return (self.pending >> (FIRST_IRQ + 32 * n)) & 0xFFFF_FFFF
        if 0x300 <= off < 0x340:  # IABR
            n = self._bank(off, 0x300)
            return sum(1 << (e - FIRST_IRQ - 32 * n) for e in self.active
                       if 0 <= e - FIRST_IRQ - 32 * n < 32)  # fmt: skip
        if 0x400 <= off < 0x400 + self.num_irqs or 0xD18 <= off < 0xD24:
            first = FIRST_IRQ + off - 0x400 if off >= 0x400 else off - 0xD18 + 4
            return sum(self.priority[first + i] << (8 * i) for i in range(4)
                       if first + i < len(self.priority))  # fmt: skip
        if off == 0xD00:
            return self.cpuid
        if off == 0xD04:
            return self._icsr()
        if off == 0xD08:
            return self.vtor
        if off == 0xD0C:
            return 0xFA05_0000 | (self.prigroup << 8)
        if off in (0xD28, 0xD2C, 0xD30, 0xD34, 0xD38, 0xD3C):
            return 0  # fault status: faults never reach a handler here (see cpu.py)
        if off in self.store or off in _STORAGE:
            return self.store.get(off, 0)
        self._warn(off, "read")
        return 0

    def _icsr(self) -> int:
        ipsr = self._ipsr()
        value = ipsr & 0x1FF
        taken = self._pending_taken()
        if taken is not None:
            value |= (taken & 0x1FF) << 12
        if self.pending >> FIRST_IRQ:
            value |= ICSR_ISRPENDING
        if len(self.active) <= 1:
            value |= ICSR_RETTOBASE
        for bit, exc in (
            (ICSR_PENDSTSET, SYSTICK),
            (ICSR_PENDSVSET, PENDSV),
            (ICSR_NMIPENDSET, NMI),
        ):
            if self.pending >> exc & 1:
                value |= bit
        return value

    def _write_word(self, off: int, value: int) -> None:
        if off == 0x010:
            was = self.syst_csr
            self.syst_csr = value & (CSR_ENABLE | CSR_TICKINT | CSR_CLKSOURCE)
            if self.syst_csr & CSR_ENABLE and not was & CSR_ENABLE:
                self._systick_restart()
            self.timer_changed()
        elif off == 0x014:
            self.syst_rvr = value & 0x00FF_FFFF
            self.timer_changed()
        elif off == 0x018:
            self._systick_restart()  # any write clears the counter and COUNTFLAG
            self.timer_changed()
        elif 0x100 <= off < 0x140:
            self.enabled |= value << (32 * self._bank(off, 0x100))
            self.enabled &= (1 << self.num_irqs) - 1
        elif 0x180 <= off < 0x1C0:
            self.enabled &= ~(value << (32 * self._bank(off, 0x180)))
        elif 0x200 <= off < 0x240:
            self.pending |= (value << (FIRST_IRQ + 32 * self._bank(off, 0x200))) & (
                (1 << (FIRST_IRQ + self.num_irqs)) - 1
            )
        elif 0x280 <= off < 0x2C0:
            self.pending &= ~(value << (FIRST_IRQ + 32 * self._bank(off, 0x280)))
        elif off == 0xD04:
            for bit, exc, on in ((ICSR_NMIPENDSET, NMI, True), (ICSR_PENDSVSET, PENDSV, True),
                                 (ICSR_PENDSVCLR, PENDSV, False), (ICSR_PENDSTSET, SYSTICK, True),
                                 (ICSR_PENDSTCLR, SYSTICK, False)):  # fmt: skip
                if value & bit:
                    self.pending = self.pending | 1 << exc if on else self.pending & ~(1 << exc)
        elif off == 0xD08:
            self.vtor = value & ~0x7F
        elif off == 0xD0C:
            if value >> 16 != VECTKEY:
                return  # writes without the key are ignored
            self.prigroup = (value >> 8) & 7
            if value & AIRCR_SYSRESETREQ:
                self.reset_requested = True
        elif off == 0xF00:  # STIR
            irq = value & 0x1FF
            if irq < self.num_irqs:
                self.pending |= 1 << (FIRST_IRQ + irq)
        elif off in _IGNORED_WRITES:
            pass
        elif off in self.store or off in _STORAGE:
            self.store[off] = value
        elif off in (0xD28, 0xD2C, 0xD30, 0xD34, 0xD38, 0xD3C):
            pass  # write-one-to-clear fault status that is always clear
        else:
            self._warn(off, "write")

    def _warn(self, off: int, what: str) -> None:
        if off not in self._warned:
            self._warned.add(off)
            log.warning(
                "%s of System Control Space register %#x (no model: reads 0, writes ignored)",
                what,
                SCS_BASE + off,
            )

    # -- DWT cycle counter ------------------------------------------------------------
    def dwt_read(self, offset: int, size: int) -> int:
        """A load in the DWT page: CTRL and CYCCNT; the rest reads 0."""
        with self.lock:
            if offset == 0x000:
                return self._dwt_ctrl
            if offset == 0x004:
                return self._cyccnt() & 0xFFFF_FFFF
        return 0

    def dwt_write(self, offset: int, size: int, value: int) -> None:
        """A store in the DWT page: CTRL.CYCCNTENA and CYCCNT; the rest is ignored."""
        with self.lock:
            if offset == 0x000:
                count = self._cyccnt()
                self._dwt_ctrl = value & DWT_CTRL_CYCCNTENA
                self._cyccnt_base, self._cyccnt_start = count, self._clock()
            elif offset == 0x004:
                self._cyccnt_base, self._cyccnt_start = value, self._clock()

    def _cyccnt(self) -> int:
        counting = self._dwt_ctrl & DWT_CTRL_CYCCNTENA and self.store.get(0xDFC, 0) & DEMCR_TRCENA
        if not counting:
            return self._cyccnt_base
        elapsed = self._clock() - self._cyccnt_start
        return self._cyccnt_base + elapsed * self.clock_hz // 1_000_000_000
