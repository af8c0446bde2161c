"""The vhost-user device side against a Python front end: the echo firmware answers,
hostile ring contents are refused with a logged error and the device keeps serving
the next guest, and a start releases everything it made."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from amplink.errors import WireError
from amplink.remote.program import load_program
from amplink.remote.vhost import LinuxGuestDevice
from amplink.remoteproc.fwref import resolve
from amplink.wire import vhost_user as vu
from resources import snapshot
from vhost_frontend import GUEST_BASE, NUM, FrontEnd

ECHO_ADDR = 0x400
TIMEOUT = 10.0


@pytest.fixture
def device(tmp_path):
    before = snapshot()
    dev = LinuxGuestDevice(str(tmp_path / "vu.sock"), spin=False)
    main = load_program(*resolve("amplink.firmware.echo").program())
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(dev.run(main)), name="device")
    t.start()
    yield dev
    dev.stop()
    t.join(TIMEOUT)
    assert result == [0]
    assert snapshot() == before


def wait_for(cond, what: str):
    deadline = time.monotonic() + TIMEOUT
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)
    return got


def connect(dev) -> FrontEnd:
    fe = FrontEnd(dev.server.path)
    fe.start()
    return fe


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
    finally:
        fe.close()
    fe = connect(device)  # the device is alive and serves the next guest
    try:
        wait_for(fe.received, "the announcement to the next guest")
        fe.send(1024, ECHO_ADDR, b"still here")
        assert wait_for(fe.received, "the echo") == [(ECHO_ADDR, 1024, b"still here")]
    finally:
        fe.close()


def test_malformed_requests_close_only_that_connection(device, caplog):
    fe = FrontEnd(device.server.path)
    with caplog.at_level(logging.ERROR):
        fe.sock.sendall(vu.message(vu.Request.SET_MEM_TABLE, vu.MEM_TABLE_HEAD.pack(9, 0)))
        assert fe.sock.recv(1) == b""  # closed
    assert "memory table with 9 regions" in caplog.text
    fe.close()
    fe = connect(device)
    try:
        assert wait_for(fe.received, "the announcement")
    finally:
        fe.close()


def test_wire_checks():
    with pytest.raises(WireError, match="version"):
        vu.Header.unpack(vu.HEADER.pack(1, 0x2, 0))
    with pytest.raises(WireError, match="payload of"):
        vu.Header.unpack(vu.HEADER.pack(1, 0x1, 1 << 20))
    with pytest.raises(WireError, match="invalid"):
        vu.unpack_mem_table(vu.pack_mem_table([vu.MemRegion(2**64 - 4096, 8192, 0, 0)]))
    assert vu.reply(1, b"")[4:8] == (5).to_bytes(4, "little")
