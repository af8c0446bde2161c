"""Remote processors through the kernel's remoteproc sysfs and debugfs interfaces.

``/sys/class/remoteproc/remoteprocN/`` has ``name``, ``state`` (write ``start``,
``stop``, ``detach``), ``firmware``, ``recovery`` (``enabled``, ``disabled``,
``recover``) and ``coredump`` (``disabled``, ``enabled``, ``inline``);
``/sys/kernel/debug/remoteproc/remoteprocN/`` adds ``trace0..N``, ``crash`` and
``resource_table``.  The kernel's answer to a write (``EBUSY`` to a firmware change
while running, ``EINVAL`` to an unknown word...) comes back as an
:class:`~amplink.errors.AmplinkError` with its errno.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from amplink.errors import AmplinkError

SYSFS = "/sys"
DEBUGFS = "/sys/kernel/debug"
RECOVERY = ("enabled", "disabled", "recover")
COREDUMP = ("disabled", "enabled", "inline")
STATE_WRITES = ("start", "stop", "detach")


class _Attr:
    """A read-write sysfs attribute of a remote processor; a write is checked against
    the words the kernel accepts (any single-line name when ``allowed`` is empty)."""

    def __init__(self, attr: str, doc: str, allowed: tuple[str, ...] = ()) -> None:
        self.attr = attr
        self.allowed = allowed
        self.__doc__ = doc

    def __get__(self, rp: RemoteProc, owner: type | None = None) -> str:
        return rp._read(rp.dir, self.attr)

    def __set__(self, rp: RemoteProc, value: str) -> None:
        if self.allowed and value not in self.allowed:
            raise AmplinkError(
                errno.EINVAL, f"{self.attr} is one of {', '.join(self.allowed)}, not {value!r}"
            )
        if not value or "\n" in value:
            raise AmplinkError(errno.EINVAL, f"invalid {self.attr} {value!r}")
        rp._write(rp.dir, self.attr, value)


class RemoteProc:
    """One remote processor (``remoteprocN``)."""

    def __init__(self, index: int, *, sysfs: str = SYSFS, debugfs: str = DEBUGFS) -> None:
        self.index = index
        self.dir = Path(sysfs, "class/remoteproc", f"remoteproc{index}")
        self.debug_dir = Path(debugfs, "remoteproc", f"remoteproc{index}")
        if not self.dir.is_dir():
            raise AmplinkError(errno.ENODEV, f"no remote processor at {self.dir}")

    def __repr__(self) -> str:
        return f"<RemoteProc remoteproc{self.index} {self.name} {self.state}>"

    def _read(self, folder: Path, attr: str) -> str:
        try:
            return (folder / attr).read_text().rstrip("\n")
        except OSError as exc:
            raise AmplinkError(
                exc.errno or errno.EIO, f"read {folder / attr}: {os.strerror(exc.errno or 5)}"
            ) from None

    def _write(self, folder: Path, attr: str, value: str) -> None:
        try:
            with open(folder / attr, "w") as f:
                f.write(value)
        except OSError as exc:
            code = exc.errno or errno.EIO
            raise AmplinkError(
                code, f"write {value!r} to {folder / attr}: {os.strerror(code)}"
            ) from None

    @staticmethod
    def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
        if value not in allowed:
            raise AmplinkError(
                errno.EINVAL, f"{what} is one of {', '.join(allowed)}, not {value!r}"
            )

    @property
    def name(self) -> str:
        """The processor's name (read-only)."""
        return self._read(self.dir, "name")

    @property
    def state(self) -> str:
        """``offline``, ``suspended``, ``running``, ``crashed``, ``deleted``,
        ``attached``, ``detached`` or ``invalid``."""
        return self._read(self.dir, "state")

    def start(self) -> None:
        """Boot it (``state`` = start)."""
        self._write(self.dir, "state", "start")

    def stop(self) -> None:
        """Shut it down (``state`` = stop)."""
        self._write(self.dir, "state", "stop")

    def detach(self) -> None:
        """Detach from a processor the kernel attached to (``state`` = detach)."""
        self._write(self.dir, "state", "detach")

    firmware = _Attr("firmware", "The firmware file name (``unknown`` when attached).")
    recovery = _Attr(
        "recovery",
        "``enabled`` or ``disabled``; set ``recover`` to recover a crashed one now.",
        RECOVERY,
    )
    coredump = _Attr("coredump", "``disabled``, ``enabled`` or ``inline``.", COREDUMP)

    def trace(self, index: int = 0) -> str:
        """The firmware's trace buffer ``traceN`` (debugfs must be mounted)."""
        return self._read(self.debug_dir, f"trace{index}")

    def traces(self) -> list[int]:
        """The indices of the trace buffers debugfs shows."""
        if not self.debug_dir.is_dir():
            return []
        found = (p.name[5:] for p in self.debug_dir.glob("trace[0-9]*"))
        return sorted(int(n) for n in found if n.isdigit())

    def crash(self, kind: int = 0) -> None:
        """Make the kernel handle a crash of this type (debugfs ``crash``)."""
        self._write(self.debug_dir, "crash", str(kind))

    def resource_table(self) -> str:
        """The kernel's dump of the loaded resource table (debugfs)."""
        return self._read(self.debug_dir, "resource_table")


def remote_procs(sysfs: str = SYSFS, debugfs: str = DEBUGFS) -> list[RemoteProc]:
    """Every remote processor the kernel registered, by index."""
    root = Path(sysfs, "class/remoteproc")
    if not root.is_dir():
        return []
    indices = sorted(
        int(p.name[10:]) for p in root.glob("remoteproc[0-9]*") if p.name[10:].isdigit()
    )
    return [RemoteProc(i, sysfs=sysfs, debugfs=debugfs) for i in indices]
