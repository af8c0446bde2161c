"""The interrupt core: request rules, threads, ONESHOT, sharing, storms, the workqueue."""

import errno
import fcntl
import logging
import os
import signal
import termios
import threading
import time
from queue import SimpleQueue

import pytest

from amplink.errors import IrqError
from amplink.irq import (
    IRQ_HANDLED,
    IRQ_NONE,
    IRQ_NOTCONNECTED,
    IRQ_WAKE_THREAD,
    IRQF_ONESHOT,
    IRQF_SHARED,
    IRQF_TRIGGER_HIGH,
    IRQF_TRIGGER_RISING,
    SpuriousPolicy,
    Work,
    Workqueue,
)
from amplink.irq.line import shared_line_fds
from irq_helpers import LevelDevice, LogEvent, started
from resources import snapshot
from waiting import wait_for

QUICK = SpuriousPolicy(window=1000, threshold=990)


@pytest.fixture
def domain():
    before = snapshot()
    d = started(spurious=QUICK)
    yield d
    d.close()
    assert snapshot() == before


def _silencing_primary(dev):
    """A threaded driver's primary: silence the device, let the thread do the work."""

    def primary(irq, dev_id):
        if not dev.asserted:
            return IRQ_NONE
        dev.ack()
        return IRQ_WAKE_THREAD

    return primary


def _ack_handler(dev, calls):
    def handler(irq, dev_id):
        if not dev.asserted:
            return IRQ_NONE
        dev.ack()
        calls.put((irq, dev_id, threading.current_thread().name))
        return IRQ_HANDLED

    return handler


# -- request rules --------------------------------------------------------------------
def test_request_errors(domain, caplog):
    domain.add_line(1)
    nop = lambda irq, dev: IRQ_HANDLED  # noqa: E731
    cases = [
        (dict(irq=99, handler=nop, thread_fn=None), errno.EINVAL),
        (dict(irq=IRQ_NOTCONNECTED, handler=nop, thread_fn=None), errno.ENOTCONN),
        (dict(irq=1, handler=None, thread_fn=None), errno.EINVAL),
        (dict(irq=1, handler=nop, thread_fn=None, flags=IRQF_SHARED), errno.EINVAL),
    ]
    for kw, code in cases:
        with pytest.raises(IrqError) as exc:
            domain.request_threaded_irq(**kw)
        assert exc.value.errno == code, kw
    with caplog.at_level(logging.ERROR), pytest.raises(IrqError) as exc:
        domain.request_threaded_irq(1, None, nop, 0, "nooneshot")
    assert exc.value.errno == errno.EINVAL
    assert "without IRQF_ONESHOT" in caplog.text
    assert domain.line(1).actions == ()


def test_sharing_rules(domain, caplog):
    domain.add_line(1)
    nop = lambda irq, dev: IRQ_NONE  # noqa: E731
    domain.request_threaded_irq(1, nop, None, IRQF_SHARED, "first", "a")
    for flags in (0, IRQF_SHARED | IRQF_ONESHOT, IRQF_SHARED | IRQF_TRIGGER_RISING):
        with caplog.at_level(logging.ERROR), pytest.raises(IrqError) as exc:
            domain.request_threaded_irq(1, nop, None, flags, "second", "b")
        assert exc.value.errno == errno.EBUSY
    assert "flags mismatch irq 1" in caplog.text
    domain.request_threaded_irq(1, nop, None, IRQF_SHARED, "second", "b")
    assert [a.name for a in domain.line(1).actions] == ["first", "second"]
    # request_irq adopts a sharer's ONESHOT (IRQF_COND_ONESHOT)
    domain.add_line(2)
    domain.request_threaded_irq(2, None, nop, IRQF_SHARED | IRQF_ONESHOT, "t", "a")
    action = domain.request_irq(2, nop, IRQF_SHARED, "plain", "b")
    assert action.flags & IRQF_ONESHOT
    assert domain.free_irq(1, "a") == "first"
    assert domain.free_irq(1, "a") is None  # already free: a warning, not an error


