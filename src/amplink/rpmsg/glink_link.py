"""rpmsg over a GLINK-style edge: the link between two FIFOs and the GLINK protocol.

The second rpmsg backend, modelled on Qualcomm GLINK.  GLINK is symmetric: host and
remote run the same :class:`GlinkLink`; the role only says which FIFO each side writes.
The protocol itself (channels, ids, intents, reassembly) is the sans-I/O
:class:`~amplink.rpmsg.glink_protocol.GlinkProtocol`; this class is the adapter around
it: it reads whole commands from the peer's FIFO and feeds them in, writes what the
protocol answers into ours, kicks the peer, and turns the protocol's events into rpmsg
(messages to endpoints, channels to listeners, intents to waiting senders).  Commands on
the wire are in :mod:`amplink.wire.glink`, the FIFOs in :mod:`amplink.rpmsg.glink_fifo`.

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
  none that fits is in use).  The receiver gives an intent back (``RX_DONE_W_REUSE``)
  once its message was consumed: after the endpoint's callback returned (or the message
  was queued for ``recv``), or, on a ``zero_copy`` endpoint that held the message
  (:class:`GlinkRxBuffer`), when it is released, as Linux's ``qcom_glink_rx_done``.
  The remote writes them after each batch it read (what a dead core never consumed
  is counted from the intents that did not come back; a sender streaming to it finds
  them without waiting); the host lets its ``RX_DONE`` s go with its next command
  unless the remote waits for an intent, and neither side kicks the other for
  ``RX_DONE`` s alone unless it waits (see :mod:`amplink.wire.glink_edge`): one
  notification per message, as over virtio; nor does a reader read on, or a spinner
  stop to look, for ``RX_DONE`` s alone unless it waits (its next drain reads them).
  A side reading its FIFO is not kicked (it reads until the FIFO is empty, or until
  its drain's budget is spent and the link runs its receive path again by itself),
  and a writer kicks once until the reader has read what that kick was for.  A
  sender outside a callback asks for intents until 128 are in flight; each grant
  doubles the channel's.
* **Chunking.**  Messages larger than a chunk (8 KiB, or half the FIFO if smaller) go as
  one ``TX_DATA`` and ``TX_DATA_CONT`` commands.
* **Full FIFO.**  A sender that finds no room sends ``READ_NOTIF`` once (8 bytes are
  always kept free for it), so the reader kicks it after reading; ``trysend`` raises
  ``EAGAIN``.
* **Flow control.**  :meth:`set_flow_control` sends ``SIGNALS`` (DTR|RTS to pause, 0 to
  resume); received signals call the endpoint's flow callbacks.  Sending is not
  blocked by them, as in Linux: the application honours them.

Sending from a receive callback never deadlocks: replies to the peer's commands
(``RX_DONE``, ``OPEN_ACK``...) wait in the protocol's output until the FIFO has room,
and a sender waiting inside the receive context reads the peer's commands itself (the
events it finds are handled after the callback returns).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Literal

from amplink.errors import FifoError, RpmsgError, WireError
from amplink.irq.held_signals import HELD_SIGNALS, HeldSignals
from amplink.memory.region import SharedRegion
from amplink.ratelimit import log_ratelimited
from amplink.rpmsg import glink_ends
from amplink.rpmsg.config import UNLIMITED, RpmsgLimits
from amplink.rpmsg.core import RPMSG_ADDR_ANY, Endpoint, LentMessage, RpmsgBus, RpmsgDevice
from amplink.rpmsg.glink_fifo import EdgeFifos
from amplink.rpmsg.glink_protocol import (
    DEFAULT_INTENTS,
    FlowChanged,
    GlinkEvent,
    GlinkProtocol,
    IntentsAvailable,
    MessageReceived,
    RemoteClosed,
    RemoteOpened,
)
from amplink.rpmsg.polled import PolledLink
from amplink.tracing import TRACER
from amplink.wait import AdaptiveSpin
from amplink.wire import glink as g
from amplink.wire.glink_edge import GlinkEdgeSpec

log = logging.getLogger(__name__)

DEFAULT_SEND_TIMEOUT = 10.0  # Linux waits 10 s for an intent
_READ_NOTIF = g.command(g.READ_NOTIF)
_RESERVE = len(_READ_NOTIF)  # always free in the FIFO, for READ_NOTIF

ChannelListener = Callable[[str, bool, bool], None]


class GlinkLink(PolledLink):
    """One side of a GLINK edge (see the module docstring)."""

    def __init__(
        self,
        name: str,
        region: SharedRegion,
        edge_offset: int,
        spec: GlinkEdgeSpec,
        role: Literal["host", "remote"],
        notify: Callable[[], None],
        *,
        intents: tuple[tuple[int, int], ...] = DEFAULT_INTENTS,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        spin: AdaptiveSpin | None = None,
        limits: RpmsgLimits = UNLIMITED,
    ) -> None:
        super().__init__(name, ns_supported=False, spin=spin)
        self.role = role
        self._holds_rx_dones = role == "host"  # (see _flush)
        self.spec = spec
        self.limits = limits
        self.protocol = GlinkProtocol(
            name, max_message=spec.max_message, intents=intents, link=self
        )
        self._fifos = EdgeFifos(
            name,
            region,
            edge_offset,
            spec.fifo_size,
            role,
            glink_ends.ENDS,
        )
        self.trace_key = f"{name}@{os.fstat(region.fd).st_ino}"  # this boot's memory
        self._tx = self._fifos.tx
        self._rx = self._fifos.rx
        self._notify = notify
        self._mtu = spec.max_message
        self._chunk = min(g.MAX_CHUNK, spec.fifo_size // 2) - g.DATA_HDR.size
        self.send_timeout = send_timeout
        self.channel_listeners: list[ChannelListener] = []
        self._epts: dict[str, Endpoint] = {}  # channel name -> the endpoint bound to it
        self._names: dict[int, str] = {}  # endpoint address -> its channel's name
        self._lcids: dict[str, int] = {}  # channel name -> our id, while it is bound
        self._read_notif_mark: int | None = None  # where our last READ_NOTIF ends
        self._space_waiters: list[tuple[str, Callable[[], None]]] = []
        self._intent_waiters = 0  # senders in _wait
        self._refused_now = False  # a send or can_send found no intent since the last send
        self._awaiting = False  # what the peer was last told of both (set_awaiting_intents)
        self._wanted: dict[str, int] = {}  # channel -> size of the last send that could not go
        self._consumed: list[tuple[str, int]] = []  # (channel, intent): rx context only
        self._quiet = False  # a drain told the peer not to kick (rx context only)
        self._rx_peek = self._rx_wanted  # (see PolledLink.__init__)
        self.fail_listeners.append(self._wake_all)
        try:
            with self._tx_lock:
                self._flush()
        except FifoError as exc:
            raise self._broken(exc) from exc

    def _broken(self, exc: FifoError) -> OSError:
        """A FIFO the peer broke (found under the tx lock, which the caller has let go
        of: its ``with``, never a Python ``__enter__``, whose acquire a Ctrl-C could
        leave held): fail the link; what the caller raises."""
        self.fail(exc)
        return self.dead_error()

    @property
    def mtu(self) -> int:
        return self._mtu

    @property
    def peer_version(self) -> int | None:
        """The GLINK version the peer announced (None until it did)."""
        return self.protocol.peer_version

    def channels(self) -> dict[str, tuple[bool, bool]]:
        """Each known channel: (open here, open at the peer)."""
        with self._tx_lock:
            return self.protocol.channels()

    def watch_channels(self, callback: Callable[[str, int, bool], None]) -> None:
        """Channels the peer opens and closes (GLINK has no addresses: ``RPMSG_ADDR_ANY``)."""
        self.channel_listeners.append(
            lambda name, opened, _bound: callback(name, RPMSG_ADDR_ANY, opened)
        )

    # -- channels --------------------------------------------------------------------
    def bind(self, ept: Endpoint) -> None:
        """Open the channel named like ``ept`` (unnamed endpoints open nothing)."""
        if not ept.name:
            return
        try:
            with self._tx_lock, HELD_SIGNALS:  # (what _flush takes from the output, it writes)
                self._lcids[ept.name] = self.protocol.open(ept.name)
                self._epts[ept.name] = ept
                self._names[ept.addr] = ept.name
                self._flush()
        except FifoError as exc:
            raise self._broken(exc) from exc

    def unbind(self, ept: Endpoint) -> None:
        """Close the endpoint's channel (the peer acks; its endpoint stays bound)."""
        try:
            with self._tx_lock, HELD_SIGNALS:  # (as bind's)
                name = self._names.pop(ept.addr, None)
                if name is None or self._epts.get(name) is not ept:
                    return
                del self._epts[name]
                del self._lcids[name]
                self.protocol.close(name, tell=self.failure is None)
                self._flush()
                self._wake_senders()
        except FifoError as exc:
            raise self._broken(exc) from exc

    # -- sending ---------------------------------------------------------------------
    def send(self, src: int, dst: int, data: bytes, *, block: bool, timeout: float | None) -> None:
        n = len(data)
        if n > self._mtu:
            raise RpmsgError(
                errno.EMSGSIZE,
                f"message of {n} bytes exceeds the largest GLINK message ({self._mtu} bytes) "
                f"on {self.name}",
            )
        name = self._names.get(src)
        if name is None or self.failure is not None:
            name = self._channel_of(src)  # raises why not
        # The common case, one TX_DATA that fits now, is written here, in this frame
        # (each Python call saved is a few percent of a message's cost); the rest in
        # _send_slow.  A send is one section: a Ctrl-C waits until the intent it took
        # is written and the peer kicked (amplink.irq.held_signals); only a wait for an
        # intent or for room lets it through (it ends the wait, and the send).  A send
        # in a section already (a reply from a receive callback, in its drain's) enters
        # none for the write (one inside would only be counted), but does for a wait,
        # so that the wait does not let a signal through inside the callback.  The
        # section's methods are called, not `with` (whose lookups of them cost as much
        # as the write), and so are the tx lock's: in the section, no Ctrl-C comes
        # between its acquire() and the try that lets it go.  The peer is kicked once
        # the lock is let go (a peer woken on this CPU would otherwise run while we hold
        # it, and our receive context, wanting it next, would wait for us).
        held = HELD_SIGNALS
        entered = held.depth <= held.floor
        try:
            if entered:
                held.__enter__()
            try:
                lock = self._tx_lock
                lock.acquire()
                try:
                    proto = self.protocol
                    iid = proto.take_intent(name, n)
                    lcid = self._lcids.get(name)
                    kick = None  # not written (yet)
                    if iid is not None and n <= self._chunk and lcid is not None:
                        try:  # (the queued replies go first, in the same write)
                            kick = self._tx.put_data(proto.output, lcid, iid, data, _RESERVE)
                        except BaseException:
                            proto.give_back(name, iid)  # not written
                            raise
                    if kick is None:
                        kick = self._send_slow(
                            name, data, n, block, timeout, None if entered else held, iid
                        )
                    else:
                        proto.rx_done_run = 0
                        if TRACER.enabled:
                            TRACER.sent(self)
                        if self._wanted:
                            self._wanted.pop(name, None)
                        if self._refused_now:
                            self._refused_now = False
                            self._set_awaiting()
                finally:
                    lock.release()
                if kick:
                    self._notify()
            finally:
                if entered:
                    held.__exit__(None, None, None)
        except FifoError as exc:
            raise self._broken(exc) from exc

    def _send_slow(
        self,
        name: str,
        data: bytes,
        n: int,
        block: bool,
        timeout: float | None,
        wait_section: HeldSignals | None,
        iid: int | None,
    ) -> bool:
        """:meth:`send` (tx lock held) when its common case did not go: no intent was
        free (``iid`` None: wait for one), the message is more than a chunk, or it did
        not fit now (``iid`` is taken and given back if this raises before any of it is
        out); whether to kick the peer, which the caller does once the lock is let go.
        A send of more than a chunk, or one that waited for room, has kicked already.
        ``wait_section``: the section to enter for a wait for an intent or for room (a
        send in one already)."""
        proto = self.protocol
        deadline = None  # time.monotonic() + the timeout, once something waits
        if iid is None:
            if wait_section is None:
                iid, deadline = self._wait_intent(name, n, block, timeout)
            else:
                with wait_section:
                    iid, deadline = self._wait_intent(name, n, block, timeout)
        kick = None  # not written (yet)
        try:
            if n <= self._chunk:
                lcid = self._lcids.get(name)
                if lcid is None:  # released, or the link failed, while it waited
                    self._check_open(name)
                    raise RpmsgError(
                        errno.EPIPE,
                        f"{self.name}: channel {name!r} was closed while a send waited",
                    )
                # The queued replies go first, in one write.
                kick = self._tx.put_data(proto.output, lcid, iid, data, _RESERVE)
                if kick is not None:
                    proto.rx_done_run = 0
        except BaseException:
            proto.give_back(name, iid)  # not written
            raise
        if kick is None:
            if wait_section is None:
                self._write_data(name, iid, data, block, deadline, timeout)
            else:
                with wait_section:
                    self._write_data(name, iid, data, block, deadline, timeout)
            kick = False
        elif TRACER.enabled:
            TRACER.sent(self)
        if self._wanted:
            self._wanted.pop(name, None)
        if self._refused_now:
            self._refused_now = False
            self._set_awaiting()
        return kick

    def _wait_intent(
        self, name: str, n: int, block: bool, timeout: float | None
    ) -> tuple[int, float]:
        """No intent of ``n`` bytes was free (tx lock held): read what the peer gave
        back without a kick, then refuse (without blocking, see :meth:`_refuse_now`) or
        wait for one; the intent and the send's deadline."""
        if self.rx_pending() and self._read_peer():
            iid = self.protocol.take_intent(name, n)
            if iid is not None:
                return iid, self._deadline(timeout)
        if not block:
            self._refuse_now(name, n)
        deadline = self._deadline(timeout)
        return self._wait(partial(self._intent, name, n), deadline, name, "intent"), deadline

    def _deadline(self, timeout: float | None) -> float:
        """When a send that starts waiting now gives up (``time.monotonic()``)."""
        return time.monotonic() + (self.send_timeout if timeout is None else timeout)

    def _refuse_now(self, name: str, n: int) -> None:
        """A send that must not wait found no intent of ``n`` bytes (tx lock held): ask
        the remote for one (a later try may find it; readiness now waits for one that
        large), then ``EBUSY``; ``EMSGSIZE`` if the remote refused one and none that
        large is in use (no later try would do)."""
        self._wanted[name] = n
        self._refused_now = True
        self._set_awaiting()
        try:
            self._intent(name, n)
        except RpmsgError as exc:
            if exc.errno != errno.EAGAIN:
                raise
            del self._wanted[name]  # no later try would do: readiness does not wait for it
            raise RpmsgError(
                errno.EMSGSIZE, f"{exc.strerror}: a {n}-byte message cannot be sent on {name!r}"
            ) from None
        raise RpmsgError(
            errno.EBUSY, f"no free intent of {n} bytes from the remote on channel {name!r}"
        )

    def _channel_of(self, src: int) -> str:
        if self.failure is not None:
            raise self.dead_error()
        name = self._names.get(src)
        if name is None:
            raise RpmsgError(
                errno.ENOTCONN,
                f"endpoint {src} on {self.name} has no GLINK channel: GLINK endpoints are "
                "channels opened by name (create the endpoint with a name)",
            )
        return name

    def _check_open(self, name: str) -> None:
        if self.failure is not None:
            raise self.dead_error()
        self.protocol.check_open(name)

    def _intent(self, name: str, n: int) -> int | None:
        """While waiting (tx lock held): an intent, or a request for one is out."""
        if self.failure is not None:
            raise self.dead_error()
        iid = self.protocol.intent_or_request(name, n, in_callback=self.in_rx_context())
        if iid is None:
            self._flush()
        return iid

    def _write_data(
        self,
        name: str,
        iid: int,
        data: bytes,
        block: bool,
        deadline: float | None,
        timeout: float | None,
    ) -> None:
        """Write ``data`` as TX_DATA and TX_DATA_CONT chunks in intent ``iid``, when it
        is more than one chunk or does not fit now (:meth:`send` writes the rest).
        Without blocking, all of it must fit now; once a chunk is out, the rest waits as
        long as it takes (a half-sent message would hold the remote's intent forever).
        ``deadline``: when waiting for room gives up (None: ``timeout`` from the first
        wait).  The intent is given back if this raises before any of it is out."""
        chunks = 0  # out so far
        try:
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
                self._wanted[name] = n  # readiness now waits for room for all of it
                self._ask_read_notif()
                raise RpmsgError(errno.EAGAIN, f"the GLINK FIFO of {self.name} is full")
            view = memoryview(data)
            lcid = self.protocol.lcid(name)
            at, cmd = 0, g.TX_DATA
            for size, total in zip(sizes, need, strict=True):
                if not self._room(total):
                    if at:
                        self._kick()  # the chunks so far: the reader can start on them
                    if deadline is None:
                        deadline = self._deadline(timeout)
                    self._wait(partial(self._room_or_none, total), deadline, name, "room")
                left = n - at - size
                self._tx.write(
                    g.data_header(cmd, lcid, iid, size, left),
                    view[at : at + size],
                    pad=total - g.DATA_HDR.size - size,
                )
                chunks += 1
                at += size
                cmd = g.TX_DATA_CONT
                if left and at == size:
                    deadline = float("inf")
            if TRACER.enabled:  # its last chunk is out: the order in which the peer gets them
                TRACER.sent(self)
            self._kick()
        except BaseException:
            if not chunks:  # none of it is out: the intent goes back
                self.protocol.give_back(name, iid)
            raise

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
        held = len(self.protocol.output)  # RX_DONEs the host holds back go first too
        return (
            held == self.protocol.rx_done_run
            and self._tx.free() >= nbytes + _RESERVE + held * g.HDR.size
        )

    def _wait(
        self, attempt: Callable[[], int | None], deadline: float, name: str, what: str
    ) -> int:
        """Retry ``attempt`` (tx lock held) while the channel is open, until it gives a
        result or the deadline passes (``ETIMEDOUT``).  Between tries this thread reads
        the peer's commands itself when it may (it is the receive context, or that is
        free); otherwise it sleeps until the receive context wakes it."""

        def open_attempt() -> int | None:
            self._check_open(name)
            return attempt()

        if self.in_rx_context() and self._rx.polling:
            # This thread's drain (or spin) told the peer not to kick, but it will not
            # read on while it waits here: the kick must wake it.
            self._quiet = False
            self._rx.set_polling(False)
        self._intent_waiters += 1  # the peer kicks us for the intents it gives back,
        self._set_awaiting()  # from now on: the first attempt reads what came before
        try:
            return self._send_wait(
                open_attempt,
                deadline,
                self._read_peer,
                lambda: RpmsgError(
                    errno.ETIMEDOUT,
                    f"no {what} on GLINK channel {name!r} of {self.name} in time: "
                    "the remote is not consuming messages",
                ),
            )
        finally:
            self._intent_waiters -= 1
            if self.failure is None:
                self._set_awaiting()

    def _read_peer(self) -> bool:
        """Read the peer's commands from a waiting sender (tx lock held); False if the
        receive context is busy in another thread."""
        if self.in_rx_context():
            self._pump_locked()
            return True
        rx_lock = self._rx_lock
        if rx_lock.locked():
            return False
        self._tx_lock.release()
        try:  # (if another drain took it meanwhile: after that drain; a broken FIFO
            self._drain(blocking=True)  # fails the link, which the next attempt sees)
        finally:
            self._tx_lock.acquire()  # the caller lets it go, however this ends
        return True

    def _ask_read_notif(self) -> None:
        """Send ``READ_NOTIF`` (and kick) unless the last one is still unread."""
        mark = self._read_notif_mark
        if (mark is None or self._tx.read_past(mark)) and self._tx.free() >= _RESERVE:
            self._tx.write(_READ_NOTIF)
            self._read_notif_mark = self._tx.total
            self._notify()

    def _flush(self) -> None:
        """Write the protocol's queued commands while they fit; tx lock held.  The
        host holds back ``RX_DONE`` s while nothing else is queued and the remote
        waits for no intent (they go with its next command)."""
        proto = self.protocol
        out = proto.output
        if not out or self.failure is not None:
            return
        rx_dones = len(out) == proto.rx_done_run  # nothing but intents given back
        if rx_dones and self._holds_rx_dones and not self._fifos.peer_awaiting():
            return
        joined = out[0] if len(out) == 1 else b"".join(out)  # one publish, one kick
        kick = self._tx.put(joined, b"", len(joined), _RESERVE, rx_dones)
        if kick is None:  # not all of them fit
            kick = self._flush_some(rx_dones)
        else:
            out.clear()
            proto.rx_done_run = 0
        if kick:
            self._notify()

    def _flush_some(self, rx_dones: bool) -> bool:
        """What :meth:`_flush` does when not all of the output fits: write the commands
        that do, ask the reader to kick us once it has read (``READ_NOTIF``), and fail
        the FIFO if the peer leaves too much unread; whether to kick it."""
        proto = self.protocol
        out = proto.output
        room = self._tx.free() - _RESERVE
        batch = []
        while out and len(out[0]) <= room:
            room -= len(out[0])
            batch.append(out.popleft())
        proto.rx_done_run = min(proto.rx_done_run, len(out))
        if batch:
            self._tx.write(b"".join(batch))
        if sum(map(len, out)) > self.limits.queued_bytes:
            self.refused["queued_bytes"] = self.refused.get("queued_bytes", 0) + 1
            raise FifoError(
                self._tx.name,
                f"the remote left {sum(map(len, out))} bytes of replies unread, beyond "
                f"its limit of {self.limits.queued_bytes} (RpmsgLimits.queued_bytes): "
                "it does not read its FIFO",
            )
        self._ask_read_notif()
        return bool(batch) and self._tx.kick_needed(rx_dones)

    def _kick(self) -> None:
        if self._tx.kick_needed():
            self._notify()

    def _set_awaiting(self) -> None:
        """Publish whether anything here waits for the peer's intents: a sender in
        :meth:`_wait`, a :meth:`when_can_send` waiter, or a send or :meth:`can_send`
        that found none since the last send (tx lock held).  Only then does the peer
        kick us for the intents it gives back, and does the host write those it holds
        back (see :mod:`amplink.wire.glink_edge`).  What was published is noted last:
        cut short (a Ctrl-C outside a section), the next call publishes it again."""
        awaiting = bool(self._intent_waiters or self._space_waiters or self._refused_now)
        if awaiting != self._awaiting:
            self._fifos.set_awaiting_intents(awaiting)
            if awaiting and self.role == "remote":
                self._notify()  # the host may hold RX_DONEs back: now it writes them
            self._awaiting = awaiting

    def _read_unkicked(self) -> None:
        """Read the intents the peer gave back without kicking us (tx lock not held),
        unless this thread is the receive context, whose drain reads them next."""
        if not self.in_rx_context() and self.rx_pending():
            self._drain(blocking=True, unless_owed=True)

    def set_flow_control(self, src: int, pause: bool, dst: int) -> None:
        """Send ``SIGNALS``: DTR|RTS asks the remote to pause, 0 lets it resume."""
        name = self._channel_of(src)
        try:
            with self._tx_lock, HELD_SIGNALS:  # (as bind's)
                self._check_open(name)
                self.protocol.signals(name, pause)
                self._flush()
        except FifoError as exc:
            raise self._broken(exc) from exc

    def can_send(self, src: int) -> bool:
        for last_look in (False, True):
            with self._tx_lock:
                name = self._names.get(src)
                try:
                    if self.failure is None and name is not None and self._sendable(name):
                        return True
                except FifoError:
                    return False
                if last_look and name is not None and self.failure is None:
                    self._refused_now = True  # until a send goes: the peer gives them back
                    self._set_awaiting()
            if last_look or name is None:
                return False
            self._read_unkicked()  # intents may be back that we were not kicked for
        return False

    def _sendable(self, name: str) -> bool:
        """Whether a send on ``name`` of the size that last could not go (or of any
        size) would find an intent and FIFO room now (tx lock held)."""
        n = self._wanted.get(name, 0)
        chunks = [min(self._chunk, n - at) for at in range(0, max(n, 1), self._chunk)]
        room = sum(g.pad8(g.DATA_HDR.size + c) for c in chunks)
        return self.protocol.can_send(name, n) and self._room(room)

    def when_can_send(self, src: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once a send from ``src`` would not wait: an intent as large
        as the last send that could not go, and room in the FIFO (or the link fails)."""
        with self._tx_lock, HELD_SIGNALS:  # (a waiter added is published)
            name = self._names.get(src)
            if self.failure is None and name is not None and not self._sendable(name):
                self._space_waiters.append((name, callback))
                self.protocol.watch_intents = True
                self._set_awaiting()
                if (
                    len(self.protocol.output) == self.protocol.rx_done_run
                    and self._tx.free() >= _RESERVE
                ):
                    self._ask_read_notif()  # the reader kicks us when it has made room
                waiting = True
            else:
                waiting = False
        if waiting:
            self._read_unkicked()  # given back before the peer saw that we wait
        else:
            callback()

    def _wake_all(self, _error: OSError) -> None:
        with self._tx_lock:
            waiters, self._space_waiters = self._space_waiters, []
            self.protocol.watch_intents = False
            self._wake_senders()
        for _name, cb in waiters:
            cb()

    # -- receiving -------------------------------------------------------------------
    def handle_notify(self) -> None:
        # (The section's and the lock's methods are called, not `with`: see send.)
        held = HELD_SIGNALS
        lock = self._tx_lock
        try:
            held.__enter__()
            try:
                lock.acquire()
                try:
                    if self._tx_waiters:
                        self._wake_senders()
                    self._flush()
                finally:
                    lock.release()
            finally:
                held.__exit__(None, None, None)
        except FifoError as exc:
            raise self._broken(exc) from exc
        if self._space_waiters:  # the reader may have made room
            self._wake_space_waiters(None)
        self._drain(blocking=True, unless_owed=True)

    def rx_pending(self) -> bool:
        # Failed: nothing will be dispatched any more.  A broken index reads as
        # pending: the drain finds it and fails the link.  So do events a drain that
        # stopped on its budget left.
        return self.failure is None and (self._rx.pending() or bool(self.protocol.events))

    def suppress_rx(self) -> None:
        self._rx.set_polling(True)

    def unsuppress_rx(self) -> bool:
        self._rx.set_polling(False)
        return self._rx_wanted()

    def _rx_wanted(self) -> bool:
        """:meth:`rx_pending`, except for intents the peer gave back while nothing here
        waits for one (:meth:`FifoReader.pending_data
        <amplink.rpmsg.glink_fifo.FifoReader.pending_data>`): what a spinning receiver
        looks for, and one that stops spinning.  The next drain reads them first."""
        return self.failure is None and (self._rx.pending_data() or bool(self.protocol.events))

    def _drain_rx(self) -> int:
        """Dispatch what the peer writes until its FIFO stays empty, or until the
        drain's budget is spent: one FIFO's worth of bytes read (all that a peer that
        stopped writing can have left) or ``self._rx_slice`` s (see
        :data:`~amplink.rpmsg.polled.RX_SLICE`); what is left, the next run of the
        receive path dispatches (:meth:`_rx_more`), so that a peer that writes as fast
        as we read cannot keep this thread here (Linux's ``qcom_glink_native_rx``
        reads on while the head moves).  While messages come, the peer is told not to
        kick (it would wake our interrupt thread for what this loop reads anyway;
        after a drain that stopped on its budget it stays told, as we come back);
        before returning, the head is looked at once more after a fence, as
        :meth:`~amplink.rpmsg.glink_fifo.FifoWriter.kick_needed` relies on.  The
        intents of what was consumed go back after every batch (a sender streaming to
        us finds them without waiting), not only once the stream pauses.  A message
        for an endpoint that only queues it (no callback, not ``zero_copy``: queueing
        runs no user code) is queued in the tx-lock section that read it, and its
        intent given back in the same section; the others are handled with the lock
        let go (their callbacks send)."""
        delivered = 0
        proto = self.protocol
        events = proto.events  # found while reading: handled after, unlocked (most)
        lock = self._tx_lock
        epts = self._epts
        consumed = self._consumed
        rx = self._rx
        monotonic = time.monotonic
        budget = self.spec.fifo_size
        end = monotonic() + self._rx_slice
        taker = self._rx_taker
        more = False  # the budget is spent and the peer wrote more
        read = True  # read the FIFO: first, and then once the head moved
        try:
            while True:
                lock.acquire()  # (the drain is a section: see send)
                try:
                    if read:  # (as _pump_locked, in this frame: one call less)
                        flushed = bool(consumed)  # (the replies are written then)
                        if flushed:
                            proto.rx_done(consumed)
                            consumed.clear()
                        at = rx.feed(proto)
                        budget -= at
                        if proto.kick_after_read:
                            proto.kick_after_read = False
                            self._notify()
                        if flushed:
                            self._flush()
                        if (flushed or at) and self._tx_waiters:
                            self._wake_senders()
                        # Messages for endpoints that only queue them (no callback, no
                        # zero copy) are queued here, in this section, and their intents
                        # go back in it: no second section for them.
                        while events:
                            event = events[0]
                            if event.__class__ is not MessageReceived:
                                break
                            name, data, iid = event
                            ept = epts.get(name)
                            if ept is None or ept.callback is not None or ept.zero_copy:
                                break
                            events.popleft()
                            if TRACER.enabled:
                                TRACER.received(self)
                            ept.deliver(data, RPMSG_ADDR_ANY)
                            consumed.append((name, iid))
                            delivered += 1
                        if consumed and not events:
                            flushed = True
                            proto.rx_done(consumed)
                            consumed.clear()
                            self._flush()
                    elif consumed:  # the events were handled: their intents go back
                        flushed = True
                        proto.rx_done(consumed)
                        consumed.clear()
                        self._flush()
                    else:
                        flushed = False
                    if not events:
                        self._rx_owed = False  # (before the fence: see _drain)
                        if not rx.settle(self._quiet):  # (polling off if we set it, a fence)
                            self._quiet = False
                            if not flushed and proto.output:
                                self._flush()
                            return delivered
                        read = True  # the peer wrote more
                        if budget > 0 and monotonic() < end:
                            continue
                        more = True  # the budget is spent: the next run reads on
                        self._give_back()
                        return delivered
                finally:
                    lock.release()
                if not rx.polling:
                    rx.set_polling(True)
                    self._quiet = True
                while events:  # a reply sent from a callback takes the RX_DONEs along
                    event = events.popleft()
                    if isinstance(event, MessageReceived):
                        if TRACER.enabled:  # every message, in the order the peer sent them
                            TRACER.received(self)
                        name, data, iid = event
                        ept = epts.get(name)
                        if taker and ept is not None and ept.callback is not None:
                            events.appendleft(event)  # for the worker (see _drain_as_taker)
                            more = True
                            with lock:
                                self._give_back()
                            return delivered
                        if ept is None:
                            consumed.append((name, iid))
                        elif not ept.zero_copy:
                            ept.deliver(data, RPMSG_ADDR_ANY)
                            consumed.append((name, iid))
                            delivered += 1
                        else:
                            self._lend(ept, name, iid, data)
                            delivered += 1
                    else:
                        self._handle(event)
                    if events and monotonic() >= end:  # (at least one per drain)
                        more = True  # the events left go first in the next drain
                        with lock:
                            self._give_back()
                        return delivered
                # The intents go back, then a look at the head says whether to read
                # on (if the budget allows: else the next run of the receive path does).
                read = False
        finally:
            if more:
                self._rx_more()  # (we come back by ourselves: no kick is needed)
            elif self._quiet:
                self._quiet = False
                rx.set_polling(False)

    def _give_back(self) -> None:
        """A drain stops on its budget (tx lock held): the intents of what it consumed
        go back now, with whatever else the protocol has to say."""
        if self._consumed:
            self.protocol.rx_done(self._consumed)
            self._consumed.clear()
        self._flush()

    def _pump_locked(self) -> None:
        """Read for a sender waiting in the receive context (tx lock held): give back
        the intents of the messages delivered before it, feed every complete command
        from the peer to the protocol (:meth:`FifoReader.feed
        <amplink.rpmsg.glink_fifo.FifoReader.feed>`, which breaks the FIFO if the
        stream cannot be framed) and write the protocol's answers.  A drain does the
        same in its own frame (:meth:`_drain_rx`)."""
        proto = self.protocol
        consumed = self._consumed
        handled = bool(consumed)
        if handled:
            proto.rx_done(consumed)
            consumed.clear()
        at = self._rx.feed(proto)
        if proto.kick_after_read:
            proto.kick_after_read = False
            self._notify()
        if handled or at:
            self._flush()
            if self._tx_waiters:
                self._wake_senders()

    def _lend(self, ept: Endpoint, name: str, iid: int, data: bytes) -> None:
        """Deliver a message to a ``zero_copy`` endpoint with its intent lent, which goes
        back now unless the endpoint holds the message."""
        buf = GlinkRxBuffer(self, name, iid, data)
        ept.deliver(buf, RPMSG_ADDR_ANY)  # type: ignore[arg-type]
        if not buf.held:
            self._consumed.append((name, iid))

    def _handle(self, event: GlinkEvent) -> None:
        """What the protocol found other than a message, outside the tx lock."""
        if isinstance(event, IntentsAvailable):
            self._wake_space_waiters(event.name)
        elif isinstance(event, RemoteOpened | RemoteClosed):
            for listener in list(self.channel_listeners):
                try:
                    listener(event.name, isinstance(event, RemoteOpened), event.bound)
                except Exception:
                    log.exception("%s: channel listener raised", self.name)
        elif isinstance(event, FlowChanged):
            ept = self._epts.get(event.name)
            if ept is not None:
                ept.flow_changed(event.paused)

    def _lent_rx_done(self, name: str, iid: int) -> None:
        """A held message was released (any thread): its intent goes back to the peer."""
        try:
            with self._tx_lock, HELD_SIGNALS:  # (as bind's)
                if self.failure is None:
                    self.protocol.rx_done([(name, iid)])
                    self._flush()
        except FifoError as exc:
            self.fail(exc)  # the peer broke its FIFO: nothing to give back
        except RpmsgError:
            pass  # the link failed: the peer is gone, nothing to give back

    def _wake_space_waiters(self, name: str | None) -> None:
        """Call the waiters (of channel ``name``, or all) whose send would go now."""
        with self._tx_lock:
            try:
                ready = [
                    w for w in self._space_waiters if name in (None, w[0]) and self._sendable(w[0])
                ]
            except FifoError:
                ready = list(self._space_waiters)  # let them find out the link failed
            if ready:
                self._space_waiters = [w for w in self._space_waiters if w not in ready]
                self.protocol.watch_intents = bool(self._space_waiters)
                self._set_awaiting()
        for _name, cb in ready:
            cb()

    # -- a dead peer -----------------------------------------------------------------
    def unconsumed(self) -> dict[int, int]:
        """Per source address, how many sent messages the peer never consumed: their
        intents never came back (they were unread, or being handled when it died; the
        peer gives an intent back only once its callback is done).  ``RX_DONE``s it
        wrote that we have not read yet count as given back."""
        with self._tx_lock:
            returned: list[g.RxDone] = []
            try:
                raw = self._rx.peek(self._rx.available())
            except FifoError:
                raw = b""
            pos = 0
            while pos + g.HDR.size <= len(raw):
                try:
                    length = g.frame_length(raw[pos : pos + g.DATA_HDR.size])
                    if pos + length > len(raw):
                        break  # being written
                    cmd = g.parse_command(raw[pos : pos + length])
                except WireError:
                    break  # what a broken FIFO holds past this point is not counted
                if isinstance(cmd, g.RxDone):
                    returned.append(cmd)
                pos += length
            counts: dict[int, int] = {}
            for name, n in self.protocol.in_flight(returned).items():
                ept = self._epts.get(name)
                if ept is not None:
                    counts[ept.addr] = counts.get(ept.addr, 0) + n
            return counts


class GlinkRxBuffer(LentMessage):
    """A received message lent to a zero-copy endpoint with its intent, which goes
    back to the peer as :class:`~amplink.rpmsg.core.LentMessage` says."""

    __slots__ = ("_link", "iid", "name")

    def __init__(self, link: GlinkLink, name: str, iid: int, data: bytes) -> None:
        super().__init__(memoryview(data), RPMSG_ADDR_ANY)
        self._link = link
        self.name = name
        self.iid = iid

    def _give_back(self) -> None:
        self._link._lent_rx_done(self.name, self.iid)


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
                    log_ratelimited(
                        log,
                        logging.WARNING,
                        self.link.name,
                        "%s: channel %r ignored: %s",
                        self.link.name,
                        name,
                        exc.strerror,
                    )
            return
        for rpdev in self.bus.devices(name):
            if rpdev.link is self.link and not rpdev.announce:
                self.bus.remove_device(
                    rpdev, RpmsgError(errno.EPIPE, f"remote closed GLINK channel {name!r}")
                )
