"""remoteproc: the remote processor lifecycle, firmware images, resource tables,
crashes and recovery, and the platform driver for cores that run as processes."""

from amplink.remoteproc.crash import CRASH_FATAL_ERROR, CRASH_MMUFAULT, CRASH_WATCHDOG
from amplink.remoteproc.rproc import Rproc
from amplink.remoteproc.states import ATTACHED, CRASHED, DELETED, DETACHED, OFFLINE, RUNNING

__all__ = [
    "ATTACHED",
    "CRASHED",
    "CRASH_FATAL_ERROR",
    "CRASH_MMUFAULT",
    "CRASH_WATCHDOG",
    "DELETED",
    "DETACHED",
    "OFFLINE",
    "RUNNING",
    "Rproc",
]
