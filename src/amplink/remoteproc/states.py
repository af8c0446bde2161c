"""Remote processor states, with the strings of ``/sys/class/remoteproc/*/state``."""

OFFLINE = "offline"
SUSPENDED = "suspended"  # defined by Linux, never entered
RUNNING = "running"
CRASHED = "crashed"
DELETED = "deleted"
ATTACHED = "attached"
DETACHED = "detached"
