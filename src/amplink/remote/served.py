"""A firmware served to foreign hosts, one host's session per process: what
``amplink serve-linux`` (Linux guests over vhost-user, :mod:`amplink.remote.vhost`) and
``amplink openamp remote`` (OpenAMP hosts over the linux-machine layout,
:mod:`amplink.remote.openamp`) share.

Why a process per session: the host hands over memory that this side maps, and some of
it cannot be sealed against shrinking (UML's guest memory and POSIX shm objects are
plain tmpfs files).  A host that shrinks it makes the next ring access raise SIGBUS,
which no Python code can catch; in a session process of its own that kills only this
host's session, and the server logs why and serves the next.  A session also runs the
firmware afresh for its host, as a board runs a fresh firmware at each boot.

* The **server** keeps the program's source in a memfd (:class:`Sessions`, which checks
  that it loads first), starts a session per host with the connection and that memfd as
  inherited descriptors (:meth:`Sessions.start`), logs what each session reports and why
  it ended (:meth:`Sessions.handle`), and stops them all (:meth:`Sessions.close`).
* A **session** is a :class:`FirmwareSession` run by :func:`session_main`: its log
  records and the moment its host's driver is up go back as JSON lines on a report pipe;
  it stops when its standard input closes (the server is gone) or on SIGTERM, with an
  ``EXIT_*`` status.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from amplink.remote.program import load_program
from amplink.remote.runtime import Core, FirmwarePlatform, Relinked
from amplink.rpmsg.polled import PolledLink

log = logging.getLogger(__name__)

EXIT_LEFT = 0  # the host went away, or the session was stopped
EXIT_FIRMWARE_CRASHED = 1
EXIT_DROPPED = 2  # the host was dropped: bad requests or rings, or setup too slow
SETUP_TIMEOUT = 120.0  # s from connecting until the host's driver is up
STOP_TIMEOUT = 10.0  # s a session gets to exit after SIGTERM


# -- the session side ----------------------------------------------------------------
@dataclass(frozen=True)
class SessionSettings:
    """What a session gets from its server: its ``name``, whether the firmware may
    busy-poll the host's rings (``spin``), how long the host may take to bring its
    driver up (``setup_timeout``, s), and what to call once it did (``on_ready``)."""

    name: str
    spin: bool
    setup_timeout: float
    on_ready: Callable[[], None]


class FirmwareSession(ABC):
    """The firmware served to one host, in its session process: :meth:`run` waits for
    the host's driver (:meth:`_next_link`, which a transport implements), runs the
    program on a :class:`~amplink.remote.runtime.Core` over the link, and relinks when
    the host resets its driver on the same connection."""

    def __init__(self, settings: SessionSettings) -> None:
        self.name = settings.name
        self.spin = settings.spin
        self.setup_timeout = settings.setup_timeout
        self.on_ready = settings.on_ready
        self.status = EXIT_LEFT
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._link: PolledLink | None = None
        self._core: Core | None = None
        self._stopping = False

    @abstractmethod
    def _next_link(self) -> Relinked | None:
        """Wait until the host's driver is up and give the rpmsg link over its rings
        with the fds its kicks make readable; None when the host left, was dropped
        (:meth:`_drop`), or the session was stopped (:attr:`_stop_fd` readable)."""

    def stop(self) -> None:
        """Make :meth:`run` return (safe from signal handlers and other threads)."""
        self._stopping = True
        if self._stop_fd >= 0:
            os.eventfd_write(self._stop_fd, 1)
        if self._core is not None:
            self._core.stop()

    def _drop(self, why: str) -> None:
        log.error("%s: %s; closing its connection", self.name, why)
        self.status = EXIT_DROPPED

    def _broken(self) -> bool:
        link = self._link
        return link is not None and isinstance(link.failure, link.broken_by_peer)

    def _drop_if_broken(self) -> bool:
        """Drop a host that broke its rings (True if it did)."""
        if not self._broken():
            return False
        assert self._link is not None
        self._drop(f"the host broke its rings ({self._link.failure})")
        return True

    def run(self, main: Callable[[Core], object]) -> int:
        """Serve the host until it leaves, is dropped, or :meth:`stop`; the exit status
        (``EXIT_*``)."""
        try:
            first = self._next_link()
            if first is None:
                return self.status
            link, kicks = first
            core = self._core = Core(self.name, link, kicks, FirmwarePlatform(self._next_link))
            try:
                main(core)
            except Exception:
                log.exception("%s: the firmware crashed", self.name)
                return EXIT_FIRMWARE_CRASHED
            finally:
                core.close()
            if self.status == EXIT_LEFT:
                self._drop_if_broken()
            return self.status
        finally:
            self.close()

    def close(self) -> None:
        """Release what the session holds. Idempotent."""
        if self._stop_fd >= 0:
            os.close(self._stop_fd)
            self._stop_fd = -1


class _Report:
    """The pipe to the server: one JSON object per line."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()

    def send(self, message: dict[str, object]) -> None:
        data = (json.dumps(message) + "\n").encode()
        with self._lock:
            try:
                while data:
                    data = data[os.write(self.fd, data) :]
            except OSError:
                pass  # the server is gone; standard input closing stops this process


