"""The two byte FIFOs of a GLINK edge in shared memory (layout in :mod:`amplink.wire.glink`).

A FIFO is a ring of ``size`` bytes (a power of two) with a head (the next byte the
writer fills, written only by the writer) and a tail (the next byte the reader takes,
written only by the reader); one byte always stays free, so head == tail means empty.
Each side keeps its own index in a local variable and only publishes it, so a peer that
scribbles over our word cannot confuse us; the peer's index is read from shared memory
and checked on every read, because a hostile peer can write anything there.

Ordering: a writer copies the bytes, fences, then publishes the head; a reader reads
the head, fences, then the bytes, and publishes the tail after it has copied them out.
Indices are read and written through a ``u32`` view of the header, one aligned 4-byte
access each: ``struct.pack_into`` may copy byte by byte, and a peer on another CPU could
then read half an old index and half a new one.
"""

from __future__ import annotations

from typing import Literal

from amplink.errors import FifoError
from amplink.memory.barrier import full_fence
from amplink.memory.region import SharedRegion
from amplink.wire.glink import EDGE_HEADER_SIZE, HOST_WORDS, REMOTE_WORDS

_HEAD, _TAIL, _POLLING = 0, 1, 2  # u32 words within each side's line (see the layout)


class FifoWriter:
    """The producing end of one FIFO."""

    def __init__(
        self,
        name: str,
        mem: memoryview,
        base: int,
        size: int,
        words: memoryview,
        head_at: int,
        tail_at: int,
    ):
        self.name = name
        self._mem = mem
        self._base = base
        self._size = size
        self._mask = size - 1
        self._words = words
        self._head_at = head_at
        self._tail_at = tail_at
        self._head = 0
        self.written = 0  # bytes ever written: positions that do not wrap
        words[head_at] = 0

    def _tail(self) -> int:
        tail: int = self._words[self._tail_at]
        if tail > self._mask:
            raise FifoError(
                self.name, f"the reader's tail {tail} is outside the {self._size}-byte FIFO"
            )
        return tail

    def free(self) -> int:
        """Bytes that can be written now."""
        return (self._tail() - self._head - 1) & self._mask

    def used(self) -> int:
        """Bytes written and not yet taken by the reader."""
        return (self._head - self._tail()) & self._mask

    def write(self, *parts: bytes | memoryview) -> None:
        """Append ``parts`` and publish them together; the caller checked :meth:`free`."""
        mem, base, size = self._mem, self._base, self._size
        pos = self._head
        for part in parts:
            n = len(part)
            first = min(n, size - pos)
            mem[base + pos : base + pos + first] = part[:first]
            if first < n:
                mem[base : base + n - first] = part[first:]
            pos = (pos + n) & self._mask
            self.written += n
        full_fence()
        self._head = pos
        self._words[self._head_at] = pos

    def read_past(self, mark: int) -> bool:
        """Whether the reader has taken the first ``mark`` bytes ever written (a
        :attr:`written` value, so that it means the same after the ring wraps)."""
        return self.written - mark >= self.used()

    def unread(self) -> bytes:
        """What the reader has not taken yet (for counting what a dead peer never read)."""
        tail = self._tail()
        return self._copy(tail, (self._head - tail) & self._mask)

    def _copy(self, pos: int, n: int) -> bytes:
        return _copy(self._mem, self._base, self._size, pos, n)


class FifoReader:
    """The consuming end of one FIFO."""

    def __init__(
        self,
        name: str,
        mem: memoryview,
        base: int,
        size: int,
        words: memoryview,
        head_at: int,
        tail_at: int,
    ):
        self.name = name
        self._mem = mem
        self._base = base
        self._size = size
        self._mask = size - 1
        self._words = words
        self._head_at = head_at
        self._tail_at = tail_at
        self._tail = 0
        words[tail_at] = 0

    def available(self) -> int:
        """Bytes written by the peer and not yet taken."""
        head: int = self._words[self._head_at]
        if head > self._mask:
            raise FifoError(
                self.name, f"the writer's head {head} is outside the {self._size}-byte FIFO"
            )
        full_fence()
        return (head - self._tail) & self._mask

    def peek(self, n: int, at: int = 0) -> bytes:
        """``n`` bytes starting ``at`` bytes past the tail (the caller checked they exist)."""
        return _copy(self._mem, self._base, self._size, (self._tail + at) & self._mask, n)

    def advance(self, n: int) -> None:
        """Give ``n`` bytes back to the writer."""
        self._tail = (self._tail + n) & self._mask
        self._words[self._tail_at] = self._tail


def _copy(mem: memoryview, base: int, size: int, pos: int, n: int) -> bytes:
    first = min(n, size - pos)
    if first == n:
        return bytes(mem[base + pos : base + pos + n])
    return bytes(mem[base + pos : base + size]) + bytes(mem[base : base + n - first])


class EdgeFifos:
    """One side's view of the edge at ``base`` in ``region``: its FIFO to write and its
    FIFO to read, and the "I am polling, do not kick me" words of both sides."""

    def __init__(
        self,
        name: str,
        region: SharedRegion,
        base: int,
        fifo_size: int,
        role: Literal["host", "remote"],
    ):
        mem = region.mem
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
            f"{name}.rx", mem, rx_fifo, fifo_size, words, theirs + _HEAD, mine + _TAIL
        )
        self._my_polling = mine + _POLLING
        self._peer_polling = theirs + _POLLING
        words[self._my_polling] = 0

    def set_polling(self, polling: bool) -> None:
        """Tell the peer whether to skip its kick after writing (we are polling)."""
        self._words[self._my_polling] = int(polling)
        full_fence()

    def peer_polling(self) -> bool:
        full_fence()
        return bool(self._words[self._peer_polling])
