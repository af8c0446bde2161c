"""A full memory barrier for code that shares memory with another process.

Notification suppression is a Dekker-style handshake: one side stores a ring index and
then loads the peer's "don't notify me" flag; the peer stores that flag and then loads
the index.  x86 (TSO) may reorder a store with a later load, so both sides need a full
fence in between or a wake-up can be lost.  Python has no fence primitive, but
acquiring an uncontended ``threading.Lock`` executes an atomic read-modify-write
(``lock cmpxchg`` in glibc's semaphore code), which is a full barrier on x86.  Cost:
about 80 ns.  The fence lock is only ever held for the instant of the fence.
"""

from __future__ import annotations

import threading

_fence_lock = threading.Lock()
_acquire = _fence_lock.acquire
_release = _fence_lock.release


def full_fence() -> None:
    """Order every earlier load and store before every later one (x86: ``mfence``-like)."""
    _acquire()
    _release()
