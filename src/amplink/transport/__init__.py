"""How a virtqueue's notifications travel between processes.

A transport gives the layers above two things: a way to *ring* the peer and a way to
*wait* for the peer's ring.  The native transport of this release is a pair of eventfd
doorbells (one per direction); the mailbox/IRQ path replaces it on the kick path, and
other transports (OpenAMP's UNIX-socket kick, vhost-user) plug in beside it.
"""

from amplink.transport.doorbell import Doorbell
from amplink.transport.notify_thread import NotifyThread
from amplink.transport.spin import AdaptiveSpin

__all__ = ["AdaptiveSpin", "Doorbell", "NotifyThread"]