# -- delivery -------------------------------------------------------------------------
def test_level_line_primary_and_thread_named_like_linux(domain):
    dev = LevelDevice(domain.add_line(5))
    calls = SimpleQueue()

    def thread_fn(irq, dev_id):
        calls.put((irq, dev_id, threading.current_thread().name))
        return IRQ_HANDLED

    action = domain.request_threaded_irq(
        5, _silencing_primary(dev), thread_fn, 0, "mydev", "cookie"
    )
    assert "irq/5-mydev" in [t.name for t in threading.enumerate()]
    with open(f"/proc/self/task/{action.thread.native_id}/comm") as f:
        assert f.read().strip() == "irq/5-mydev"
    for _ in range(3):
        dev.fire()
        assert calls.get(timeout=5) == (5, "cookie", "irq/5-mydev")
    domain.free_irq(5, "cookie")
    assert "irq/5-mydev" not in [t.name for t in threading.enumerate()]


def test_oneshot_keeps_the_shared_line_masked_until_the_thread_is_done(domain):
    line = domain.add_line(3)
    slow, other = LevelDevice(line), LevelDevice(line)
    release = threading.Event()
    in_thread = threading.Event()
    served = SimpleQueue()

    def slow_primary(irq, dev_id):
        if not slow.asserted:
            return IRQ_NONE
        slow.ack()
        return IRQ_WAKE_THREAD

    def slow_thread(irq, dev_id):
        in_thread.set()
        release.wait(10)
        return IRQ_HANDLED

    other_primary = _ack_handler(other, served)
    pass_done = threading.Event()

    def other_primary_then_mark(irq, dev_id):
        result = other_primary(irq, dev_id)
        pass_done.set()
        return result

    flags = IRQF_SHARED | IRQF_ONESHOT
    domain.request_threaded_irq(3, slow_primary, slow_thread, flags, "slow", "slow")
    domain.request_threaded_irq(3, other_primary_then_mark, None, flags, "other", "other")
    slow.fire()
    assert in_thread.wait(5)
    assert line.masked
    # A device that asserts while the first pass over the shared handlers is still running is
    # served by that pass (as in Linux's handle_level_irq): fire only after the pass is over.
    assert pass_done.wait(5)
    other.fire()
    # The other device is not served while the ONESHOT thread runs...
    with pytest.raises(Exception):  # noqa: B017 - queue.Empty
        served.get(timeout=0.2)
    release.set()
    # ...and is served as soon as it finishes and the line is unmasked.
    assert served.get(timeout=5)[1] == "other"
    assert domain.synchronize_irq(3, 5)
    assert not line.masked


def test_edge_while_disabled_is_replayed_and_disable_nests(domain, caplog):
    line = domain.add_line(7, trigger=IRQF_TRIGGER_RISING)
    calls = SimpleQueue()
    domain.request_irq(7, lambda irq, d: calls.put(irq) or IRQ_HANDLED, 0, "edge", None)
    domain.disable_irq(7)
    domain.disable_irq(7)
    line.wire.pulse()
    domain.enable_irq(7)
    with pytest.raises(Exception):  # noqa: B017 - still disabled once
        calls.get(timeout=0.2)
    domain.enable_irq(7)
    assert calls.get(timeout=5) == 7  # the edge that came while disabled
    with caplog.at_level(logging.WARNING):
        domain.enable_irq(7)
    assert "unbalanced enable for irq 7" in caplog.text
    line.wire.pulse()
    assert calls.get(timeout=5) == 7
    domain.mask_irq(7)  # the controller-level mask behaves like a disable for edges
    line.wire.pulse()
    with pytest.raises(Exception):  # noqa: B017 - queue.Empty
        calls.get(timeout=0.2)
    domain.unmask_irq(7)
    assert calls.get(timeout=5) == 7


