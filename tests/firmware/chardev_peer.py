"""Firmware for the user-space interface tests: an ``rpmsg-raw`` service that echoes,
and reports the name-service messages the host sent it.

``events``: reply with what the host announced (``create <name> <addr>`` lines).
``stall``: stop consuming for a second, then reply ``resumed``.
``big``: reply with one message as large as this core can send (its MTU).
Anything else is echoed.
"""

import time

from amplink.remote import Core
from amplink.wire.rpmsg import NsMessage

NS_ADDR = 53


def main(core: Core) -> None:
    events = []

    def name_service(ept, data, src):
        msg = NsMessage.unpack(data)
        events.append(f"{'destroy' if msg.destroy else 'create'} {msg.name} {msg.addr}")

    def serve(ept, data, src):
        if data == b"events":
            ept.sendto("\n".join(events).encode(), src)
        elif data == b"big":
            ept.sendto(b"B" * core.mtu, src)
        elif data == b"stall":
            time.sleep(1.0)
            ept.sendto(b"resumed", src)
        else:
            ept.sendto(data, src)

    core.create_endpoint(None, name_service, addr=NS_ADDR)
    core.create_endpoint("rpmsg-raw", serve)
    core.run()
