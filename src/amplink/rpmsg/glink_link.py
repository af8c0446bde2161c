"""rpmsg over a GLINK-style edge: channels opened by name, intents, chunked data.

The second rpmsg backend, modelled on Qualcomm GLINK (commands and their layout in
:mod:`amplink.wire.glink`, FIFOs in :mod:`amplink.rpmsg.glink_fifo`).  GLINK is
symmetric: host and remote run the same :class:`GlinkLink`; the role only says which
FIFO each side writes.

How rpmsg maps onto it, as in Linux's ``qcom_glink_native``:

* **Channels are endpoints.**  Binding an endpoint with a name opens the channel of that
  name (``OPEN``); destroying it closes it (``CLOSE``).  A channel the remote opens
  first is reported to ``channel_listeners``; on the host :class:`GlinkChannels` turns it
  into an rpmsg device on the bus, whose driver's endpoint then opens our side.
  Addresses mean nothing on the wire: received messages come from ``RPMSG_ADDR_ANY``.
* **Intents** are receive buffers the receiver advertises: 5 of 1 KiB per channel when
  it opens (``intents=`` changes that).  A send takes the smallest free intent that
  fits; with none, :meth:`send` without blocking raises ``EBUSY``, and a blocking send
  asks for one (``RX_INTENT_REQ``) and waits (``ETIMEDOUT``; ``EAGAIN`` if refused and
  none that fits is in use).  Senders ask for more until :data:`INTENTS_WANTED` are in
  flight, then wait for the ones in use to come back.
  Receivers grant intents up to ``max_message`` bytes and :data:`MAX_INTENTS` per
  channel, and give each back with ``RX_DONE_W_REUSE`` once the message is copied out.
* **Chunking.**  Messages larger than a chunk (8 KiB, or half the FIFO if smaller) go as
  one ``TX_DATA`` and ``TX_DATA_CONT`` commands.
* **Full FIFO.**  A sender that finds no room sends ``READ_NOTIF`` once (8 bytes are
  always kept free for it), so the reader kicks it after reading; ``trysend`` raises
  ``EAGAIN``.
* **Flow control.**  :meth:`set_flow_control` sends ``SIGNALS`` (DTR|RTS to pause, 0 to
  resume); received signals call the endpoint's flow callbacks.  Sending is not
  blocked by them, as in Linux: the application honours them.

Sending from a receive callback never deadlocks: replies to the peer's commands
(``RX_DONE``, ``OPEN_ACK``...) are queued and written when the FIFO has room, and a
sender waiting inside the receive context reads the peer's commands itself (data it
finds is queued for delivery after the callback returns).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from amplink.errors import FifoError, RpmsgError
from amplink.memory.region import SharedRegion
from amplink.rpmsg.core import RPMSG_ADDR_ANY, Endpoint, RpmsgBus, RpmsgDevice
from amplink.rpmsg.glink_fifo import EdgeFifos
from amplink.rpmsg.polled import PolledLink
from amplink.tracing import TRACER
from amplink.wait import AdaptiveSpin
from amplink.wire import glink as g

log = logging.getLogger(__name__)

GLINK_NOTIFYID = 0  # the mailbox word that means "look at the edge"
DEFAULT_INTENTS = ((1024, 5),)  # (size, count) pairs advertised when a channel opens
MAX_INTENTS = 256  # per channel: requests beyond this are refused
INTENTS_WANTED = 64  # a sender asks for intents until it has this many in flight
DEFAULT_SEND_TIMEOUT = 10.0  # Linux waits 10 s for an intent
_READ_NOTIF = g.command(g.READ_NOTIF)
_RESERVE = len(_READ_NOTIF)  # always free in the FIFO, for READ_NOTIF
_MAX_WAIT_SLICE = 0.01

ChannelListener = Callable[[str, bool, bool], None]


@dataclass(eq=False)
class _Channel:
    name: str
    lcid: int = 0  # ours while we have it open
    rcid: int = 0  # the peer's while it has it open
    ept: Endpoint | None = None
    peer_closed: bool = False  # the peer had it open and closed it
    free_intents: dict[int, int] = field(default_factory=dict)  # the peer's: iid -> size
    used_intents: dict[int, int] = field(default_factory=dict)  # taken, not yet done
    local_intents: dict[int, int] = field(default_factory=dict)  # ours: iid -> size
    rx: dict[int, bytearray] = field(default_factory=dict)  # partial messages, per iid
    intent_request: bool | None = None  # None: none pending; then granted or not
    grow: bool = True  # ask for more intents than the remote gave (until it refuses)


class GlinkLink(PolledLink):
    """One side of a GLINK edge (see the module docstring)."""

    def __init__(
        self,
        name: str,
        region: SharedRegion,
        edge_offset: int,
        spec: g.GlinkEdgeSpec,
        role: Literal["host", "remote"],
        notify: Callable[[], None],
        *,
        intents: tuple[tuple[int, int], ...] = DEFAULT_INTENTS,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        spin: AdaptiveSpin | None = None,
    ) -> None:
        super().__init__(name, ns_supported=False, spin=spin)
        self.role = role
        self.spec = spec
        self._fifos = EdgeFifos(name, region, edge_offset, spec.fifo_size, role)
        self.trace_key = f"{name}@{os.fstat(region.fd).st_ino}"  # this boot's memory
        self._tx = self._fifos.tx
        self._rx = self._fifos.rx
        self._notify = notify
        self._mtu = spec.max_message
        self._chunk = min(g.MAX_CHUNK, spec.fifo_size // 2) - g.DATA_HDR.size
        self._intents = intents
        self.send_timeout = send_timeout
        self.channel_listeners: list[ChannelListener] = []
        self.peer_version: int | None = None
        self._channels: dict[str, _Channel] = {}
        self._lcids: dict[int, _Channel] = {}
        self._rcids: dict[int, _Channel] = {}
        self._by_addr: dict[int, _Channel] = {}
        self._next_lcid = 1
        self._iids = itertools.count(1)
        self._ctl: deque[bytes] = deque()  # replies waiting for room in the FIFO
        self._read_notif_mark: int | None = None  # where our last READ_NOTIF ends
        self._kick_after_read = False
        # Found while parsing, run after it: (what, is it a message)
        self._pending: deque[tuple[Callable[[], None], bool]] = deque()
        self._space_waiters: list[tuple[_Channel, Callable[[], None]]] = []
        self._tx_waiters = 0
        self.fail_listeners.append(self._wake_all)
        with self._locked():
            self._queue(g.command(g.VERSION, g.GLINK_VERSION, 0))
            self._flush()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The tx lock; a FIFO the peer broke fails the link once the lock is free."""
        try:
            with self._tx_cond:
                yield
        except FifoError as exc:
            self.fail(exc)
            raise self.dead_error() from exc

    @property
    def mtu(self) -> int:
        return self._mtu

    # -- channels --------------------------------------------------------------------
    def bind(self, ept: Endpoint) -> None:
        """Open the channel named like ``ept`` (unnamed endpoints open nothing)."""
        if not ept.name:
            return
        with self._locked():
            ch = self._channels.get(ept.name)
            if ch is None:
                ch = self._channels[ept.name] = _Channel(ept.name)
            elif ch.ept is not None:
                raise RpmsgError(
                    errno.EBUSY,
                    f"GLINK channel {ept.name!r} on {self.name} already has an endpoint",
                )
            lcid = self._alloc_lcid()
            ch.ept, ch.lcid = ept, lcid
            self._lcids[lcid] = ch
            self._by_addr[ept.addr] = ch
            pairs = []
            for size, count in self._intents:
                for _ in range(count):
                    iid = next(self._iids)
                    ch.local_intents[iid] = size
                    pairs.append((size, iid))
            self._queue(g.open_command(lcid, ept.name))
            self._queue(g.intent_command(lcid, pairs))
            self._flush()

    def unbind(self, ept: Endpoint) -> None:
        """Close the endpoint's channel (the peer acks; its endpoint stays bound)."""
        with self._locked():
            ch = self._by_addr.pop(ept.addr, None)
            if ch is None or ch.ept is not ept:
                return
            ch.ept = None
            ch.local_intents.clear()
            ch.rx.clear()
            lcid, ch.lcid = ch.lcid, 0  # stays in _lcids until the peer acks
            if self.failure is None:
                self._queue(g.command(g.CLOSE, lcid))
                self._flush()
            self._tx_cond.notify_all()

    def _alloc_lcid(self) -> int:
        for _ in range(g.MAX_CID):
            lcid = self._next_lcid
            self._next_lcid = lcid % g.MAX_CID + 1
            if lcid not in self._lcids:
                return lcid
        raise RpmsgError(errno.ENOSPC, f"{self.name}: every GLINK channel id is in use")

    def channels(self) -> dict[str, tuple[bool, bool]]:
        """Each known channel: (open here, open at the peer)."""
        with self._tx_cond:
            return {n: (bool(c.lcid), bool(c.rcid)) for n, c in self._channels.items()}

    # -- sending ---------------------------------------------------------------------
    def send(self, src: int, dst: int, data: bytes, *, block: bool, timeout: float | None) -> None:
        n = len(data)
        if n > self._mtu:
            raise RpmsgError(
                errno.EMSGSIZE,
                f"message of {n} bytes exceeds the largest GLINK message ({self._mtu} bytes) "
                f"on {self.name}",
            )
        ch = self._channel_of(src)
        if TRACER.enabled:
            TRACER.sent(self)
        deadline = time.monotonic() + (self.send_timeout if timeout is None else timeout)
        with self._locked():
            iid = self._take_intent(ch, n)
            if iid is None:
                if not block:
                    self._check_open(ch)
                    raise RpmsgError(
                        errno.EBUSY,
                        f"no free intent of {n} bytes from the remote on channel {ch.name!r}",
                    )
                iid = self._wait(lambda: self._intent_or_request(ch, n), deadline, ch, "intent")
            try:
                self._write_data(ch, iid, data, block, deadline)
            except BaseException:
                size = ch.used_intents.pop(iid, None)
                if size is not None and ch.ept is not None:  # not sent: give it back
                    ch.free_intents[iid] = size
                raise

    def _channel_of(self, src: int) -> _Channel:
        if self.failure is not None:
            raise self.dead_error()
        ch = self._by_addr.get(src)
        if ch is None:
            raise RpmsgError(
                errno.ENOTCONN,
                f"endpoint {src} on {self.name} has no GLINK channel: GLINK endpoints are "
                "channels opened by name (create the endpoint with a name)",
            )
        return ch

    def _check_open(self, ch: _Channel) -> None:
        if self.failure is not None:
            raise self.dead_error()
        if ch.ept is None:
            raise RpmsgError(errno.EPIPE, f"GLINK channel {ch.name!r} was closed here")
        if ch.peer_closed and not ch.rcid:
            raise RpmsgError(
                errno.EPIPE,
                f"the remote closed GLINK channel {ch.name!r} (until it opens it again)",
            )

    def _take_intent(self, ch: _Channel, n: int) -> int | None:
        """The smallest free intent of at least ``n`` bytes, now in use."""
        best, best_size = None, 0
        for iid, size in ch.free_intents.items():
            if size >= n and (best is None or size < best_size):
                best, best_size = iid, size
                if size == n:
                    break
        if best is not None:
            ch.used_intents[best] = ch.free_intents.pop(best)
        return best

    def _intent_or_request(self, ch: _Channel, n: int) -> int | None:
        """Under the lock, while waiting: an intent if one is free, else ask for one."""
        self._check_open(ch)
        iid = self._take_intent(ch, n)
        if iid is not None:
            return iid
        coming_back = any(size >= n for size in ch.used_intents.values())
        if ch.intent_request is False:  # refused: wait for one in use, if any fits
            ch.intent_request = None
            ch.grow = False
            if not coming_back:
                raise RpmsgError(
                    errno.EAGAIN, f"the remote refused an intent of {n} bytes on {ch.name!r}"
                )
        # Ask for one when none that fits will come back, or to grow the pipeline up
        # to INTENTS_WANTED while the remote grants them.  Not before the remote has
        # opened: its INTENTs come when it does.
        wanted = not coming_back or (
            ch.grow and len(ch.used_intents) + len(ch.free_intents) < INTENTS_WANTED
        )
        if ch.intent_request is None and ch.rcid and wanted:
            ch.intent_request = True
            self._queue(g.command(g.RX_INTENT_REQ, ch.lcid, n))
            self._flush()
        return None

    def _write_data(
        self, ch: _Channel, iid: int, data: bytes, block: bool, deadline: float
    ) -> None:
        """Write ``data`` as TX_DATA and TX_DATA_CONT chunks.  Without blocking, all of
        it must fit now; once a chunk is out, the rest waits as long as it takes (a
        half-sent message would hold the remote's intent forever)."""
        n, chunk = len(data), self._chunk
        sizes = [min(chunk, n - at) for at in range(0, max(n, 1), chunk)]
        need = [g.pad8(g.DATA_HDR.size + size) for size in sizes]
        if not block and not self._room(sum(need)):
            if sum(need) + _RESERVE >= self.spec.fifo_size:
                raise RpmsgError(
                    errno.EINVAL,
                    f"a {n}-byte message cannot be sent without blocking through the "
                    f"{self.spec.fifo_size}-byte FIFO of {self.name}: use send()",
                )
            self._ask_read_notif()
            raise RpmsgError(errno.EAGAIN, f"the GLINK FIFO of {self.name} is full")
        view = memoryview(data)
        at, cmd = 0, g.TX_DATA
        for size, total in zip(sizes, need, strict=True):
            if not self._room(total):
                if at:
                    self._kick()  # the chunks so far: the reader can start on them
                self._wait(partial(self._room_or_none, total), deadline, ch, "room")
            left = n - at - size
            self._tx.write(
                g.data_header(cmd, ch.lcid, iid, size, left),
                view[at : at + size],
                bytes(total - g.DATA_HDR.size - size),
            )
            at += size
            cmd = g.TX_DATA_CONT
            if left and at == size:
                deadline = float("inf")
        self._kick()

    def _room_or_none(self, nbytes: int) -> int | None:
        """While waiting for room: 1 once there is, else make sure the reader will
        kick us after it has read (``READ_NOTIF``, which also kicks it)."""
        if self._room(nbytes):
            return 1
        self._ask_read_notif()
        return None

    def _room(self, nbytes: int) -> bool:
        """Whether ``nbytes`` fit after the queued replies (which go first)."""
        self._flush()
        return not self._ctl and self._tx.free() >= nbytes + _RESERVE

    def _wait(
        self, attempt: Callable[[], int | None], deadline: float, ch: _Channel, what: str
    ) -> int:
        """Retry ``attempt`` (tx lock held) until it gives a result.  After a failed try
        this thread reads the peer's commands itself if it may (it is the receive
        context, or the receive context is free) and tries again; otherwise, or if
        that did not help, it sleeps until the receive context wakes it."""
        wait = 50e-6
        read_peer = True
        self._tx_waiters += 1
        try:
            while True:
                self._check_open(ch)
                got = attempt()
                if got is not None:
                    return got
                if read_peer and self._read_peer():
                    read_peer = False
                    continue
                read_peer = True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RpmsgError(
                        errno.ETIMEDOUT,
                        f"no {what} on GLINK channel {ch.name!r} of {self.name} in time: "
                        "the remote is not consuming messages",
                    )
                self._tx_cond.wait(min(wait, remaining))
                wait = min(wait * 2, _MAX_WAIT_SLICE)
        finally:
            self._tx_waiters -= 1

    def _read_peer(self) -> bool:
        """Read the peer's commands from a waiting sender (tx lock held); False if the
        receive context is busy in another thread."""
        if self.in_rx_context():
            self._pump_locked()
            return True
        if not self._rx_lock.acquire(blocking=False):
            return False
        self._tx_cond.release()
        try:
            self._drain_locked()
        finally:
            self._rx_lock.release()
            self._tx_cond.acquire()
        return True

    def _ask_read_notif(self) -> None:
        """Send ``READ_NOTIF`` (and kick) unless the last one is still unread."""
        mark = self._read_notif_mark
        if (mark is None or self._tx.read_past(mark)) and self._tx.free() >= _RESERVE:
            self._tx.write(_READ_NOTIF)
            self._read_notif_mark = self._tx.total
            self._notify()

    def _queue(self, cmd: bytes) -> None:
        self._ctl.append(cmd)

    def _flush(self) -> None:
        """Write queued replies while they fit; tx lock held."""
        ctl = self._ctl
        if not ctl or self.failure is not None:
            return
        wrote = False
        while ctl and self._tx.free() >= len(ctl[0]) + _RESERVE:
            self._tx.write(ctl.popleft())
            wrote = True
        if ctl:
            self._ask_read_notif()
        if wrote:
            self._kick()

    def _kick(self) -> None:
        if not self._fifos.peer_polling():
            self._notify()

    def set_flow_control(self, src: int, pause: bool, dst: int) -> None:
        """Send ``SIGNALS``: DTR|RTS asks the remote to pause, 0 lets it resume."""
        ch = self._channel_of(src)
        with self._locked():
            self._check_open(ch)
            sigs = g.SIG_DTR_DSR | g.SIG_RTS_CTS if pause else 0
            self._queue(g.command(g.SIGNALS, ch.lcid, sigs))
            self._flush()

    def can_send(self, src: int) -> bool:
        with self._tx_cond:
            ch = self._by_addr.get(src)
            try:
                room = self._tx.free() >= _RESERVE + g.DATA_HDR.size + 8
            except FifoError:
                return False
            return self.failure is None and ch is not None and bool(ch.free_intents) and room

    def when_can_send(self, src: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once a send from ``src`` finds an intent (or the link fails)."""
        with self._tx_cond:
            ch = self._by_addr.get(src)
            if self.failure is None and ch is not None and not ch.free_intents:
                self._space_waiters.append((ch, callback))
                return
        callback()

    def _wake_all(self, _error: OSError) -> None:
        with self._tx_cond:
            waiters, self._space_waiters = self._space_waiters, []
            self._tx_cond.notify_all()
        for _ch, cb in waiters:
            cb()

    # -- receiving -------------------------------------------------------------------
    def handle_notify(self) -> None:
        with self._locked():
            if self._tx_waiters:
                self._tx_cond.notify_all()
            self._flush()
        self.poll_rx()

    def rx_pending(self) -> bool:
        if self.failure is not None:
            return False  # nothing will be dispatched any more
        try:
            return self._rx.available() > 0
        except FifoError:
            return True  # let the drain find it and fail the link

    def suppress_rx(self) -> None:
        self._fifos.set_polling(True)

    def unsuppress_rx(self) -> bool:
        self._fifos.set_polling(False)
        return self.rx_pending()

    def _drain_rx(self) -> int:
        delivered = 0
        pending = self._pending
        while True:
            with self._tx_cond:
                self._pump_locked()
            if not pending:
                return delivered
            while pending:
                run, is_message = pending.popleft()
                run()
                delivered += is_message

    def _pump_locked(self) -> None:
        """Read every complete command from the peer; tx lock and rx context held."""
        rx = self._rx
        handled = False
        while True:
            avail = rx.available()
            if avail < g.HDR.size:
                break
            head = rx.peek(g.DATA_HDR.size if avail >= g.DATA_HDR.size else g.HDR.size)
            length = self._length(head)
            if length > avail:
                if length >= self.spec.fifo_size:
                    raise FifoError(rx.name, f"a {length}-byte command cannot fit in the FIFO")
                break
            body = rx.peek(length, 0)
            rx.advance(length)
            self._handle(body)
            handled = True
        if self._kick_after_read:
            self._kick_after_read = False
            self._notify()
        if handled:
            self._flush()
            self._tx_cond.notify_all()

    def _length(self, head: bytes) -> int:
        """The framed length of the command starting with ``head``."""
        cmd: int
        p2: int
        cmd, _p1, p2 = g.HDR.unpack_from(head)
        if cmd in (g.TX_DATA, g.TX_DATA_CONT):
            if len(head) < g.DATA_HDR.size:
                return g.DATA_HDR.size
            chunk: int = g.DATA_HDR.unpack_from(head)[3]
            return g.pad8(g.DATA_HDR.size + chunk)
        if cmd == g.OPEN:
            if not 1 < p2 <= g.NAME_MAX:
                raise FifoError(self._rx.name, f"OPEN with a {p2}-byte name")
            return g.pad8(g.HDR.size + p2)
        if cmd == g.INTENT:
            if p2 > MAX_INTENTS:
                raise FifoError(self._rx.name, f"INTENT advertising {p2} intents at once")
            return g.HDR.size + p2 * g.INTENT_PAIR.size
        if cmd in g.COMMAND_NAMES:
            return g.HDR.size
        raise FifoError(self._rx.name, f"unknown GLINK command {cmd}")

    def _handle(self, raw: bytes) -> None:
        cmd, p1, p2 = g.HDR.unpack_from(raw)
        if cmd in (g.TX_DATA, g.TX_DATA_CONT):
            self._rx_data(cmd, raw)
        elif cmd in (g.RX_DONE, g.RX_DONE_W_REUSE):
            self._rx_done(p1, p2, reuse=cmd == g.RX_DONE_W_REUSE)
        elif cmd == g.INTENT:
            self._rx_intents(p1, raw)
        elif cmd == g.OPEN:
            self._rx_open(p1, raw[g.HDR.size : g.HDR.size + p2])
        elif cmd == g.CLOSE:
            self._rx_close(p1)
        elif cmd == g.OPEN_ACK:
            if p1 not in self._lcids:
                log.warning("%s: OPEN_ACK for unknown channel id %d ignored", self.name, p1)
        elif cmd == g.CLOSE_ACK:
            ch = self._lcids.pop(p1, None)
            if ch is not None:
                self._forget_if_unused(ch)
        elif cmd == g.RX_INTENT_REQ:
            self._rx_intent_request(p1, p2)
        elif cmd == g.RX_INTENT_REQ_ACK:
            ch = self._peer_channel(p1, "RX_INTENT_REQ_ACK")
            if ch is not None:  # granted: the INTENT came first; a refusal is reported
                ch.intent_request = None if p2 else False
        elif cmd == g.READ_NOTIF:
            self._kick_after_read = True
        elif cmd == g.SIGNALS:
            self._rx_signals(p1, p2)
        elif cmd == g.VERSION:
            self.peer_version = p1
            self._queue(g.command(g.VERSION_ACK, g.GLINK_VERSION, 0))
        elif cmd == g.VERSION_ACK:
            self.peer_version = p1
        if cmd in (g.VERSION, g.VERSION_ACK) and p1 != g.GLINK_VERSION:
            log.warning("%s: the remote speaks GLINK version %d, not %d", self.name, p1, 1)

    def _peer_channel(self, rcid: int, what: str) -> _Channel | None:
        ch = self._rcids.get(rcid)
        if ch is None:
            log.warning(
                "%s: %s for channel id %d, which the remote never opened", self.name, what, rcid
            )
        return ch

    def _rx_open(self, rcid: int, raw_name: bytes) -> None:
        name = raw_name.rstrip(b"\0").decode(errors="replace")
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = _Channel(name)
        elif ch.rcid:
            log.warning("%s: the remote opened %r again without closing it", self.name, name)
            self._rcids.pop(ch.rcid, None)
        ch.rcid = rcid
        ch.peer_closed = False
        self._rcids[rcid] = ch
        self._queue(g.command(g.OPEN_ACK, rcid))
        bound = ch.ept is not None
        self._pending.append((lambda: self._tell(name, True, bound), False))

    def _rx_close(self, rcid: int) -> None:
        ch = self._peer_channel(rcid, "CLOSE")
        self._queue(g.command(g.CLOSE_ACK, rcid))
        if ch is None:
            return
        del self._rcids[rcid]
        ch.rcid = 0
        ch.peer_closed = True
        ch.free_intents.clear()
        ch.used_intents.clear()
        ch.intent_request = None
        bound = ch.ept is not None
        self._forget_if_unused(ch)
        self._pending.append((lambda: self._tell(ch.name, False, bound), False))

    def _forget_if_unused(self, ch: _Channel) -> None:
        if ch.ept is None and not ch.rcid and ch not in self._lcids.values():
            self._channels.pop(ch.name, None)

    def _tell(self, name: str, opened: bool, bound: bool) -> None:
        for listener in list(self.channel_listeners):
            try:
                listener(name, opened, bound)
            except Exception:
                log.exception("%s: channel listener raised", self.name)

    def _rx_intents(self, rcid: int, raw: bytes) -> None:
        ch = self._peer_channel(rcid, "INTENT")
        if ch is None:
            return
        for i in range(g.HDR.unpack_from(raw)[2]):
            size, iid = g.INTENT_PAIR.unpack_from(raw, g.HDR.size + i * g.INTENT_PAIR.size)
            if iid in ch.used_intents:
                log.warning("%s: the remote re-advertised intent %d while in use", self.name, iid)
                continue
            ch.free_intents[iid] = size
        self._wake_space_waiters(ch)

    def _rx_done(self, rcid: int, iid: int, *, reuse: bool) -> None:
        ch = self._peer_channel(rcid, "RX_DONE")
        if ch is None:
            return
        if iid not in ch.used_intents:
            log.warning("%s: RX_DONE for intent %d, which is not in use, ignored", self.name, iid)
            return
        size = ch.used_intents.pop(iid)
        if reuse:
            ch.free_intents[iid] = size
            self._wake_space_waiters(ch)

    def _wake_space_waiters(self, ch: _Channel) -> None:
        if not self._space_waiters:
            return
        ready = [w for w in self._space_waiters if w[0] is ch]
        if ready:
            self._space_waiters = [w for w in self._space_waiters if w[0] is not ch]
            self._pending.extend((cb, False) for _ch, cb in ready)

    def _rx_intent_request(self, rcid: int, size: int) -> None:
        ch = self._peer_channel(rcid, "RX_INTENT_REQ")
        if ch is None or not ch.lcid:
            return
        granted = size <= self._mtu and len(ch.local_intents) < MAX_INTENTS
        if granted:
            # Rounded up to a power of two: a sender whose messages keep growing by a
            # few bytes then asks log2 times, not once per size (and never hits the limit).
            size = min(self._mtu, 1 << max(0, size - 1).bit_length())
            iid = next(self._iids)
            ch.local_intents[iid] = size
            self._queue(g.intent_command(ch.lcid, [(size, iid)]))
        else:
            log.warning(
                "%s: refused the remote an intent of %d bytes on %r (limit: %d bytes, %d intents)",
                self.name,
                size,
                ch.name,
                self._mtu,
                MAX_INTENTS,
            )
        self._queue(g.command(g.RX_INTENT_REQ_ACK, ch.lcid, int(granted)))

    def _rx_data(self, cmd: int, raw: bytes) -> None:
        _c, rcid, iid, chunk, left = g.DATA_HDR.unpack_from(raw)
        ch = self._peer_channel(rcid, "TX_DATA")
        if ch is None:
            return
        size = ch.local_intents.get(iid)
        if size is None:
            log.error(
                "%s: data on %r for intent %d, which was never given; dropped",
                self.name,
                ch.name,
                iid,
            )
            return
        data = raw[g.DATA_HDR.size : g.DATA_HDR.size + chunk]
        if cmd == g.TX_DATA and not left and chunk <= size:
            message: bytes | None = data  # the common case: one chunk, no reassembly
        else:
            message = self._reassemble(ch, cmd, iid, data, left, size)
        if message is None:
            return
        self._queue(g.command(g.RX_DONE_W_REUSE, ch.lcid, iid))
        ept = ch.ept
        if ept is None:
            return
        if TRACER.enabled:
            TRACER.received(self)
        self._pending.append((partial(ept.deliver, message, RPMSG_ADDR_ANY), True))

    def _reassemble(
        self, ch: _Channel, cmd: int, iid: int, data: bytes, left: int, size: int
    ) -> bytes | None:
        """Add a chunk to the message in intent ``iid``; the message once it is whole."""
        if cmd == g.TX_DATA:
            buf = ch.rx[iid] = bytearray(data)
        else:
            got = ch.rx.get(iid)
            if got is None:
                log.error("%s: TX_DATA_CONT on %r without TX_DATA; dropped", self.name, ch.name)
                return None
            buf = got
            buf += data
        if len(buf) + left > size:
            del ch.rx[iid]
            log.error(
                "%s: a %d-byte message on %r overflows its %d-byte intent (a buggy or "
                "hostile remote); dropped",
                self.name,
                len(buf) + left,
                ch.name,
                size,
            )
            self._queue(g.command(g.RX_DONE_W_REUSE, ch.lcid, iid))
            return None
        if left:
            return None
        del ch.rx[iid]
        return bytes(buf)

    def _rx_signals(self, rcid: int, sigs: int) -> None:
        ch = self._peer_channel(rcid, "SIGNALS")
        if ch is None or ch.ept is None:
            return
        ept = ch.ept
        paused = bool(sigs & (g.SIG_DTR_DSR | g.SIG_RTS_CTS))
        self._pending.append((lambda: ept.flow_changed(paused), False))

    # -- a dead peer -----------------------------------------------------------------
    def unconsumed(self) -> dict[int, int]:
        """Per source address, how many sent messages the peer never read."""
        counts: dict[int, int] = {}
        with self._tx_cond:
            try:
                raw = self._tx.unread()
            except FifoError:
                return counts
            pos = 0
            while pos + g.HDR.size <= len(raw):
                try:
                    length = self._length(raw[pos : pos + g.DATA_HDR.size])
                except FifoError:
                    break
                cmd, lcid, _p2 = g.HDR.unpack_from(raw, pos)
                ch = self._lcids.get(lcid)
                if cmd == g.TX_DATA and ch is not None and ch.ept is not None:
                    counts[ch.ept.addr] = counts.get(ch.ept.addr, 0) + 1
                pos += length
        return counts


class GlinkChannels:
    """On the host: channels the remote opens become rpmsg devices on ``bus`` (as the
    kernel registers a device for a remotely opened GLINK channel), and go away when it
    closes them, which releases their endpoints."""

    def __init__(self, bus: RpmsgBus, link: GlinkLink) -> None:
        self.bus = bus
        self.link = link
        link.channel_listeners.append(self._on_channel)

    def _on_channel(self, name: str, opened: bool, bound: bool) -> None:
        if opened:
            if not bound:
                try:
                    self.bus.add_device(RpmsgDevice(self.link, name))
                except RpmsgError as exc:
                    log.warning("%s: channel %r ignored: %s", self.link.name, name, exc.strerror)
            return
        for rpdev in self.bus.devices(name):
            if rpdev.link is self.link and not rpdev.announce:
                self.bus.remove_device(
                    rpdev, RpmsgError(errno.EPIPE, f"remote closed GLINK channel {name!r}")
                )
