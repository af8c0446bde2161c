"""Firmware that crashes right after every boot: recovery backs off and gives up
(``RprocConfig.crash_loop``), a stop always wins against recovery, and the state says
the same thing to every reader while it goes on.  Real core processes throughout."""

import errno
import logging
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from amplink.errors import AmplinkError
from amplink.host import CrashLoop, Rproc, RprocConfig
from amplink.remoteproc.states import CRASHED, OFFLINE, RUNNING
from resources import snapshot
from waiting import wait_for

FW = Path(__file__).parent / "firmware"
RAISES = str(FW / "raises_at_start.py")
ECHO_FW = "amplink.firmware.echo"
RPROC_LOG = "amplink.remoteproc.rproc"


def messages(caplog: pytest.LogCaptureFixture, pattern: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if re.search(pattern, r.getMessage())]


def test_crash_loop_settings_are_checked():
    for bad in ({"limit": 0}, {"window": -1.0}, {"backoff": -0.1}):
        with pytest.raises(AmplinkError) as exc:
            CrashLoop(**bad)
        assert exc.value.errno == errno.EINVAL and next(iter(bad)) in str(exc.value)
    loop = CrashLoop(limit=5, backoff=0.1)
    assert [loop.delay(n) for n in range(1, 6)] == [0.0, 0.1, 0.2, 0.4, None]


def test_firmware_that_crashes_at_start_is_recovered_with_backoff_then_given_up_on(caplog):
    before = snapshot()
    loop = CrashLoop(limit=4, window=120.0, backoff=0.05)
    rp = Rproc("loop", RAISES, config=RprocConfig(crash_loop=loop))
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger=RPROC_LOG):
        rp.start()
        rp.wait_crash_handled(4, timeout=120)  # and the worker that handled it is done
    took = time.monotonic() - started
    assert (rp.state, rp.crash_count, rp.power, rp.pid) == (OFFLINE, 4, 0, None)
    assert rp.gave_up == "recovery gave up after 4 crashes in a row, each within 120 s of its boot"
    assert rp.last_crash == (
        "fatal error",
        "the core process exited (exit code 1): RuntimeError: boom at start",
    )
    # the first crash is recovered at once (as Linux does), the next after 0.05, 0.1 s
    waits = [
        float(w) for m in messages(caplog, "recovering in") for w in re.findall(r"in ([\d.]+) s", m)
    ]
    assert waits == [0.05, 0.1] and took >= 0.15
    gave_up = messages(caplog, "gave up")
    assert (
        len(gave_up) == 1 and "stays offline" in gave_up[0] and "then start it again" in gave_up[0]
    )
    # the traceback once; the repeats say they are the same failure
    assert len(messages(caplog, "Traceback")) == 1
    assert len(messages(caplog, r"the same failure as crash #1")) == 3
    with pytest.raises(AmplinkError) as exc:
        rp.stop(strict=True)
    assert exc.value.errno == errno.EINVAL and "nothing to stop (recovery gave up" in str(exc.value)
    assert snapshot() == before
    rp.firmware = "no-such-firmware.py"  # a start that fails: the old reason is history
    with pytest.raises(OSError):
        rp.start()
    assert rp.gave_up is None
    rp.firmware = RAISES
    rp.start()  # a start begins a new run: four more crashes before it gives up again
    rp.wait_crash_handled(8, timeout=120)
    assert (rp.state, rp.crash_count, rp.pid) == (OFFLINE, 8, None)
    assert snapshot() == before


def test_a_crash_long_after_boot_or_requested_through_debugfs_starts_no_crash_loop():
    loop = CrashLoop(limit=2, window=3600.0, backoff=0.0)
    with Rproc("requested", ECHO_FW, config=RprocConfig(crash_loop=loop)) as rp:
        for i in range(4):  # debugfs crashes are asked for: never a sign of bad firmware
            rp.debugfs.crash(2)
            rp.wait_crash_handled(i + 1)
            assert rp.state == RUNNING and rp.gave_up is None
    short = CrashLoop(limit=2, window=0.0, backoff=0.0)  # every crash is later than the window
    with Rproc("late", ECHO_FW, config=RprocConfig(crash_loop=short)) as rp:
        for i in range(3):
            assert rp.pid is not None
            os.kill(rp.pid, signal.SIGKILL)
            rp.wait_crash_handled(i + 1)
            assert rp.state == RUNNING and rp.gave_up is None


def test_stop_wins_over_a_recovery_waiting_for_its_delay():
    before = snapshot()
    loop = CrashLoop(limit=10, window=3600.0, backoff=3600.0)  # crash #2 waits an hour
    rp = Rproc("waits", RAISES, config=RprocConfig(crash_loop=loop))
    rp.start()
    wait_for(lambda: rp.crash_count == 2 and rp.state == CRASHED, "crash #2 waiting for recovery")
    rp.stop(strict=True)  # joins the crash worker (ETIMEDOUT after 30 s if it still ran)
    assert (rp.state, rp.crash_count, rp.pid, rp.power) == (OFFLINE, 2, None, 0)
    assert rp.wait_crash_handled(timeout=0.1) is None  # nothing is left to recover it
    assert snapshot() == before


