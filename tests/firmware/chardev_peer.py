"""Firmware for the user-space interface tests: an ``rpmsg-raw`` service that echoes,
and reports the channels the host created and withdrew.

``events``: reply with what the host announced (``create|destroy <name> <addr>``).
``stall``: stop consuming for a second, then reply ``resumed``.
``big``: reply with one message as large as this core can send (its MTU).
``pause`` / ``resume``: ask the host to stop / resume sending (flow control).
``flow``: reply ``paused`` or ``running``: what the host last asked of this endpoint.
Anything else is echoed.

Over GLINK a channel the host opens must be opened here too before it carries data, so
this core opens (and echoes on) every channel the host opens, and closes it after the
host.
"""

import time

from amplink.remote import Core


def main(core: Core) -> None:
    events = []
    served = {}

    def echo(ept, data, src):
        ept.sendto(data, src)

    def on_announcement(name, addr, created):
        events.append(f"{'create' if created else 'destroy'} {name} {addr}")
        if core.link.ns_supported:
            return
        if created and name not in served and name != "rpmsg-raw":
            served[name] = core.create_endpoint(name, echo)
        elif not created and name in served:
            core.destroy_endpoint(served.pop(name))

    def serve(ept, data, src):
        if data == b"events":
            ept.sendto("\n".join(events).encode(), src)
        elif data == b"big":
            ept.sendto(b"B" * core.mtu, src)
        elif data == b"stall":
            time.sleep(1.0)
            ept.sendto(b"resumed", src)
        elif data in (b"pause", b"resume"):
            ept.set_flow_control(data == b"pause")
        elif data == b"flow":
            ept.sendto(b"paused" if ept.remote_paused else b"running", src)
        else:
            ept.sendto(data, src)

    core.on_announcement(on_announcement)
    core.create_endpoint("rpmsg-raw", serve)
    core.run()
