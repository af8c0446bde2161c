"""Both ends of the register-level stress exchange (see ``hw_peer.py``)."""

import os
import time

from amplink.hw import ImxMu, RockchipMailbox
from amplink.hw import imx_mu as mu
from amplink.hw import rockchip as rk
from amplink.memory import SharedRegion

STRESS_CHANNELS = 4
STALL_S = 60  # no message either way for this long: stuck (a busy machine is only slow)


def make_unit(kind: str, region: SharedRegion):
    if kind == "mu":
        return ImxMu("stress", region.cast(0, mu.SIZE, "I"))
    return RockchipMailbox("stress", region.cast(0, rk.SIZE, "I"))


def _ports(kind: str, unit, side: str):
    """Per channel: can_send(), send(v), has_rx(), take() -> v for this side."""
    if kind == "mu":
        s = unit.side(side)

        def port(n):
            return (
                lambda: s.readl(mu.MU_SR) & mu.TE(n),
                lambda v: s.writel(mu.MU_TR0 + 4 * n, v),
                lambda: s.readl(mu.MU_SR) & mu.RF(n),
                lambda: s.readl(mu.MU_RR0 + 4 * n),
            )

        return [port(n) for n in range(mu.NUM_CHANS)]
    out_dir, in_dir = (rk.A2B, rk.B2A) if side == "a" else (rk.B2A, rk.A2B)
    status = (rk.A2B_STATUS, rk.B2A_STATUS)
    cmd = (rk.A2B_CMD, rk.B2A_CMD)
    dat = (rk.A2B_DAT, rk.B2A_DAT)

    def rport(x):
        def take():
            v = unit.readl(cmd[in_dir](x)) << 16 | unit.readl(dat[in_dir](x))
            unit.writel(status[in_dir], 1 << x)  # write 1 to clear
            return v

        def send(v):
            unit.writel(cmd[out_dir](x), v >> 16)
            unit.writel(dat[out_dir](x), v & 0xFFFF)

        return (
            lambda: not unit.readl(status[out_dir]) & (1 << x),
            send,
            lambda: unit.readl(status[in_dir]) & (1 << x),
            take,
        )

    return [rport(x) for x in range(rk.NUM_CHANS)]


def exchange(kind: str, unit, side: str, count: int, channels: int) -> int:
    """Send 0..count-1 round-robin over the channels while receiving the peer's."""
    ports = _ports(kind, unit, side)[:channels]
    sent = received = 0
    expect = list(range(channels))  # message i travels on channel i % channels
    idle = seen = 0
    deadline = time.monotonic() + STALL_S
    while sent < count or received < count:
        progress = False
        if sent < count:
            can_send, send, _, _ = ports[sent % channels]
            if can_send():
                send(sent)
                sent += 1
                progress = True
        for n, (_, _, has_rx, take) in enumerate(ports):
            if received < count and has_rx():
                v = take()
                if v != expect[n]:
                    print(f"{side}: channel {n} got {v}, expected {expect[n]}", flush=True)
                    return 1
                expect[n] += channels
                received += 1
                progress = True
        idle = 0 if progress else idle + 1
        if idle > 64:
            os.sched_yield()  # the peer may share our CPU
            idle = 0
            now = time.monotonic()
            if sent + received != seen:  # stuck means no progress, not slow
                seen, deadline = sent + received, now + STALL_S
            elif now > deadline:
                print(f"{side}: stuck after sending {sent} and receiving {received}", flush=True)
                return 2
    return 0
