"""Firmware that acknowledges a shutdown request but never enters WFI."""

from amplink.remote import Core
from amplink.wire.protocol import RP_MBOX_SHUTDOWN_ACK


def main(core: Core) -> None:
    core.create_endpoint("rpmsg-openamp-demo-channel")
    core.hw.shutdown_requested.wait()
    core.hw.send_word(RP_MBOX_SHUTDOWN_ACK)
    core.hw.shutdown_requested.clear()
    core.hw.shutdown_requested.wait()  # busy with something else: never WFI
