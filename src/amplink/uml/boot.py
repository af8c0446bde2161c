"""Boot a User-Mode Linux guest that runs one command against a vhost-user device.

The guest is an ordinary process tree on the host: the kernel binary built by
``tools/uml/build-kernel.sh``, with the host's ``/`` as its read-only root, so the
command runs the host's Python and amplink inside the guest.  Its first process is
:mod:`amplink.uml.guest_init`; what the command printed, its exit status and the
kernel log come back through a shared run folder.  Every boot is bounded: a guest that
does not power off within ``timeout`` is killed with its whole process group (a wedged
UML can ignore SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import amplink
from amplink import cache

VIRTIO_ID_RPMSG = 7
KERNEL_PROBLEMS = re.compile(
    r"\bBUG\b|\bOops\b|scheduling while atomic|Kernel panic|general protection fault"
)


def cache_dir() -> Path:
    """Where ``tools/uml/build-kernel.sh`` keeps kernels (``AMPLINK_UML_CACHE``)."""
    return cache.cache_dir("AMPLINK_UML_CACHE", "amplink-uml")


def find_kernel() -> Path | None:
    """The UML kernel to boot: ``AMPLINK_UML_KERNEL``, else the newest in the cache;
    None if there is none (build one with ``tools/uml/build-kernel.sh``)."""
    env = os.environ.get("AMPLINK_UML_KERNEL")
    if env:
        return Path(env) if os.access(env, os.X_OK) else None
    try:
        kernels = [p for p in cache_dir().glob("linux-*") if os.access(p, os.X_OK)]
    except OSError:
        return None
    return max(kernels, key=lambda p: p.stat().st_mtime, default=None)


@dataclass
class GuestRun:
    """What a boot gave: the command's exit status (None if it never finished), its
    output, the kernel log, the console (UML's own stdout), and whether the guest had
    to be killed."""

    status: int | None
    output: str
    kernel_log: str
    console: str
    timed_out: bool

    def kernel_problems(self) -> list[str]:
        """Kernel log lines that report a bug: BUG, Oops, scheduling while atomic..."""
        return [line for line in self.kernel_log.splitlines() if KERNEL_PROBLEMS.search(line)]

    def describe(self) -> str:
        """Everything, for a failure message."""
        return (
            f"status {self.status}{' (timed out)' if self.timed_out else ''}\n"
            f"--- output ---\n{self.output}\n--- kernel log ---\n{self.kernel_log}\n"
            f"--- console ---\n{self.console[-4000:]}"
        )


def boot(
    command: list[str],
    *,
    socket: str,
    kernel: Path | None = None,
    timeout: float = 120.0,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    mem: str = "256M",
) -> GuestRun:
    """Boot a guest whose rpmsg device is served on ``socket``, run ``command`` in it
    (``cwd``, with ``env`` added to a minimal environment), and power off."""
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
        timed_out = False
        with open(Path(run_dir, "console.txt"), "wb") as console:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "TMPDIR": run_dir,
                    "HOME": run_dir,
                },
            )
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        status_text = _read(run_dir, "status").strip()
        return GuestRun(
            status=int(status_text) if status_text.lstrip("-").isdigit() else None,
            output=_read(run_dir, "output.txt"),
            kernel_log=_read(run_dir, "kernel.log"),
            console=_read(run_dir, "console.txt"),
            timed_out=timed_out,
        )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@contextlib.contextmanager
def serving(
    firmware: str, socket: str, log: IO[str] | int = subprocess.DEVNULL
) -> Iterator[subprocess.Popen[str]]:
    """``amplink serve-linux FIRMWARE`` in a subprocess (its log, verbose, to ``log``)
    from when it listens on ``socket`` until the block ends: then SIGTERM, and a kill
    if it has not exited within 15 s.  Its exit status is the process's returncode."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "amplink.cli", "-v", "serve-linux", firmware, "--socket", socket],
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
