"""/dev/rpmsg_ctrlN and /dev/rpmsgN as objects: whole messages, blocking and not,
real descriptors for select and asyncio, rpmsg-raw files, channels made from the host."""

import asyncio
import errno
import os
import select
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from amplink.errors import RpmsgError
from amplink.host import RpmsgConfig, Rproc
from amplink.rpmsg import RpmsgBus
from amplink.rpmsg.aio import AsyncEndpoint
from amplink.rpmsg.chardev import RpmsgCharDriver, RpmsgCtrl
from amplink.rpmsg.config import RpmsgBuffers
from amplink.rpmsg.core import RPMSG_ADDR_ANY
from amplink.rpmsg.glink_protocol import DEFAULT_INTENTS
from backends import table_for
from resources import snapshot
from signal_at import CtrlCAsLockIsLetGo, ctrl_c_as_c_call_returns

PEER = str(Path(__file__).parent / "firmware" / "chardev_peer.py")


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def writable(fd: int, timeout: float) -> bool:
    return bool(select.select([], [fd], [], timeout)[1])


@contextmanager
def stalled(f, where: Path) -> Iterator[None]:
    """The core stops consuming (it holds the buffer of ``stall``) until the block ends:
    it waits on a FIFO the host holds open, and says ``stalled`` once it does."""
    gate = where / "gate"
    os.mkfifo(gate)
    fd = os.open(gate, os.O_RDWR | os.O_NONBLOCK)
    try:
        f.write(b"stall " + os.fsencode(gate))
        assert f.read(timeout=10) == b"stalled"
        yield
        os.write(fd, b"go")
    finally:
        os.close(fd)  # the core also resumes when the last writer goes


@pytest.fixture
def raw(backend):
    """A core with an rpmsg-raw channel, and the file the char driver gave it."""
    before = snapshot()
    bus = RpmsgBus()
    driver = RpmsgCharDriver()
    bus.register_driver(driver)
    with Rproc("chardev", PEER, bus=bus, table=table_for(backend)) as rp:
        f = driver.wait_file()
        yield rp, f
    assert driver.files == {}
    f.close()  # a user's descriptors stay valid until the user closes the file
    assert snapshot() == before


def test_a_core_that_goes_away_hangs_up_its_files_and_wakes_every_waiter(raw):
    """Linux: poll waiters get EPOLLERR/EPOLLHUP, reads and writes EPIPE, and the
    descriptor stays valid until the user closes it; the same for the channel's own
    file (rpmsg-raw) and a file made with RpmsgCtrl.create_ept."""
    rp, f = raw
    made = RpmsgCtrl(f.ept.device, rp.bus).create_ept("mine", dst=f.dst)
    files = (f, made)
    fds = [g.fileno() for g in files]
    assert not any(readable(fd, 0) for fd in fds)

    async def wait_all() -> list[int]:
        async def one(g) -> int:
            try:
                await AsyncEndpoint(g).recv()
            except RpmsgError as exc:
                return exc.errno
            return 0

        return list(await asyncio.gather(*(one(g) for g in files)))

    async def stop_meanwhile() -> list[int]:
        waiting = asyncio.ensure_future(wait_all())
        await asyncio.sleep(0)  # both coroutines wait on their descriptors now
        await asyncio.get_running_loop().run_in_executor(None, rp.stop)
        return await asyncio.wait_for(waiting, 30)

    assert asyncio.run(stop_meanwhile()) == [errno.EPIPE, errno.EPIPE]
    for g, fd in zip(files, fds, strict=True):
        assert g.fileno() == fd >= 0 and os.fstat(fd)  # still open, the same descriptor
        assert readable(fd, 0) and writable(g.writer_fileno(), 0)  # select wakes at once
        assert g.poll() & select.POLLERR
        for op in (g.read, lambda g=g: g.write(b"x")):
            with pytest.raises(RpmsgError) as exc:
                op()
            assert exc.value.errno == errno.EPIPE
    made.close()
    assert made.fileno() == -1


def test_rpmsg_raw_file_reads_and_writes_whole_messages(raw):
    rp, f = raw
    assert f.default and not readable(f.fileno(), 0)
    assert f.write(b"ping") == 4
    assert readable(f.fileno(), 10)
    assert f.poll() & select.POLLIN
    assert f.read() == b"ping"
    assert not readable(f.fileno(), 0)
    f.nonblocking = True
    with pytest.raises(RpmsgError) as exc:
        f.read()
    assert exc.value.errno == errno.EAGAIN
    with pytest.raises(RpmsgError) as exc:
        f.write(bytes(rp.link.mtu + 1))  # virtio: 497 bytes; GLINK: 65537
    assert exc.value.errno == errno.EMSGSIZE
    ctrl = RpmsgCtrl(rp.wait_channel("rpmsg-raw"), rp.bus)
    with pytest.raises(RpmsgError) as exc:
        ctrl.destroy_ept(f)
    assert exc.value.errno == errno.EINVAL


