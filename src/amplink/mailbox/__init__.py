"""The mailbox framework and controller drivers for the hardware models.

:mod:`amplink.mailbox.framework` holds the framework (controllers, channels, clients);
:mod:`amplink.mailbox.imx_mu` and :mod:`amplink.mailbox.rockchip` the drivers;
:mod:`amplink.mailbox.kick` and :mod:`amplink.mailbox.mu_path` the vring-kick client
that remoteproc and the remote core use.
"""

from amplink.mailbox.framework import (
    MBOX_NO_MSG,
    MBOX_TX_QUEUE_LEN,
    MboxChan,
    MboxClient,
    MboxController,
    bind_client,
    client_peek_data,
    client_txdone,
    flush,
    free_channel,
    request_channel,
    request_channel_byname,
    send_message,
    tx_slots_available,
)

__all__ = [
    "MBOX_NO_MSG",
    "MBOX_TX_QUEUE_LEN",
    "MboxChan",
    "MboxClient",
    "MboxController",
    "bind_client",
    "client_peek_data",
    "client_txdone",
    "flush",
    "free_channel",
    "request_channel",
    "request_channel_byname",
    "send_message",
    "tx_slots_available",
]