def test_synchronize_and_free_from_own_thread(domain):
    dev = LevelDevice(domain.add_line(4))
    release, running = threading.Event(), threading.Event()
    errors = SimpleQueue()

    def thread_fn(irq, dev_id):
        running.set()
        try:
            domain.free_irq(4, "me")
        except IrqError as exc:
            errors.put(exc.errno)
        release.wait(10)
        return IRQ_HANDLED

    domain.request_threaded_irq(4, _silencing_primary(dev), thread_fn, 0, "self", "me")
    dev.fire()
    assert running.wait(5)
    assert errors.get(timeout=5) == errno.EDEADLK
    assert not domain.synchronize_irq(4, 0.1)  # the thread is still running
    release.set()
    assert domain.synchronize_irq(4, 5)


def test_rt_priority_and_fallback(caplog):
    before = snapshot()
    for prio, fifo in ((10, True), (1000, False)):
        d = started("rt", rt_priority=prio)
        d.add_line(1)
        with caplog.at_level(logging.WARNING):
            action = d.request_threaded_irq(1, None, lambda i, x: IRQ_HANDLED, IRQF_ONESHOT, "rt")
        policy = os.sched_getscheduler(action.thread.native_id)
        assert (policy == os.SCHED_FIFO) == fifo
        d.close()
    assert "cannot run irq threads SCHED_FIFO priority 1000" in caplog.text
    assert snapshot() == before


# -- storms ---------------------------------------------------------------------------
def test_nobody_cared_disables_the_stuck_line_only(domain):
    stuck = LevelDevice(domain.add_line(9))
    ok = LevelDevice(domain.add_line(10))
    served = SimpleQueue()
    domain.request_irq(9, lambda irq, d: IRQ_NONE, 0, "deaf", None)  # never clears it
    domain.request_irq(10, _ack_handler(ok, served), 0, "fine", None)
    with LogEvent("nobody cared") as seen:
        stuck.fire()
        assert seen.event.wait(30)
    assert "irq 9: nobody cared" in seen.messages[-1] and "deaf" in seen.messages[-1]
    line = domain.line(9)
    assert line.spurious_disabled and line.depth == 1
    assert line.count >= QUICK.window
    count = line.count
    ok.fire()
    assert served.get(timeout=5)[0] == 10  # the other line still works
    assert domain.line(9).count == count  # and the stuck one is no longer taken


def test_pulses_with_nothing_pending_are_a_storm_and_a_disabled_line_is_not_read(domain):
    """A peer that pulses a level line in a loop with no event pending: each pulse is
    an interrupt nobody handled, the line is disabled like a stuck one, and its
    descriptor is no longer read (the storm costs the dispatcher nothing any more)."""
    owner, pulser = shared_line_fds()
    line = domain.add_line(13, fd=owner)
    line.add_source(lambda: False)  # its device never asserts it
    ok = LevelDevice(domain.add_line(14))
    served = SimpleQueue()
    domain.request_irq(13, lambda irq, d: IRQ_NONE, 0, "quiet", None)
    domain.request_irq(14, _ack_handler(ok, served), 0, "fine", None)
    stop = threading.Event()

    def storm():
        while not stop.is_set():
            try:
                os.write(pulser, b"\1" * 8)
            except BlockingIOError:
                stop.wait(0.001)

    t = threading.Thread(target=storm)
    try:
        with LogEvent("nobody cared") as seen:
            t.start()
            assert seen.event.wait(60)
        assert "irq 13: nobody cared" in seen.messages[-1] and "quiet" in seen.messages[-1]
        assert line.spurious_disabled and line.depth == 1
        assert line.count == 0  # (no handler ever ran: nothing was pending)
        # Nobody reads the line now: the pulses fill its pipe.
        wait_for(lambda: _unread(owner) >= 4096, "the disabled line's pulses to pile up")
        ok.fire()
        assert served.get(timeout=5)[0] == 14  # the other line still works
        assert domain.take_while_waiting(13, (), 0.01) is None  # nor is it taken
    finally:
        stop.set()
        t.join()
        os.close(pulser)
    domain.enable_irq(13)  # enabled again: read again
    wait_for(lambda: _unread(owner) == 0, "the enabled line's descriptor to be read")
    assert not line.spurious_disabled


