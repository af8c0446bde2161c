"""The control socket's protocol: where the socket is and how a request travels.

``amplink up`` listens on a UNIX stream socket; each connection carries one request, a
JSON object on one line (``{"cmd": "stop", "core": "m4"}``), and gets one JSON line
back: ``{"ok": true, "result": ...}`` or ``{"ok": false, "errno": 16, "error": "..."}``.
``listen`` instead streams one line per event until the channel goes away or the
client hangs up.  Everything is local: the socket's directory is private to the user.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amplink.errors import AmplinkError

ENV_SOCKET = "AMPLINK_SOCKET"
SOCKET_NAME = "control.sock"
MAX_LINE = 1 << 20  # a request or event line longer than this is refused


class NotRunning(AmplinkError):
    """No ``amplink up`` answers on the socket."""


def default_socket() -> Path:
    """``$AMPLINK_SOCKET``, else ``$XDG_RUNTIME_DIR/amplink/control.sock``, else
    ``/tmp/amplink-<uid>/control.sock``."""
    env = os.environ.get(ENV_SOCKET)
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "amplink" if runtime and os.path.isdir(runtime) else None
    if base is None:
        base = Path(f"/tmp/amplink-{os.getuid()}")
    return base / SOCKET_NAME


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


def _connect(path: Path, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise NotRunning(
            errno.ECONNREFUSED,
            f"no amplink up is running on {path} (start one with `amplink up`, or give "
            f"its socket with --socket)",
        ) from None
    except BaseException:
        sock.close()
        raise
    return sock


def request(path: Path, cmd: str, timeout: float | None = 60.0, **args: Any) -> Any:
    """Send one request and return its result; the server's error is raised as an
    :class:`~amplink.errors.AmplinkError` with its errno."""
    with _connect(path, timeout) as sock, sock.makefile("rb") as stream:
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
    with _connect(path, None) as sock, sock.makefile("rb") as lines:
        sock.sendall(encode({"cmd": cmd, **args}))
        while line := read_line(lines):
            event = decode(line)
            if event.get("ok") is False:
                raise AmplinkError(int(event.get("errno", errno.EIO)), str(event.get("error")))
            yield event
