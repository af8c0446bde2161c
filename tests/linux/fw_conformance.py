"""Firmware for the Linux conformance tests (served by ``amplink serve-linux``).

* ``rpmsg-raw`` at 0x400: byte-exact echo (the guest gets ``/dev/rpmsgN``).
* ``rpmsg-tty`` at 0x401: byte-exact echo (the guest gets ``/dev/ttyRPMSGN``).
* ``rpmsg-raw`` at 0x402: control commands from the guest test:
  ``announce`` / ``destroy`` a runtime ``rpmsg-raw`` echo channel at 0x410;
  ``events``: the name-service messages the guest sent, as JSON;
  ``stall SECONDS``: answer ``stalling``, stop serving for that long (the guest's
  send ring fills), then answer as usual.
* ``guest-bind`` at 0x404: echo on a channel no Linux driver claims (the guest binds it
  to ``rpmsg_chrdev`` with ``driver_override``).

When the guest announces a channel (``RPMSG_CREATE_DEV_IOCTL``), this firmware greets
it at once: a message the guest never asked for.
"""

from __future__ import annotations

import json
import time

from amplink.remote import Core
from amplink.rpmsg.core import Endpoint

ECHO, TTY, CONTROL, BIND, RUNTIME = 0x400, 0x401, 0x402, 0x404, 0x410
GREETING = b"hello from amplink"


def main(core: Core) -> None:
    """Serve the channels above until stopped."""
    events: list[tuple[str, int, bool]] = []
    runtime: list[Endpoint] = []

    def echo(ept: Endpoint, data: bytes, src: int) -> None:
        ept.sendto(data, src)

    def on_announcement(name: str, addr: int, created: bool) -> None:
        events.append((name, addr, created))
        if created:
            greeter.sendto(GREETING, addr)

    def control(ept: Endpoint, data: bytes, src: int) -> None:
        command = data.decode()
        if command == "announce" and not runtime:
            runtime.append(core.create_endpoint("rpmsg-raw", echo, addr=RUNTIME))
        elif command == "destroy" and runtime:
            core.destroy_endpoint(runtime.pop())
        elif command == "events":
            ept.sendto(json.dumps(events).encode(), src)
            return
        elif command.startswith("stall "):
            ept.sendto(b"stalling", src)
            time.sleep(float(command.split()[1]))  # a device that stops taking buffers
        ept.sendto(b"ok " + data, src)

    core.on_announcement(on_announcement)
    core.create_endpoint("rpmsg-raw", echo, addr=ECHO)
    core.create_endpoint("rpmsg-tty", echo, addr=TTY)
    core.create_endpoint("rpmsg-raw", control, addr=CONTROL)
    core.create_endpoint("guest-bind", echo, addr=BIND)
    greeter = core.create_endpoint(None, None)
    core.run()
