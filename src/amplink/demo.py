"""``amplink demo``: boot a remote core, talk to it, stop it, and leave nothing behind.

The remote runs the bundled echo firmware in its own process; the host waits for its
``rpmsg-openamp-demo-channel`` announcement, sends one message of every size from 1 to
the MTU (496 bytes) with distinct contents, checks every echo byte for byte, and stops
the core.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from amplink.firmware.echo import SERVICE
from amplink.remoteproc import Rproc
from amplink.stats import latency_summary_us


@dataclass
class DemoResult:
    messages: int
    bytes_each_way: int
    rtt_p50_us: float
    rtt_p99_us: float
    boot_ms: float


def pattern(size: int) -> bytes:
    """A payload whose every byte depends on its size and position."""
    return bytes((size * 7 + i * 13) & 0xFF for i in range(size))


def run(out: TextIO | None = None, firmware: str = "amplink.firmware.echo") -> DemoResult:
    """Run the demo, printing progress to ``out`` (stdout); raises on any failure."""
    stream = out if out is not None else sys.stdout

    def say(msg: str) -> None:
        print(msg, file=stream, flush=True)

    rp = Rproc("rproc0", firmware)
    say(f"* starting remote core {rp.name} (firmware {firmware}) ...")
    t0 = time.perf_counter()
    with rp:
        chan = rp.wait_channel(SERVICE)
        boot_ms = (time.perf_counter() - t0) * 1000
        say(
            f"  running as pid {rp.pid}; channel {chan.name!r} announced at remote "
            f"address {chan.dst} after {boot_ms:.0f} ms"
        )
        ept = chan.create_ept()
        mtu = ept.get_mtu()
        say(f"* echo of one message of every size 1..{mtu} bytes, contents checked ...")
        samples = []
        total = 0
        for size in range(1, mtu + 1):
            payload = pattern(size)
            t = time.perf_counter_ns()
            ept.send(payload)
            reply = ept.recv(5.0)
            samples.append(time.perf_counter_ns() - t)
            if reply.data != payload:
                raise RuntimeError(f"echo of {size} bytes came back different")
            if reply.src != chan.dst:
                raise RuntimeError(f"echo came from address {reply.src}, not {chan.dst}")
            total += size
        say(f"* stopping {rp.name} ...")
    p50, p99 = latency_summary_us(samples)
    result = DemoResult(len(samples), total, p50, p99, boot_ms)
    say("")
    say(f"  messages     {result.messages} echoed, all identical")
    say(f"  bytes        {result.bytes_each_way:,} each way")
    say(f"  round trip   p50 {p50:.1f} us, p99 {p99:.1f} us")
    say(f"  core state   {rp.state} (stopped by {rp.last_stop})")
    return result
