"""Firmware that attacks the host on command, as a broken or malicious core could.

It serves ``rpmsg-openamp-demo-channel``: a message naming an attack makes it carry
that attack out; anything else is echoed.  The attacks (each reaches only what a core
holds: its shared memory and the descriptors it was given):

``tx-ring``: break the ring the host sends on.  Over virtio, the used index of
vring 1 jumps by 0x8000, more than could ever be outstanding (and stays wrong: later
returns count on from there); over GLINK, the read index of the host's FIFO points
outside it, and the core stops reading.
``irq-fds``: every interrupt descriptor the core was given (eventfd or pipe), and its
own, is filled to the brim and made blocking (file status flags belong to the open
file, which a process may share with the host), so that a write to it would block
forever; the core then stops (it acknowledges first: its own kicks would block).

``shrink``: every memory file the core was given (device memory, the MMIO window) is
truncated to nothing, grown, and sealed against writing; the reply lists what each
attempt got (``name:errno,errno,errno``).

``bad:<n>``: ``n`` messages the host must log and drop: over virtio, buffers whose
header announces more payload than was written; over GLINK, ``CLOSE`` commands for a
channel never opened.  ``badns:<n>`` (virtio): ``n`` name-service announcements with an
empty name, which no channel can carry.

``channels:<n>``: announce (virtio) or open (GLINK) ``n`` channels ``flood-<i>``;
``ttys:<n>``: announce ``n`` ``rpmsg-tty`` channels (virtio: one name, many
addresses); ``intents:<n>`` (GLINK): advertise ``n`` intents of 4 GiB with fresh ids.

``noread:<n>`` (GLINK): ``n`` commands that each need a reply, and never a read of
the host's FIFO again.

``kicks:<n>``: notify the host ``n`` times without sending anything; ``words:<n>``:
write ``n`` words naming a notify id the host never gave out into the MU's data
registers (without waiting for the host to read them);
``scribble``: write random bytes over the rings (or FIFOs) the host reads from, and
stop.

Each attack is acknowledged by echoing its name (``irq-fds``: before it; ``words``: after
it, so that its kick is not written over).
"""

import contextlib
import errno
import fcntl
import gc
import os
import random
import threading
import time

from amplink.hw.imx_mu import NUM_CHANS, SIDE_WORDS, TE, ImxMuSide
from amplink.irq.domain import IrqDomain
from amplink.remote import Core
from amplink.rpmsg.core import RPMSG_NS_ADDR
from amplink.wire import glink
from amplink.wire.rpmsg import RPMSG_HDR, RPMSG_NS_MSG

UNKNOWN_NOTIFY_ID = 0x7FF
WORDS_READ = 50  # words:<n> waits for the host to read each of its first ones


def main(core: Core) -> None:
    def serve(ept, data, src):
        if data.startswith(b"bad:"):
            flood_bad_messages(core, src, int(data[4:]))
            ept.sendto(data, src)
            return
        if data.startswith(b"badns:"):
            for i in range(int(data[6:])):
                ept.sendto(RPMSG_NS_MSG.pack(b"", 1024 + i, 0), RPMSG_NS_ADDR)
            ept.sendto(data, src)
            return
        if data.startswith((b"channels:", b"ttys:")):
            kind, n = data.decode().split(":")
            for i in range(int(n)):
                core.create_endpoint(f"flood-{i}" if kind == "channels" else "rpmsg-tty")
            ept.sendto(data, src)
            return
        if data.startswith(b"intents:"):
            write_glink(core, intent_commands(core, int(data[8:])))
            ept.sendto(data, src)
            return
        if data.startswith(b"noread:"):
            ept.sendto(data, src)
            write_glink(core, [glink.command(glink.CLOSE, 4242)] * int(data[7:]))
            threading.Event().wait()
        if data.startswith(b"kicks:"):
            ept.sendto(data, src)
            notify = core.link._notify
            for _ in range(int(data[6:])):
                notify(0) if hasattr(core.link, "_tx_vq") else notify()
            return
        if data.startswith(b"words:"):
            mu = next(  # the core's side of its MU (side B: its words come second)
                o for o in gc.get_objects() if isinstance(o, ImxMuSide) and o._me == SIDE_WORDS
            )
            for i in range(int(data[6:])):  # written over each other: many reach the host
                n = i % NUM_CHANS
                if i < WORDS_READ:  # one by one on TR0, which the host reads (its kick
                    # channel): each waits (a while) for the host to read the last, so
                    # that more than a burst reach it however loaded the machine; the
                    # rest are written as fast as the core can.
                    n = 0
                    deadline = time.monotonic() + 0.5
                    while not mu.status_bit(TE(0)) and time.monotonic() < deadline:
                        time.sleep(0.0001)
                mu.write_tr(n, UNKNOWN_NOTIFY_ID)
            # The answer after the words: sent before them, its kick could be written
            # over by them before the host read it (a core may lose its own kicks).
            ept.sendto(data, src)
            return
        if data == b"scribble":
            ept.sendto(data, src)
            scribble(core)
            threading.Event().wait()  # its own next writes would mend a FIFO index

        if data == b"shrink":
            ept.sendto(shrink_memory_fds(), src)
            return
        if data == b"irq-fds":
            ept.sendto(data, src)
            jam_interrupt_fds()
            core.link.unsuppress_rx()  # the host kicks for every message it sends...
            threading.Event().wait()  # ...and nothing drains the descriptors
        if data == b"tx-ring":
            link = core.link
            if hasattr(link, "_rx_vq"):
                vq = link._rx_vq  # the ring of what the host sends
                vq._used_idx = (vq._used_idx + 0x8000) & 0xFFFF
                vq._used_h[1] = vq._used_idx
            else:
                fifo = link._rx  # the FIFO the host writes; its tail is ours
                fifo._words[fifo._mine_at] = 0xFFFFFFF0
                ept.sendto(data, src)
                threading.Event().wait()  # never read again (that would mend the index)
        ept.sendto(data, src)

    core.create_endpoint("rpmsg-openamp-demo-channel", serve)
    core.run()


