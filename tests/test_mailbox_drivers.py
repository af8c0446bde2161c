"""The i.MX MU and Rockchip controller drivers on their hardware models and real lines."""

import threading
from contextlib import contextmanager
from queue import Empty, SimpleQueue

import pytest

from amplink.hw import ImxMu, RockchipMailbox
from amplink.hw import imx_mu as mu
from amplink.hw import rockchip as rk
from amplink.irq import IRQ_HANDLED, IRQ_NONE, IRQF_SHARED, SpuriousPolicy
from amplink.mailbox import framework as mbox
from amplink.mailbox.framework import MboxClient
from amplink.mailbox.imx_mu import (
    IMX_MU_TYPE_RX,
    IMX_MU_TYPE_RXDB,
    IMX_MU_TYPE_TX,
    IMX_MU_TYPE_TXDB,
    ImxMuController,
)
from amplink.mailbox.rockchip import RockchipMboxController, RockchipMsg
from amplink.memory import SharedRegion
from irq_helpers import LevelDevice, LogEvent, started
from resources import snapshot

QUICK = SpuriousPolicy(window=500, threshold=490)


@contextmanager
def mu_pair():
    """One MU: side A driven by the threaded driver, side B by the classic one."""
    before = snapshot()
    region = SharedRegion.create(mu.SIZE, "mu")
    da, db = started("a"), started("b")
    la, lb = da.add_line(1), db.add_line(1)
    unit = ImxMu("mu", region.cast(0, mu.SIZE, "I"), wire_a=la.wire, wire_b=lb.wire)
    la.add_source(unit.a.irq_active)
    lb.add_source(unit.b.irq_active)
    ca = ImxMuController("mu-a", unit.a, da, 1, threaded=True)
    cb = ImxMuController("mu-b", unit.b, db, 1, threaded=False)
    ca.register()
    cb.register()
    try:
        yield ca, cb
    finally:
        ca.unregister()
        cb.unregister()
        da.close()
        db.close()
        region.close()
    assert snapshot() == before


def _client(ctrl, *spec, **kw):
    """A client bound to the channel ``spec`` of ``ctrl`` (i.MX: type, index)."""
    return mbox.request_channel(MboxClient(f"{ctrl.dev}-c", mboxes=((ctrl.dev, *spec),), **kw), 0)


def test_mu_data_both_ways_callbacks_in_the_right_context():
    with mu_pair() as (ca, cb):
        got_a, got_b, done = SimpleQueue(), SimpleQueue(), SimpleQueue()
        ctx = lambda q: lambda cl, m: q.put((m, threading.current_thread().name))  # noqa: E731
        _client(ca, IMX_MU_TYPE_RX, 2, rx_callback=ctx(got_a))
        _client(cb, IMX_MU_TYPE_RX, 2, rx_callback=ctx(got_b))
        tx_a = _client(ca, IMX_MU_TYPE_TX, 2, tx_done=lambda cl, m, r: done.put((m, r)))
        tx_b = _client(cb, IMX_MU_TYPE_TX, 2)
        for i in range(15):
            mbox.send_message(tx_a, 1000 + i)  # queued behind each other, one TE at a time
        for i in range(15):
            assert got_b.get(timeout=5) == (1000 + i, "irq-b")  # classic: in hard IRQ
            assert done.get(timeout=5) == (1000 + i, 0)  # txdone came by TE interrupt
        mbox.send_message(tx_b, 0xFFFF_FFFF)
        assert got_a.get(timeout=5) == (0xFFFF_FFFF, "irq/1-mu-a_chan[1-2]")  # threaded
        assert mbox.send_message(tx_a, "not a word") >= 0  # queued, refused by send_data...
        assert tx_a.active is None and tx_a.msg_count == 1  # ...and stays at the head
        with pytest.raises(Empty):
            got_b.get(timeout=0.2)  # ...so it is never transmitted


