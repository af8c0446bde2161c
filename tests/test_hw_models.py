"""Mailbox unit models: register semantics, interrupt outputs, and two processes at once."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from amplink.hw import ImxMu, MmioError, RockchipMailbox
from amplink.hw import imx_mu as mu
from amplink.hw import rockchip as rk
from amplink.irq.line import IrqWire, drain
from amplink.memory import SharedRegion
from hw_stress import STRESS_CHANNELS, STUCK_AFTER, exchange, make_unit

HERE = Path(__file__).parent
STRESS_COUNT = 100_000


@pytest.fixture
def wires():
    fds = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]
    yield fds
    for fd in fds:
        os.close(fd)


def test_mu_data_registers(wires):
    with SharedRegion.create(mu.SIZE) as region:
        unit = ImxMu("mu", region.cast(0, mu.SIZE, "I"), wire_a=IrqWire(wires[0]))
        a, b = unit.a, unit.b
        assert a.readl(mu.MU_SR) == b.readl(mu.MU_SR) == sum(mu.TE(n) for n in range(4))
        a.writel(mu.MU_TR0 + 8, 0xDEADBEEF)  # TR2
        assert not a.readl(mu.MU_SR) & mu.TE(2)  # until the peer reads it
        assert b.readl(mu.MU_SR) & mu.RF(2)
        assert a.readl(mu.MU_TR0 + 8) == 0xDEADBEEF
        # A enables its TX-empty interrupt: not active yet, TE2 is clear.
        a.cr_update(set_bits=mu.TIE(2))
        assert not a.irq_active() and not drain(wires[0])
        assert b.readl(mu.MU_RR0 + 8) == 0xDEADBEEF
        assert not b.readl(mu.MU_SR) & mu.RF(2)  # reading cleared RF2
        assert a.readl(mu.MU_SR) & mu.TE(2)  # and the sender sees TE2 again...
        assert a.irq_active() and drain(wires[0])  # ...which raised A's output
        a.cr_update(clear_bits=mu.TIE(2))
        assert not a.irq_active()
        b.writel(mu.MU_RR0, 5)  # read-only: ignored
        assert not a.readl(mu.MU_SR) & mu.RF(0)


def test_mu_general_interrupts_are_write_1_to_clear(wires):
    with SharedRegion.create(mu.SIZE) as region:
        unit = ImxMu(
            "mu", region.cast(0, mu.SIZE, "I"), wire_a=IrqWire(wires[0]), wire_b=IrqWire(wires[1])
        )
        a, b = unit.a, unit.b
        b.cr_update(set_bits=mu.GIE(1))
        a.cr_update(set_bits=mu.GIR(1))
        assert a.readl(mu.MU_CR) & mu.GIR(1) == 0  # taken at once, reads back 0
        assert b.readl(mu.MU_SR) & mu.GIP(1)
        assert b.irq_active() and drain(wires[1])
        b.writel(mu.MU_SR, mu.TE(0) | mu.RF(0))  # other status bits are read-only
        assert b.readl(mu.MU_SR) & mu.GIP(1)
        b.writel(mu.MU_SR, mu.GIP(1))
        assert not b.readl(mu.MU_SR) & mu.GIP(1) and not b.irq_active()
        # Enabling an event that is already pending raises the output at once.
        a.cr_update(set_bits=mu.GIR(3))
        assert not drain(wires[1])  # GIE3 is off
        b.cr_update(set_bits=mu.GIE(3))
        assert drain(wires[1])
        with pytest.raises(MmioError) as exc:
            a.readl(0x30)
        assert exc.value.offset == 0x30
        with pytest.raises(MmioError):
            a.writel(0x22, 1)


def test_mu_single_bit_accessors_read_what_sr_reads(wires):
    """status_bit/pending (the drivers' message path) agree with readl(MU_SR)/(MU_CR) in
    every state a few sends, reads, requests and enables reach; and only a CR write
    that sets an enable looks at the output (clearing one cannot raise it)."""
    with SharedRegion.create(mu.SIZE) as region:
        unit = ImxMu(
            "mu", region.cast(0, mu.SIZE, "I"), wire_a=IrqWire(wires[0]), wire_b=IrqWire(wires[1])
        )
        a, b = unit.a, unit.b
        bits = [f(n) for n in range(4) for f in (mu.GIP, mu.RF, mu.TE)]
        steps = [
            lambda: a.write_tr(1, 7),
            lambda: a.cr_update(set_bits=mu.GIR(2) | mu.TIE(1)),
            lambda: b.cr_update(set_bits=mu.RIE(1) | mu.GIE(2)),
            lambda: b.read_rr(1),
            lambda: b.writel(mu.MU_SR, mu.GIP(2)),
            lambda: b.write_tr(3, 9),
            lambda: a.cr_update(clear_bits=mu.TIE(1)),
        ]
        for step in steps:
            step()
            for side in (a, b):
                sr, cr = side.readl(mu.MU_SR), side.readl(mu.MU_CR)
                for bit in bits:
                    assert side.status_bit(bit) == bool(sr & bit)
                    assert side.pending(bit) == bool(sr & cr & bit)
        assert b.readl(mu.MU_TR0 + 12) == 9 and a.read_rr(3) == 9 and b.status_bit(mu.TE(3))
        drain(wires[1])
        b.writel(mu.MU_CR, mu.GIE(0))  # nothing pending: no pulse
        assert not drain(wires[1])
        a.cr_update(set_bits=mu.GIR(0))
        assert b.irq_active() and drain(wires[1])
        b.cr_update(clear_bits=mu.RIE(1))  # clears an enable, keeps GIE0: no new pulse
        assert b.irq_active() and not drain(wires[1])


def test_rockchip_registers(wires):
    with SharedRegion.create(rk.SIZE) as region:
        wire_b2a = [IrqWire(wires[0])] + [None] * 3
        unit = RockchipMailbox("rk", region.cast(0, rk.SIZE, "I"), ((None,) * 4, wire_b2a))
        unit.writel(rk.B2A_CMD(0), 7)
        assert unit.readl(rk.B2A_STATUS) == 0  # the command alone raises nothing
        unit.writel(rk.B2A_DAT(0), 9)
        assert unit.readl(rk.B2A_STATUS) == 1 and not unit.irq_active(rk.B2A, 0)
        assert not drain(wires[0])
        unit.writel(rk.B2A_INTEN, 0b1111)
        assert unit.irq_active(rk.B2A, 0) and drain(wires[0])
        assert (unit.readl(rk.B2A_CMD(0)), unit.readl(rk.B2A_DAT(0))) == (7, 9)
        unit.writel(rk.B2A_STATUS, 0b10)  # another channel's bit: nothing to clear
        assert unit.readl(rk.B2A_STATUS) == 1
        unit.writel(rk.B2A_STATUS, 0b1)
        assert unit.readl(rk.B2A_STATUS) == 0 and not unit.irq_active(rk.B2A, 0)
        unit.writel(rk.A2B_DAT(3), 1)
        assert unit.readl(rk.A2B_STATUS) == 0b1000
        assert unit.readl(rk.A2B_INTEN) == 0
        with pytest.raises(MmioError):
            unit.readl(0x100)


@pytest.mark.timeout(600)  # 200,000 messages: minutes beside CPU hogs; stuck is 30 s idle
@pytest.mark.parametrize("kind", ["mu", "rockchip"])
@pytest.mark.timeout(900)  # slow beside CPU hogs; a stall fails after 60 s (hw_stress)
def test_two_processes_lose_and_duplicate_nothing(kind):
    """100,000 messages each way, both sides sending and receiving at the same time."""
    size = mu.SIZE if kind == "mu" else rk.SIZE
    with SharedRegion.create(size, "stress") as region:
        unit = make_unit(kind, region)
        peer = subprocess.Popen(
            [sys.executable, str(HERE / "hw_peer.py"), kind, str(region.fd), str(STRESS_COUNT)],
            pass_fds=(region.fd,),
        )
        try:
            assert exchange(kind, unit, "a", STRESS_COUNT, STRESS_CHANNELS) == 0
            assert peer.wait(STUCK_AFTER) == 0
        finally:
            if peer.poll() is None:
                peer.kill()
                peer.wait()
