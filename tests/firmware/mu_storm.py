"""Firmware that raises MU events at its host as fast as it can, on command.

It serves ``rpmsg-openamp-demo-channel``: ``pulse`` makes a thread pulse the host's
interrupt line (the descriptor the core was given) in a loop, with no MU event pending:
interrupts nobody handles; ``words`` makes it write its MU's data register 0 again and
again with a notify id the host never gave out, each one an interrupt the host handles.
Each command is acknowledged first; anything else is echoed.
"""

import gc
import threading

from amplink.hw.imx_mu import SIDE_WORDS, ImxMuSide
from amplink.remote import Core

UNKNOWN_NOTIFY_ID = 0x7FF


def main(core: Core) -> None:
    mu = next(  # the core's side of its MU (side B: its words come second)
        o for o in gc.get_objects() if isinstance(o, ImxMuSide) and o._me == SIDE_WORDS
    )

    def pulse() -> None:
        wire = mu.peer_wire
        while True:
            wire.pulse()

    def words() -> None:
        while True:
            mu.write_tr(0, UNKNOWN_NOTIFY_ID)

    def serve(ept, data, src):
        ept.sendto(data, src)
        if data in (b"pulse", b"words"):
            threading.Thread(target=pulse if data == b"pulse" else words, daemon=True).start()

    core.create_endpoint("rpmsg-openamp-demo-channel", serve)
    core.run()
