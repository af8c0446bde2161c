"""GLINK's channel and intent protocol, as a state machine without I/O (like h11).

One :class:`GlinkProtocol` is one side of an edge: which channels are open here and at
the peer, under which ids, which receive buffers (*intents*) each side has offered, and
the messages being reassembled.  It reads decoded commands (:func:`amplink.wire.glink.
parse_command`) with :meth:`~GlinkProtocol.receive` and the local side's requests
(:meth:`~GlinkProtocol.open`, :meth:`~GlinkProtocol.take_intent`...), and answers with:

* :attr:`~GlinkProtocol.output`: encoded commands to write to the peer, in order;
* :attr:`~GlinkProtocol.events`: what the peer did that the user side must hear of, as
  typed events (:class:`RemoteOpened`, :class:`RemoteClosed`, :class:`MessageReceived`,
  :class:`IntentsAvailable`, :class:`FlowChanged`; NamedTuples: tell them apart by
  type), oldest first, for the caller to take;
* :attr:`~GlinkProtocol.kick_after_read`: the peer asked to be kicked (``READ_NOTIF``).

Who writes the output into a FIFO, kicks, locks and delivers the events is the link's
business (:class:`amplink.rpmsg.glink_link.GlinkLink`); this module is tested without
shared memory or threads.  What the peer sends is not trusted: a command about a
channel or intent that does not exist (or data for an intent that still holds a
message) is logged and dropped, a message that overflows its intent is dropped (its
intent is given back), intent requests beyond ``max_message`` bytes or
:data:`~amplink.wire.glink.MAX_INTENTS` are refused.

A received message keeps its intent until the user side says it was consumed
(:meth:`~GlinkProtocol.rx_done`), so a receiver that cannot take more stops the
sender: it runs out of intents and waits, instead of the receiver dropping.
"""

from __future__ import annotations

import errno
import itertools
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from amplink.errors import RpmsgError
from amplink.ratelimit import log_ratelimited
from amplink.rpmsg.core import RpmsgLink
from amplink.wire import glink as g

log = logging.getLogger(__name__)

_RX_DONE_PACK = g.HDR.pack  # RX_DONE is a bare header
DEFAULT_INTENTS = ((1024, 5),)  # (size, count) pairs advertised when a channel opens
INTENTS_WANTED = 128  # a sender asks for intents until it has this many in flight
MIN_GRANT = 1024  # the smallest intent granted on request (as the default ones)


class RemoteOpened(NamedTuple):
    """The peer opened channel ``name``; ``bound``: it is open here too."""

    name: str
    bound: bool


class RemoteClosed(NamedTuple):
    """The peer closed channel ``name``; ``bound``: it is still open here."""

    name: str
    bound: bool


class MessageReceived(NamedTuple):
    """A whole message arrived on channel ``name`` in our intent ``iid``, which stays
    lent until :meth:`GlinkProtocol.rx_done` says the message was consumed."""

    name: str
    data: bytes
    iid: int


class IntentsAvailable(NamedTuple):
    """The peer offered intents on channel ``name``, or gave one back: a waiting
    sender may find one now (reported while :attr:`GlinkProtocol.watch_intents`)."""

    name: str


class FlowChanged(NamedTuple):
    """The peer asked to pause (``paused``) or resume sending on channel ``name``."""

    name: str
    paused: bool


_new_tuple = tuple.__new__
GlinkEvent = RemoteOpened | RemoteClosed | MessageReceived | IntentsAvailable | FlowChanged


@dataclass(eq=False)
class Channel:
    """One channel name's state on this side."""

    name: str
    lcid: int = 0  # ours while we have it open
    rcid: int = 0  # the peer's while it has it open
    peer_closed: bool = False  # the peer had it open and closed it
    free_intents: dict[int, int] = field(default_factory=dict)  # the peer's: iid -> size
    used_intents: dict[int, int] = field(default_factory=dict)  # taken, not yet done
    local_intents: dict[int, int] = field(default_factory=dict)  # ours: iid -> size
    lent: set[int] = field(default_factory=set)  # ours, holding a message not yet consumed
    rx: dict[int, bytearray] = field(default_factory=dict)  # partial messages, per iid
    intent_request: bool | None = None  # None: none pending; then granted or not
    grow: bool = True  # ask for more intents than the remote gave (until it refuses)
    smallest_offered: int = 0  # the smallest intent the peer ever offered (0: none yet)
    full_said: bool = False  # a request refused for MAX_INTENTS was logged (once)


