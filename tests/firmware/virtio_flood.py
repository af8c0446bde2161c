"""virtio firmware that floods the host while it consumes nothing, for
tests/test_virtio_flood.py.

``flood-ctl`` takes ``stream:<s>``: for ``s`` seconds a thread sends 64-byte messages
on ``sink`` as fast as the host gives its buffers back, then answers ``streamed:<n>``
with how many it sent.  ``stall`` sleeps in its callback for the seconds a message
says: the core's loop consumes nothing meanwhile, so the host's sends run out of
buffers and block while the stream goes on.
"""

import threading
import time

from amplink.remote import Core

PAYLOAD = b"f" * 64


def main(core: Core) -> None:
    sink = core.create_endpoint("sink")

    def stream(ctl, secs: float) -> None:
        end = time.monotonic() + secs
        n = 0
        while time.monotonic() < end:
            sink.send(PAYLOAD, timeout=30)
            n += 1
        ctl.send(b"streamed:%d" % n)

    def control(ept, data, src):
        secs = float(data.decode().split(":")[1])
        threading.Thread(target=stream, args=(ept, secs), daemon=True).start()

    core.create_endpoint("flood-ctl", control)
    core.create_endpoint("stall", lambda ept, data, src: time.sleep(float(data.decode())))
    core.run()
