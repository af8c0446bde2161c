"""The platform driver for a remote core that runs as an OS process.

What ``ops->start``, ``ops->stop`` and ``ops->kick`` do for a real SoC, this does for a
process: *start* spawns ``python -m amplink.remote`` (for packed Python firmware) or the
firmware itself (an executable for this machine) with the device memory, the MMIO
window (MU and core control) and two interrupt lines; *stop* is a reset (SIGKILL),
preceded, when the firmware supports it, by TI K3's graceful-shutdown handshake;
*kick* sends a vring notify id through the MU.  The core's death arrives as an
interrupt (its pidfd on line :data:`WDOG_IRQ`); an optional watchdog timer checks the
heartbeat the firmware writes into core control.  What the core process leaves about
why it failed (a Python firmware's traceback) comes through a pipe named in
:data:`~amplink.core_process.CRASH_NOTE_ENV`, read when it exits: its last line joins
the crash's reason, as Qualcomm's remoteproc drivers log the crash reason the firmware
left in SMEM.

Words from the core on the kick channel are sorted here: ``RP_MBOX_SHUTDOWN_ACK``
completes the handshake, ``RP_MBOX_CRASH`` is a crash report, ``RP_MBOX_ECHO_REPLY``
answers :meth:`ProcessPlatform.mailbox_ping`, other protocol words are ignored, and
anything else is a notify id for the rproc core.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from amplink.core_process import CRASH_NOTE_ENV, CRASH_NOTE_MAX
from amplink.errors import AmplinkError
from amplink.hw.core_ctrl import (
    CC_BOOT_ADDR,
    CC_HEARTBEAT,
    CC_STATUS,
    STATUS_REPORTS_UNBOUND,
    STATUS_UNBOUND,
    STATUS_WFI,
    CoreControl,
)
from amplink.hw.soc import core_control, mmio_region
from amplink.irq.flags import IRQ_HANDLED, IRQF_ONESHOT, IRQF_TRIGGER_RISING
from amplink.irq.held_signals import HELD_SIGNALS
from amplink.irq.line import shared_line_fds
from amplink.mailbox.mu_path import DEFAULT_WIRING, Delivery, MuKickPath, MuWiring
from amplink.memory.region import SharedRegion
from amplink.remoteproc.config import RprocConfig
from amplink.remoteproc.crash import CRASH_FATAL_ERROR, CRASH_WATCHDOG
from amplink.remoteproc.elf import HOST_MACHINE, FirmwareImage
from amplink.remoteproc.fwpack import packed_python
from amplink.remoteproc.platform import RprocPlatform
from amplink.tracing import ENV_VAR, TRACER
from amplink.wait import spin_worthwhile
from amplink.wire.protocol import (
    RP_MBOX_CRASH,
    RP_MBOX_ECHO_REPLY,
    RP_MBOX_ECHO_REQUEST,
    RP_MBOX_READY,
    RP_MBOX_SHUTDOWN,
    RP_MBOX_SHUTDOWN_ACK,
    Features,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

WDOG_IRQ = 33
WFI_POLL = 0.0002  # K3: poll core control for WFI every 200 us
_ARMING_POLL = 0.01  # how often the watchdog looks for the first heartbeat


class _Spawner:
    """One thread that lives with the process and runs what is given to it, in order
    (every core is forked by it: see ``_spawn``).  Not a ``ThreadPoolExecutor``: Python
    shuts those down as the main thread ends, and a program whose worker threads go on
    (a server, a crash recovered after ``main`` returned) could then start no core."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` in the spawner thread; its result, or what it raised."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()
        done: Future[_T] = Future()
        self._queue.put((done, fn))
        return done.result()

    def _serve(self) -> None:
        while True:
            done, fn = self._queue.get()
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the caller
                done.set_exception(exc)


_SPAWNER = _Spawner("amplink-spawn_0")  # lives with the process


