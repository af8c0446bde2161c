"""The firmware side: what runs inside a remote core process.

A firmware program is a Python module with a ``main(core)`` function; ``core`` is a
:class:`~amplink.remote.runtime.Core`, which gives it endpoints, name-service
announcements and an event loop, over the virtio *device* role of rpmsg.
"""

from amplink.remote.runtime import Core

__all__ = ["Core"]
