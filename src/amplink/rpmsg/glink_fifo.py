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
:meth:`EdgeFifos.kick_needed`).
Indices are read and written through a ``u32`` view of the header, one aligned 4-byte
access each: ``struct.pack_into`` may copy byte by byte, and a peer on another CPU could
then read half an old index and half a new one.

Every message passes through :meth:`FifoWriter.write`, :meth:`FifoReader.readable`
and :meth:`FifoReader.advance`, so those read and check the peer's index and publish
ours inline rather than through helpers (a Python call costs about as much as the copy
of a small message), and a reader decodes the commands where they lie.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any, Literal

from amplink.errors import FifoError
from amplink.memory.barrier import full_fence
from amplink.memory.region import SharedRegion
from amplink.wire.glink_edge import EDGE_HEADER_SIZE, HOST_WORDS, REMOTE_WORDS

_HEAD, _TAIL, _POLLING, _AWAITING = 0, 1, 2, 3  # u32 words in each side's line (the layout)


class _FifoEnd:
    """What both ends share: the ring, our own index (kept locally and published) and
    the peer's (read from shared memory and checked every time)."""

    def __init__(
        self,
        name: str,
        mem: mmap.mmap,
        base: int,
        size: int,
        words: memoryview,
        mine_at: int,
        peer_at: int,
    ):
        self.name = name
        self._mem = mem  # the mapping: a slice of it is bytes, copied in one step
        self._base = base
        self._size = size
        self._mask = size - 1
        self._words = words
        self._mine_at = mine_at
        self._peer_at = peer_at
        self._pos = 0
        self.total = 0  # bytes this end ever wrote or took: positions that do not wrap
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

    def put(self, hdr: bytes, data: bytes, total: int, keep: int) -> bool:
        """Write a command of ``total`` bytes (``hdr``, then ``data``, then padding) and
        publish it, if that leaves ``keep`` bytes free; whether it was written.  What
        :meth:`free` and :meth:`write` do, in one call: every message goes here."""
        tail: int = self._words[self._peer_at]
        mask = self._mask
        if tail > mask:
            self._bad_index(tail)
        pos = self._pos
        if (tail - pos - 1) & mask < total + keep:
            return False
        mem, base = self._mem, self._base
        start = base + pos
        middle = start + len(hdr)
        end = middle + len(data)
        if end > base + self._size:  # it wraps
            self.write(hdr, data, pad=total - len(hdr) - len(data))
            return True
        mem[start:middle] = hdr
        mem[middle:end] = data
        pos = (pos + total) & mask
        self._pos = pos
        self.total += total
        self._words[self._mine_at] = pos  # after the bytes (x86 TSO: stores stay in order)
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
    """The consuming end of one FIFO: its index is the tail, the peer's the head."""

    def available(self) -> int:
        """Bytes written by the peer and not yet taken (read before them: loads stay in
        order on x86-64)."""
        head: int = self._words[self._peer_at]
        if head > self._mask:
            self._bad_index(head)
        return (head - self._pos) & self._mask

    _seen = 0  # the head the last readable() found

    def pending(self) -> bool:
        """Whether the peer has written anything not yet taken (what a spinning poller
        asks: not checked, the read that follows checks the index)."""
        return bool(self._words[self._peer_at] != self._pos)

    def moved(self) -> bool:
        """Whether the peer wrote more since the last :meth:`readable` (unlike
        :meth:`pending`, a command left incomplete there does not count: a reader
        that reads until this is False stops even if a hostile peer never ends it)."""
        return bool(self._words[self._peer_at] != self._seen)

    def readable(self) -> tuple[mmap.mmap, int, int, int]:
        """What the peer wrote, in place: ``(mapping, start, flat, n)``: ``n`` bytes
        (:meth:`available`) start at offset ``start`` of ``mapping``, the first
        ``flat`` of them before the ring wraps.  A reader decodes those in place (no
        Python call per command, one copy of the payload) and uses :meth:`peek` and
        :meth:`unpack` for a command that wraps."""
        head: int = self._words[self._peer_at]
        if head > self._mask:
            self._bad_index(head)
        self._seen = head
        pos = self._pos
        if head >= pos:
            return self._mem, self._base + pos, head - pos, head - pos
        return self._mem, self._base + pos, self._size - pos, (head - pos) & self._mask

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

    def advance(self, n: int) -> None:
        """Give ``n`` bytes back to the writer."""
        pos = self._pos = (self._pos + n) & self._mask
        self.total += n
        self._words[self._mine_at] = pos


class EdgeFifos:
    """One side's view of the edge at ``base`` in ``region``: its FIFO to write and its
    FIFO to read, and the words of both sides that say when to kick ("I am polling,
    do not kick me"; "I wait for an intent, kick me after every write")."""

    def __init__(
        self,
        name: str,
        region: SharedRegion,
        base: int,
        fifo_size: int,
        role: Literal["host", "remote"],
    ):
        mem = region.map
        words = self._words = region.cast(base, EDGE_HEADER_SIZE, "I")
        h2r = base + EDGE_HEADER_SIZE
        r2h = h2r + fifo_size
        host, remote = HOST_WORDS // 4, REMOTE_WORDS // 4
        mine, theirs = (host, remote) if role == "host" else (remote, host)
        tx_fifo, rx_fifo = (h2r, r2h) if role == "host" else (r2h, h2r)
        self.tx = FifoWriter(
            f"{name}.tx", mem, tx_fifo, fifo_size, words, mine + _HEAD, theirs + _TAIL
        )
        self.rx = FifoReader(
            f"{name}.rx", mem, rx_fifo, fifo_size, words, mine + _TAIL, theirs + _HEAD
        )
        self._my_polling = mine + _POLLING
        self._peer_polling = theirs + _POLLING
        self._my_awaiting = mine + _AWAITING
        self._peer_awaiting = theirs + _AWAITING
        words[self._my_polling] = 0
        words[self._my_awaiting] = 0
        self.polling = False
        self._kicked = 0  # tx.total when we last kicked the peer for what we wrote

    def set_polling(self, polling: bool) -> None:
        """Tell the peer whether to skip its kick after writing (we are polling, or
        reading until the FIFO is empty); :attr:`polling` says what it was last told.
        Read the FIFO after clearing it: what the peer wrote before it saw the word
        came without a kick."""
        self.polling = polling
        self._words[self._my_polling] = int(polling)
        if not polling:
            full_fence()  # (setting it needs none: a peer that missed it kicks once more)

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

    def kick_needed(self, rx_done_only: bool = False) -> bool:
        """After writing: whether to kick the peer.  Not while it polls its FIFO.
        While it waits for an intent, yes (its waiting sender is not reading).
        Otherwise not for ``rx_done_only`` (nothing but intents given back), and not
        while it has not read all that our last kick was for: a kicked reader reads
        until its FIFO is empty and then, after a fence, looks at the head once more
        (:meth:`FifoReader.moved`), so it will find this too.  A True answer counts
        as the kick."""
        full_fence()
        words = self._words
        if words[self._peer_polling]:
            return False
        tx = self.tx
        if not words[self._peer_awaiting] and (rx_done_only or not tx.read_past(self._kicked)):
            return False
        self._kicked = tx.total
        return True
