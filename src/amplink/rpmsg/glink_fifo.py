"""The two byte FIFOs of a GLINK edge in shared memory (layout in :mod:`amplink.wire.glink_edge`).

A FIFO is a ring of ``size`` bytes (a power of two) with a head (the next byte the
writer fills, written only by the writer) and a tail (the next byte the reader takes,
written only by the reader); one byte always stays free, so head == tail means empty.
Each side keeps its own index in a local variable and only publishes it, so a peer that
scribbles over our word cannot confuse us; the peer's index is read from shared memory
and checked on every read, because a hostile peer can write anything there.

Ordering: a writer copies the bytes, then publishes the head; a reader reads the head,
then the bytes, and publishes the tail after it has copied them out.  x86-64 keeps
stores in order and loads in order, which is all this needs (no fence: see
:mod:`amplink.memory.barrier`); only the handshakes that decide a kick fence: "I am
polling", "I wait for an intent", and a writer's look at the reader's tail against a
reader's last look at the head before it stops reading (see
:meth:`FifoWriter.kick_needed` and :meth:`FifoReader.settle`, which fence on a lock of
their FIFO end's own: the link's tx lock serialises each end, so no other thread
ever holds it).
Indices are read and written through a ``u32`` view of the header, one aligned 4-byte
access each: ``struct.pack_into`` may copy byte by byte, and a peer on another CPU could
then read half an old index and half a new one.

Every message passes through :meth:`FifoWriter.put` and :meth:`FifoReader.feed`, so
those read and check the peer's index, publish ours and decide the kick inline rather
than through helpers (a Python call costs about as much as the copy of a small
message), and a reader decodes the commands where they lie.  Those methods are also
compiled (``_glink.c``; :mod:`amplink.rpmsg.glink_ends` chooses): the classes here are
the reference both must agree with.
"""

from __future__ import annotations

import mmap
import struct
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from amplink.errors import FifoError, WireError
from amplink.memory.barrier import full_fence
from amplink.memory.region import SharedRegion
from amplink.wire import glink as g
from amplink.wire.glink_edge import EDGE_HEADER_SIZE, HOST_WORDS, REMOTE_WORDS

if TYPE_CHECKING:
    from amplink.rpmsg.glink_protocol import GlinkProtocol

_HEAD, _TAIL, _POLLING, _AWAITING = 0, 1, 2, 3  # u32 words in each side's line (the layout)
_DATA_CMDS = frozenset((g.TX_DATA, g.TX_DATA_CONT))
_RX_DONE_CMDS = frozenset((g.RX_DONE_W_REUSE, g.RX_DONE))
_HDR = g.HDR
_DATA_HDR = g.DATA_HDR
_HDR_SIZE = g.HDR.size
_DATA_HDR_SIZE = g.DATA_HDR.size
_HDR_UNPACK = g.HDR.unpack_from
_DATA_HDR_UNPACK = g.DATA_HDR.unpack_from
_DATA_HDR_PACK = g.DATA_HDR.pack
_CMD_UNPACK = struct.Struct("<H").unpack_from
LEFT_RX_DONES = 8  # RX_DONEs a reader may leave for its next look (FifoReader.settle)


class _FifoEnd:
    """What both ends share: the ring, our own index (kept locally and published), the
    peer's (read from shared memory and checked every time) and the reader's words that
    decide a kick (its polling and awaiting words); ``writer`` and ``reader`` are where
    each side's line of words starts in ``words``."""

    writes: ClassVar[bool]

    def __init__(
        self,
        name: str,
        mem: mmap.mmap,
        base: int,
        size: int,
        words: memoryview,
        writer: int,
        reader: int,
    ):
        head, tail = writer + _HEAD, reader + _TAIL
        mine_at, peer_at = (head, tail) if self.writes else (tail, head)
        self.name = name
        self._mem = mem  # the mapping: a slice of it is bytes, copied in one step
        self._base = base
        self._size = size
        self._end = base + size
        self._mask = size - 1
        self._words = words
        self._mine_at = mine_at
        self._peer_at = peer_at
        self._pos = 0
        self.total = 0  # bytes this end ever wrote or took: positions that do not wrap
        self._fence = threading.Lock()  # this end's own (see kick_needed, settle)
        self._polling_at = reader + _POLLING
        self._awaiting_at = reader + _AWAITING
        words[mine_at] = 0

    def _peer(self) -> int:
        index: int = self._words[self._peer_at]
        if index > self._mask:
            self._bad_index(index)
        return index

    def _bad_index(self, index: int) -> None:
        raise FifoError(
            self.name, f"the peer's index {index} is outside the {self._size}-byte FIFO"
        )

    def _copy(self, pos: int, n: int) -> bytes:
        mem, base = self._mem, self._base
        if pos + n <= self._size:
            return mem[base + pos : base + pos + n]
        first = self._size - pos
        return mem[base + pos : base + self._size] + mem[base : base + n - first]


