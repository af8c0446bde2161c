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
    """What this process holds that the code under test could have created: its fds
    (amplink's shared memory is memfds, so they count there), threads and children.
    Not /dev/shm, which other programs on the machine use too (amplink puts nothing
    there: test_memory checks that)."""
    return {
        "fds": sorted(os.listdir("/proc/self/fd")),
        "threads": sorted(t.name for t in threading.enumerate()),
        "children": children(),
    }