def test_tx_done_on_demand_for_a_client_that_does_not_ask_for_it():
    """A client with neither tx_done nor tx_block (a vring kick) sends without arming
    the TX-done interrupt; the next send finds TEn set by itself; a message that has
    to wait arms it, and goes out as soon as the peer has read the one before."""
    with mu_pair() as (ca, cb):
        got_b = SimpleQueue()
        _client(cb, IMX_MU_TYPE_RX, 0, rx_callback=lambda cl, m: got_b.put(m))
        tx = _client(ca, IMX_MU_TYPE_TX, 0)
        assert tx.on_demand
        line = ca.domain.line(1)
        for i in range(50):
            taken = line.count
            mbox.send_message(tx, i)
            assert got_b.get(timeout=5) == i
            assert not ca.side.readl(mu.MU_CR) & mu.TIE(0)  # never armed
            assert line.count == taken  # and side A took no interrupt for it
        cb.domain.disable_irq(1)  # the peer stops taking its interrupt: nobody reads RR0
        mbox.send_message(tx, 100)
        mbox.send_message(tx, 101)  # has to wait: TIE0 armed for the word on the unit
        assert ca.side.readl(mu.MU_CR) & mu.TIE(0) and tx.msg_count == 1
        cb.domain.enable_irq(1)
        assert [got_b.get(timeout=5) for _ in range(2)] == [100, 101]  # after TE0's interrupt
        tracked = _client(ca, IMX_MU_TYPE_TX, 1, tx_done=lambda cl, m, r: None)
        assert not tracked.on_demand  # a client that asks for tx_done gets Linux's way


def test_mu_doorbells():
    with mu_pair() as (ca, cb):
        rung, done = SimpleQueue(), SimpleQueue()
        _client(cb, IMX_MU_TYPE_RXDB, 3, rx_callback=lambda cl, m: rung.put(m))
        db = _client(ca, IMX_MU_TYPE_TXDB, 3, tx_done=lambda cl, m, r: done.put(r))
        for _ in range(3):
            mbox.send_message(db, None)
            assert done.get(timeout=5) == 0
            assert rung.get(timeout=5) is None
        assert not cb.side.readl(mu.MU_SR) & mu.GIP(3)  # cleared by the driver


def test_mu_masks_at_the_unit_so_a_sharer_keeps_its_interrupts():
    """The threaded i.MX driver does not use ONESHOT: while its thread is busy in a slow
    client callback, another device on the same line is still served."""
    with mu_pair() as (ca, cb):
        in_callback, release = threading.Event(), threading.Event()
        other_served = SimpleQueue()

        def slow(cl, m):
            in_callback.set()
            release.wait(10)

        _client(ca, IMX_MU_TYPE_RX, 0, rx_callback=slow)
        line = ca.domain.line(1)
        other = LevelDevice(line)

        def other_handler(irq, dev_id):
            if not other.asserted:
                return IRQ_NONE
            other.ack()
            other_served.put(threading.current_thread().name)
            return IRQ_HANDLED

        ca.domain.request_irq(1, other_handler, IRQF_SHARED, "other-dev", other)
        mbox.send_message(_client(cb, IMX_MU_TYPE_TX, 0), 7)
        assert in_callback.wait(5)
        try:
            assert not line.masked
            for _ in range(3):
                other.fire()
                assert other_served.get(timeout=5) == "irq-a"
        finally:
            release.set()
        ca.domain.free_irq(1, other)


