"""A GDB remote-serial-protocol server for an emulated core (the GDB manual's
"Remote Protocol" appendix): ``arm-none-eabi-gdb`` (or ``gdb-multiarch``) attaches with
``target remote :PORT``, and can read and write registers and memory, set breakpoints,
continue, step and interrupt.

One client at a time, on 127.0.0.1.  Attaching halts the core; while it is halted, the
core's own thread serves the client's packets (the emulator is not thread-safe); while
it runs, a reader thread watches for Ctrl-C (``\\x03``) and for the client leaving.
A fault while a client is attached stops the core with the matching signal (SIGSEGV
for a memory fault, SIGILL otherwise) so that the client sees it before the platform
reports the crash.  Detaching (or ``kill``) removes the breakpoints and lets the core
run on.  Memory outside the core's RAM windows is not read (a peripheral read has side
effects): the client gets an error for it.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading

from unicorn import UcError
from unicorn import arm_const as arm

from amplink.emu.cpu import GPRS, CortexM
from amplink.hw.cpu_state import MEMORY_CAUSES

log = logging.getLogger(__name__)

SIGINT, SIGILL, SIGTRAP = 2, 4, 5
TARGET_XML = (
    '<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
    "<target><architecture>arm</architecture>"
    '<feature name="org.gnu.gdb.arm.m-profile">'
    + "".join(f'<reg name="r{i}" bitsize="32"/>' for i in range(13))
    + '<reg name="sp" bitsize="32" type="data_ptr"/>'
    '<reg name="lr" bitsize="32"/>'
    '<reg name="pc" bitsize="32" type="code_ptr"/>'
    '<reg name="xpsr" bitsize="32"/>'
    "</feature></target>"
)
XPSR_REG = 16
_EOF = b""


def checksum(data: bytes) -> bytes:
    """The two hex digits that end a packet."""
    return b"%02x" % (sum(data) & 0xFF)


def frame(data: bytes) -> bytes:
    """``$data#cs``, with ``#``, ``$``, ``}`` and ``*`` escaped."""
    escaped = bytearray()
    for b in data:
        if b in b"#$}*":
            escaped += bytes([0x7D, b ^ 0x20])
        else:
            escaped.append(b)
    return b"$" + bytes(escaped) + b"#" + checksum(bytes(escaped))


