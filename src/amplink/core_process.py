"""What every core process amplink starts shares: its command line (what the host's
platform driver passes: memory and MMIO fds, interrupt lines, the loaded table, the MU
wiring), its CPU pinning, dying with its parent, and its crash note."""

from __future__ import annotations

import argparse
import os
import select
import threading

CRASH_NOTE_ENV = "AMPLINK_CRASH_NOTE_FD"  # the pipe a core process leaves its crash note in
CRASH_NOTE_MAX = 16384  # bytes of a crash note kept: less than a pipe holds, so it never blocks


def write_crash_note(text: str) -> bool:
    """Leave ``text`` (why this core process is about to fail: a traceback) for the host,
    which reads it when the process has exited and shows it with the crash.  False if
    the host gave no crash note (the caller then prints ``text`` itself)."""
    fd = os.environ.get(CRASH_NOTE_ENV)
    if fd is None:
        return False
    try:
        os.write(int(fd), text.encode(errors="replace")[-CRASH_NOTE_MAX:])
    except (OSError, ValueError):
        return False
    return True


def die_with_parent(parent: int, exit_code: int) -> None:
    """End this process (``exit_code``) when process ``parent`` ends, so that a host that
    crashes never leaves a core behind: a daemon thread waits on the parent's pidfd.

    Not ``PR_SET_PDEATHSIG``: that signal comes when the parent *thread* that started
    this process ends, and a host starts cores from short-lived threads too (crash
    recovery, a control-socket request), whose cores it would kill."""
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(exit_code)  # the parent is already gone

    def watch() -> None:
        select.select([pidfd], [], [])
        os._exit(exit_code)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def pin_to_cpu(cpu: int | None) -> str | None:
    """Run this process on CPU ``cpu`` only (None: leave it be); a one-line error
    message when the kernel refuses (``sched_setaffinity``: EINVAL for a CPU this
    process may not use), else None."""
    if cpu is None:
        return None
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        usable = ", ".join(map(str, sorted(os.sched_getaffinity(0))))
        return f"cannot run on CPU {cpu}: {exc.strerror} (CPUs usable here: {usable})"
    return None


def core_arguments(prog: str, mu_irq: int) -> argparse.ArgumentParser:
    """The arguments every core process gets from its platform driver."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--name", required=True)
    p.add_argument("--firmware", required=True, help="the firmware's name (for messages)")
    p.add_argument("--boot-addr", type=lambda s: int(s, 0), required=True)
    p.add_argument("--region-fd", type=int, required=True)
    p.add_argument("--mmio-fd", type=int, required=True)
    p.add_argument("--irq-fd", type=int, required=True)
    p.add_argument("--peer-irq-fd", type=int, required=True)
    p.add_argument("--table-da", type=lambda s: int(s, 0), required=True)
    p.add_argument("--table-len", type=int, required=True)
    p.add_argument("--cpu", type=int, default=None)
    p.add_argument("--no-spin", action="store_true", help="never busy-poll (the host decides)")
    p.add_argument("--boot-timeout", type=float, default=10.0)
    p.add_argument("--mu", default="mu", help="the MU's name")
    p.add_argument("--mu-tx", type=int, default=0, help="MU data channel this core kicks on")
    p.add_argument("--mu-rx", type=int, default=0, help="MU data channel the host kicks on")
    p.add_argument("--mu-irq", type=int, default=mu_irq, help="this core's MU interrupt line")
    return p
