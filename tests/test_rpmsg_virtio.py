"""The rpmsg core over the virtio backend, both roles in one process, pumped by hand."""

import errno
import itertools
import logging
import signal
import threading
import time

import pytest

from amplink.errors import AddressError, RpmsgError, VirtqueueError
from amplink.rpmsg import RPMSG_ADDR_ANY, RpmsgDriver
from amplink.rpmsg.core import announce
from amplink.virtio.constants import VIRTIO_CONFIG_S_DRIVER_OK
from amplink.wait import AdaptiveSpin
from amplink.wire.rpmsg import RPMSG_HDR
from rpmsg_helpers import make_loop, send_in_thread
from test_wire_rsc_table import openamp_table

SERVICE = "rpmsg-openamp-demo-channel"


@pytest.fixture
def loop():
    lp = make_loop()
    yield lp
    lp.close()


def echo(ept, data, src):
    ept.sendto(data, src)


def test_handshake_status_features_and_mtu(loop):
    vdev = loop.host.vdev
    assert vdev.status & VIRTIO_CONFIG_S_DRIVER_OK
    assert vdev.config.gfeatures == 1 and loop.host.ns_supported and loop.remote.ns_supported
    assert loop.host.mtu == loop.remote.mtu == 496
    assert loop.kicks["to_remote"] == 1  # DRIVER_OK


def test_announce_creates_device_and_echo_works(loop):
    loop.remote_ept(SERVICE, echo)
    loop.pump()
    (dev,) = loop.bus.devices(SERVICE)
    assert dev.dst == 1024 and dev.src == RPMSG_ADDR_ANY
    assert dev.id == "host.vdev0.rpmsg-openamp-demo-channel.-1.1024"
    ept = dev.create_ept()
    assert ept.addr == 1024 and ept.dst == 1024
    big = (bytes(range(256)) * 2)[:496]
    for size in (0, 1, 100):
        ept.send(bytes(size))
    ept.send(big)
    ept.trysend(b"last")
    loop.pump()
    got = [ept.recv(0) for _ in range(5)]
    assert [len(m.data) for m in got] == [0, 1, 100, 496, 4]
    assert got[3].data == big
    assert {m.src for m in got} == {1024}
    with pytest.raises(RpmsgError) as exc:
        ept.recv(0)
    assert exc.value.errno == errno.ETIMEDOUT


def test_a_send_counts_bytes_and_refuses_what_it_cannot_write_alike(loop):
    """A payload's length is its bytes, whatever its item size (a view of 4-byte items
    longer than the MTU in bytes was taken for its item count and written past its
    buffer); a strided view and a negative address are refused before any buffer is
    taken, with the same error and text from the first sends (buffers never used yet)
    as from later ones (the ring's), compiled or not."""
    rept = loop.remote_ept(SERVICE)
    loop.pump()
    ept = loop.bus.wait_for_device(SERVICE, 0).create_ept()
    with pytest.raises(RpmsgError) as exc:
        ept.send(memoryview(bytes(800)).cast("I"))  # 200 items, 800 bytes
    assert exc.value.errno == errno.EMSGSIZE
    for _ in range(2 * loop.host._n_tx):  # unused buffers first, then the ring's
        with pytest.raises(BufferError, match="not a strided view"):
            ept.send(memoryview(bytes(8))[::2])
        with pytest.raises(OverflowError, match=r"^an rpmsg address is 32 bits$"):
            ept.sendto(b"x", -1)
        ept.send(memoryview(bytes(range(8))).cast("I"))
        loop.pump()
        assert rept.recv(0).data == bytes(range(8))
    assert rept.pending() == 0


def test_remote_learns_destination_from_first_message(loop):
    seen = []
    rept = loop.remote_ept(SERVICE, lambda e, d, s: seen.append((d, s)))
    loop.pump()
    dev = loop.bus.wait_for_device(SERVICE, 0)
    host_ept = dev.create_ept()
    host_ept.send(b"hi")
    loop.pump()
    assert seen == [(b"hi", host_ept.addr)]
    rept.send(b"unsolicited")
    loop.pump()
    assert host_ept.recv(0) == (b"unsolicited", rept.addr)


def test_driver_matched_by_name_gets_default_endpoint(loop):
    got, probed = [], []
    drv = RpmsgDriver(
        "sample", (SERVICE,), probe=probed.append, callback=lambda d, data, src: got.append(data)
    )
    loop.bus.register_driver(drv)
    rept = loop.remote_ept(SERVICE, echo)
    loop.pump()
    (dev,) = probed
    assert dev.driver is drv and dev.ept is not None and dev.src == dev.ept.addr
    dev.ept.send(b"ping")
    loop.pump()
    assert got == [b"ping"]
    removed = []
    drv._remove = removed.append
    loop.bus.unregister_driver(drv)
    assert removed == [dev] and dev.ept is None
    assert rept.addr == 1024


