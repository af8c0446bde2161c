"""The OpenAMP linux-machine transport, amplink on both sides: ``amplink openamp remote``
runs as a real subprocess (the firmware side, each host in a session process) and
:class:`OpenAmpRemote` is its host (its rings in a mirror, the peer's object mapped only
by its relay process), in both socket arrangements.  Also: the layout's bytes, stale
and foreign files, a peer killed mid-traffic, peers that shrink the shared memory
(from the peer's side, in both roles), hostile rings and tables, and ``--keep``.
The tests against OpenAMP's own C demos are in ``tests/openamp`` (``make test-openamp``).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from amplink.errors import (
    AddressError,
    AmplinkError,
    ResourceTableError,
    RpmsgError,
    VirtqueueError,
)
from amplink.host import OpenAmpRemote
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import SharedRegion
from amplink.rpmsg.aio import AsyncEndpoint
from amplink.rpmsg.chardev import RpmsgCtrl
from amplink.rpmsg.tty import RpmsgTtyDriver
from amplink.transport.openamp_linux import KickListener, ShmFile, check_table, connect
from amplink.transport.openamp_relay import Relay
from amplink.virtio.constants import VIRTIO_CONFIG_S_DRIVER_OK
from amplink.virtio.vdev import VdevConfig
from amplink.virtio.virtqueue import VirtqueueDevice, VirtqueueDriver
from amplink.wire import openamp_linux as ol
from amplink.wire import rsc_table as rt
from amplink.wire.vring import VringLayout
from kept_host import KeptHost
from resources import snapshot
from rpmsg_helpers import Traffic
from waiting import wait_for

SERVICE = "rpmsg-openamp-demo-channel"
TIMEOUT = 20.0
_unique = itertools.count()
# The 88 bytes the port's server writes (reference, section 1.1).
TABLE_HEX = (
    "01000000 01000000 00000000 00000000 14000000 03000000 07000000 00000000"
    "01000000 00000000 00000000 00020000 00400000 00100000 00010000 01000000"
    "00000000 00800000 00100000 00010000 02000000 00000000"
)
STATUS_AT = 0x14 + rt.VDEV_STATUS_OFF  # the vdev's status byte in the port's table


@pytest.fixture
def names(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A unique shared-memory name and socket path; the object is gone afterwards."""
    shm = f"amplink-test-{os.getpid()}-{next(_unique)}"
    yield shm, str(tmp_path / "kick.sock")
    assert not os.path.exists(ol.shm_path(shm)), "the shared-memory object was left behind"


class Device:
    """``amplink openamp remote FIRMWARE`` as a subprocess (verbose: its log is read)."""

    def __init__(
        self, shm: str, sock: str, *, server: bool, firmware: str, log: Path, extra: list[str]
    ) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amplink.app.cli", "-v", "openamp", "remote", firmware,
             "--server" if server else "--client", "--shm", shm, "--socket", sock, *extra],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> int:
        """SIGTERM if it still runs; its exit status, 0 when that SIGTERM ended it (with
        143, as every amplink command that a SIGTERM ends)."""
        terminated = self.proc.poll() is None
        if terminated:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(TIMEOUT)
        self._log.close()
        return 0 if terminated and rc == 128 + signal.SIGTERM else rc

    def log(self) -> str:
        return self.log_path.read_text()


def start_device(
    tmp_path: Path,
    shm: str,
    sock: str,
    *,
    server: bool,
    firmware: str = "amplink.firmware.echo",
    extra: tuple[str, ...] = (),
) -> Device:
    log = tmp_path / f"device{next(_unique)}.log"
    return Device(shm, sock, server=server, firmware=firmware, log=log, extra=list(extra))


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
    assert table[STATUS_AT] == 0


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
            # OpenAMP's device does (its host sizes the next send from it), not 0: read
            # from the object as the relay left it (pread: this process maps nothing).
            used = ol.VRING1_DA + 0x2000 + 4  # vring 1's used ring: {id, len} x 256
            with open(ol.shm_path(shm), "rb") as f:
                ring = struct.unpack("=512I", os.pread(f.fileno(), 2048, used))
            assert all(ring[1::2]), "a used element with length 0"
            with pytest.raises(RpmsgError) as too_big:
                ept.send(bytes(497))
            assert too_big.value.errno == errno.EMSGSIZE
            assert "/dev/shm/" + shm not in snapshot()["shm"]  # only the relay maps it
    finally:
        assert dev.stop() == 0, dev.log()
    after = snapshot()
    assert after["fds"] == before["fds"] and after["threads"] == before["threads"]
    assert after["shm"] == before["shm"] and after["children"] == before["children"]


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