class GlinkProtocol:
    """The protocol state of one side of an edge called ``name`` (for messages).

    ``max_message`` bounds the intents granted on request; ``intents`` are the
    ``(size, count)`` pairs offered when a channel opens here; ``link`` is the rpmsg
    link whose ``limits`` bound the channels the peer opens, the intents it advertises
    and those granted to it (refusals are counted in its ``refused``)."""

    def __init__(
        self,
        name: str,
        *,
        max_message: int,
        intents: tuple[tuple[int, int], ...] = DEFAULT_INTENTS,
        link: RpmsgLink | None = None,
    ) -> None:
        self.name = name
        self._link = link  # its limits bound what the peer makes us keep (None: none)
        self.max_message = max_message
        self._intents = intents
        self.peer_version: int | None = None
        self.kick_after_read = False
        self.watch_intents = False  # whether to report IntentsAvailable (someone waits)
        self.output: deque[bytes] = deque([g.command(g.VERSION, g.GLINK_VERSION, 0)])
        # How many commands at the end of the output are RX_DONE_W_REUSEs :meth:`rx_done`
        # queued (a caller that takes commands off the front keeps it at most
        # len(output)): when it is all of it, the output is only intents given back.
        self.rx_done_run = 0
        self.events: deque[GlinkEvent] = deque()
        self._channels: dict[str, Channel] = {}
        self._lcids: dict[int, Channel] = {}
        self._rcids: dict[int, Channel] = {}
        self._next_lcid = 1
        self._iids = itertools.count(1)

    def _say(self, command: bytes) -> None:
        """Queue ``command`` (any but :meth:`rx_done`'s) for the peer."""
        self.output.append(command)
        self.rx_done_run = 0

    def channel(self, name: str) -> Channel | None:
        """The state of channel ``name``, if it is known."""
        return self._channels.get(name)

    def channels(self) -> dict[str, tuple[bool, bool]]:
        """Each known channel: (open here, open at the peer)."""
        return {n: (bool(c.lcid), bool(c.rcid)) for n, c in self._channels.items()}

    # -- the local side --------------------------------------------------------------
    def open(self, name: str) -> int:
        """Open channel ``name`` here (``OPEN`` and our intents); its lcid.  ``EBUSY``
        if it is open here already, ``ENOSPC`` when every channel id is in use."""
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = Channel(name)
        elif ch.lcid:
            raise RpmsgError(
                errno.EBUSY, f"GLINK channel {name!r} on {self.name} already has an endpoint"
            )
        lcid = ch.lcid = self._alloc_lcid()
        self._lcids[lcid] = ch
        pairs = []
        for size, count in self._intents:
            for _ in range(count):
                iid = next(self._iids)
                ch.local_intents[iid] = size
                pairs.append((size, iid))
        self._say(g.open_command(lcid, name))
        self._say(g.intent_command(lcid, pairs))
        return lcid

    def close(self, name: str, *, tell: bool) -> None:
        """Close channel ``name`` here; ``tell``: send ``CLOSE`` (not on a dead link).
        The lcid stays taken until the peer acknowledges."""
        ch = self._channels.get(name)
        if ch is None or not ch.lcid:
            return
        ch.local_intents.clear()
        ch.lent.clear()
        ch.rx.clear()
        ch.full_said = False
        lcid, ch.lcid = ch.lcid, 0
        if tell:
            self._say(g.command(g.CLOSE, lcid))
        else:
            self._lcids.pop(lcid, None)
            self._forget_if_unused(ch)

    def lcid(self, name: str) -> int:
        """Our id of channel ``name`` (0 if it is not open here)."""
        ch = self._channels.get(name)
        return ch.lcid if ch is not None else 0

    def name_of(self, lcid: int) -> str | None:
        """The channel ``lcid`` (ours) belongs to, if it is open here."""
        ch = self._lcids.get(lcid)
        return ch.name if ch is not None and ch.lcid == lcid else None

    def check_open(self, name: str) -> None:
        """``EPIPE`` unless channel ``name`` is open here and not closed by the peer."""
        ch = self._channels.get(name)
        if ch is None or not ch.lcid:
            raise RpmsgError(errno.EPIPE, f"GLINK channel {name!r} was closed here")
        if ch.peer_closed and not ch.rcid:
            raise RpmsgError(
                errno.EPIPE,
                f"the remote closed GLINK channel {name!r} (until it opens it again)",
            )

    def can_send(self, name: str, n: int = 0) -> bool:
        """Whether the peer has a free intent of at least ``n`` bytes on ``name``."""
        ch = self._channels.get(name)
        return ch is not None and any(size >= n for size in ch.free_intents.values())

    def take_intent(self, name: str, n: int) -> int | None:
        """The smallest free intent of at least ``n`` bytes on ``name``, now in use."""
        ch = self._channels[name]
        free = ch.free_intents
        best, best_size = None, 0
        for iid, size in free.items():
            if size >= n and (best is None or size < best_size):
                best, best_size = iid, size
                if size in (n, ch.smallest_offered):
                    break  # none can fit better
        if best is not None:
            ch.used_intents[best] = free.pop(best)
        return best

    def intent_or_request(self, name: str, n: int, *, in_callback: bool = False) -> int | None:
        """While a sender waits: an intent if one is free, else ask the peer for one
        (``RX_INTENT_REQ``); ``EAGAIN`` if the peer refused and none that fits is in use,
        ``EPIPE`` if the channel closed.  ``in_callback``: the sender is this side's
        receive context (sending from a callback), so messages the peer sends meanwhile
        wait here, holding the peer's intents, and the peer may be waiting inside a
        callback too: intents in use may not come back until this send is done."""
        self.check_open(name)
        iid = self.take_intent(name, n)
        if iid is not None:
            return iid
        ch = self._channels[name]
        coming_back = any(size >= n for size in ch.used_intents.values())
        if ch.intent_request is False:  # refused: wait for one in use, if any fits
            ch.intent_request = None
            ch.grow = False
            if not coming_back:
                raise RpmsgError(
                    errno.EAGAIN, f"the remote refused an intent of {n} bytes on {name!r}"
                )
        # Ask for one when none that fits will come back, or to grow the pipeline up
        # to INTENTS_WANTED while the remote grants them; from a callback, whenever
        # none is free (until the remote refuses), as Linux's qcom_glink_send does: two
        # sides sending from their callbacks then never wait on each other.  Not
        # before the remote has opened: its INTENTs come when it does.
        wanted = not coming_back or (
            ch.grow
            and (in_callback or len(ch.used_intents) + len(ch.free_intents) < INTENTS_WANTED)
        )
        if ch.intent_request is None and ch.rcid and wanted:
            ch.intent_request = True
            self._say(g.command(g.RX_INTENT_REQ, ch.lcid, n))
        return None

    def give_back(self, name: str, iid: int) -> None:
        """An intent taken for a message that was not sent after all."""
        ch = self._channels.get(name)
        if ch is None:
            return
        size = ch.used_intents.pop(iid, None)
        if size is not None and ch.lcid:
            ch.free_intents[iid] = size

    def rx_done(self, consumed: Iterable[tuple[str, int]]) -> None:
        """The messages received in our intents, ``(channel name, iid)`` pairs, were
        consumed: give each intent back for reuse (``RX_DONE_W_REUSE``), as Linux's
        GLINK does once the endpoint's callback has returned; nothing for a channel
        that closed here meanwhile.  (All of them at once: one call per batch of
        messages, not per message.)"""
        channels = self._channels
        out = self.output
        queued = len(out)
        for name, iid in consumed:
            ch = channels.get(name)
            if ch is None or not ch.lcid or iid not in ch.lent:
                continue
            ch.lent.discard(iid)
            out.append(_RX_DONE_PACK(g.RX_DONE_W_REUSE, ch.lcid, iid))  # 8 bytes: padded
        self.rx_done_run += len(out) - queued

    def in_flight(self, returned: Iterable[g.RxDone] = ()) -> dict[str, int]:
        """Per channel, the messages sent from here whose intent the peer has not given
        back (unread, being read, or in its callback), not counting ``returned``: the
        peer's ``RX_DONE`` commands not taken in yet.  What a dead peer never consumed."""
        back = {(cmd.cid, cmd.iid) for cmd in returned}
        out: dict[str, int] = {}
        for ch in self._channels.values():
            n = sum((ch.rcid, iid) not in back for iid in ch.used_intents)
            if n:
                out[ch.name] = n
        return out

    def signals(self, name: str, pause: bool) -> None:
        """Ask the peer to pause (DTR|RTS) or resume (0) sending on ``name``."""
        self.check_open(name)
        sigs = g.SIG_DTR_DSR | g.SIG_RTS_CTS if pause else 0
        self._say(g.command(g.SIGNALS, self._channels[name].lcid, sigs))

    # -- the peer's commands ---------------------------------------------------------
    def receive(self, cmd: g.Command) -> None:
        """Take in one command from the peer."""
        if isinstance(cmd, g.Data):
            self.receive_data(cmd.cid, cmd.iid, cmd.chunk, cmd.left, cmd.cont)
        elif isinstance(cmd, g.RxDone):
            self.receive_rx_done(cmd.cid, cmd.iid, cmd.reuse)
        elif isinstance(cmd, g.Intents):
            self._rx_intents(cmd)
        elif isinstance(cmd, g.Open):
            self._rx_open(cmd)
        elif isinstance(cmd, g.Close):
            self._rx_close(cmd)
        elif isinstance(cmd, g.OpenAck):
            if cmd.cid not in self._lcids:
                log_ratelimited(
                    log,
                    logging.WARNING,
                    self.name,
                    "%s: OPEN_ACK for unknown channel id %d ignored",
                    self.name,
                    cmd.cid,
                )
        elif isinstance(cmd, g.CloseAck):
            ch = self._lcids.pop(cmd.cid, None)
            if ch is not None:
                self._forget_if_unused(ch)
        elif isinstance(cmd, g.IntentRequest):
            self._rx_intent_request(cmd)
        elif isinstance(cmd, g.IntentRequestAck):
            ch = self._peer_channel(cmd.cid, "RX_INTENT_REQ_ACK")
            if ch is not None:  # granted: the INTENT came first; a refusal is reported
                ch.intent_request = None if cmd.granted else False
        elif isinstance(cmd, g.ReadNotif):
            self.kick_after_read = True
        elif isinstance(cmd, g.Signals):
            ch = self._peer_channel(cmd.cid, "SIGNALS")
            if ch is not None and ch.lcid:
                paused = bool(cmd.sigs & (g.SIG_DTR_DSR | g.SIG_RTS_CTS))
                self.events.append(FlowChanged(ch.name, paused))
        elif isinstance(cmd, g.Version):
            self.peer_version = cmd.version
            if not cmd.ack:
                self._say(g.command(g.VERSION_ACK, g.GLINK_VERSION, 0))
            if cmd.version != g.GLINK_VERSION:
                log_ratelimited(
                    log,
                    logging.WARNING,
                    self.name,
                    "%s: the remote speaks GLINK version %d, not %d",
                    self.name,
                    cmd.version,
                    g.GLINK_VERSION,
                )

    def _alloc_lcid(self) -> int:
        for _ in range(g.MAX_CID):
            lcid = self._next_lcid
            self._next_lcid = lcid % g.MAX_CID + 1
            if lcid not in self._lcids:
                return lcid
        raise RpmsgError(errno.ENOSPC, f"{self.name}: every GLINK channel id is in use")

    def _peer_channel(self, rcid: int, what: str) -> Channel | None:
        ch = self._rcids.get(rcid)
        if ch is None:
            log_ratelimited(
                log,
                logging.WARNING,
                self.name,
                "%s: %s for channel id %d, which is not open (never opened, or its OPEN "
                "was refused)",
                self.name,
                what,
                rcid,
            )
        return ch

    def _forget_if_unused(self, ch: Channel) -> None:
        if not ch.lcid and not ch.rcid and ch not in self._lcids.values():
            self._channels.pop(ch.name, None)

    def _refused(self, limit: str, what: str, adding: int = 1) -> bool:
        """Whether ``adding`` more (of ``what``) would go beyond the link's ``limit``
        (then it is counted and logged, rate-limited); never without a link."""
        link = self._link
        if link is None:
            return False
        have = {
            "channels": lambda: len(self._rcids),
            "intents": self._intent_count,
            "intent_bytes": self._intent_bytes,
        }[limit]()
        if have + adding <= getattr(link.limits, limit):
            return False
        exc = link.over_limit(limit, what)
        log_ratelimited(log, logging.WARNING, self.name, "%s", exc.strerror)  # as virtio's
        return True

    def _room_for(self, size: int) -> int:
        """How many more intents of ``size`` bytes the link's limits allow (silently:
        :meth:`_refused` is what counts and logs a refusal)."""
        link = self._link
        if link is None:
            return g.MAX_INTENTS
        limits = link.limits
        return min(
            limits.intents - self._intent_count(),
            (limits.intent_bytes - self._intent_bytes()) // size,
        )

    def _intent_count(self) -> int:
        return sum(
            len(c.free_intents) + len(c.used_intents) + len(c.local_intents)
            for c in self._channels.values()
        )

    def _intent_bytes(self) -> int:
        return sum(sum(c.local_intents.values()) for c in self._channels.values())

    def _rx_open(self, cmd: g.Open) -> None:
        ch = self._channels.get(cmd.name)
        if (ch is None or not ch.rcid) and self._refused("channels", f"OPEN of {cmd.name!r}"):
            return  # never acknowledged: the peer's channel stays half-open
        if ch is None:
            ch = self._channels[cmd.name] = Channel(cmd.name)
        elif ch.rcid:
            log_ratelimited(
                log,
                logging.WARNING,
                self.name,
                "%s: the remote opened %r again without closing it",
                self.name,
                cmd.name,
            )
            self._rcids.pop(ch.rcid, None)
        ch.rcid = cmd.cid
        ch.peer_closed = False
        self._rcids[cmd.cid] = ch
        self._say(g.command(g.OPEN_ACK, cmd.cid))
        self.events.append(RemoteOpened(ch.name, bool(ch.lcid)))

    def _rx_close(self, cmd: g.Close) -> None:
        ch = self._peer_channel(cmd.cid, "CLOSE")
        self._say(g.command(g.CLOSE_ACK, cmd.cid))
        if ch is None:
            return
        del self._rcids[cmd.cid]
        ch.rcid = 0
        ch.peer_closed = True
        ch.free_intents.clear()
        ch.used_intents.clear()
        ch.intent_request = None
        bound = bool(ch.lcid)
        self._forget_if_unused(ch)
        self.events.append(RemoteClosed(ch.name, bound))

    def _rx_intents(self, cmd: g.Intents) -> None:
        ch = self._peer_channel(cmd.cid, "INTENT")
        if ch is None:
            return
        for size, iid in cmd.intents:
            if iid not in ch.free_intents and self._refused("intents", f"intent {iid}"):
                break
            if iid in ch.used_intents:
                log_ratelimited(
                    log,
                    logging.WARNING,
                    self.name,
                    "%s: the remote re-advertised intent %d while in use",
                    self.name,
                    iid,
                )
                continue
            ch.free_intents[iid] = size
            if not ch.smallest_offered or size < ch.smallest_offered:
                ch.smallest_offered = size
        if self.watch_intents:
            self.events.append(IntentsAvailable(ch.name))

    def receive_rx_done(self, cid: int, iid: int, reuse: bool) -> None:
        """RX_DONE (``reuse`` False) or RX_DONE_W_REUSE on the peer's channel ``cid``:
        what :meth:`receive` does with an :class:`~amplink.wire.glink.RxDone`, without
        the tuple (the link decodes the commands of every message itself).  The
        compiled FIFO reader does the case of an intent in use while nobody watches
        for intents itself, on this object's state (``fast_rx_done`` in
        ``amplink/rpmsg/_glink.c``): a change here is made there too (the
        differential test compares them)."""
        ch = self._rcids.get(cid) or self._peer_channel(cid, "RX_DONE")
        if ch is None:
            return
        size = ch.used_intents.pop(iid, None)
        if size is None:
            log_ratelimited(
                log,
                logging.WARNING,
                self.name,
                "%s: RX_DONE for intent %d, which is not in use, ignored",
                self.name,
                iid,
            )
            return
        if reuse:
            ch.free_intents[iid] = size
            if self.watch_intents:
                self.events.append(IntentsAvailable(ch.name))

    def _rx_intent_request(self, cmd: g.IntentRequest) -> None:
        ch = self._peer_channel(cmd.cid, "RX_INTENT_REQ")
        if ch is None or not ch.lcid:
            return
        size = cmd.size
        # Rounded up to a power of two, and at least MIN_GRANT: a sender whose messages
        # keep growing by a few bytes then asks log2 times, not once per size, and the
        # intents it is given (see below) do not fill the channel's limit with ones too
        # small for its next message.
        grant = min(self.max_message, 1 << max(MIN_GRANT - 1, size - 1).bit_length())
        have = len(ch.local_intents)
        granted = (
            size <= self.max_message
            and have < g.MAX_INTENTS
            and not self._refused("intents", f"an intent of {size} bytes")
            and not self._refused("intent_bytes", f"an intent of {size} bytes", grant)
        )
        if granted:
            ch.full_said = False
            # As many as the channel has (within the limits), in one INTENT: a sender
            # that streams asks log2 times to reach a deep pipeline, not once per intent.
            count = min(have, g.MAX_INTENTS - have, self._room_for(grant))
            iids = [next(self._iids) for _ in range(max(count, 1))]
            ch.local_intents.update(dict.fromkeys(iids, grant))
            self._say(g.intent_command(ch.lcid, [(grant, iid) for iid in iids]))
        elif size > self.max_message:  # (the link's limits said their own refusal)
            log_ratelimited(
                log,
                logging.WARNING,
                self.name,
                "%s: refused the remote an intent of %d bytes on %r: larger than the "
                "largest message (%d bytes)",
                self.name,
                size,
                ch.name,
                self.max_message,
            )
        elif have >= g.MAX_INTENTS and not ch.full_said:  # a stuck reader asks on and on:
            ch.full_said = True  # said once (until an intent is granted again)
            log_ratelimited(
                log,
                logging.WARNING,
                self.name,
                "%s: the remote asked for one more receive buffer on %r, but the channel's "
                "%d intents (the most a channel may have) are all in use, %d of them "
                "holding messages not consumed here yet (a reader that stopped reading?): "
                "the remote's sends on it wait until they are (said once)",
                self.name,
                ch.name,
                have,
                len(ch.lent),
            )
        self._say(g.command(g.RX_INTENT_REQ_ACK, ch.lcid, int(granted)))

    def receive_data(self, cid: int, iid: int, chunk: bytes, left: int, cont: bool) -> None:
        """TX_DATA (``cont`` False) or TX_DATA_CONT: what :meth:`receive` does with a
        :class:`~amplink.wire.glink.Data`, without the tuple.  The compiled FIFO
        reader does the common case (a whole message in one chunk for an intent given
        and not holding one) itself, on this object's state (``fast_data`` in
        ``amplink/rpmsg/_glink.c``): a change here is made there too."""
        ch = self._rcids.get(cid) or self._peer_channel(cid, "TX_DATA")
        if ch is None:
            return
        size = ch.local_intents.get(iid)
        if size is None or iid in ch.lent:
            log_ratelimited(
                log,
                logging.ERROR,
                self.name,
                "%s: data on %r for intent %d, which %s; dropped",
                self.name,
                ch.name,
                iid,
                "was never given" if size is None else "still holds an unconsumed message",
            )
            return
        if not cont and not left and len(chunk) <= size:
            message: bytes | None = chunk  # the common case: one chunk, no reassembly
        else:
            message = self._reassemble(ch, g.Data(cid, iid, chunk, left, cont), size)
        if message is None:
            return
        ch.lent.add(iid)
        # The tuple a MessageReceived(...) call makes, without the Python-level __new__
        # that NamedTuple generates (one per message).
        self.events.append(_new_tuple(MessageReceived, (ch.name, message, iid)))

    def _reassemble(self, ch: Channel, cmd: g.Data, size: int) -> bytes | None:
        """Add a chunk to the message in its intent; the message once it is whole."""
        if not cmd.cont:
            buf = ch.rx[cmd.iid] = bytearray(cmd.chunk)
        else:
            got = ch.rx.get(cmd.iid)
            if got is None:
                log_ratelimited(
                    log,
                    logging.ERROR,
                    self.name,
                    "%s: TX_DATA_CONT on %r without TX_DATA; dropped",
                    self.name,
                    ch.name,
                )
                return None
            buf = got
            buf += cmd.chunk
        if len(buf) + cmd.left > size:
            del ch.rx[cmd.iid]
            log_ratelimited(
                log,
                logging.ERROR,
                self.name,
                "%s: a %d-byte message on %r overflows its %d-byte intent (a buggy or "
                "hostile remote); dropped",
                self.name,
                len(buf) + cmd.left,
                ch.name,
                size,
            )
            self._say(g.command(g.RX_DONE_W_REUSE, ch.lcid, cmd.iid))
            return None
        if cmd.left:
            return None
        del ch.rx[cmd.iid]
        return bytes(buf)
