"""Keeping a shared-memory file that a peer may shrink from killing amplink with SIGBUS.

A peer that maps the same file can ``ftruncate`` it smaller at any moment; the next
load or store amplink makes beyond the new end raises SIGBUS, whose default action
kills the process.  A memfd can be sealed against that (``F_SEAL_SHRINK``), but the
files of POSIX shared memory (``shm_open``, ``/dev/shm``) cannot: the kernel creates
every tmpfs file with ``F_SEAL_SEAL`` set, and only ``memfd_create`` can clear it.

So amplink keeps the file at its size instead:

* a **guard process** holds the file open and waits on inotify for a change of its size
  (``ftruncate`` raises ``IN_MODIFY``); when the file became smaller it grows it back at
  once (the lost pages come back zero-filled) and reports the size it found;
* a **SIGBUS handler** in amplink makes the fault survivable: the kernel re-runs the
  faulting load or store after the handler returns, and it faults again until the
  guard has grown the file back, then completes (reading zeros).  The guard is a
  process, not a thread, because the faulting thread holds the GIL while it faults;
* the transport polls :attr:`ShmGuard.report_fd` and drops the link of a peer that
  shrank the file: what the rings held is gone, and a peer that does this is hostile.

A SIGBUS that no guard explains (no guard reported a restore within
:data:`FOREIGN_WAIT` seconds) is not ours: the handler dumps the Python stacks and
lets the default action kill the process, as without it.  Signal handlers can only be
installed from the main thread: a guard started elsewhere before any in the main
thread leaves the process unprotected, and says so in the log.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)

FOREIGN_WAIT = 0.5  # s: how long a SIGBUS waits for a guard to claim it
RECENT = 5.0  # s: a restore this recent explains a SIGBUS
_guards: list[ShmGuard] = []
_installed = False
_previous: object = None
survived = 0  # SIGBUS faults that a guard explained (the access completed after it)


class ShmGuard:
    """Keeps the file open at ``fd`` at least ``size`` bytes long while it exists.

    ``report_fd`` becomes readable when the guard grew the file back;
    :meth:`collect` then says to which sizes a peer had shrunk it."""

    def __init__(self, fd: int, size: int, name: str) -> None:
        self.name = name
        self.size = size
        self.alive = True  # False once the guard process is gone (see collect())
        self.last_restore = 0.0
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "amplink.transport.shm_guard", str(fd), str(size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,  # raw pipes: readline() below reads exactly one line
            pass_fds=(fd,),
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # the guard says when its watch is in place
        if line != b"watching\n":
            self.close()
            raise OSError(f"the shared-memory guard of {name} did not start ({line!r})")
        self.pid = self._proc.pid
        self.report_fd = self._proc.stdout.fileno()
        os.set_blocking(self.report_fd, False)
        _guards.append(self)
        _install_handler()

    def collect(self) -> list[int]:
        """The sizes a peer had shrunk the file to since the last call (each one was
        restored); empty if none, or once the guard is gone (:attr:`alive`).  Never
        blocks."""
        try:
            data = os.read(self.report_fd, 4096)
        except BlockingIOError:
            return []
        if not data:
            if self.alive:
                self.alive = False
                log.error(
                    "the shared-memory guard of %s ended: a peer that shrinks it can now "
                    "kill this process",
                    self.name,
                )
            return []
        sizes = [int(line) for line in data.split()]
        if sizes:
            self.last_restore = time.monotonic()
        return sizes

    def close(self) -> None:
        """Stop the guard process. Idempotent."""
        if self in _guards:
            _guards.remove(self)
        proc = self._proc
        if proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()  # the guard exits when its stdin ends
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        _restore_handler()


def _claimed(deadline: float) -> bool:
    """Whether a guard explains a SIGBUS: it restored its file recently, or reports a
    restore before ``deadline``.  Polls in short slices: the transport's thread may read
    the report meanwhile (it then records :attr:`ShmGuard.last_restore`)."""
    while True:
        now = time.monotonic()
        guards = [g for g in _guards if g.alive]
        if any(now - g.last_restore < RECENT for g in guards):
            return True
        if not guards or now >= deadline:
            return False
        poller = select.poll()
        for g in guards:
            poller.register(g.report_fd, select.POLLIN)
        if any(ev & select.POLLIN for _fd, ev in poller.poll(10)):
            return True  # a report is pending: the transport's thread reads it


def _on_sigbus(_signum: int, _frame: FrameType | None) -> None:
    global survived
    if _claimed(time.monotonic() + FOREIGN_WAIT):
        survived += 1
        return
    faulthandler.dump_traceback(all_threads=True)
    signal.signal(signal.SIGBUS, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGBUS)


def _install_handler() -> None:
    global _installed, _previous
    if _installed:
        return
    if threading.current_thread() is not threading.main_thread():
        log.warning(
            "shared-memory guard started outside the main thread: no SIGBUS handler, so a "
            "peer that shrinks the shared memory can still kill this process (start the "
            "first OpenAMP link from the main thread)"
        )
        return
    _previous = signal.signal(signal.SIGBUS, _on_sigbus)
    _installed = True


def _restore_handler() -> None:
    """Put the previous SIGBUS handler back once no guard is left (main thread only)."""
    global _installed
    if not _installed or _guards or threading.current_thread() is not threading.main_thread():
        return
    previous = _previous if _previous is not None else signal.SIG_DFL
    signal.signal(signal.SIGBUS, previous)  # type: ignore[arg-type]
    _installed = False
    if _previous is None and faulthandler.is_enabled():
        faulthandler.disable()  # faulthandler's handler was C-level: install it again
        faulthandler.enable(all_threads=True)


def _guard(fd: int, size: int) -> int:
    """The guard process: grow the file back whenever it became smaller than ``size``;
    one line with the size found per restore on stdout; exit when stdin ends."""
    from inotify_simple import INotify, flags  # type: ignore[import-untyped]  # noqa: PLC0415

    with INotify() as ino:
        ino.add_watch(f"/proc/self/fd/{fd}", flags.MODIFY | flags.ATTRIB)
        out = sys.stdout.buffer
        out.write(b"watching\n")
        out.flush()
        poller = select.poll()
        poller.register(0, select.POLLIN)
        poller.register(ino.fileno(), select.POLLIN)
        while True:
            ready = {fd_ for fd_, _ev in poller.poll()}
            if 0 in ready and not os.read(0, 64):
                return 0
            if ino.fileno() in ready:
                ino.read(timeout=0)
                found = os.fstat(fd).st_size
                if found < size:
                    os.ftruncate(fd, size)
                    out.write(b"%d\n" % found)
                    out.flush()


if __name__ == "__main__":
    sys.exit(_guard(int(sys.argv[1]), int(sys.argv[2])))
