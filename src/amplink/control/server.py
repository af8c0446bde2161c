"""The control socket of ``amplink up``: other ``amplink`` commands reach the running
board through it.

Every request runs in its own thread and does what the matching sysfs or debugfs file
would (``start``/``stop`` through ``state``, ``recovery``, ``coredump``, ``firmware``,
``crash``), so the answers and errors are the kernel's.  ``send`` and ``listen`` share
one host endpoint per (core, service), a :class:`Tap`: a ``send`` gets the first
message that arrives after it, every ``listen`` gets them all.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import socket
import stat
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from amplink.board import Board
from amplink.control.protocol import NotRunning, decode, encode, read_line, request
from amplink.errors import AmplinkError
from amplink.rpmsg.core import Endpoint, RpmsgDevice
from amplink.rpmsg.tty import RPMSG_TTY_SERVICE

log = logging.getLogger(__name__)

CHANNEL_TIMEOUT = 5.0  # how long send/listen wait for a channel to be announced
Event = tuple[str, Any, Any]  # ("message", data, src) | ("closed", reason, None) | ...


class Tap:
    """A host endpoint on one channel whose received messages go to subscribers."""

    def __init__(self, rpdev: RpmsgDevice, on_gone: Callable[[Tap], None]) -> None:
        self._subscribers: set[queue.SimpleQueue[Event]] = set()
        self._lock = threading.Lock()
        self._on_gone = on_gone
        self.ept = rpdev.create_ept(self._on_message)
        self.ept.on_release(self._on_release)

    def subscribe(self) -> queue.SimpleQueue[Event]:
        """A queue that gets every event from now on."""
        q: queue.SimpleQueue[Event] = queue.SimpleQueue()
        with self._lock:
            self._subscribers.add(q)
        if self.ept.released is not None:  # released before we subscribed
            q.put(("closed", self.ept.released.strerror, None))
        return q

    def unsubscribe(self, q: queue.SimpleQueue[Event]) -> None:
        """Stop giving events to ``q``."""
        with self._lock:
            self._subscribers.discard(q)

    def _publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for q in subscribers:
            q.put(event)

    def _on_message(self, _ept: Endpoint, data: bytes, src: int) -> None:
        self._publish(("message", bytes(data), src))

    def _on_release(self, _ept: Endpoint, err: OSError) -> None:
        self._on_gone(self)
        self._publish(("closed", err.strerror or str(err), None))


def message_event(data: bytes, src: int) -> dict[str, Any]:
    """A received message as a protocol object (``text`` when it is UTF-8)."""
    event: dict[str, Any] = {"event": "message", "src": src, "data_hex": data.hex()}
    with contextlib.suppress(UnicodeDecodeError):
        event["text"] = data.decode()
    return event


class ControlServer:
    """Serves ``board`` on the UNIX socket ``path`` until :meth:`close`."""

    def __init__(self, board: Board, path: Path) -> None:
        """``EADDRINUSE`` if another ``amplink up`` answers on ``path``; a stale socket
        file (its server died) is replaced."""
        self.board = board
        self.path = path
        self._taps: dict[tuple[str, str], Tap] = {}
        self._taps_lock = threading.Lock()
        self._conns: dict[socket.socket, queue.SimpleQueue[Event] | None] = {}
        self._conns_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._handlers = self._make_handlers()
        self._sock = self._bind(path)
        self._accepter = threading.Thread(target=self._accept, name="amplink-control", daemon=True)
        self._accepter.start()

    @staticmethod
    def _bind(path: Path) -> socket.socket:
        _private_folder(path.parent)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise AmplinkError(
                    errno.EEXIST, f"{path} exists and is not a socket; choose another --socket"
                )
            try:
                request(path, "ping", timeout=2.0)
            except NotRunning:
                path.unlink()  # stale: nobody answers
            else:
                raise AmplinkError(
                    errno.EADDRINUSE,
                    f"another amplink up is running on {path}; stop it, or give this one "
                    "another socket with --socket",
                )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            os.chmod(path, 0o600)
            sock.listen(16)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- connections -----------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with self._conns_lock:
                if self._closing:
                    conn.close()
                    return
                self._conns[conn] = None
                t = threading.Thread(
                    target=self._serve, args=(conn,), name="amplink-control-req", daemon=True
                )
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn.makefile("rb") as stream:
                line = read_line(stream)
                if not line:
                    return
                req = decode(line)
                cmd = str(req.get("cmd", ""))
                if cmd == "listen":
                    self._listen(conn, req)
                    return
                handler = self._handlers.get(cmd)
                if handler is None:
                    raise AmplinkError(errno.EINVAL, f"unknown command {cmd!r}")
                conn.sendall(encode({"ok": True, "result": handler(req)}))
        except OSError as exc:
            _reply_error(conn, exc)
        except Exception as exc:  # a bug: tell the client, keep serving the others
            log.exception("control request failed")
            _reply_error(conn, AmplinkError(errno.EIO, f"internal error: {exc}"))
        finally:
            with self._conns_lock:
                self._conns.pop(conn, None)
            conn.close()

    def close(self) -> None:
        """Stop serving: end every stream, wait for the requests, remove the socket."""
        with self._conns_lock:
            self._closing = True
            conns = dict(self._conns)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._sock.close()
        self._accepter.join(5)
        for _conn, q in conns.items():
            if q is not None:
                q.put(("closed", "amplink up is stopping", None))
        for t in list(self._threads):
            t.join(10)
        with self._taps_lock:
            taps = list(self._taps.values())
            self._taps.clear()
        for tap in taps:
            tap.ept.destroy()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # -- requests --------------------------------------------------------------------
    def _make_handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "ping": lambda req: "pong",
            "status": self._status,
            "start": lambda req: self._sysfs(req, "state", "start"),
            "stop": lambda req: self._sysfs(req, "state", "stop"),
            "recovery": lambda req: self._sysfs(req, "recovery", _arg(req, "value")),
            "coredump": lambda req: self._sysfs(req, "coredump", _arg(req, "mode")),
            "firmware": lambda req: self._sysfs(req, "firmware", _arg(req, "file")),
            "crash": self._crash,
            "send": self._send,
            "tty": self._tty,
            "trace": self._trace,
        }

    def _status(self, req: dict[str, Any]) -> dict[str, Any]:
        spec = self.board.spec
        return {
            "board": spec.name,
            "source": spec.source,
            "socket": str(self.path),
            "cores": [asdict(s) for s in self.board.status()],
        }

    def _sysfs(self, req: dict[str, Any], attr: str, value: str) -> dict[str, Any]:
        rp = self.board.core(_arg(req, "core"))
        setattr(rp.sysfs, attr, value)
        return {"core": rp.name, attr: getattr(rp.sysfs, attr)}

    def _crash(self, req: dict[str, Any]) -> dict[str, Any]:
        rp = self.board.core(_arg(req, "core"))
        before = rp.crash_count
        rp.debugfs.crash(req.get("kind", 0))
        if req.get("wait", True):
            rp.wait_crash_handled(before + 1, timeout=30.0)
        return {"core": rp.name, "crashes": rp.crash_count, "state": rp.state}

    def _tty(self, req: dict[str, Any]) -> dict[str, Any]:
        name = _arg(req, "core")
        self.board.core(name).wait_channel(RPMSG_TTY_SERVICE, CHANNEL_TIMEOUT)  # probed then
        tty = self.board.tty(name)
        if tty is None:
            raise AmplinkError(errno.ENODEV, f"{name} has no rpmsg-tty channel now")
        return {"core": name, "path": tty.path}

    def _trace(self, req: dict[str, Any]) -> dict[str, Any]:
        rp = self.board.core(_arg(req, "core"))
        return {"core": rp.name, "text": rp.trace(int(req.get("index", 0)))}

    def _tap(self, core: str, service: str) -> Tap:
        key = (core, service)
        with self._taps_lock:
            tap = self._taps.get(key)
            if tap is not None and tap.ept.released is None:
                return tap
            chan = self.board.core(core).wait_channel(service, CHANNEL_TIMEOUT)

            def gone(t: Tap) -> None:
                with self._taps_lock:
                    if self._taps.get(key) is t:
                        del self._taps[key]

            tap = self._taps[key] = Tap(chan, gone)
            return tap

    def _send(self, req: dict[str, Any]) -> dict[str, Any]:
        core, service = _arg(req, "core"), _arg(req, "service")
        try:
            data = bytes.fromhex(_arg(req, "data_hex"))
        except ValueError:
            raise AmplinkError(errno.EINVAL, "data_hex is not hexadecimal") from None
        wait = float(req.get("wait", 0))
        tap = self._tap(core, service)
        q = tap.subscribe() if wait > 0 else None
        try:
            tap.ept.send(data)
            result: dict[str, Any] = {"core": core, "service": service, "sent": len(data)}
            if q is None:
                return result
            try:
                kind, payload, src = q.get(timeout=wait)
            except queue.Empty:
                raise AmplinkError(
                    errno.ETIMEDOUT, f"{core} {service}: no reply within {wait:g}s"
                ) from None
            if kind != "message":
                raise AmplinkError(errno.EPIPE, f"{core} {service}: {payload}")
            result["reply"] = message_event(payload, src)
            return result
        finally:
            if q is not None:
                tap.unsubscribe(q)

    def _listen(self, conn: socket.socket, req: dict[str, Any]) -> None:
        """Stream every message of a channel until it goes away, the client hangs up
        or the server stops."""
        core, service = _arg(req, "core"), _arg(req, "service")
        tap = self._tap(core, service)
        q = tap.subscribe()
        with self._conns_lock:
            self._conns[conn] = q
        if self._closing:
            q.put(("closed", "amplink up is stopping", None))
        watcher = threading.Thread(target=_hangup_watch, args=(conn, q), daemon=True)
        watcher.start()
        try:
            conn.sendall(
                encode(
                    {"ok": True, "result": {"core": core, "service": service, "addr": tap.ept.addr}}
                )
            )
            while True:
                kind, payload, src = q.get()
                if kind == "hangup":
                    return
                if kind == "closed":
                    conn.sendall(encode({"event": "closed", "reason": payload}))
                    return
                conn.sendall(encode(message_event(payload, src)))
        except OSError:
            return  # the client went away mid-write
        finally:
            tap.unsubscribe(q)
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # ends the watcher's recv
            watcher.join(5)


def _private_folder(folder: Path) -> None:
    """Make ``folder`` (mode 0700) or check that an existing one is ours and private:
    anyone who can reach the socket can stop and crash the cores."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise AmplinkError(
            errno.EPERM,
            f"{folder} must belong to you and be private (mode 0700) to hold the control "
            "socket; fix it or choose another --socket",
        )


def _hangup_watch(conn: socket.socket, q: queue.SimpleQueue[Event]) -> None:
    """Tell a listen stream when its client hangs up (reads EOF)."""
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass
    q.put(("hangup", None, None))


def _arg(req: dict[str, Any], key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise AmplinkError(errno.EINVAL, f"request {req.get('cmd')!r} needs {key!r}")
    return value


def _reply_error(conn: socket.socket, exc: OSError) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(
            encode(
                {"ok": False, "errno": exc.errno or errno.EIO, "error": exc.strerror or str(exc)}
            )
        )
