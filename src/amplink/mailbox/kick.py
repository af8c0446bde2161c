"""Virtqueue notifications over a mailbox channel pair: the message is the notify id.

This is what i.MX and TI remoteproc drivers do: to kick a vring, send its notify id
(from the resource table) on the TX channel; the peer's RX callback gets that id and
runs the vring's handler.  Both ends of amplink use it: the host's ``Rproc`` and the
firmware side in the remote core process.

Kicks coalesce: a kick only says "look at the ring".  If a kick for the same id is
still *queued* (not yet handed to the hardware), it will reach the peer after the ring
update that prompted this kick, so this one is dropped.  Once a queued kick is handed
to the hardware (``tx_prepare``), the next kick queues again.  The queue can therefore
never fill with kicks, and if it is full anyway (a stuck peer), every queued kick is
still to be sent, so dropping this one loses nothing.

The set of queued ids needs no lock of its own: each set operation is atomic, and
every interleaving ends with the peer notified after the ring update.  Two kicks of
one id that both find it absent both queue (one notification too many, harmless); a
kick that finds it present while that kick is handed over is still followed by it,
since the hand-over comes after this kick's ring update.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

from amplink.errors import MailboxError
from amplink.mailbox.framework import (
    MboxClient,
    free_channel,
    request_channel_byname,
    send_message,
)
from amplink.tracing import TRACER

log = logging.getLogger(__name__)


class MboxKick:
    """Requests ``tx`` and ``rx`` (``(controller, *specifier)``) and carries notify ids."""

    def __init__(
        self,
        dev: str,
        tx: tuple[Any, ...],
        rx: tuple[Any, ...],
        on_notify: Callable[[int], None],
    ) -> None:
        self.dev = dev
        self._on_notify = on_notify
        self._queued: set[int] = set()
        self.client = MboxClient(
            dev,
            mboxes=(tx, rx),
            mbox_names=("tx", "rx"),
            rx_callback=self._rx,
            tx_prepare=self._handed_over,
        )
        self.tx = request_channel_byname(self.client, "tx")
        try:
            self.rx = request_channel_byname(self.client, "rx")
        except BaseException:
            free_channel(self.tx)
            raise
        self.sent = 0
        self.coalesced = 0

    def kick(self, notifyid: int) -> None:
        """Notify the peer that vring ``notifyid`` changed."""
        if TRACER.enabled:
            TRACER.event("mailbox", "kick", dev=self.dev, notifyid=notifyid)
        queued = self._queued
        if notifyid in queued:
            self.coalesced += 1
            return
        try:  # (the add inside: an id left queued by a Ctrl-C would swallow every kick)
            queued.add(notifyid)
            send_message(self.tx, notifyid)
        except MailboxError as exc:
            queued.discard(notifyid)
            if self.tx.cl is None:
                return  # closed meanwhile: the peer is going away, nothing to notify
            if exc.errno != errno.ENOBUFS:
                raise
            log.debug("%s: TX queue full; kick %d coalesced with queued ones", self.dev, notifyid)
            return
        except BaseException:  # a Ctrl-C: the next kick of this id goes out again
            queued.discard(notifyid)
            raise
        self.sent += 1

    def _handed_over(self, cl: MboxClient, msg: Any) -> None:
        self._queued.discard(msg)

    def _rx(self, cl: MboxClient, msg: Any) -> None:
        self._on_notify(msg)

    def close(self) -> None:
        """Free both channels. Idempotent."""
        free_channel(self.rx)
        free_channel(self.tx)
