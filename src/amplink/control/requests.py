"""The requests ``amplink up`` answers: each one's arguments, checked before it runs,
and what it does.

A request names a command (``cmd``) and gives its arguments by name.  A missing,
unknown or ill-typed argument is ``EINVAL`` naming it and saying what it must be, so a
malformed request never reaches the board.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import queue
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from amplink.board import Board
from amplink.board.system import check_firmware
from amplink.control.tap import Event, Tap
from amplink.errors import AmplinkError
from amplink.host import Rproc
from amplink.remoteproc import coredump
from amplink.remoteproc.fwref import resolve
from amplink.rpmsg.core import RpmsgDevice
from amplink.rpmsg.tty import RPMSG_TTY_SERVICE

CHANNEL_TIMEOUT = 5.0  # how long send/listen/tty wait for a channel to be announced
CRASH_TIMEOUT = 30.0  # how long crash waits for the crash to be handled
MAX_WAIT = 3600.0  # the longest reply wait a send may ask for


@dataclass(frozen=True)
class Arg:
    """One argument: its JSON type (``str``, ``int``, ``float``, ``bool``), whether it
    is required, and a check that returns what is wrong with a value (or None)."""

    kind: type
    required: bool = True
    check: Callable[[Any], str | None] = lambda v: None

    def describe(self) -> str:
        """What a value must be, in words."""
        return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}[
            self.kind
        ]


def _nonempty(v: str) -> str | None:
    return None if v else "must not be empty"


def _between(low: float, high: float) -> Callable[[float], str | None]:
    return lambda v: None if low <= v <= high else f"must be between {low:g} and {high:g}"


def _one_of(*options: str) -> Callable[[str], str | None]:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}"


def _hex(v: str) -> str | None:
    try:
        bytes.fromhex(v)
    except ValueError:
        return "must be hexadecimal bytes (two digits per byte)"
    return None


CORE = Arg(str, check=_nonempty)
SERVICE = Arg(str, check=_nonempty)
ARGS: dict[str, dict[str, Arg]] = {
    "ping": {},
    "status": {},
    "start": {"core": CORE},
    "stop": {"core": CORE},
    "recovery": {"core": CORE, "value": Arg(str, check=_one_of("enabled", "disabled", "recover"))},
    "coredump": {"core": CORE, "mode": Arg(str, False, _one_of(*coredump.MODES))},
    "firmware": {"core": CORE, "file": Arg(str, check=_nonempty)},
    "crash": {"core": CORE, "kind": Arg(int, False, _between(0, 2)), "wait": Arg(bool, False)},
    "send": {
        "core": CORE,
        "service": SERVICE,
        "data_hex": Arg(str, check=_hex),
        "wait": Arg(float, False, _between(0, MAX_WAIT)),
    },
    "listen": {"core": CORE, "service": SERVICE},
    "tty": {"core": CORE},
    "trace": {"core": CORE, "index": Arg(int, False, _between(0, 255))},
}

Handler = Callable[[dict[str, Any]], Any]


class Served(Protocol):
    """What the requests need of the server (:class:`~amplink.control.server.ControlServer`)."""

    board: Board | None

    def core(self, name: str) -> Rproc:
        """The board's core called ``name`` (or ``remoteprocN``)."""

    def tap(self, core: str, service: str) -> Tap:
        """The shared host endpoint on ``core``'s channel ``service``."""

    def status(self) -> dict[str, Any]:
        """The board's state."""

    def console(self, core: str) -> str | None:
        """The stable name of ``core``'s console, if it has one now."""


