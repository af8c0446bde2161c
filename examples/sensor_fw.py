"""A Python firmware example with a service of its own: a simulated sensor.

It announces ``sensor-service``.  A message ``read`` gets one sample back, packed as
the C struct a real firmware would send (``struct sample { u32 seq; i32 milli_c; }``);
``rate <n>`` asks for ``n`` unsolicited samples, sent from the firmware's own thread as
a remote-initiated stream; anything else gets ``error: ...``.  Every request is logged to
the trace buffer (``amplink trace CORE``).

Run it on its own board: ``amplink up examples/sensor-board.toml``, then
``amplink send sensor sensor-service read``; or from Python, ``examples/sensor_host.py``.
"""

from __future__ import annotations

import math
import struct
import threading

from amplink.remote import Core
from amplink.rpmsg.core import Endpoint

SERVICE = "sensor-service"
SAMPLE = struct.Struct("<Ii")  # seq, temperature in milli-degrees Celsius


def sample(seq: int) -> bytes:
    """Sample ``seq``: a slow sine around 36.6 degrees, deterministic for tests."""
    return SAMPLE.pack(seq, 36_600 + round(400 * math.sin(seq / 10)))


def main(core: Core) -> None:
    """Serve ``sensor-service`` until the host stops the core."""
    seq = 0
    lock = threading.Lock()

    def next_sample() -> bytes:
        nonlocal seq
        with lock:
            seq += 1
            return sample(seq)

    def stream(ept: Endpoint, dst: int, count: int) -> None:
        for _ in range(count):
            ept.sendto(next_sample(), dst)

    def on_request(ept: Endpoint, data: bytes, src: int) -> None:
        command, _, arg = data.decode(errors="replace").partition(" ")
        core.trace(f"request {command!r} from {src}\n")
        if command == "read":
            ept.sendto(next_sample(), src)
        elif command == "rate" and arg.isdigit():
            threading.Thread(target=stream, args=(ept, src, int(arg)), daemon=True).start()
        else:
            ept.sendto(f"error: unknown request {command!r}".encode(), src)

    core.create_endpoint(SERVICE, on_request)
    core.run()
