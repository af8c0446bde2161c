"""GLINK firmware that floods the host on command, for tests/test_glink_flood.py.

It opens ``echo`` (echoes), ``sink`` (sends only), ``slow-sink`` (each message it
receives costs 0.5 ms of CPU: a core slower than the host that streams to it) and
``flood-ctl``, which takes:

``stream:<s>``: for ``s`` seconds a thread sends 64-byte messages on ``sink`` as fast
as the host's intents let it (a well-behaved peer, only faster than the host), then
answers ``streamed:<n>`` on ``flood-ctl`` with how many it sent.
``raw:<s>``: for ``s`` seconds a thread writes ``READ_NOTIF`` commands straight into
its FIFO to the host, 512 bytes whenever they fit, holding the core's CPU as C firmware
would (a hostile peer: the host reads them and must not be kept reading); the command
is answered first.
``count:0``: answers ``consumed:<n>``, how many messages ``slow-sink`` has received.
"""

import sys
import threading
import time

from amplink.remote import Core
from amplink.rpmsg.core import RPMSG_ADDR_ANY
from amplink.wire import glink

PAYLOAD = b"s" * 64
SLOW_CALLBACK = 0.0005  # s of CPU per slow-sink message
RAW_BLOCK = glink.command(glink.READ_NOTIF) * 64  # 512 bytes: the head never rests


def main(core: Core) -> None:
    sink = core.create_endpoint("sink")

    def stream(ctl, secs: float) -> None:
        end = time.monotonic() + secs
        n = 0
        while time.monotonic() < end:
            sink.sendto(PAYLOAD, RPMSG_ADDR_ANY, timeout=30)
            n += 1
        ctl.sendto(b"streamed:%d" % n, RPMSG_ADDR_ANY)

    def raw(secs: float) -> None:
        link = core.link
        sys.setswitchinterval(5.0)  # this thread keeps the core's CPU
        end = time.monotonic() + secs
        while time.monotonic() < end and link.failure is None:
            with link._tx_lock:  # (which serialises the writer, its kick decision too)
                if link._tx.free() >= len(RAW_BLOCK) + 64:
                    link._tx.write(RAW_BLOCK)
                kick = link._tx.kick_needed()
            if kick:
                link._notify()
        sys.setswitchinterval(0.005)

    def control(ept, data, src):
        kind, secs = data.decode().split(":")
        if kind == "stream":
            threading.Thread(target=stream, args=(ept, float(secs)), daemon=True).start()
        elif kind == "count":
            ept.sendto(b"consumed:%d" % consumed[0], src)
        elif kind == "raw":
            ept.sendto(data, src)
            threading.Thread(target=raw, args=(float(secs),), daemon=True).start()

    consumed = [0]

    def slow(ept, data, src):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < SLOW_CALLBACK:
            pass
        consumed[0] += 1

    core.create_endpoint("slow-sink", slow)
    core.create_endpoint("echo", lambda ept, data, src: ept.sendto(data, src))
    core.create_endpoint("flood-ctl", control)
    core.run()