def _unread(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, "little")


def test_threaded_storm_is_judged_by_thread_results(domain):
    """A primary that only wakes a thread which handles nothing is a storm too."""
    dev = LevelDevice(domain.add_line(11))
    domain.request_threaded_irq(11, None, lambda i, d: IRQ_NONE, IRQF_ONESHOT, "lazy", None)
    with LogEvent("nobody cared") as seen:
        dev.fire()
        assert seen.event.wait(30)
    assert domain.line(11).spurious_disabled


def test_bogus_return_value_is_reported(domain):
    dev = LevelDevice(domain.add_line(12))
    served = SimpleQueue()

    def handler(irq, dev_id):
        dev.ack()
        served.put(1)
        return 7

    domain.request_irq(12, handler, 0, "bogus", None)
    with LogEvent("bogus return value") as seen:
        dev.fire()
        assert seen.event.wait(5)
    assert served.get(timeout=5) == 1


# -- workqueue ------------------------------------------------------------------------
def test_workqueue_pending_flush_and_destroy():
    before = snapshot()
    wq = Workqueue("tq", max_active=2)
    assert {"kworker/tq:0", "kworker/tq:1"} <= {t.name for t in threading.enumerate()}
    gate = threading.Event()
    ran = SimpleQueue()
    blocker = Work(lambda: gate.wait(10), "blocker")
    blocker2 = Work(lambda: gate.wait(10), "blocker2")
    work = Work(lambda: ran.put(threading.current_thread().name), "w")
    assert wq.queue_work(blocker) and wq.queue_work(blocker2)
    assert wq.queue_work(work)
    assert not wq.queue_work(work)  # already pending: not queued twice
    assert not wq.flush(0.1)
    gate.set()
    assert wq.flush(5)
    assert ran.get(timeout=1).startswith("kworker/tq:")
    assert ran.empty()
    wq.destroy()
    with pytest.raises(RuntimeError):
        wq.queue_work(work)
    assert snapshot() == before


def test_level_trigger_default_and_line_repr(domain):
    line = domain.add_line(20)
    assert line.trigger == IRQF_TRIGGER_HIGH and not line.edge
    with pytest.raises(IrqError) as exc:
        domain.add_line(20)
    assert exc.value.errno == errno.EEXIST
    fd = os.eventfd(0)
    with pytest.raises(IrqError):
        domain.add_line(21, fd=fd, counter=False)  # a fd readable for ever must be edge
    os.close(fd)


# -- a thread that takes a line's interrupts while it waits ----------------------------
def _fire_once_taken(domain, dev):
    """Fire ``dev`` from another thread as soon as its line is taken."""
    irq = dev.line.irq

    def fire():
        wait_for(lambda: irq in domain._taken, f"a thread to take line {irq}")
        dev.fire()

    t = threading.Thread(target=fire)
    t.start()
    return t


def _threaded_device(domain, irq, name="taken"):
    """A level device whose primary silences it and whose thread records where it ran."""
    dev = LevelDevice(domain.add_line(irq))
    ran = SimpleQueue()
    dev.ran_fd = os.eventfd(0, os.EFD_NONBLOCK)  # readable once the thread function ran

    def primary(irq_, dev_id):
        if not dev.asserted:
            return IRQ_NONE
        dev.ack()
        ran.put(("primary", threading.get_ident(), domain.in_hardirq()))
        return IRQ_WAKE_THREAD

    def thread_fn(irq_, dev_id):
        ran.put(("thread", threading.get_ident(), domain.in_hardirq()))
        os.eventfd_write(dev.ran_fd, 1)
        return IRQ_HANDLED

    action = domain.request_threaded_irq(irq, primary, thread_fn, 0, name, dev)
    return dev, ran, action


