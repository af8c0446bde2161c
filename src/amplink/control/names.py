"""Stable names for a running board's cores, consoles and endpoint files, in
``amplink up``'s folder.

A pty's path (``/dev/pts/7``) changes with every boot of a core, and an endpoint file
is an object inside ``amplink up``; these names do not change and any process of the
user can open them:

* ``<folder>/<core>/ttyRPMSG<N>``: a symlink to the pty of the core's N-th console
  (``rpmsg-tty`` channel), so ``minicom -D <folder>/m4/ttyRPMSG0`` works every time;
* ``<folder>/<core>/rpmsg<N>``: the core's N-th ``rpmsg-raw`` channel's endpoint file
  as a ``SOCK_SEQPACKET`` socket (:class:`~amplink.control.endpoint_socket.EndpointSocket`:
  one packet per message, as ``/dev/rpmsgN`` reads and writes);
* ``<folder>/remoteproc<N>``: a symlink to the folder of the board's N-th core (the
  kernel numbers remote processors so too); every command accepts ``remoteprocN``
  where it takes a core's name.

N is counted per core and kind in the order the firmware announces its channels, and
kept for the same channel (name and address) across stops, crashes and recoveries.
A name appears when its channel does and goes when it goes; all of them go when
``amplink up`` stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from amplink.board import Board, CoreStatus
from amplink.control.endpoint_socket import EndpointSocket
from amplink.rpmsg.chardev import RpmsgEptFile
from amplink.rpmsg.core import RpmsgDevice
from amplink.rpmsg.tty import RpmsgTty

log = logging.getLogger(__name__)

TTY_PREFIX = "ttyRPMSG"
EPT_PREFIX = "rpmsg"


class _Symlink:
    """A console's name: a symlink to its pty."""

    def __init__(self, path: Path, target: str) -> None:
        _link(path, target)
        self.path = path

    def close(self, *, hang_up: bool = False) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class DeviceNames:
    """The stable names of ``board``'s cores, consoles and endpoint files under
    ``folder``; the endpoint sockets are served in the event loop ``loop``."""

    def __init__(self, folder: Path, board: Board, loop: asyncio.AbstractEventLoop) -> None:
        self.folder = folder
        self.board = board
        self._numbers: dict[tuple[str, str, str, int], int] = {}  # kind, core, channel, addr
        self._names: dict[tuple[str, str], _Symlink | EndpointSocket] = {}  # kind, rpdev id
        self._lock = threading.Lock()
        self._made: list[Path] = []
        for i, name in enumerate(board.cores):
            core_dir = folder / name
            core_dir.mkdir(mode=0o700, exist_ok=True)
            self._made.append(core_dir)
            _link(folder / f"remoteproc{i}", name)
            self._made.append(folder / f"remoteproc{i}")

        def tty(rpdev: RpmsgDevice, t: RpmsgTty | None) -> None:
            self._changed(TTY_PREFIX, rpdev, None if t is None else lambda p: _Symlink(p, t.path))

        def file(rpdev: RpmsgDevice, f: RpmsgEptFile | None) -> None:
            self._changed(
                EPT_PREFIX, rpdev, None if f is None else lambda p: EndpointSocket(p, f, loop)
            )

        self._listeners = (tty, file)
        board.ttys.add_listener(tty)  # also told of those there already
        board.files.add_listener(file)

    def _changed(
        self,
        kind: str,
        rpdev: RpmsgDevice,
        make: Callable[[Path], _Symlink | EndpointSocket] | None,
    ) -> None:
        """A channel's object of ``kind`` was made (``make`` names it) or goes (None)."""
        key = (kind, rpdev.id)
        with self._lock:
            if make is None:
                gone = self._names.pop(key, None)
                if gone is not None:
                    gone.close()
                return
            path = self._name(kind, rpdev)
            if path is None or key in self._names:
                return
            try:
                self._names[key] = make(path)
            except OSError as exc:
                log.warning("cannot name %s: %s", path, exc.strerror)

    def _name(self, kind: str, rpdev: RpmsgDevice) -> Path | None:
        """The stable path of ``rpdev``'s object of ``kind`` (lock held), or None for
        a channel of no core of the board."""
        core = next((n for n, rp in self.board.cores.items() if rpdev.link in rp.links), None)
        if core is None:
            return None
        key = (kind, core, rpdev.name, rpdev.dst)
        n = self._numbers.get(key)
        if n is None:
            n = self._numbers[key] = sum(1 for k in self._numbers if k[:2] == key[:2])
        return self.folder / core / f"{kind}{n}"

    def _of(self, kind: str, core: str) -> list[str]:
        with self._lock:
            return sorted(
                str(d.path)
                for (k, _), d in self._names.items()
                if k == kind and d.path.parent.name == core
            )

    def console(self, core: str) -> str | None:
        """The stable name of core ``core``'s first console now, if it has one."""
        consoles = self._of(TTY_PREFIX, core)
        return consoles[0] if consoles else None

    def endpoints(self, core: str) -> tuple[str, ...]:
        """The stable names of core ``core``'s endpoint files now."""
        return tuple(self._of(EPT_PREFIX, core))

    def annotate(self, rows: Sequence[CoreStatus]) -> list[CoreStatus]:
        """``rows`` with each core's console and endpoint files by their stable names."""
        return [
            dataclasses.replace(s, console=self.console(s.name), endpoints=self.endpoints(s.name))
            for s in rows
        ]

    def close(self) -> None:
        """Remove every name and disconnect every endpoint socket's client. Idempotent."""
        self.board.ttys.remove_listener(self._listeners[0])
        self.board.files.remove_listener(self._listeners[1])
        with self._lock:
            names, self._names = list(self._names.values()), {}
        for name in names:
            name.close(hang_up=True)
        for path in reversed(self._made):
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
