"""Controller driver for the i.MX MU model, in the two styles Linux has had.

Channels are numbered ``type * 4 + index`` for a client specifier ``(type, index)``:
TX 0 (data register TRn, done when the peer reads it), RX 1 (RRn), TXDB 2 (general
interrupt request GIRn, no hardware acknowledgement) and RXDB 3 (general interrupt
pending GIPn).  Every channel requests the unit's one interrupt line as a SHARED
action of its own, named ``<dev>_chan[<type>-<index>]``.

* ``threaded=True`` (the 2026 series): the primary handler only finds out whether its
  channel's event is pending, **masks that event at the unit** (clears TIEn, RIEn or
  GIEn) and returns ``IRQ_WAKE_THREAD``.  The thread does the work (txdone, reading
  RRn, clearing GIPn), calls the client in preemptible context and re-enables the
  event.  No ONESHOT: the line itself stays unmasked, so another device on the same
  line keeps being served while this channel's thread runs.
* ``threaded=False`` (the classic driver, and what bare-metal firmware does): the
  primary handler does everything, calling the client in hard-IRQ context.

Messages on TX/RX channels are 32-bit integers; doorbell channels carry ``None``.
"""

from __future__ import annotations

import errno
import logging
import threading
from dataclasses import dataclass
from typing import Any

from amplink.errors import IrqError, MailboxError
from amplink.hw.imx_mu import (
    GIE,
    GIP,
    GIR,
    MU_SR,
    RF,
    RIE,
    TE,
    TIE,
    ImxMuSide,
)
from amplink.irq.domain import Handler, IrqDomain
from amplink.irq.flags import IRQ_HANDLED, IRQ_NONE, IRQ_WAKE_THREAD, IRQF_SHARED
from amplink.irq.workqueue import Work, Workqueue
from amplink.mailbox.framework import MboxChan, MboxController

log = logging.getLogger(__name__)

IMX_MU_TYPE_TX = 0
IMX_MU_TYPE_RX = 1
IMX_MU_TYPE_TXDB = 2
IMX_MU_TYPE_RXDB = 3
_TYPES = 4
_PER_TYPE = 4


@dataclass(eq=False)
class _MuChan:
    type: int
    idx: int
    name: str
    side: ImxMuSide
    shutting_down: bool = False
    txdb_work: Work | None = None
    status: int = 0  # the SR bit of the event this channel's interrupt is about
    enable: int = 0  # the CR bit that enables it
    # How the side computes that bit and its enable (ImxMuSide.event_words): a send
    # tests TEn itself (as ImxMuSide.status_bit would), without a call.
    words: memoryview | None = None
    cr: int = 0
    a: int = 0
    b: int = 0
    equal: bool = False

    def __post_init__(self) -> None:
        self.status, self.enable = _event_bits(self.type, self.idx)
        if self.status:
            self.words, self.cr, self.a, self.b, self.equal = self.side.event_words(self.status)


def _event_bits(kind: int, idx: int) -> tuple[int, int]:
    """(status bit, enable bit) of the event a channel's interrupt is about."""
    if kind == IMX_MU_TYPE_TX:
        return TE(idx), TIE(idx)
    if kind == IMX_MU_TYPE_RX:
        return RF(idx), RIE(idx)
    if kind == IMX_MU_TYPE_RXDB:
        return GIP(idx), GIE(idx)
    return 0, 0


def _no_event(irq: int, chan: MboxChan) -> int:
    """The primary of a channel without an event (TXDB: the hardware never acks)."""
    return IRQ_NONE