def jam_interrupt_fds() -> None:
    """Keep a duplicate of every eventfd and pipe (same open file, same flags), stop
    the core's own interrupt handling (which would drain them), then jam them."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            kind = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if fd > 2 and (kind == "anon_inode:[eventfd]" or kind.startswith("pipe:")):
            fds.append((os.dup(fd), kind))
    for obj in gc.get_objects():
        if isinstance(obj, IrqDomain):
            obj.close()
    for fd, kind in fds:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        try:
            if kind.startswith("pipe:"):
                while True:
                    os.write(fd, bytes(4096))
            else:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(fd)  # from 0, the largest count is one write
                os.eventfd_write(fd, 0xFFFFFFFFFFFFFFFE)
        except OSError:
            pass  # full (or an end that cannot be written)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)


def shrink_memory_fds() -> bytes:
    results = []
    for name in sorted(os.listdir("/proc/self/fd"), key=int):
        fd = int(name)
        try:
            kind = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if not kind.startswith("/memfd:"):
            continue
        size = os.fstat(fd).st_size
        codes = []
        for attack, *args in (
            (os.ftruncate, fd, 0),
            (os.ftruncate, fd, 2 * size),
            (fcntl.fcntl, fd, fcntl.F_ADD_SEALS, F_SEAL_FUTURE_WRITE),
        ):
            try:
                attack(*args)
                codes.append("ok")
            except OSError as exc:
                codes.append(errno.errorcode[exc.errno])
        results.append(f"{kind.split()[0]}:{','.join(codes)}")
    return " ".join(results).encode()


F_SEAL_FUTURE_WRITE = 0x10  # Linux 5.1


def flood_bad_messages(core: Core, dst: int, n: int) -> None:
    link = core.link
    for _ in range(n):
        while True:
            if hasattr(link, "_tx_vq"):
                got = link._tx_vq.get()  # a buffer of the host's
                if got is not None:
                    head, off, _ = got
                    RPMSG_HDR.pack_into(link._region.mem, off, 1024, dst, 0, 400, 0)
                    link._tx_vq.put(head, RPMSG_HDR.size + 10)
                    break
            else:
                with link._tx_lock:
                    if link._tx.free() >= 64:
                        link._tx.write(glink.command(glink.CLOSE, 4242))
                        break
            link._notify(0) if hasattr(link, "_tx_vq") else link._notify()
            time.sleep(0.001)  # let the host read
    link._notify(0) if hasattr(link, "_tx_vq") else link._notify()


def intent_commands(core: Core, n: int) -> list[bytes]:
    lcid = core.link.protocol.channel("rpmsg-openamp-demo-channel").lcid
    iids = range(1 << 20, (1 << 20) + n)
    return [
        glink.intent_command(lcid, [(0xFFFFFFFF, iid) for iid in iids[at : at + 64]])
        for at in range(0, n, 64)
    ]


def write_glink(core: Core, commands: list[bytes]) -> None:
    """Write raw commands into the core's FIFO to the host, as room comes."""
    link = core.link
    for cmd in commands:
        while True:
            with link._tx_lock:
                if link._tx.free() >= len(cmd) + 8:
                    link._tx.write(cmd)
                    break
            link._notify()
            time.sleep(0.001)
    link._notify()


def scribble(core: Core) -> None:
    """Random bytes over what the host reads: virtio's used ring of vring 0 (and the
    avail ring of vring 1 it reads back), GLINK's FIFO to the host and its indices."""
    link = core.link
    rng = random.Random(16)
    if hasattr(link, "_tx_vq"):
        for vq in (link._tx_vq, link._rx_vq):
            for view in (vq._used_h, vq._used_e):
                for i in range(len(view)):
                    view[i] = rng.getrandbits(8 * view.itemsize)
        link._notify(0)
    else:
        with link._tx_lock:
            fifo = link._tx
            mem, base = fifo._mem, fifo._base
            mem[base : base + fifo._size] = rng.randbytes(fifo._size)
            fifo._words[fifo._mine_at] = rng.getrandbits(32)
        link._notify()