def test_driver_registered_after_device_probes_it(loop):
    loop.remote_ept(SERVICE, echo)
    loop.pump()
    probed = []
    loop.bus.register_driver(RpmsgDriver("late", (SERVICE,), probe=probed.append))
    assert [d.name for d in probed] == [SERVICE]


def test_other_names_do_not_match(loop):
    probed = []
    loop.bus.register_driver(RpmsgDriver("x", ("rpmsg-tty",), probe=probed.append))
    loop.remote_ept(SERVICE, echo)
    loop.pump()
    assert probed == []


def test_ns_destroy_removes_device_and_releases_endpoints(loop):
    rept = loop.remote_ept(SERVICE, echo)
    loop.pump()
    dev = loop.bus.wait_for_device(SERVICE, 0)
    ept = dev.create_ept()
    released = []
    ept.on_release(lambda e, why: released.append(why.errno))
    announce(loop.remote, SERVICE, rept.addr, destroy=True)
    loop.pump()
    assert loop.bus.devices() == [] and dev.removed
    assert released == [errno.EPIPE]
    with pytest.raises(RpmsgError) as exc:
        ept.recv(0)
    assert exc.value.errno == errno.EPIPE
    with pytest.raises(RpmsgError) as exc:
        ept.send(b"x")
    assert exc.value.errno == errno.EPIPE
    assert loop.host.endpoints.get(ept.addr) is None


def test_duplicate_announcement_ignored(loop, caplog):
    rept = loop.remote_ept(SERVICE, echo)
    announce(loop.remote, SERVICE, rept.addr, destroy=False)
    with caplog.at_level(logging.WARNING):
        loop.pump()
    assert len(loop.bus.devices()) == 1
    assert "already exists" in caplog.text


def test_malformed_ns_message_ignored(loop, caplog):
    loop.remote.send(1024, 53, bytes(39), block=False, timeout=0)
    with caplog.at_level(logging.WARNING):
        loop.pump()
    assert "malformed name-service message" in caplog.text
    assert loop.bus.devices() == []
    loop.remote_ept(SERVICE, echo)
    loop.pump()
    assert len(loop.bus.devices()) == 1


def test_message_without_recipient_logged(loop, caplog):
    loop.remote.send(1024, 4321, b"nobody", block=False, timeout=0)
    with caplog.at_level(logging.WARNING):
        loop.pump()
    assert "has no recipient" in caplog.text


def test_address_allocation(loop):
    table = loop.host.endpoints
    a = table.create(None)
    b = table.create(None)
    assert (a.addr, b.addr) == (1024, 1025)
    fixed = table.create(None, 77)
    assert fixed.addr == 77
    with pytest.raises(RpmsgError) as exc:
        table.create(None, 53)  # the name service holds it
    assert exc.value.errno == errno.EADDRINUSE
    a.destroy()
    assert table.create(None).addr == 1024  # lowest free again
    assert table.create(None).addr == 1026


def test_send_errors(loop):
    ept = loop.host.endpoints.create(None)
    with pytest.raises(RpmsgError) as exc:
        ept.sendto(bytes(497), 1024)
    assert exc.value.errno == errno.EMSGSIZE
    with pytest.raises(RpmsgError) as exc:
        ept.send(b"x")  # no destination
    assert exc.value.errno == errno.EINVAL
    assert ept.get_mtu() == 496


def test_trysend_enomem_when_remote_is_behind_then_recovers(loop):
    ept = loop.host.endpoints.create(None)
    loop.remote.endpoints.create(None, 1024)
    for i in range(16):
        assert ept.poll()
        ept.trysendto(bytes([i]), 1024)
    assert not ept.poll()
    with pytest.raises(RpmsgError) as exc:
        ept.trysendto(b"x", 1024)
    assert exc.value.errno == errno.ENOMEM
    loop.pump()
    assert ept.poll()
    ept.trysendto(b"again", 1024)


def test_blocking_send_times_out(loop):
    ept = loop.host.endpoints.create(None)
    for _ in range(16):
        ept.trysendto(b"x", 1024)
    with pytest.raises(RpmsgError) as exc:
        ept.sendto(b"x", 1024, timeout=0.05)
    assert exc.value.errno == errno.ETIMEDOUT
    assert "not consuming" in str(exc.value)


