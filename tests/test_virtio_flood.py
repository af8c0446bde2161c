"""A blocked virtio sender keeps its timeout while the peer floods the host (hostile
review: the wait overran its deadline).  Driven by ``firmware/virtio_flood.py``: the
core's loop sleeps in a callback (it consumes nothing: the host's sends run out of
buffers and block) while a thread of the core streams to the host as fast as the host
gives its buffers back; the blocked sender, spinning or not, takes the peer's
notifications and drains the stream itself (see amplink.rpmsg.polled) and must still
give up at its deadline.

As in test_glink_flood.py the bound is generous on purpose: it separates a wait that
ends after its timeout plus a scheduler tick or two on a loaded machine from one that
lasts as long as the flood (seconds)."""

import errno
import time
from pathlib import Path

import pytest

from amplink.errors import RpmsgError
from amplink.host import Rproc, RprocConfig
from waiting import wait_for

FLOOD_FW = str(Path(__file__).parent / "firmware" / "virtio_flood.py")
SLACK = 1.0  # s: far above a tick or two, far below the flood
TIMEOUT = 0.3  # s: each blocked send's


@pytest.mark.parametrize("spin", [None, False], ids=["spin", "no-spin"])
def test_a_blocked_send_times_out_in_time_while_the_peer_floods(spin):
    with Rproc("virtio-flood", FLOOD_FW, config=RprocConfig(spin=spin)) as rp:
        got = [0]
        sink = rp.wait_channel("sink", 10).create_ept(
            callback=lambda ept, data, src: got.__setitem__(0, got[0] + 1)
        )
        sink.send(b"hello")  # the core's endpoint learns where to stream
        ctl = rp.wait_channel("flood-ctl", 10).create_ept()
        stall = rp.wait_channel("stall", 10).create_ept()
        ctl.send(b"stream:4")
        stall.send(b"3")  # the core's loop consumes nothing for 3 s
        elapsed = []
        start = time.monotonic()
        while time.monotonic() - start < 2.5 and len(elapsed) < 5:
            t0 = time.monotonic()
            try:
                stall.send(b"0", timeout=TIMEOUT)
            except RpmsgError as exc:
                assert exc.errno == errno.ETIMEDOUT
                elapsed.append(time.monotonic() - t0)
        during = got[0]
        done = ctl.recv(30).data
        assert done.startswith(b"streamed:")
        assert len(elapsed) >= 2, "the sends never ran out of buffers"
        assert during > 1000, f"the stream had not reached the host ({during} messages)"
        assert max(elapsed) < TIMEOUT + SLACK, f"send(timeout={TIMEOUT}) took {elapsed}"
        streamed = int(done.split(b":")[1])
        wait_for(lambda: got[0] >= streamed, "every streamed message")
        assert got[0] == streamed
