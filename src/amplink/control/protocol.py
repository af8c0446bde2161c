"""The control socket's protocol: where the socket is and how a request travels.

``amplink up`` listens on a UNIX stream socket; each connection carries one request, a
JSON object on one line (``{"cmd": "stop", "core": "m4"}``), and gets one JSON line
back: ``{"ok": true, "result": ...}`` or ``{"ok": false, "errno": 16, "error": "..."}``.
``listen`` instead streams one line per event until the channel goes away or the
client hangs up.  Everything is local: the socket's folder is private to the user.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amplink.errors import AmplinkError

ENV_SOCKET = "AMPLINK_SOCKET"
SOCKET_NAME = "control.sock"
MAX_LINE = 1 << 20  # a request or event line longer than this is refused
CONNECT_RETRY = 0.005  # first pause when the server's listen backlog is full (doubles)


class NotRunning(AmplinkError):
    """No ``amplink up`` answers on the socket."""


def runtime_dir() -> Path:
    """The private folder of ``amplink up``'s socket and device names:
    ``$XDG_RUNTIME_DIR/amplink``, else ``/run/user/<uid>/amplink``, else
    ``~/.cache/amplink/run`` (never a shared folder such as /tmp, where another user
    could create it first)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "amplink"
    per_user = Path(f"/run/user/{os.getuid()}")
    if per_user.is_dir() and per_user.stat().st_uid == os.getuid():
        return per_user / "amplink"
    return Path.home() / ".cache" / "amplink" / "run"


def default_socket() -> Path:
    """``$AMPLINK_SOCKET``, else ``control.sock`` in :func:`runtime_dir`."""
    env = os.environ.get(ENV_SOCKET)
    return Path(env) if env else runtime_dir() / SOCKET_NAME


def private_folder(folder: Path) -> None:
    """Make ``folder`` (mode 0700) or check that an existing one is the user's and
    private: anyone who can reach the socket can stop and crash the cores.  ``EPERM``
    saying what to do otherwise."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.stat()
    except OSError as exc:
        raise AmplinkError(
            exc.errno or errno.EACCES,
            f"cannot make the folder {folder} for the control socket: {exc.strerror}; "
            "give a socket in a folder of yours with --socket (or AMPLINK_SOCKET)",
        ) from None
    if st.st_mode & stat.S_ISVTX:  # /tmp and its like: theirs to share, never to chmod
        raise AmplinkError(
            errno.EPERM,
            f"{folder} is a shared folder (mode {st.st_mode & 0o7777:o}), where others may "
            "reach the socket; give a socket in a private folder of yours with --socket (or "
            f"AMPLINK_SOCKET), e.g. {runtime_dir() / SOCKET_NAME}",
        )
    if st.st_uid != os.getuid():
        raise AmplinkError(
            errno.EPERM,
            f"{folder} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}): another "
            "user made it, so a socket there cannot be trusted; remove it, or give a socket "
            "in a folder of yours with --socket (or AMPLINK_SOCKET, or XDG_RUNTIME_DIR)",
        )
    if st.st_mode & 0o077:
        raise AmplinkError(
            errno.EPERM,
            f"{folder} is readable or writable by others (mode {st.st_mode & 0o777:o}); "
            f"make it private (chmod 700 {folder}) or give another socket with --socket",
        )


def encode(obj: dict[str, Any]) -> bytes:
    """One protocol line."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one protocol line; ``EPROTO`` if it is not a JSON object."""
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AmplinkError(errno.EPROTO, f"not a JSON line: {exc}") from None
    if not isinstance(obj, dict):
        raise AmplinkError(errno.EPROTO, "a request must be a JSON object")
    return obj


def read_line(stream: Any) -> bytes:
    """One line from a socket file; ``EPROTO`` if it is too long."""
    line: bytes = stream.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise AmplinkError(errno.EPROTO, f"line longer than {MAX_LINE} bytes")
    return line


def connect(path: Path, timeout: float | None) -> socket.socket:
    """Connect, waiting while the server's listen backlog is full (``EAGAIN``, many
    clients at once) for up to ``timeout`` s."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = CONNECT_RETRY
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            return sock
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            sock.close()
            raise NotRunning(
                errno.ECONNREFUSED,
                f"no amplink up is running on {path} (start one with `amplink up`, or give "
                f"its socket with --socket)",
            ) from None
        except BlockingIOError:
            sock.close()
            if deadline is not None and time.monotonic() + pause > deadline:
                raise AmplinkError(
                    errno.EAGAIN, f"amplink up on {path} is too busy to accept a connection"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
        except BaseException:
            sock.close()
            raise


def request(path: Path, cmd: str, timeout: float | None = 60.0, **args: Any) -> Any:
    """Send one request and return its result; the server's error is raised as an
    :class:`~amplink.errors.AmplinkError` with its errno."""
    with connect(path, timeout) as sock, sock.makefile("rb") as stream:
        sock.sendall(encode({"cmd": cmd, **args}))
        line = read_line(stream)
    if not line:
        raise AmplinkError(errno.ECONNRESET, f"amplink up on {path} closed the connection")
    reply = decode(line)
    if not reply.get("ok"):
        raise AmplinkError(int(reply.get("errno", errno.EIO)), str(reply.get("error")))
    return reply.get("result")


def stream(path: Path, cmd: str, **args: Any) -> Iterator[dict[str, Any]]:
    """Send one request and yield each event line until the server ends the stream."""
    with connect(path, 60.0) as sock, sock.makefile("rb") as lines:
        sock.settimeout(None)
        sock.sendall(encode({"cmd": cmd, **args}))
        while line := read_line(lines):
            event = decode(line)
            if event.get("ok") is False:
                raise AmplinkError(int(event.get("errno", errno.EIO)), str(event.get("error")))
            yield event