def test_blocking_send_waits_for_a_buffer(loop):
    ept = loop.host.endpoints.create(None)
    sink = loop.remote.endpoints.create(None, 1024)
    for _ in range(16):
        ept.trysendto(b"x", 1024)
    result = []
    t = threading.Thread(target=lambda: result.append(ept.sendto(b"late", 1024, timeout=10)))
    t.start()
    deadline = time.monotonic() + 10
    while loop.host._tx_waiters == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert loop.host._tx_waiters == 1, "sender did not block"
    loop.remote.poll_rx()
    loop.host.handle_notify()
    t.join(10)
    assert result == [None]
    loop.remote.poll_rx()
    assert [sink.recv(0).data for _ in range(17)][-1] == b"late"


def test_a_spinning_sender_holds_off_unmapping_until_it_lets_go(loop):
    """A sender spinning for a free buffer reads the used ring without a lock. When the
    core dies, quiesce() (after which the memory is unmapped) must wait for it, and the
    sender must get EPIPE, not a read of unmapped memory."""
    host = loop.host
    # It spins (10 s at most) for a buffer, on a clock that shows no preemption.
    host._tx_spin = AdaptiveSpin(10**10, enabled=True, clock=itertools.count(0, 1000).__next__)
    ept = host.endpoints.create(None)
    for _ in range(16):
        ept.trysendto(b"x", 1024)
    t, outcome = send_in_thread(lambda: ept.sendto(b"late", 1024, timeout=30))
    deadline = time.monotonic() + 10
    while not host._users and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(host._users) == 1, "the spinning sender is not counted as using the memory"
    loop.remote.send(1024, ept.addr, b"never read", block=False, timeout=0)
    assert host.rx_pending()
    host.fail(RpmsgError(errno.EPIPE, "the core died"))
    assert host.quiesce(10) and not host._users
    assert not host.rx_pending()  # nothing will be dispatched: the ring is not read again
    t.join(10)
    assert not t.is_alive() and outcome == [errno.EPIPE]


def test_hostile_header_length_dropped_link_survives(loop, caplog):
    host_ept = loop.host.endpoints.create(None)
    vq = loop.remote._tx_vq
    head, off, _ = vq.get()
    RPMSG_HDR.pack_into(loop.region.mem, off, 1024, host_ept.addr, 0, 400, 0)
    vq.put(head, 16 + 10)
    with caplog.at_level(logging.ERROR):
        loop.host.poll_rx()
    assert "header announces 400 payload bytes" in caplog.text
    assert host_ept.pending() == 0
    loop.remote.send(1024, host_ept.addr, b"fine", block=False, timeout=0)
    loop.host.poll_rx()
    assert host_ept.recv(0).data == b"fine"


def test_hostile_ring_fails_the_link_and_releases_everything(loop, caplog):
    loop.remote_ept(SERVICE, echo)
    loop.pump()
    dev = loop.bus.wait_for_device(SERVICE, 0)
    ept = dev.create_ept()
    used_idx = loop.region.cast(loop.host._rx_vq.parts.used, 4, "H")
    used_idx[1] = (used_idx[1] + 500) & 0xFFFF
    with caplog.at_level(logging.WARNING):
        loop.host.poll_rx()
    assert isinstance(loop.host.failure, VirtqueueError)
    assert "used index moved" in caplog.text
    assert loop.bus.devices() == []
    with pytest.raises(RpmsgError) as exc:
        ept.send(b"x")
    assert exc.value.errno == errno.EPIPE
    with pytest.raises(RpmsgError) as exc:
        loop.bus.wait_for_device(SERVICE, 5, link=loop.host)
    assert exc.value.errno == errno.EPIPE


def test_recv_from_callback_refused(loop):
    host_ept = loop.host.endpoints.create(None)
    errors = []

    def cb(e, data, src):
        try:
            host_ept.recv(0)
        except RpmsgError as exc:
            errors.append(exc.errno)

    loop.host.endpoints.create(cb, 2000)
    loop.remote.send(1024, 2000, b"x", block=False, timeout=0)
    loop.host.poll_rx()
    assert errors == [errno.EDEADLK]


def test_send_from_receive_callback(loop):
    loop.remote_ept(SERVICE, echo)
    loop.pump()
    dev = loop.bus.wait_for_device(SERVICE, 0)
    replies = []

    def bounce(e, data, src):
        replies.append(data)
        if len(replies) < 100:
            e.sendto(data, src)

    ept = dev.create_ept(bounce)
    ept.send(b"ball")
    loop.pump()
    assert replies == [b"ball"] * 100


