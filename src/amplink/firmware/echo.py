"""Echo firmware: announces ``rpmsg-openamp-demo-channel`` and echoes every message.

The same service and behaviour as OpenAMP's ``rpmsg-echo`` demo: each payload goes back
to the endpoint that sent it.  It stops when the host stops the core.
"""

from __future__ import annotations

from amplink.remote import Core
from amplink.rpmsg.core import Endpoint

SERVICE = "rpmsg-openamp-demo-channel"


def main(core: Core) -> None:
    """Serve the echo service until stopped."""

    def echo(ept: Endpoint, data: bytes, src: int) -> None:
        ept.sendto(data, src)

    core.create_endpoint(SERVICE, echo)
    core.run()
