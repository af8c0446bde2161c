"""Benchmark firmware: an echo service and a sink that counts what it receives.

``amplink-bench-echo`` sends every message back.  ``amplink-bench-sink`` only counts
messages and bytes; the message ``DONE`` makes it reply with both counts (two u64) and
start again from zero.
"""

from __future__ import annotations

import struct

from amplink.remote import Core
from amplink.rpmsg.core import Endpoint

ECHO = "amplink-bench-echo"
SINK = "amplink-bench-sink"
DONE = b"DONE"
COUNTS = struct.Struct("=QQ")


def main(core: Core) -> None:
    counts = [0, 0]

    def echo(ept: Endpoint, data: bytes, src: int) -> None:
        ept.sendto(data, src)

    def sink(ept: Endpoint, data: bytes, src: int) -> None:
        if data == DONE:
            ept.sendto(COUNTS.pack(*counts), src)
            counts[0] = counts[1] = 0
            return
        counts[0] += 1
        counts[1] += len(data)

    core.create_endpoint(ECHO, echo)
    core.create_endpoint(SINK, sink)
    core.run()
