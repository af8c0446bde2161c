"""``amplink demo [BOARD]``: the main job, on the built-in default board or a board file.

It boots every core of the board (with a progress display), then on each core that
offers it echoes one message of every size from 1 to 496 bytes (and powers of two up
to the MTU where that is larger, as over GLINK) with distinct contents and checks
every byte; it types a command on a core's ``rpmsg-tty`` console through its
real pty and reads the answer, and sends a message on its ``rpmsg-raw`` channel through
the channel's endpoint file.  Then it shows the two ways a core goes away: one core is
stopped gracefully (TI K3's handshake, on a core whose platform does it) and another is
crashed and recovered by remoteproc, after which its echo works again.  A summary table
ends it; every core is stopped and nothing is left behind.
"""

from __future__ import annotations

import errno
import os
import select
import time
from dataclasses import dataclass, field
from typing import TextIO

from amplink.app import signals
from amplink.app.signals import Interrupted
from amplink.app.stats import latency_summary_us
from amplink.app.terminal import Terminal, table
from amplink.board import Board, BoardSpec
from amplink.emu.firmware import DEMO_FAULT_MESSAGE
from amplink.errors import AmplinkError
from amplink.firmware.demo import ECHO_SERVICE, RAW_SERVICE
from amplink.host import Rproc
from amplink.rpmsg.tty import RPMSG_TTY_SERVICE

CONSOLE_COMMAND = "echo hello from the host"
RAW_MESSAGE = b"hello, raw channel"
TIMEOUT = 10.0
VIRTIO_MTU = 496


@dataclass
class CoreResult:
    """What the demo did with one core."""

    name: str
    personality: str
    boot_ms: float = 0.0
    messages: int | None = None  # None (shown "-"): no echo ran on it
    bytes_each_way: int | None = None
    rtt_p50_us: float | None = None
    rtt_p99_us: float | None = None
    shown: str = ""  # what the demo showed with it: a graceful stop, a crash...
    final: str = ""
    no_echo: str = ""  # why no echo ran on it (its row's "-"), said under the table


@dataclass
class DemoResult:
    """Everything the demo measured, per core."""

    board: str
    cores: list[CoreResult] = field(default_factory=list)
    console: str = ""  # the console's answer to CONSOLE_COMMAND
    raw_reply: bytes = b""


def pattern(size: int) -> bytes:
    """A payload whose every byte depends on its size and position."""
    return bytes((size * 7 + i * 13) & 0xFF for i in range(size))


def run(spec: BoardSpec, out: TextIO | None = None) -> DemoResult:
    """Run the demo on ``spec``, printing progress to ``out`` (stdout); raises on any
    failure (or :class:`~amplink.app.signals.Interrupted`), after stopping every core."""
    ui = Terminal(out)
    with ui.relay_output():
        result = _demo(spec, ui)
    ui.say()
    ui.show(
        table(
            [
                "core",
                "personality",
                "boot ms",
                "echoed",
                "bytes",
                "rtt p50 us",
                "rtt p99 us",
                "shown",
                "state then",
            ],
            [
                [
                    r.name,
                    r.personality,
                    r.boot_ms,
                    r.messages,
                    r.bytes_each_way,
                    r.rtt_p50_us,
                    r.rtt_p99_us,
                    r.shown or "-",
                    r.final,
                ]
                for r in result.cores
            ],
        )
    )
    for line in no_echo_notes(result):
        ui.say(line)
    ui.say()
    ui.say("every core stopped; every process, thread, fd and shared memory released")
    return result


def no_echo_notes(result: DemoResult) -> list[str]:
    """One line per core whose echo figures the table shows as ``-``: why none ran."""
    return [
        f"- for {r.name}: no echo ran ({r.no_echo})" for r in result.cores if r.messages is None
    ]


def _demo(spec: BoardSpec, ui: Terminal) -> DemoResult:
    ui.say(f"board {spec.name}: {spec.description or spec.source}")
    for c in spec.cores:
        ui.say(f"  {c.describe()}")
    ui.say()
    result = DemoResult(spec.name, [CoreResult(c.name, c.personality) for c in spec.cores])
    board = Board(spec)
    try:
        _run(board, ui, result)
        for cr in result.cores:
            cr.final = board.core(cr.name).state
    finally:
        with signals.shielded(), ui.step("stop the board"):
            board.stop()
    return result


