"""UNIX stream sockets as the transports use them: one listening server per path, and a
poll for readable descriptors.

A front end (vhost-user) or an OpenAMP peer finds its server by a path, and nothing
removes a socket file when its server dies (OpenAMP's processes never remove theirs).
:class:`UnixListener` therefore claims a path with an exclusive ``flock`` on
``PATH.lock`` for as long as it lives: a second amplink server on the same path is
refused (``EADDRINUSE``, naming the holder's pid) atomically, without connecting to the
first one (a connection would be a client to it: a session for vhost-user, the one
peer an OpenAMP server accepts).  While the lock is held, a socket file at the path is
stale and replaced; any other file is refused (``EEXIST``).  A server that is not
amplink's takes no lock: amplink cannot see it and takes the path over (its clients
then reach amplink).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import stat

from amplink.errors import AmplinkError


class UnixListener:
    """The listening socket at ``path`` and the lock that makes it this process's.

    ``backlog`` is :meth:`socket.listen`'s.  :meth:`unlisten` closes the socket but
    keeps the path (an OpenAMP server between two peers); :meth:`listen` listens again.
    """

    def __init__(self, path: str, *, backlog: int = 1) -> None:
        self.path = path
        self.backlog = backlog
        self._sock: socket.socket | None = None
        self._lock_fd = _lock_path(path)
        try:
            self.listen()
        except BaseException:
            self._unlock()
            raise

    def listen(self) -> None:
        """Listen at the path (a stale socket file there is replaced). Idempotent."""
        if self._sock is not None:
            return
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise AmplinkError(
                    errno.EEXIST, f"{self.path} exists and is not a socket; choose another path"
                )
            os.unlink(self.path)  # stale: the lock says no amplink server has it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(self.path)
            sock.listen(self.backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise _cannot_listen(self.path, exc) from None
        self._sock = sock

    def fileno(self) -> int:
        """The listening socket (readable when a client waits to be accepted); -1
        while not listening."""
        return -1 if self._sock is None else self._sock.fileno()

    def accept(self) -> socket.socket | None:
        """The next client's connection (blocking mode, close-on-exec), or None if
        none is waiting (or it went away before it was accepted)."""
        if self._sock is None:
            return None
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return None
        return conn

    def unlisten(self) -> None:
        """Stop listening and remove the socket file; the path stays claimed."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def close(self) -> None:
        """Stop listening and release the path. Idempotent."""
        self.unlisten()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path + ".lock")
            os.close(self._lock_fd)
            self._lock_fd = -1


def _lock_path(path: str) -> int:
    """Take ``PATH.lock`` (flock, exclusive) for this process; ``EADDRINUSE`` with
    the holder's pid if another server has it."""
    lock = path + ".lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise _cannot_listen(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AmplinkError(
                errno.EADDRINUSE,
                f"{path} is served by another process (pid {holder}): stop it first, or "
                "choose another socket",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:  # a holder that was just releasing it unlinked the file: take a fresh one
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _cannot_listen(path: str, exc: OSError) -> AmplinkError:
    """``exc`` (a failed ``open`` or ``bind``) with its errno, naming the path."""
    why = exc.strerror or str(exc)  # a path too long for AF_UNIX has no errno
    return AmplinkError(exc.errno or errno.EINVAL, f"cannot listen on {path}: {why}")


def readable(fds: list[int], timeout: float | None) -> set[int]:
    """Which of ``fds`` are readable (or hung up) within ``timeout`` s (None: no limit)."""
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    return {fd for fd, _ev in p.poll(ms)}
