"""Remote cores as real processes: boot, traffic, stop, death, and no leaks."""

import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import SimpleQueue

import pytest

from amplink.errors import AmplinkError, RpmsgError
from amplink.firmware import bench as fw
from amplink.host import RpmsgConfig, Rproc, RprocConfig
from amplink.mailbox import framework as mbox
from amplink.remoteproc.elf import FirmwareError
from amplink.remoteproc.process import ProcessPlatform
from amplink.remoteproc.states import CRASHED, OFFLINE, RUNNING
from amplink.rpmsg import core as rpmsg_core
from resources import children, snapshot
from rpmsg_helpers import send_in_thread
from waiting import wait_for

ECHO_FW = "amplink.firmware.echo"

SERVICE = "rpmsg-openamp-demo-channel"
FW = Path(__file__).parent / "firmware"


def test_echo_every_size_and_nothing_left_behind():
    before = snapshot()
    with Rproc("t0", ECHO_FW) as rp:
        assert rp.state == RUNNING
        assert rp.pid in children()
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        for size in range(1, 497):
            payload = os.urandom(size)
            ept.send(payload)
            assert ept.recv(10).data == payload
    assert rp.state == OFFLINE and rp.last_stop == "graceful shutdown"
    assert snapshot() == before


def test_start_stop_cycles_leave_nothing_behind():
    before = snapshot()
    rp = Rproc("cycle", ECHO_FW)
    for i in range(5):
        rp.start()
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        ept.send(b"cycle %d" % i)
        assert ept.recv(10).data == b"cycle %d" % i
        rp.stop()
        assert snapshot() == before
    rp.stop()  # idempotent


def test_start_twice_is_ebusy():
    with Rproc("busy", ECHO_FW) as rp:
        with pytest.raises(AmplinkError) as exc:
            rp.start()
        assert exc.value.errno == errno.EBUSY


def test_remote_killed_mid_traffic_fails_promptly(caplog):
    before = snapshot()
    rp = Rproc(
        "victim", ECHO_FW, config=RprocConfig(recovery=False), rpmsg=RpmsgConfig(send_timeout=60)
    )
    rp.start()
    try:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        ept.send(b"before")
        assert ept.recv(10).data == b"before"
        released = []
        ept.on_release(lambda e, why: released.append(why))
        with caplog.at_level(logging.ERROR):
            os.kill(rp.pid, signal.SIGKILL)
            with pytest.raises(RpmsgError) as exc:
                ept.recv(30)  # the release, not the timeout, must end this
        assert exc.value.errno == errno.EPIPE
        assert rp.state == CRASHED
        assert "killed by SIGKILL" in str(released[0])
        assert "crash detected in victim: type fatal error" in caplog.text
        with pytest.raises(RpmsgError) as exc:
            ept.send(b"after")
        assert exc.value.errno == errno.EPIPE
        assert rp.bus.devices() == []
    finally:
        rp.stop()
    assert snapshot() == before


def test_blocked_sender_released_when_remote_dies():
    rp = Rproc(
        "stalled",
        str(FW / "stalled.py"),
        config=RprocConfig(shutdown_timeout=0.2),
        rpmsg=RpmsgConfig(send_timeout=60),
    )
    with rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        for _ in range(256):
            ept.trysend(b"x")  # fills every TX buffer: the remote never consumes
        with pytest.raises(RpmsgError) as exc:
            ept.trysend(b"x")
        assert exc.value.errno == errno.ENOMEM
        t, outcome = send_in_thread(lambda: ept.send(b"waiting"))
        os.kill(rp.pid, signal.SIGKILL)
        t.join(30)
        assert not t.is_alive() and outcome == [errno.EPIPE]


def test_crashing_firmware_is_reported(caplog):
    with Rproc("crashy", str(FW / "crashing.py"), config=RprocConfig(recovery=False)) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        with caplog.at_level(logging.ERROR):
            ept.send(b"trigger")
            with pytest.raises(RpmsgError):
                ept.recv(30)
        assert rp.state == CRASHED
        assert rp.exit_code == 7
        assert "exit code 7" in caplog.text