class FifoWriter(_FifoEnd):
    """The producing end of one FIFO: its index is the head, the peer's the tail."""

    writes = True
    _kicked = 0  # total when we last kicked the peer for what we wrote

    def free(self) -> int:
        """Bytes that can be written now."""
        tail: int = self._words[self._peer_at]
        if tail > self._mask:
            self._bad_index(tail)
        return (tail - self._pos - 1) & self._mask

    def used(self) -> int:
        """Bytes written and not yet taken by the reader."""
        return (self._pos - self._peer()) & self._mask

    def write(self, *parts: bytes | memoryview, pad: int = 0) -> None:
        """Append ``parts``, then skip ``pad`` bytes (left as they are, as Linux's
        ``glink_smem_tx_write`` aligns its head), and publish them together; the
        caller checked :meth:`free`."""
        mem, base, size = self._mem, self._base, self._size
        pos = self._pos
        moved = 0
        for part in parts:
            n = len(part)
            if pos + n <= size:
                mem[base + pos : base + pos + n] = part
            else:
                first = size - pos
                mem[base + pos : base + size] = part[:first]
                mem[base : base + n - first] = part[first:]
            pos = (pos + n) & self._mask
            moved += n
        if pad:
            pos = (pos + pad) & self._mask
            moved += pad
        self._pos = pos
        self.total += moved
        self._words[self._mine_at] = pos  # after the bytes (x86 TSO: stores stay in order)

    def put(
        self, head: bytes, data: bytes | memoryview, total: int, keep: int, rx_done_only: bool
    ) -> bool | None:
        """Write ``total`` bytes (``head``, then ``data``, then padding) and publish
        them, if that leaves ``keep`` bytes free (None: it would not, nothing was
        written); then whether to kick the peer (:meth:`kick_needed`, inline).  What
        :meth:`free`, :meth:`write` and :meth:`kick_needed` do, in one call: every
        message goes here."""
        words = self._words
        mask = self._mask
        tail: int = words[self._peer_at]
        if tail > mask:
            self._bad_index(tail)
        pos = self._pos
        if (tail - pos - 1) & mask < total + keep:
            return None
        start = self._base + pos
        middle = start + len(head)
        end = middle + len(data)
        if end > self._end:  # it wraps
            self.write(head, data, pad=total - len(head) - len(data))
            pos, written = self._pos, self.total
        else:
            mem = self._mem
            mem[start:middle] = head
            mem[middle:end] = data
            pos = self._pos = (pos + total) & mask
            written = self.total = self.total + total
            words[self._mine_at] = pos  # after the bytes (x86 TSO: stores stay in order)
        fence = self._fence
        with fence:  # (not acquire(); release(): a Ctrl-C between would leave it held)
            pass
        if words[self._polling_at]:
            return False
        if not words[self._awaiting_at]:
            if rx_done_only:
                return False
            tail = words[self._peer_at]
            if tail > mask:
                self._bad_index(tail)
            if written - self._kicked < (pos - tail) & mask:
                return False
        self._kicked = written
        return True

    def put_data(
        self, out: deque[bytes], lcid: int, iid: int, data: bytes | memoryview, keep: int
    ) -> bool | None:
        """The commands queued in ``out``, then one ``TX_DATA`` of ``data`` (in intent
        ``iid`` of channel ``lcid``, padded to 8 bytes), in one :meth:`put`: None if
        that would not leave ``keep`` bytes free (nothing written, ``out`` as it was);
        else they are written and taken off ``out``, and whether to kick the peer.
        What a send of one chunk does."""
        n = len(data)
        hdr = _DATA_HDR_PACK(g.TX_DATA, lcid, iid, n, 0)
        total = (_DATA_HDR_SIZE + n + 7) & ~7
        if not out:
            return self.put(hdr, data, total, keep, False)
        out.append(hdr)
        head = b"".join(out)  # they go first, in one write
        out.pop()
        kick = self.put(head, data, total - _DATA_HDR_SIZE + len(head), keep, False)
        if kick is not None:
            out.clear()
        return kick

    def kick_needed(self, rx_done_only: bool = False) -> bool:
        """After writing: whether to kick the peer.  Not while it polls its FIFO.
        While it waits for an intent, yes (its waiting sender is not reading).
        Otherwise not for ``rx_done_only`` (nothing but intents given back), and not
        while it has not read all that our last kick was for: a kicked reader reads
        until its FIFO is empty and then, after a fence, looks at the head once more
        (:meth:`FifoReader.settle`), so it will find this too.  A True answer counts
        as the kick.  The fence is on a lock of this writer's own: its caller (the
        link's tx lock) serialises the writer, so it is never contended."""
        fence = self._fence
        with fence:  # (not acquire(); release(): a Ctrl-C between would leave it held)
            pass
        words = self._words
        if words[self._polling_at]:
            return False
        if not words[self._awaiting_at] and (rx_done_only or not self.read_past(self._kicked)):
            return False
        self._kicked = self.total
        return True

    def read_past(self, mark: int) -> bool:
        """Whether the reader has taken the first ``mark`` bytes ever written (a
        :attr:`total` value, so that it means the same after the ring wraps)."""
        return self.total - mark >= self.used()

    def unread(self) -> bytes:
        """What the reader has not taken yet (for counting what a dead peer never read)."""
        tail = self._peer()
        return self._copy(tail, (self._pos - tail) & self._mask)


