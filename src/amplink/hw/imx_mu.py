"""An i.MX Messaging Unit (MU, v1 register layout) with its two sides in shared memory.

Each side (A: the application core, B: the remote core) sees the same register map:

====== ====== ====================================================================
offset name   meaning
====== ====== ====================================================================
0x00   TR0-3  transmit data; writing TRn clears my TEn until the peer reads its RRn
0x10   RR0-3  receive data; reading RRn clears my RFn (and sets the peer's TEn)
0x20   SR     status: GIPn (bit 31-n, write 1 to clear), RFn (27-n), TEn (23-n)
0x24   CR     control: GIEn (31-n), RIEn (27-n), TIEn (23-n) enables; GIRn (19-n)
              writes request a general interrupt on the peer (reads back as 0)
====== ====== ====================================================================

Each side has one interrupt output, active while any ``status & enable`` pair is set
(TEn&TIEn, RFn&RIEn, GIPn&GIEn).  Bit positions are those of Linux's MU v1 tables.

State words (one writer each): per side, TR data, send counters, counters of the
peer's sends it has read, general-interrupt request counters, counters of the peer's
requests it has cleared, and CR.  See :mod:`amplink.hw.mmio` for why.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, Literal

from amplink.hw.mmio import MASK32, MmioError
from amplink.irq.line import IrqWire
from amplink.memory.barrier import full_fence

NUM_CHANS = 4
MU_TR0 = 0x00
MU_RR0 = 0x10
MU_SR = 0x20
MU_CR = 0x24


def GIP(n: int) -> int:
    """SR bit: general-purpose interrupt ``n`` pending (its CR enable bit has the same position)."""
    return 1 << (28 + 3 - n)


def RF(n: int) -> int:
    """SR bit: receive register ``n`` full (its CR enable bit has the same position)."""
    return 1 << (24 + 3 - n)


def TE(n: int) -> int:
    """SR bit: transmit register ``n`` empty (its CR enable bit has the same position)."""
    return 1 << (20 + 3 - n)


GIE = GIP
RIE = RF
TIE = TE


def GIR(n: int) -> int:
    """CR bit: request general-purpose interrupt ``n`` on the other side."""
    return 1 << (16 + 3 - n)


GIP_ALL = sum(GIP(n) for n in range(NUM_CHANS))
GIR_ALL = sum(GIR(n) for n in range(NUM_CHANS))
CR_ENABLES = sum(GIE(n) | RIE(n) | TIE(n) for n in range(NUM_CHANS))

# state word indices within one side's block
_DATA = 0
_TXSEQ = 4
_RXACK = 8
_GIRSEQ = 12
_GIPACK = 16
_CR = 20
SIDE_WORDS = 21
SIZE = 2 * SIDE_WORDS * 4

Side = Literal["a", "b"]
Handler = Callable[[int, Any], int]  # an interrupt primary (amplink.irq.domain.Handler)


class ImxMuSide:
    """One side's view of the unit: MMIO access and its interrupt output.

    Registers are computed from the state words at every access (the peer may have
    changed them).  Which words each status bit compares is worked out once, here, so
    that reading SR costs twelve word comparisons and the interrupt output only looks
    at the events CR enables.

    Besides ``readl``/``writel``, a driver on the message path uses the accessors they
    are made of: :meth:`status_bit` and :meth:`pending` compute only the SR bit asked
    for (reading SR has no side effects, so that is ``readl(MU_SR) & bit``), and
    :meth:`read_rr`, :meth:`write_tr` and :meth:`cr_update` are the register accesses
    without the decoding of an offset.  A driver that tests one event on every
    interrupt of a shared line may take the words it compares once
    (:meth:`event_words`) and compare them itself, as :meth:`pending` does, without a
    call per test.
    """

    def __init__(
        self,
        name: str,
        words: memoryview,
        me: int,
        peer: int,
        wire: IrqWire | None,
        peer_wire: IrqWire | None,
    ) -> None:
        self.name = name
        self._w = words
        self._me = me
        self._peer = peer
        self._cr = me + _CR
        self.wire = wire
        self.peer_wire = peer_wire
        self.peer_side: ImxMuSide | None = None
        # Per SR bit: the two state words it compares, and whether "equal" sets it.
        self._bits = tuple(
            (bit, a, b, equal)
            for n in range(NUM_CHANS)
            for bit, a, b, equal in (
                (GIP(n), peer + _GIRSEQ + n, me + _GIPACK + n, False),
                (RF(n), peer + _TXSEQ + n, me + _RXACK + n, False),
                (TE(n), me + _TXSEQ + n, peer + _RXACK + n, True),
            )
        )
        self._event = {bit: (a, b, equal) for bit, a, b, equal in self._bits}
        self._enabled: dict[int, tuple[tuple[int, int, bool], ...]] = {}  # by CR value

    def __repr__(self) -> str:
        return f"<ImxMuSide {self.name}>"

    def status(self) -> int:
        """The SR word this side reads now."""
        w = self._w
        sr = 0
        for bit, a, b, equal in self._bits:
            if (w[a] == w[b]) is equal:
                sr |= bit
        return sr

    def status_bit(self, bit: int) -> bool:
        """Whether SR bit ``bit`` (one of ``GIP(n)``, ``RF(n)``, ``TE(n)``) is set now."""
        a, b, equal = self._event[bit]
        w = self._w
        return (w[a] == w[b]) is equal

    def event_words(self, bit: int) -> tuple[memoryview, int, int, int, bool]:
        """How SR bit ``bit`` and its CR enable are computed: ``(words, cr, a, b,
        equal)``: the bit is set while ``(words[a] == words[b]) is equal``, and enabled
        while ``words[cr] & bit``."""
        a, b, equal = self._event[bit]
        return self._w, self._cr, a, b, equal

    def pending(self, bit: int) -> bool:
        """Whether the event of SR bit ``bit`` is pending and enabled (its CR enable bit
        has the same position): ``readl(MU_SR) & readl(MU_CR) & bit``, CR read first."""
        w = self._w
        if not w[self._cr] & bit:
            return False
        a, b, equal = self._event[bit]
        return (w[a] == w[b]) is equal

    def event_handler(self, bit: int, handler: Handler) -> Handler:
        """An interrupt primary for the event of SR bit ``bit``: called as
        ``primary(irq, dev_id)`` on every interrupt of the shared line, it returns
        ``IRQ_NONE`` (0) while the event is not pending and enabled (:meth:`pending`),
        and otherwise ``handler(irq, dev_id)``'s result.  The compiled side answers the
        not-pending case without running Python (``_mu.MuEvent``); this is its twin.
        ``ValueError`` if ``bit`` is not one event bit."""
        if bit not in self._event:
            raise ValueError(f"{bit:#x} is not one SR event bit")
        w = self._w
        cr = self._cr
        a, b, equal = self._event[bit]

        def primary(irq: int, dev_id: Any) -> int:
            if not w[cr] & bit or (w[a] == w[b]) is not equal:
                return 0  # IRQ_NONE
            return handler(irq, dev_id)

        return primary

    def irq_active(self) -> bool:
        """The level of this side's interrupt output: an event CR enables is pending."""
        w = self._w
        cr = w[self._cr] & CR_ENABLES  # (the peer may scribble it: at most 4096 keys)
        if not cr:
            return False
        events = self._enabled.get(cr)
        if events is None:
            events = self._events(cr)
        for a, b, equal in events:  # noqa: SIM110 (no generator on the hot path)
            if (w[a] == w[b]) is equal:
                return True
        return False

    def _events(self, mask: int) -> tuple[tuple[int, int, bool], ...]:
        """How the SR bits in ``mask`` are computed (a CR value's enabled events),
        worked out once per mask."""
        events = self._enabled[mask] = tuple(
            (a, b, equal) for bit, a, b, equal in self._bits if mask & bit
        )
        return events

    def _peer_changed(self) -> None:
        full_fence()
        peer = self.peer_side
        if peer is not None and peer.irq_active():
            wire = self.peer_wire
            if wire is not None:
                wire.pulse()

    def _enabled_now(self, gained: int) -> None:
        """CR just enabled the events in ``gained``: if one of them is pending, this
        side's output became active (events enabled before that were pending already
        had their pulse when they were raised)."""
        full_fence()
        w = self._w
        events = self._enabled.get(gained)
        if events is None:
            events = self._events(gained)
        for a, b, equal in events:
            if (w[a] == w[b]) is equal:
                wire = self.wire
                if wire is not None:
                    wire.pulse()
                return

    def readl(self, offset: int) -> int:
        """Read a register of this side (reading RRn empties it and may raise TE on the peer)."""
        if offset == MU_SR:
            return self.status()
        if offset == MU_CR:
            return self._w[self._cr]
        if not offset & 3 and MU_RR0 <= offset < MU_RR0 + 4 * NUM_CHANS:
            return self.read_rr((offset - MU_RR0) >> 2)
        if not offset & 3 and MU_TR0 <= offset < MU_TR0 + 4 * NUM_CHANS:
            return self._w[self._me + _DATA + ((offset - MU_TR0) >> 2)]
        raise MmioError(self.name, offset, "readable")

    def read_rr(self, n: int) -> int:
        """Read RRn (``0 <= n < NUM_CHANS``): empties it, which may raise TEn on the peer."""
        w = self._w
        peer = self._peer
        seq = w[peer + _TXSEQ + n]
        value = w[peer + _DATA + n]
        ack = self._me + _RXACK + n
        if w[ack] != seq:
            w[ack] = seq
            full_fence()  # (a Dekker handshake with the peer's CR write: see hw/mmio.py)
            if w[peer + _CR] & TIE(n) and self.peer_wire is not None:
                self.peer_wire.pulse()  # the peer's TEn is set now, and enabled
        return value

    def writel(self, offset: int, value: int) -> None:
        """Write a register of this side (writing TRn fills the peer's RRn)."""
        if not offset & 3 and MU_TR0 <= offset < MU_TR0 + 4 * NUM_CHANS:
            self.write_tr((offset - MU_TR0) >> 2, value)
        elif offset == MU_CR:
            self.cr_update(value, MASK32)
        elif offset == MU_SR:
            if value & GIP_ALL:
                w, me, peer = self._w, self._me, self._peer
                for n in range(NUM_CHANS):
                    if value & GIP(n):
                        w[me + _GIPACK + n] = w[peer + _GIRSEQ + n]
        elif MU_RR0 <= offset < MU_RR0 + 4 * NUM_CHANS:
            pass  # read-only: the write is ignored, as by the hardware
        else:
            raise MmioError(self.name, offset, "writable")

    def write_tr(self, n: int, value: int) -> None:
        """Write TRn (``0 <= n < NUM_CHANS``): fills the peer's RRn."""
        w = self._w
        me = self._me
        w[me + _DATA + n] = value & MASK32
        seq = me + _TXSEQ + n
        w[seq] = (w[seq] + 1) & MASK32
        full_fence()  # (a Dekker handshake with the peer's CR write: see hw/mmio.py)
        if w[self._peer + _CR] & RIE(n) and self.peer_wire is not None:
            self.peer_wire.pulse()  # the peer's RFn is set now, and enabled

    def cr_update(self, set_bits: int = 0, clear_bits: int = 0) -> None:
        """Read-modify-write of CR (the caller serialises its own side's RMWs): writes
        ``(CR & ~clear_bits) | set_bits``; the enables are kept, GIRn bits request
        general interrupts.

        Only a write that sets an enable can activate this side's output, so only
        such a write fences and looks (clearing one cannot; an output that stays
        active is taken again by its controller as a level)."""
        w = self._w
        cr = self._cr
        old = w[cr]
        value = (old & ~clear_bits) | set_bits
        new = w[cr] = value & CR_ENABLES
        if new & ~old:
            self._enabled_now(new & ~old)
        if value & GIR_ALL:
            me = self._me
            for n in range(NUM_CHANS):
                if value & GIR(n):
                    w[me + _GIRSEQ + n] = (w[me + _GIRSEQ + n] + 1) & MASK32
            self._peer_changed()


