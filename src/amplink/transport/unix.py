"""UNIX stream sockets as the transports use them: a listening socket that replaces a
stale file from an earlier run, and a poll for readable descriptors."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import stat

from amplink.errors import AmplinkError

log = logging.getLogger(__name__)


def listen(path: str) -> socket.socket:
    """A socket listening at ``path`` (backlog 1).  A socket file already there is
    replaced when nobody listens on it (a stale one: the process that made it is gone);
    a live one is refused with ``EADDRINUSE``, any other file with ``EEXIST``."""
    _claim(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
        sock.listen(1)
    except OSError:
        sock.close()
        raise
    return sock


def _claim(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AmplinkError(errno.EEXIST, f"{path} exists and is not a socket; choose another")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        log.info("replaced the stale socket %s", path)
        return
    finally:
        probe.close()
    raise AmplinkError(
        errno.EADDRINUSE,
        f"another process listens on {path}; stop it or choose another socket",
    )


def readable(fds: list[int], timeout: float | None) -> set[int]:
    """Which of ``fds`` are readable (or hung up) within ``timeout`` s (None: no limit)."""
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    return {fd for fd, _ev in p.poll(ms)}