class FifoReader(_FifoEnd):
    """The consuming end of one FIFO: its index is the tail, the peer's the head; its
    polling word tells the writer not to kick (see :meth:`set_polling`)."""

    writes = False
    polling = False  # what the peer was last told (set_polling)

    def set_polling(self, polling: bool) -> None:
        """Tell the peer whether to skip its kick after writing (we are polling, or
        reading until the FIFO is empty); :attr:`polling` says what it was last told.
        Read the FIFO after clearing it: what the peer wrote before it saw the word
        came without a kick."""
        self.polling = polling
        self._words[self._polling_at] = int(polling)
        if not polling:
            full_fence()  # (setting it needs none: a peer that missed it kicks once more)

    def settle(self, quiet: bool) -> bool:
        """Whether the peer wrote more since the last :meth:`feed` (a command left
        incomplete there does not count: a reader that reads until this is False
        stops even if a hostile peer never ends it), looked at as a reader that
        stops must (its caller serialises the reader): if ``quiet`` (it
        told the peer not to kick), tell it to kick again, and then, after a fence,
        look at the head (:meth:`FifoWriter.kick_needed` relies on this look).  If
        the peer wrote more, a ``quiet`` reader reads on and the peer is told not to
        kick again.  :meth:`set_polling`, a fence and a look at the head in one call; the
        fence is on this reader's own lock, as :meth:`FifoWriter.kick_needed`'s.

        What came since counts as nothing while it is only intents given back
        (:data:`LEFT_RX_DONES` at most) and nothing here waits for an intent (our
        awaiting word is clear): the writer kicks for those only when it is set, a
        reader that looks at the FIFO again (its next drain, or a sender that wants an
        intent) takes them, and the caller, typically a receiver whose message is in,
        does not wait for the peer's ``RX_DONE`` written just after its reply."""
        words = self._words
        polling_at = self._polling_at
        if quiet:
            words[polling_at] = 0
        fence = self._fence
        with fence:  # (not acquire(); release(): a Ctrl-C between would leave it held)
            pass
        head: int = words[self._peer_at]
        if head == self._seen or (not words[self._awaiting_at] and self._rx_dones_to(head)):
            if quiet:
                self.polling = False
            return False
        if quiet:
            words[polling_at] = 1  # (needs no fence: a peer that missed it kicks once more)
        return True

    def _rx_dones_to(self, head: int) -> bool:
        """Whether the bytes from the tail to ``head`` (the peer's index, unchecked)
        are whole ``RX_DONE`` (``_W_REUSE``) commands, :data:`LEFT_RX_DONES` at most."""
        if head > self._mask:
            return False  # (the read that follows finds it broken)
        n = (head - self._pos) & self._mask
        if not n or n % _HDR_SIZE or n > LEFT_RX_DONES * _HDR_SIZE:
            return False
        size, mask = self._size, self._mask
        for off in range(self._pos, self._pos + n, _HDR_SIZE):
            at = off & mask
            if at + 2 <= size:
                cmd = _CMD_UNPACK(self._mem, self._base + at)[0]
            else:
                cmd = _CMD_UNPACK(self._copy(at, 2))[0]
            if cmd not in _RX_DONE_CMDS:
                return False
        return True

    def available(self) -> int:
        """Bytes written by the peer and not yet taken (read before them: loads stay in
        order on x86-64)."""
        head: int = self._words[self._peer_at]
        if head > self._mask:
            self._bad_index(head)
        return (head - self._pos) & self._mask

    _seen = 0  # the head the last feed() found

    def pending(self) -> bool:
        """Whether the peer has written anything not yet taken (what a spinning poller
        asks: not checked, the read that follows checks the index)."""
        return bool(self._words[self._peer_at] != self._pos)

    def pending_data(self) -> bool:
        """:meth:`pending`, except for what :meth:`settle` may leave: intents given
        back while nothing here waits for one (what a spinning receiver asks, and one
        that stops spinning: it waits for the peer's message, not for those)."""
        words = self._words
        head: int = words[self._peer_at]
        return head != self._pos and (bool(words[self._awaiting_at]) or not self._rx_dones_to(head))

    def feed(self, proto: GlinkProtocol) -> int:
        """Frame every complete command the peer wrote and hand it to ``proto``, in
        order, then give the bytes back to the writer (one publish for the batch);
        how many were read.  The commands of every message (``TX_DATA``, ``RX_DONE``)
        are decoded where they lie, the payload copied once (no Python call but the
        protocol's per command); the rest go through
        :func:`~amplink.wire.glink.parse_command`.  A command not all there yet is
        left for the next call; ``FifoError`` if the stream cannot be framed (an
        unknown command, or one that could never fit in the FIFO)."""
        words = self._words
        mask = self._mask
        head: int = words[self._peer_at]
        if head > mask:
            self._bad_index(head)
        self._seen = head
        pos = self._pos
        avail = (head - pos) & mask
        if avail < _HDR_SIZE:
            return 0
        mem = self._mem
        start = self._base + pos
        # Offsets into the mapping: at (the next command), end (of the bytes before
        # the ring wraps), stop (of all of them)
        at = start
        end = start + (avail if head >= pos else self._size - pos)
        stop = start + avail
        while stop - at >= _HDR_SIZE:
            # Unpacked as a data header when there is room for one (the last two
            # fields then mean nothing unless it is one), in place unless it wraps.
            if end - at >= _DATA_HDR_SIZE:
                cmd, p1, p2, size, left = _DATA_HDR_UNPACK(mem, at)
            elif stop - at < _DATA_HDR_SIZE and end - at >= _HDR_SIZE:  # the last 8 bytes
                cmd, p1, p2 = _HDR_UNPACK(mem, at)
                size = left = 0
            elif stop - at >= _DATA_HDR_SIZE:
                cmd, p1, p2, size, left = self.unpack(_DATA_HDR, at - start)
            else:
                cmd, p1, p2 = self.unpack(_HDR, at - start)
                size = left = 0
            if cmd in _DATA_CMDS:
                length = (_DATA_HDR_SIZE + size + 7) & ~7
                if at + length > stop:  # (a header not all there counts as too long)
                    if stop - at >= _DATA_HDR_SIZE:
                        self._check_fits(length)
                    break
                data = at + _DATA_HDR_SIZE
                if data + size <= end:
                    chunk = mem[data : data + size]
                else:
                    chunk = self.peek(size, data - start)
                proto.receive_data(p1, p2, chunk, left, cmd == g.TX_DATA_CONT)
            elif cmd in _RX_DONE_CMDS:
                length = _HDR_SIZE
                proto.receive_rx_done(p1, p2, cmd == g.RX_DONE_W_REUSE)
            else:
                framed = self._feed_other(proto, at - start, stop - at)
                if framed is None:
                    break
                length = framed
            at += length
        at -= start
        if at:
            pos = self._pos = (pos + at) & mask
            self.total += at
            words[self._mine_at] = pos  # after the bytes were copied out
        return at

    def _feed_other(self, proto: GlinkProtocol, at: int, left: int) -> int | None:
        """Frame and parse the command (one not of a message) ``at`` bytes past the
        tail, with ``left`` bytes written from there on, and hand it to ``proto``; its
        length, or None if it is not all there yet (what :meth:`feed` does with it)."""
        try:
            head = self.peek(_DATA_HDR_SIZE if left >= _DATA_HDR_SIZE else _HDR_SIZE, at)
            length = g.frame_length(head)
        except WireError as exc:
            raise FifoError(self.name, exc.strerror or str(exc)) from None
        if length > left:
            self._check_fits(length)
            return None
        # Parsed from one copy, framed again from it: the peer may rewrite the bytes
        # between two reads of shared memory.
        command = self.peek(length, at)
        try:
            if g.frame_length(command[:_DATA_HDR_SIZE]) != length:
                raise WireError("frame", "the command changed while it was read")
            parsed = g.parse_command(command)
        except (WireError, struct.error) as exc:
            why = exc.strerror if isinstance(exc, WireError) else str(exc)
            raise FifoError(self.name, f"{why} (the peer rewrote a command)") from None
        proto.receive(parsed)
        return length

    def _check_fits(self, length: int) -> None:
        """A command not all there yet must be able to fit in the FIFO at all."""
        if length >= self._size:
            raise FifoError(self.name, f"a {length}-byte command cannot fit in the FIFO")

    def peek(self, n: int, at: int = 0) -> bytes:
        """``n`` bytes starting ``at`` bytes past the tail (the caller checked they exist)."""
        pos = (self._pos + at) & self._mask
        if pos + n <= self._size:
            start = self._base + pos
            return self._mem[start : start + n]
        return self._copy(pos, n)

    def unpack(self, layout: struct.Struct, at: int = 0) -> tuple[Any, ...]:
        """``layout`` decoded from the bytes ``at`` past the tail (the caller checked
        they exist), read in place unless they wrap."""
        pos = (self._pos + at) & self._mask
        if pos + layout.size <= self._size:
            return layout.unpack_from(self._mem, self._base + pos)
        return layout.unpack_from(self._copy(pos, layout.size))


