"""Trace buffers: text the firmware writes into device memory and the host reads, as
Linux's debugfs ``trace<N>`` shows it (the contents up to the first NUL).

The firmware side appends lines and keeps the buffer NUL-terminated; when the buffer
is full it keeps its oldest text and counts what it had to drop (like a console that
fills up), so the host always reads a prefix of what was written.
"""

from __future__ import annotations


def read_trace(mem: bytes | memoryview) -> str:
    """The text in a trace buffer: up to the first NUL, undecodable bytes replaced."""
    raw = bytes(mem)
    end = raw.find(b"\0")
    return (raw if end < 0 else raw[:end]).decode(errors="replace")


class TraceWriter:
    """Firmware side: appends text to the trace buffer ``mem``."""

    def __init__(self, mem: memoryview) -> None:
        self._mem = mem
        self._pos = 0
        self.dropped = 0
        if len(mem):
            mem[0] = 0

    def write(self, text: str) -> None:
        """Append ``text``, wrapping around the buffer (NUL bytes become ``?``)."""
        data = text.encode(errors="replace").replace(b"\0", b"?")
        room = len(self._mem) - 1 - self._pos
        if room <= 0:
            self.dropped += len(data)
            return
        chunk = data[:room]
        self.dropped += len(data) - len(chunk)
        end = self._pos + len(chunk)
        self._mem[end] = 0  # terminator first: a reader never sees unterminated text
        self._mem[self._pos : end] = chunk
        self._pos = end
