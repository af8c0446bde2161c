"""asyncio for rpmsg endpoints: ``await ept.recv()``, ``await ept.send(data)``,
``async for data in ept``.

Built on :class:`~amplink.rpmsg.chardev.RpmsgEptFile`'s descriptors: a coroutine that
has to wait registers the file's reader (or writer) descriptor with the event loop and
sleeps until it is ready, so nothing spins and no thread is used.  A file that has no
descriptor reporting send space (a Linux kernel whose rpmsg backend does not poll for
it, as ``virtio_rpmsg_bus`` does not) is retried after :func:`~amplink.wait.send_retry_delays`.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator
from typing import Protocol

from amplink.errors import RpmsgError
from amplink.wait import send_retry_delays


async def _ready(fd: int, reader: bool) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    if reader:
        loop.add_reader(fd, wake)
    else:
        loop.add_writer(fd, wake)
    try:
        await fut
    finally:
        if reader:
            loop.remove_reader(fd)
        else:
            loop.remove_writer(fd)


class EptFile(Protocol):
    """What :class:`AsyncEndpoint` needs of an endpoint file: amplink's
    :class:`~amplink.rpmsg.chardev.RpmsgEptFile` or a kernel's ``/dev/rpmsgN``
    (:class:`amplink.linux.LinuxEptFile`)."""

    nonblocking: bool

    def read(self, timeout: float | None = None) -> bytes:
        """The next message (``EAGAIN`` when none and non-blocking)."""

    def write(self, data: bytes, timeout: float | None = None) -> int:
        """Send one message (``EAGAIN`` when it would wait and non-blocking)."""

    def fileno(self) -> int:
        """Readable when a message is queued."""

    def writer_fileno(self) -> int | None:
        """Writable when a send would not wait; None if no descriptor reports that."""

    def close(self) -> None:
        """Release the file."""


class AsyncEndpoint:
    """An endpoint file used from coroutines (it is switched to non-blocking mode)."""

    def __init__(self, f: EptFile) -> None:
        f.nonblocking = True
        self.file = f

    async def recv(self) -> bytes:
        """The next message; ``EPIPE`` once the endpoint is gone."""
        while True:
            try:
                return self.file.read()
            except RpmsgError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
            await _ready(self.file.fileno(), reader=True)

    async def send(self, data: bytes) -> None:
        """Send one message, waiting (without blocking the loop) for a free buffer:
        until the writer descriptor is writable, or, when the file has none, retrying
        after :func:`~amplink.wait.send_retry_delays`."""
        delays = send_retry_delays()
        while True:
            try:
                self.file.write(data)
                return
            except RpmsgError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
            fd = self.file.writer_fileno()
            if fd is None:
                await asyncio.sleep(next(delays))
            else:
                await _ready(fd, reader=False)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            try:
                yield await self.recv()
            except RpmsgError as exc:
                if exc.errno == errno.EPIPE:
                    return
                raise
