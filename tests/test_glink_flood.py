"""A GLINK peer that writes as fast as the host reads keeps no host thread (nor its own
core's loop) in a drain: each drain has a budget (RX_SLICE and a FIFO's worth of
bytes), and what it leaves, the receive path reads in its next run, which the link
schedules itself (see amplink.rpmsg.polled).  Driven by ``firmware/glink_flood.py``.

The bounds asserted are generous on purpose: what they separate is a drain that
returns after its slice (2 ms, plus one callback, plus a scheduler tick or two on a
loaded machine) from one that runs as long as the flood (4 to 25 s here)."""

import errno
import threading
import time
from pathlib import Path

import pytest

from amplink.errors import RpmsgError
from amplink.host import Rproc, RprocConfig
from amplink.remoteproc.layout import glink_rsc_table
from amplink.remoteproc.process import ProcessPlatform
from amplink.remoteproc.states import CRASHED
from amplink.wire.protocol import Features
from glink_ends_helpers import ENDS, use_ends
from resources import snapshot
from waiting import wait_for

FLOOD_FW = str(Path(__file__).parent / "firmware" / "glink_flood.py")
SLACK = 1.0  # s: far above a slice and a tick or two, far below a flood


@pytest.fixture(autouse=True, params=sorted(ENDS))
def fifo_ends(request, monkeypatch):
    """Every test here runs on each implementation of the FIFO ends."""
    return use_ends(request, monkeypatch)


def test_recv_keeps_its_timeout_while_a_stream_floods_another_endpoint():
    """A recv() waits on an endpoint nobody writes to, taking the MU's line, when the
    core starts streaming on another channel faster than the host's callback consumes:
    the kick lands in recv()'s thread, which drains one slice and leaves the rest to the
    link's worker, so recv() times out in time.  Every streamed message arrives, in
    order after which the core's count comes."""
    with Rproc("glink-flood-recv", FLOOD_FW, table=glink_rsc_table(),
               config=RprocConfig(spin=False)) as rp:  # fmt: skip
        quiet = rp.wait_channel("echo", 10).create_ept()
        got = [0]

        def sink(ept, data, src) -> None:
            # Slower than the core sends.  It sleeps rather than burns the CPU: a
            # callback that keeps the CPU in Python keeps the GIL from every other
            # thread of the process, recv()'s included (CPython hands the GIL over
            # every 5 ms at best, and each system call recv() makes gives it back),
            # which no receive path can help (see docs/architecture.md, "Waiting").
            time.sleep(0.0003)
            got[0] += 1

        rp.wait_channel("sink", 10).create_ept(callback=sink)
        ctl = rp.wait_channel("flood-ctl", 10).create_ept()
        platform = rp.platform
        assert isinstance(platform, ProcessPlatform) and platform.kick_path is not None
        domain, irq = platform.kick_path.domain, platform.mailbox.host_irq

        def start_once_taken() -> None:  # the stream's first kick comes to recv()
            wait_for(lambda: irq in domain._taken, "recv() to take the MU's line")
            ctl.send(b"stream:4")

        starter = threading.Thread(target=start_once_taken)
        starter.start()
        elapsed = []
        for _ in range(5):
            t0 = time.monotonic()
            with pytest.raises(RpmsgError) as exc:
                quiet.recv(0.3)
            elapsed.append(time.monotonic() - t0)
            assert exc.value.errno == errno.ETIMEDOUT
        starter.join(10)
        during = got[0]
        done = ctl.recv(30).data
        assert done.startswith(b"streamed:")
        assert got[0] == int(done.split(b":")[1])  # the stream's messages, all of them
        assert during > 0, "the stream had not begun while recv() waited"
        assert max(elapsed) < 0.3 + SLACK, f"recv(0.3) took {elapsed}"
        quiet.send(b"still here")
        assert quiet.recv(10).data == b"still here"


def test_salvage_of_a_crashed_core_that_keeps_writing_is_bounded():
    """A core floods its FIFO to the host with commands and crashes (debugfs) while
    it goes on: the crash handler takes in at most one FIFO's worth and resets it
    (it used to read as long as the core wrote); nothing is left behind."""
    before = snapshot()
    rp = Rproc("glink-flood-salvage", FLOOD_FW, table=glink_rsc_table(),
               config=RprocConfig(recovery=False, shutdown_timeout=0.5))  # fmt: skip
    try:
        rp.start()
        ctl = rp.wait_channel("flood-ctl", 10).create_ept()
        ctl.send(b"raw:20")
        assert ctl.recv(10).data == b"raw:20"
        link = ctl.link
        start = link._rx.total
        wait_for(lambda: link._rx.total - start > 4 * link.spec.fifo_size, "the flood")
        t0 = time.monotonic()
        rp.debugfs.crash(2)
        rp.wait_crash_handled(1, timeout=60)
        took = time.monotonic() - t0
        assert rp.state == CRASHED
        assert took < SLACK * 5, f"the crash took {took:.1f} s to handle"
    finally:
        rp.stop()
        rp.delete()
    assert snapshot() == before


def test_a_core_streamed_to_without_pause_keeps_beating_its_watchdog():
    """The host streams to a core slower than itself (0.5 ms per message) for 3 s,
    longer than the core's 1 s watchdog: the core's loop drains in slices and beats
    the watchdog between them, so no crash is reported, and everything is consumed."""
    table = glink_rsc_table(features=Features(graceful_shutdown=True, watchdog_ms=1000))
    with Rproc("glink-flood-wdog", FLOOD_FW, table=table,
               config=RprocConfig(recovery=False)) as rp:  # fmt: skip
        slow = rp.wait_channel("slow-sink", 10).create_ept()
        ctl = rp.wait_channel("flood-ctl", 10).create_ept()
        sent = [0, 0]
        end = time.monotonic() + 3

        def blast(i: int) -> None:
            while time.monotonic() < end:
                slow.send(b"y" * 200, timeout=10)
                sent[i] += 1

        threads = [threading.Thread(target=blast, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert rp.crash_count == 0, rp.last_crash

        def consumed() -> bool:
            ctl.send(b"count:0")
            return ctl.recv(10).data == b"consumed:%d" % sum(sent)

        wait_for(consumed, "the core to consume the stream")
        assert rp.crash_count == 0, rp.last_crash
