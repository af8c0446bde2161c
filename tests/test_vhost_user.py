"""The vhost-user device side against a Python front end: the echo firmware answers;
hostile requests, rings and memory files are refused with a logged error and drop at
most that guest, never the server, which keeps serving the others; a start releases
everything it made."""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from amplink.errors import AmplinkError, WireError
from amplink.remote.vhost import LinuxGuestDevice
from amplink.remoteproc.fwref import resolve
from amplink.wire import vhost_user as vu
from resources import snapshot
from vhost_frontend import GUEST_BASE, MEM_SIZE, NUM, FrontEnd
from waiting import wait_for

ECHO_ADDR = 0x400
TIMEOUT = 10.0
R = vu.Request

MakeDevice = Callable[..., LinuxGuestDevice]


def held() -> dict[str, object]:
    """What this process holds that a device could leave behind: fds, threads, child
    processes (it makes no named shared memory; /dev/shm is shared with other runs)."""
    return {k: v for k, v in snapshot().items() if k != "shm"}


@pytest.fixture
def make_device(tmp_path) -> Iterator[MakeDevice]:
    """Start echo devices (``LinuxGuestDevice`` keyword arguments) in threads; stop
    them after the test and check that nothing they made is left."""
    before = held()
    started: list[tuple[LinuxGuestDevice, threading.Thread, list[int]]] = []

    def start(**kw: object) -> LinuxGuestDevice:
        path = str(tmp_path / f"vu{len(started)}.sock")
        dev = LinuxGuestDevice(path, resolve("amplink.firmware.echo").program(), **kw)  # type: ignore[arg-type]
        result: list[int] = []
        t = threading.Thread(target=lambda: result.append(dev.run()), name="device")
        t.start()
        started.append((dev, t, result))
        return dev

    yield start
    for dev, t, result in started:
        dev.stop()
        t.join(TIMEOUT)
        assert result == [0]
    assert held() == before


@pytest.fixture
def device(make_device: MakeDevice) -> LinuxGuestDevice:
    return make_device()


def connect(dev: LinuxGuestDevice, **kw: object) -> FrontEnd:
    fe = FrontEnd(dev.server.path, **kw)  # type: ignore[arg-type]
    fe.start()
    return fe


def closed_by_peer(sock: socket.socket, timeout: float = TIMEOUT) -> bool:
    """The device closed this connection (within ``timeout`` s)."""
    if not select.select([sock], [], [], timeout)[0]:
        return False
    return sock.recv(4096) == b""


def still_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True


def assert_serves(dev: LinuxGuestDevice, message: bytes = b"still here", **kw: object) -> None:
    """A new front end gets the announcement and its echo."""
    fe = connect(dev, **kw)
    try:
        wait_for(fe.received, "the announcement")
        fe.send(1024, ECHO_ADDR, message)
        assert wait_for(fe.received, "the echo") == [(ECHO_ADDR, 1024, message)]
    finally:
        fe.close()


def test_echo_over_vhost_user_and_a_second_guest(device):
    for guest in range(2):
        fe = connect(device)
        try:
            (ns,) = wait_for(fe.received, "the name-service announcement")
            assert ns[1] == 53 and ns[2].startswith(b"rpmsg-openamp-demo-channel")
            fe.send(1024, ECHO_ADDR, b"hello %d" % guest)
            (reply,) = wait_for(fe.received, "the echo")
            assert reply == (ECHO_ADDR, 1024, b"hello %d" % guest)
        finally:
            fe.close()
        wait_for(lambda g=guest: device.guests == g + 1 or None, "the device to see the guest")


@pytest.mark.parametrize(
    "hostile, message",
    [
        (lambda fe: fe.raw_desc(0, GUEST_BASE + fe.mem.size - 8, 64), "outside the guest memory"),
        (lambda fe: fe.raw_desc(0, 0x10, 64), "outside the guest memory"),
        (lambda fe: fe.publish(NUM + 3), "out of range"),
    ],
    ids=["address-past-the-end", "address-below", "index-outside-ring"],
)
def test_hostile_ring_contents_are_refused_and_logged(device, caplog, hostile, message):
    fe = connect(device)
    try:
        wait_for(fe.received, "the announcement")
        with caplog.at_level(logging.WARNING):
            hostile(fe)
            wait_for(lambda: message in caplog.text or None, "the logged refusal")
        assert closed_by_peer(fe.sock)
    finally:
        fe.close()
    assert_serves(device)


