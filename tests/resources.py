"""What a process holds: to check that a start/stop leaves nothing behind."""

import glob
import os
import threading


def children() -> set[int]:
    pids: set[int] = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(path) as f:
                pids.update(int(p) for p in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass  # that thread exited meanwhile (it had no children of ours then)
    return pids


def snapshot() -> dict:
    return {
        "fds": sorted(os.listdir("/proc/self/fd")),
        "threads": sorted(t.name for t in threading.enumerate()),
        "children": children(),
        "shm": sorted(os.listdir("/dev/shm")),
    }
