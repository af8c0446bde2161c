"""A console that sends bursts: typing anything on its rpmsg-tty answers "ready" (and
tells it the host's address); a number N sent on "burst-control" makes it send N
bytes of a known pattern on the console in 496-byte messages, each send waiting while
the host has no buffer for it, then answer "sent N" on the control channel."""

from amplink.remote import Core
from amplink.rpmsg.tty import RPMSG_TTY_SERVICE

CHUNK = 496


def pattern(n: int) -> bytes:
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def main(core: Core) -> None:
    tty = core.create_endpoint(RPMSG_TTY_SERVICE, lambda ept, data, src: ept.sendto(b"ready", src))

    def control(ept, data, src):
        n = int(data)
        body = pattern(n)
        for i in range(0, n, CHUNK):
            tty.send(body[i : i + CHUNK], timeout=120)
        ept.sendto(b"sent %d" % n, src)

    core.create_endpoint("burst-control", control)
    core.run()
