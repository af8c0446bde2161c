"""Benchmark firmware: an echo service and a sink that counts what it receives.

``amplink-bench-echo`` sends every message back.  ``amplink-bench-sink`` only counts
messages and bytes; the message ``DONE`` makes it reply with both counts (two u64) and
start again from zero.  Besides rpmsg, the core echoes every word it receives on its
mailbox's data channel :data:`MBOX_ECHO_INDEX` back on the same channel, from its
mailbox interrupt handler.
"""

from __future__ import annotations

import struct
from typing import Any

from amplink.mailbox.framework import MboxClient, request_channel_byname, send_message
from amplink.mailbox.imx_mu import IMX_MU_TYPE_RX, IMX_MU_TYPE_TX
from amplink.remote import Core
from amplink.rpmsg.core import Endpoint

ECHO = "amplink-bench-echo"
SINK = "amplink-bench-sink"
DONE = b"DONE"
COUNTS = struct.Struct("=QQ")
MBOX_ECHO_INDEX = 1


def mbox_echo_client(controller: str, dev: str, rx_callback: Any = None) -> MboxClient:
    """A client of data channel :data:`MBOX_ECHO_INDEX` (names ``tx`` and ``rx``)."""
    return MboxClient(
        dev,
        mboxes=(
            (controller, IMX_MU_TYPE_TX, MBOX_ECHO_INDEX),
            (controller, IMX_MU_TYPE_RX, MBOX_ECHO_INDEX),
        ),
        mbox_names=("tx", "rx"),
        rx_callback=rx_callback,
    )


def _start_mbox_echo(controller: str) -> None:
    cl = mbox_echo_client(controller, "bench-mbox-echo")
    tx = request_channel_byname(cl, "tx")

    def echo(_cl: MboxClient, word: Any) -> None:  # in the core's interrupt handler
        send_message(tx, word)

    cl.rx_callback = echo
    request_channel_byname(cl, "rx")


def main(core: Core) -> None:
    """Serve the echo and sink services (and the mailbox echo) until stopped."""
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

    if core.mailbox is not None:
        _start_mbox_echo(core.mailbox)
    core.create_endpoint(ECHO, echo)
    core.create_endpoint(SINK, sink)
    core.run()
