"""The API a firmware program sees, and its event loop.

The loop is what OpenAMP firmware does in ``platform_poll()``, made polite: drain the
receive ring, then spin on it for an adaptive while with host notifications suppressed,
and only then sleep until an interrupt says the host kicked (the core's mailbox ISR
only sets a wake-up eventfd, which is all an ISR should do).  Endpoint callbacks
run in this loop, so a firmware program is single-threaded unless it starts threads
itself.

The loop also does the firmware's part of the platform protocol (see
:mod:`amplink.wire.protocol`): it kicks the watchdog, and when the host asks for
a graceful shutdown it runs the firmware's shutdown hooks, disables its mailbox
interrupt, reports WFI, acknowledges, and waits to be reset.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from amplink.errors import RpmsgError
from amplink.hw.core_ctrl import STATUS_BOOTED, STATUS_HALTED, STATUS_WFI, CoreControl
from amplink.irq.line import drain
from amplink.rpmsg.core import RPMSG_ADDR_ANY, Endpoint, EndpointCallback, announce
from amplink.rpmsg.polled import PolledLink
from amplink.wait import TakeNotifications
from amplink.wire.protocol import RP_MBOX_CRASH, RP_MBOX_SHUTDOWN_ACK
from amplink.wire.trace import TraceWriter

log = logging.getLogger("amplink.remote.firmware")


Relinked = tuple[PolledLink, Sequence[int]]


@dataclass
class FirmwarePlatform:
    """The platform as a firmware sees it: what its core reaches besides rpmsg.

    ``relink`` brings rpmsg up again after the host reset the vdev (or a vhost-user
    front end went away): it waits for the new link and returns it with the fds that
    signal its notifications (None if the core is stopped meanwhile).  The rest is a
    remoteproc platform's, and absent when no remoteproc host drives the core (a
    device served over vhost-user): the control block with its status bits, a 32-bit
    word channel to the host (the kick channel), a way to disable the mailbox receive
    interrupt, the host's shutdown request, the trace buffer, and the watchdog period
    the firmware promised (0: none).  ``take_notifications``: how the core's event loop,
    when it has nothing to do, takes the host's kicks itself (its mailbox interrupt,
    handled in the loop's own thread, as a core's WFI wakes into its ISR) instead of
    being woken by the thread that took them (None: it sleeps on its wake fds)."""

    relink: Callable[[], Relinked | None]
    control: CoreControl | None = None
    send_word: Callable[[int], None] | None = None
    disable_rx: Callable[[], None] | None = None
    shutdown_requested: threading.Event = field(default_factory=threading.Event)
    trace: TraceWriter | None = None
    watchdog_ms: int = 0
    take_notifications: TakeNotifications | None = None

    def set_status(self, set_bits: int = 0, clear_bits: int = 0) -> None:
        """Update the control block's status bits, if there is one."""
        if self.control is not None:
            self.control.set_status(set_bits, clear_bits)


class _TraceHandler(logging.Handler):
    def __init__(self, trace: TraceWriter) -> None:
        super().__init__()
        self.trace = trace

    def emit(self, record: logging.LogRecord) -> None:
        self.trace.write(f"{record.levelname} {record.getMessage()}\n")


