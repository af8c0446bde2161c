"""Remote processor states, with the strings of ``/sys/class/remoteproc/*/state``."""

OFFLINE = "offline"
RUNNING = "running"
CRASHED = "crashed"
DELETED = "deleted"
ATTACHED = "attached"
DETACHED = "detached"