class ProcessPlatformDriver:
    """Runs packed Python firmware (in ``python -m amplink.remote``) and executables for
    this machine, each as a process of its own."""

    name = "process"

    def runs(self, image: FirmwareImage) -> bool:
        """Packed Python firmware, or an executable for this machine."""
        return packed_python(image) or image.native

    def describe(self) -> str:
        """What :meth:`runs` accepts, in words."""
        return f"packed Python firmware (amplink fw pack) and executables for {HOST_MACHINE}"

    def create(self, name: str, image: FirmwareImage, config: RprocConfig) -> ProcessPlatform:
        """The platform of core ``name``; ``EACCES`` for an executable this user may not run."""
        if image.native and not os.access(image.name, os.X_OK):
            raise AmplinkError(
                errno.EACCES,
                f"{name}: {image.name} is a native executable but not executable by this "
                "user (chmod +x it)",
            )
        spin = config.spin
        if spin is None:
            spin = spin_worthwhile(None, None if config.cpu is None else {config.cpu})
        return ProcessPlatform(
            name,
            image.name,
            cpu=config.cpu,
            spin=spin,
            delivery=config.delivery,
            rt_priority=config.rt_priority,
            boot_timeout=config.boot_timeout,
            native=image.native,
            mailbox=config.mailbox or DEFAULT_WIRING,
        )