class Core:
    """A remote core as its firmware sees it."""

    def __init__(
        self,
        name: str,
        link: PolledLink,
        wake_fds: Sequence[int],
        hw: FirmwarePlatform,
        *,
        mailbox: str | None = None,
    ) -> None:
        """``wake_fds`` are what a host notification makes readable: the eventfd the
        core's mailbox ISR writes, or a vhost-user front end's kick eventfds;
        ``mailbox`` names the core's mailbox controller, whose channels other than the
        kick channels (index 0 unless the board wires others) firmware may request
        for its own use."""
        self.name = name
        self.mailbox = mailbox
        self.link = link
        self.hw = hw
        self.log = log
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # A drain that stopped on its budget left messages (PolledLink.rx_again): the
        # loop looks again, whichever thread drained.
        self._again_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._again = False
        link.rx_again = self._look_again
        self._stopping = False
        self._shutdown_hooks: list[Callable[[], None]] = []
        self._announced: dict[int, tuple[str, EndpointCallback | None]] = {}
        self._poller = select.poll()
        self._poller.register(self._stop_fd, select.POLLIN)
        self._poller.register(self._again_fd, select.POLLIN)
        self._wake_fds: Sequence[int] = ()
        self._wait_fds: tuple[int, ...] = ()  # what ends a sleep: a stop, a wake
        self._watch(wake_fds)
        self._trace_handler: logging.Handler | None = None
        if hw.trace is not None:
            self._trace_handler = _TraceHandler(hw.trace)
            log.addHandler(self._trace_handler)
        hw.set_status(STATUS_BOOTED, STATUS_WFI | STATUS_HALTED)

    def _watch(self, wake_fds: Sequence[int]) -> None:
        for fd in self._wake_fds:
            self._poller.unregister(fd)
        for fd in wake_fds:
            self._poller.register(fd, select.POLLIN)
        self._wake_fds = wake_fds
        self._wait_fds = (self._stop_fd, self._again_fd, *wake_fds)

    def _drain_wakes(self) -> None:
        if self._again:  # (a system call less per wake when no drain asked)
            self._again = False
            drain(self._again_fd)
        for fd in self._wake_fds:
            drain(fd)

    def _look_again(self) -> None:
        if self._again_fd >= 0:  # (none after close())
            os.eventfd_write(self._again_fd, 1)
            self._again = True  # after the write: a drain that misses it drains next time

    @property
    def mtu(self) -> int:
        """Largest payload of one message (496 with Linux's 512-byte buffers)."""
        return self.link.mtu

    def create_endpoint(
        self,
        name: str | None = None,
        callback: EndpointCallback | None = None,
        *,
        addr: int = RPMSG_ADDR_ANY,
        dst: int = RPMSG_ADDR_ANY,
    ) -> Endpoint:
        """Bind an endpoint; a named one is announced to the host (name-service create).

        Until it knows a destination, the endpoint adopts the source address of the
        first message it receives (OpenAMP behaviour), so ``ept.send()`` replies to the
        host endpoint that spoke first.
        """
        ept = self.link.endpoints.create(callback, addr, name=name or "", dst=dst, learn_dst=True)
        if name and dst == RPMSG_ADDR_ANY:
            announce(self.link, name, ept.addr, destroy=False)
            self._announced[ept.addr] = (name, callback)
        return ept

    def destroy_endpoint(self, ept: Endpoint) -> None:
        """Withdraw a named endpoint's announcement and unbind it."""
        if ept.name and self.link.failure is None:
            announce(self.link, ept.name, ept.addr, destroy=True)
        self._announced.pop(ept.addr, None)
        ept.destroy()

    def on_announcement(self, callback: Callable[[str, int, bool], None]) -> None:
        """Call ``callback(name, addr, created)`` when the host creates or withdraws a
        channel: a name-service message over virtio (``addr``: the host endpoint), a
        channel the host opens or closes over GLINK (``addr``: ``RPMSG_ADDR_ANY``).
        Call it before :meth:`run`."""
        self.link.watch_channels(callback)

    def trace(self, text: str) -> None:
        """Append ``text`` to the trace buffer (the host reads it as ``trace0``)."""
        if self.hw.trace is not None:
            self.hw.trace.write(text)

    def on_shutdown(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` when the host asks for a graceful shutdown, before the ACK."""
        self._shutdown_hooks.append(hook)

    def kick_watchdog(self) -> None:
        """Tell the host's watchdog this core is alive (the loop does it by itself)."""
        if self.hw.control is not None:
            self.hw.control.heartbeat()

    def report_crash(self, reason: str) -> None:
        """A fatal error: tell the host (``RP_MBOX_CRASH``), halt, and wait for reset."""
        log.error("fatal error, halting: %s", reason)
        self.hw.set_status(STATUS_HALTED)
        if self.hw.send_word is not None:
            self.hw.send_word(RP_MBOX_CRASH)
        self._wait_for_reset()

    def stop(self) -> None:
        """Make :meth:`run` return (safe from signal handlers and other threads)."""
        self._stopping = True
        if self._stop_fd >= 0:  # a stop after close() has nothing to wake
            os.eventfd_write(self._stop_fd, 1)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    def run(self) -> None:
        """Serve messages until :meth:`stop` is called, the link fails, or the host
        shuts the core down (then this waits for the reset and does not return)."""
        link = self.link
        spin = link.spin
        spin.peer = os.getppid  # the host started us: its main thread answers
        hw = self.hw
        timeout_ms = hw.watchdog_ms // 2 if hw.watchdog_ms else -1
        timeout = timeout_ms / 1000 if timeout_ms >= 0 else None
        take = hw.take_notifications
        shutdown_requested = hw.shutdown_requested.is_set
        # (the control block is the platform's for the core's life: bound once)
        set_status = hw.control.set_status if hw.control is not None else None
        polling = False  # host notifications suppressed: we look at the ring ourselves
        spun = False  # the last spin dispatched what came: no drain needed before the next
        while not self._stopping:  # once per message while messages keep coming
            if shutdown_requested():
                self._graceful_shutdown()
                return
            if link.peer_reset():  # the host reset the vdev (it detached): before the
                relinked = self._relink()  # rings are read, a reset ring looks broken
                if relinked is None:
                    return
                link, spin = relinked, relinked.spin
                spin.peer = os.getppid
                polling = spun = False
                continue
            if link.failure is not None:
                return
            if timeout_ms >= 0:
                self.kick_watchdog()
            if not spun:
                link.poll_rx()
                if link.failure is not None:
                    continue  # the drain found the rings broken: ended above, not slept on
            if spin.enabled:  # (never spinning: the host's notifications stay on)
                if not polling:
                    link.suppress_rx()
                    polling = True
                # A message is dispatched inside the spin, once the host's reset is
                # ruled out (as above: before the rings are read); then the checks
                # above run again, and the spin, with no drain between.
                spun = link.spin_rx(link.peer_reset)
                if spun:
                    continue
                polling = False
                if link.unsuppress_rx():
                    continue
            if set_status is not None:
                set_status(STATUS_WFI)
            if take is None or take(self._wait_fds, timeout, link.rx_pending) is None:
                self._poller.poll(timeout_ms)
            if set_status is not None:
                set_status(0, STATUS_WFI)
            self._drain_wakes()

    def _relink(self) -> PolledLink | None:
        """Wait for a host to bring the vdev up again, then serve the same named
        endpoints, at the same addresses, on the new link and announce them."""
        self.link.fail(RpmsgError(errno.ESHUTDOWN, "the host reset the rpmsg vdev"))
        log.info("the host reset the rpmsg vdev; waiting for it to come back")
        relinked = self.hw.relink()
        if relinked is None:
            return None
        link, wake_fds = relinked
        self.link = link
        link.rx_again = self._look_again
        self._watch(wake_fds)
        for addr, (name, callback) in list(self._announced.items()):
            ept = link.endpoints.create(callback, addr, name=name, learn_dst=True)
            announce(link, name, ept.addr, destroy=False)
        return link

    def _graceful_shutdown(self) -> None:
        """The firmware half of the K3 handshake."""
        for hook in self._shutdown_hooks:
            try:
                hook()
            except Exception:
                log.exception("shutdown hook %r failed", hook)
        hw = self.hw
        if hw.disable_rx is not None:
            hw.disable_rx()
        # WFI is reported before the ACK: after the ACK this core executes nothing.
        hw.set_status(STATUS_WFI | STATUS_HALTED)
        if hw.send_word is not None:
            hw.send_word(RP_MBOX_SHUTDOWN_ACK)
        self._wait_for_reset()

    def _wait_for_reset(self) -> None:
        while not self._stopping:
            self._poller.poll()
            self._drain_wakes()

    def close(self) -> None:
        """Release the trace log handler and the stop eventfd. Idempotent."""
        if self._trace_handler is not None:
            log.removeHandler(self._trace_handler)
            self._trace_handler = None
        if self._stop_fd >= 0:
            os.close(self._stop_fd)
            self._stop_fd = -1
        if self._again_fd >= 0:
            os.close(self._again_fd)
            self._again_fd = -1
