"""Firmware that attacks the host on command, as a broken or malicious core could.

It serves ``rpmsg-openamp-demo-channel``: a message naming an attack makes it carry
that attack out; anything else is echoed.  The attacks (each reaches only what a core
holds: its shared memory and the descriptors it was given):

``tx-ring``: break the ring the host sends on.  Over virtio, the used index of
vring 1 jumps by 0x8000, more than could ever be outstanding (and stays wrong: later
returns count on from there); over GLINK, the read index of the host's FIFO points
outside it, and the core stops reading.

Each attack is acknowledged by echoing its name once it is done.
"""

import threading

from amplink.remote import Core


def main(core: Core) -> None:
    def serve(ept, data, src):
        if data == b"tx-ring":
            link = core.link
            if hasattr(link, "_rx_vq"):
                vq = link._rx_vq  # the ring of what the host sends
                vq._used_idx = (vq._used_idx + 0x8000) & 0xFFFF
                vq._used_h[1] = vq._used_idx
            else:
                fifo = link._rx  # the FIFO the host writes; its tail is ours
                fifo._words[fifo._mine_at] = 0xFFFFFFF0
                ept.sendto(data, src)
                threading.Event().wait()  # never read again (that would mend the index)
        ept.sendto(data, src)

    core.create_endpoint("rpmsg-openamp-demo-channel", serve)
    core.run()
