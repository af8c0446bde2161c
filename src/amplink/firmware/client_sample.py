"""Client-sample firmware: the ``rpmsg-client-sample`` service as OpenAMP's
``rpmsg-sample-echo`` remote serves it.

It announces the channel, echoes the first 100 messages to their sender, then withdraws
the channel (a name-service destroy), which is how OpenAMP's ``rpmsg-sample-ping`` host
(and Linux's ``rpmsg_client_sample`` driver, which sends as many) knows the test ended.
"""

from __future__ import annotations

from amplink.remote import Core
from amplink.rpmsg.core import Endpoint

SERVICE = "rpmsg-client-sample"
MSG_LIMIT = 100


def main(core: Core) -> None:
    """Echo ``MSG_LIMIT`` messages, withdraw the channel, and serve until stopped."""
    count = 0

    def echo(ept: Endpoint, data: bytes, src: int) -> None:
        nonlocal count
        count += 1
        if count <= MSG_LIMIT:
            ept.sendto(data, src)
        if count == MSG_LIMIT:
            core.destroy_endpoint(ept)

    core.create_endpoint(SERVICE, echo)
    core.run()
