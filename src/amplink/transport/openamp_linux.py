"""The OpenAMP "linux machine" transport: a shared-memory object whose byte offsets are
the addresses, and kicks as bytes on one UNIX stream socket (layout in
:mod:`amplink.wire.openamp_linux`).  This is how OpenAMP's demo applications run both
sides of rpmsg on a PC, and how amplink meets them, in either virtio role.

* :class:`ShmObject` opens (or creates) the object, checks it (a regular file of ours,
  grown to the layout's size under ``flock`` as libmetal does), maps exactly what it
  checked, seals it against shrinking when the object allows it, and otherwise keeps a
  :class:`~amplink.transport.shm_guard.ShmGuard` on it: a peer that shrinks the object
  loses its link, never amplink its life.
* :class:`KickListener` and :func:`connect` make the one connection; which side listens
  is free (OpenAMP's processes take it from ``argv[1]``).  A stale socket file from an
  earlier run is replaced when nobody listens on it; a live one is refused.
* :class:`KickSocket` carries the kicks: one byte per kick, sent without blocking (a
  kick the peer has not read yet already says "look"), with no vring id, so a kick
  means "look at both rings".  End of stream means the peer is gone.
* :class:`Session` is one link's worth of both: the object, the connection, a thread
  that turns received kicks into calls (and the peer's end into another), and the
  resource table in the object, parsed as hostile input.  A server keeps its object
  from one peer to the next; a client opens the one each server made.

Nothing here knows rpmsg: a virtio driver or device is built over :attr:`Session.shm`
and :meth:`Session.vdev` by the caller (:mod:`amplink.remoteproc.openamp` for the host,
:mod:`amplink.remote.openamp` for the firmware side).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable

from amplink.errors import AddressError, AmplinkError, ResourceTableError
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import SharedRegion
from amplink.transport.shm_guard import ShmGuard
from amplink.transport.unix import listen, readable
from amplink.virtio.vdev import VdevConfig
from amplink.wire import openamp_linux as ol
from amplink.wire import rsc_table as rt
from amplink.wire.vring import VringLayout

log = logging.getLogger(__name__)

TABLE_MAX = 0x1000  # the table is parsed from the object's first page
_CONNECT_RETRY = 0.01  # s between attempts to reach a server that is not listening yet


class ShmObject:
    """The shared-memory object of one link, checked and mapped.

    ``region`` is the mapping (``ol.SHM_SIZE`` bytes), ``amap`` the address model (an
    address is an offset in the object), ``guard`` the shrink guard (None when the
    object could be sealed).  ``created`` is True if this open created the file.
    """

    def __init__(self, name: str, *, owner: bool, create: bool = True) -> None:
        """Open ``name`` (see :func:`amplink.wire.openamp_linux.shm_path`), creating it
        if missing; ``owner``: the object is this side's (it is the server, or the
        object is private to the link) and :meth:`close` removes it; ``create=False``
        (a client, after connecting) expects the server to have made it.
        ``AmplinkError`` when the file cannot be one we may share."""
        self.name = name
        self.path = shm_path(name)
        self.owner = owner
        self.created = False
        self.guard: ShmGuard | None = None
        flags = os.O_RDWR | os.O_CLOEXEC
        if self.path.startswith("/dev/shm/"):
            flags |= os.O_NOFOLLOW  # as shm_open: no symlink planted in a shared folder
        try:
            fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600) if create else -1
            self.created = create
        except FileExistsError:
            pass
        if not self.created:
            try:
                fd = os.open(self.path, flags)
            except FileNotFoundError:
                raise AmplinkError(
                    errno.ENOENT, f"{self.path} does not exist: the server did not create it"
                ) from None
        try:
            self._check_and_grow(fd)
            self.sealed = _seal(fd)
            if not self.sealed:
                self.guard = ShmGuard(fd, ol.SHM_SIZE, self.path)
            self.region = SharedRegion(fd, ol.SHM_SIZE, f"openamp:{name}")
        except BaseException:
            if self.guard is not None:
                self.guard.close()
            os.close(fd)
            if self.created:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            raise
        self.amap = AddressMap.identity(ol.SHM_SIZE, "shm")

    def _check_and_grow(self, fd: int) -> None:
        """libmetal's ``metal_map``: grow the file under ``flock`` if it is smaller than
        the layout; refuse anything that is not a regular file of this user."""
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise AmplinkError(errno.EINVAL, f"{self.path} is not a regular file")
            if st.st_uid != os.geteuid():
                raise AmplinkError(
                    errno.EPERM,
                    f"{self.path} belongs to uid {st.st_uid}, not to this user: the OpenAMP "
                    "peer must run as the same user (or remove the stale file)",
                )
            if st.st_size < ol.SHM_SIZE:
                os.ftruncate(fd, ol.SHM_SIZE)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def write_table(self) -> None:
        """Write the layout's resource table at offset 0 (what the socket server does
        before it listens): status 0, features not negotiated."""
        table = ol.resource_table().build()
        self.region.mem[ol.RSC_TABLE_PA : ol.RSC_TABLE_PA + len(table)] = table

    def vdev(self) -> VdevConfig:
        """The rpmsg vdev of the table at offset 0, parsed as hostile input: one vdev of
        id 7 with two vrings that lie inside the object, clear of the table and of the
        buffer pool.  ``ResourceTableError``/``AddressError`` otherwise."""
        table = rt.parse(self.region.mem[ol.RSC_TABLE_PA : ol.RSC_TABLE_PA + TABLE_MAX])
        vdevs = table.vdevs()
        if len(vdevs) != 1 or vdevs[0].id != rt.VIRTIO_ID_RPMSG or len(vdevs[0].vrings) != 2:
            raise ResourceTableError(
                "vdev", f"{self.path}: the table must hold one rpmsg vdev with two vrings"
            )
        vdev = vdevs[0]
        used = AddressMap.identity(ol.SHM_SIZE, "shm")
        used.reserve(ol.RSC_TABLE_PA, len(table.build()))
        used.reserve(ol.SHARED_BUF_PA, ol.SHARED_BUF_SIZE)
        for i, vr in enumerate(vdev.vrings):
            try:
                used.reserve(vr.da, VringLayout(vr.num, vr.align).size)
            except AddressError as exc:
                raise AddressError(f"{self.path}: vring {i}: {exc.strerror}") from None
        return VdevConfig(self.region, ol.RSC_TABLE_PA, vdev)

    def close(self) -> None:
        """Unmap, stop the guard, and remove the file if this side owns it. Idempotent."""
        self.region.close()
        if self.guard is not None:
            self.guard.close()
            self.guard = None
        if self.owner:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.owner = False


def shm_path(name: str) -> str:
    """:func:`amplink.wire.openamp_linux.shm_path`, with ``EINVAL`` for a bad name."""
    try:
        return ol.shm_path(name)
    except ValueError as exc:
        raise AmplinkError(errno.EINVAL, str(exc)) from None


def _seal(fd: int) -> bool:
    """Seal the file against shrinking and growing if it allows it (a memfd does; a
    POSIX shm file never does)."""
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EINVAL):
            return False
        raise
    return True


class KickSocket:
    """One connected stream socket that carries kicks both ways."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self._fd = sock.fileno()

    def fileno(self) -> int:
        """What a waiter polls for the peer's kicks (and its end)."""
        return self._fd

    def kick(self) -> None:
        """Ring the peer (both rings: the kick carries no id). Never blocks: when the
        socket buffer is full the peer has unread kicks already; when the peer is gone
        the reader finds out."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
            self.sock.send(ol.KICK, socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)

    def drain(self) -> bool:
        """Read the kicks that arrived; False once the peer closed its end."""
        try:
            while True:
                got = self.sock.recv(4096)
                if not got:
                    return False
                if len(got) < 4096:
                    return True
        except BlockingIOError:
            return True
        except (ConnectionResetError, BrokenPipeError):
            return False

    def close(self) -> None:
        """Close the connection. Idempotent."""
        self.sock.close()


class KickListener:
    """The listening socket at ``path`` (the side OpenAMP calls proc 0).

    A socket file already at ``path`` is replaced when nobody listens on it (a stale one
    from an earlier run: OpenAMP never removes its own); a live one is refused with
    ``EADDRINUSE``, any other file with ``EEXIST``.  The file is removed as soon as the
    peer is connected, and by :meth:`close`.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock = listen(path)

    def accept(self, stop_fds: list[int], timeout: float | None) -> KickSocket | None:
        """The peer's connection; None if a fd of ``stop_fds`` became readable (a stop,
        the launched peer's exit) or ``timeout`` passed."""
        ready = readable([self._sock.fileno(), *stop_fds], timeout)
        if self._sock.fileno() not in ready:
            return None
        conn, _ = self._sock.accept()
        self.close()
        return KickSocket(conn)

    def close(self) -> None:
        """Stop listening and remove the socket file. Idempotent."""
        if self._sock.fileno() >= 0:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def connect(path: str, stop_fds: list[int], timeout: float) -> KickSocket | None:
    """Connect to the server at ``path``, retrying while it is not there yet (no file,
    or a stale one nobody listens on); None if a fd of ``stop_fds`` became readable.
    ``ETIMEDOUT`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
            return KickSocket(sock)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
        except BaseException:
            sock.close()
            raise
        left = deadline - time.monotonic()
        if left <= 0:
            raise AmplinkError(
                errno.ETIMEDOUT,
                f"no OpenAMP server listens on {path} after {timeout}s (is the peer started, "
                "as the socket server: argv[1] = 0 for OpenAMP's demos?)",
            )
        if readable(stop_fds, min(left, _CONNECT_RETRY)):
            return None


class Session:
    """One link's transport: the object, the connection and the thread that receives.

    ``on_kick()`` runs in the session's thread for every batch of kicks; ``on_gone(err)``
    once, when the peer closed the connection (``EPIPE``) or shrank the object
    (``EFAULT``), after which the thread ends.
    """

    def __init__(self, shm: ShmObject, kicks: KickSocket, name: str) -> None:
        self.shm = shm
        self.kicks = kicks
        self.name = name
        self.gone: OSError | None = None
        self._stop = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread: threading.Thread | None = None

    def vdev(self) -> VdevConfig:
        """The rpmsg vdev of the object's resource table (validated)."""
        return self.shm.vdev()

    def start(self, on_kick: Callable[[], None], on_gone: Callable[[OSError], None]) -> None:
        """Start delivering the peer's kicks and its end."""
        self._thread = threading.Thread(
            target=self._receive, args=(on_kick, on_gone), name=f"openamp-{self.name}", daemon=True
        )
        self._thread.start()

    def _receive(self, on_kick: Callable[[], None], on_gone: Callable[[OSError], None]) -> None:
        guard = self.shm.guard
        fds = [self.kicks.fileno(), self._stop]
        if guard is not None:
            fds.append(guard.report_fd)
        while True:
            ready = readable(fds, None)
            if self._stop in ready:
                return
            if guard is not None and guard.report_fd in ready and not guard.alive:
                fds.remove(guard.report_fd)  # collect() logged it: nothing more will come
            elif guard is not None and guard.report_fd in ready and (sizes := guard.collect()):
                err: OSError = AmplinkError(
                    errno.EFAULT,
                    f"the peer shrank the shared memory {self.shm.path} to {sizes[0]} bytes "
                    f"(amplink grew it back to {ol.SHM_SIZE}); its link is dropped",
                )
                break
            if self.kicks.fileno() in ready:
                alive = self.kicks.drain()
                on_kick()  # also after the end: what the peer sent before it left
                if not alive:
                    err = AmplinkError(
                        errno.EPIPE,
                        f"the OpenAMP peer closed {self.name} (it exited or was killed)",
                    )
                    break
        self.gone = err
        log.info("%s: %s", self.name, err.strerror)
        on_gone(err)

    def close(self) -> None:
        """Stop the thread and close the connection (the object is its opener's to
        close, once nothing uses the mapping any more). Idempotent."""
        if self._stop >= 0:
            os.eventfd_write(self._stop, 1)
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(5)
            os.close(self._stop)
            self._stop = -1
        self.kicks.close()


def open_session(shm: ShmObject | None, kicks: KickSocket, shm_name: str, name: str) -> Session:
    """The session of a connection just made: over ``shm``, or for a client (None) over
    the object the server made before it listened (``ENOENT`` if it did not; the
    connection is closed then)."""
    if shm is None:
        try:
            shm = ShmObject(shm_name, owner=False, create=False)
        except BaseException:
            kicks.close()
            raise
    return Session(shm, kicks, name)