@contextmanager
def rockchip(controller_cls=RockchipMboxController, policy=None):
    """A Rockchip unit: A side driven by the controller, B side an MCU that answers
    every command with (cmd + 1, rx_size * 2) from its own interrupt handlers."""
    before = snapshot()
    region = SharedRegion.create(rk.SIZE, "rk")
    da = started("a", spurious=policy)
    db = started("mcu")
    a_lines = [da.add_line(10 + x) for x in range(rk.NUM_CHANS)]
    b_lines = [db.add_line(20 + x) for x in range(rk.NUM_CHANS)]
    unit = RockchipMailbox(
        "rk",
        region.cast(0, rk.SIZE, "I"),
        ([ln.wire for ln in b_lines], [ln.wire for ln in a_lines]),
    )
    for x in range(rk.NUM_CHANS):
        a_lines[x].add_source(lambda x=x: unit.irq_active(rk.B2A, x))
        b_lines[x].add_source(lambda x=x: unit.irq_active(rk.A2B, x))

        def mcu(irq, dev_id, x=x):
            if not unit.readl(rk.A2B_STATUS) & (1 << x):
                return IRQ_NONE
            cmd, size = unit.readl(rk.A2B_CMD(x)), unit.readl(rk.A2B_DAT(x))
            unit.writel(rk.A2B_STATUS, 1 << x)
            unit.writel(rk.B2A_CMD(x), cmd + 1)
            unit.writel(rk.B2A_DAT(x), size * 2)
            return IRQ_HANDLED

        db.request_irq(20 + x, mcu, 0, f"mcu{x}", None)
    unit.writel(rk.A2B_INTEN, 0b1111)
    ctrl = controller_cls("rk-a", unit, da, [10 + x for x in range(rk.NUM_CHANS)])
    ctrl.register()
    try:
        yield ctrl, da
    finally:
        ctrl.unregister()
        da.close()
        db.close()
        region.close()
    assert snapshot() == before


def test_rockchip_request_response():
    with rockchip() as (ctrl, _):
        replies, done = SimpleQueue(), SimpleQueue()
        chan = _client(
            ctrl, 1, rx_callback=lambda cl, m: replies.put(m), tx_done=lambda c, m, r: done.put(r)
        )
        assert chan is ctrl.chans[1]
        for i in range(20):
            mbox.send_message(chan, RockchipMsg(i, 3))
            assert replies.get(timeout=5) == RockchipMsg(i + 1, 6)
            assert done.get(timeout=5) == 0  # the poller saw the MCU clear A2B_STATUS
        assert mbox.send_message(chan, RockchipMsg(1, 0x1000)) >= 0  # rx_size too big
        assert chan.active is None and chan.msg_count == 1  # refused: still queued
        with pytest.raises(Empty):
            replies.get(timeout=0.2)  # refused by send_data, never sent


class ForgetfulRockchip(RockchipMboxController):
    """A buggy driver: its primary handler never clears the W1C status bit."""

    def ack(self, rc):
        pass


def test_forgotten_status_clear_storm_is_stopped():
    with rockchip(ForgetfulRockchip, QUICK) as (ctrl, domain):
        replies = SimpleQueue()
        buggy = _client(ctrl, 0, rx_callback=lambda cl, m: replies.put(m))
        with LogEvent("nobody cared") as seen:
            mbox.send_message(buggy, RockchipMsg(1, 1))
            assert replies.get(timeout=5) == RockchipMsg(2, 2)  # delivered once...
            assert seen.event.wait(30)  # ...then the still-set status bit storms
        assert "irq 10: nobody cared" in seen.messages[-1]
        assert domain.line(10).spurious_disabled
        assert replies.empty()  # no duplicate deliveries during the storm
        # The process and the other channels keep working.
        ok = _client(ctrl, 2, rx_callback=lambda cl, m: replies.put(m))
        mbox.send_message(ok, RockchipMsg(40, 1))
        assert replies.get(timeout=5) == RockchipMsg(41, 2)


def test_mu_peek_data_delivers_pending_rx_without_the_interrupt():
    with mu_pair() as (ca, cb):
        got = SimpleQueue()
        rx = _client(ca, IMX_MU_TYPE_RX, 3, rx_callback=lambda cl, m: got.put(m))
        assert not mbox.client_peek_data(rx)
        ca.domain.disable_irq(1)  # the interrupt will not deliver it
        mbox.send_message(_client(cb, IMX_MU_TYPE_TX, 3), 99)
        with pytest.raises(Empty):
            got.get(timeout=0.2)
        assert mbox.client_peek_data(rx)  # polled instead
        assert got.get(timeout=1) == 99
        assert not mbox.client_peek_data(rx)
        ca.domain.enable_irq(1)