def test_a_firmware_exit_with_a_message_shows_the_message_as_python_does(caplog):
    rp = Rproc("quits", str(FW / "exits_with_message.py"), config=RprocConfig(recovery=False))
    with caplog.at_level(logging.ERROR), rp:  # boots it
        rp.wait_crash_handled(1, timeout=60)
        assert rp.exit_code == 1  # as `python -c 'raise SystemExit("...")'` exits
        assert rp.last_crash == (
            "fatal error",
            "the core process exited (exit code 1): fatal: no sensor on I2C bus 2",
        )
    assert "fatal: no sensor on I2C bus 2" in caplog.text


def test_firmware_that_dies_at_start_fails_wait_channel_at_once():
    with Rproc(
        "badimport",
        str(FW / "broken_import.py"),
        config=RprocConfig(boot_timeout=60, recovery=False),
    ) as rp:
        with pytest.raises(RpmsgError) as exc:
            rp.wait_channel(SERVICE)  # would wait 60 s if death were not noticed
        assert exc.value.errno == errno.EPIPE
        assert rp.exit_code == 1


def test_firmware_that_exits_at_import_is_reported_as_such(caplog):
    """sys.exit() while the program is imported: the crash says so, with the status
    it gave, as a raise at import would (not as a missing main, not a bare exit)."""
    with (
        caplog.at_level(logging.ERROR),
        Rproc(
            "exits",
            str(FW / "exits_at_import.py"),
            config=RprocConfig(boot_timeout=60, recovery=False),
        ) as rp,
    ):
        with pytest.raises(RpmsgError) as exc:
            rp.wait_channel(SERVICE)
        assert exc.value.errno == errno.EPIPE
        rp.wait_crash_handled(1, timeout=30)
        assert "called sys.exit(3) while it was imported" in rp.last_crash[1], rp.last_crash
    assert 'exits_at_import.py", line 6, in <module>' in caplog.text  # where it exited


def test_firmware_without_main_is_refused_before_a_process_starts(tmp_path):
    program = tmp_path / "nomain.py"
    program.write_text('"""No main()."""\n')
    before = snapshot()
    rp = Rproc("nomain", str(program))
    with pytest.raises(FirmwareError) as exc:
        rp.start()
    assert exc.value.errno == errno.ENOEXEC and f"{program} defines no main(core)" in str(exc.value)
    assert rp.state == OFFLINE and snapshot() == before


def test_a_core_outlives_the_thread_that_started_it():
    """A core started from a thread that then ends (a control request's worker, say)
    keeps running: the death signal a core takes from its parent follows the thread
    that forked it, so cores are forked by one thread that lives as long as the host."""
    with Rproc("orphan", ECHO_FW) as rp:
        rp.stop()

        def start() -> None:
            rp.start()
            rp.wait_channel(SERVICE, 10)  # the core runs its firmware: it set its signal

        starter = threading.Thread(target=start)
        starter.start()
        starter.join(30)
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        for i in range(20):  # long after the starter thread ended
            ept.send(b"%d" % i)
            assert ept.recv(10).data == b"%d" % i
        assert rp.state == RUNNING and rp.crash_count == 0


def test_spinning_is_off_when_both_sides_share_one_cpu():
    cpu = min(os.sched_getaffinity(0))
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        with Rproc("samecpu", ECHO_FW, config=RprocConfig(cpu=cpu)) as rp:
            assert rp.link is not None and not rp.link.spin.enabled
            ept = rp.wait_channel(SERVICE, 10).create_ept()
            for i in range(50):
                ept.send(b"%d" % i)
                assert ept.recv(10).data == b"%d" % i
            assert rp.link.spin.hits == rp.link.spin.misses == 0
    finally:
        os.sched_setaffinity(0, saved)