def _run(board: Board, ui: Terminal, result: DemoResult) -> None:
    results = {r.name: r for r in result.cores}
    board.start(ui.step)
    for name, rp in board.cores.items():
        if rp.state != "running":
            continue
        results[name].boot_ms = board.boot_ms[name]
        with ui.step(f"channels of {name}") as st:
            services = _offered(board, name)
            st.result = ", ".join(services) or "none"
    for name, rp in board.cores.items():
        label = f"echo on {name}, sizes 1..{VIRTIO_MTU} and up, every byte checked"
        if ECHO_SERVICE in board.channels(name):
            with ui.step(label) as st:
                _echo(board.core(name), results[name])
                r = results[name]
                st.result = f"{r.messages} messages, rtt p50 {r.rtt_p50_us or 0:.1f} us"
        else:
            results[name].no_echo = (
                f"its firmware offers no {ECHO_SERVICE} channel"
                if rp.state == "running"
                else "not booted: auto_boot = false"
                if not board.spec.core(name).auto_boot
                else f"it is {rp.state}"
            )
            if rp.state == "running":
                ui.skipped(f"echo on {name}", results[name].no_echo)
    console = next((n for n in board.cores if board.tty(n) is not None), None)
    if console is not None:
        with ui.step(f"console on {_tty_label(board, console)}: type {CONSOLE_COMMAND!r}") as st:
            result.console = _console(board, console)
            st.result = f"answered {result.console!r}"
    raw = next((n for n in board.cores if RAW_SERVICE in board.channels(n)), None)
    if raw is not None:
        with ui.step(f"rpmsg-raw on {raw}: send {RAW_MESSAGE.decode()!r}") as st:
            result.raw_reply = _raw(board, raw)
            st.result = f"got {result.raw_reply.decode(errors='replace')!r}"
    graceful, crash = _roles(board)
    if crash is not None:
        with ui.step(
            f"crash {crash} on purpose and let remoteproc recover it (it logs the crash, "
            "as Linux does)"
        ) as st:
            st.result = _crash_and_recover(board, crash)
            results[crash].shown = "crash, recovered"
    if graceful is not None:
        rp = board.core(graceful)
        with ui.step(f"stop {graceful}") as st:
            rp.shutdown()
            st.result = f"{rp.last_stop}, now {rp.state}"
            results[graceful].shown = f"stop: {rp.last_stop}"


def _tty_label(board: Board, name: str) -> str:
    """``core (pty path)`` for messages."""
    t = board.tty(name)
    return f"{name} ({t.path})" if t is not None else name


def _offered(board: Board, name: str) -> list[str]:
    """Wait for the demo firmware's channels; other firmware gets until its first
    channel appears, and a second for the rest."""
    rp = board.core(name)
    wanted = (ECHO_SERVICE, RPMSG_TTY_SERVICE, RAW_SERVICE)
    link = rp.link
    if not _is_demo(rp) and link is not None:
        board.bus.wait_for_device(None, TIMEOUT, link=link)  # its first channel
    try:
        board.wait_channels(name, wanted, TIMEOUT if _is_demo(rp) else 1.0)
    except AmplinkError as exc:
        if exc.errno != errno.ETIMEDOUT or _is_demo(rp):
            raise
    return list(board.channels(name))


def _is_demo(rp: Rproc) -> bool:
    return rp.firmware == "amplink.firmware.demo"


def echo_sizes(mtu: int) -> list[int]:
    """Every size from 1 to virtio's MTU (496), then powers of two up to ``mtu`` (GLINK
    carries up to 64 KiB)."""
    sizes = list(range(1, min(mtu, VIRTIO_MTU) + 1))
    big = 1024
    while big <= mtu:
        sizes.append(big)
        big *= 2
    return sizes


def _echo(rp: Rproc, r: CoreResult) -> None:
    chan = rp.wait_channel(ECHO_SERVICE, TIMEOUT)
    r.bytes_each_way = 0
    ept = chan.create_ept()  # kept if interrupted: the board's stop takes it with the
    samples = []  # echo then in flight, not an rpmsg warning of a reply to no endpoint
    try:
        for size in echo_sizes(ept.get_mtu()):
            payload = pattern(size)
            t = time.perf_counter_ns()
            ept.send(payload)
            reply = ept.recv(TIMEOUT)
            samples.append(time.perf_counter_ns() - t)
            if reply.data != payload:
                raise AmplinkError(errno.EIO, f"{rp.name}: the echo of {size} bytes differs")
            if reply.src != chan.dst:
                raise AmplinkError(
                    errno.EIO, f"{rp.name}: echo came from address {reply.src}, not {chan.dst}"
                )
            r.bytes_each_way += size
    except (Interrupted, KeyboardInterrupt):
        raise  # the endpoint stays (see above)
    except Exception:
        ept.destroy()
        raise
    ept.destroy()
    r.messages = len(samples)
    r.rtt_p50_us, r.rtt_p99_us = latency_summary_us(samples)


