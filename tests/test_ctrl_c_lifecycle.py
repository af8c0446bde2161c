"""A Ctrl-C (SIGINT, Python's default handler) at a random moment of ``Rproc.start()`` or
``stop()`` leaves nothing behind (no core process, thread, descriptor or mapping) and
the ``Rproc`` usable: releasing is one held section, the core process is registered
for release as it is spawned, a stop interrupted in its handshake still resets the
core, and an interrupt thread whose start was interrupted is not joined (found by a
hostile review: the core could not be started again in that process)."""

import random
import signal
import threading

import pytest

from amplink.host import Rproc
from backends import table_for
from resources import snapshot
from signal_at import CtrlCAsLockIsLetGo, ctrl_c_as_c_call_returns
from waiting import wait_for

ROUNDS = 8
LATEST = 0.02  # s: the interrupt comes within this of the call's start


def echo(rp: Rproc) -> None:
    ept = rp.wait_channel("rpmsg-openamp-demo-channel", 10).create_ept()
    ept.send(b"ping")
    assert ept.recv(10).data == b"ping"


# A Ctrl-C that lands in a weakref callback (a WeakSet entry of a thread that ended) is
# "ignored" by CPython itself, which says so as an unraisable exception: not ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("backend", ["virtio", "glink"])
@pytest.mark.parametrize("phase", ["start", "stop"])
def test_a_ctrl_c_in_start_or_stop_leaves_nothing_behind(backend, phase):
    assert threading.current_thread() is threading.main_thread()
    rng = random.Random(f"{backend}-{phase}")
    main = threading.get_ident()
    rp = Rproc(f"ctrl-c-{phase}-{backend}", "amplink.firmware.echo", table=table_for(backend))
    before = snapshot()
    for _ in range(ROUNDS):
        if phase == "stop":
            rp.start()
            echo(rp)
        call = rp.start if phase == "start" else rp.stop
        timer = threading.Timer(rng.uniform(0, LATEST), signal.pthread_kill, (main, signal.SIGINT))
        try:
            timer.start()
            call()
            timer.join()  # the interrupt lands here if the call ended first
        except KeyboardInterrupt:
            timer.join()
        rp.stop()
        assert rp.state == "offline"
        assert snapshot() == before
    rp.start()
    echo(rp)
    rp.stop()
    assert snapshot() == before


@pytest.mark.parametrize("backend", ["virtio", "glink"])
def test_a_ctrl_c_as_recv_takes_a_message_leaves_it_queued(backend):
    """A SIGINT that arrives while ``recv()`` takes the queued message off its queue
    (CPython runs the handler as the C call returns, before the value is stored) raises
    KeyboardInterrupt with the message back at the head: the next ``recv()`` gets it,
    in order (found by a hostile review: it was lost)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with Rproc(f"ctrl-c-recv-{backend}", "amplink.firmware.echo", table=table_for(backend)) as rp:
        ept = rp.wait_channel("rpmsg-openamp-demo-channel", 10).create_ept()
        ept.send(b"one")
        ept.send(b"two")
        wait_for(lambda: ept.pending() == 2, "both answers queued")
        with pytest.raises(KeyboardInterrupt), ctrl_c_as_c_call_returns("popleft") as fired:
            ept.recv(10)
        assert fired[0]
        assert [ept.recv(10).data, ept.recv(10).data] == [b"one", b"two"]
        ept.send(b"after")
        assert ept.recv(10).data == b"after"


@pytest.mark.parametrize("backend", ["virtio", "glink"])
def test_a_ctrl_c_as_a_waiting_recv_ends_its_wait_takes_no_message(backend):
    """A SIGINT that arrives as a ``recv()`` that slept lets go of the endpoint's lock
    (its wait's end) raises KeyboardInterrupt with the answer still queued: the next
    ``recv()`` gets it, in order (found by a hostile review: the message was taken
    before that point and lost)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with Rproc(f"ctrl-c-wait-{backend}", "amplink.firmware.echo", table=table_for(backend)) as rp:
        ept = rp.wait_channel("rpmsg-openamp-demo-channel", 10).create_ept()
        trap = CtrlCAsLockIsLetGo(ept._lock, "_as_waiter", skip=1)  # the wait's end
        ept._lock = trap
        interrupted = 0
        for i in range(20):
            sender = threading.Timer(0.005, ept.send, args=(b"%d" % i,))
            sender.start()
            trap.armed = True
            try:
                got = ept.recv(10)
            except KeyboardInterrupt:
                interrupted += 1
                got = ept.recv(10)
            trap.armed = False
            sender.join()
            assert got.data == b"%d" % i
        assert interrupted >= 1 and trap.fired == interrupted
