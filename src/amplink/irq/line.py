"""Interrupt lines: the wire from a device to an interrupt controller.

A line is an eventfd within a process, and a pipe when it crosses processes
(:func:`shared_line_fds`: each process holds its own open file of it, so that neither
can make the other's writes block).  The device side (:class:`IrqWire`) pulses it when
its interrupt output may have become active; the controller side (:class:`IrqLine`)
waits on it.  Pulses coalesce, like edges arriving while the CPU is busy.

What a pulse means depends on the trigger type:

* **edge**: the pulse *is* the interrupt.  One that arrives while the line is masked
  or disabled is remembered and replayed when it is unmasked (Linux's "pending").
* **level**: the pulse only says "look".  The line is active while one of its
  *sources* says so (a device model's output: status bits AND enable bits in its
  registers), and is taken again and again for as long as it stays active and
  unmasked.  That is what makes an interrupt storm out of a device nobody clears.

A line can also be fed by a file descriptor that simply becomes readable once (a
process's pidfd: a watchdog-style "the core died" input); such a line is edge-triggered.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from amplink.irq.flags import IRQF_TRIGGER_HIGH, is_edge
from amplink.irq.spurious import SpuriousState

if TYPE_CHECKING:
    from amplink.irq.domain import IrqAction

Source = Callable[[], bool]


_PULSE = (1).to_bytes(8, "little")  # what eventfd_write(fd, 1) writes: both kinds take it
_SINK = [bytearray(1 << 16)]  # what a drain reads into (discarded): a whole pipe at once
_ALWAYS: Source = True.__bool__  # the level of an edge line: active whenever it is pulsed


class IrqWire:
    """The device end of a line: a descriptor the device pulses (any process)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def pulse(self) -> None:  # on the message path: no context manager
        """Signal the line (one 8-byte write).  Never blocks on a non-blocking
        descriptor: a full line already has a pulse pending (pulses coalesce), and one
        nobody reads any more (its owner is gone) has nobody to tell."""
        try:
            os.write(self.fd, _PULSE)
        except (BlockingIOError, BrokenPipeError):
            return


def drain(fd: int) -> bool:
    """Consume what is pending on a line (an eventfd's count, or up to 64 KiB of a
    pipe's pulses); True if there was any."""
    try:
        os.readv(fd, _SINK)
    except BlockingIOError:
        return False
    return True


def new_line_fd() -> int:
    """An eventfd suitable as a line within this process (non-blocking, close-on-exec)."""
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


def shared_line_fds() -> tuple[int, int]:
    """A line that another process pulses: ``(owner, pulser)``, two open files of one
    pipe, both non-blocking and close-on-exec.  The owner's reads and writes (it waits
    on the line and pulses it itself); the pulser's only writes.

    Each party holds only its own open file, so neither can change the other's file
    status flags (they belong to the open file, not to the descriptor): a process that
    clears ``O_NONBLOCK`` on its end and fills the pipe blocks only itself, and the
    other side's pulses still never block.  An eventfd cannot give this (it has one
    open file, which every holder shares)."""
    r, pulser = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        owner = os.open(f"/proc/self/fd/{r}", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except BaseException:
        os.close(pulser)
        raise
    finally:
        os.close(r)
    return owner, pulser


class IrqLine:
    """One interrupt input of an :class:`~amplink.irq.domain.IrqDomain`.

    ``depth`` counts :meth:`~amplink.irq.domain.IrqDomain.disable_irq` calls; ``masked``
    is the controller-level mask that ONESHOT flows use.  The line is delivered only
    while neither holds it.
    """

    def __init__(
        self,
        irq: int,
        fd: int,
        *,
        trigger: int = IRQF_TRIGGER_HIGH,
        owns_fd: bool = True,
        counter: bool = True,
    ) -> None:
        self.irq = irq
        self.fd = fd
        self.sources: list[Source] = []
        self.active: Source = _ALWAYS  # the level of the line (see _choose_active)
        self.trigger = trigger  # also sets edge and active
        self.owns_fd = owns_fd
        self.counter = counter  # an eventfd whose count must be read to re-arm it
        self.actions: tuple[IrqAction, ...] = ()
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.waiters = 0  # threads in wait_for (whoever changes the state notifies them)
        self.depth = 0
        self.masked = False
        self.replay = False
        self.in_progress = False
        self.threads_oneshot = 0
        self.threads_active = 0
        self.threads_handled = 0
        self.spurious = SpuriousState()
        self.spurious_disabled = False
        self.count = 0  # hard interrupts taken (like a /proc/interrupts column)
        self.taken = 0  # of them, taken by a waiting thread (take_while_waiting)

    def __repr__(self) -> str:
        names = ",".join(a.name for a in self.actions)
        return f"<IrqLine {self.irq} {'edge' if self.edge else 'level'} [{names}]>"

    @property
    def trigger(self) -> int:
        """The trigger type (``IRQF_TRIGGER_*``); :attr:`edge` follows it."""
        return self._trigger

    @trigger.setter
    def trigger(self, value: int) -> None:
        self._trigger = value
        self.edge = is_edge(value)  # True for an edge-triggered line
        self._choose_active()

    @property
    def wire(self) -> IrqWire:
        """The device end of this line, for a device model in this process."""
        return IrqWire(self.fd)

    def add_source(self, source: Source) -> None:
        """Attach a device output; a level line is active while any source is."""
        self.sources.append(source)
        self._choose_active()

    def _choose_active(self) -> None:
        """Make :attr:`active` (the level of the line; edge lines: always considered
        active when pulsed) the cheapest callable that says it: a level line with one
        source is that source's own output.  The controller asks twice per interrupt."""
        if self.edge:
            self.active = _ALWAYS
        elif len(self.sources) == 1:
            self.active = self.sources[0]
        else:
            self.active = self._any_source

    def _any_source(self) -> bool:
        for src in self.sources:  # noqa: SIM110 (no generator on the hot path)
            if src():
                return True
        return False

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait (:attr:`lock` held) until ``predicate()`` holds; False on timeout."""
        self.waiters += 1
        try:
            return self.cond.wait_for(predicate, timeout)
        finally:
            self.waiters -= 1

    @property
    def enabled(self) -> bool:
        """False while the line is disabled (``disable_irq`` depth above zero)."""
        return self.depth == 0 and not self.masked

    def close(self) -> None:
        """Close the line's eventfd if the line owns it. Idempotent."""
        if self.owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1