class GdbServer:
    """Serves GDB for ``cpu`` on 127.0.0.1:``port``; ``hold``: the core waits at reset
    until a client attaches and continues it."""

    def __init__(self, cpu: CortexM, port: int, *, hold: bool = False) -> None:
        self.cpu = cpu
        self._listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.port = self._listener.getsockname()[1]
        self._client: socket.socket | None = None
        self._packets: queue.Queue[bytes] = queue.Queue()
        self._ack = True
        self._lock = threading.Lock()
        self._running = False  # the client waits for a stop reply
        cpu.debugger = self
        if hold:
            cpu.halt_requested.set()
        self._thread = threading.Thread(target=self._accept, name="emu-gdb", daemon=True)
        self._thread.start()
        log.info("GDB server for the emulated core on 127.0.0.1:%d", self.port)

    # -- connection --------------------------------------------------------------------
    def attached(self) -> bool:
        """Whether a client is connected."""
        return self._client is not None

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._client is not None:
                    client.close()  # one client at a time
                    continue
                self._client = client
                self._ack = True
                self._packets = queue.Queue()
            self.cpu.halt_signal = SIGTRAP
            self.cpu.halt_requested.set()  # attaching halts the core
            self.cpu.attention()
            self._read(client)

    def _read(self, client: socket.socket) -> None:
        """Split what the client sends into packets; Ctrl-C interrupts a running core."""
        buf = b""
        while True:
            try:
                data = client.recv(4096)
            except OSError:
                data = b""
            if not data:
                self._packets.put(_EOF)
                self.cpu.attention()
                return
            buf += data
            while buf:
                if buf[0:1] in (b"+", b"-"):
                    buf = buf[1:]
                elif buf[0:1] == b"\x03":
                    buf = buf[1:]
                    self.cpu.halt_signal = SIGINT
                    self.cpu.halt_requested.set()
                    self.cpu.attention()
                elif buf[0:1] == b"$":
                    end = buf.find(b"#")
                    if end < 0 or len(buf) < end + 3:
                        break  # incomplete
                    body = buf[1:end]
                    if self._ack:
                        client.sendall(b"+" if checksum(body) == buf[end + 1 : end + 3] else b"-")
                    buf = buf[end + 3 :]
                    self._packets.put(_unescape(body))
                else:
                    buf = buf[1:]  # noise between packets

    def _send(self, data: bytes) -> None:
        client = self._client
        if client is not None:
            try:
                client.sendall(frame(data))
            except OSError:
                self._drop()

    def _drop(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
            self.cpu.remove_breakpoints()

    def close(self) -> None:
        """Stop listening and drop the client."""
        self._listener.close()
        self._drop()

    # -- the core's side ---------------------------------------------------------------
    def stopped(self, cpu: CortexM, signal: int) -> None:
        """Report the stop (if the client waits for one) and serve packets until the
        client resumes the core, detaches or goes away."""
        reply = b"T%02x" % signal + (b"swbreak:;" if signal == SIGTRAP and self._running else b"")
        if self._running:
            self._running = False
            self._send(reply)
        while self.attached():
            packet = self._packets.get()
            if packet == _EOF:
                self._drop()
                return
            try:
                answer = self._handle(packet, signal)
            except (ValueError, IndexError, UcError):
                log.warning("GDB packet %r is malformed or not for this core", packet[:64])
                answer = b"E02"
            if answer is None:  # resumed
                self._running = True
                return
            self._send(answer)
            if packet == b"QStartNoAckMode":
                self._ack = False
            elif packet in (b"D", b"k"):
                self._drop()
                return

    def _handle(self, packet: bytes, signal: int) -> bytes | None:
        cpu, uc = self.cpu, self.cpu.uc
        kind, body = packet[:1], packet[1:]
        if packet.startswith(b"qSupported"):
            return b"PacketSize=4000;qXfer:features:read+;QStartNoAckMode+;swbreak+"
        if packet == b"QStartNoAckMode":
            return b"OK"
        if packet.startswith(b"qXfer:features:read:target.xml:"):
            off, length = (int(x, 16) for x in packet.rsplit(b":", 1)[1].split(b","))
            chunk = TARGET_XML.encode()[off : off + length]
            return (b"l" if off + length >= len(TARGET_XML) else b"m") + chunk
        if packet == b"?":
            return b"T%02x" % signal
        if packet == b"qAttached":
            return b"1"
        if packet == b"qfThreadInfo":
            return b"m1"
        if packet == b"qsThreadInfo":
            return b"l"
        if kind == b"H" or packet.startswith(b"qSymbol"):
            return b"OK"
        if kind == b"g":
            regs, xpsr = cpu.registers()
            return b"".join(v.to_bytes(4, "little").hex().encode() for v in (*regs, xpsr))
        if kind == b"p":
            n = int(body, 16)
            regs, xpsr = cpu.registers()
            values = (*regs, xpsr)
            return values[n].to_bytes(4, "little").hex().encode() if n < len(values) else b"E01"
        if kind == b"P":
            reg, value = body.split(b"=")
            self._write_register(
                int(reg, 16), int.from_bytes(bytes.fromhex(value.decode()), "little")
            )
            return b"OK"
        if kind == b"G":
            data = bytes.fromhex(body.decode())
            for n in range(len(data) // 4):
                self._write_register(n, int.from_bytes(data[4 * n : 4 * n + 4], "little"))
            return b"OK"
        if kind == b"m":
            address, length = (int(x, 16) for x in body.split(b","))
            if not self._in_ram(address, length):
                return b"E01"
            try:
                return bytes(uc.mem_read(address, length)).hex().encode()
            except UcError:
                return b"E01"
        if kind in (b"M", b"X"):
            where, data = body.split(b":", 1)
            address, length = (int(x, 16) for x in where.split(b","))
            raw = bytes.fromhex(data.decode()) if kind == b"M" else data[:length]
            if not self._in_ram(address, length):
                return b"E01"
            uc.mem_write(address, raw)
            return b"OK"
        if kind in (b"Z", b"z") and body[:1] in (b"0", b"1"):
            address = int(body.split(b",")[1], 16)
            if kind == b"Z":
                cpu.add_breakpoint(address)
            else:
                cpu.remove_breakpoint(address)
            return b"OK"
        if kind in (b"c", b"s"):
            if body:
                cpu.pc = int(body, 16) & ~1
            if kind == b"c":
                cpu.skip_breakpoint_at_pc()
                return None
            fault = cpu.step()
            if fault is not None:
                return b"T%02x" % (11 if fault.cause in MEMORY_CAUSES else SIGILL)
            return b"T05"
        if packet in (b"D", b"k"):
            return b"OK"
        return b""  # not supported

    def _write_register(self, n: int, value: int) -> None:
        cpu = self.cpu
        if n == 15:
            cpu.pc = value & ~1
        elif n == XPSR_REG:
            cpu.uc.reg_write(arm.UC_ARM_REG_XPSR, value)
        elif n < 15:
            cpu.uc.reg_write(GPRS[n], value)

    def _in_ram(self, address: int, length: int) -> bool:
        return any(
            w.da <= address and address + length <= w.da + w.size for w in self.cpu.soc.windows
        )


def _unescape(body: bytes) -> bytes:
    out = bytearray()
    escape = False
    for b in body:
        if escape:
            out.append(b ^ 0x20)
            escape = False
        elif b == 0x7D:
            escape = True
        else:
            out.append(b)
    return bytes(out)