class _ReportHandler(logging.Handler):
    """Log records as JSON lines on the report pipe, for the server to log."""

    def __init__(self, report: _Report) -> None:
        super().__init__()
        self.report = report
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.report.send({"log": [record.levelno, record.name, self.format(record)]})


def session_main(
    prog: str,
    argv: list[str] | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    make: Callable[[argparse.Namespace, SessionSettings], FirmwareSession],
) -> int:
    """A session process's entry point: the arguments every session takes (what
    :meth:`Sessions.start` passes) and the transport's (``add_arguments``);
    ``make(args, settings)`` builds the session; returns its exit status."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--report-fd", type=int, required=True, help="the pipe to the server")
    parser.add_argument("--program-fd", type=int, required=True, help="the program's source")
    parser.add_argument("--program-name", required=True, help="the program's file name")
    parser.add_argument("--name", required=True)
    parser.add_argument("--setup-timeout", type=float, required=True)
    parser.add_argument("--log-level", type=int, default=logging.WARNING)
    parser.add_argument("--no-spin", action="store_true")
    add_arguments(parser)
    args = parser.parse_args(argv)
    report = _Report(args.report_fd)
    root = logging.getLogger()
    root.setLevel(args.log_level)
    root.addHandler(_ReportHandler(report))
    source = os.pread(args.program_fd, os.fstat(args.program_fd).st_size, 0)
    os.close(args.program_fd)
    program = load_program(source.decode(), args.program_name)
    settings = SessionSettings(
        args.name, not args.no_spin, args.setup_timeout, lambda: report.send({"ready": True})
    )
    session = make(args, settings)

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        session.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    def watch_server() -> None:  # standard input is a pipe the server holds open
        while os.read(0, 4096):
            pass
        session.stop()

    threading.Thread(target=watch_server, name="server-watch", daemon=True).start()
    return session.run(program)


# -- the server side -----------------------------------------------------------------
@dataclass
class SessionProcess:
    """A session process and the server's ends of its pipes."""

    name: str
    proc: subprocess.Popen[bytes]
    report_fd: int
    pidfd: int
    ready: bool = False
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
        """Close the server's ends (after the session ended)."""
        for fd in (self.report_fd, self.pidfd):
            os.close(fd)
        assert self.proc.stdin is not None
        self.proc.stdin.close()


def describe_exit(returncode: int, sigbus: str) -> str:
    """A session's end in words; ``sigbus`` says what SIGBUS means for its transport."""
    if returncode >= 0:
        return f"exit status {returncode}"
    sig = signal.Signals(-returncode)
    return f"SIGBUS: {sigbus}" if sig == signal.SIGBUS else f"signal {sig.name}"


