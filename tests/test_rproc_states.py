"""The remoteproc state table, every event in every state, without a core."""

import errno
import threading

import pytest

from amplink.errors import AmplinkError
from amplink.remoteproc import states as s

# What Linux's remoteproc core does (and amplink's stop()), written out by hand: the
# table in states.py must say exactly this.
EXPECTED = {
    (s.BOOT, s.OFFLINE): s.RUNNING,
    (s.BOOT, s.DETACHED): s.ATTACHED,
    (s.BOOT, s.RUNNING): errno.EBUSY,
    (s.BOOT, s.ATTACHED): errno.EBUSY,
    (s.BOOT, s.CRASHED): errno.EBUSY,
    (s.BOOT, s.DELETED): errno.ENODEV,
    (s.SHUTDOWN, s.RUNNING): s.OFFLINE,
    (s.SHUTDOWN, s.ATTACHED): s.OFFLINE,
    (s.SHUTDOWN, s.OFFLINE): errno.EINVAL,
    (s.SHUTDOWN, s.CRASHED): errno.EINVAL,
    (s.SHUTDOWN, s.DETACHED): errno.EINVAL,
    (s.SHUTDOWN, s.DELETED): errno.EINVAL,
    (s.STOP, s.RUNNING): s.OFFLINE,
    (s.STOP, s.ATTACHED): s.OFFLINE,
    (s.STOP, s.CRASHED): s.OFFLINE,
    (s.STOP, s.DETACHED): s.OFFLINE,
    (s.STOP, s.OFFLINE): None,
    (s.STOP, s.DELETED): None,
    (s.CRASH, s.RUNNING): s.CRASHED,
    (s.CRASH, s.ATTACHED): s.CRASHED,
    (s.CRASH, s.OFFLINE): None,
    (s.CRASH, s.CRASHED): None,
    (s.CRASH, s.DETACHED): None,
    (s.CRASH, s.DELETED): None,
    (s.RECOVER, s.CRASHED): s.RUNNING,
    (s.RECOVER, s.OFFLINE): None,
    (s.RECOVER, s.RUNNING): None,
    (s.RECOVER, s.ATTACHED): None,
    (s.RECOVER, s.DETACHED): None,
    (s.RECOVER, s.DELETED): None,
    (s.DETACH, s.ATTACHED): s.DETACHED,
    (s.DETACH, s.OFFLINE): errno.EINVAL,
    (s.DETACH, s.RUNNING): errno.EINVAL,
    (s.DETACH, s.CRASHED): errno.EINVAL,
    (s.DETACH, s.DETACHED): errno.EINVAL,
    (s.DETACH, s.DELETED): errno.EINVAL,
    (s.DELETE, s.OFFLINE): s.DELETED,
    (s.DELETE, s.RUNNING): None,
    (s.DELETE, s.ATTACHED): None,
    (s.DELETE, s.CRASHED): None,
    (s.DELETE, s.DETACHED): None,
    (s.DELETE, s.DELETED): None,
    (s.SET_FIRMWARE, s.OFFLINE): s.OFFLINE,
    (s.SET_FIRMWARE, s.RUNNING): errno.EBUSY,
    (s.SET_FIRMWARE, s.ATTACHED): errno.EBUSY,
    (s.SET_FIRMWARE, s.CRASHED): errno.EBUSY,
    (s.SET_FIRMWARE, s.DETACHED): errno.EBUSY,
    (s.SET_FIRMWARE, s.DELETED): errno.EBUSY,
}


def test_every_event_in_every_state_is_written_down():
    assert set(EXPECTED) == {(e, st) for e in s.EVENTS for st in s.STATES}


def test_no_pair_is_both_a_transition_and_a_refusal():
    for event in s.EVENTS:
        both = set(s.TRANSITIONS[event]) & set(s.REFUSALS.get(event, {}))
        assert not both, (event, both)


@pytest.mark.parametrize(("event", "state"), sorted(EXPECTED))
def test_the_table_says_what_linux_does(event, state):
    assert s.outcome(event, state) == EXPECTED[(event, state)]


@pytest.mark.parametrize(("event", "state"), sorted(EXPECTED))
def test_firing_makes_the_transition_or_refuses_with_the_errno(event, state):
    machine = s.RprocStates("rp", state)
    want = EXPECTED[(event, state)]
    if isinstance(want, int):
        with pytest.raises(AmplinkError) as exc:
            machine.fire(event)
        assert exc.value.errno == want
        assert "rp" in exc.value.strerror and state in exc.value.strerror
        assert machine.state == state  # a refusal changes nothing
    elif want is None:
        assert machine.fire(event) is False  # ignored
        assert machine.state == state
    else:
        assert machine.allows(event)
        assert machine.fire(event) is True
        assert machine.state == want


def test_a_change_wakes_whoever_waits_for_it():
    machine = s.RprocStates("rp", s.RUNNING)
    seen = []

    def wait() -> None:
        machine.wait_until(lambda: machine.state == s.CRASHED, 10, "no crash")
        seen.append(machine.state)

    t = threading.Thread(target=wait)
    t.start()
    machine.fire(s.CRASH)
    t.join(10)
    assert seen == [s.CRASHED]
    with pytest.raises(AmplinkError) as exc:
        machine.wait_until(lambda: machine.state == s.RUNNING, 0.01, "still crashed")
    assert exc.value.errno == errno.ETIMEDOUT and "still crashed" in exc.value.strerror
