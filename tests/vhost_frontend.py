"""A small vhost-user front end (the role UML's virtio_uml plays), for tests that need
no kernel: it shares a memory file as guest memory, places both vrings in it, and drives
them with amplink's own :class:`VirtqueueDriver`, so a test can behave like a correct
guest or, step by step, like a hostile one (bad requests, ring addresses, descriptors,
a memory file it shrinks)."""

from __future__ import annotations

import os
import socket
import struct

from amplink.memory.region import SharedRegion
from amplink.virtio.virtqueue import VirtqueueDriver
from amplink.wire import vhost_user as vu
from amplink.wire.rpmsg import RPMSG_HDR
from amplink.wire.vring import VringLayout

GUEST_BASE = 0x100000  # guest-physical (and user) address of the memory
MEM_SIZE = 1 << 20
NUM = 16
BUF = 512
R = vu.Request


def memory_file(kind: str) -> int:
    """A descriptor for ``MEM_SIZE`` bytes of guest memory: ``"memfd"`` (cannot be
    sealed: no ``MFD_ALLOW_SEALING``), ``"sealable"`` (a memfd that can), ``"tmpfs"``
    (an unnamed file in /dev/shm, as UML's memory is)."""
    if kind == "memfd":
        fd = os.memfd_create("guest", os.MFD_CLOEXEC)
    elif kind == "sealable":
        fd = os.memfd_create("guest", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    elif kind == "tmpfs":
        fd = os.open("/dev/shm", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    else:
        raise ValueError(kind)
    os.ftruncate(fd, MEM_SIZE)
    return fd


class FrontEnd:
    def __init__(self, path: str, memory: str = "memfd", ring1_at: int | None = None) -> None:
        """Connect to ``path``; ``ring1_at``: where vring 1 goes in the memory (by
        default right after vring 0)."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.mem = SharedRegion(memory_file(memory), MEM_SIZE, "guest")
        self.layout = VringLayout(NUM, 4096)
        first_after = self.layout.size + 4096 - self.layout.size % 4096
        self.ring_off = [0, first_after if ring1_at is None else ring1_at]
        self.pool = 2 * first_after
        self.vq = [
            VirtqueueDriver(self.mem, self.layout.at(off), f"fe{i}")
            for i, off in enumerate(self.ring_off)
        ]
        self.kicks = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]
        self.calls = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]

    def request(self, req: int, payload: bytes = b"", fds: tuple[int, ...] = ()) -> bytes:
        """Send a request that asks for an acknowledgement; the reply's payload."""
        data = vu.message(req, payload, need_reply=True)
        socket.send_fds(self.sock, [data], list(fds))
        return self.reply(req)

    def reply(self, req: int) -> bytes:
        head = self.sock.recv(vu.HEADER_SIZE, socket.MSG_WAITALL)
        request, flags, size = vu.HEADER.unpack(head)
        assert request == req and flags == 0x5, (request, flags)
        return self.sock.recv(size, socket.MSG_WAITALL) if size else b""

    def ack(self, req: int, payload: bytes = b"", fds: tuple[int, ...] = ()) -> None:
        """A request the device must accept (reply 0)."""
        assert vu.u64(self.request(req, payload, fds), "ack") == 0, R(req).name

    def get(self, req: int) -> int:
        self.sock.sendall(vu.message(req))
        return vu.u64(self.reply(req), "reply")

    def negotiate(self) -> None:
        """Features and protocol features, as UML 6.1 asks for them."""
        features = self.get(R.GET_FEATURES)
        proto = self.get(R.GET_PROTOCOL_FEATURES)
        self.sock.sendall(vu.message(R.SET_PROTOCOL_FEATURES, vu.U64.pack(proto)))
        self.ack(R.SET_FEATURES, vu.U64.pack(features))

    def regions(self) -> list[vu.MemRegion]:
        return [vu.MemRegion(GUEST_BASE, self.mem.size, GUEST_BASE, 0)]

    def set_memory(self, regions: list[vu.MemRegion] | None = None) -> None:
        regions = regions or self.regions()
        self.ack(R.SET_MEM_TABLE, vu.pack_mem_table(regions), (self.mem.fd,) * len(regions))

    def set_rings(self) -> None:
        for i, off in enumerate(self.ring_off):
            self.vq[i].reset_ring()
            self.ack(R.SET_VRING_CALL, vu.U64.pack(i), (self.calls[i],))
            self.ack(R.SET_VRING_NUM, vu.VringState(i, NUM).pack())
            self.ack(R.SET_VRING_BASE, vu.VringState(i, 0).pack())
            base = GUEST_BASE + off
            addr = vu.VringAddr(
                i, 0, base + self.layout.desc, base + self.layout.used, base + self.layout.avail
            )
            self.ack(R.SET_VRING_ADDR, addr.pack())

    def go(self) -> None:
        """Kicks, enable both rings, post every receive buffer and kick vring 0."""
        for i in range(2):
            self.ack(R.SET_VRING_KICK, vu.U64.pack(i), (self.kicks[i],))
            self.ack(R.SET_VRING_ENABLE, vu.VringState(i, 1).pack())
        for b in range(NUM):
            self.vq[0].add(self.buf_addr(b), BUF, True, b)
        os.eventfd_write(self.kicks[0], 1)

    def start(self) -> None:
        """Set up like UML 6.1, post every receive buffer and kick vring 0."""
        self.negotiate()
        self.set_memory()
        self.set_rings()
        self.go()

    def buf_addr(self, b: int) -> int:
        return GUEST_BASE + self.pool + b * BUF

    def received(self) -> list[tuple[int, int, bytes]]:
        """Messages the device sent: (src, dst, payload); buffers reposted."""
        out = []
        while (got := self.vq[0].get()) is not None:
            b, _written = got
            off = self.pool + b * BUF
            src, dst, _r, ln, _f = RPMSG_HDR.unpack_from(self.mem.mem, off)
            out.append((src, dst, bytes(self.mem.mem[off + 16 : off + 16 + ln])))
            self.vq[0].add(self.buf_addr(b), BUF, True, b)
        return out

    def send(self, src: int, dst: int, data: bytes, slot: int = NUM) -> None:
        off = self.pool + slot * BUF
        RPMSG_HDR.pack_into(self.mem.mem, off, src, dst, 0, len(data), 0)
        self.mem.mem[off + 16 : off + 16 + len(data)] = data
        self.vq[1].add(GUEST_BASE + off, 16 + len(data), False, slot)
        os.eventfd_write(self.kicks[1], 1)

    def raw_desc(self, index: int, addr: int, length: int) -> None:
        """Write descriptor ``index`` of vring 1 by hand and make it available."""
        base = self.ring_off[1]
        struct.pack_into("<QIHH", self.mem.mem, base + 16 * index, addr, length, 0, 0)
        self.publish(index)

    def publish(self, head: int) -> None:
        avail = self.ring_off[1] + self.layout.avail
        idx = struct.unpack_from("<H", self.mem.mem, avail + 2)[0]
        struct.pack_into("<H", self.mem.mem, avail + 4 + 2 * (idx % NUM), head)
        struct.pack_into("<H", self.mem.mem, avail + 2, (idx + 1) & 0xFFFF)
        os.eventfd_write(self.kicks[1], 1)

    def close(self) -> None:
        self.sock.close()
        for v in self.vq:
            del v
        self.vq = []
        self.mem.close()
        for fd in (*self.kicks, *self.calls):
            os.close(fd)