def test_a_tty_over_it(tmp_path: Path, names) -> None:
    """The console firmware's ``rpmsg-tty`` channel becomes a pty on amplink's host."""
    shm, sock = names
    dev = start_device(tmp_path, shm, sock, server=True, firmware="amplink.firmware.console")
    driver = RpmsgTtyDriver()
    try:
        with OpenAmpRemote(shm=shm, socket_path=sock) as rp:
            rp.bus.register_driver(driver)
            fd = os.open(driver.wait_tty(TIMEOUT).path, os.O_RDWR | os.O_NOCTTY)
            try:
                sent = bytes(range(256)) * 3  # more than one message's worth
                os.write(fd, sent)
                got = b""
                while len(got) < len(sent):
                    assert select.select([fd], [], [], TIMEOUT)[0], f"{len(got)} bytes back"
                    got += os.read(fd, len(sent) - len(got))
                assert got == sent
            finally:
                os.close(fd)
        assert driver.ttys == {}  # the pty went with the link
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
        wait_for(lambda: rp.link is not None and rp.link.messages_out > 50, "traffic")
        dev.proc.kill()  # the server; its session sees its end and exits too
        errors = traffic.join(TIMEOUT)
        assert released.wait(TIMEOUT)
        assert errors and errors[0].errno == errno.EPIPE, errors
        assert rp.failure is not None and rp.failure.errno == errno.EPIPE
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


@pytest.mark.parametrize("amplink_server", [False, True], ids=["device-serves", "host-serves"])
def test_remote_once_exits_0_when_its_first_host_leaves(
    tmp_path: Path, names, amplink_server: bool
) -> None:
    shm, sock = names
    dev = start_device(tmp_path, shm, sock, server=not amplink_server, extra=("--once",))
    try:
        with OpenAmpRemote(server=amplink_server, shm=shm, socket_path=sock) as rp:
            echo_all(rp.wait_channel(SERVICE, TIMEOUT).create_ept(), 8)
        assert dev.proc.wait(TIMEOUT) == 0, dev.log()  # no signal: it ended by itself
    finally:
        assert dev.stop() == 0, dev.log()


