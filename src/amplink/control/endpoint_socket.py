"""An rpmsg endpoint file served as a UNIX socket: what ``/dev/rpmsgN`` is on Linux,
with a name that another process can open.

``amplink up`` runs the board's endpoint files (one per ``rpmsg-raw`` channel) in its
own process, as Python objects; a user's program in another process needs a file it
can open.  :class:`EndpointSocket` is that file: a ``SOCK_SEQPACKET`` socket at a
stable path (``<folder>/<core>/rpmsg<N>``, see :mod:`amplink.control.names`), because
it keeps what makes ``/dev/rpmsgN`` an rpmsg interface:

* **one message per call, both ways**: each packet a client writes is one rpmsg
  message to the core (``write()``), each message from the core is one packet to read
  (``read()``); a packet larger than the channel's MTU is refused, as the kernel's
  write gives ``EMSGSIZE``, by closing the connection (logged: a socket has no other
  way to return an errno);
* **one opener at a time**, as ``rpmsg_char`` answers a second ``open()`` with
  ``EBUSY``: a second client's connection is closed at once (logged), unless the
  first one has closed its end (its last messages are then sent first);
* **flow control**: a client that does not read is not read for (messages wait in
  the file's queue, as in the kernel's), and one whose message the core has no buffer
  for waits, in ``send()``, as a blocking ``write()`` does;
* **the channel going away**: the path is removed at once (a new ``connect()`` gives
  ``ENOENT``), the connected client first reads what was queued for it, then the end
  of the stream (``recv`` returns ``b""``), as a kernel reader gets ``EPIPE`` after
  the queue; the same path comes back when the channel does (the core's next boot).

A message that arrived while no client was connected waits for the next one.  A
zero-length packet cannot be told from the end of the stream on a ``SOCK_SEQPACKET``
socket, so an empty message from the core is not forwarded (logged once per socket),
and an empty packet from a client ends its connection.  Everything runs in the
control server's event loop: a socket costs no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import socket
from pathlib import Path

from amplink.errors import AmplinkError, RpmsgError
from amplink.rpmsg.aio import AsyncEndpoint
from amplink.rpmsg.chardev import RpmsgEptFile

log = logging.getLogger(__name__)


class EndpointSocket:
    """``file`` served on a ``SOCK_SEQPACKET`` socket at ``path`` (bound at once, made
    private, replacing what is there) in the event loop ``loop``; ``EADDRINUSE``... as
    ``bind`` gives them, naming the path."""

    def __init__(self, path: Path, file: RpmsgEptFile, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self.file = file
        self.clients = 0  # connections served so far
        self._loop = loop
        self._mtu = file.ept.get_mtu()
        self._held: bytes | None = None  # taken from the file, not yet read by a client
        self._warned_empty = False
        self._session: asyncio.Task[None] | None = None
        self._conn: socket.socket | None = None  # the client's connection
        self._listener = _listen(path)
        self._ino = os.stat(path).st_ino
        self._accepting = asyncio.run_coroutine_threadsafe(self._accept(), loop)

    def __repr__(self) -> str:
        return f"<EndpointSocket {self.path} {self.file}>"

    def close(self, *, hang_up: bool = False) -> None:
        """Remove the path and stop accepting (any thread).  A connected client still
        reads what was queued for it, then the end of the stream; with ``hang_up``
        (``amplink up`` stops) it is disconnected at once."""
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self._ino:  # not a later socket of that name
                self.path.unlink()
        with contextlib.suppress(RuntimeError):  # the loop has stopped: nothing runs
            self._accepting.cancel()
            if hang_up:
                self._loop.call_soon_threadsafe(self._hang_up)

    def _hang_up(self) -> None:
        if self._session is not None:
            self._session.cancel()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        aep = AsyncEndpoint(self.file)
        try:
            while True:
                conn, _ = await loop.sock_accept(self._listener)
                session = self._session
                if session is not None and not session.done() and _hung_up(self._conn):
                    await asyncio.wait({session})  # its last messages go first, then EOF
                if session is not None and not session.done():
                    log.warning(
                        "%s: refused a second client: an endpoint file has one opener at a "
                        "time (as /dev/rpmsgN answers EBUSY)",
                        self.path,
                    )
                    conn.close()
                    continue
                self.clients += 1
                self._conn = conn
                self._session = asyncio.ensure_future(self._serve(conn, aep))
        finally:
            self._listener.close()

    async def _serve(self, conn: socket.socket, aep: AsyncEndpoint) -> None:
        """One client until it leaves or the channel goes away."""
        conn.setblocking(False)
        to_core = asyncio.ensure_future(self._to_core(conn, aep))
        to_client = asyncio.ensure_future(self._to_client(conn, aep))
        try:
            await asyncio.wait({to_core, to_client}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            to_core.cancel()
            to_client.cancel()
            await asyncio.gather(to_core, to_client, return_exceptions=True)
            conn.close()

    async def _to_core(self, conn: socket.socket, aep: AsyncEndpoint) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(conn, self._mtu + 1)
            except OSError:
                return  # the client went away
            if not data:
                return
            if len(data) > self._mtu:
                log.warning(
                    "%s: a client wrote a message larger than the channel's MTU (%d bytes): "
                    "connection closed (as write() on /dev/rpmsgN gives EMSGSIZE)",
                    self.path,
                    self._mtu,
                )
                return
            try:
                await aep.send(data)
            except RpmsgError as exc:
                if exc.errno not in (errno.EPIPE, errno.ESHUTDOWN):
                    log.warning("%s: a message was not sent: %s", self.path, exc.strerror)
                return

    async def _to_client(self, conn: socket.socket, aep: AsyncEndpoint) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._held is None:
                try:
                    data = await aep.recv()
                except RpmsgError:
                    return  # the channel went away and its queue is read: the end
                if not data:
                    if not self._warned_empty:
                        self._warned_empty = True
                        log.warning(
                            "%s: the core sent an empty message, which a SEQPACKET reader "
                            "could not tell from the end: not forwarded (nor later ones)",
                            self.path,
                        )
                    continue
                self._held = data
            try:
                await loop.sock_sendall(conn, self._held)
            except OSError:
                return  # the client went away: the message waits for the next one
            self._held = None


def _hung_up(conn: socket.socket | None) -> bool:
    """Whether the client of ``conn`` has closed it (what it wrote may still be unread)."""
    if conn is None or conn.fileno() < 0:
        return True
    p = select.poll()
    p.register(conn, select.POLLRDHUP)
    return any(ev & (select.POLLHUP | select.POLLRDHUP) for _fd, ev in p.poll(0))


def _listen(path: Path) -> socket.socket:
    """A private listening ``SOCK_SEQPACKET`` socket bound to ``path`` (atomically
    replacing what was there)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        sock.bind(str(tmp))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        sock.listen(4)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise AmplinkError(
            exc.errno or errno.EIO, f"cannot make the endpoint socket {path}: {exc.strerror}"
        ) from None
    return sock
