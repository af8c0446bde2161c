"""amplink: the Linux AMP inter-processor communication stack, in Python.

Remote processors run as OS processes; rpmsg travels over virtio rings in shared memory
with the byte layout Linux and OpenAMP use.  Start with :class:`amplink.host.Rproc`
and the rpmsg API in :mod:`amplink.rpmsg`.
"""

__version__ = "0.1.0"