def test_malformed_requests_close_only_that_connection(device, caplog):
    fe = FrontEnd(device.server.path)
    with caplog.at_level(logging.ERROR):
        fe.sock.sendall(vu.message(R.SET_MEM_TABLE, vu.MEM_TABLE_HEAD.pack(9, 0)))
        assert closed_by_peer(fe.sock)
        wait_for(lambda: "memory table with 9 regions" in caplog.text, "the logged error")
    fe.close()
    assert_serves(device)


def far_rings(fe: FrontEnd) -> None:
    """vring 1 placed 16 MiB past the memory."""
    fe.ring_off[1] = 16 << 20


@pytest.mark.parametrize(
    "memory_table, setup, message",
    [
        (None, far_rings, "is outside the guest memory table"),
        ("split", None, "is in guest memory region 1, not 0"),
    ],
    ids=["ring-outside-the-table", "rings-split-across-regions"],
)
def test_bad_ring_addresses_drop_only_that_guest(device, caplog, memory_table, setup, message):
    """SET_VRING_ADDR outside the memory table, or vring 1 in another region than
    vring 0: the guest is dropped with a logged error, the next one is served."""
    half = MEM_SIZE // 2
    fe = FrontEnd(device.server.path, ring1_at=half if memory_table else None)
    try:
        if setup is not None:
            setup(fe)
        fe.negotiate()
        if memory_table == "split":
            fe.set_memory(
                [
                    vu.MemRegion(GUEST_BASE, half, GUEST_BASE, 0),
                    vu.MemRegion(GUEST_BASE + half, half, GUEST_BASE + half, half),
                ]
            )
        else:
            fe.set_memory()
        with caplog.at_level(logging.ERROR):
            fe.set_rings()
            fe.go()
            assert closed_by_peer(fe.sock)
            wait_for(lambda: message in caplog.text, "the logged error")
        assert "bad vring addresses" in caplog.text
    finally:
        fe.close()
    assert_serves(device)


def test_a_slave_channel_that_is_not_a_socket_is_refused_and_closed(device, caplog):
    """Each SET_SLAVE_REQ_FD with a pipe gets an error reply and the device closes its
    copy of the pipe at once (the read end sees EOF while the connection lives on)."""
    fe = FrontEnd(device.server.path)
    try:
        fe.negotiate()
        with caplog.at_level(logging.WARNING):
            for _ in range(20):
                r, w = os.pipe()
                try:
                    reply = fe.request(R.SET_SLAVE_REQ_FD, b"", (w,))
                    os.close(w)
                    assert vu.u64(reply, "reply") == 1
                    assert select.select([r], [], [], TIMEOUT)[0] and os.read(r, 1) == b""
                finally:
                    os.close(r)
        wait_for(lambda: "non-socket fd" in caplog.text, "the logged refusal")
        a, b = socket.socketpair()
        with a, b:
            fe.ack(R.SET_SLAVE_REQ_FD, b"", (b.fileno(),))
        fe.set_memory()
        fe.set_rings()
        fe.go()
        wait_for(fe.received, "the announcement")
        fe.send(1024, ECHO_ADDR, b"after the refusals")
        assert wait_for(fe.received, "the echo") == [(ECHO_ADDR, 1024, b"after the refusals")]
    finally:
        fe.close()


def test_config_windows_beyond_the_protocol_limit_are_refused(device, caplog):
    """GET_CONFIG past VHOST_USER_MAX_CONFIG_SIZE (256) gets the protocol's error (an
    empty reply) instead of an allocation of the size asked; SET_CONFIG an error."""
    fe = FrontEnd(device.server.path)
    try:
        fe.negotiate()
        with caplog.at_level(logging.WARNING):
            for offset, size in ((0, 256 << 20), (200, 100), (0xFFFFFFFF, 1)):
                cfg = vu.CONFIG_HEAD.pack(offset, size, 0)
                assert fe.request(R.GET_CONFIG, cfg) == b""
                assert vu.u64(fe.request(R.SET_CONFIG, cfg), "reply") == 1
            wait_for(
                lambda: (
                    "GET_CONFIG refused: a window of 268435456 bytes at offset 0" in caplog.text
                ),
                "the logged refusal",
            )
        reply = fe.request(R.GET_CONFIG, vu.CONFIG_HEAD.pack(0, 8, 0))
        assert reply == vu.CONFIG_HEAD.pack(0, 8, 0) + bytes(8)
        fe.set_memory()
        fe.set_rings()
        fe.go()
        assert wait_for(fe.received, "the announcement")
    finally:
        fe.close()


def test_an_idle_client_does_not_block_other_guests(make_device):
    device = make_device(setup_timeout=60)
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with idle:
        idle.connect(device.server.path)
        assert_serves(device, b"served beside an idle client")
        assert still_open(idle)


