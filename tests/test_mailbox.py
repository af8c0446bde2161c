"""The mailbox framework's contract, including the two fixed blocking-mode bugs.

``ManualController`` is a controller driver whose "hardware" the test operates by
hand: it accepts or refuses data, and reports TX completion when the test says so.
That is what lets the thread interleavings below happen in a fixed order.
"""

import errno
import logging
import threading
from queue import SimpleQueue

import pytest

from amplink.errors import MailboxError
from amplink.mailbox import framework as mbox
from amplink.mailbox.framework import (
    MBOX_NO_MSG,
    MBOX_TX_QUEUE_LEN,
    TXDONE_BY_ACK,
    TXDONE_BY_POLL,
    MboxClient,
    MboxController,
)
from resources import snapshot


class ManualController(MboxController):
    def __init__(self, dev="manual", num_chans=2, **kw):
        super().__init__(dev, num_chans, **kw)
        self.ready = True
        self.sent = SimpleQueue()  # every message the hardware accepted
        self.refused = SimpleQueue()
        self.startups = 0
        self.shutdowns = 0
        self.fail_startup = 0
        self.consumed = False

    def send_data(self, chan, data):
        if not self.ready:
            self.refused.put(data)
            return -errno.EBUSY
        self.sent.put(data)
        self.consumed = False
        return 0

    def startup(self, chan):
        self.startups += 1
        return self.fail_startup

    def shutdown(self, chan):
        self.shutdowns += 1


class PolledController(ManualController):
    def last_tx_done(self, chan):
        return self.consumed


@pytest.fixture
def ctrl():
    before = snapshot()
    c = ManualController(txdone_irq=True)
    c.register()
    yield c
    c.unregister()
    assert snapshot() == before


def client(**kw):
    return MboxClient("test-client", mboxes=(("manual", 0), ("manual", 1)), **kw)


def _sender(chan, msg, results):
    def run():
        try:
            results.put((msg, mbox.send_message(chan, msg)))
        except MailboxError as exc:
            results.put((msg, -exc.errno))

    t = threading.Thread(target=run, name=f"sender-{msg}")
    t.start()
    return t


# -- binding --------------------------------------------------------------------------
def test_request_bind_and_free(ctrl):
    cl = MboxClient("c", mboxes=(("manual", 1),), mbox_names=("tx",))
    chan = mbox.request_channel_byname(cl, "tx")
    assert chan is ctrl.chans[1] and chan.cl is cl and ctrl.startups == 1
    with pytest.raises(MailboxError) as exc:
        mbox.request_channel(MboxClient("other", mboxes=(("manual", 1),)), 0)
    assert exc.value.errno == errno.EBUSY
    for bad, code in (
        (MboxClient("none"), errno.ENODEV),
        (MboxClient("idx", mboxes=(("manual", 5),)), errno.EINVAL),
        (MboxClient("later", mboxes=(("not-yet", 0),)), mbox.EPROBE_DEFER),
    ):
        with pytest.raises(MailboxError) as exc:
            mbox.request_channel(bad, 0)
        assert exc.value.errno == code
    with pytest.raises(MailboxError) as exc:
        mbox.request_channel_byname(cl, "rx")
    assert exc.value.errno == errno.EINVAL
    mbox.free_channel(chan)
    assert chan.cl is None and ctrl.shutdowns == 1
    mbox.free_channel(chan)  # no-op
    ctrl.fail_startup = -errno.EIO
    with pytest.raises(MailboxError) as exc:
        mbox.request_channel(cl, 0)
    assert exc.value.errno == errno.EIO and ctrl.chans[1].cl is None


def test_registration_rules():
    with pytest.raises(MailboxError) as exc:
        ManualController("both", txdone_irq=True, txdone_poll=True).register()
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(MailboxError) as exc:
        ManualController("poll-without-last-tx-done", txdone_poll=True).register()
    assert exc.value.errno == errno.EINVAL
    a = ManualController("dup")
    a.register()
    try:
        with pytest.raises(MailboxError) as exc:
            ManualController("dup").register()
        assert exc.value.errno == errno.EEXIST
    finally:
        a.unregister()


# -- non-blocking ---------------------------------------------------------------------
def test_queue_of_20_then_enobufs_and_nothing_queued(ctrl, caplog):
    done = []
    order = []
    cl = client(
        tx_done=lambda c, m, r: done.append((m, r)), tx_prepare=lambda c, m: order.append(m)
    )
    chan = mbox.request_channel(cl, 0)
    tokens = [mbox.send_message(chan, i) for i in range(MBOX_TX_QUEUE_LEN + 1)]
    assert tokens == [*range(MBOX_TX_QUEUE_LEN), 0]  # the first one went to the hardware
    assert mbox.tx_slots_available(chan) == 0
    with caplog.at_level(logging.ERROR), pytest.raises(MailboxError) as exc:
        mbox.send_message(chan, "one too many")
    assert exc.value.errno == errno.ENOBUFS
    assert "TX queue full" in caplog.text
    assert mbox.tx_slots_available(chan) == 0
    for _ in range(MBOX_TX_QUEUE_LEN + 1):
        chan.txdone(0)
    assert [m for m, _ in done] == list(range(MBOX_TX_QUEUE_LEN + 1))
    assert order == list(range(MBOX_TX_QUEUE_LEN + 1))  # tx_prepare before each send
    assert mbox.tx_slots_available(chan) == MBOX_TX_QUEUE_LEN
    chan.txdone(0)  # nothing active: harmless
    assert len(done) == MBOX_TX_QUEUE_LEN + 1


