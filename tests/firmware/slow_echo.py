"""Echo firmware that takes 2 ms per message, so that a core killed mid-traffic has
messages in its hands: read, but not yet echoed."""

import time

from amplink.remote import Core


def main(core: Core) -> None:
    def echo(ept, data, src):
        time.sleep(0.002)
        ept.sendto(data, src)

    core.create_endpoint("rpmsg-openamp-demo-channel", echo)
    core.run()
