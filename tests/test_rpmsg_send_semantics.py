"""Send semantics on the virtio backend between two processes: replies sent from
receive callbacks under load, and draining by explicit polling with interrupts off."""

import threading
import time

from amplink.remoteproc import Rproc

SERVICE = "rpmsg-openamp-demo-channel"
TOTAL = 100_000
WINDOW = 64


def test_100k_messages_sent_from_receive_callbacks_do_not_deadlock():
    """The core's echo replies from its callback; the host sends the next message from
    its own callback (the mailbox IRQ thread or a polling thread), 64 in flight."""
    done = threading.Event()
    state = {"sent": 0, "received": 0, "bad": 0}
    with Rproc("pingpong", spin=True) as rp:
        chan = rp.wait_channel(SERVICE, 10)

        def on_reply(ept, data, src):
            if int(data) != state["received"]:
                state["bad"] += 1
            state["received"] += 1
            if state["sent"] < TOTAL:
                ept.send(b"%d" % state["sent"])
                state["sent"] += 1
            elif state["received"] == TOTAL:
                done.set()

        ept = chan.create_ept(on_reply)
        for _ in range(WINDOW):
            ept.send(b"%d" % state["sent"])
            state["sent"] += 1
        assert done.wait(120), state
    assert state == {"sent": TOTAL, "received": TOTAL, "bad": 0}


def test_polling_mode_drains_with_notifications_off():
    """The RPM use case: the host tells the core not to notify it (virtio's
    VRING_AVAIL_F_NO_INTERRUPT on its receive ring) and gets the core's messages by
    polling the ring itself."""
    with Rproc("polled", spin=False) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        link = rp.link
        link.suppress_rx()  # the core's notifications are off
        ept.send(b"polled")
        end = time.monotonic() + 10
        while not link.rx_pending() and time.monotonic() < end:
            time.sleep(0.001)  # the core answers in its own time
        assert link.rx_pending()  # the answer is in the ring...
        assert ept.pending() == 0  # ...and nothing delivered it
        assert link.poll_rx() == 1  # the explicit poll call
        assert ept.recv(0).data == b"polled"
        assert link.unsuppress_rx() is False  # nothing else arrived meanwhile