def test_writer_descriptor_follows_free_send_buffers(raw, tmp_path):
    rp, f = raw
    with stalled(f, tmp_path):
        f.nonblocking = True
        sent = 0
        with pytest.raises(RpmsgError) as exc:
            while True:
                f.write(b"x")
                sent += 1
        assert exc.value.errno == errno.EAGAIN
        # virtio: 256 buffers; GLINK: the core's 5 intents. On both, "stall" holds one
        # while the core is in its callback.
        assert sent == (256 if rp.table.vdevs() else DEFAULT_INTENTS[0][1]) - 1
        assert not writable(f.writer_fileno(), 0) and not f.poll() & select.POLLOUT
    assert writable(f.writer_fileno(), 10)  # the core consumed again: a buffer came back
    f.write(b"after")


def test_ctrl_endpoints_and_channels_the_core_sees(raw):
    rp, f = raw
    chan = rp.wait_channel("rpmsg-raw")
    ctrl = RpmsgCtrl(chan, rp.bus)
    with ctrl.create_ept("mine", dst=chan.dst) as mine:
        mine.write(b"via ctrl")
        assert mine.read(timeout=10) == b"via ctrl"
    dev = ctrl.create_dev("host-service")
    ctrl.release_dev("host-service")
    addr = dev.src if rp.link.ns_supported else RPMSG_ADDR_ANY  # GLINK: channels by name
    f.write(b"events")
    events = [e for e in f.read(timeout=10).decode().splitlines() if "host-service" in e]
    assert events == [f"create host-service {addr}", f"destroy host-service {addr}"]
    with pytest.raises(RpmsgError) as exc:
        ctrl.release_dev("host-service")
    assert exc.value.errno == errno.EINVAL


def test_asyncio_send_recv_and_iteration(raw, tmp_path):
    _rp, f = raw

    async def main():
        with stalled(f, tmp_path):
            ept = AsyncEndpoint(f)
            sender = asyncio.create_task(send_all(ept))
            await asyncio.sleep(0)  # the sender runs until it has to wait
            assert not sender.done()  # more than the 256 buffers (or 5 intents)
        await asyncio.wait_for(sender, 10)
        assert await ept.recv() == b"resumed"
        got = []
        async for data in ept:
            got.append(data)
            if len(got) == 300:
                break
        return got

    async def send_all(ept):
        for i in range(300):
            await ept.send(b"%d" % i)

    assert asyncio.run(main()) == [b"%d" % i for i in range(300)]


def test_a_message_larger_than_any_free_buffer_waits_without_spinning(raw):
    """Non-blocking, a message no free buffer fits is refused (GLINK: the core's intents
    are 1 KiB; the link asks it for a larger one); the writer descriptor becomes
    writable only once that message would go, so an asyncio sender sleeps meanwhile."""
    rp, f = raw
    big = b"y" * min(rp.link.mtu, 20_000)
    f.nonblocking = True
    if rp.link.ns_supported:  # virtio: any buffer fits any message up to the MTU
        f.write(big)
    else:
        with pytest.raises(RpmsgError) as exc:
            f.write(big)
        assert exc.value.errno == errno.EAGAIN
        assert writable(f.writer_fileno(), 10)  # the core granted an intent that large
        f.write(big)
    f.nonblocking = False
    assert f.read(timeout=10) == big

    async def main() -> float:
        ept = AsyncEndpoint(f)
        cpu = time.process_time()
        for _ in range(3):
            await asyncio.wait_for(ept.send(big), 10)
            assert await asyncio.wait_for(ept.recv(), 10) == big
        return time.process_time() - cpu

    assert asyncio.run(main()) < 2.0  # a writable-but-refusing descriptor would spin


def test_a_file_reports_the_core_going_away(backend):
    rp = Rproc("gone", PEER, table=table_for(backend))
    rp.start()
    ctrl = RpmsgCtrl(rp.wait_channel("rpmsg-raw"), rp.bus)
    f = ctrl.create_ept("watch", dst=ctrl.rpdev.dst)
    rp.stop()
    assert readable(f.fileno(), 10) and writable(f.writer_fileno(), 0)
    assert f.poll() & select.POLLERR
    with pytest.raises(RpmsgError) as exc:
        f.read()
    assert exc.value.errno == errno.EPIPE
    f.close()


