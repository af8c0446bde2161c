"""The OpenAMP "linux machine" transport: a shared-memory object whose byte offsets are
the addresses, and kicks as bytes on one UNIX stream socket (layout in
:mod:`amplink.wire.openamp_linux`).  This is how OpenAMP's demo applications run both
sides of rpmsg on a PC, and how amplink meets them, in either virtio role.

* :class:`ShmFile` opens (or creates) the object and checks it (a regular file of
  ours, grown to the layout's size under ``flock`` as libmetal does), writes the
  resource table the socket server writes, and reads the table back as hostile input
  (:func:`check_table`).  It never maps the object: a peer can shrink a POSIX shm file
  at any moment (tmpfs files cannot be sealed), and an access past the new end raises
  SIGBUS, which no Python code can catch.  So only a process of its own maps it
  (:func:`map_shm`): the relay of amplink's host (:mod:`amplink.transport.openamp_relay`)
  or the session that runs a firmware for an OpenAMP host (``amplink.remote``), which
  such a peer can kill, but nothing else.
* :class:`KickListener` and :func:`connect` make the one connection; which side listens
  is free (OpenAMP's processes take it from ``argv[1]``).  The listener claims its path
  (:class:`~amplink.transport.unix.UnixListener`): a stale socket file is replaced, a
  second amplink server refused.
* :class:`KickSocket` carries the kicks: one byte per kick, sent without blocking (a
  kick the peer has not read yet already says "look"), with no vring id, so a kick
  means "look at both rings".  End of stream means the peer is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
import time

from amplink.errors import AddressError, AmplinkError, ResourceTableError
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import SharedRegion
from amplink.transport.unix import UnixListener, readable
from amplink.virtio.constants import VIRTIO_ID_RPMSG
from amplink.wire import openamp_linux as ol
from amplink.wire import rsc_table as rt
from amplink.wire.vring import VringLayout

TABLE_MAX = 0x1000  # the table is read from the object's first page
_CONNECT_RETRY = 0.01  # s between attempts to reach a server that is not listening yet


class ShmFile:
    """The shared-memory object of one link, opened and checked but not mapped.

    ``fd`` is the open file, ``path`` its name; ``created`` is True if this open made
    the file.
    """

    def __init__(self, name: str, *, owner: bool, create: bool = True) -> None:
        """Open ``name`` (see :func:`amplink.wire.openamp_linux.shm_path`), creating it
        if missing; ``owner``: the object is this side's (it is the server, or the
        object is private to an isolated peer) and :meth:`close` removes it;
        ``create=False`` (a client, after connecting) expects the server to have made
        it (``ENOENT``).  ``EINVAL``/``EPERM`` when the file is not one we may share;
        ``ELOOP`` for a symbolic link in ``/dev/shm``."""
        self.path = shm_path(name)
        self.owner = owner
        self.created = False
        flags = os.O_RDWR | os.O_CLOEXEC
        if self.path.startswith("/dev/shm/"):
            flags |= os.O_NOFOLLOW  # as shm_open: no symlink planted in a shared folder
        fd = -1
        if create:
            with contextlib.suppress(FileExistsError):
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
                self.created = True
        if fd < 0:
            try:
                fd = os.open(self.path, flags)
            except FileNotFoundError:
                raise AmplinkError(
                    errno.ENOENT, f"{self.path} does not exist: the server did not create it"
                ) from None
        self.fd = fd
        try:
            self._check_and_grow()
        except BaseException:
            self.close()
            raise

    def _check_and_grow(self) -> None:
        """libmetal's ``metal_map``: grow the file under ``flock`` if it is smaller than
        the layout; refuse anything that is not a regular file of this user."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISREG(st.st_mode):
                raise AmplinkError(errno.EINVAL, f"{self.path} is not a regular file")
            if st.st_uid != os.geteuid():
                raise AmplinkError(
                    errno.EPERM,
                    f"{self.path} belongs to uid {st.st_uid}, not to this user: the OpenAMP "
                    "peer must run as the same user (or remove the stale file)",
                )
            if st.st_size < ol.SHM_SIZE:
                os.ftruncate(self.fd, ol.SHM_SIZE)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def write_table(self) -> None:
        """Write the layout's resource table at offset 0 (what the socket server does
        before it listens): status 0, features not negotiated."""
        os.pwrite(self.fd, ol.resource_table().build(), ol.RSC_TABLE_PA)

    def read_table(self) -> tuple[bytes, rt.Vdev]:
        """The first page of the object and its rpmsg vdev, checked by
        :func:`check_table` (read with ``pread``: a shrunk file reads short, it cannot
        fault)."""
        data = os.pread(self.fd, TABLE_MAX, ol.RSC_TABLE_PA)
        return data, check_table(data, self.path)

    def close(self) -> None:
        """Close the file, and remove it if this side owns it. Idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
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


def check_table(data: bytes, where: str) -> rt.Vdev:
    """The rpmsg vdev of the resource table at the start of ``data`` (the object's
    first page), parsed as hostile input: one vdev of id 7 with two vrings that lie
    inside the object, clear of the table, of each other and of the buffer pool, whose
    512-byte buffers (one per entry of each vring) fit the pool.
    ``ResourceTableError``/``AddressError`` otherwise, naming ``where``."""
    table = rt.parse(data)
    vdevs = table.vdevs()
    if len(vdevs) != 1 or vdevs[0].id != VIRTIO_ID_RPMSG or len(vdevs[0].vrings) != 2:
        raise ResourceTableError(
            "vdev", f"{where}: the table must hold one rpmsg vdev with two vrings"
        )
    vdev = vdevs[0]
    if sum(vr.num for vr in vdev.vrings) * ol.RPMSG_BUFFER_SIZE > ol.SHARED_BUF_SIZE:
        raise ResourceTableError(
            "vring-num", f"{where}: vrings of {[vr.num for vr in vdev.vrings]} entries need "
            f"more buffers than the {ol.SHARED_BUF_SIZE:#x}-byte pool holds",
        )  # fmt: skip
    used = AddressMap.identity(ol.SHM_SIZE, "shm")
    try:
        used.reserve(ol.RSC_TABLE_PA, len(table.build()))
        used.reserve(ol.SHARED_BUF_PA, ol.SHARED_BUF_SIZE)
        for i, vr in enumerate(vdev.vrings):
            what = f"vring {i}"
            used.reserve(vr.da, VringLayout(vr.num, vr.align).size)
    except AddressError as exc:
        raise AddressError(f"{where}: {what}: {exc.strerror}") from None
    return vdev


def map_shm(fd: int, name: str) -> SharedRegion:
    """Map the layout's ``SHM_SIZE`` bytes of the object open at ``fd`` (the region
    owns ``fd``).  Only for a process a shrinking peer may kill (see above)."""
    return SharedRegion(fd, ol.SHM_SIZE, f"openamp:{name}")


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
    """The listening socket at ``path`` (the side OpenAMP calls proc 0), claimed for
    this process until :meth:`close` (see :class:`~amplink.transport.unix.UnixListener`).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._listener = UnixListener(path, backlog=1)

    def accept(self, stop_fds: list[int], timeout: float | None) -> KickSocket | None:
        """The peer's connection; None if a fd of ``stop_fds`` became readable (a stop,
        the launched peer's exit) or ``timeout`` passed.  The socket file is removed
        once the peer is connected (the path stays claimed): :meth:`relisten` for the
        next peer."""
        while True:
            ready = readable([self._listener.fileno(), *stop_fds], timeout)
            if self._listener.fileno() not in ready:
                return None
            conn = self._listener.accept()
            if conn is not None:
                self._listener.unlisten()
                return KickSocket(conn)

    def relisten(self) -> None:
        """Listen again, for the next peer."""
        self._listener.listen()

    def close(self) -> None:
        """Stop listening, remove the socket file and release the path. Idempotent."""
        self._listener.close()


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
