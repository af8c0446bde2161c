"""The API a firmware program sees, and its event loop.

The loop is what OpenAMP firmware does in ``platform_poll()``, made polite: drain the
receive ring, then spin on it for an adaptive while with host notifications suppressed,
and only then sleep until an interrupt says the host kicked (the core's mailbox ISR
only sets a wake-up eventfd, which is all an ISR should do).  Endpoint callbacks
run in this loop, so a firmware program is single-threaded unless it starts threads
itself.
"""

from __future__ import annotations

import logging
import os
import select

from amplink.irq.line import drain
from amplink.rpmsg.core import RPMSG_ADDR_ANY, Endpoint, EndpointCallback, announce
from amplink.rpmsg.virtio_link import VirtioRpmsgRemote

log = logging.getLogger("amplink.firmware")


class Core:
    """A remote core as its firmware sees it."""

    def __init__(
        self, name: str, link: VirtioRpmsgRemote, wake_fd: int, *, mailbox: str | None = None
    ) -> None:
        """``wake_fd`` is the eventfd the core's mailbox ISR writes on a host kick;
        ``mailbox`` names the core's mailbox controller, whose channels other than the
        kick channel (TX/RX index 0) firmware may request for its own use."""
        self.name = name
        self.mailbox = mailbox
        self.link = link
        self.log = log
        self._wake_fd = wake_fd
        self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stopping = False
        self._poller = select.poll()
        self._poller.register(wake_fd, select.POLLIN)
        self._poller.register(self._stop_fd, select.POLLIN)

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
        return ept

    def destroy_endpoint(self, ept: Endpoint) -> None:
        """Withdraw a named endpoint's announcement and unbind it."""
        if ept.name and self.link.failure is None:
            announce(self.link, ept.name, ept.addr, destroy=True)
        ept.destroy()

    def stop(self) -> None:
        """Make :meth:`run` return (safe from signal handlers and other threads)."""
        self._stopping = True
        os.eventfd_write(self._stop_fd, 1)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def run(self) -> None:
        """Serve messages until :meth:`stop` is called or the link fails."""
        link = self.link
        spin = link.spin
        while not self._stopping and link.failure is None:
            link.poll_rx()
            link.suppress_rx()
            if spin.spin(link.rx_pending):
                continue
            if link.unsuppress_rx():
                continue
            self._poller.poll()
            drain(self._wake_fd)

    def close(self) -> None:
        if self._stop_fd >= 0:
            os.close(self._stop_fd)
            self._stop_fd = -1