def test_refused_send_stays_queued_and_errors_reach_tx_done(ctrl):
    done = SimpleQueue()
    chan = mbox.request_channel(client(tx_done=lambda c, m, r: done.put((m, r))), 0)
    ctrl.ready = False
    mbox.send_message(chan, "a")
    assert ctrl.refused.get(timeout=1) == "a"
    ctrl.ready = True
    mbox.send_message(chan, "b")  # the submit sends the oldest first
    assert ctrl.sent.get(timeout=1) == "a"
    chan.txdone(-errno.EIO)
    assert done.get(timeout=1) == ("a", -errno.EIO)
    assert ctrl.sent.get(timeout=1) == "b"
    with pytest.raises(MailboxError) as exc:
        mbox.send_message(chan, MBOX_NO_MSG)
    assert exc.value.errno == errno.EINVAL
    mbox.send_message(chan, None)  # None is a valid (doorbell) message
    with pytest.raises(MailboxError) as exc:
        mbox.flush(chan, 10)
    assert exc.value.errno == errno.ENOTSUP


# -- blocking -------------------------------------------------------------------------
def test_two_blocking_senders_each_woken_by_their_own_message(ctrl):
    """The interleaving of reference 1.8: T1 queues M1, T2 queues M2, T2's submit sends
    M1.  With one completion per channel, M1's completion would wake T2 first."""
    chan = mbox.request_channel(client(tx_block=True, tx_tout=10_000), 0)
    results = SimpleQueue()
    ctrl.ready = False
    t1 = _sender(chan, "M1", results)
    assert ctrl.refused.get(timeout=5) == "M1"  # T1 queued M1; the hardware was busy
    ctrl.ready = True
    t2 = _sender(chan, "M2", results)
    assert ctrl.sent.get(timeout=5) == "M1"  # T2's submit sent the oldest: M1
    chan.txdone(0)  # M1 done
    assert results.get(timeout=5) == ("M1", 0)  # T1 (its slot was 0) and only T1
    t1.join(5)
    assert ctrl.sent.get(timeout=5) == "M2" and t2.is_alive()
    chan.txdone(-errno.EIO)  # the controller reports M2 failed
    assert results.get(timeout=5) == ("M2", -errno.EIO)  # and T2 is told so
    t2.join(5)


def test_blocking_timeout_cancels_a_queued_message(ctrl):
    done = SimpleQueue()
    chan = mbox.request_channel(
        client(tx_block=True, tx_tout=50, tx_done=lambda c, m, r: done.put((m, r))), 0
    )
    results = SimpleQueue()
    blocker = _sender(chan, "stuck", results)
    assert ctrl.sent.get(timeout=5) == "stuck"
    assert results.get(timeout=5) == ("stuck", -errno.ETIME)  # timed out on the hardware
    assert done.get(timeout=5) == ("stuck", -errno.ETIME)  # ticked with -ETIME, as Linux
    blocker.join(5)
    ctrl.ready = False
    late = _sender(chan, "late", results)
    assert ctrl.refused.get(timeout=5) == "late"
    assert results.get(timeout=5) == ("late", -errno.ETIME)  # timed out while queued
    late.join(5)
    ctrl.ready = True
    nb = mbox.request_channel(MboxClient("nb", mboxes=(("manual", 1),)), 0)
    mbox.send_message(nb, "other channel")
    assert ctrl.sent.get(timeout=5) == "other channel"
    # Back on the first channel: the cancelled "late" is dropped, never sent.
    t = _sender(chan, "next", results)
    assert ctrl.sent.get(timeout=5) == "next"
    chan.txdone(0)
    assert results.get(timeout=5) == ("next", 2)  # its queue slot
    t.join(5)
    assert ctrl.sent.empty()


def test_free_channel_wakes_a_blocked_sender(ctrl):
    chan = mbox.request_channel(client(tx_block=True), 0)
    results = SimpleQueue()
    t = _sender(chan, "x", results)
    assert ctrl.sent.get(timeout=5) == "x"
    mbox.free_channel(chan)
    assert results.get(timeout=5) == ("x", -errno.ESHUTDOWN)
    t.join(5)


# -- poll and ack ---------------------------------------------------------------------
def test_poll_and_client_ack(caplog):
    before = snapshot()
    ctrl = PolledController("polled", txdone_poll=True, txpoll_period=1)
    ctrl.register()
    try:
        assert "mbox-poll-polled" in [t.name for t in threading.enumerate()]
        done = SimpleQueue()
        cl = MboxClient("p", mboxes=(("polled", 0),), tx_done=lambda c, m, r: done.put(m))
        chan = mbox.request_channel(cl, 0)
        assert chan.txdone_method == TXDONE_BY_POLL
        mbox.send_message(chan, "p1")
        mbox.send_message(chan, "p2")
        assert ctrl.sent.get(timeout=5) == "p1"
        ctrl.consumed = True  # the poller notices
        assert done.get(timeout=5) == "p1"
        assert ctrl.sent.get(timeout=5) == "p2"
        with caplog.at_level(logging.ERROR):
            mbox.client_txdone(chan, 0)  # not an ACK channel: refused
        assert "not client-acknowledged" in caplog.text
        mbox.free_channel(chan)
        ack = MboxClient(
            "a", mboxes=(("polled", 1),), knows_txdone=True, tx_done=lambda c, m, r: done.put(m)
        )
        chan = mbox.request_channel(ack, 0)
        assert chan.txdone_method == TXDONE_BY_ACK
        mbox.send_message(chan, "a1")
        assert ctrl.sent.get(timeout=5) == "a1"
        mbox.client_txdone(chan, 0)
        assert done.get(timeout=5) == "a1"
        mbox.free_channel(chan)
        assert chan.txdone_method == TXDONE_BY_POLL  # back to polling
    finally:
        ctrl.unregister()
    assert snapshot() == before