def test_a_waiting_thread_takes_the_line_itself_and_gives_it_back(domain):
    dev, ran, action = _threaded_device(domain, 6)
    done = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        me = threading.get_ident()
        assert domain.take_while_waiting(6, [done], 0.01) is False  # nothing came
        firing = _fire_once_taken(domain, dev)
        assert domain.take_while_waiting(6, [dev.ran_fd], 30) is True
        firing.join(5)
        assert ran.get_nowait() == ("primary", me, True)
        assert ran.get_nowait() == ("thread", me, False)
        os.eventfd_read(dev.ran_fd)
        os.eventfd_write(done, 1)
        assert domain.take_while_waiting(6, [done], 5) is True
        assert action.line.count == 1
        # Given back: the dispatcher and the action's thread take it again.
        dev.fire()
        kind, ident, _ = ran.get(timeout=5)
        assert (kind, ident) == ("primary", domain._dispatcher.ident)
        assert ran.get(timeout=5)[1] == action.thread._thread.ident
    finally:
        os.close(done)
        os.close(dev.ran_fd)


def _dispatcher_idle(domain):
    """Wait until the dispatcher has nothing left to look at (the replay of a request
    included) and sleeps in epoll_wait (x86-64 232, epoll_pwait 281)."""
    tid = domain._dispatcher.native_id

    def sleeping():
        with open(f"/proc/self/task/{tid}/syscall") as f:
            return not domain._replay and f.read().split()[0] in ("232", "281")

    wait_for(sleeping, "the dispatcher to sleep in epoll_wait")


def test_start_runs_once_the_line_is_taken_so_the_answer_cannot_go_to_the_dispatcher(domain):
    """What makes the device answer (``start``) goes out after the waiter took the
    line: the interrupt it raises at once is the waiter's, never the dispatcher's."""
    dev, ran, action = _threaded_device(domain, 6)
    me = threading.get_ident()
    started = []

    def start():
        started.append(6 in domain._taken)
        dev.fire()  # the answer comes before the waiter even sleeps

    try:
        _dispatcher_idle(domain)  # (the request's replay could take the first answer)
        for _ in range(20):
            assert domain.take_while_waiting(6, [dev.ran_fd], 30, None, start) is True
            os.eventfd_read(dev.ran_fd)
            assert ran.get_nowait() == ("primary", me, True)
            assert ran.get_nowait() == ("thread", me, False)
        assert started == [True] * 20
        assert action.line.taken == action.line.count == 20
    finally:
        os.close(dev.ran_fd)


def test_start_is_not_called_when_the_line_cannot_be_taken(domain):
    domain.add_line(7, trigger=IRQF_TRIGGER_RISING)
    called = []
    assert domain.take_while_waiting(7, [], 0.01, None, lambda: called.append(1)) is None
    assert called == []


def test_only_one_thread_takes_a_line_and_never_an_edge_line(domain):
    dev = _threaded_device(domain, 6)[0]
    os.close(dev.ran_fd)
    domain.add_line(7, trigger=IRQF_TRIGGER_RISING)
    done = os.eventfd(0, os.EFD_NONBLOCK)
    inside = threading.Event()
    answers = SimpleQueue()

    def other():
        inside.set()
        answers.put(domain.take_while_waiting(6, [done], 10))

    try:
        t = threading.Thread(target=other)
        t.start()
        assert inside.wait(5)
        wait_for(lambda: 6 in domain._taken, "the other thread to take line 6")
        assert domain.take_while_waiting(6, [done], 0.01) is None  # taken by the other
        assert domain.take_while_waiting(7, [done], 0.01) is None  # edge
        os.eventfd_write(done, 1)
        assert answers.get(timeout=5) is True
        t.join(5)
    finally:
        os.close(done)


