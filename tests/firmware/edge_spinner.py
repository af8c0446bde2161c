"""An echo firmware whose waits keep crossing the line between polling and sleeping:
its spin budget is a few microseconds, so nearly every wait spins, gives up, re-enables
host notifications and checks once more before it sleeps (the handshake in which a lost
wake-up would hide)."""

from amplink.remote import Core
from amplink.wait import AdaptiveSpin


def main(core: Core) -> None:
    core.link.spin = AdaptiveSpin(5_000, enabled=True, probe_every=2)
    core.create_endpoint("rpmsg-openamp-demo-channel", lambda ept, data, src: ept.sendto(data, src))
    core.run()