def test_listening_sockets_one_server_per_path(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a socket file nobody listens on, no lock: replaced
    first = KickListener(path)
    try:
        with pytest.raises(AmplinkError) as busy:
            KickListener(path)
        assert busy.value.errno == errno.EADDRINUSE
        assert f"pid {os.getpid()}" in busy.value.strerror
    finally:
        first.close()
    assert not os.path.exists(path) and not os.path.exists(path + ".lock")
    Path(path).write_text("not a socket")
    with pytest.raises(AmplinkError) as other:
        KickListener(path)
    assert other.value.errno == errno.EEXIST
    assert not os.path.exists(path + ".lock")
    with pytest.raises(AmplinkError) as nobody:
        connect(str(tmp_path / "none"), [], 0.1)
    assert nobody.value.errno == errno.ETIMEDOUT


def test_shm_file_checks(tmp_path: Path, names) -> None:
    shm, _sock = names
    path = ol.shm_path(shm)
    with open(path, "wb") as f:
        f.write(b"stale" * 10)  # a small stale object: grown to the layout's size
    obj = ShmFile(shm, owner=True)
    try:
        assert os.stat(path).st_size == ol.SHM_SIZE and not obj.created
        obj.write_table()
        _page, vdev = obj.read_table()
        assert vdev.id == ol.VDEV_ID and len(vdev.vrings) == 2
    finally:
        obj.close()
    assert not os.path.exists(path)
    with pytest.raises(AmplinkError) as missing:
        ShmFile(shm, owner=False, create=False)  # a client never creates it
    assert missing.value.errno == errno.ENOENT
    assert not os.path.exists(path)
    os.symlink(str(tmp_path), path)
    try:
        with pytest.raises(OSError) as link:
            ShmFile(shm, owner=False)
        assert link.value.errno == errno.ELOOP
    finally:
        os.unlink(path)
    with pytest.raises(AmplinkError) as bad:
        ShmFile("a/b", owner=False)
    assert bad.value.errno == errno.EINVAL


def test_hostile_tables_are_refused() -> None:
    good = ol.resource_table().build()
    page = bytearray(good) + bytes(0x1000 - len(good))
    assert check_table(bytes(page), "x").vrings[1].da == 0x8000
    cases = [
        (0x30, 0x7F000, AddressError),  # vring 0 past the object's end
        (0x30, 0x10000, AddressError),  # vring 0 in the buffer pool
        (0x44, 0x4000, AddressError),  # vring 1 on top of vring 0
        (0x18, 5, ResourceTableError),  # not an rpmsg vdev
        (0x38, 1024, ResourceTableError),  # 1024 + 256 buffers do not fit the pool
    ]
    for offset, value, error in cases:
        bad = bytearray(page)
        bad[offset : offset + 4] = value.to_bytes(4, "little")
        with pytest.raises(error):
            check_table(bytes(bad), "x")


class HostilePeer:
    """A device that connects and then misbehaves, written by the test.  It never maps
    the object: it writes and shrinks it with file calls."""

    def __init__(self, sock: str, shm: str) -> None:
        self.path = ol.shm_path(shm)
        self.sock = socket.socket(socket.AF_UNIX)
        wait_for(lambda: self._connect(sock), "the host to listen")

    def _connect(self, sock: str) -> bool:
        try:
            self.sock.connect(sock)
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        return True

    def kick(self) -> None:
        self.sock.send(b"\x01")

    def status(self) -> int:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return os.pread(fd, 1, STATUS_AT)[0]
        finally:
            os.close(fd)

    def write(self, offset: int, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)


def started_host(shm: str, sock: str) -> tuple[OpenAmpRemote, HostilePeer]:
    """amplink's host as the server, and a hostile device connected to it, once the
    relay brought the device's side up (DRIVER_OK in the object)."""
    rp = OpenAmpRemote(server=True, shm=shm, socket_path=sock)
    peers: list[HostilePeer] = []
    t = threading.Thread(target=lambda: peers.append(HostilePeer(sock, shm)))
    t.start()
    rp.start(TIMEOUT)
    t.join(TIMEOUT)
    assert rp.link is not None and peers
    wait_for(lambda: peers[0].status() & VIRTIO_CONFIG_S_DRIVER_OK, "DRIVER_OK in the object")
    return rp, peers[0]


def test_a_peer_that_shrinks_the_shm_ends_its_link_not_amplink(names) -> None:
    """The peer shrinks the object and kicks: the relay's next access faults and the
    relay dies of SIGBUS; amplink's host sees EFAULT on the link, its users get EPIPE,
    and this process lives on and can meet the next peer."""
    shm, sock = names
    before = snapshot()
    rp, peer = started_host(shm, sock)
    link = rp.link
    assert link is not None
    ept = link.endpoints.create(None)
    try:
        os.truncate(peer.path, 4096)  # from the peer's side: the rings are gone
        peer.kick()
        wait_for(lambda: rp.failure is not None, "the link to fail")
        assert rp.failure is not None and rp.failure.errno == errno.EFAULT
        assert "SIGBUS" in rp.failure.strerror and "shorter" in rp.failure.strerror
        assert link.failure is not None and ept.released is not None
        with pytest.raises(RpmsgError) as dead:
            link.send(ept.addr, 0x400, b"x", block=False, timeout=None)
        assert dead.value.errno == errno.EPIPE
    finally:
        peer.sock.close()
        rp.stop()
    after = snapshot()
    assert after["fds"] == before["fds"] and after["children"] == before["children"]
    assert after["threads"] == before["threads"]


def test_hostile_used_index_ends_only_the_link(names) -> None:
    shm, sock = names
    rp, peer = started_host(shm, sock)
    try:
        peer.write(ol.VRING0_DA + 0x2000 + 2, (1000).to_bytes(2, "little"))  # used.idx
        peer.kick()
        wait_for(lambda: rp.failure is not None, "the link to fail")
        assert rp.failure is not None and "used index" in rp.failure.strerror
        assert rp.link is None or rp.link.failure is not None
    finally:
        peer.sock.close()
        rp.stop()


def test_a_host_that_shrinks_the_shm_ends_its_session_not_the_server(tmp_path: Path, names) -> None:
    """Remote role: a host connects to ``amplink openamp remote``, brings its driver up
    (DRIVER_OK, no receive buffers: the firmware's announcement waits for one), then
    shrinks the object and kicks.  Its session dies of SIGBUS, the server logs why and
    serves the next host."""
    shm, sock = names
    dev = start_device(tmp_path, shm, sock, server=True)
    try:
        peer = HostilePeer(sock, shm)
        peer.write(STATUS_AT, bytes([0x7]))  # ACKNOWLEDGE | DRIVER | DRIVER_OK
        peer.kick()
        wait_for(lambda: "the host's rpmsg driver is up" in dev.log(), "the session to start")
        os.truncate(peer.path, 4096)
        peer.kick()
        wait_for(lambda: "died of SIGBUS" in dev.log(), "the logged SIGBUS")
        assert "made the shared-memory object shorter" in dev.log()
        peer.sock.close()
        os.truncate(peer.path, ol.SHM_SIZE)  # not needed: the server writes a fresh table
        with OpenAmpRemote(shm=shm, socket_path=sock) as rp:
            echo_all(rp.wait_channel(SERVICE, TIMEOUT).create_ept(), 16)
        assert dev.proc.poll() is None
    finally:
        assert dev.stop() == 0, dev.log()


def test_a_host_that_breaks_its_rings_is_dropped_and_the_next_served(tmp_path: Path, names) -> None:
    """Remote role: a host brings its driver up, then claims 1000 buffers in its send
    ring (256 entries) and kicks.  Its session drops it with the virtqueue's reason, the
    server lives on and serves the next host."""
    shm, sock = names
    dev = start_device(tmp_path, shm, sock, server=True)
    try:
        peer = HostilePeer(sock, shm)
        peer.write(STATUS_AT, bytes([0x7]))
        peer.kick()
        wait_for(lambda: "the host's rpmsg driver is up" in dev.log(), "the session to start")
        peer.write(ol.VRING1_DA + 0x1000 + 2, (1000).to_bytes(2, "little"))  # avail.idx
        peer.kick()
        wait_for(lambda: "the host broke its rings" in dev.log(), "the host to be dropped")
        peer.sock.close()
        with OpenAmpRemote(shm=shm, socket_path=sock) as rp:
            echo_all(rp.wait_channel(SERVICE, TIMEOUT).create_ept(), 16)
        assert dev.proc.poll() is None
    finally:
        assert dev.stop() == 0, dev.log()


def test_keep_prints_channels_and_messages_and_sends_typed_lines(tmp_path: Path, names) -> None:
    shm, sock = names
    dev = start_device(tmp_path, shm, sock, server=True)
    host = KeptHost("--shm", shm, "--socket", sock, timeout=TIMEOUT)
    try:
        host.wait_for(f"channel {SERVICE} from address")
        host.type("hello over the kept link")
        host.type(f"{SERVICE}: to the channel by name")
        host.wait_for(f"{SERVICE} <- ", "hello over the kept link")
        line = host.wait_for(f"{SERVICE} <- ", "to the channel by name")
        assert f"{SERVICE}:" not in line.split("<- ")[1]  # the prefix chose the channel
        assert host.interrupt() == 130, "".join(host.lines)
    finally:
        host.close()
        assert dev.stop() == 0, dev.log()


class RelayBench:
    """The relay's two sides in one process: the host's driver halves on a mirror, the
    peer's device halves on an object (both plain regions here), no I/O."""

    def __init__(self) -> None:
        self.mirror = SharedRegion.create(ol.SHM_SIZE, "mirror")
        self.obj = SharedRegion.create(ol.SHM_SIZE, "object")
        table = ol.resource_table().build()
        for region in (self.mirror, self.obj):
            region.mem[: len(table)] = table
        entry = rt.parse(table).vdevs()[0]
        self.relay = Relay(self.mirror, self.obj, entry, "t")
        self.host_cfg = VdevConfig(self.mirror, 0, entry)
        self.peer_cfg = VdevConfig(self.obj, 0, entry)
        parts = [VringLayout(v.num, v.align).at(v.da) for v in entry.vrings]
        self.host_rx = VirtqueueDriver(self.mirror, parts[0], "host-rx")
        self.host_tx = VirtqueueDriver(self.mirror, parts[1], "host-tx")
        ident = AddressMap.identity(ol.SHM_SIZE).translate
        self.peer_tx = VirtqueueDevice(self.obj, parts[0], "peer-tx", ident, writable=True)
        self.peer_rx = VirtqueueDevice(self.obj, parts[1], "peer-rx", ident, writable=False)

    def close(self) -> None:
        self.mirror.close()
        self.obj.close()


def test_the_relay_moves_buffers_both_ways() -> None:
    b = RelayBench()
    try:
        assert b.relay.sync_config() is False and b.relay.pump() == (False, False)
        for i in range(4):  # the host's receive buffers, in the mirror's pool
            b.host_rx.add(0x10000 + i * 512, 512, True, i)
        b.host_cfg.gfeatures = 1
        b.host_cfg.status = 0x7
        assert b.relay.sync_config() is True  # the peer's side comes up: kick it
        assert b.peer_cfg.status == 0x7 and b.peer_cfg.gfeatures == 1
        # host -> peer: the same bytes arrive in the object, used length passed back
        b.mirror.mem[0x30000:0x30005] = b"hello"
        b.host_tx.add(0x30000, 5, False, 99)
        kick_peer, _ = b.relay.pump()
        head, off, length = b.peer_rx.get()
        assert kick_peer and bytes(b.obj.mem[off : off + length]) == b"hello"
        b.peer_rx.put(head, 5)
        b.host_tx.disable_cb()  # as the host's driver does while no sender waits
        assert b.relay.pump() == (False, False)  # returned, and no interrupt asked for
        assert b.host_tx.get() == (99, 5)  # the used length as the peer wrote it
        # peer -> host: into the host's next receive buffer, with the length written
        for k in range(5):
            head, off, _ = b.peer_tx.get()
            b.obj.mem[off : off + 3] = bytes([k]) * 3
            b.peer_tx.put(head, 3)
        _, kick_host = b.relay.pump()
        assert kick_host
        got = [b.host_rx.get() for _ in range(4)]
        assert [g[1] for g in got] == [3] * 4  # four buffers posted, four delivered
        assert bytes(b.mirror.mem[0x10000:0x10003]) == b"\x00" * 3
        assert b.host_rx.get() is None  # the fifth waits in the object for a buffer
        b.host_rx.add(0x10000, 512, True, 0)
        b.relay.pump()
        assert b.host_rx.get() == (0, 3) and bytes(b.mirror.mem[0x10000:0x10003]) == b"\x04" * 3
        b.host_cfg.status = 0  # the host resets its driver: the relay's work is done
        assert b.relay.sync_config() is None
    finally:
        b.close()


USED0 = ol.VRING0_DA + 0x2000  # the peer's send ring's used ring: flags, idx, {id, len}...


@pytest.mark.parametrize(
    ("writes", "error"),
    [
        ([(USED0 + 2, "<H", 1000)], "used index"),  # more entries than buffers posted
        ([(USED0 + 4, "<I", 5000), (USED0 + 2, "<H", 1)], "out of range"),  # used id
        ([(USED0 + 4, "<I", 3), (USED0 + 8, "<I", 4096), (USED0 + 2, "<H", 1)], "wrote 4096"),
    ],
    ids=["used-index", "used-id", "used-length"],
)
def test_the_relay_refuses_a_peer_that_breaks_its_rings(
    writes: list[tuple[int, str, int]], error: str
) -> None:
    b = RelayBench()
    try:
        b.host_rx.add(0x10000, 512, True, 0)
        b.host_cfg.status = 0x7
        b.relay.sync_config()
        for offset, fmt, value in writes:
            struct.pack_into(fmt, b.obj.mem, offset, value)
        with pytest.raises(VirtqueueError, match=error):
            b.relay.pump()
        assert bytes(b.mirror.mem[0x10000:0x10200]) == bytes(512)  # nothing copied
    finally:
        b.close()
