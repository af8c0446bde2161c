"""A firmware program served as the virtio-rpmsg device of Linux guests, over
vhost-user (``amplink serve-linux``).

The program is the same one a core process runs under amplink's own host: here its
:class:`~amplink.remote.runtime.Core` gets the link the same virtio driver
(:func:`amplink.bindings.virtio_drivers`) makes over the device a vhost-user front end
(User-Mode Linux's ``virtio_uml``, QEMU) sets up, and waits on the guest's kick eventfds
instead of a mailbox interrupt.  No remoteproc host drives this
core: there is no control block, no shutdown handshake and no watchdog.

:class:`LinuxGuestDevice` listens on the socket and serves **each connection in a
process of its own** (:mod:`amplink.remote.vhost_session`), which runs the firmware
afresh for that guest, as a board runs a fresh firmware at each boot.  What a front
end controls cannot reach the server: a front end that shrinks the memory file it
handed over (UML's is a tmpfs file, which cannot be sealed) kills only its session
with SIGBUS; one that sends hostile requests or rings, or never finishes its setup
(``setup_timeout``), is dropped; none of them blocks another guest.  Up to
``max_guests`` sessions run at once; a connection beyond that is refused.  The
sessions' log records come back over a pipe and are logged here, under their own
logger names.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from amplink.remote.program import load_program
from amplink.remote.vhost_session import EXIT_FIRMWARE_CRASHED
from amplink.transport.vhost_user import VhostUserServer

log = logging.getLogger(__name__)

SETUP_TIMEOUT = 120.0  # s from connecting until the guest's driver is up
MAX_GUESTS = 8
STOP_TIMEOUT = 10.0  # s a session gets to exit after SIGTERM
REFUSAL_LOG_INTERVAL = 1.0  # s between log lines about refused connections


@dataclass
class _Guest:
    """A session process and the server's ends of its pipes."""

    name: str
    proc: subprocess.Popen[bytes]
    report_fd: int
    pidfd: int
    _partial: bytes = field(default=b"", repr=False)

    def reports(self, data: bytes) -> list[dict[str, object]]:
        """The complete JSON lines in what the session wrote (``data``, b"" at the
        end of the pipe) after what came before."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop() if data else b""
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def close(self) -> None:
        for fd in (self.report_fd, self.pidfd):
            os.close(fd)
        assert self.proc.stdin is not None
        self.proc.stdin.close()


def _describe_exit(returncode: int) -> str:
    if returncode >= 0:
        return f"exit status {returncode}"
    sig = signal.Signals(-returncode)
    if sig == signal.SIGBUS:
        return (
            "SIGBUS: its front end made the guest memory it handed over shorter (a "
            "memory file that cannot be sealed)"
        )
    return f"signal {sig.name}"


class LinuxGuestDevice:
    """Serves one firmware program (``program``: its source and file name, as
    :meth:`amplink.remoteproc.fwref.FirmwareRef.program` reads them from an ELF
    image, a ``.py`` file or a module) to the Linux guests that connect to ``socket_path``, each
    in a session process of its own, which reads the source from a memfd it inherits.
    ``once``: stop when the first guest's session ends."""

    def __init__(
        self,
        socket_path: str,
        program: tuple[str, str],
        *,
        name: str = "linux",
        once: bool = False,
        spin: bool = False,
        setup_timeout: float = SETUP_TIMEOUT,
        max_guests: int = MAX_GUESTS,
    ) -> None:
        load_program(*program)  # fails here, not in every session
        source, self.program_name = program
        self.name = name
        self.once = once
        self.spin = spin
        self.setup_timeout = setup_timeout
        self.max_guests = max_guests
        self.server = VhostUserServer(socket_path, f"{name}-vhost")
        self._program_fd = os.memfd_create("amplink-firmware-program", os.MFD_CLOEXEC)
        os.write(self._program_fd, source.encode())
        self.guests = 0  # guests whose rpmsg driver came up
        self.connections = 0
        self._sessions: dict[int, _Guest] = {}  # by pidfd
        self._reports: dict[int, _Guest] = {}  # by report fd, until its end
        self._refused = 0
        self._refusal_logged = 0.0
        self._status = 0

    def stop(self) -> None:
        """Make :meth:`run` return (safe from signal handlers and other threads)."""
        self.server.stop()

    @property
    def sessions(self) -> int:
        """How many session processes are running."""
        return len(self._sessions)

    def run(self) -> int:
        """Serve until stopped (or, with ``once``, until the first guest's session
        ends): 0, or 1 if that session's firmware crashed (``once``)."""
        poller = select.poll()
        poller.register(self.server.fileno(), select.POLLIN)
        poller.register(self.server.stop_fd, select.POLLIN)
        try:
            while not self.server.stopped:
                if self.once and self.connections and not self._sessions:
                    break
                for fd, _ev in poller.poll():
                    if fd == self.server.fileno():
                        self._accept(poller)
                    elif (guest := self._reports.get(fd)) is not None:
                        if not self._relay(guest, os.read(fd, 65536)):
                            poller.unregister(fd)
                            del self._reports[fd]
                    elif (guest := self._sessions.get(fd)) is not None:
                        self._reap(guest, poller)
            return self._status
        finally:
            self.close()

    def _accept(self, poller: select.poll) -> None:
        conn = self.server.accept()
        if conn is None:
            return
        with conn:
            if len(self._sessions) >= self.max_guests or (self.once and self.connections):
                self._refuse()
                return
            self.connections += 1
            name = f"{self.name}#{self.connections}"
            report_r, report_w = os.pipe2(os.O_CLOEXEC)
            try:
                argv = [
                    sys.executable, "-m", "amplink.remote.vhost_session",
                    "--fd", str(conn.fileno()), "--report-fd", str(report_w),
                    "--program-fd", str(self._program_fd),
                    "--program-name", self.program_name, "--name", name,
                    "--setup-timeout", str(self.setup_timeout),
                    "--log-level", str(logging.getLogger().getEffectiveLevel()),
                    *(() if self.spin else ("--no-spin",)),
                ]  # fmt: skip
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    pass_fds=(conn.fileno(), report_w, self._program_fd),
                )
            except BaseException:
                os.close(report_r)
                raise
            finally:
                os.close(report_w)
        guest = _Guest(name, proc, report_r, os.pidfd_open(proc.pid))
        self._sessions[guest.pidfd] = guest
        self._reports[guest.report_fd] = guest
        for fd in (guest.report_fd, guest.pidfd):
            poller.register(fd, select.POLLIN)
        log.info("%s: a guest connected (session pid %d)", name, proc.pid)

    def _refuse(self) -> None:
        """A connection over the limit: closed; logged at most once a second."""
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:
            self._refusal_logged = now
            log.error(
                "%s: refused %d connection(s): %s",
                self.name,
                self._refused,
                "serving one guest only (--once)"
                if self.once
                else f"already serving {self.max_guests} guest(s), the limit",
            )
            self._refused = 0

    def _relay(self, guest: _Guest, data: bytes) -> bool:
        """Log what a session reported (``data`` from its pipe); False at its end."""
        for report in guest.reports(data):
            if report.get("ready"):
                self.guests += 1
            record = report.get("log")
            if isinstance(record, list) and len(record) == 3:
                level, name, text = record
                logging.getLogger(str(name)).log(int(level), "%s", text)
        return bool(data)

    def _reap(self, guest: _Guest, poller: select.poll) -> None:
        returncode = guest.proc.wait()
        if guest.report_fd in self._reports:
            poller.unregister(guest.report_fd)
        self._drain(guest)
        poller.unregister(guest.pidfd)
        del self._sessions[guest.pidfd]
        guest.close()
        if returncode < 0:
            log.error(
                "%s: the session died of %s; that guest is dropped, the others are served",
                guest.name,
                _describe_exit(returncode),
            )
        else:
            log.info("%s: the session ended (%s)", guest.name, _describe_exit(returncode))
        if self.once:
            self._status = 1 if returncode == EXIT_FIRMWARE_CRASHED else 0

    def _drain(self, guest: _Guest) -> None:
        """Log what an exited session left in its pipe."""
        if self._reports.pop(guest.report_fd, None) is None:
            return
        os.set_blocking(guest.report_fd, False)  # a process it forked may hold the pipe
        with contextlib.suppress(BlockingIOError):
            while self._relay(guest, os.read(guest.report_fd, 65536)):
                pass

    def _stop_sessions(self) -> None:
        """SIGTERM every session, wait for them, kill the ones that do not exit."""
        guests = list(self._sessions.values())
        for g in guests:
            with contextlib.suppress(ProcessLookupError):
                g.proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for g in guests:
            try:
                g.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s: the session did not stop; killing it", g.name)
                g.proc.kill()
                g.proc.wait()
            self._drain(g)
            g.close()
        self._sessions.clear()
        self._reports.clear()

    def close(self) -> None:
        """Stop every session and release the socket. Idempotent."""
        self._stop_sessions()
        self.server.close()
        if self._program_fd >= 0:
            os.close(self._program_fd)
            self._program_fd = -1


def serve_linux(
    program: tuple[str, str],
    socket_path: str,
    *,
    once: bool = False,
    spin: bool = False,
    setup_timeout: float = SETUP_TIMEOUT,
    on_listening: Callable[[str], None] | None = None,
) -> int:
    """Serve a firmware ``program`` (source, file name) as the rpmsg device for the
    Linux guests connecting to ``socket_path``; SIGINT and SIGTERM stop it.  Returns the
    exit status."""
    device = LinuxGuestDevice(socket_path, program, once=once, spin=spin,
                              setup_timeout=setup_timeout)  # fmt: skip

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        device.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_listening is not None:
            on_listening(socket_path)
        return device.run()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
