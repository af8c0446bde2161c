"""The emulated Cortex-M core itself, on small hand-assembled programs (no toolchain):
exception entry and return, WFI that blocks, the NVIC, SysTick and SCB registers, and
every fault reported with its PC and address."""

import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from amplink.emu.cpu import CortexM, host_address
from amplink.emu.gdbstub import GdbServer, frame
from amplink.emu.peripherals import MuPeripheral
from amplink.emu.scs import SystemControlSpace
from amplink.emu.soc import CortexMSoc, Window
from amplink.emu.waker import Waker
from amplink.hw import cpu_state as cs
from amplink.hw.core_ctrl import CC_HEARTBEAT, STATUS_WFI
from amplink.hw.imx_mu import MU_RR0, MU_TR0, ImxMu
from amplink.hw.soc import core_control, cpu_state_block, mmio_region, mu_words
from amplink.memory.region import SharedRegion

CODE, RAM = 0x0000_0000, 0x2000_0000
COUNTER = RAM  # what the test handler increments
STACK_TOP = RAM + 0x1000
IRQ = 5

# Thumb encodings (ARMv7-M ARM, A7.7)
CPSIE_I, WFI, NOP, BX_LR = 0xB662, 0xBF30, 0xBF00, 0x4770
B_BACK_1 = 0xE7FD  # b to the instruction before this one
HANDLER = [  # counter += 1
    0x4802,  # ldr r0, [pc, #8]  (the literal below)
    0x6801,  # ldr r1, [r0]
    0x3101,  # adds r1, #1
    0x6001,  # str r1, [r0]
    BX_LR,
    NOP,
]


def program(reset: list[int], *, literal: int = 0, handler_vectors: tuple[int, ...] = ()) -> bytes:
    """A vector table, ``reset`` (halfwords, then a literal word) at 0x100, and the
    counting handler at 0x200 for each of ``handler_vectors``."""
    image = bytearray(0x300)
    vectors = {0: STACK_TOP, 1: 0x101, **dict.fromkeys(handler_vectors, 0x201)}
    for n, v in vectors.items():
        struct.pack_into("<I", image, 4 * n, v)
    code = struct.pack(f"<{len(reset)}H", *reset)
    code += bytes(-len(code) % 4) + struct.pack("<I", literal)
    image[0x100 : 0x100 + len(code)] = code
    handler = struct.pack(f"<{len(HANDLER)}H", *HANDLER) + struct.pack("<I", COUNTER)
    image[0x200 : 0x200 + len(handler)] = handler
    return bytes(image)


