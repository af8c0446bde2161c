"""``amplink up [BOARD]``: boot a board and keep it running in the foreground.

Before it boots anything it makes its control socket (refusing at once, naming the
path, if another ``amplink up`` uses the socket's folder or the folder is not
private).  It then shows a live status view (per core: its ``remoteprocN`` alias,
state, pid, firmware, channels, rpmsg messages in and out since its last boot,
crashes, console) and serves the control socket, so that ``amplink status``,
``stop``, ``crash``, ``send``, ``listen``... in another terminal reach it.

On a terminal the view is redrawn in place twice a second, wrapped to the terminal's
width (names are never cropped) and cropped to its height, with every log line (also
the core processes') printed above it; on a pipe, the table is printed once (as wide as
$COLUMNS says) and then one line per change.  Ctrl-C (SIGINT) or
SIGTERM stops every core, closes the socket and ends the command (exit code 130 or
143, see :mod:`amplink.app.signals`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from amplink.app import signals
from amplink.app.terminal import Terminal, table
from amplink.board import Board, BoardSpec, CoreStatus
from amplink.control.protocol import default_socket
from amplink.control.server import ControlServer

REFRESH = 0.5  # seconds between looks at the board
READY = "ready:"  # the line a script waits for before using the socket
HEADERS = ("#", "core", "state", "pid", "firmware", "channels", "in", "out", "crashes", "devices")


def status_table(rows: Sequence[CoreStatus], *, folder: str | None = None) -> Table:
    """The status view's table: one row per core, its channels and devices one per
    line, wrapped (never cropped) to fit the terminal.  ``#`` is N of the core's
    ``remoteprocN`` alias; ``devices`` are the console and the endpoint files by their
    stable names (relative to ``folder``, when given)."""
    return table(
        HEADERS,
        [
            [
                s.alias.removeprefix("remoteproc"),
                s.name,
                s.state,
                str(s.pid or "-"),
                _short_firmware(s.firmware),
                "\n".join(s.channels) or "-",
                s.messages_in,
                s.messages_out,
                s.crashes,
                "\n".join(_devices(s, folder)) or "-",
            ]
            for s in rows
        ],
    )


def _devices(s: CoreStatus, folder: str | None) -> list[str]:
    names = [n for n in (s.console or s.tty, *s.endpoints) if n]
    return [os.path.relpath(n, folder) if folder and n.startswith(folder) else n for n in names]


def _short_firmware(firmware: str) -> str:
    """A firmware file by its name (the full path is in ``status --json``)."""
    return os.path.basename(firmware) if "/" in firmware else firmware


def offline_reasons(rows: Sequence[CoreStatus]) -> list[str]:
    """One line per core that recovery gave up on: why it is offline."""
    return [
        f"{s.name} is {s.state}: {s.gave_up}"
        + (f" (the last: {s.last_crash})" * bool(s.last_crash))
        for s in rows
        if s.gave_up
    ]


def start_hints(seen: dict[str, str], rows: Sequence[CoreStatus], socket_path: Path) -> list[str]:
    """What to type to start again a core recovery has just given up on (one line per
    core, once per give-up; ``seen`` remembers them), with ``--socket`` unless
    ``socket_path`` is where the commands look by default."""
    given = _given(socket_path)
    out = []
    for s in rows:
        if s.gave_up and seen.get(s.name) != s.gave_up:
            out.append(
                f"{s.name} stays offline: once its firmware is fixed, start it again with "
                f"amplink start {s.name}{given} (amplink firmware {s.name} FILE{given} first "
                "for another file)"
            )
        seen[s.name] = s.gave_up
    return out


def dump_hints(told: set[str], rows: Sequence[CoreStatus], socket_path: Path) -> list[str]:
    """How to get a core dump, once per core (``told`` remembers which), for each core
    that has crashed with dumps disabled: its crash was logged, and that no dump was
    written."""
    out = []
    for s in rows:
        if s.crashes and s.coredump == "disabled" and s.name not in told:
            told.add(s.name)
            out.append(
                f"{s.name} crashed ({s.last_crash}) and no core dump was written: dumps are "
                f"disabled for it; amplink coredump {s.name} enabled{_given(socket_path)} "
                'turns them on (coredump = "enabled" in the board file, from its start)'
            )
    return out


def _given(socket_path: Path) -> str:
    """`` --socket PATH`` unless the commands look there by default."""
    default = socket_path.absolute() == default_socket().absolute()
    return "" if default else f" --socket {socket_path}"


def changes(before: Sequence[CoreStatus], after: Sequence[CoreStatus]) -> list[str]:
    """One line per core whose state, channels or crash count changed."""
    out = []
    for old, new in zip(before, after, strict=True):
        what = []
        if old.state != new.state:
            what.append(f"{old.state} -> {new.state}")
        if old.crashes != new.crashes:
            what.append(f"crash #{new.crashes}: {new.last_crash}")
        if old.channels != new.channels:
            what.append(f"channels: {', '.join(new.channels) or 'none'}")
        if what:
            out.append(f"{new.name}: " + "; ".join(what))
    return out


def run(
    spec: BoardSpec,
    socket_path: Path,
    out: TextIO | None = None,
    *,
    live: bool | None = None,
    stop: threading.Event | None = None,
    coredump_dir: str | None = None,
) -> int:
    """Boot ``spec`` and serve it on ``socket_path`` until ``stop`` is set (by default
    by SIGINT or SIGTERM), then stop everything.  Returns the number of the signal
    that stopped it (0 if ``stop`` was set otherwise)."""
    term = Terminal(out, interactive=live)
    server = ControlServer(socket_path)  # refuses before anything boots
    try:
        with signals.stop_event() as by_signal, term.relay_output():
            _serve(spec, server, term, stop or by_signal, coredump_dir)
        return by_signal.signum
    finally:
        server.close()


def _serve(
    spec: BoardSpec,
    server: ControlServer,
    term: Terminal,
    stop: threading.Event,
    coredump_dir: str | None,
) -> None:
    board = Board(spec, coredump_dir=coredump_dir)
    try:
        term.say(f"board {spec.name}: {spec.description or spec.source}")
        board.start(term.step, stop=stop)
        if stop.is_set():
            return
        server.serve(board)
        term.say(f"{READY} control socket {server.path}; devices in {server.folder}; Ctrl-C stops")
        _watch(board, server, term, stop)
    finally:
        server.close()
        with signals.shielded(), term.step("stop the board"):
            board.stop()


def _view(board: Board, server: ControlServer) -> RenderableType:
    rows = server.annotate(board.status())
    return Group(
        Text(f"board {board.spec.name}: devices in {server.folder}", style="bold"),
        status_table(rows, folder=str(server.folder)),
        *(Text(line) for line in offline_reasons(rows)),
    )


def _watch(board: Board, server: ControlServer, term: Terminal, stop: threading.Event) -> None:
    last = server.annotate(board.status())
    seen: dict[str, str] = {}
    told: set[str] = set()
    say = term.wrapped if term.interactive else term.say  # a log on a pipe is not wrapped
    with (
        term.live(lambda: _view(board, server), REFRESH)
        if term.interactive
        else _table(term, last, server)
    ):
        while True:
            stopping = stop.wait(REFRESH)
            now = server.annotate(board.status())
            lines = [] if term.interactive else changes(last, now)
            hints = start_hints(seen, now, server.path) + dump_hints(told, now, server.path)
            for line in lines + hints:
                say(line)  # a last look after the stop: nothing goes unsaid
            last = now
            if stopping:
                return


@contextlib.contextmanager
def _table(term: Terminal, rows: Sequence[CoreStatus], server: ControlServer) -> Iterator[None]:
    """On a pipe: the table once, then one line per change."""
    term.show(status_table(rows, folder=str(server.folder)))
    yield
