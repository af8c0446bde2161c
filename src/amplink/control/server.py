"""The control socket of ``amplink up``: other ``amplink`` commands reach the running
board through it.

One thread runs an asyncio loop that accepts connections and reads each request (a
client that sends no complete line within :data:`READ_TIMEOUT` is disconnected, and at
most :data:`MAX_CONNECTIONS` are open at once), so idle connections cost no thread.
A request then runs in a small pool of worker threads and does what the matching
sysfs or debugfs file would (``start`` through ``state``, ``recovery``,
``coredump``, ``firmware``, ``crash``), so the answers and errors are the kernel's;
``stop`` also stops a crashed core and one being recovered (which sysfs ``state``
refuses), and no recovery boots it again (:meth:`Rproc.stop`).
Every argument is checked first: a malformed request gets ``EINVAL`` (or ``EPROTO``
for a line that is not a JSON object) saying which argument and what it must be.

``send`` and ``listen`` share one host endpoint per (core, service), a :class:`Tap`:
a ``send`` gets the first message that arrives after it, every ``listen`` gets them
all, until the channel goes away, the client hangs up, or the client reads so slowly
that :data:`LISTEN_BACKLOG` messages wait for it (its stream then ends, saying so).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from amplink.board import Board, CoreStatus
from amplink.control import requests as rq
from amplink.control.names import DeviceNames
from amplink.control.protocol import MAX_LINE, decode, encode, private_folder
from amplink.control.tap import Event, Tap
from amplink.errors import AmplinkError, RpmsgError
from amplink.host import Rproc
from amplink.rpmsg.tty import RPMSG_TTY_SERVICE

log = logging.getLogger(__name__)

READ_TIMEOUT = 10.0  # seconds a client has to send its request line
MAX_CONNECTIONS = 256  # open at once; more are answered EBUSY and closed
WORKERS = 8  # threads that run requests
LISTEN_BACKLOG = 4096  # messages waiting for a slow listen client before it is dropped
LOCK_NAME = "up.lock"


class ControlServer:
    """The control socket at ``path``: made (and the folder checked) at once, so that
    ``amplink up`` can refuse before it boots anything; :meth:`serve` then answers
    requests about a board until :meth:`close`."""

    def __init__(self, path: Path) -> None:
        """``EADDRINUSE`` if another ``amplink up`` uses the socket's folder, ``EPERM``
        if the folder is not private, ``EEXIST`` if ``path`` is not a socket; a stale
        socket (its server died) is replaced."""
        self.path = path
        self.folder = path.parent
        private_folder(self.folder)
        self._lock_fd = _lock(self.folder / LOCK_NAME, path)
        try:
            self._sock = _bind(path)
        except BaseException:
            _unlock(self.folder / LOCK_NAME, self._lock_fd)
            raise
        self.board: Board | None = None
        self.names: DeviceNames | None = None
        self._taps: dict[tuple[str, str], Tap] = {}
        self._taps_lock = threading.Lock()
        self._handlers = rq.handlers(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._closing: asyncio.Event | None = None
        self._conns = 0

    # -- running ---------------------------------------------------------------------
    def serve(self, board: Board) -> None:
        """Answer requests about ``board`` from now on (in a thread of its own)."""
        self.board = board
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="amplink-control-req")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="amplink-control", daemon=True
        )
        self._thread.start()
        ready.wait(10)
        assert self._loop is not None
        self.names = DeviceNames(self.folder, board, self._loop)

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(ready))
        finally:
            loop.close()

    async def _main(self, ready: threading.Event) -> None:
        self._closing = asyncio.Event()
        server = await asyncio.start_unix_server(self._client, sock=self._sock, limit=MAX_LINE)
        ready.set()
        async with server:
            await self._closing.wait()
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.wait(tasks, timeout=10) if tasks else None

    def close(self) -> None:
        """Stop serving: end every stream, wait for the requests, remove the socket."""
        if self.names is not None:  # first: its endpoint sockets' clients are hung up
            self.names.close()
            self.names = None
        loop, closing = self._loop, self._closing
        if loop is not None and closing is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(closing.set)
        if self._thread is not None:
            self._thread.join(15)
        else:
            self._sock.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        with self._taps_lock:
            taps = list(self._taps.values())
            self._taps.clear()
        for tap in taps:
            tap.ept.destroy()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._lock_fd >= 0:
            _unlock(self.folder / LOCK_NAME, self._lock_fd)
            self._lock_fd = -1

    # -- one connection --------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns += 1
        try:
            if self._conns > MAX_CONNECTIONS:
                raise AmplinkError(
                    errno.EBUSY, f"amplink up serves {MAX_CONNECTIONS} connections at most"
                )
            req = await self._read_request(reader)
            if req is None:
                return
            if req.get("cmd") == "listen":
                await self._listen(req, reader, writer)
                return
            _, handler = rq.lookup(self._handlers, req)
            assert self._pool is not None
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._pool, handler, req)
            await _send(writer, {"ok": True, "result": result})
        except OSError as exc:
            with contextlib.suppress(OSError):
                await _send(writer, _error(exc))
        except Exception as exc:  # a bug: tell the client, keep serving the others
            log.exception("control request failed")
            with contextlib.suppress(OSError):
                await _send(writer, _error(AmplinkError(errno.EIO, f"internal error: {exc}")))
        finally:
            self._conns -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> dict[str, Any] | None:
        try:
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
        except TimeoutError:
            raise AmplinkError(
                errno.ETIMEDOUT, f"no request line within {READ_TIMEOUT:g}s"
            ) from None
        except (ValueError, asyncio.LimitOverrunError):
            raise AmplinkError(errno.EPROTO, f"request longer than {MAX_LINE} bytes") from None
        if not line:
            return None  # connected and left (a ping of the socket)
        return decode(line)

    # -- taps, send and listen -------------------------------------------------------
    def core(self, name: str) -> Rproc:
        """The board's core called ``name`` (or ``remoteprocN``)."""
        assert self.board is not None
        return self.board.core(name)

    def tap(self, core: str, service: str) -> Tap:
        """The shared host endpoint on ``core``'s channel ``service`` (see
        :func:`~amplink.control.requests.wait_channel`)."""
        rp = self.core(core)
        assert self.board is not None
        key = (rp.name, service)
        with self._taps_lock:
            tap = self._taps.get(key)
            if tap is not None and tap.ept.released is None:
                return tap
            chan = rq.wait_channel(self.board, rp, service)

            def gone(t: Tap) -> None:
                with self._taps_lock:
                    if self._taps.get(key) is t:
                        del self._taps[key]

            try:
                tap = self._taps[key] = Tap(chan, gone)
            except RpmsgError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                use = (
                    "its console (amplink tty)"
                    if service == RPMSG_TTY_SERVICE
                    else ("its endpoint file (amplink status names it)")
                )
                raise AmplinkError(
                    errno.EBUSY,
                    f"{rp.name}'s {service} is a GLINK channel, which has one endpoint on each "
                    f"side, and a host driver holds it: use {use}",
                ) from None
            return tap

    def status(self) -> dict[str, Any]:
        """The board's state (the ``status`` request)."""
        board = self.board
        assert board is not None
        return {
            "board": board.spec.name,
            "source": board.spec.source,
            "socket": str(self.path),
            "cores": [asdict(s) for s in self.annotate(board.status())],
        }

    def annotate(self, rows: list[CoreStatus]) -> list[CoreStatus]:
        """``rows`` with the consoles' stable names."""
        return self.names.annotate(rows) if self.names is not None else rows

    def console(self, core: str) -> str | None:
        """The stable name of ``core``'s console, if it has one now."""
        return self.names.console(core) if self.names is not None else None

    async def _listen(
        self, req: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Stream every message of a channel until it goes away, the client hangs up
        or the server stops."""
        core, service = rq.listen_args(req)
        loop = asyncio.get_running_loop()
        assert self._pool is not None and self._closing is not None
        tap = await loop.run_in_executor(self._pool, self.tap, core, service)
        events: asyncio.Queue[Event] = asyncio.Queue()
        overflow = threading.Event()

        def put(event: Event) -> None:
            if events.qsize() >= LISTEN_BACKLOG:
                overflow.set()
            events.put_nowait(event)

        def deliver(event: Event) -> None:  # in the receive context: never blocks
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(put, event)

        tap.subscribe(deliver)
        try:
            head = {"core": core, "service": service, "addr": tap.ept.addr}
            await _send(writer, {"ok": True, "result": head})
            hangup = asyncio.ensure_future(reader.read())
            stopping = asyncio.ensure_future(self._closing.wait())
            try:
                while True:
                    getting = asyncio.ensure_future(events.get())
                    await asyncio.wait(
                        {getting, hangup, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if not getting.done():
                        getting.cancel()
                        if hangup.done():
                            return
                        await _send(writer, {"event": "closed", "reason": "amplink up stopped"})
                        return
                    kind, payload, src = getting.result()
                    if overflow.is_set():
                        reason = f"the client fell {LISTEN_BACKLOG} messages behind"
                        await _send(writer, {"event": "closed", "reason": reason})
                        return
                    if kind == "closed":
                        await _send(writer, {"event": "closed", "reason": payload})
                        return
                    await _send(writer, rq.message_event(payload, src))
            finally:
                hangup.cancel()
                stopping.cancel()
        except OSError:
            return  # the client went away mid-write
        finally:
            tap.unsubscribe(deliver)


async def _send(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
    writer.write(encode(obj))
    await writer.drain()


def _error(exc: OSError) -> dict[str, Any]:
    return {"ok": False, "errno": exc.errno or errno.EIO, "error": exc.strerror or str(exc)}


def _lock(lock_path: Path, socket_path: Path) -> int:
    """Hold the folder's lock (one ``amplink up`` per folder: its socket and device
    names live there); ``EADDRINUSE`` naming the holder otherwise.  The lock is the
    file ``lock_path`` names *now*: its holder removes it before letting go
    (:func:`_unlock`), so a lock taken on a file that was removed (or replaced)
    meanwhile is let go and taken again on the file the path names."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AmplinkError(
                errno.EADDRINUSE,
                f"another amplink up (pid {holder}) is running in {lock_path.parent} (its "
                f"socket and devices live there); stop it, or give this one a socket in "
                f"another folder with --socket (this one was to be {socket_path})",
            ) from None
        if _names(lock_path, fd):
            break
        os.close(fd)  # its holder removed it after we opened it: the path is free again
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _names(path: Path, fd: int) -> bool:
    """True if ``path`` names the file open at ``fd``."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _unlock(lock_path: Path, fd: int) -> None:
    """Remove the lock file, then let go of the lock (in this order: whoever waits on
    the removed file notices it, see :func:`_lock`); nothing is left in the folder."""
    if _names(lock_path, fd):
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
    os.close(fd)


def _bind(path: Path) -> socket.socket:
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise AmplinkError(
                errno.EEXIST, f"{path} exists and is not a socket; choose another --socket"
            )
        path.unlink()  # stale: we hold the folder's lock, so nobody serves it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        raise AmplinkError(
            exc.errno or errno.EIO, f"cannot listen on {path}: {exc.strerror}"
        ) from None
    return sock