class Board:
    """One core over two windows of a shared region, with its MMIO window."""

    def __init__(self, image: bytes, mu_base: int | None = None) -> None:
        soc = CortexMSoc(
            windows=(Window("code", CODE, 0x1000), Window("ram", RAM, 0x1000)),
            code=((0x100, 0x200),),
        )
        self.region = SharedRegion.create(0x2000, "emu-test")
        self.region.mem[: len(image)] = image
        self.mmio = mmio_region("emu-test")
        self.releases = []
        memory = []
        for m in soc.layout():
            address, release = host_address(self.region.view(m.offset, m.size))
            self.releases.append(release)
            memory.append((m.da, m.size, address))
        self.control = core_control(self.mmio, "emu-test")
        self.state = cpu_state_block(self.mmio)
        self.mu = ImxMu("emu-test", mu_words(self.mmio))
        peripherals = [] if mu_base is None else [MuPeripheral(self.mu.b, mu_base)]
        self.cpu = CortexM(soc, memory, peripherals, control=self.control, state=self.state)
        self.waker = Waker(self.cpu, [])
        self.stop = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.stop = self.cpu.run()

    def start(self) -> "Board":
        self.waker.start()
        self.thread.start()
        return self

    def finish(self, timeout: float = 10.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the core did not stop"
        return self.stop

    def counter(self) -> int:
        return struct.unpack_from("<I", self.region.mem, 0x1000)[0]

    def wait(self, done, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.001)

    def close(self) -> None:
        self.cpu.stop_requested.set()
        self.cpu.attention()
        self.thread.join(10)
        self.waker.stop()
        self.cpu.close()
        for release in self.releases:
            release()
        self.mmio.close()
        self.region.close()


@pytest.fixture
def board(request):
    boards = []

    def make(image: bytes, mu_base: int | None = None) -> Board:
        b = Board(image, mu_base)
        boards.append(b)
        return b

    yield make
    for b in boards:
        b.close()


def test_interrupts_are_taken_returned_from_and_wfi_blocks(board):
    b = board(program([CPSIE_I, WFI, B_BACK_1], handler_vectors=(16 + IRQ,)))
    b.cpu.scs.write(0x100, 4, 1 << IRQ)  # NVIC_ISER0: enable IRQ 5
    b.start()
    b.wait(lambda: b.control.readl(0) & STATUS_WFI, "the core to reach WFI")
    for n in (1, 2, 3):
        b.cpu.scs.set_pending(16 + IRQ)  # as a line's level or a STIR write would
        b.cpu.attention()
        b.wait(lambda n=n: b.counter() == n, f"interrupt {n}")
    b.wait(lambda: b.control.readl(0) & STATUS_WFI, "WFI again")
    assert b.cpu.interrupts_taken == 3 and b.cpu.scs.active == []
    taken = b.cpu.interrupts_taken
    time.sleep(0.2)  # nothing pending: the core stays asleep, and takes nothing
    assert b.cpu.interrupts_taken == taken and b.counter() == 3


def test_an_interrupt_reaches_a_core_that_never_idles(board):
    b = board(program([CPSIE_I, 0xE7FE], handler_vectors=(16 + IRQ,)))  # b . (a busy loop)
    b.cpu.scs.write(0x100, 4, 1 << IRQ)
    b.start()
    for n in (1, 2):
        b.cpu.scs.set_pending(16 + IRQ)
        b.cpu.attention()
        b.wait(lambda n=n: b.counter() == n, f"interrupt {n} at the end of a slice")
    assert not b.control.readl(0) & STATUS_WFI


def test_systick_programmed_while_the_core_sleeps_starts_ticking(board):
    b = board(program([CPSIE_I, WFI, B_BACK_1], handler_vectors=(15,)))
    b.start()
    b.wait(lambda: b.control.readl(0) & STATUS_WFI, "WFI with no timer running")
    b.cpu.scs.write(0x014, 4, 800_000 - 1)  # RVR: 1 ms at the default 800 MHz
    b.cpu.scs.write(0x010, 4, 0b111)  # CSR: enable with its interrupt
    b.wait(lambda: b.counter() >= 3, "SysTick interrupts")


def test_a_level_line_is_taken_while_it_is_active(board):
    b = board(program([CPSIE_I, WFI, B_BACK_1], handler_vectors=(16 + IRQ,)))
    level = threading.Event()
    b.cpu.scs.lines[IRQ] = level.is_set
    b.cpu.scs.write(0x100, 4, 1 << IRQ)
    b.start()
    level.set()
    b.cpu.attention()
    b.wait(lambda: b.counter() >= 5, "a storm from a line nobody clears")
    level.clear()
    stopped_at = b.counter()
    b.wait(lambda: b.control.readl(0) & STATUS_WFI, "the storm to end")
    assert b.counter() <= stopped_at + 1


def test_a_core_in_wfi_beats_its_watchdog_through_a_storm_of_wake_ups(board):
    b = board(program([CPSIE_I, WFI, B_BACK_1], handler_vectors=(16 + IRQ,)))
    b.start()  # IRQ is not enabled: pending, it wakes the loop but not the core
    b.wait(lambda: b.control.readl(0) & STATUS_WFI, "the core to reach WFI")
    before = b.control.readl(CC_HEARTBEAT)
    for _ in range(50):  # faster than IDLE_BEAT: the loop never times out
        b.cpu.scs.set_pending(16 + IRQ)
        b.cpu.attention()
        time.sleep(0.002)
    assert b.control.readl(CC_HEARTBEAT) != before and b.counter() == 0


def test_unmapped_write_stops_the_core_with_pc_and_address(board):
    # ldr r0, =0x60000000; str r1, [r0]
    b = board(program([0x4801, 0x6001, B_BACK_1], literal=0x6000_0000)).start()
    stop = b.finish()
    assert stop.cause == cs.CAUSE_UNMAPPED_WRITE and stop.address == 0x6000_0000
    assert stop.pc == 0x102
    state = b.state.read()
    assert state.state == cs.STATE_FAULTED and state.memory_fault and state.pc == 0x102
    assert state.describe() == (
        "write to unmapped memory at 0x60000000 by the instruction at PC 0x102"
    )


MU_BASE = 0x3000_0000


def test_the_mu_takes_word_stores_and_a_byte_store_is_a_bus_error(board):
    # ldr r0, =MU_BASE; movs r1, #0x5a; str r1, [r0, #MU_TR0]; strb r1, [r0, #MU_TR0]
    str_tr0, strb_tr0 = 0x6001 | (MU_TR0 // 4) << 6, 0x7001 | MU_TR0 << 6
    b = board(program([0x4802, 0x215A, str_tr0, strb_tr0, B_BACK_1], literal=MU_BASE), MU_BASE)
    stop = b.start().finish()
    assert (stop.cause, stop.address) == (cs.CAUSE_BUS_ERROR, MU_BASE + MU_TR0)
    assert "32-bit only" in stop.describe()
    assert b.mu.a.readl(MU_RR0) == 0x5A  # the word store reached side A's receive register


def test_undefined_instruction_is_a_hardfault_at_its_pc(board):
    b = board(program([NOP, 0xDE42, B_BACK_1])).start()  # udf #0x42
    stop = b.finish()
    assert (stop.cause, stop.pc) == (cs.CAUSE_UNDEFINED, 0x102)
    assert not b.state.read().memory_fault


def test_an_exception_whose_frame_cannot_be_pushed_is_a_lockup(board):
    # ldr r0, =0x60000100; msr msp, r0; svc #0
    b = board(program([0x4801, 0xF380, 0x8808, 0xDF00], literal=0x6000_0100)).start()
    stop = b.finish()
    assert stop.cause == cs.CAUSE_LOCKUP and stop.address == 0x6000_00E0
    assert "exception 11" in stop.detail  # SVCall


def test_svc_enters_svcall_and_returns_after_it(board):
    # svc #0, then loop; the counting handler is SVCall's
    b = board(program([0xDF00, WFI, B_BACK_1], handler_vectors=(11,))).start()
    b.wait(lambda: b.counter() == 1, "SVCall")
    b.wait(lambda: b.control.readl(0) & STATUS_WFI, "the return to thread mode")
    assert b.cpu.scs.active == []


def test_a_halt_request_records_the_registers():
    b = Board(program([CPSIE_I, WFI, B_BACK_1]))
    try:
        b.start()
        b.wait(lambda: b.control.readl(0) & STATUS_WFI, "WFI")
        before = b.state.read().seq
        b.cpu.halt_requested.set()
        b.cpu.attention()
        b.wait(lambda: b.state.read().seq != before, "the halt")
        state = b.state.read()
        assert state.state == cs.STATE_HALTED and state.regs[13] == STACK_TOP
        assert state.pc in (0x102, 0x104)  # at or just after the WFI
    finally:
        b.close()


# -- the System Control Space -----------------------------------------------------------
def scs(now: list[int] | None = None) -> SystemControlSpace:
    clock = now if now is not None else [0]
    return SystemControlSpace("cortex-m7", 1_000_000, 64, 0, clock=lambda: clock[0])


def test_nvic_registers_and_priorities():
    s = scs()
    s.write(0x100, 4, 0b1010)  # ISER0
    s.write(0x180, 4, 0b0010)  # ICER0
    assert s.read(0x100, 4) == 0b1000 and s.read(0x180, 4) == 0b1000
    s.write(0x200, 4, 1 << 3)  # ISPR0: pend IRQ 3
    assert s.read(0x200, 4) == 1 << 3 and s.read(0xD04, 4) & (0x1FF << 12) == 19 << 12
    s.write(0x403, 1, 0x35)  # IPR byte of IRQ 3: four bits implemented
    assert s.read(0x400, 4) == 0x30 << 24
    s.activate(19)
    assert s.read(0x300, 4) == 1 << 3  # IABR0
    assert s.next_exception(0, 0, 0) is None  # IRQ 3 is active, nothing else pending
    s.write(0x280, 4, 1 << 3)  # ICPR0
    assert s.read(0x200, 4) == 0
    s.write(0xF00, 4, 7)  # STIR: pend IRQ 7 (disabled: not taken)
    assert s.read(0x200, 4) == 1 << 7 and s.next_exception(0, 0, 0) is None


def test_priorities_preemption_and_masks():
    s = scs()
    s.write(0x100, 4, 0b11)
    s.write(0x400, 1, 0x80)  # IRQ 0: priority 0x80
    s.write(0x401, 1, 0x40)  # IRQ 1: higher
    s.set_pending(16)
    s.set_pending(17)
    assert s.next_exception(0, 0, 0) == 17
    assert s.next_exception(1, 0, 0) is None  # PRIMASK
    assert s.next_exception(0, 0x40, 0) is None  # BASEPRI masks 0x40 and below
    assert s.next_exception(0, 0x80, 0) == 17
    s.activate(17)
    assert s.next_exception(0, 0, 0) is None  # IRQ 0 cannot preempt IRQ 1
    assert s.deactivate(17) and not s.deactivate(17)
    assert s.next_exception(0, 0, 0) == 16


def test_systick_counts_on_the_clock():
    now = [0]
    s = scs(now)  # 1 MHz
    s.write(0x014, 4, 999)  # RVR: a 1 ms period
    s.write(0x010, 4, 0b111)  # enable, interrupt, core clock
    assert s.systick_deadline() == 1_000_000
    now[0] = 250_000
    assert s.read(0x018, 4) == 999 - 250
    assert not s.systick_expire()
    now[0] = 3_500_000  # three wraps: one pending SysTick, as on hardware
    assert s.systick_expire() and s.pending >> 15 & 1
    assert s.read(0x010, 4) & 1 << 16  # COUNTFLAG, cleared by reading
    assert not s.read(0x010, 4) & 1 << 16


def test_aircr_needs_its_key_and_unknown_registers_read_zero(caplog):
    s = scs()
    s.write(0xD0C, 4, 0x0000_0300)  # no VECTKEY: ignored
    assert s.read(0xD0C, 4) == 0xFA05_0000
    s.write(0xD0C, 4, 0x05FA_0300)
    assert s.read(0xD0C, 4) == 0xFA05_0300
    assert s.read(0xD00, 4) == 0x411F_C272  # CPUID: Cortex-M7 r1p2
    assert s.read(0xE80, 4) == 0 and s.read(0xE80, 4) == 0
    assert caplog.text.count("0xe000ee80") == 1  # one warning per register


def test_gdb_stub_answers_bad_packets_with_an_error_and_keeps_serving():
    b = Board(program([CPSIE_I, WFI, B_BACK_1]))
    server = GdbServer(b.cpu, 0)
    try:
        b.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:

            def ask(body: bytes) -> bytes:
                client.sendall(frame(body))
                reply = b""
                while not (reply.count(b"#") and len(reply) >= reply.rindex(b"#") + 3):
                    chunk = client.recv(4096)
                    assert chunk, "the stub closed the connection"
                    reply += chunk
                return reply[reply.index(b"$") + 1 : reply.rindex(b"#")]

            assert ask(b"?") == b"T05"  # attaching halted the core
            assert ask(b"mzz,4") == b"E02"  # malformed
            assert ask(b"p") == b"E02"
            assert ask(b"m100,2") == b"62b6"  # CPSIE i, little-endian
            regs = ask(b"g")
            assert int.from_bytes(bytes.fromhex(regs[13 * 8 : 14 * 8].decode()), "little") == (
                STACK_TOP
            )
            assert ask(b"D") == b"OK"
        b.wait(lambda: b.control.readl(0) & STATUS_WFI, "the core running again after detach")
    finally:
        server.close()
        b.close()


def test_the_core_process_loads_no_host_layer():
    """``python -m amplink.emu`` stands on the lower layers only: none of remoteproc,
    the host, rpmsg, boards or the application shell is imported into a core."""
    code = (
        "import sys, amplink.emu.__main__, amplink.emu.gdbstub\n"
        "print(' '.join({m.split('.')[1] for m in sys.modules if m.startswith('amplink.')}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "emu" in loaded
    shell = {"app", "board", "control", "host", "bindings", "remoteproc", "rpmsg", "firmware"}
    assert loaded & shell == set()
