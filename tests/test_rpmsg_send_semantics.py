"""Send semantics on both backends between two processes: replies sent from receive
callbacks under load, and draining by explicit polling with interrupts off."""

import struct
import threading
import time

import pytest

from amplink.host import Rproc, RprocConfig
from backends import table_for

ECHO_FW = "amplink.firmware.echo"

SERVICE = "rpmsg-openamp-demo-channel"
TOTAL = 100_000
WINDOW = 64


def test_100k_messages_sent_from_receive_callbacks_do_not_deadlock(backend):
    """The core's echo replies from its callback; the host sends the next messages from
    its own callback (the mailbox IRQ thread or a polling thread), up to 64 in flight.
    Only the first message comes from the test's thread, so that one thread numbers
    and sends all others and any reordering by the transport shows."""
    done = threading.Event()
    state = {"sent": 1, "received": 0, "bad": 0}
    with Rproc("pingpong", ECHO_FW, config=RprocConfig(spin=True), table=table_for(backend)) as rp:
        chan = rp.wait_channel(SERVICE, 10)

        def on_reply(ept, data, src):
            if int(data) != state["received"]:
                state["bad"] += 1
            state["received"] += 1
            while state["sent"] < TOTAL and state["sent"] - state["received"] < WINDOW:
                ept.send(b"%d" % state["sent"])  # may wait for a buffer, inside the callback
                state["sent"] += 1
            if state["received"] == TOTAL:
                done.set()

        chan.create_ept(on_reply).send(b"0")
        assert done.wait(120), state
    assert state == {"sent": TOTAL, "received": TOTAL, "bad": 0}


def test_polling_mode_drains_with_notifications_off(backend):
    """The RPM use case: the host tells the core not to notify it (virtio's
    VRING_AVAIL_F_NO_INTERRUPT on its receive ring; GLINK: the host's "polling" word of
    the edge) and gets the core's messages by polling the ring itself.

    A notification the core sent before it saw the request (while the channel was
    being set up) can still be on its way and drain the ring once, late; so a message
    taken that way is sent again. A core that kept notifying would fail every try."""
    with Rproc("polled", ECHO_FW, config=RprocConfig(spin=False), table=table_for(backend)) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        link = rp.link
        link.suppress_rx()  # the core's notifications are off
        for attempt in range(8):
            message = b"polled %d" % attempt
            ept.send(message)
            if arrived_by_polling(link, ept, message):
                break
        else:
            pytest.fail("every reply was delivered without polling: the core notifies")
        assert link.unsuppress_rx() is False  # nothing else arrived meanwhile


def arrived_by_polling(link, ept, message: bytes) -> bool:
    """Wait for the echo of ``message``; True if it sat in the ring until this thread
    polled it out, False if a (late) notification delivered it."""
    end = time.monotonic() + 10
    while not (link.rx_pending() or ept.pending()):
        assert time.monotonic() < end, "no reply within 10 s"
        time.sleep(0.001)  # the core answers in its own time
    got = 0
    while not (got or ept.pending()):  # GLINK: an RX_DONE alone can be what is pending
        assert time.monotonic() < end, "the reply never reached the ring"
        got = link.poll_rx()
        if not got:
            time.sleep(0.001)
    assert ept.recv(0).data == message and got in (0, 1)
    return got == 1


def test_sends_refused_for_their_arguments_keep_every_buffer(backend):
    """A send whose payload or address cannot be written (a str, a strided view, a
    destination past 32 bits) raises and leaves its send buffer for the next send:
    more refusals than the ring has buffers, then a send still goes (hostile review:
    each refused send leaked a virtio buffer, and after 256 none could be sent)."""
    with Rproc(f"refused-{backend}", "amplink.firmware.echo", table=table_for(backend)) as rp:
        ept = rp.wait_channel("rpmsg-openamp-demo-channel", 10).create_ept()
        bad = [
            lambda: ept.send("text"),
            lambda: ept.send(memoryview(bytes(8))[::2]),
            lambda: ept.sendto(b"x", 1 << 32),
        ]
        refused = 0  # (GLINK has no addresses: Linux's sendto ignores dst there)
        for send in bad * 300:
            try:
                send()
            except (TypeError, BufferError, ValueError, OverflowError, struct.error):
                refused += 1
        assert refused == (600 if backend == "glink" else 900)
        for _ in range(900 - refused):  # GLINK's echoes of what went to "2**32"
            assert ept.recv(10).data == b"x"
        ept.send(b"after", timeout=5)
        assert ept.recv(10).data == b"after"
