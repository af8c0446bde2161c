"""The OpenAMP linux-machine transport, amplink on both sides: ``amplink openamp remote``
runs as a real subprocess (the firmware side) and :class:`OpenAmpRemote` is its host,
in both socket arrangements.  Also: the layout's bytes, stale and foreign files, a peer
killed mid-traffic, a peer that shrinks the shared memory, and hostile ring contents.
The tests against OpenAMP's own C demos are in ``tests/openamp`` (``make test-openamp``).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amplink.errors import AddressError, AmplinkError, ResourceTableError, RpmsgError
from amplink.remoteproc.openamp import OpenAmpRemote
from amplink.rpmsg.aio import AsyncEndpoint
from amplink.rpmsg.chardev import RpmsgCtrl
from amplink.transport import shm_guard
from amplink.transport.openamp_linux import KickListener, ShmObject, connect
from amplink.wire import openamp_linux as ol
from amplink.wire import rsc_table as rt
from resources import snapshot
from rpmsg_helpers import Traffic

SERVICE = "rpmsg-openamp-demo-channel"
TIMEOUT = 20.0
_unique = itertools.count()
# The 88 bytes the port's server writes (reference, section 1.1).
TABLE_HEX = (
    "01000000 01000000 00000000 00000000 14000000 03000000 07000000 00000000"
    "01000000 00000000 00000000 00020000 00400000 00100000 00010000 01000000"
    "00000000 00800000 00100000 00010000 02000000 00000000"
)


@pytest.fixture
def names(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A unique shared-memory name and socket path; the object is gone afterwards."""
    shm = f"amplink-test-{os.getpid()}-{next(_unique)}"
    yield shm, str(tmp_path / "kick.sock")
    assert not os.path.exists(ol.shm_path(shm)), "the shared-memory object was left behind"


class Device:
    """``amplink openamp remote FIRMWARE`` as a subprocess."""

    def __init__(self, shm: str, sock: str, *, server: bool, firmware: str, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amplink.cli", "openamp", "remote", firmware,
             "--server" if server else "--client", "--shm", shm, "--socket", sock],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(TIMEOUT)
        self._log.close()
        return rc

    def log(self) -> str:
        return self.log_path.read_text()


def start_device(
    tmp_path: Path, shm: str, sock: str, *, server: bool, firmware: str = "amplink.firmware.echo"
) -> Device:
    return Device(
        shm, sock, server=server, firmware=firmware, log=tmp_path / f"device{next(_unique)}.log"
    )


def echo_all(ept, mtu: int) -> None:
    for size in range(1, mtu + 1):
        data = bytes((size + k) % 251 for k in range(size))
        ept.send(data)
        assert ept.recv(timeout=TIMEOUT).data == data


def test_resource_table_is_the_ports() -> None:
    table = ol.resource_table().build()
    assert table == bytes.fromhex(TABLE_HEX.replace(" ", ""))
    vdev = rt.parse(table).vdevs()[0]
    assert [(v.da, v.num, v.align) for v in vdev.vrings] == [
        (0x4000, 256, 0x1000),
        (0x8000, 256, 0x1000),
    ]


def test_shm_names() -> None:
    assert ol.shm_path("openamp.shm") == "/dev/shm/openamp.shm"
    assert ol.shm_path("/openamp.shm") == "/dev/shm/openamp.shm"
    assert ol.shm_path("/run/x/obj") == "/run/x/obj"
    for bad in ("", "/", "a/b", ".."):
        with pytest.raises(ValueError):
            ol.shm_path(bad)


@pytest.mark.parametrize("amplink_server", [False, True], ids=["device-serves", "host-serves"])
def test_host_and_remote_echo_every_size(tmp_path: Path, names, amplink_server: bool) -> None:
    shm, sock = names
    before = snapshot()
    dev = start_device(tmp_path, shm, sock, server=not amplink_server)
    try:
        with OpenAmpRemote(server=amplink_server, shm=shm, socket_path=sock) as rp:
            ept = rp.wait_channel(SERVICE, TIMEOUT).create_ept()
            assert rp.link is not None and rp.link.mtu == 496
            echo_all(ept, 496)
            # The device gave the host's send buffers back with their whole length, as
            # OpenAMP's device does (its host sizes the next send from it), not 0.
            used = ol.VRING1_DA + 0x2000 + 4  # vring 1's used ring: {id, len} x 256
            assert rp.session is not None
            ring = struct.unpack("=512I", bytes(rp.session.shm.region.mem[used : used + 2048]))
            assert all(ring[1::2]), "a used element with length 0"
            with pytest.raises(RpmsgError) as too_big:
                ept.send(bytes(497))
            assert too_big.value.errno == errno.EMSGSIZE
    finally:
        assert dev.stop() == 0, dev.log()
    after = snapshot()
    assert after["fds"] == before["fds"] and after["threads"] == before["threads"]
    assert after["shm"] == before["shm"]