def test_the_line_cannot_be_freed_from_a_thread_function_a_taker_runs(domain):
    dev = LevelDevice(domain.add_line(8))
    errors = SimpleQueue()
    ran = os.eventfd(0, os.EFD_NONBLOCK)

    def thread_fn(irq, dev_id):
        try:
            domain.synchronize_irq(8, 1)
        except IrqError as exc:
            errors.put((exc.errno, threading.get_ident()))
        os.eventfd_write(ran, 1)
        return IRQ_HANDLED

    domain.request_threaded_irq(8, _silencing_primary(dev), thread_fn, 0, "self", "me")
    firing = _fire_once_taken(domain, dev)
    try:
        assert domain.take_while_waiting(8, [ran], 30) is True
    finally:
        firing.join(5)
        os.close(ran)
    assert errors.get(timeout=5) == (errno.EDEADLK, threading.get_ident())


def test_a_keyboard_interrupt_in_a_taker_hands_the_work_to_the_line_thread(domain):
    dev = LevelDevice(domain.add_line(9))
    runs = SimpleQueue()
    first = [True]

    def thread_fn(irq, dev_id):
        if first[0]:
            first[0] = False
            raise KeyboardInterrupt  # what Ctrl-C does to a main thread that takes the line
        runs.put(threading.current_thread().name)
        return IRQ_HANDLED

    domain.request_threaded_irq(9, _silencing_primary(dev), thread_fn, 0, "kbd", "me")
    firing = _fire_once_taken(domain, dev)
    with pytest.raises(KeyboardInterrupt):
        domain.take_while_waiting(9, [], 5)
    firing.join(5)
    assert runs.get(timeout=5) == "irq/9-kbd"  # run again by its own thread
    assert domain.synchronize_irq(9, 5)
    assert not domain._taken
    dev.fire()  # and the line works on
    assert runs.get(timeout=5) == "irq/9-kbd"


def test_close_lets_a_taker_go_and_leaves_no_descriptor_behind():
    before = snapshot()
    d = started()
    os.close(_threaded_device(d, 6)[0].ran_fd)
    done = os.eventfd(0, os.EFD_NONBLOCK)
    answers = SimpleQueue()
    t = threading.Thread(target=lambda: answers.put(d.take_while_waiting(6, [done], 30)))
    t.start()
    wait_for(lambda: 6 in d._taken, "the thread to take line 6")
    d.close()
    assert answers.get(timeout=5) is False
    t.join(5)
    assert d.take_while_waiting(6, [done], 0.01) is None
    os.close(done)
    assert snapshot() == before


def test_a_storm_does_not_keep_a_taker_past_its_timeout(domain):
    dev = LevelDevice(domain.add_line(10))
    taken = SimpleQueue()

    def primary(irq, dev_id):  # says it handled the device but never silences it
        taken.put(threading.get_ident())
        return IRQ_HANDLED

    domain.request_irq(10, primary, 0, "storm", "me")
    firing = _fire_once_taken(domain, dev)
    try:
        t0 = time.monotonic()
        assert domain.take_while_waiting(10, [], 2) is False
        assert time.monotonic() - t0 < 10  # returned at its deadline, not when it calmed
        assert taken.get(timeout=5) == threading.get_ident()
    finally:
        firing.join(5)
        domain.free_irq(10, "me")


