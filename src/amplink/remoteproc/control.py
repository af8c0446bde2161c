"""The control interface of a remote processor, with sysfs and debugfs semantics.

:class:`Sysfs` is ``/sys/class/remoteproc/remoteprocN/`` (``state``, ``firmware``,
``recovery``, ``coredump``, ``name``) and :class:`Debugfs` is
``/sys/kernel/debug/remoteproc/remoteprocN/`` (``crash``, ``resource_table``,
``trace<N>``), as Python objects: reading an attribute gives the string the file
would; assigning one does what writing the file does, with the same errors (a
trailing newline is tolerated, as ``sysfs_streq`` does).
"""

from __future__ import annotations

import errno
from typing import Protocol

from amplink.errors import AmplinkError
from amplink.remoteproc import coredump
from amplink.remoteproc.describe import describe_table
from amplink.remoteproc.states import ATTACHED, CRASHED, RUNNING
from amplink.wire import rsc_table as rt


class ControlledRproc(Protocol):
    """What the control files reach of a remote processor (its sysfs attributes and
    the operations writing them starts; :class:`amplink.remoteproc.rproc.Rproc`)."""

    name: str
    firmware: str
    recovery: bool
    coredump_mode: str

    @property
    def state(self) -> str:
        """The state string."""

    def boot(self) -> None:
        """``rproc_boot``."""

    def shutdown(self) -> None:
        """``rproc_shutdown``."""

    def detach(self) -> None:
        """``rproc_detach``."""

    def set_firmware(self, name: str) -> None:
        """``rproc_set_firmware``."""

    def recover(self) -> None:
        """Recover a crashed core now."""

    def report_crash(self, kind: int, reason: str = "", *, requested: bool = False) -> None:
        """``rproc_report_crash``."""

    def loaded_table(self) -> rt.ResourceTable | None:
        """The resource table as loaded now."""

    def trace(self, index: int = 0) -> str:
        """The text of trace buffer ``index``."""


def _word(value: str) -> str:
    return value[:-1] if value.endswith("\n") else value


class Sysfs:
    """``/sys/class/remoteproc/remoteprocN/`` of one remote processor."""

    def __init__(self, rproc: ControlledRproc) -> None:
        self._rp = rproc

    @property
    def name(self) -> str:
        """The processor's name (``name``)."""
        return self._rp.name

    @property
    def state(self) -> str:
        """The state (``state``); write ``start``, ``stop`` or ``detach``."""
        return self._rp.state

    @state.setter
    def state(self, value: str) -> None:
        rp, cmd = self._rp, _word(value)
        if cmd == "start":
            if rp.state in (RUNNING, ATTACHED):
                raise AmplinkError(errno.EBUSY, f"{rp.name} is already {rp.state}")
            rp.boot()
        elif cmd == "stop":
            if rp.state not in (RUNNING, ATTACHED):
                raise AmplinkError(errno.EINVAL, f"{rp.name} is {rp.state}: nothing to stop")
            rp.shutdown()
        elif cmd == "detach":
            rp.detach()  # EINVAL unless attached
        else:
            raise AmplinkError(errno.EINVAL, f"state accepts start, stop or detach, not {cmd!r}")

    @property
    def firmware(self) -> str:
        """The firmware name (``firmware``); writable while offline."""
        return "unknown" if self._rp.state == ATTACHED else self._rp.firmware

    @firmware.setter
    def firmware(self, value: str) -> None:
        self._rp.set_firmware(value)

    @property
    def recovery(self) -> str:
        """``enabled`` or ``disabled``; write ``recover`` to recover a crashed core now."""
        return "enabled" if self._rp.recovery else "disabled"

    @recovery.setter
    def recovery(self, value: str) -> None:
        rp, cmd = self._rp, _word(value)
        if cmd == "enabled":
            rp.recovery = True
            rp.recover()
        elif cmd == "disabled":
            rp.recovery = False
        elif cmd == "recover":
            rp.recover()
        else:
            raise AmplinkError(
                errno.EINVAL, f"recovery accepts enabled, disabled or recover, not {cmd!r}"
            )

    @property
    def coredump(self) -> str:
        """The dump mode: ``disabled``, ``enabled`` or ``inline``."""
        return self._rp.coredump_mode

    @coredump.setter
    def coredump(self, value: str) -> None:
        rp, mode = self._rp, _word(value)
        if rp.state == CRASHED:
            raise AmplinkError(errno.EBUSY, f"{rp.name} is crashed: change coredump later")
        if mode not in coredump.MODES:
            raise AmplinkError(
                errno.EINVAL, f"coredump accepts {', '.join(coredump.MODES)}, not {mode!r}"
            )
        rp.coredump_mode = mode


class Debugfs:
    """``/sys/kernel/debug/remoteproc/remoteprocN/`` of one remote processor."""

    def __init__(self, rproc: ControlledRproc) -> None:
        self._rp = rproc

    def crash(self, kind: int | str = 0) -> None:
        """Write a crash type (0 mmufault, 1 watchdog, 2 fatal error) to ``crash``."""
        try:
            value = int(kind)
        except ValueError:
            raise AmplinkError(
                errno.EINVAL, f"crash takes an unsigned integer, not {kind!r}"
            ) from None
        if value < 0:
            raise AmplinkError(errno.EINVAL, f"crash takes an unsigned integer, not {value}")
        self._rp.report_crash(value, "crash requested through debugfs", requested=True)

    @property
    def resource_table(self) -> str:
        """The loaded resource table, decoded as the kernel prints it."""
        table = self._rp.loaded_table()
        return "No resource table found" if table is None else describe_table(table)

    def trace(self, index: int = 0) -> str:
        """The text in trace buffer ``index`` (``trace<N>``)."""
        return self._rp.trace(index)