def test_endpoint_files_and_asyncio_over_it(tmp_path: Path, names) -> None:
    shm, sock = names
    dev = start_device(tmp_path, shm, sock, server=True)
    try:
        with OpenAmpRemote(shm=shm, socket_path=sock) as rp:
            chan = rp.wait_channel(SERVICE, TIMEOUT)
            with RpmsgCtrl(chan, rp.bus).create_ept("mine", dst=chan.dst) as f:
                f.write(b"through an endpoint file")
                assert f.read() == b"through an endpoint file"

                async def talk() -> bytes:
                    ept = AsyncEndpoint(f)
                    await ept.send(b"and asyncio")
                    return await asyncio.wait_for(ept.recv(), TIMEOUT)

                assert asyncio.run(talk()) == b"and asyncio"
    finally:
        assert dev.stop() == 0, dev.log()


def test_peer_killed_mid_traffic_then_met_again(tmp_path: Path, names) -> None:
    shm, sock = names
    dev = start_device(tmp_path, shm, sock, server=True)
    rp = OpenAmpRemote(shm=shm, socket_path=sock, send_timeout=TIMEOUT)
    try:
        rp.start(TIMEOUT)
        ept = rp.wait_channel(SERVICE, TIMEOUT).create_ept()
        released = threading.Event()
        ept.on_release(lambda _e, err: released.set())
        traffic = Traffic(ept, b"x" * 64, TIMEOUT)
        time.sleep(0.2)  # let traffic flow (the kill below must land mid-traffic)
        dev.proc.kill()
        errors = traffic.join(TIMEOUT)
        assert released.wait(TIMEOUT)
        assert errors and errors[0].errno == errno.EPIPE, errors
        assert not rp.bus.devices(SERVICE), "the channel outlived its peer"
        with pytest.raises(RpmsgError) as dead:
            ept.send(b"after")
        assert dead.value.errno == errno.EPIPE
        dev.stop()
        rp.stop()
        # The killed device left its object (table at DRIVER_OK, used rings): the
        # restarted one writes a fresh table and the host resets the rings.
        assert os.path.exists(ol.shm_path(shm))
        dev = start_device(tmp_path, shm, sock, server=True)
        rp.start(TIMEOUT)
        echo_all(rp.wait_channel(SERVICE, TIMEOUT).create_ept(), 32)
    finally:
        rp.stop()
        dev.stop()


