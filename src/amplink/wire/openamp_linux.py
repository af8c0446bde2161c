"""The OpenAMP "linux machine" layout: what two processes agree on when they run both
sides of rpmsg on one Linux PC (OpenAMP's demo applications: ``rpmsg-echo``,
``rpmsg-echo-ping``, ``matrix_multiplyd``...).

Facts from ``shared/reference/openamp-linux-machine-layout.md`` (checked against the
OpenAMP sources, ``platform_info.c`` and ``rsc_table.c`` of the linux machine port):

* one POSIX shared-memory object (``openamp.shm``, 512 KiB) holds everything; every
  address in it (resource table, vrings, descriptors) is a **byte offset** in the object;
* the resource table (88 bytes, one rpmsg vdev with two 256-entry vrings) is at offset 0,
  written by whichever process is the UNIX-socket server, before it listens;
* vring 0 (device to driver) is at 0x4000, vring 1 (driver to device) at 0x8000, the
  driver's 512-byte buffers at 0x10000 (256 receive buffers, then the send buffers);
* notifications ("kicks") are single bytes on one UNIX stream socket
  (``/tmp/openamp.event.0``), with no vring id: a kick means "look at both rings".

Nothing here does I/O; :mod:`amplink.transport.openamp_linux` does.
"""

from __future__ import annotations

from amplink.wire import rsc_table as rt

SHM_NAME = "openamp.shm"
SHM_SIZE = 0x80000
SOCKET_PATH = "/tmp/openamp.event.0"
RSC_TABLE_PA = 0x0
VRING_ALIGN = 0x1000
VRING_NUM = 256
VRING0_DA = 0x4000  # device -> driver (the host receives)
VRING1_DA = 0x8000  # driver -> device (the host sends)
VDEV_ID = 7  # the table's one vdev carries rpmsg (VIRTIO_ID_RPMSG)
VDEV_NOTIFYID = 0
VRING_NOTIFYIDS = (1, 2)
SHARED_BUF_PA = 0x10000
SHARED_BUF_SIZE = 0x40000
RPMSG_BUFFER_SIZE = 512
VIRTIO_RPMSG_F_NS = 0
KICK = b"\x01"
# What the echo, matrix and nocopy remotes take as "stop" in the first payload word.
SHUTDOWN_MSG = 0xEF56A55A


def resource_table() -> rt.ResourceTable:
    """The table the port's server writes at offset 0: one rpmsg vdev offering the name
    service, status 0, its two vrings at fixed offsets (88 bytes once built)."""
    vrings = [
        rt.Vring(da, VRING_ALIGN, VRING_NUM, notifyid)
        for da, notifyid in zip((VRING0_DA, VRING1_DA), VRING_NOTIFYIDS, strict=True)
    ]
    return rt.ResourceTable(
        [
            rt.Vdev(
                VDEV_ID,
                notifyid=VDEV_NOTIFYID,
                dfeatures=1 << VIRTIO_RPMSG_F_NS,
                vrings=vrings,
            )
        ]
    )


def shm_path(name: str) -> str:
    """The file behind a shared-memory object name: a POSIX name (``openamp.shm`` or
    ``/openamp.shm``, as ``shm_open`` takes) lives in ``/dev/shm``; an absolute path with
    more than one slash is a file of its own.  ``ValueError`` for anything else."""
    bare = name[1:] if name.startswith("/") else name
    if not bare or bare in (".", ".."):
        raise ValueError(f"{name!r} is not a shared-memory object name")
    if "/" not in bare:
        return "/dev/shm/" + bare
    if name.startswith("/"):
        return name
    raise ValueError(f"{name!r}: a shared-memory name has no slash inside (or give a full path)")
