"""What a process holds: to check that a start/stop leaves nothing behind.

Only what the code under test could have created counts: this process's fds, threads
and children, and the shared memory it maps (amplink's regions are memfds, which have
no name; other programs on the machine create and remove ``/dev/shm`` objects at any
time, so the folder's listing is no measure)."""

import glob
import os
import threading

# Threads made once and kept for the life of the process: the one that forks every
# core process (a core dies with the thread that forked it).
LIFELONG = {"amplink-spawn_0"}


def children() -> set[int]:
    pids: set[int] = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(path) as f:
                pids.update(int(p) for p in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass  # that thread exited meanwhile (it had no children of ours then)
    return pids


def mapped_shared_memory() -> list[str]:
    """The shared memory objects (memfds, ``/dev/shm`` files) this process maps."""
    with open("/proc/self/maps") as f:
        paths = {line.split(maxsplit=5)[5].strip() for line in f if len(line.split()) >= 6}
    return sorted(p for p in paths if p.startswith(("/memfd:", "/dev/shm/")))


def snapshot() -> dict:
    """What this process holds that the code under test could have created: its fds,
    threads, children and the shared memory it maps (not the machine-wide /dev/shm,
    which other programs use too)."""
    return {
        "fds": sorted(os.listdir("/proc/self/fd")),
        "threads": sorted(t.name for t in threading.enumerate() if t.name not in LIFELONG),
        "children": children(),
        "shm": mapped_shared_memory(),
    }