class ImxMuController(MboxController):
    """Drives one side of an :class:`~amplink.hw.imx_mu.ImxMu` on interrupt ``irq``."""

    def __init__(
        self,
        dev: str,
        side: ImxMuSide,
        domain: IrqDomain,
        irq: int,
        *,
        threaded: bool = True,
    ) -> None:
        super().__init__(dev, _TYPES * _PER_TYPE, txdone_irq=True)
        self.side = side
        self.domain = domain
        self.irq = irq
        self.threaded = threaded
        self._xcr_lock = threading.Lock()
        self._bh: Workqueue | None = None
        for chan in self.chans:
            t, i = divmod(chan.index, _PER_TYPE)
            chan.con_priv = _MuChan(t, i, f"{dev}_chan[{t}-{i}]", side)

    def of_xlate(self, spec: tuple[Any, ...]) -> MboxChan:
        if len(spec) != 2 or not all(isinstance(v, int) for v in spec):
            raise MailboxError(
                errno.EINVAL, f"{self.dev}: specifier must be (type, index), not {spec!r}"
            )
        t, i = int(spec[0]), int(spec[1])
        if not (0 <= t < _TYPES and 0 <= i < _PER_TYPE):
            raise MailboxError(errno.EINVAL, f"{self.dev}: no channel of type {t} index {i}")
        return self.chans[t * _PER_TYPE + i]

    def _cr(self, set_bits: int = 0, clear_bits: int = 0) -> None:
        with self._xcr_lock:
            self.side.cr_update(set_bits, clear_bits)

    # -- operations ------------------------------------------------------------------
    def startup(self, chan: MboxChan) -> int:
        cp: _MuChan = chan.con_priv
        cp.shutting_down = False
        try:
            if self.threaded:
                primary = self._primary(cp, self._isr)
                self.domain.request_threaded_irq(
                    self.irq, primary, self._isr_thread, IRQF_SHARED, cp.name, chan
                )
            else:
                primary = self._primary(cp, self._isr_hard)
                self.domain.request_irq(self.irq, primary, IRQF_SHARED, cp.name, chan)
        except IrqError as exc:
            log.error("%s: cannot request irq %d: %s", cp.name, self.irq, exc)
            return -(exc.errno or errno.EINVAL)
        if cp.type == IMX_MU_TYPE_TXDB:
            if self._bh is None:
                self._bh = Workqueue(f"{self.dev}-bh")
            cp.txdb_work = Work(lambda: chan.txdone(0), f"{cp.name}-txdone")
        if cp.type != IMX_MU_TYPE_TX and cp.enable:
            self._cr(set_bits=cp.enable)
        return 0

    def shutdown(self, chan: MboxChan) -> None:
        cp: _MuChan = chan.con_priv
        cp.shutting_down = True
        if cp.enable:
            self._cr(clear_bits=cp.enable)
        self.domain.free_irq(self.irq, chan)

    def send_data(self, chan: MboxChan, data: Any) -> int:
        cp: _MuChan = chan.con_priv
        if cp.type == IMX_MU_TYPE_TX:
            if not isinstance(data, int) or not 0 <= data <= 0xFFFF_FFFF:
                log.error("%s: a TX message is a 32-bit integer, not %r", cp.name, data)
                return -errno.EINVAL
            w = cp.words
            assert w is not None  # (every TX channel has its TE event)
            if (w[cp.a] == w[cp.b]) is not cp.equal:  # TEn clear (side.status_bit)
                return -errno.EBUSY  # the peer has not read the previous word yet
            self.side.write_tr(cp.idx, data)
            if not chan.on_demand:
                self._cr(set_bits=cp.enable)
            return 0
        if cp.type == IMX_MU_TYPE_TXDB:
            self._cr(set_bits=GIR(cp.idx))
            if self._bh is not None and cp.txdb_work is not None:
                self._bh.queue_work(cp.txdb_work)  # no hardware ACK: done once rung
            return 0
        log.error("%s: cannot send on a receive channel", cp.name)
        return -errno.EINVAL

    def txdone_on_demand(self, chan: MboxChan) -> bool:
        """TX channels: TEn says whether the peer read the word."""
        cp: _MuChan = chan.con_priv
        return cp.type == IMX_MU_TYPE_TX

    def last_tx_done(self, chan: MboxChan) -> bool:
        cp: _MuChan = chan.con_priv
        w = cp.words  # TEn (side.status_bit), on every send of an on-demand client
        return w is not None and (w[cp.a] == w[cp.b]) is cp.equal

    def arm_txdone(self, chan: MboxChan) -> None:
        cp: _MuChan = chan.con_priv
        self._cr(set_bits=cp.enable)

    def peek_data(self, chan: MboxChan) -> bool:
        cp: _MuChan = chan.con_priv
        if cp.type != IMX_MU_TYPE_RX or not self.side.status_bit(RF(cp.idx)):
            return False
        chan.received_data(self.side.read_rr(cp.idx))
        return True

    def unregister(self) -> None:
        super().unregister()
        if self._bh is not None:
            self._bh.destroy()
            self._bh = None

    # -- interrupt handlers ----------------------------------------------------------
    def _primary(self, cp: _MuChan, handler: Handler) -> Handler:
        """The primary of ``cp``'s action: ``handler`` runs only while its event is
        pending and enabled (``side.pending``, CR read first: SR only matters for an
        enabled event); otherwise the answer is ``IRQ_NONE``.  Every sharer's primary
        runs on every interrupt of the line: the side's ``event_handler`` makes that
        test without running Python when the MU accessors are compiled."""
        if not cp.status:
            return _no_event  # (a TXDB channel: no event of its own)
        return self.side.event_handler(cp.status, handler)

    def _isr(self, irq: int, chan: MboxChan) -> int:
        """Threaded style, hard part (its event pending): silence the event at the
        unit, wake the thread."""
        cp: _MuChan = chan.con_priv
        with self._xcr_lock:  # (self._cr, without its frame)
            self.side.cr_update(0, cp.enable)
        return IRQ_WAKE_THREAD

    def _isr_thread(self, irq: int, chan: MboxChan) -> int:
        cp: _MuChan = chan.con_priv
        if cp.type == IMX_MU_TYPE_RX:  # (the message path: read here, no _work frame)
            chan.received_data(self.side.read_rr(cp.idx))
        else:
            self._work(chan, cp)
        if cp.type != IMX_MU_TYPE_TX and not cp.shutting_down:
            with self._xcr_lock:  # (self._cr, without its frame; TX: re-armed by a send)
                self.side.cr_update(cp.enable, 0)
        return IRQ_HANDLED

    def _isr_hard(self, irq: int, chan: MboxChan) -> int:
        """Classic style (its event pending): everything, including the client
        callback, in hard IRQ."""
        cp: _MuChan = chan.con_priv
        if cp.type == IMX_MU_TYPE_RX:  # (the message path: read here, no _work frame)
            chan.received_data(self.side.read_rr(cp.idx))
            return IRQ_HANDLED
        if cp.type == IMX_MU_TYPE_TX:
            self._cr(clear_bits=cp.enable)
        self._work(chan, cp)
        return IRQ_HANDLED

    def _work(self, chan: MboxChan, cp: _MuChan) -> None:
        """A pending event's work, but RX's (which the handlers do themselves)."""
        if cp.type == IMX_MU_TYPE_TX:
            chan.txdone(0)
        elif cp.type == IMX_MU_TYPE_RXDB:
            self.side.writel(MU_SR, GIP(cp.idx))
            chan.received_data(None)