class Sessions:
    """The session processes of one server, which run ``program`` (its source and file
    name, as :meth:`amplink.remoteproc.fwref.FirmwareRef.program` reads them from an ELF
    image, a ``.py`` file or a module) with :mod:`module` as their entry point.

    The server polls :attr:`poller` (and registers its own descriptors there too) and
    hands each ready descriptor to :meth:`handle`.  ``sigbus`` says what a session's
    SIGBUS means for the transport, for the log; ``on_end(session, returncode)`` runs
    when one ended."""

    def __init__(
        self,
        program: tuple[str, str],
        module: str,
        *,
        spin: bool,
        setup_timeout: float,
        sigbus: str,
        on_end: Callable[[SessionProcess, int], None] = lambda _s, _rc: None,
    ) -> None:
        load_program(*program)  # fails here, not in every session
        source, self.program_name = program
        self.module = module
        self.spin = spin
        self.setup_timeout = setup_timeout
        self.sigbus = sigbus
        self.on_end = on_end
        self.poller = select.poll()
        self._program_fd = os.memfd_create("amplink-firmware-program", os.MFD_CLOEXEC)
        os.write(self._program_fd, source.encode())
        self.ready = 0  # sessions whose host's driver came up
        self._running: dict[int, SessionProcess] = {}  # by pidfd
        self._reporting: dict[int, SessionProcess] = {}  # by report fd, until its end

    def __len__(self) -> int:
        """How many session processes are running."""
        return len(self._running)

    def start(self, name: str, args: Sequence[str], fds: Sequence[int]) -> SessionProcess:
        """Start a session named ``name`` with the transport's ``args`` and the
        descriptors ``fds`` they name (inherited; the server keeps its copies)."""
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        try:
            argv = [
                sys.executable, "-m", self.module, *args,
                "--report-fd", str(report_w), "--program-fd", str(self._program_fd),
                "--program-name", self.program_name, "--name", name,
                "--setup-timeout", str(self.setup_timeout),
                "--log-level", str(logging.getLogger().getEffectiveLevel()),
                *(() if self.spin else ("--no-spin",)),
            ]  # fmt: skip
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, pass_fds=(*fds, report_w, self._program_fd)
            )
        except BaseException:
            os.close(report_r)
            raise
        finally:
            os.close(report_w)
        session = SessionProcess(name, proc, report_r, os.pidfd_open(proc.pid))
        self._running[session.pidfd] = session
        self._reporting[session.report_fd] = session
        for fd in (session.report_fd, session.pidfd):
            self.poller.register(fd, select.POLLIN)
        return session

    def handle(self, fd: int) -> bool:
        """Take care of ``fd`` if it is a session's (its report, its end); False if not."""
        if (session := self._reporting.get(fd)) is not None:
            if not self._relay(session, os.read(fd, 65536)):
                self.poller.unregister(fd)
                del self._reporting[fd]
            return True
        if (session := self._running.get(fd)) is not None:
            self._reap(session)
            return True
        return False

    def _relay(self, session: SessionProcess, data: bytes) -> bool:
        """Log what a session reported (``data`` from its pipe); False at its end."""
        for report in session.reports(data):
            if report.get("ready"):
                session.ready = True
                self.ready += 1
            record = report.get("log")
            if isinstance(record, list) and len(record) == 3:
                level, name, text = record
                logging.getLogger(str(name)).log(int(level), "%s", text)
        return bool(data)

    def _reap(self, session: SessionProcess) -> None:
        returncode = session.proc.wait()
        if session.report_fd in self._reporting:
            self.poller.unregister(session.report_fd)
        self._drain(session)
        self.poller.unregister(session.pidfd)
        del self._running[session.pidfd]
        session.close()
        end = describe_exit(returncode, self.sigbus)
        if returncode < 0:
            log.error("%s: the session died of %s; that host is dropped", session.name, end)
        else:
            log.info("%s: the session ended (%s)", session.name, end)
        self.on_end(session, returncode)

    def _drain(self, session: SessionProcess) -> None:
        """Log what an exited session left in its pipe."""
        if self._reporting.pop(session.report_fd, None) is None:
            return
        os.set_blocking(session.report_fd, False)  # a process it forked may hold the pipe
        with contextlib.suppress(BlockingIOError):
            while self._relay(session, os.read(session.report_fd, 65536)):
                pass

    def stop_all(self) -> None:
        """SIGTERM every session, wait for them, kill the ones that do not exit."""
        sessions = list(self._running.values())
        for s in sessions:
            with contextlib.suppress(ProcessLookupError):
                s.proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for s in sessions:
            try:
                s.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s: the session did not stop; killing it", s.name)
                s.proc.kill()
                s.proc.wait()
            self._drain(s)
            s.close()
        self._running.clear()
        self._reporting.clear()

    def close(self) -> None:
        """Stop every session and release the program. Idempotent."""
        self.stop_all()
        if self._program_fd >= 0:
            os.close(self._program_fd)
            self._program_fd = -1


def until_signal(stop: Callable[[], None], run: Callable[[], int]) -> int:
    """``run()``, with SIGINT and SIGTERM calling ``stop()`` meanwhile (main thread).
    Its status, or 128 + the signal's number when a signal stopped it (130 for Ctrl-C,
    143 for SIGTERM), as a shell reports a command a signal ended and as every
    ``amplink`` command exits (:mod:`amplink.app.signals`)."""
    came: list[int] = []

    def on_signal(sig: int, _frame: FrameType | None) -> None:
        came.append(sig)
        stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = run()
        return 128 + came[0] if came else status
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
