"""The thread that watches what can interrupt an emulated core.

It waits in ``poll()`` on the core's interrupt lines (the eventfds device models pulse
when their output may have become active), on the process's signal wake-up
descriptor (``signal.set_wakeup_fd``: SIGUSR1 is the host's debug halt request, before
a reset or a dump; SIGTERM and SIGINT stop the core), and until SysTick's next wrap
(a write to SysTick's registers wakes it to take the new deadline).
A line's pulse only says "look": the level sources are sampled and what is active
becomes pending in the NVIC.  Whatever
changed, it asks for the CPU's attention (:meth:`CortexM.attention`): the core looks
at it after its current slice, or at once if it waits in WFI.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Sequence

from amplink.emu.cpu import CortexM
from amplink.irq.line import drain


class Waker:
    """Watches ``line_fds`` (interrupt lines) and ``signal_fd`` for ``cpu``."""

    def __init__(self, cpu: CortexM, line_fds: Sequence[int], signal_fd: int = -1) -> None:
        self.cpu = cpu
        self.line_fds = tuple(line_fds)
        self.signal_fd = signal_fd
        cpu.line_fds = self.line_fds  # a core in WFI wakes on them itself: one hop less
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._timer_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        cpu.scs.timer_changed = lambda: os.eventfd_write(self._timer_fd, 1)  # new deadline
        self._thread = threading.Thread(target=self._run, name="emu-waker", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and release its descriptor. Idempotent."""
        if self._stop_fd < 0:
            return
        os.eventfd_write(self._stop_fd, 1)
        if self._thread.is_alive():
            self._thread.join(5)
        self.cpu.scs.timer_changed = lambda: None
        os.close(self._timer_fd)
        os.close(self._stop_fd)
        self._stop_fd = -1

    def _run(self) -> None:
        poller = select.poll()
        for fd in (*self.line_fds, self.signal_fd, self._stop_fd, self._timer_fd):
            if fd >= 0:
                poller.register(fd, select.POLLIN)
        scs = self.cpu.scs
        while True:
            deadline = scs.systick_deadline()
            timeout = None
            if deadline is not None:
                timeout = max(0.0, (deadline - time.monotonic_ns()) / 1e6)
            ready = {fd for fd, _ in poller.poll(timeout)}
            if self._stop_fd in ready:
                return
            if self._timer_fd in ready:
                drain(self._timer_fd)  # SysTick was reprogrammed: the loop takes its deadline
            wanted = False
            for fd in self.line_fds:
                if fd in ready:
                    drain(fd)
                    wanted |= scs.sample_lines()
            if self.signal_fd in ready:
                for signo in _drain_bytes(self.signal_fd):
                    if signo == signal.SIGUSR1:
                        self.cpu.halt_requested.set()
                    elif signo in (signal.SIGTERM, signal.SIGINT):
                        self.cpu.stop_requested.set()
                wanted = True
            wanted |= scs.systick_expire()
            if wanted:
                self.cpu.attention()


def _drain_bytes(fd: int) -> bytes:
    """Everything in a non-blocking pipe (signal numbers, one byte each)."""
    out = b""
    try:
        while chunk := os.read(fd, 64):
            out += chunk
    except BlockingIOError:
        pass
    return out