@pytest.mark.parametrize("delivery", ["thread", "workqueue"])
def test_kicks_travel_through_the_mailbox_both_ways(delivery):
    """Without spinning every message needs a kick: host -> MU -> core's interrupt,
    core -> MU -> host's interrupt -> IRQ thread (or a workqueue) -> vrings."""
    before = snapshot()
    with Rproc(
        f"kick-{delivery}", ECHO_FW, config=RprocConfig(spin=False, delivery=delivery)
    ) as rp:
        path = rp.platform.kick_path
        names = {t.name for t in threading.enumerate()}
        assert {f"irq/32-kick-{delivery}-mua_chan[0-0]", f"irq/33-kick-{delivery}-wdog"} <= names
        assert (f"kworker/kick-{delivery}-rproc:0" in names) == (delivery == "workqueue")
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        line = path.domain.line(32)
        taken = line.count
        for i in range(100):
            ept.send(b"%d" % i)
            assert ept.recv(10).data == b"%d" % i
        kicks = path.kicks
        # Every send asked for a kick; one that found a kick for the same vring still
        # queued (not yet on the MU) was merged into it, which is correct and rare.
        assert kicks.sent + kicks.coalesced >= 100 and kicks.sent > 0
        # The host never polls (spin off): each reply came by interrupt and IRQ thread.
        assert line.count > taken and line.threads_handled > 0
    assert snapshot() == before