def _console(board: Board, name: str) -> str:
    """Type a command on the core's pty and return the line it answered."""
    tty = board.tty(name)
    assert tty is not None
    fd = os.open(tty.path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, CONSOLE_COMMAND.encode() + b"\r")
        seen = read_until(fd, b"> ", TIMEOUT, lines=2)  # the echo, the answer, a prompt
    finally:
        os.close(fd)
    lines = seen.split(b"\r\n")
    if len(lines) < 3 or lines[0] != CONSOLE_COMMAND.encode():
        raise AmplinkError(errno.EIO, f"{name}: the console answered {seen!r}")
    return lines[1].decode(errors="replace")


def read_until(fd: int, end: bytes, timeout: float, *, lines: int = 0) -> bytes:
    """Read ``fd`` until what was read ends with ``end`` after at least ``lines`` line
    ends (CRLF); ``ETIMEDOUT`` after ``timeout`` s, saying what did come."""
    seen = b""
    deadline = time.monotonic() + timeout
    while not (seen.endswith(end) and seen.count(b"\r\n") >= lines):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AmplinkError(errno.ETIMEDOUT, f"waited {timeout}s for {end!r}; got {seen!r}")
        seen += os.read(fd, 4096)
    return seen


def _raw(board: Board, name: str) -> bytes:
    """One message through the core's ``rpmsg-raw`` endpoint file and its answer."""
    link = board.core(name).link
    files = [f for f in board.files.files.values() if f.ept.link is link]
    if not files:
        raise AmplinkError(errno.ENODEV, f"{name}: no endpoint file for {RAW_SERVICE}")
    f = files[0]
    f.write(RAW_MESSAGE)
    return f.read(timeout=TIMEOUT)


def _roles(board: Board) -> tuple[str | None, str | None]:
    """Which core to stop gracefully and which to crash: a core with the shutdown
    handshake to stop, another with recovery enabled to crash (an emulated one first:
    its firmware faults for real)."""
    names = list(board.cores)
    graceful = next((n for n in names if board.core(n).config.graceful_shutdown), None)
    can_crash = [n for n in names if n != graceful and board.core(n).recovery]
    emulated = [n for n in can_crash if board.spec.core(n).emulated is not None]
    crash = next(iter(emulated or can_crash), None)
    if graceful is None and len(names) > 1:
        graceful = next(n for n in names if n != crash)
    return graceful, crash


def _faults_on_request(rp: Rproc) -> bool:
    """Ask the echo service for a real fault (amplink's Cortex-M images write to unmapped
    memory when they get :data:`DEMO_FAULT_MESSAGE`): True if the core crashed, False if
    its firmware echoed the message instead."""
    with rp.wait_channel(ECHO_SERVICE, TIMEOUT).create_ept() as ept:
        ept.send(DEMO_FAULT_MESSAGE)
        try:
            ept.recv(TIMEOUT)
        except AmplinkError as exc:
            if exc.errno != errno.EPIPE:  # EPIPE: the core crashed, its endpoints went
                raise
            return True
    return False


def _crash_and_recover(board: Board, name: str) -> str:
    rp = board.core(name)
    check_echo = ECHO_SERVICE in board.channels(name)
    before = rp.crash_count
    if not (check_echo and _faults_on_request(rp)):
        rp.debugfs.crash(1)  # a watchdog crash, as if the core stopped responding
    rp.wait_crash_handled(before + 1, TIMEOUT)
    rp.wait_state("running", timeout=TIMEOUT)
    kind, why = rp.last_crash or ("?", "")
    done = f"crash #{rp.crash_count} ({kind}: {why}) handled, running again as pid {rp.pid}"
    if not check_echo:
        return done
    chan = rp.wait_channel(ECHO_SERVICE, TIMEOUT)
    with chan.create_ept() as ept:
        ept.send(b"still there?")
        if ept.recv(TIMEOUT).data != b"still there?":
            raise AmplinkError(errno.EIO, f"{name}: the echo after recovery differs")
    return done + ", echo works"
