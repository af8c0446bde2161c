"""The far end of the bench's baseline: a ``multiprocessing.Pipe`` end (``send_bytes`` /
``recv_bytes``, no pickling) that echoes round trips and counts one-way messages.

``python -m amplink.app.bench.pipe_peer FD [CPU]``: ``FD`` is the inherited descriptor
of the Pipe's other end; ``CPU`` pins the process.  The bench starts it in a process
group of its own, as it does a core, so a terminal's Ctrl-C reaches only the bench; it
ends when told (``EXIT``) or when the bench closes its end.
"""

from __future__ import annotations

import os
import struct
import sys
from multiprocessing.connection import Connection


def serve(conn: Connection) -> None:
    """Answer commands until ``EXIT`` or the bench's end closes: ``ECHO`` then a count,
    each message sent back; ``SINK`` then a count, ``(count, bytes)`` sent once all came."""
    try:
        while True:
            cmd = conn.recv_bytes()
            if cmd == b"ECHO":
                n = struct.unpack("=Q", conn.recv_bytes())[0]
                for _ in range(n):
                    conn.send_bytes(conn.recv_bytes())
            elif cmd == b"SINK":
                n = struct.unpack("=Q", conn.recv_bytes())[0]
                total = 0
                for _ in range(n):
                    total += len(conn.recv_bytes())
                conn.send_bytes(struct.pack("=QQ", n, total))
            else:
                return
    except (EOFError, OSError):
        return  # the bench closed its end (it was interrupted)


def main(argv: list[str]) -> None:
    """Serve the Pipe end on descriptor ``argv[0]``, pinned to CPU ``argv[1]`` if given."""
    if len(argv) > 1:
        os.sched_setaffinity(0, {int(argv[1])})
    serve(Connection(int(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