def _switches(pid: int, prefix: str, kind: str = "voluntary") -> dict[int, int]:
    """Per thread of ``pid`` whose name starts with ``prefix``: how often it slept
    (``kind`` "voluntary") or was preempted ("nonvoluntary")."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().startswith(prefix):
            for line in (task / "status").read_text().splitlines():
                if line.startswith(f"{kind}_ctxt_switches:"):
                    found[int(task.name)] = int(line.split()[1])
    return found


def _preempted(pid: int, tid: int) -> int:
    """How often thread ``tid`` of ``pid`` lost its CPU while it could run."""
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("nonvoluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no nonvoluntary_ctxt_switches for {pid}/{tid}")


def test_a_blocking_round_trip_wakes_no_thread_but_the_two_waiters():
    """Spinning off: the thread in recv() takes the core's kick itself (the MU's
    primary, the RX channel's thread function, the vring) and the core's event loop
    takes the host's, so neither side's dispatcher nor IRQ threads wake: one wake-up
    per side and message, as with a Pipe.  A waiter that a busy machine preempts
    between two waits misses the interrupt that comes meanwhile (the dispatcher and an
    IRQ thread take it: up to three wake-ups), so those are allowed for."""
    rounds = 200
    with Rproc("taker", ECHO_FW, config=RprocConfig(spin=False)) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        pid = rp.platform.pid
        assert pid is not None
        for i in range(10):
            ept.send(b"%d" % i)
            assert ept.recv(10).data == b"%d" % i
        host = _switches(os.getpid(), "irq")
        core = _switches(pid, "irq")
        assert host and core  # the dispatchers and IRQ threads exist
        line = rp.platform.kick_path.domain.line(32)
        count, taken = line.count, line.taken
        waiters = ((os.getpid(), threading.get_native_id()), (pid, pid))
        preempted = [_preempted(*w) for w in waiters]
        for i in range(rounds):
            ept.send(b"%d" % i)
            assert ept.recv(10).data == b"%d" % i
        preempted = [_preempted(*w) - n for w, n in zip(waiters, preempted, strict=True)]
        # Before, every round trip woke the host's dispatcher and IRQ thread (two
        # wake-ups) and the core's dispatcher (one).  A reply that comes before the
        # host's recv() sleeps, or a kick before the core's loop sleeps, still does.
        for side, pid_, before, limit in (
            ("host", os.getpid(), host, rounds // 2 + 3 * preempted[0]),
            ("core", pid, core, rounds // 4 + 3 * preempted[1]),
        ):
            after = _switches(pid_, "irq")
            woken = sum(after[tid] - n for tid, n in before.items())
            assert woken < limit, (
                f"{side}'s interrupt threads woke {woken} times ({preempted} preemptions, "
                f"host dispatcher took {line.count - count - line.taken + taken}) "
                f"{ {tid: after[tid] - n for tid, n in before.items()} }"
            )


def _spy_asks(link) -> list[bool]:
    """Wrap ``link``'s take: one entry per take, whether it was an asking send's."""
    take = link.take_notifications
    asks: list[bool] = []

    def spy(fds, timeout, ready, start=None):
        asks.append(start is not None)
        return take(fds, timeout, ready, start)

    link.take_notifications = spy
    return asks


def _arm(ept, question: bytes | None = None) -> None:
    """Round trips until a recv() slept right after its send (it nearly always does
    with spinning off; a reply that beat the recv() to the queue does not arm); an
    echo's, or ``question``'s (answered once)."""
    for i in range(50):
        ept.send(question or b"arm %d" % i)
        answer = ept.recv(10).data
        assert question or answer == b"arm %d" % i
        if ept._asks:
            return
    raise AssertionError("no recv() slept after its send in 50 round trips")


def test_a_plain_send_then_recv_asks_and_the_waiter_takes_every_answer(monkeypatch):
    """Spinning off, ``send(); recv()``: once a recv() slept right after the send, the
    next sends go out from inside the waiter's own take of the MU's line (start=), which
    waits for the answer (ASK_WAIT, made long here so that a loaded machine cannot end
    it first): the answer is queued when send() returns, and no answer goes through the
    dispatcher and an IRQ thread (before: up to half of them unpinned)."""
    monkeypatch.setattr(rpmsg_core, "ASK_WAIT", 30.0)
    with Rproc("ask", ECHO_FW, config=RprocConfig(spin=False)) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        asks = _spy_asks(ept.link)
        _arm(ept)
        line = rp.platform.kick_path.domain.line(32)
        count, taken, took = line.count, line.taken, len(asks)
        for i in range(20):
            ept.send(b"%d" % i)
            assert ept.pending() == 1  # the answer came while the send waited for it
            assert ept.recv(10).data == b"%d" % i
        assert asks[took:] == [True] * 20  # every send asked; no recv() had to take
        assert line.count - count == line.taken - taken >= 20  # all the waiter's


def test_a_question_with_no_answer_in_time_ends_asking(monkeypatch):
    """The bench firmware's sink answers only ``DONE``: the send after that answer asks,
    waits ASK_WAIT for nothing, and ends asking (the next send is a plain one).  (A
    question whose take found the line busy in another thread goes out plainly and
    asking goes on, as it does when a notification that is no answer ends the wait:
    then the test asks again.)"""
    monkeypatch.setattr(rpmsg_core, "ASK_WAIT", 0.05)
    with Rproc("ask-sink", "amplink.firmware.bench", config=RprocConfig(spin=False)) as rp:
        sink = rp.wait_channel(fw.SINK, 10).create_ept()
        asks = _spy_asks(sink.link)
        for _ in range(10):
            _arm(sink, fw.DONE)
            took = len(asks)
            sink.send(b"unanswered")
            assert asks[took:] == [True] and not sink.pending()
            if not sink._asks:
                break
        else:
            raise AssertionError("no unanswered question ended asking in 10 tries")
        sink.send(b"plain")
        assert asks[took:] == [True]
        sink.send(fw.DONE)
        assert fw.COUNTS.unpack(sink.recv(10).data) == (2, len(b"unanswered" + b"plain"))


def test_asking_ends_with_a_stream_and_is_only_the_asking_threads(monkeypatch):
    """A second send before a recv() (a stream) sends plainly and ends asking; another
    thread's send never asks (its answer is for the thread that waits); a link that
    spins never asks (its recv() polls the ring)."""
    monkeypatch.setattr(rpmsg_core, "ASK_WAIT", 30.0)
    with Rproc("ask-stream", ECHO_FW, config=RprocConfig(spin=False)) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        asks = _spy_asks(ept.link)
        _arm(ept)
        took = len(asks)
        other = threading.Thread(target=ept.send, args=(b"other",))
        other.start()
        other.join(10)
        assert ept.recv(10).data == b"other"
        assert len(asks) - took <= 1 and True not in asks[took:]  # (the recv may take)
        took = len(asks)
        ept.send(b"1")
        ept.send(b"2")  # a stream: plain, and asking ends
        assert asks[took] is True and not ept._asks
        assert [ept.recv(10).data for _ in range(2)] == [b"1", b"2"]
    with Rproc("ask-spin", ECHO_FW, config=RprocConfig(spin=True)) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        asks = _spy_asks(ept.link)
        for i in range(50):
            ept.send(b"%d" % i)
            assert ept.recv(10).data == b"%d" % i
        assert True not in asks and not ept._asks


def test_an_asking_send_that_must_wait_for_a_buffer_waits_outside_the_take():
    """An asking send takes the MU's line only to send at once: with no send buffer free
    it hands the line back and waits as a plain send, so that a Ctrl-C ends the wait at
    once (inside the take it was held until a buffer came: here the core's stall)."""
    stall = 6.0
    config = RprocConfig(spin=False, graceful_shutdown=False)
    with Rproc("ask-full", str(FW / "stalling_echo.py"), config=config) as rp:
        channel = rp.wait_channel(SERVICE, 10)
        ept, other = channel.create_ept(), channel.create_ept()
        _arm(ept)
        other.send(b"stall:%g" % stall)
        assert other.recv(10).data == b"stalling"  # earlier buffers are all back
        with pytest.raises(RpmsgError) as full:
            for _ in range(10_000):  # the core reads nothing now: its ring fills
                other.trysend(b"fill")
        assert full.value.errno == errno.ENOMEM
        asks = _spy_asks(ept.link)
        main = threading.get_ident()

        def interrupt_the_wait() -> None:
            wait_for(lambda: ept.link._tx_waiters, timeout=stall)
            signal.pthread_kill(main, signal.SIGINT)

        t = threading.Thread(target=interrupt_the_wait)
        t.start()
        t0 = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                ept.send(b"question")
            assert time.monotonic() - t0 < stall / 2  # not when the core read again
        finally:
            t.join()
        # It asked (that take found no buffer and let go); its wait took the line after,
        # as a blocked sender's does, asking nothing
        assert asks[0] is True and True not in asks[1:]
        ept.send(b"after")  # the channel works on, once the core reads again
        assert ept.recv(stall + 10).data == b"after"


def test_mailbox_channels_beside_the_kick_channel_cross_processes():
    """The bench firmware echoes words on MU data channel 1 from its interrupt handler."""
    with Rproc("mbox", "amplink.firmware.bench") as rp:
        rp.wait_channel(fw.ECHO, 10)
        got = SimpleQueue()
        cl = fw.mbox_echo_client(rp.platform.kick_path.controller.dev, "t", lambda c, w: got.put(w))
        tx = mbox.request_channel_byname(cl, "tx")
        mbox.request_channel_byname(cl, "rx")
        with pytest.raises(AmplinkError) as exc:  # the kick channel is taken
            mbox.request_channel(
                mbox.MboxClient("x", mboxes=((rp.platform.kick_path.controller.dev, 0, 0),)), 0
            )
        assert exc.value.errno == errno.EBUSY
        for word in (0, 1, 0xFFFF_FFFF, 12345):
            mbox.send_message(tx, word)
            assert got.get(timeout=10) == word


@pytest.mark.parametrize(
    ("seed", "backend", "spin"),
    [(1, "virtio", "nospin"), (2, "glink", "nospin"), (3, "virtio", "spin"), (4, "glink", "spin")],
)
def test_ctrl_c_at_random_moments_in_recv_leaves_the_channel_working(seed, backend, spin):
    """SIGINT strikes a main thread in send() and recv() between any two bytecodes (300
    times in a real program): a Ctrl-C that comes while it runs the MU's handlers (spin
    off: it takes the core's interrupt), a ring update and its kick, a batch drained
    off the ring (spinning), an intent taken and written, is held until the section
    is done (amplink.irq.held_signals), so no event stays masked at the MU, no line
    stays taken, no kick or buffer or intent is lost; one that comes while it waits
    ends the wait; every lock is taken by `with`, so none stays held; the channel
    works on, and says nothing (no intent is given back after it was written)."""
    program = Path(__file__).parent / "ctrl_c_program.py"
    path = [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    with subprocess.Popen(
        [sys.executable, str(program), "300", str(seed), backend, spin],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    ) as proc:  # fmt: skip
        try:
            out = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            proc.kill()  # a hang: its cores die with it (die_with_parent)
            out = proc.communicate()[0] + "\n(hung for 60 s)"
    lines = out.splitlines()
    assert proc.returncode == 0 and len(lines) == 1 and lines[0].startswith("OK"), out


def test_recv_honours_its_timeout_while_another_endpoints_callback_is_slow():
    """A recv() that takes the MU's line runs no receive callback: the message for the
    slow one is left to the link's worker, so recv() times out in time."""
    with Rproc("slow-callback", ECHO_FW, config=RprocConfig(spin=False)) as rp:
        channel = rp.wait_channel(SERVICE, 10)
        waiting = channel.create_ept()
        entered, release = threading.Event(), threading.Event()
        other = channel.create_ept(callback=lambda *_: (entered.set(), release.wait(6)))
        platform = rp.platform
        assert isinstance(platform, ProcessPlatform) and platform.kick_path is not None
        domain, irq = platform.kick_path.domain, platform.mailbox.host_irq

        def send_once_taken() -> None:  # the echo comes while recv() takes the line
            wait_for(lambda: irq in domain._taken, "recv() to take the MU's line")
            other.send(b"for the slow callback")

        sender = threading.Thread(target=send_once_taken)
        sender.start()
        t0 = time.monotonic()
        with pytest.raises(RpmsgError) as exc:
            waiting.recv(0.5)
        elapsed = time.monotonic() - t0
        release.set()
        sender.join(10)
        assert entered.wait(10)
        assert exc.value.errno == errno.ETIMEDOUT
        assert elapsed < 3, f"recv(0.5) returned after {elapsed:.1f} s"


def test_stop_from_a_receive_callback_is_edeadlk_not_a_hang():
    """A stop waits for the receive callbacks to return; one called from a callback
    (in the IRQ thread, or in a thread that took the interrupt in recv()) would wait
    for itself for ever: EDEADLK, and the core can still be stopped from elsewhere."""
    before = snapshot()
    errors: SimpleQueue = SimpleQueue()

    with Rproc("stop-in-cb", ECHO_FW, config=RprocConfig(spin=False)) as rp:
        channel = rp.wait_channel(SERVICE, 10)

        def stop_here(ept, data, src):
            for call in (rp.stop, rp.shutdown, rp.detach):
                try:
                    call()
                except AmplinkError as exc:
                    errors.put(exc.errno)

        ept = channel.create_ept(callback=stop_here)
        waiter = channel.create_ept()
        ept.send(b"stop please")
        waiter.send(b"and me")  # a recv() that takes the line runs the callback too
        assert waiter.recv(10).data == b"and me"
        assert [errors.get(timeout=10) for _ in range(3)] == [errno.EDEADLK] * 3
        assert rp.state == RUNNING
    assert snapshot() == before


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ({"cpu": -1}, "RprocConfig.cpu = -1: not a CPU of this machine"),
        ({"cpu": os.cpu_count()}, f"RprocConfig.cpu = {os.cpu_count()}: not a CPU"),
        ({"spin": "yes"}, "RprocConfig.spin = 'yes': not True, False or None"),
    ],
)
def test_a_setting_no_core_could_run_with_is_refused_before_a_start(setting, says):
    """Not a core that starts, fails to pin itself and is reported crashed."""
    with pytest.raises(AmplinkError) as info:
        RprocConfig(**setting)
    assert info.value.errno == errno.EINVAL and says in str(info.value)


def test_a_negative_timeout_is_einval_and_zero_is_a_poll():
    with Rproc("timeouts", ECHO_FW) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        for call in (lambda: ept.recv(-1), lambda: rp.wait_channel(SERVICE, -0.5)):
            with pytest.raises(RpmsgError) as exc:
                call()
            assert exc.value.errno == errno.EINVAL and "timeout must be >= 0" in str(exc.value)
        with pytest.raises(RpmsgError) as exc:
            ept.recv(0)
        assert exc.value.errno == errno.ETIMEDOUT
