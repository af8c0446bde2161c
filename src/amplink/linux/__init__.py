"""The host API over a real Linux kernel's interfaces, for a real board.

amplink's own stack offers ``RpmsgCtrl``, endpoint files and remote processors as
objects; this package offers the same shapes over what the kernel exposes:

* :mod:`.rpmsg`: channels from ``/sys/bus/rpmsg/devices``, ``/dev/rpmsg_ctrlN`` ioctls,
  ``/dev/rpmsgN`` endpoint files (usable from ``select`` and asyncio), binding a
  channel to ``rpmsg_chrdev`` with ``driver_override``, ``/dev/ttyRPMSGN``;
* :mod:`.remoteproc`: ``/sys/class/remoteproc/remoteprocN`` (state, firmware,
  recovery, coredump) and the debugfs trace buffers.

The rpmsg part is tested against a real kernel (User-Mode Linux, ``make test-linux``);
the remoteproc part against a directory tree laid out like the documented sysfs ABI,
since no real remote processor exists on a build machine.
"""

from amplink.linux.remoteproc import RemoteProc, remote_procs
from amplink.linux.rpmsg import (
    Channel,
    LinuxCtrl,
    LinuxEptFile,
    LinuxRpmsgChar,
    bind_chrdev,
    channels,
    open_tty,
)

__all__ = [
    "Channel",
    "LinuxCtrl",
    "LinuxEptFile",
    "LinuxRpmsgChar",
    "RemoteProc",
    "bind_chrdev",
    "channels",
    "open_tty",
    "remote_procs",
]
