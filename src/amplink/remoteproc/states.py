"""Remote processor states and the transitions between them, as one table.

The states are Linux's, with the strings of ``/sys/class/remoteproc/*/state``.  Every
operation of the remoteproc core is an *event*; for each event and state,
:data:`TRANSITIONS` gives the next state, :data:`REFUSALS` the errno the kernel returns
(``rproc_shutdown`` of a core that does not run: ``EINVAL``; ``rproc_boot`` after
``rproc_del``: ``ENODEV``; a firmware change while running: ``EBUSY``...), and any other
pair is ignored (a crash reported for a core that is not running, a recovery of one that
did not crash).  :class:`RprocStates` holds one processor's state and fires events
against the table, like h11's ``_state.py`` does for HTTP: the rules are data, not
``if`` statements spread through the code.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable

from amplink.errors import AmplinkError
from amplink.tracing import TRACER

OFFLINE = "offline"
RUNNING = "running"
CRASHED = "crashed"
DELETED = "deleted"
ATTACHED = "attached"
DETACHED = "detached"
STATES = (OFFLINE, RUNNING, CRASHED, DELETED, ATTACHED, DETACHED)

BOOT = "boot"  # rproc_boot's first power reference: load and start, or attach
SHUTDOWN = "shutdown"  # rproc_shutdown's last power reference
STOP = "stop"  # stop whatever the state (amplink's Rproc.stop): the core is reset
CRASH = "crash"  # rproc_report_crash, once handled
RECOVER = "recover"  # rproc_trigger_recovery: the crashed core is reset and booted again
DETACH = "detach"  # rproc_detach's last power reference
DELETE = "delete"  # rproc_del (after a stop)
SET_FIRMWARE = "set firmware"  # rproc_set_firmware (sysfs firmware)
EVENTS = (BOOT, SHUTDOWN, STOP, CRASH, RECOVER, DETACH, DELETE, SET_FIRMWARE)

_ALIVE = (RUNNING, CRASHED, ATTACHED, DETACHED)

TRANSITIONS: dict[str, dict[str, str]] = {
    BOOT: {OFFLINE: RUNNING, DETACHED: ATTACHED},
    SHUTDOWN: {RUNNING: OFFLINE, ATTACHED: OFFLINE},
    STOP: {state: OFFLINE for state in _ALIVE},
    CRASH: {RUNNING: CRASHED, ATTACHED: CRASHED},
    RECOVER: {CRASHED: RUNNING},  # fired once the boot succeeded (failed: STOP)
    DETACH: {ATTACHED: DETACHED},
    DELETE: {OFFLINE: DELETED},
    SET_FIRMWARE: {OFFLINE: OFFLINE},
}

REFUSALS: dict[str, dict[str, int]] = {
    BOOT: {
        DELETED: errno.ENODEV,
        RUNNING: errno.EBUSY,
        ATTACHED: errno.EBUSY,
        CRASHED: errno.EBUSY,
    },
    SHUTDOWN: {state: errno.EINVAL for state in (OFFLINE, CRASHED, DETACHED, DELETED)},
    DETACH: {state: errno.EINVAL for state in STATES if state != ATTACHED},
    SET_FIRMWARE: {state: errno.EBUSY for state in STATES if state != OFFLINE},
}


REFUSED_BECAUSE = {  # what a refusal says ({name}, {state}), and what to do instead
    BOOT: "{name} is {state}, not offline",
    SHUTDOWN: "{name} is {state}, not running",
    DETACH: "{name} is {state}, not attached",
    SET_FIRMWARE: "{name} is {state}: change firmware while offline",
}
DELETED_BECAUSE = "{name} was deleted"


def outcome(event: str, state: str) -> str | int | None:
    """What ``event`` does in ``state``: the next state, an errno, or None (ignored)."""
    nxt = TRANSITIONS[event].get(state)
    if nxt is not None:
        return nxt
    return REFUSALS.get(event, {}).get(state)


class RprocStates:
    """The state of processor ``name``; waiters are woken at every change."""

    def __init__(self, name: str, state: str = OFFLINE) -> None:
        self.name = name
        self._state = state
        self.changed = threading.Condition()  # also for the caller's own counters

    @property
    def state(self) -> str:
        """The current state (sysfs ``state``)."""
        return self._state

    def allows(self, event: str) -> bool:
        """Whether ``event`` makes a transition now (neither refused nor ignored)."""
        return self._state in TRANSITIONS[event]

    def check(self, event: str) -> None:
        """Raise the kernel's errno if ``event`` is refused now (``AmplinkError``)."""
        code = REFUSALS.get(event, {}).get(self._state)
        if code is not None:
            why = DELETED_BECAUSE if self._state == DELETED else REFUSED_BECAUSE[event]
            raise AmplinkError(code, why.format(name=self.name, state=self._state))

    def fire(self, event: str) -> bool:
        """Make ``event``'s transition; False if it is ignored in this state.  Refused
        events raise (see :meth:`check`)."""
        self.check(event)
        nxt = TRANSITIONS[event].get(self._state)
        if nxt is None:
            return False
        with self.changed:
            self._state = nxt
            self.changed.notify_all()
        if TRACER.enabled:
            TRACER.event("remoteproc", "state", rproc=self.name, state=nxt)
        return True

    def wait_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until ``done()`` (checked at every change); ``ETIMEDOUT`` naming ``what``."""
        with self.changed:
            if not self.changed.wait_for(done, timeout):
                raise AmplinkError(errno.ETIMEDOUT, f"{self.name}: {what} within {timeout}s")
