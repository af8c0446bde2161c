"""Stable names for a running board's cores and consoles, in ``amplink up``'s folder.

A pty's path (``/dev/pts/7``) changes with every boot of a core; these names do not:

* ``<folder>/<core>/ttyRPMSG<N>``: a symlink to the pty of the core's N-th console
  (``rpmsg-tty`` channel), N counted per core in the order its firmware announces
  them and kept for the same channel (name and address) across stops, crashes and
  recoveries, so ``minicom -D <folder>/m4/ttyRPMSG0`` works every time;
* ``<folder>/remoteproc<N>``: a symlink to the folder of the board's N-th core (the
  kernel numbers remote processors so too); every command accepts ``remoteprocN``
  where it takes a core's name.

The links are made as consoles appear and removed as they go, and all of them when
``amplink up`` stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from amplink.board import Board, CoreStatus
from amplink.rpmsg.core import RpmsgDevice
from amplink.rpmsg.tty import RpmsgTty

log = logging.getLogger(__name__)

TTY_PREFIX = "ttyRPMSG"


class DeviceNames:
    """The stable names of ``board``'s cores and consoles under ``folder``."""

    def __init__(self, folder: Path, board: Board) -> None:
        self.folder = folder
        self.board = board
        self._numbers: dict[tuple[str, str, int], int] = {}  # (core, channel, addr) -> N
        self._links: dict[str, Path] = {}  # rpdev id -> its console's link
        self._lock = threading.Lock()
        self._made: list[Path] = []
        for i, name in enumerate(board.cores):
            core_dir = folder / name
            core_dir.mkdir(mode=0o700, exist_ok=True)
            self._made.append(core_dir)
            _link(folder / f"remoteproc{i}", name)
            self._made.append(folder / f"remoteproc{i}")
        board.ttys.add_listener(self._tty_changed)

    def _core_of(self, rpdev: RpmsgDevice) -> str | None:
        for name, rp in self.board.cores.items():
            if rp.link is not None and rp.link is rpdev.link:
                return name
        return None

    def _tty_changed(self, rpdev: RpmsgDevice, tty: RpmsgTty | None) -> None:
        with self._lock:
            if tty is None:
                link = self._links.pop(rpdev.id, None)
                if link is not None:
                    with contextlib.suppress(FileNotFoundError):
                        link.unlink()
                return
            core = self._core_of(rpdev)
            if core is None:
                return
            key = (core, rpdev.name, rpdev.dst)
            n = self._numbers.get(key)
            if n is None:
                n = self._numbers[key] = sum(1 for k in self._numbers if k[0] == core)
            link = self.folder / core / f"{TTY_PREFIX}{n}"
            try:
                _link(link, tty.path)
            except OSError as exc:
                log.warning("cannot name %s's console %s: %s", core, link, exc.strerror)
                return
            self._links[rpdev.id] = link

    def console(self, core: str) -> str | None:
        """The stable name of core ``core``'s first console now, if it has one."""
        with self._lock:
            links = sorted(
                str(p) for p in self._links.values() if p.parent.name == core and p.is_symlink()
            )
        return links[0] if links else None

    def annotate(self, rows: Sequence[CoreStatus]) -> list[CoreStatus]:
        """``rows`` with each core's console given by its stable name."""
        return [dataclasses.replace(s, console=self.console(s.name)) for s in rows]

    def close(self) -> None:
        """Remove every name. Idempotent."""
        self.board.ttys.remove_listener(self._tty_changed)
        with self._lock:
            links, self._links = list(self._links.values()), {}
        for path in [*links, *reversed(self._made)]:
            with contextlib.suppress(FileNotFoundError, OSError):
                if path.is_symlink():
                    path.unlink()
                else:
                    path.rmdir()  # only if empty: a user's file there stays
        self._made = []


def _link(path: Path, target: str) -> None:
    """Make ``path`` a symlink to ``target``, replacing what is there atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)