def check(req: dict[str, Any]) -> str:
    """The request's command, after checking every argument against :data:`ARGS`."""
    cmd = req.get("cmd")
    if not isinstance(cmd, str) or cmd not in ARGS:
        raise AmplinkError(
            errno.EINVAL, f"unknown command {cmd!r} (commands: {', '.join(sorted(ARGS))})"
        )
    spec = ARGS[cmd]
    for key, value in req.items():
        if key == "cmd":
            continue
        arg = spec.get(key)
        if arg is None:
            takes = ", ".join(spec) or "no arguments"
            raise AmplinkError(errno.EINVAL, f"{cmd}: unknown argument {key!r} (takes {takes})")
        ok_type = isinstance(value, arg.kind) and (arg.kind is bool or not isinstance(value, bool))
        if arg.kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok_type = True
        if not ok_type:
            raise AmplinkError(
                errno.EINVAL, f"{cmd}: {key!r} must be {arg.describe()}, not {value!r}"
            )
        problem = arg.check(value)
        if problem is not None:
            raise AmplinkError(errno.EINVAL, f"{cmd}: {key!r} {problem}, not {value!r}")
    for key, arg in spec.items():
        if arg.required and key not in req:
            raise AmplinkError(errno.EINVAL, f"{cmd}: argument {key!r} is missing")
    return cmd


def lookup(handlers: dict[str, Handler], req: dict[str, Any]) -> tuple[str, Handler]:
    """The checked command and its handler."""
    cmd = check(req)
    return cmd, handlers[cmd]


def listen_args(req: dict[str, Any]) -> tuple[str, str]:
    """A checked ``listen`` request's core and service."""
    check(req)
    return req["core"], req["service"]


def wait_channel(board: Board, rp: Rproc, service: str, what: str = "") -> RpmsgDevice:
    """Core ``rp``'s channel ``service``: a core that booted less than
    :data:`CHANNEL_TIMEOUT` s ago may yet announce it, so it is waited for until then;
    ``ENODEV`` naming the channels the core has otherwise (``what``: how to call it)."""
    if rp.state != "running":
        raise AmplinkError(
            errno.ENODEV, f"{rp.name} is {rp.state}: it has no {what or 'channels'} now"
        )
    wait = max(0.0, CHANNEL_TIMEOUT - _running_for(rp.pid))
    try:
        return rp.wait_channel(service, wait)
    except AmplinkError as exc:
        if exc.errno != errno.ETIMEDOUT:
            raise
    have = ", ".join(board.channels(rp.name)) or "none"
    raise AmplinkError(
        errno.ENODEV,
        f"{rp.name} has no {what or repr(service)} channel: its firmware ({rp.firmware}) "
        f"announced no {service} (its channels: {have})",
    )


def handlers(server: Served) -> dict[str, Handler]:
    """What each command (but ``listen``, a stream) does on ``server``'s board."""

    def sysfs(req: dict[str, Any], attr: str, value: str) -> dict[str, Any]:
        rp = server.core(req["core"])
        setattr(rp.sysfs, attr, value)
        return {"core": rp.name, attr: getattr(rp.sysfs, attr)}

    def firmware(req: dict[str, Any]) -> dict[str, Any]:
        rp = server.core(req["core"])
        ref = resolve(req["file"])
        ref.check()  # ENOENT now, naming what was looked for
        if server.board is not None:  # what its next boot would refuse, refused now
            check_firmware(replace(server.board.spec.core(rp.name), firmware=ref.name))
        return sysfs(req, "firmware", req["file"])

    def stop(req: dict[str, Any]) -> dict[str, Any]:
        rp = server.core(req["core"])
        rp.stop(strict=True)  # whatever it does (crashed, recovering): offline after it
        return {"core": rp.name, "state": rp.state}

    def crash(req: dict[str, Any]) -> dict[str, Any]:
        rp = server.core(req["core"])
        if rp.state not in ("running", "attached"):  # the crash handler ignores it
            raise AmplinkError(  # (Linux's rproc_crash_handler_work): no waiting for it
                errno.EINVAL,
                f"{rp.name} is {rp.state}: nothing to crash (only a running core can crash)",
            )
        before = rp.crash_count
        rp.debugfs.crash(req.get("kind", 0))
        waiting = None
        if req.get("wait", True):
            waiting = rp.wait_crash_handled(before + 1, CRASH_TIMEOUT, or_dump_pending=True)
        dump = next((d for d in reversed(rp.coredumps) if d.crash == rp.crash_count), None)
        return {
            "core": rp.name,
            "crashes": rp.crash_count,
            "state": rp.state,
            "coredump_waiting": waiting is not None,  # recovery waits for it to be read
            "coredump": dump.written if dump is not None else None,  # the file written
            "coredump_error": dump.write_error if dump is not None else "",
            "coredump_mode": rp.sysfs.coredump,  # "disabled": no dump was taken
            "why": ": ".join(rp.last_crash) if rp.last_crash else "",  # kind: reason
        }

    def dumps(req: dict[str, Any]) -> dict[str, Any]:
        if "mode" in req:
            return sysfs(req, "coredump", req["mode"])
        rp = server.core(req["core"])
        pending = rp.pending_coredump()
        if pending is not None:
            pending.read()  # devcoredump's data file read: written, and recovery goes on
        folder = rp.config.coredump_dir or ""
        pattern = os.path.join(glob.escape(folder), f"{rp.name}-crash*.core")
        return {
            "core": rp.name,
            "coredump": rp.sysfs.coredump,
            "dumps": rp.dumps_taken,
            "read": pending.crash if pending is not None else 0,
            "folder": folder,
            "files": sorted(glob.glob(pattern)) if folder else [],
        }

    def tty(req: dict[str, Any]) -> dict[str, Any]:
        rp = server.core(req["core"])
        assert server.board is not None
        wait_channel(server.board, rp, RPMSG_TTY_SERVICE, "console")
        t = server.board.tty(rp.name)
        if t is None:  # the channel went away again meanwhile
            raise AmplinkError(errno.ENODEV, f"{rp.name} has no console now")
        return {"core": rp.name, "path": t.path, "link": server.console(rp.name)}

    def trace(req: dict[str, Any]) -> dict[str, Any]:
        rp = server.core(req["core"])
        return {"core": rp.name, "text": rp.trace(req.get("index", 0))}

    def send(req: dict[str, Any]) -> dict[str, Any]:
        core, service = req["core"], req["service"]
        data = bytes.fromhex(req["data_hex"])
        wait = float(req.get("wait", 0))
        tap = server.tap(core, service)
        replies: queue.SimpleQueue[Event] = queue.SimpleQueue()
        if wait > 0:
            tap.subscribe(replies.put)
        try:
            tap.ept.send(data)
            result: dict[str, Any] = {"core": core, "service": service, "sent": len(data)}
            if wait <= 0:
                return result
            try:
                kind, payload, src = replies.get(timeout=wait)
            except queue.Empty:
                raise AmplinkError(
                    errno.ETIMEDOUT, f"{core} {service}: no reply within {wait:g}s"
                ) from None
            if kind != "message":
                raise AmplinkError(errno.EPIPE, f"{core} {service}: {payload}")
            result["reply"] = message_event(payload, src)
            return result
        finally:
            tap.unsubscribe(replies.put)

    return {
        "ping": lambda req: "pong",
        "status": lambda req: server.status(),
        "start": lambda req: sysfs(req, "state", "start"),
        "stop": stop,
        "recovery": lambda req: sysfs(req, "recovery", req["value"]),
        "coredump": dumps,
        "firmware": firmware,
        "crash": crash,
        "send": send,
        "tty": tty,
        "trace": trace,
    }


def message_event(data: bytes, src: int) -> dict[str, Any]:
    """A received message as a protocol object (``text`` when it is UTF-8)."""
    event: dict[str, Any] = {"event": "message", "src": src, "data_hex": data.hex()}
    with contextlib.suppress(UnicodeDecodeError):
        event["text"] = data.decode()
    return event


def _running_for(pid: int | None) -> float:
    """Seconds since process ``pid`` started (a large number if unknown)."""
    if pid is None:
        return float("inf")
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return float("inf")
    return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