def test_a_client_that_does_not_finish_its_setup_is_dropped(make_device, caplog):
    device = make_device(setup_timeout=0.5)
    with caplog.at_level(logging.ERROR):
        fe = FrontEnd(device.server.path)
        try:
            fe.negotiate()  # and nothing more
            assert closed_by_peer(fe.sock)
        finally:
            fe.close()
        wait_for(lambda: "did not finish its setup within 0.5 s" in caplog.text, "the log")
    assert_serves(device)


def test_connections_beyond_max_guests_are_refused(make_device, caplog):
    device = make_device(max_guests=1)
    with caplog.at_level(logging.ERROR):
        first = connect(device)
        try:
            wait_for(first.received, "the announcement")
            second = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with second:
                second.connect(device.server.path)
                assert closed_by_peer(second)
            assert "already serving 1 guest(s), the limit" in caplog.text
            first.send(1024, ECHO_ADDR, b"first still served")
            assert wait_for(first.received, "the echo") == [
                (ECHO_ADDR, 1024, b"first still served")
            ]
        finally:
            first.close()
    wait_for(lambda: len(device.sessions) == 0, "the first session to end")
    assert_serves(device)


def test_a_memory_file_that_can_be_sealed_is_sealed_against_shrinking(device):
    fe = connect(device, memory="sealable")
    try:
        wait_for(fe.received, "the announcement")
        with pytest.raises(PermissionError):
            os.ftruncate(fe.mem.fd, 4096)
        fe.send(1024, ECHO_ADDR, b"sealed")
        assert wait_for(fe.received, "the echo") == [(ECHO_ADDR, 1024, b"sealed")]
    finally:
        fe.close()


@pytest.mark.parametrize("memory", ["tmpfs", "memfd"])
def test_a_front_end_that_shrinks_its_memory_kills_only_its_session(device, caplog, memory):
    """A memory file that cannot be sealed (UML's tmpfs file, a memfd made without
    MFD_ALLOW_SEALING), shrunk after it was handed over: the next ring access raises
    SIGBUS in that guest's session process; the server logs it and serves the next."""
    fe = connect(device, memory=memory)
    try:
        wait_for(fe.received, "the announcement")
        with caplog.at_level(logging.ERROR):
            os.ftruncate(fe.mem.fd, 0)  # from here on, this side must not touch it either
            os.eventfd_write(fe.kicks[1], 1)
            assert closed_by_peer(fe.sock)
            wait_for(lambda: "died of SIGBUS" in caplog.text, "the logged SIGBUS")
    finally:
        fe.close()
    assert_serves(device)


def test_a_memory_file_shorter_than_its_region_is_refused(device, caplog):
    fe = FrontEnd(device.server.path)
    try:
        fe.negotiate()
        os.ftruncate(fe.mem.fd, MEM_SIZE // 2)
        with caplog.at_level(logging.ERROR):
            region = vu.MemRegion(GUEST_BASE, MEM_SIZE, GUEST_BASE, 0)
            socket.send_fds(
                fe.sock, [vu.message(R.SET_MEM_TABLE, vu.pack_mem_table([region]))], [fe.mem.fd]
            )
            assert closed_by_peer(fe.sock)
            wait_for(lambda: "past the end of its file" in caplog.text, "the logged error")
    finally:
        fe.close()
    assert_serves(device)


def test_a_second_server_on_the_same_socket_is_refused(device):
    with pytest.raises(AmplinkError) as exc:
        LinuxGuestDevice(device.server.path, resolve("amplink.firmware.echo").program())
    assert exc.value.errno == errno.EADDRINUSE
    assert f"pid {os.getpid()}" in str(exc.value)
    assert_serves(device)  # the first one still has its socket


def test_the_socket_is_free_again_after_a_server_stops(tmp_path):
    path = str(tmp_path / "again.sock")
    for _ in range(2):
        dev = LinuxGuestDevice(path, resolve("amplink.firmware.echo").program())
        dev.close()
    assert not os.path.exists(path) and not os.path.exists(path + ".lock")


def test_wire_checks():
    with pytest.raises(WireError, match="version"):
        vu.Header.unpack(vu.HEADER.pack(1, 0x2, 0))
    with pytest.raises(WireError, match="payload of"):
        vu.Header.unpack(vu.HEADER.pack(1, 0x1, 1 << 20))
    with pytest.raises(WireError, match="invalid"):
        vu.unpack_mem_table(vu.pack_mem_table([vu.MemRegion(2**64 - 4096, 8192, 0, 0)]))
    assert vu.reply(1, b"")[4:8] == (5).to_bytes(4, "little")
    assert not vu.ConfigRequest(0, 257, 0).in_bounds
    assert vu.ConfigRequest(0, 256, 0).in_bounds