PURE_PYTHON_ENV = "AMPLINK_PURE_PYTHON"  # (amplink.virtio.rings's switch: the same floor)


def compiled_side() -> type[ImxMuSide] | None:
    """:class:`ImxMuSide` with the compiled accessors of ``_mu.c`` put first
    (``irq_active``, ``read_rr``, ``write_tr``, ``cr_update``: the same answers, word
    updates, fences and pulses; ``event_handler`` makes a ``_mu.MuEvent``); None if
    ``_mu`` was not built."""
    try:
        _mu = importlib.import_module("amplink.hw._mu")
    except ImportError:  # not built (no compiler when it was installed)
        return None

    class CompiledMuSide(_mu.MuSide, ImxMuSide):  # type: ignore[name-defined,misc]
        __doc__ = ImxMuSide.__doc__

        def event_handler(self, bit: int, handler: Handler) -> Handler:
            if bit not in self._event:
                raise ValueError(f"{bit:#x} is not one SR event bit")
            return _mu.MuEvent(self, bit, handler)  # type: ignore[no-any-return]

        event_handler.__doc__ = ImxMuSide.event_handler.__doc__

    return CompiledMuSide


_compiled = None if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0") else compiled_side()
COMPILED = _compiled is not None  # whether the MU sides amplink makes are compiled
SIDE: type[ImxMuSide] = _compiled or ImxMuSide  # what ImxMu makes by default


