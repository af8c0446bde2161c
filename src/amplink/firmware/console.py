"""Console firmware: an ``rpmsg-tty`` service that echoes what it receives.

On the host, :class:`~amplink.rpmsg.tty.RpmsgTtyDriver` turns the channel into a
pseudo-terminal; what a user types there comes back, as from a remote shell that
echoes.  The size of every message received goes to the trace buffer (``rx <n>``),
which shows how the host split what was typed.
"""

from __future__ import annotations

from amplink.remote import Core
from amplink.rpmsg.core import Endpoint
from amplink.rpmsg.tty import RPMSG_TTY_SERVICE


def main(core: Core) -> None:
    """Serve the echoing ``rpmsg-tty`` console until stopped."""

    def echo(ept: Endpoint, data: bytes, src: int) -> None:
        core.trace(f"rx {len(data)}\n")
        ept.sendto(data, src)

    core.create_endpoint(RPMSG_TTY_SERVICE, echo)
    core.run()
