"""Controller driver for the Rockchip-style mailbox model (the A side).

The Linux driver's shape: one interrupt line per channel, requested threaded with
``IRQF_ONESHOT``; the primary handler clears the channel's write-1-to-clear status bit
and wakes the thread; the thread delivers the answer to the request the client sent on
that channel.  Messages are :class:`RockchipMsg` ``(cmd, rx_size)``.

Two deliberate differences from Linux, because here the peer is a separate process:

* the thread reads the peer's reply from ``B2A_CMD``/``B2A_DAT`` (Linux hands the
  client back its own request object);
* transmission is done when the peer has cleared ``A2B_STATUS`` (the controller polls
  ``last_tx_done``); Linux's driver claims ``txdone_irq`` but never reports txdone.

A B2A interrupt with no request outstanding is logged and answered ``IRQ_NONE``, as in
Linux; that is what lets the spurious detector stop a driver that forgets to clear the
status bit (see ``tests/test_mailbox_drivers.py``).
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

from amplink.errors import IrqError
from amplink.hw.rockchip import (
    A2B_CMD,
    A2B_DAT,
    A2B_STATUS,
    B2A_CMD,
    B2A_DAT,
    B2A_INTEN,
    B2A_STATUS,
    NUM_CHANS,
    RockchipMailbox,
)
from amplink.irq.domain import IrqDomain
from amplink.irq.flags import IRQ_HANDLED, IRQ_NONE, IRQ_WAKE_THREAD, IRQF_ONESHOT
from amplink.mailbox.framework import MboxChan, MboxController

log = logging.getLogger(__name__)

MAX_UNSOLICITED_REPORTS = 10


class RockchipMsg(NamedTuple):
    """The client ABI: a command word and a size word."""

    cmd: int
    rx_size: int


@dataclass(eq=False)
class _RkChan:
    idx: int
    irq: int
    name: str
    request: RockchipMsg | None = None
    unsolicited: int = 0


class RockchipMboxController(MboxController):
    """Drives the A side of a :class:`~amplink.hw.rockchip.RockchipMailbox`;
    ``irqs[x]`` is the B2A line of channel ``x`` in ``domain``."""

    def __init__(
        self,
        dev: str,
        unit: RockchipMailbox,
        domain: IrqDomain,
        irqs: list[int],
        *,
        buf_size: int = 0x100,
        txpoll_period: int = 1,
    ) -> None:
        if len(irqs) != NUM_CHANS:
            raise ValueError(f"one interrupt per channel: {NUM_CHANS}, got {len(irqs)}")
        super().__init__(dev, NUM_CHANS, txdone_poll=True, txpoll_period=txpoll_period)
        self.unit = unit
        self.domain = domain
        self.buf_size = buf_size
        for chan in self.chans:
            chan.con_priv = _RkChan(chan.index, irqs[chan.index], f"{dev}-chan{chan.index}")

    def startup(self, chan: MboxChan) -> int:
        rc: _RkChan = chan.con_priv
        rc.request = None
        try:
            self.domain.request_threaded_irq(
                rc.irq, self._isr, self._isr_thread, IRQF_ONESHOT, rc.name, chan
            )
        except IrqError as exc:
            log.error("%s: cannot request irq %d: %s", rc.name, rc.irq, exc)
            return -(exc.errno or errno.EINVAL)
        # Linux enables every channel's B2A interrupt here (controller-wide).
        self.unit.writel(B2A_INTEN, (1 << NUM_CHANS) - 1)
        return 0

    def shutdown(self, chan: MboxChan) -> None:
        rc: _RkChan = chan.con_priv
        # Only this channel's bit (Linux writes 0, silencing the other channels too).
        self.unit.writel(B2A_INTEN, self.unit.readl(B2A_INTEN) & ~(1 << rc.idx))
        self.domain.free_irq(rc.irq, chan)
        rc.request = None

    def send_data(self, chan: MboxChan, data: Any) -> int:
        rc: _RkChan = chan.con_priv
        if not isinstance(data, RockchipMsg):
            log.error("%s: a message is a RockchipMsg(cmd, rx_size), not %r", rc.name, data)
            return -errno.EINVAL
        if data.rx_size > self.buf_size:
            log.error(
                "%s: rx_size %d exceeds the buffer of %d", rc.name, data.rx_size, self.buf_size
            )
            return -errno.EINVAL
        if self.unit.readl(A2B_STATUS) & (1 << rc.idx):
            return -errno.EBUSY  # the MCU has not taken the previous command
        rc.request = data
        self.unit.writel(A2B_CMD(rc.idx), data.cmd)
        self.unit.writel(A2B_DAT(rc.idx), data.rx_size)
        return 0

    def last_tx_done(self, chan: MboxChan) -> bool:
        rc: _RkChan = chan.con_priv
        return not self.unit.readl(A2B_STATUS) & (1 << rc.idx)

    # -- interrupt handlers ----------------------------------------------------------
    def ack(self, rc: _RkChan) -> None:
        """Clear the channel's write-1-to-clear status bit."""
        self.unit.writel(B2A_STATUS, 1 << rc.idx)

    def _isr(self, irq: int, chan: MboxChan) -> int:
        rc: _RkChan = chan.con_priv
        if not self.unit.readl(B2A_STATUS) & (1 << rc.idx):
            return IRQ_NONE
        self.ack(rc)
        return IRQ_WAKE_THREAD

    def _isr_thread(self, irq: int, chan: MboxChan) -> int:
        rc: _RkChan = chan.con_priv
        if rc.request is None:
            rc.unsolicited += 1
            if rc.unsolicited <= MAX_UNSOLICITED_REPORTS:
                log.error(
                    "%s: a message from the MCU with no request outstanding (%d so far%s)",
                    rc.name,
                    rc.unsolicited,
                    "; not reporting more" if rc.unsolicited == MAX_UNSOLICITED_REPORTS else "",
                )
            return IRQ_NONE
        rc.request = None
        reply = RockchipMsg(self.unit.readl(B2A_CMD(rc.idx)), self.unit.readl(B2A_DAT(rc.idx)))
        chan.received_data(reply)
        return IRQ_HANDLED
