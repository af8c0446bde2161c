"""Boot a User-Mode Linux guest that runs one command against a vhost-user device.

The guest is an ordinary process tree on the host: the kernel binary built by
``tools/uml/build-kernel.sh``, with the host's ``/`` as its read-only root, so the
command runs the host's Python and amplink inside the guest.  Its first process is
:mod:`amplink.uml.guest_init`; what the command printed, its exit status and the
kernel log come back through a shared run folder.  Every boot is bounded: a guest that
does not power off within ``timeout`` is killed with its whole process group (a wedged
UML can ignore SIGTERM), and so is one whose console reports a kernel crash (a panic,
a BUG, an Oops), a few seconds after it, so a broken guest fails fast and in one line
(:meth:`GuestRun.failure`) naming the console log it left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import amplink
from amplink import cache
from amplink.virtio.constants import VIRTIO_ID_RPMSG

KERNEL_PROBLEMS = re.compile(
    r"\bBUG\b|\bOops\b|scheduling while atomic|Kernel panic|general protection fault"
)
# Console lines after which a guest is not expected to finish: a panic, a kernel bug
# (it may hang right after), or the kernel's refusal to run on this host.
CRASH = re.compile(
    r"Kernel panic - not syncing: .*|\bBUG: .*|\bOops\b.*|general protection fault.*"
    r"|amplink-uml: .*"
)
# What a panic's own line does not say: the error that led to it.
CAUSE = re.compile(r".*failed, errno = \d+.*|\bBUG: .*|\bOops\b.*")
CRASH_GRACE = 5.0  # seconds a crashed guest gets to print the rest and exit


def cache_dir() -> Path:
    """Where ``tools/uml/build-kernel.sh`` keeps kernels (``AMPLINK_UML_CACHE``)."""
    return cache.cache_dir("AMPLINK_UML_CACHE", "amplink-uml")


def find_kernel() -> Path | None:
    """The UML kernel to boot: ``AMPLINK_UML_KERNEL``, else the cache's ``current``
    one (the kernel of the recipe ``tools/uml/build-kernel.sh`` last ran), else the
    newest in the cache; None if there is none (build one with that script)."""
    env = os.environ.get("AMPLINK_UML_KERNEL")
    if env:
        return Path(env) if os.access(env, os.X_OK) else None
    current = cache_dir() / "current"
    if os.access(current, os.X_OK):
        return current.resolve()
    try:
        kernels = [p for p in cache_dir().glob("linux-*") if os.access(p, os.X_OK)]
    except OSError:
        return None
    return max(kernels, key=lambda p: p.stat().st_mtime, default=None)


@dataclass
class GuestRun:
    """What a boot gave: the command's exit status (None if it never finished), its
    output, the kernel log, the console (UML's own stdout and stderr), whether the
    guest had to be killed after ``timeout`` s, the console line that reported a
    crash (None if none did) with the error line before it, and where the console
    log was kept (None when it was not: the guest ran cleanly and no ``log_dir`` was
    given)."""

    status: int | None
    output: str
    kernel_log: str
    console: str
    timed_out: bool
    timeout: float
    crash: str | None = None
    cause: str | None = None
    console_log: Path | None = None

    def kernel_problems(self) -> list[str]:
        """Kernel log lines that report a bug: BUG, Oops, scheduling while atomic..."""
        text = self.kernel_log or self.console
        return [line for line in text.splitlines() if KERNEL_PROBLEMS.search(line)]

    def failure(self) -> str | None:
        """One line saying why the guest did not run its command to the end (a panic
        or other kernel crash, a timeout, an init that never reported), with the
        console log's path; None if it did."""
        where = f"console log: {self.console_log}"
        if self.crash is not None:
            if self.crash.startswith("amplink-uml:"):
                return f"the guest kernel did not start: {self.crash} ({where})"
            what = "panicked" if "panic" in self.crash else "crashed"
            cause = f" after {self.cause!r}" if self.cause and self.cause != self.crash else ""
            return f"the guest kernel {what}: {self.crash}{cause} ({where})"
        if self.timed_out:
            return f"the guest did not power off within {self.timeout:g} s ({where})"
        if self.status is None:
            return f"the guest powered off without running its command ({where})"
        return None

    def describe(self) -> str:
        """Everything, for a failure message."""
        return (
            f"{self.failure() or f'status {self.status}'}\n"
            f"--- output ---\n{self.output}\n--- kernel log ---\n{self.kernel_log}\n"
            f"--- console ---\n{self.console[-4000:]}"
        )


class _Console:
    """UML's output as it comes: saved to a file, scanned for a crash report."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._partial = b""
        self.crash: str | None = None
        self.cause: str | None = None

    def read(self) -> bool:
        """Take what is there; False at the end of the output."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            self._scan(self._partial + b"\n")
            self._partial = b""
            return False
        self.file.write(data)
        self._scan(self._partial + data)
        return True

    def drain(self, timeout: float) -> None:
        """Read to the end of the output, waiting at most ``timeout`` s for it."""
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while (left := deadline - time.monotonic()) > 0:
            if poller.poll(left * 1000) and not self.read():
                return

    def _scan(self, data: bytes) -> None:
        *complete, self._partial = data.split(b"\n")
        for raw in complete:
            line = raw.decode(errors="replace").rstrip()
            if line and self.crash is None:
                if (m := CRASH.search(line)) is not None:
                    self.crash = m.group(0)
                if self.cause is None and (c := CAUSE.search(line)) is not None:
                    self.cause = c.group(0)

    def close(self) -> None:
        self.file.close()


def boot(
    command: list[str],
    *,
    socket: str,
    kernel: Path | None = None,
    timeout: float = 120.0,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    mem: str = "256M",
    log_dir: Path | None = None,
) -> GuestRun:
    """Boot a guest whose rpmsg device is served on ``socket``, run ``command`` in it
    (``cwd``, with ``env`` added to a minimal environment), and power off.  The
    console log goes to ``log_dir/console.log`` if given; otherwise it is kept (in
    the temporary folder) only when the guest failed."""
    kernel = kernel or find_kernel()
    if kernel is None:
        raise FileNotFoundError(
            f"no UML kernel in {cache_dir()}: build one with tools/uml/build-kernel.sh"
        )
    run_dir = tempfile.mkdtemp(prefix="amplink-guest-")
    try:
        package_root = str(Path(amplink.__file__).resolve().parents[1])
        guest_env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": package_root,
            "PYTHONDONTWRITEBYTECODE": "1",
            **(env or {}),
        }
        spec = {"argv": command, "cwd": cwd or os.getcwd(), "env": guest_env}
        Path(run_dir, "command.json").write_text(json.dumps(spec))
        argv = [
            str(kernel),
            f"mem={mem}",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "ro",
            f"init={sys.executable}",
            f"virtio_uml.device={socket}:{VIRTIO_ID_RPMSG}",
            "con0=null,fd:1",
            "con=null",
            "ssl=null",
            f"AMPLINK_GUEST_DIR={run_dir}",
            f"PYTHONPATH={package_root}",
            "--",
            "-m",
            "amplink.uml.guest_init",
        ]
        console_path = Path(run_dir, "console.log")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "TMPDIR": run_dir,
                "HOME": run_dir,
            },
        )
        assert proc.stdout is not None
        console = _Console(proc.stdout.fileno(), console_path)
        try:
            timed_out = _watch(proc, console, timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            console.drain(2.0)  # what the killed group had written
            console.close()
            proc.stdout.close()
        status_text = _read(run_dir, "status").strip()
        run = GuestRun(
            status=int(status_text) if status_text.lstrip("-").isdigit() else None,
            output=_read(run_dir, "output.txt"),
            kernel_log=_read(run_dir, "kernel.log"),
            console=console_path.read_text(errors="replace"),
            timed_out=timed_out,
            timeout=timeout,
            crash=console.crash,
            cause=console.cause,
        )
        run.console_log = _keep_console(console_path, log_dir, failed=run.failure() is not None)
        return run
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _watch(proc: subprocess.Popen[bytes], console: _Console, timeout: float) -> bool:
    """Read the console until the guest exits; True if it had to be stopped after
    ``timeout``.  A guest that reported a crash gets ``CRASH_GRACE`` s more."""
    os.set_blocking(console.fd, False)
    pidfd = os.pidfd_open(proc.pid)
    try:
        poller = select.poll()
        poller.register(console.fd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout
        open_console = True
        while True:
            if console.crash is not None:
                deadline = min(deadline, time.monotonic() + CRASH_GRACE)
            left = deadline - time.monotonic()
            if left <= 0:
                return console.crash is None
            for fd, _ev in poller.poll(left * 1000):
                if fd == pidfd:
                    return False
                if open_console and not console.read():
                    poller.unregister(console.fd)
                    open_console = False
    finally:
        os.close(pidfd)


def _keep_console(path: Path, log_dir: Path | None, *, failed: bool) -> Path | None:
    """Move the console log out of the run folder: to ``log_dir``, or, for a failed
    guest, to a file of its own in the temporary folder."""
    if log_dir is not None:
        kept = Path(log_dir, "console.log")
    elif failed:
        fd, name = tempfile.mkstemp(prefix="amplink-guest-", suffix=".log")
        os.close(fd)
        kept = Path(name)
    else:
        return None
    shutil.move(path, kept)
    return kept


@contextlib.contextmanager
def serving(
    firmware: str, socket: str, log: IO[str] | int = subprocess.DEVNULL, *, spin: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """``amplink serve-linux FIRMWARE`` (``--spin`` if ``spin``) in a subprocess (its
    log, verbose, to ``log``) from when it listens on ``socket`` until the block ends:
    then SIGTERM, and a kill if it has not exited within 15 s.  Its exit status is the
    process's returncode (143 when that SIGTERM ended it)."""
    argv = [sys.executable, "-m", "amplink.app.cli", "-v", "serve-linux", firmware]
    proc = subprocess.Popen(
        [*argv, "--socket", socket, "--spin" if spin else "--no-spin"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()  # blocks until it listens, or dies
        if not line.startswith("serving"):
            raise RuntimeError(f"amplink serve-linux {firmware} did not start: {line!r}")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _read(folder: str, name: str) -> str:
    try:
        return Path(folder, name).read_text(errors="replace")
    except FileNotFoundError:
        return ""
