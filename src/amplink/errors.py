"""Exceptions of amplink.

Every error is an :class:`OSError` that carries the errno the Linux kernel would return
in the same situation (``ENOMEM`` for a full virtio TX pool, ``EMSGSIZE`` for an
oversized rpmsg payload, ...), so code written against the kernel's interfaces and code
written against amplink read failures the same way: ``err.errno``.  The message says
what happened and, where it can, what to do about it.
"""

from __future__ import annotations

import errno as _errno


class AmplinkError(OSError):
    """Base class: an ``OSError`` with a kernel errno and an explanatory message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)


class WireError(AmplinkError):
    """Bytes that do not decode: truncated, out of bounds or violating a format rule.

    ``rule`` names the violated rule in a stable, machine-readable way (for example
    ``"version"`` or ``"truncated"``) so that callers and tests can tell the cases apart
    without parsing the message.
    """

    def __init__(self, rule: str, message: str, code: int = _errno.EINVAL) -> None:
        super().__init__(code, message)
        self.rule = rule


class ResourceTableError(WireError):
    """A resource table that breaks one of the rules the remoteproc core enforces."""


class AddressError(AmplinkError):
    """A device address (or address + length) that falls outside every mapped range."""

    def __init__(self, message: str) -> None:
        super().__init__(_errno.EFAULT, message)


class VirtqueueError(AmplinkError):
    """A virtqueue was broken by a value its peer wrote into shared memory.

    Once raised for a queue, the queue stays broken: every later operation on it raises
    the same error.  Other queues and the process are unaffected.
    """

    def __init__(self, queue: str, message: str) -> None:
        super().__init__(_errno.EIO, f"virtqueue {queue!r} is broken: {message}")
        self.queue = queue


class FifoError(AmplinkError):
    """A GLINK FIFO was broken by what its peer wrote: an index outside the FIFO, or a
    command that cannot be framed.  The byte stream cannot be resynchronised, so the
    edge fails; other edges and the process are unaffected."""

    def __init__(self, fifo: str, message: str) -> None:
        super().__init__(_errno.EPROTO, f"GLINK FIFO {fifo!r} is broken: {message}")
        self.fifo = fifo


class RpmsgError(AmplinkError):
    """An rpmsg operation failed; ``errno`` is what the kernel's rpmsg API returns."""


class IrqError(AmplinkError):
    """An interrupt request or line operation was refused (``EINVAL``, ``EBUSY``...)."""


class MailboxError(AmplinkError):
    """A mailbox operation failed; ``errno`` is what the kernel's mailbox API returns
    (``ENOBUFS`` for a full TX queue, ``ETIME`` for a blocking send that timed out,
    ``EBUSY`` for a channel another client holds, or the controller's own TX error)."""