class ProcessPlatform(RprocPlatform):
    """One core process and the hardware around it; created per start."""

    # What a core process's unasked exit with status 0 means: its program ended.
    RETURNED: str | None = (
        "its firmware's main() returned (a firmware that serves ends in core.run())"
    )

    def __init__(
        self,
        name: str,
        firmware: str,
        *,
        cpu: int | None = None,
        spin: bool = True,
        delivery: Delivery = "thread",
        rt_priority: int | None = None,
        boot_timeout: float = 10.0,
        native: bool = False,
        mailbox: MuWiring = DEFAULT_WIRING,
    ) -> None:
        """``native``: the firmware file is an executable for this machine and is run
        as the core process itself (with the same arguments the Python core gets);
        otherwise ``python -m amplink.remote`` runs the packed program it finds in
        device memory.  ``mailbox``: the MU channels and interrupt lines of the kick
        path (the host's line must not be :data:`WDOG_IRQ`, the core-exit line)."""
        if mailbox.host_irq == WDOG_IRQ:
            raise AmplinkError(
                errno.EINVAL,
                f"{name}: interrupt {WDOG_IRQ} is the core-exit line; wire the MU to another",
            )
        super().__init__(name, spin=spin)
        self.mailbox = mailbox
        self.native = native
        self.firmware = firmware
        self.cpu = cpu
        self.delivery: Delivery = delivery
        self.rt_priority = rt_priority
        self.boot_timeout = boot_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.kick_path: MuKickPath | None = None
        self.control: CoreControl | None = None
        self._exit_code: int | None = None
        self._undo: list[Callable[[], None]] = []  # power-on steps
        self._host_undo: list[Callable[[], None]] = []  # connect steps
        self._mmio: SharedRegion | None = None
        self._line_fds = (-1, -1)
        self._note_fd = -1  # the host's end of the crash-note pipe
        self._ack = threading.Event()
        self._echo_reply = threading.Event()
        self._resetting = False
        self._watchdog: threading.Thread | None = None
        self._watchdog_stop = threading.Event()

    @property
    def pid(self) -> int | None:
        """The core process's pid while it runs (None once it has exited: a crashed
        core whose process died has none, though it is reaped only at the reset)."""
        if self.proc is None or self._exit_code is not None:
            return None
        return self.proc.pid

    @property
    def exit_code(self) -> int | None:
        """How the core process last ended (negative: killed by that signal)."""
        return self._exit_code

    def status(self) -> int:
        """The core-control STATUS word (BOOTED / WFI / HALTED)."""
        return self.control.readl(CC_STATUS) if self.control is not None else 0

    # -- power on, connect -----------------------------------------------------------
    def power_on(self, region: SharedRegion, table_da: int, table_len: int, entry: int) -> None:
        """What a boot loader does: the MMIO window, the interrupt lines, and the core
        process, running from ``entry``.  The host side is :meth:`connect`."""
        # One section: a Ctrl-C meanwhile must not leave what is made here (the core
        # process above all) unknown to the release (nothing here waits for the core).
        with HELD_SIGNALS:
            mmio = mmio_region(self.name)
            self._undo.append(mmio.close)
            self.control = core_control(mmio, self.name)
            self.control.writel(CC_BOOT_ADDR, entry)
            self._mmio = mmio
            host_line, core_pulser = shared_line_fds()
            try:
                core_line, host_pulser = shared_line_fds()
            except BaseException:
                _close((host_line, core_pulser))
                raise
            fds = self._line_fds = (host_line, host_pulser)  # the host's own open files
            self._undo.append(lambda: _close(fds))
            note, core_note = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)  # the core's end: blocking
            os.set_blocking(core_note, True)
            self._note_fd = note
            self._undo.append(lambda: _close((note,)))
            try:
                self.proc = self._spawn(
                    region, mmio, core_line, core_pulser, table_da, table_len, entry, core_note
                )
            finally:
                _close((core_line, core_pulser, core_note))  # the core's: the host keeps no copy
            self._undo.append(self._reset)

    def connect(self, features: Features) -> None:
        """The host side: the MU kick path, the core's death as interrupt line
        :data:`WDOG_IRQ`, and the watchdog if ``features`` ask for one.  Undone by
        :meth:`disconnect`, which leaves the core running (a detach)."""
        assert self.proc is not None and self._mmio is not None
        self._resetting = False
        # One section: a Ctrl-C meanwhile must not leave a thread or descriptor made
        # here unknown to disconnect() (nothing here waits for the core).
        with HELD_SIGNALS:
            path = MuKickPath(  # owns these duplicates, even if it fails
                self.name,
                self._mmio,
                "a",
                os.dup(self._line_fds[0]),
                os.dup(self._line_fds[1]),
                self._on_word,
                delivery=self.delivery,
                rt_priority=self.rt_priority,
                wiring=self.mailbox,
            )
            self.kick_path = path
            self._host_undo.append(self._close_path)
            pidfd = os.pidfd_open(self.proc.pid)
            path.domain.add_line(WDOG_IRQ, trigger=IRQF_TRIGGER_RISING, fd=pidfd, counter=False)
            path.domain.request_threaded_irq(
                WDOG_IRQ, None, self._exit_irq, IRQF_ONESHOT, f"{self.name}-wdog", self
            )
            if features.watchdog_ms:
                self._start_watchdog(features.watchdog_ms / 1000)

    def disconnect(self) -> None:
        """Release the host side only; the core keeps running. Idempotent."""
        _unwind(self._host_undo, self.name)

    def _spawn(
        self,
        region: SharedRegion,
        mmio: SharedRegion,
        core_fd: int,
        host_fd: int,
        table_da: int,
        table_len: int,
        entry: int,
        note_fd: int,
    ) -> subprocess.Popen[bytes]:
        cmd = [
            *self._executable(),
            "--name", self.name,
            "--firmware", self.firmware,
            "--region-fd", str(region.fd),
            "--mmio-fd", str(mmio.fd),
            "--irq-fd", str(core_fd),
            "--peer-irq-fd", str(host_fd),
            "--table-da", hex(table_da),
            "--table-len", str(table_len),
            "--boot-addr", hex(entry),
            "--boot-timeout", str(self.boot_timeout),
            "--mu", self.mailbox.unit,
            "--mu-tx", str(self.mailbox.rx),  # the core's side: what the host receives
            "--mu-rx", str(self.mailbox.tx),
            "--mu-irq", str(self.mailbox.core_irq),
        ]  # fmt: skip
        if self.cpu is not None:
            cmd += ["--cpu", str(self.cpu)]
        if not self.spin:
            cmd.append("--no-spin")
        cmd += self._extra_args()
        env = dict(os.environ, AMPLINK_PARENT_PID=str(os.getpid()))
        env[CRASH_NOTE_ENV] = str(note_fd)
        if TRACER.enabled:  # the core appends its events to a file the export merges
            env[ENV_VAR] = TRACER.core_file(self.name)
            env["AMPLINK_CORE_NAME"] = f"core {self.name}"
        # Forked by one long-lived thread: the core dies with the thread that forked it
        # (PR_SET_PDEATHSIG follows the parent *thread*), and the thread that boots a
        # core may be a short-lived one (a control request's worker, a user's thread).
        return _SPAWNER.run(
            lambda: subprocess.Popen(
                cmd,
                pass_fds=(region.fd, mmio.fd, core_fd, host_fd, note_fd),
                env=env,
                stdin=subprocess.DEVNULL,
                process_group=0,  # a terminal's Ctrl-C reaches the host only; it stops the core
            )
        )

    def _executable(self) -> list[str]:
        """The command that runs the core (its arguments follow)."""
        return [self.firmware] if self.native else [sys.executable, "-m", "amplink.remote"]

    def _extra_args(self) -> list[str]:
        """Arguments a platform adds to the core's command line."""
        return []

    def take_notifications(
        self,
        fds: Sequence[int],
        timeout: float | None,
        ready: Callable[[], bool] | None,
        start: Callable[[], object] | None = None,
    ) -> bool | None:
        """The host's MU line taken by the waiting thread itself
        (:meth:`~amplink.irq.domain.IrqDomain.take_while_waiting`): the core's kick
        wakes it, and the MU's handlers and the RX callback run in it.  ``start``:
        called once the line is taken (what makes the core answer), not if None is
        returned."""
        path = self.kick_path
        if path is None:
            return None
        return path.domain.take_while_waiting(self.mailbox.host_irq, fds, timeout, ready, start)

    # -- words from the core ---------------------------------------------------------
    def kick(self, word: int) -> None:
        """Send ``word`` to the core through the MU (a notify id or a protocol word)."""
        if self.kick_path is not None:
            self.kick_path.kick(word)

    def _on_word(self, word: int) -> None:
        """The mailbox RX callback (in the RX channel's IRQ thread)."""
        if word < RP_MBOX_READY:
            self.on_notify(word)
        elif word == RP_MBOX_SHUTDOWN_ACK:
            self._ack.set()
        elif word == RP_MBOX_CRASH:
            self.on_crash(CRASH_FATAL_ERROR, "the firmware reported a fatal error")
        elif word == RP_MBOX_ECHO_REPLY:
            self._echo_reply.set()

    def _exit_irq(self, irq: int, dev_id: object) -> int:
        """The core process exited (its pidfd became readable)."""
        proc = self.proc
        code = proc.wait() if proc is not None else None
        self.crash_detail = self._read_note()
        self._exit_code = code
        self._ack.set()  # a graceful shutdown waiting for this core need not wait on
        if not self._resetting:
            self.on_crash(*self._exit_crash(code))
        return IRQ_HANDLED

    def _exit_crash(self, code: int | None) -> tuple[int, str]:
        """The crash a core process's exit is: its kind and reason (with the last
        line of what the core left in its crash note)."""
        why = f"the core process exited ({describe_exit(code)})"
        if code == 0 and self.RETURNED:
            why += f": {self.RETURNED}"
        if self.crash_detail:
            why += f": {self.crash_detail.splitlines()[-1]}"
        return CRASH_FATAL_ERROR, why

    def _read_note(self) -> str:
        """What the exited core wrote into its crash note (non-blocking: a process the
        core started may still hold the pipe open), its control characters but line
        breaks and tabs shown as U+FFFD: the host logs it, and a terminal would obey
        escape sequences a hostile core put there."""
        if self._note_fd < 0:
            return ""
        chunks, size = [], 0
        with contextlib.suppress(BlockingIOError):  # a child of the core holds it open
            while size < CRASH_NOTE_MAX and (data := os.read(self._note_fd, 65536)):
                chunks.append(data)
                size += len(data)
        text = b"".join(chunks)[:CRASH_NOTE_MAX].decode(errors="replace")
        return "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text).rstrip()

    def mailbox_ping(self, timeout: float) -> float:
        """``RP_MBOX_ECHO_REQUEST`` through the MU and ``RP_MBOX_ECHO_REPLY`` back: the
        round trip (s); ``ETIMEDOUT`` if no reply comes within ``timeout`` s."""
        self._echo_reply.clear()
        t = time.perf_counter()
        self.kick(RP_MBOX_ECHO_REQUEST)
        if not self._echo_reply.wait(timeout):
            raise AmplinkError(errno.ETIMEDOUT, f"{self.name} did not answer an echo request")
        return time.perf_counter() - t

    # -- watchdog --------------------------------------------------------------------
    def _start_watchdog(self, period: float) -> None:
        """Watch the heartbeat the firmware writes: armed by its first beat (a core
        still starting has until the boot timeout to give one), then no beat for
        ``period`` s is a watchdog crash."""
        control = self.control
        assert control is not None
        self._watchdog_stop.clear()
        stop = self._watchdog_stop

        def watch() -> None:
            last = control.readl(CC_HEARTBEAT)
            armed_by = time.monotonic() + self.boot_timeout
            while control.readl(CC_HEARTBEAT) == last:
                if time.monotonic() > armed_by:
                    self.on_crash(
                        CRASH_WATCHDOG,
                        f"no heartbeat within the boot timeout ({self.boot_timeout:g} s; watchdog)",
                    )
                    return
                if stop.wait(min(period, _ARMING_POLL)):
                    return
            last = control.readl(CC_HEARTBEAT)
            while not stop.wait(period):
                beat = control.readl(CC_HEARTBEAT)
                if beat == last:
                    self.on_crash(
                        CRASH_WATCHDOG, f"no heartbeat for {period * 1000:.0f} ms (watchdog)"
                    )
                    return
                last = beat

        self._watchdog = threading.Thread(target=watch, name=f"{self.name}-wdt", daemon=True)
        self._watchdog.start()
        self._host_undo.append(self._stop_watchdog)

    def _stop_watchdog(self) -> None:
        self._watchdog_stop.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(5)
        self._watchdog = None

    def wait_unbound(self, timeout: float) -> None:
        """Wait for core control's UNBOUND, if the firmware reports it (amplink's
        Python firmware does: it holds no rings while it waits for the host's driver).
        Attaching again right after a detach would otherwise lay fresh rings under a
        core that has not yet seen the reset, and it would read them as broken."""
        deadline = time.monotonic() + timeout
        while (status := self.status()) & STATUS_REPORTS_UNBOUND and not status & STATUS_UNBOUND:
            if self.proc is None or self.proc.poll() is not None:
                return  # it died: nothing uses the rings
            if time.monotonic() > deadline:
                raise AmplinkError(
                    errno.ETIMEDOUT,
                    f"{self.name} did not let go of its rpmsg rings within {timeout:g}s "
                    "after the detach (its firmware must notice the vdev reset)",
                )
            time.sleep(WFI_POLL)

    # -- stop ------------------------------------------------------------------------
    def shutdown(self, ack_timeout: float, wfi_timeout: float) -> None:
        """TI K3's handshake: ``RP_MBOX_SHUTDOWN``, wait for the ACK (``EBUSY`` if it
        does not come: the core keeps running), then poll core control for WFI
        (``ETIMEDOUT``).  The caller resets the core afterwards."""
        if self.proc is None or self.proc.poll() is not None:
            return  # the core is not executing anything: nothing to hand shake with
        self._ack.clear()
        self.kick(RP_MBOX_SHUTDOWN)
        if self._ack.wait(ack_timeout) and self.proc.poll() is not None:
            return  # it exited instead of answering
        if not self._ack.is_set():
            log.error(
                "%s: timeout waiting for the shutdown ACK (%.0f ms)", self.name, ack_timeout * 1000
            )
            raise AmplinkError(
                errno.EBUSY,
                f"{self.name} did not acknowledge RP_MBOX_SHUTDOWN within {ack_timeout:g}s; "
                "it is still running (its firmware must answer the handshake, or say in its "
                "resource table that it does not support it)",
            )
        deadline = time.monotonic() + wfi_timeout
        while not self.status() & STATUS_WFI:
            if time.monotonic() > deadline:
                raise AmplinkError(
                    errno.ETIMEDOUT,
                    f"{self.name} acknowledged the shutdown but did not enter WFI within "
                    f"{wfi_timeout * 1000:g} ms",
                )
            time.sleep(WFI_POLL)

    def _reset(self) -> None:
        """Hold the core in reset: the process is killed and reaped."""
        proc = self.proc
        if proc is None:
            return
        self._resetting = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        self._exit_code = proc.wait()
        self.proc = None

    def _close_path(self) -> None:
        if self.kick_path is not None:
            self.kick_path.close()
            self.kick_path = None

    def release(self) -> None:
        """Reset the core and release everything start created. Idempotent."""
        self._resetting = True
        self.disconnect()
        _unwind(self._undo, self.name)
        self.control = None
        self._mmio = None


def _close(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


def _unwind(undo: list[Callable[[], None]], name: str) -> None:
    with HELD_SIGNALS:  # a Ctrl-C waits until every step ran (see Rproc._release_locked)
        while undo:
            step = undo.pop()
            try:
                step()
            except Exception:
                log.exception("%s: error while releasing resources", name)


def describe_exit(code: int | None) -> str:
    """How a process ended, in words (``killed by SIGKILL``, ``exit code 1``)."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
