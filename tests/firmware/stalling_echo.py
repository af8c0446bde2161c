"""Echo firmware whose message ``stall:<s>`` is answered ``stalling``, then keeps the
core's loop in its callback for ``<s>`` seconds, reading nothing meanwhile (so the host's
send ring fills; every buffer of an earlier message was given back before)."""

import time

from amplink.remote import Core


def main(core: Core) -> None:
    def echo(ept, data, src):
        if data.startswith(b"stall:"):
            ept.sendto(b"stalling", src)
            time.sleep(float(data[6:]))
            return
        ept.sendto(data, src)

    core.create_endpoint("rpmsg-openamp-demo-channel", echo)
    core.run()
