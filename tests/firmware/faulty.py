"""Firmware whose service fails on command, in the ways a real core can fail.

``hang``: the callback never returns (no watchdog kicks).  ``fatal``: the firmware
reports a fatal error (``RP_MBOX_CRASH``).  ``corrupt``: it writes an impossible index
into the host's receive ring.  ``trace:<text>``: it writes text to its trace buffer
and logs a warning.  Anything else is echoed.
"""

import threading

from amplink.remote import Core


def main(core: Core) -> None:
    def serve(ept, data, src):
        if data == b"hang":
            threading.Event().wait()
        elif data == b"fatal":
            core.report_crash("assertion failed in serve()")
        elif data == b"corrupt":
            used = core.link._tx_vq._used_h  # the used ring the host reads its messages from
            used[1] = (used[1] + 0x8000) & 0xFFFF  # more than could be outstanding
            core.link._notify(0)
        elif data.startswith(b"trace:"):
            core.trace(data[6:].decode() + "\n")
            core.log.warning("logged %s", data[6:].decode())
            ept.sendto(b"traced", src)
        else:
            ept.sendto(data, src)

    core.create_endpoint("rpmsg-openamp-demo-channel", serve)
    core.run()
