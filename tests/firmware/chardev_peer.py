"""Firmware for the user-space interface tests: an ``rpmsg-raw`` service that echoes,
and reports the channels the host created and withdrew.

``events``: reply with what the host announced (``create|destroy <name> <addr>``).
``stall <fifo>``: reply ``stalled``, then stop consuming until the host writes to (or
closes) the FIFO at that path, then reply ``resumed``. The host decides when the core
stops and resumes, so a test of full queues does not depend on how fast anything runs.
``big``: reply with one message as large as this core can send (its MTU).
``pause`` / ``resume``: ask the host to stop / resume sending (flow control).
``flow``: reply ``paused`` or ``running``: what the host last asked of this endpoint.
Anything else is echoed.

Over GLINK a channel the host opens must be opened here too before it carries data, so
this core opens (and echoes on) every channel the host opens, and closes it after the
host.
"""

import os
import select

from amplink.remote import Core

STALL_LIMIT = 60.0  # a host that never releases the core: resume anyway


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
        elif data.startswith(b"stall "):
            gate = os.open(data[6:], os.O_RDONLY | os.O_NONBLOCK)
            try:
                ept.sendto(b"stalled", src)  # the gate is open: the host may let go of it
                select.select([gate], [], [], STALL_LIMIT)
            finally:
                os.close(gate)
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
