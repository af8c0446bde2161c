"""Checks that run inside the UML guest, against Linux's rpmsg stack served by
amplink's device side with ``fw_conformance.py``, through ``amplink.linux``.

Collected only when named explicitly (``tests/linux/test_linux_guest.py`` boots the
guest with ``pytest`` on this file).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import select
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from fw_conformance import BIND, CONTROL, ECHO, GREETING, RUNTIME

from amplink.errors import RpmsgError
from amplink.linux import (
    LinuxCtrl,
    LinuxEptFile,
    LinuxRpmsgChar,
    bind_chrdev,
    channels,
    open_tty,
)
from amplink.linux.rpmsg import open_ept, wait_path
from amplink.rpmsg.aio import AsyncEndpoint

MTU = 496
TIMEOUT = 10.0


def node_for(dst: int) -> LinuxEptFile:
    """Open the endpoint device talking to the firmware's address ``dst``."""
    return open_ept(lambda d: d.dst == dst, f"no endpoint device for {dst:#x}", TIMEOUT)


def control(command: str) -> bytes:
    with node_for(CONTROL) as f:
        f.write(command.encode())
        return f.read(TIMEOUT)


def test_announced_channels_appear_as_nodes():
    assert Path("/dev/rpmsg_ctrl0").exists()
    names = {(c.name, c.dst) for c in channels()}
    assert {("rpmsg-raw", ECHO), ("rpmsg-raw", CONTROL), ("rpmsg-tty", 0x401)} <= names
    raw = LinuxRpmsgChar().nodes()
    assert {ECHO, CONTROL} <= {d.dst for d in raw}
    wait_path(Path("/dev/ttyRPMSG0"))


def test_echo_every_size_is_byte_exact_and_497_is_emsgsize():
    with node_for(ECHO) as f:
        for size in range(1, MTU + 1):
            payload = os.urandom(size)
            assert f.write(payload) == size
            assert f.read(TIMEOUT) == payload, size
        with pytest.raises(RpmsgError) as exc:
            f.write(bytes(MTU + 1))
        assert exc.value.errno == errno.EMSGSIZE


def test_ten_thousand_round_trips():
    with node_for(ECHO) as f:
        for i in range(10_000):
            payload = i.to_bytes(4, "little") * 16
            f.write(payload)
            assert f.read(TIMEOUT) == payload


def test_tty_echo():
    fd = open_tty(0)
    try:
        os.write(fd, b"hello over ttyRPMSG")
        got = b""
        while len(got) < 19:
            got += os.read(fd, 64)
        assert got == b"hello over ttyRPMSG"
    finally:
        os.close(fd)


def test_ctrl_create_ept_and_destroy():
    with LinuxCtrl() as ctrl:
        f = ctrl.create_ept("guest-ept", 0x600, ECHO)
        node = Path(f.path)
        f.write(b"through a created endpoint")
        assert f.read(TIMEOUT) == b"through a created endpoint"
        f.destroy()
        wait_path(node, gone=True)


def test_ctrl_create_and_release_dev_reach_the_remote_which_writes_first():
    with LinuxCtrl() as ctrl:
        ctrl.create_dev("rpmsg-raw", 0x500)
        f = open_ept(lambda d: d.src == 0x500, "no endpoint device at 0x500", TIMEOUT)
        assert f.read(TIMEOUT) == GREETING  # the remote spoke first
        f.close()
        ctrl.release_dev("rpmsg-raw", 0x500)
    events = json.loads(control("events"))
    assert ["rpmsg-raw", 0x500, True] in events
    assert ["rpmsg-raw", 0x500, False] in events


def test_runtime_announce_and_destroy():
    assert control("announce") == b"ok announce"
    f = node_for(RUNTIME)
    node = Path(f.path)
    f.write(b"new channel")
    assert f.read(TIMEOUT) == b"new channel"
    assert control("destroy") == b"ok destroy"
    wait_path(node, gone=True)
    with pytest.raises(RpmsgError) as exc:
        f.write(b"stale")
    assert exc.value.errno == errno.EPIPE
    f.close()


def test_bind_a_channel_to_rpmsg_chrdev_with_driver_override():
    (chan,) = [c for c in channels() if c.name == "guest-bind"]
    assert chan.driver is None
    bind_chrdev(chan)
    with node_for(BIND) as f:
        f.write(b"bound")
        assert f.read(TIMEOUT) == b"bound"
    assert next(c for c in channels() if c.name == "guest-bind").driver == "rpmsg_chrdev"


def test_asyncio_over_the_kernel_file():
    async def talk() -> list[bytes]:
        ept = AsyncEndpoint(node_for(ECHO))
        try:
            out = []
            for i in range(50):
                await ept.send(b"async %d" % i)
                out.append(await ept.recv())
            return out
        finally:
            ept.file.close()

    assert asyncio.run(talk()) == [b"async %d" % i for i in range(50)]


def stall_and_fill(f: LinuxEptFile, ctl: LinuxEptFile, stall: float) -> list[bytes]:
    """Make the firmware stop taking buffers for ``stall`` s (through ``ctl``), then
    send on ``f`` without blocking until the kernel has no free send buffer; what was
    sent."""
    ctl.write(b"stall %g" % stall)
    assert ctl.read(TIMEOUT) == b"stalling"
    sent = []
    f.nonblocking = True
    while True:
        payload = b"queued %d" % len(sent)
        try:
            f.write(payload)
        except RpmsgError as exc:
            assert exc.errno == errno.EAGAIN
            break
        sent.append(payload)
    f.nonblocking = False
    assert len(sent) >= 200, len(sent)  # Linux 6.1 keeps 256 send buffers
    return sent


def test_writes_complete_when_the_kernel_frees_a_send_buffer():
    """virtio_rpmsg_bus reports no POLLOUT: the file says so, and a write that has to
    wait for a send buffer times out when asked to and otherwise completes once the
    firmware takes buffers again, blocking or through asyncio; nothing is lost."""
    with node_for(ECHO) as f, node_for(CONTROL) as ctl:
        assert not f.tx_poll and f.writer_fileno() is None
        assert not f.poll() & select.POLLOUT
        sent = stall_and_fill(f, ctl, 3.0)
        with pytest.raises(RpmsgError) as exc:
            f.write(b"too early", timeout=0.5)
        assert exc.value.errno == errno.ETIMEDOUT
        f.write(b"blocking", timeout=TIMEOUT)
        assert ctl.read(TIMEOUT) == b"ok stall 3"
        assert [f.read(TIMEOUT) for _ in range(len(sent) + 1)] == [*sent, b"blocking"]

        sent = stall_and_fill(f, ctl, 1.0)

        async def send_async() -> None:
            await asyncio.wait_for(AsyncEndpoint(f).send(b"async"), TIMEOUT)

        asyncio.run(send_async())
        assert ctl.read(TIMEOUT) == b"ok stall 1"
        f.nonblocking = False
        assert [f.read(TIMEOUT) for _ in range(len(sent) + 1)] == [*sent, b"async"]
