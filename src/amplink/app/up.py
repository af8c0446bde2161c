"""``amplink up [BOARD]``: boot a board and keep it running in the foreground.

It shows a live status view (per core: state, firmware, channels, rpmsg messages in
and out since its last boot, crashes) and serves the control socket, so that
``amplink status``, ``stop``, ``crash``, ``send``, ``listen``... in another terminal
reach it.  On a terminal the view is redrawn in place twice a second; on a pipe, the
table is printed once and then one line per change.  Ctrl-C (SIGINT) or SIGTERM stops
every core, closes the socket and exits 0.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from amplink.app.terminal import Steps, table
from amplink.board import Board, BoardSpec, CoreStatus
from amplink.control.server import ControlServer

REFRESH = 0.5  # seconds between looks at the board
READY = "ready:"  # the line a script waits for before using the socket


def status_table(rows: Sequence[CoreStatus]) -> str:
    """The status view's table."""
    return table(
        [
            "core",
            "personality",
            "state",
            "pid",
            "firmware",
            "channels",
            "msgs in",
            "msgs out",
            "crashes",
            "tty",
        ],
        [
            [
                s.name,
                s.personality,
                s.state,
                str(s.pid or "-"),
                s.firmware,
                ", ".join(s.channels) or "-",
                s.messages_in,
                s.messages_out,
                s.crashes,
                s.tty,
            ]
            for s in rows
        ],
    )


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
) -> None:
    """Boot ``spec``, serve it on ``socket_path`` until ``stop`` is set (by default by
    SIGINT or SIGTERM), then stop everything."""
    stream = out if out is not None else sys.stdout
    ui = Steps(stream)
    live = stream.isatty() if live is None else live
    stop = stop if stop is not None else _stop_on_signals()
    board = Board(spec)
    server: ControlServer | None = None
    try:
        ui.say(f"board {spec.name}: {spec.description or spec.source}")
        board.start(ui.step)
        server = ControlServer(board, socket_path)
        ui.say(f"{READY} control socket {socket_path}; Ctrl-C stops the board")
        _watch(board, ui, live, stop)
    finally:
        if server is not None:
            server.close()
        with ui.step("stop the board"):
            board.stop()


def _watch(board: Board, ui: Steps, live: bool, stop: threading.Event) -> None:
    if live:
        _redraw(board, ui, stop)
        return
    last = board.status()
    ui.say(status_table(last))
    while True:
        stopping = stop.wait(REFRESH)
        now = board.status()
        for line in changes(last, now):  # a last look after the stop: nothing goes unsaid
            ui.say(line)
        last = now
        if stopping:
            return


def _redraw(board: Board, ui: Steps, stop: threading.Event) -> None:
    """Draw the table over the previous frame until ``stop``."""
    drawn = 0
    while True:
        text = status_table(board.status())
        up = f"\033[{drawn}F" if drawn else ""
        ui.out.write(up + "".join(f"\033[K{line}\n" for line in text.split("\n")))
        ui.out.flush()
        drawn = text.count("\n") + 1
        if stop.wait(REFRESH):
            return


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (main thread only)."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        return stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop
