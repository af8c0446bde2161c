"""The memory model amplink's shared structures rely on, and the one fence they need.

Two processes (or threads) share vrings, GLINK FIFOs and device-model registers through
plain loads and stores of a mapping.  Python has no atomics and no fences, so the code
relies on what the hardware and CPython guarantee, and on nothing else:

1. **One access per word.**  A ring index, a flag or a register is read and written
   through a typed ``memoryview`` (``cast("H" | "I" | "Q")``) of an aligned word:
   CPython copies the item with one fixed-size ``memcpy``, which compiles to one aligned
   load or store, and an aligned access of up to 8 bytes is single-copy atomic on
   x86-64.  Never ``struct.pack_into`` for such a word: it may copy byte by byte, and a
   peer could read half an old value and half a new one.
2. **Program order per statement.**  Each Python statement's loads and stores are done
   before the next statement starts: the interpreter calls an opaque C function per
   access, so the C compiler cannot move them across one another.
3. **Stores stay in order, loads stay in order (x86-64 TSO).**  A producer writes a
   descriptor or a used element, then publishes the index; a consumer reads the index,
   then the element.  TSO keeps store→store and load→load order, which is all this
   needs, so no fence is issued there (``VirtqueueDriver.add``, ``VirtqueueDevice.put``,
   the FIFO writer and reader).
4. **A store may pass a later load: the one place a fence is needed.**  Notification
   suppression is a Dekker-style handshake: one side stores its index, then loads the
   peer's "don't notify me" flag; the peer stores that flag, then loads the index.  TSO
   may let each load complete before its own store is visible, and then neither side
   notifies: a lost wake-up.  Both sides call :func:`full_fence` between the store and
   the load (``kick_needed``, ``enable_cb``, ``notify_needed``, ``enable_notify``, the
   FIFOs' polling words).

:func:`full_fence` executes an atomic read-modify-write: acquiring an uncontended
``threading.Lock`` runs ``lock cmpxchg`` in glibc's semaphore code, a full barrier on
x86-64 (about 100 ns).  Each thread fences on a lock of its own, so the fence never
waits for another thread: one lock for the whole process made every link, IRQ thread
and spinning waiter contend for it, and a thread switch inside the fence then cost a
futex wake-up.  A virtqueue's producer side (``kick_needed`` after ``add``,
``notify_needed`` after ``put``) fences the same way on a lock of the queue's own
instead: its caller already serialises that side (the link's TX or receive lock), so
no other thread ever holds it, and the message path saves the thread-local look-up
and a call (each fence is two atomic instructions, acquire and release; a Python
``with`` on a lock costs twice the two explicit calls, so the path uses the calls).

How few fences the message path needs, and why no others: per message a sender
fences once (after publishing its index, before reading the peer's suppression flag)
and a receiver once per drain (after giving its buffers back, before reading the
peer's flag), plus once when a poller re-enables notifications.  Everything else is
publishing (store the entry, then the index) and consuming (load the index, then the
entry), which x86-64 keeps in order by itself (point 3); batching a drain (one load
of the index for everything it takes, one store of the used index for everything it
gives back) keeps that order, since each index is still stored after, and loaded
before, the entries it covers.

The compiled virtqueue (``amplink/virtio/_vring.c``) keeps the same four points in C:
one volatile aligned load or store per word (point 1), a compiler barrier before each
index it publishes and after each index it reads (point 2: the C compiler may not move
the entries across them), TSO for the rest (point 3), and
``__atomic_thread_fence(__ATOMIC_SEQ_CST)`` (``mfence``) where point 4 needs a fence.

Point 3 does not hold on weakly ordered CPUs (ARM, POWER, RISC-V), where the publishing
stores and the consuming loads would need release and acquire barriers that Python
cannot issue.  :func:`require_memory_model` refuses such a host with a clear error, and
every shared mapping (:class:`~amplink.memory.region.SharedRegion`) calls it, so amplink
refuses to start rather than lose wake-ups or read torn descriptors.
"""

from __future__ import annotations

import errno
import os
import threading

from amplink.errors import AmplinkError

ORDERED_MACHINES = ("x86_64", "AMD64")  # x86-64 under its names on Linux and elsewhere
HOST_MACHINE = os.uname().machine


class _ThreadFence(threading.local):
    """The calling thread's own fence lock (made on the thread's first fence)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


_fences = _ThreadFence()


def full_fence() -> None:
    """Order every earlier load and store of this thread before every later one (x86-64:
    an ``mfence``-equivalent locked instruction); never waits for another thread."""
    lock = _fences.lock
    with lock:  # (not acquire(); release(): a Ctrl-C between would leave it held)
        pass


def require_memory_model(machine: str | None = None) -> None:
    """Refuse (``EOPNOTSUPP``) a host whose memory model the rings do not hold on (see
    the module docstring); ``machine`` defaults to this one's (:data:`HOST_MACHINE`)."""
    machine = HOST_MACHINE if machine is None else machine
    if machine not in ORDERED_MACHINES:
        raise AmplinkError(
            errno.EOPNOTSUPP,
            f"amplink's shared rings rely on x86-64's store ordering (total store order); "
            f"this host is {machine or 'unknown'}, where publishing a ring index needs "
            "release/acquire barriers that Python cannot issue, so amplink refuses to run "
            "rather than lose wake-ups (see amplink/memory/barrier.py)",
        )