def test_a_cores_spin_dispatches_what_comes_unless_the_host_reset_the_link(loop):
    """``spin_rx`` (a core's event loop): a message that comes while it spins is
    dispatched in the spin, once ``reset()`` has said the host did not reset the link;
    if it did, nothing is read; with nothing there, the spin gives up on its budget."""
    got = []
    rept = loop.remote_ept(SERVICE, lambda e, data, src: got.append(bytes(data)))
    loop.pump()
    hept = loop.host.endpoints.create(None, name="to-the-spin")
    hept.dst = rept.addr
    remote = loop.remote
    # a clock that moves 1 us a look: the budget (20 us) runs out, never "preempted"
    remote.spin = AdaptiveSpin(20_000, enabled=True, clock=itertools.count(0, 1_000).__next__)
    remote.suppress_rx()
    hept.send(b"one")
    asked = []
    assert remote.spin_rx(lambda: asked.append(1) is None) is True  # reset: not read
    assert asked == [1] and got == [] and remote.rx_pending()
    assert remote.spin_rx(lambda: False) is True
    assert got == [b"one"] and not remote.rx_pending()
    assert remote.spin_rx(asked.clear) is False  # nothing came: reset() never asked
    assert asked == [1] and (remote.spin.hits, remote.spin.misses) == (2, 1)


def test_iterating_an_endpoint_ends_at_release(loop):
    rept = loop.remote_ept(SERVICE, echo)
    loop.pump()
    ept = loop.bus.wait_for_device(SERVICE, 0).create_ept()
    for word in (b"a", b"b"):
        ept.send(word)
    loop.pump()
    announce(loop.remote, SERVICE, rept.addr, destroy=True)
    loop.pump()
    assert [m.data for m in ept] == [b"a", b"b"]  # queued messages, then the end


def test_openamp_fixed_vring_addresses():
    lp = make_loop(table=openamp_table())
    try:
        vdev = lp.host.vdev
        assert (vdev.config.vring_da(0), vdev.config.vring_da(1)) == (0x4000, 0x8000)
        assert lp.host.mtu == lp.remote.mtu == 496
        lp.remote_ept(SERVICE, echo)
        lp.pump()
        ept = lp.bus.wait_for_device(SERVICE, 0).create_ept()
        ept.send(b"fixed")
        lp.pump()
        assert ept.recv(0).data == b"fixed"
    finally:
        lp.close()


@pytest.mark.parametrize("vring_da", [(0x0, 0x8000), (0x4000, 0x5000)])
def test_firmware_vrings_overlapping_refused(vring_da):
    table = openamp_table()
    for vr, da in zip(table.vdevs()[0].vrings, vring_da, strict=True):
        vr.da = da
    with pytest.raises(AddressError, match="overlaps"):
        make_loop(table=table)


def test_a_reply_waiting_for_a_buffer_in_a_callback_lets_no_ctrl_c_through_there():
    """A send from a receive callback runs in its drain's section and enters none for
    the ring update; its wait for a buffer gets one of its own, so that a Ctrl-C that
    comes meanwhile is raised as the drain's section ends, not inside the callback
    (where it would cut the drain short)."""
    loop = make_loop(num=4)
    outcome: list[BaseException] = []
    try:
        rept = loop.remote_ept("echo")
        loop.pump()

        def reply(ept, data, src):
            try:
                ept.send(b"reply", timeout=1.0)
            except BaseException as exc:  # what reaches the callback is the point
                outcome.append(exc)

        hept = loop.host.endpoints.create(reply, name="h")
        hept.dst = rept.addr
        for _ in range(4):  # the host's TX ring, full: the remote reads nothing yet
            loop.host.send(hept.addr, rept.addr, b"x", block=False, timeout=0)
        loop.remote.send(rept.addr, hept.addr, b"ask", block=False, timeout=0)
        main = threading.get_ident()

        def interrupt_the_wait():
            deadline = time.monotonic() + 10
            while not loop.host._tx_waiters and time.monotonic() < deadline:
                time.sleep(0.001)
            signal.pthread_kill(main, signal.SIGINT)

        t = threading.Thread(target=interrupt_the_wait)
        t.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                loop.host.poll_rx()
        finally:
            t.join()
        assert len(outcome) == 1 and isinstance(outcome[0], RpmsgError)
        assert outcome[0].errno == errno.ETIMEDOUT
        loop.pump()  # the channel still works
        hept.send(b"after")
        loop.pump()
        assert [rept.recv(0).data for _ in range(5)] == [b"x"] * 4 + [b"after"]
    finally:
        loop.close()