@pytest.mark.timeout(300)
def test_stop_always_wins_against_recovery_at_any_moment_of_a_crash_loop():
    """crash_loop=None: the core is rebooted at once after every crash, as Linux does,
    so stops land at every point: during a boot by recovery, while a crash is being
    handled, while the core process dies.  Each must leave the core offline, for good."""
    before = snapshot()
    rp = Rproc("race", RAISES, config=RprocConfig(crash_loop=None))
    for i in range(12):
        rp.start()
        target = rp.crash_count + i % 3  # stop at once, after one crash, after two
        wait_for(lambda: rp.crash_count >= target, f"crash #{target}")  # noqa: B023
        rp.stop(strict=True)
        count = rp.crash_count
        assert (rp.state, rp.pid, rp.power) == (OFFLINE, None, 0), f"round {i}"
        rp.wait_crash_handled(timeout=5)  # no worker left that could boot it
        assert rp.state == OFFLINE and rp.crash_count == count
    assert snapshot() == before


def test_the_state_never_reads_offline_while_the_core_is_being_recovered():
    """Recovery keeps the state ``crashed`` until its boot succeeded: whoever looks
    (status, stop, firmware) sees running or crashed, never a transient offline."""
    rp = Rproc("looks", RAISES, config=RprocConfig(crash_loop=None))
    seen: set[str] = set()
    done = threading.Event()

    def look() -> None:
        while not done.wait(0.0005):
            seen.add(rp.state)

    rp.start()
    watcher = threading.Thread(target=look)
    watcher.start()
    try:
        wait_for(lambda: rp.crash_count >= 6, "six crashes and recoveries")
        with pytest.raises(AmplinkError) as exc:
            rp.sysfs.firmware = ECHO_FW  # only offline: refused with the state it is in
        assert exc.value.errno == errno.EBUSY
        assert re.search(
            r"looks is (running|crashed): change firmware while offline", str(exc.value)
        )
    finally:
        done.set()
        watcher.join()
        rp.stop()
    assert seen <= {RUNNING, CRASHED} and CRASHED in seen


def test_a_crash_during_a_stop_is_ignored_and_the_core_stays_offline():
    """The core dies while stop() waits for its shutdown ACK: the stop finishes (the
    exit ends the wait), and the crash the exit reports is not recovered."""
    before = snapshot()
    rp = Rproc("dies", str(FW / "stalled.py"), config=RprocConfig(shutdown_timeout=120.0))
    rp.start()
    rp.wait_channel("rpmsg-openamp-demo-channel", 10)
    pid = rp.pid
    assert pid is not None
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            rp.stop(strict=True)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    stopper = threading.Thread(target=stop)
    stopper.start()
    wait_for(lambda: rp.last_stop == "reset", "the stop to begin its shutdown handshake")
    os.kill(pid, signal.SIGKILL)
    stopper.join(60)
    assert not stopper.is_alive() and errors == []
    assert (rp.state, rp.crash_count, rp.pid) == (OFFLINE, 0, None)
    assert rp.wait_crash_handled(timeout=5) is None
    assert snapshot() == before


def test_a_crash_note_reaches_the_log_without_terminal_escapes(caplog):
    """The host logs the core's traceback and puts its last line in the crash reason:
    control characters a hostile core wrote there are shown as U+FFFD, so no terminal
    obeys them (found by a hostile review)."""
    rp = Rproc("escapes", str(FW / "raises_escapes.py"), config=RprocConfig(crash_loop=None))
    rp.sysfs.recovery = "disabled"
    with caplog.at_level(logging.INFO, logger=RPROC_LOG):
        rp.start()
        rp.wait_crash_handled(1, timeout=60)
    try:
        assert rp.last_crash is not None and "boom" in rp.last_crash[1]
        logged = "".join(r.getMessage() for r in caplog.records)
        for text in (rp.last_crash[1], logged):
            assert not any(c in text for c in "\x1b\x07\r"), repr(text)
        assert "\ufffd[2J" in rp.last_crash[1]
    finally:
        rp.stop()


@pytest.mark.parametrize(
    ("firmware", "frames", "says"),
    [
        ("raises_chained.py", ["in main", "in read_setting"],
         ["KeyError: 'rate'", "direct cause", "RuntimeError: no rate configured"]),
        ("broken_import.py", ["in <module>"], ["ModuleNotFoundError"]),
    ],
)  # fmt: skip
def test_a_crash_at_start_shows_the_firmwares_frames_only(caplog, firmware, frames, says):
    """As Python hides runpy's frames: the traceback starts in the firmware (at import
    or in its main), amplink's loader frames are not shown, the chain is kept."""
    rp = Rproc("frames", str(FW / firmware), config=RprocConfig(recovery="disabled"))
    with caplog.at_level(logging.INFO, logger=RPROC_LOG):
        rp.start()
        rp.wait_crash_handled(1, timeout=60)
    rp.stop()
    (tb,) = messages(caplog, "Traceback")
    assert "amplink/remote/" not in tb, tb
    for text in frames + says:
        assert text in tb, (text, tb)
    shown = re.findall(r'File "([^"]+)", line \d+, in (\S+)', tb)
    assert shown[0][0] == str(FW / firmware), shown


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("odd-halt", "amplink_firmware.Halt: halted at start"),
        ("odd-unshowable", "amplink_firmware.Unshowable (its traceback could not be formatted)"),
    ],
)
def test_a_crash_at_start_is_reported_however_odd_its_exception(caplog, name, says):
    """A BaseException that is no Exception, and one whose traceback cannot be read, are
    crashes like any other: the crash note names them (hostile review: the first went
    to the core's stderr unreported, the second broke the note's formatting)."""
    fw = str(FW / "raises_oddly.py")
    rp = Rproc(name, fw, config=RprocConfig(recovery="disabled"))
    with caplog.at_level(logging.INFO, logger=RPROC_LOG):
        rp.start()
        rp.wait_crash_handled(1, timeout=60)
    rp.stop()
    assert any(says in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]