class ImxMu:
    """Both sides of one unit over ``words`` (a ``'I'`` view of :data:`SIZE` bytes).

    ``wire_a``/``wire_b`` are the two interrupt outputs; a process passes the wires it
    can reach (both, normally: its own to re-trigger itself, the peer's to signal it).
    ``side_type``: the class of the two sides (default :data:`SIDE`: the compiled
    accessors when they were built, unless ``AMPLINK_PURE_PYTHON=1``).
    """

    def __init__(
        self,
        name: str,
        words: memoryview,
        *,
        wire_a: IrqWire | None = None,
        wire_b: IrqWire | None = None,
        side_type: type[ImxMuSide] | None = None,
    ) -> None:
        if len(words) < 2 * SIDE_WORDS:
            raise ValueError(f"an MU needs {SIZE} bytes of state, got {len(words) * 4}")
        self.name = name
        side = side_type if side_type is not None else SIDE
        self.a = side(f"{name}.a", words, 0, SIDE_WORDS, wire_a, wire_b)
        self.b = side(f"{name}.b", words, SIDE_WORDS, 0, wire_b, wire_a)
        self.a.peer_side = self.b
        self.b.peer_side = self.a

    def side(self, which: Side) -> ImxMuSide:
        """Side ``a`` or ``b`` of the unit."""
        return self.a if which == "a" else self.b