def test_flow_control_signals(raw):
    """GLINK carries flow control both ways (SIGNALS); virtio refuses it, as in Linux."""
    rp, f = raw
    assert f.get_outgoing_flowcontrol() == 0
    with pytest.raises(RpmsgError) as exc:
        f.set_incoming_flowcontrol(2)
    assert exc.value.errno == errno.EINVAL
    if rp.link.ns_supported:  # virtio
        with pytest.raises(RpmsgError) as exc:
            f.set_incoming_flowcontrol(1)
        assert exc.value.errno == errno.EOPNOTSUPP
        return
    f.set_incoming_flowcontrol(1)  # the core's endpoint learns we want it to pause
    f.write(b"flow")
    assert f.read(timeout=10) == b"paused"
    f.set_incoming_flowcontrol(0)
    f.write(b"flow")
    assert f.read(timeout=10) == b"running"
    assert not f.poll() & select.POLLPRI
    f.write(b"pause")  # the core asks us to pause: POLLPRI, and the flag reads 1
    assert readable(f.fileno(), 10)
    assert f.poll() & select.POLLPRI
    assert f.get_outgoing_flowcontrol() == 1
    assert not f.poll() & select.POLLPRI  # reading it cleared the event
    f.write(b"resume")
    assert readable(f.fileno(), 10)
    assert f.get_outgoing_flowcontrol() == 0


def test_buffer_sizes_and_counts_per_direction(tmp_path):
    """Beyond Linux's fixed 512 B x 256: the host sends from 64 buffers of 1 KiB and
    receives in 32 of 2 KiB; each side's MTU follows (the core learns its own from
    the size of the buffers the host posts)."""
    before = snapshot()
    geometry = RpmsgBuffers(rx_size=2048, tx_size=1024, rx_count=32, tx_count=64)
    with Rproc("sizes", PEER, rpmsg=RpmsgConfig(buffers=geometry)) as rp:
        ctrl = RpmsgCtrl(rp.wait_channel("rpmsg-raw"), rp.bus)
        with ctrl.create_ept("big", dst=ctrl.rpdev.dst) as f:
            assert rp.link.mtu == 1008
            f.write(bytes(1008))
            assert len(f.read(timeout=10)) == 1008
            with pytest.raises(RpmsgError) as exc:
                f.write(bytes(1009))
            assert exc.value.errno == errno.EMSGSIZE
            f.write(b"big")
            assert f.read(timeout=10) == b"B" * 2032  # the core's MTU: 2048 - 16
            with stalled(f, tmp_path):
                f.nonblocking = True
                sent = 0
                with pytest.raises(RpmsgError):
                    while True:
                        f.write(b"x")
                        sent += 1
            assert sent == 63  # 64 send buffers (not Linux's 256): "stall" holds one
    assert snapshot() == before
    with pytest.raises(RpmsgError) as exc:
        RpmsgBuffers(rx_size=16)
    assert exc.value.errno == errno.EINVAL


def test_a_ctrl_c_as_read_takes_a_message_leaves_it_queued_and_readable(raw):
    """A SIGINT that arrives as ``read()`` takes the message off its queue raises
    KeyboardInterrupt with the message back at the head and the descriptor readable
    (found by a hostile review: it was lost)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _rp, f = raw
    f.write(b"one")
    assert readable(f.fileno(), 10)
    with pytest.raises(KeyboardInterrupt), ctrl_c_as_c_call_returns("popleft") as fired:
        f.read(timeout=10)
    assert fired[0]
    assert readable(f.fileno(), 0)
    assert f.read(timeout=10) == b"one"
    assert not readable(f.fileno(), 0)


def test_a_ctrl_c_as_read_lets_go_of_its_lock_takes_no_message(raw):
    """A SIGINT that arrives as ``read()`` lets go of the file's lock raises
    KeyboardInterrupt with the message still queued and readable (found by a hostile
    review: the message was taken under that lock and lost)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _rp, f = raw
    trap = CtrlCAsLockIsLetGo(f._lock, "read")
    f._lock = trap
    for i in range(5):
        f.write(b"%d" % i)
        assert readable(f.fileno(), 10)
        trap.armed = True
        with pytest.raises(KeyboardInterrupt):
            f.read(timeout=10)
        assert trap.fired == i + 1 and readable(f.fileno(), 0)
        assert f.read(timeout=10) == b"%d" % i