class EdgeFifos:
    """One side's view of the edge at ``base`` in ``region``: its FIFO to write and its
    FIFO to read, and the words of both sides that say when to kick ("I am polling,
    do not kick me": :meth:`FifoReader.set_polling`; "I wait for an intent, kick me
    after every write": :meth:`set_awaiting_intents`).  ``ends``: the classes of the
    two ends (:mod:`amplink.rpmsg.glink_ends` chooses the compiled ones)."""

    def __init__(
        self,
        name: str,
        region: SharedRegion,
        base: int,
        fifo_size: int,
        role: Literal["host", "remote"],
        ends: tuple[type[FifoWriter], type[FifoReader]] = (FifoWriter, FifoReader),
    ):
        writer, reader = ends
        mem = region.map
        words = self._words = region.cast(base, EDGE_HEADER_SIZE, "I")
        h2r = base + EDGE_HEADER_SIZE
        r2h = h2r + fifo_size
        host, remote = HOST_WORDS // 4, REMOTE_WORDS // 4
        mine, theirs = (host, remote) if role == "host" else (remote, host)
        tx_fifo, rx_fifo = (h2r, r2h) if role == "host" else (r2h, h2r)
        self.tx = writer(f"{name}.tx", mem, tx_fifo, fifo_size, words, mine, theirs)
        self.rx = reader(f"{name}.rx", mem, rx_fifo, fifo_size, words, theirs, mine)
        self._my_awaiting = mine + _AWAITING
        self._peer_awaiting = theirs + _AWAITING
        words[mine + _POLLING] = 0
        words[self._my_awaiting] = 0

    def set_awaiting_intents(self, awaiting: bool) -> None:
        """Tell the peer whether a sender here waits for an intent: then it kicks us
        after every write, ``RX_DONE`` s alone too.  Read our FIFO after setting it:
        what the peer wrote before it saw the word came without a kick."""
        self._words[self._my_awaiting] = int(awaiting)
        full_fence()

    def peer_awaiting(self) -> bool:
        """Whether a sender at the peer waits for an intent (see
        :meth:`set_awaiting_intents`; it kicks us after setting it)."""
        return bool(self._words[self._peer_awaiting])
