"""A small vhost-user front end (the role UML's virtio_uml plays), for tests that need
no kernel: it shares a memfd as guest memory, places both vrings in it, and drives them
with amplink's own :class:`VirtqueueDriver`, so a test can behave like a correct guest
or write hostile values into the rings."""

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
NUM = 16
BUF = 512
R = vu.Request


class FrontEnd:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.mem = SharedRegion.create(1 << 20, "guest")
        self.layout = VringLayout(NUM, 4096)
        self.ring_off = [0, self.layout.size + 4096 - self.layout.size % 4096]
        self.pool = 2 * self.ring_off[1]
        self.vq = [
            VirtqueueDriver(self.mem, self.layout.at(off), f"fe{i}")
            for i, off in enumerate(self.ring_off)
        ]
        self.kicks = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]
        self.calls = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]

    def request(self, req: int, payload: bytes = b"", fds: tuple[int, ...] = ()) -> None:
        data = vu.message(req, payload, need_reply=True)
        socket.send_fds(self.sock, [data], list(fds))
        self.reply(req)

    def reply(self, req: int) -> bytes:
        head = self.sock.recv(vu.HEADER_SIZE, socket.MSG_WAITALL)
        request, flags, size = vu.HEADER.unpack(head)
        assert request == req and flags == 0x5, (request, flags)
        return self.sock.recv(size, socket.MSG_WAITALL)

    def get(self, req: int) -> int:
        self.sock.sendall(vu.message(req))
        return vu.u64(self.reply(req), "reply")

    def start(self) -> None:
        """Set up like UML 6.1, post every receive buffer and kick vring 0."""
        features = self.get(R.GET_FEATURES)
        proto = self.get(R.GET_PROTOCOL_FEATURES)
        self.sock.sendall(vu.message(R.SET_PROTOCOL_FEATURES, vu.U64.pack(proto)))
        self.request(R.SET_FEATURES, vu.U64.pack(features))
        region = vu.MemRegion(GUEST_BASE, self.mem.size, GUEST_BASE, 0)
        self.request(R.SET_MEM_TABLE, vu.pack_mem_table([region]), (self.mem.fd,))
        for i, off in enumerate(self.ring_off):
            self.vq[i].reset_ring()
            self.request(R.SET_VRING_CALL, vu.U64.pack(i), (self.calls[i],))
            self.request(R.SET_VRING_NUM, vu.VringState(i, NUM).pack())
            self.request(R.SET_VRING_BASE, vu.VringState(i, 0).pack())
            base = GUEST_BASE + off
            addr = vu.VringAddr(
                i, 0, base + self.layout.desc, base + self.layout.used, base + self.layout.avail
            )
            self.request(R.SET_VRING_ADDR, addr.pack())
        for i in range(2):
            self.request(R.SET_VRING_KICK, vu.U64.pack(i), (self.kicks[i],))
            self.request(R.SET_VRING_ENABLE, vu.VringState(i, 1).pack())
        for b in range(NUM):
            self.vq[0].add(self.buf_addr(b), BUF, True, b)
        os.eventfd_write(self.kicks[0], 1)

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