def test_stale_and_foreign_socket_files(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a socket file nobody listens on
    KickListener(path).close()
    assert not os.path.exists(path)
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen(1)
    with pytest.raises(AmplinkError) as busy:
        KickListener(path)
    assert busy.value.errno == errno.EADDRINUSE
    live.close()
    os.unlink(path)
    Path(path).write_text("not a socket")
    with pytest.raises(AmplinkError) as other:
        KickListener(path)
    assert other.value.errno == errno.EEXIST
    with pytest.raises(AmplinkError) as nobody:
        connect(str(tmp_path / "none"), [], 0.1)
    assert nobody.value.errno == errno.ETIMEDOUT


def test_shm_object_checks(tmp_path: Path, names) -> None:
    shm, _sock = names
    path = ol.shm_path(shm)
    with open(path, "wb") as f:
        f.write(b"stale" * 10)  # a small stale object: grown to the layout's size
    obj = ShmObject(shm, owner=True)
    try:
        assert os.stat(path).st_size == ol.SHM_SIZE
        assert not obj.sealed and obj.guard is not None
    finally:
        obj.close()
    assert not os.path.exists(path)
    os.symlink(str(tmp_path), path)
    try:
        with pytest.raises(OSError) as link:
            ShmObject(shm, owner=False)
        assert link.value.errno == errno.ELOOP
    finally:
        os.unlink(path)


def test_a_sealable_object_is_sealed() -> None:
    fd = os.memfd_create("openamp-test", os.MFD_ALLOW_SEALING)
    try:
        obj = ShmObject(f"/proc/{os.getpid()}/fd/{fd}", owner=False)
        try:
            assert obj.sealed and obj.guard is None
            with pytest.raises(PermissionError):
                os.ftruncate(fd, 4096)
        finally:
            obj.close()
    finally:
        os.close(fd)


class HostilePeer:
    """A device that connects and then misbehaves, written by the test."""

    def __init__(self, sock: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                self.sock.connect(sock)
                return
            except (FileNotFoundError, ConnectionRefusedError):
                assert time.monotonic() < deadline
                time.sleep(0.01)

    def kick(self) -> None:
        self.sock.send(b"\x01")


def started_host(shm: str, sock: str) -> tuple[OpenAmpRemote, HostilePeer]:
    """amplink's host as the server, started in the main thread (where the shared-memory
    guard's SIGBUS handler can be installed), and a hostile device connected to it."""
    rp = OpenAmpRemote(server=True, shm=shm, socket_path=sock)
    peers: list[HostilePeer] = []
    t = threading.Thread(target=lambda: peers.append(HostilePeer(sock)))
    t.start()
    rp.start(TIMEOUT)
    t.join(TIMEOUT)
    assert rp.link is not None and peers
    return rp, peers[0]


def test_a_peer_that_shrinks_the_shm_loses_its_link_not_amplink(names) -> None:
    shm, sock = names
    rp, peer = started_host(shm, sock)
    link = rp.link
    assert link is not None and rp.session is not None
    guard = rp.session.shm.guard
    assert guard is not None
    survived = shm_guard.survived
    path = ol.shm_path(shm)
    try:
        # Hold the guard back so that amplink's next access surely faults: it must wait
        # in the SIGBUS handler until the guard (continued 0.3 s later) grows the file.
        os.kill(guard.pid, signal.SIGSTOP)
        subprocess.run(
            [sys.executable, "-c", f"import os; os.ftruncate(os.open({path!r}, os.O_RDWR), 4096)"],
            check=True,
        )
        assert os.stat(path).st_size == 4096
        resume = subprocess.Popen(["sh", "-c", f"sleep 0.3; kill -CONT {guard.pid}"])
        link.rx_pending()  # reads vring 0's used index at 0x6002: beyond the end
        resume.wait(TIMEOUT)
        assert shm_guard.survived > survived
        deadline = time.monotonic() + TIMEOUT
        while link.failure is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert link.failure is not None and link.failure.errno == errno.EFAULT
        assert "shrank" in str(link.failure)
        assert os.stat(path).st_size == ol.SHM_SIZE
        with pytest.raises(RpmsgError) as dead:
            link.send(0x400, 0x400, b"x", block=False, timeout=None)
        assert dead.value.errno == errno.EPIPE
    finally:
        os.kill(guard.pid, signal.SIGCONT)
        peer.sock.close()
        rp.stop()


def test_hostile_used_index_breaks_only_the_link(names) -> None:
    shm, sock = names
    rp, peer = started_host(shm, sock)
    link = rp.link
    assert link is not None
    try:
        with open(ol.shm_path(shm), "r+b") as f:
            f.seek(ol.VRING0_DA + 0x2000 + 2)  # vring 0's used.idx: far past what was posted
            f.write((1000).to_bytes(2, "little"))
        peer.kick()
        deadline = time.monotonic() + TIMEOUT
        while link.failure is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert link.failure is not None and "used index" in str(link.failure)
    finally:
        peer.sock.close()
        rp.stop()


def test_a_hostile_table_is_refused(names) -> None:
    shm, _sock = names
    obj = ShmObject(shm, owner=True)
    try:
        table = bytearray(ol.resource_table().build())
        table[0x30:0x34] = (0x7F000).to_bytes(4, "little")  # vring 0 past the object's end
        obj.region.mem[: len(table)] = table
        with pytest.raises(AddressError):
            obj.vdev()
        table[0x18:0x1C] = (5).to_bytes(4, "little")  # not an rpmsg vdev
        obj.region.mem[: len(table)] = table
        with pytest.raises(ResourceTableError):
            obj.vdev()
    finally:
        obj.close()