@pytest.fixture
def python_ctrl_c():
    """SIGINT raises KeyboardInterrupt (Python's own handler), whatever an earlier
    test left installed (an in-process amplink command ignores SIGINT once it ended)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_in_a_main_thread_that_takes_a_line_waits_for_its_handlers(domain, python_ctrl_c):
    """Ctrl-C strikes a main thread between any two bytecodes: here just after the
    primary silenced its device.  The KeyboardInterrupt is held until the primary and
    the thread function it woke have run and the line is given back
    (amplink.irq.held_signals); then it goes on up, and the line works on."""
    assert threading.current_thread() is threading.main_thread()
    dev = LevelDevice(domain.add_line(11))
    runs = SimpleQueue()
    first = [True]

    def primary(irq, dev_id):
        if not dev.asserted:
            return IRQ_NONE
        dev.ack()
        if first[0]:
            first[0] = False
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        runs.put("primary")  # Python runs a pending SIGINT handler at a call like this
        return IRQ_WAKE_THREAD

    def thread_fn(irq, dev_id):
        runs.put(threading.current_thread().name)
        return IRQ_HANDLED

    domain.request_threaded_irq(11, primary, thread_fn, 0, "ctrl-c", "me")
    firing = _fire_once_taken(domain, dev)
    with pytest.raises(KeyboardInterrupt):
        domain.take_while_waiting(11, [], 30)
    firing.join(5)
    assert [runs.get_nowait(), runs.get_nowait()] == ["primary", "MainThread"]
    assert not domain._taken
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    dev.fire()  # the dispatcher and the action's thread take it again
    assert runs.get(timeout=5) == "primary"
    assert runs.get(timeout=5) == "irq/11-ctrl-c"


def test_a_signal_handler_installed_by_a_handler_a_taker_ran_stays(domain):
    """The handlers a main-thread taker holds come back when it gives the line back,
    except one that the code it ran (a thread function, a receive callback) installed
    meanwhile: that one is not overwritten."""
    dev = LevelDevice(domain.add_line(13))
    ran = os.eventfd(0, os.EFD_NONBLOCK)

    def before(signum, frame):
        pass

    def installed(signum, frame):
        pass

    def thread_fn(irq, dev_id):
        signal.signal(signal.SIGUSR1, installed)
        os.eventfd_write(ran, 1)
        return IRQ_HANDLED

    old = signal.signal(signal.SIGUSR1, before)
    try:
        domain.request_threaded_irq(13, _silencing_primary(dev), thread_fn, 0, "sig", "me")
        firing = _fire_once_taken(domain, dev)
        assert domain.take_while_waiting(13, [ran], 30) is True
        firing.join(5)
        assert signal.getsignal(signal.SIGUSR1) is installed
        assert signal.getsignal(signal.SIGINT) is not None  # the others are back
        assert "_hold" not in repr(signal.getsignal(signal.SIGINT))
    finally:
        signal.signal(signal.SIGUSR1, old)
        os.close(ran)


def test_ctrl_c_ends_a_takers_sleep_at_once(domain, python_ctrl_c):
    dev = LevelDevice(domain.add_line(12))
    domain.request_irq(12, lambda irq, dev_id: IRQ_NONE, 0, "idle", "me")
    main = threading.get_ident()

    def ctrl_c():
        wait_for(lambda: 12 in domain._taken, "the main thread to take line 12")
        signal.pthread_kill(main, signal.SIGINT)

    t = threading.Thread(target=ctrl_c)
    t.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        domain.take_while_waiting(12, [], 600)
    t.join(5)
    assert time.monotonic() - t0 < 300  # not at its timeout
    assert not domain._taken and dev.line.fd >= 0


def test_a_line_still_active_when_its_taker_returns_goes_to_the_dispatcher(domain):
    """The taker's waiter is satisfied by the first interrupt while the device still
    asserts the line (a second event pending): the line's descriptor is drained, so
    no new pulse will come; the dispatcher must look at the level when it gets the line
    back, or that event waits for the device's next one."""
    dev = LevelDevice(domain.add_line(13))
    runs = SimpleQueue()

    def primary(irq, dev_id):
        if not dev.asserted:
            return IRQ_NONE
        runs.put(threading.get_ident())
        if runs.qsize() > 1:  # the second event: now the device is quiet
            dev.ack()
        return IRQ_HANDLED

    domain.request_irq(13, primary, 0, "two-events", "me")
    firing = _fire_once_taken(domain, dev)
    assert domain.take_while_waiting(13, [], 30, lambda: not runs.empty()) is True
    firing.join(5)
    assert runs.get_nowait() == threading.get_ident()
    assert runs.get(timeout=10) == domain._dispatcher.ident
