"""Firmware for the backend suite: echoes on ``rpmsg-openamp-demo-channel`` and obeys
commands on ``control``.

``open NAME`` / ``close NAME``: open (announce) or close a channel that echoes.
"""

from amplink.remote import Core

ECHO = "rpmsg-openamp-demo-channel"


def main(core: Core) -> None:
    extra = {}

    def echo(ept, data, src):
        ept.sendto(data, src)

    def control(ept, data, src):
        verb, _, name = data.decode().partition(" ")
        if verb == "open":
            extra[name] = core.create_endpoint(name, echo)
        elif verb == "close":
            core.destroy_endpoint(extra.pop(name))
        ept.sendto(b"done " + data, src)

    core.create_endpoint(ECHO, echo)
    core.create_endpoint("control", control)
    core.run()
