"""The relay of amplink's OpenAMP host: the one process that maps an OpenAMP peer's
shared-memory object, so that a peer that shrinks it can kill the relay (SIGBUS), never
the process that holds amplink's rpmsg bus.

amplink's host keeps its side of the rings in a **mirror**: a region of its own with the
object's resource table copied in, where its virtio driver works as over any other
vdev (:class:`~amplink.remoteproc.vdev.RprocVdev`).  The relay is the virtio *device*
of the mirror and the virtio *driver* of the peer's object, one buffer at a time:

* a buffer the host sends (mirror vring 1) is copied into the send buffer of the same
  descriptor number in the object's pool and posted on the object's vring 1; when the
  peer returns it, the mirror's buffer goes back with the peer's used length;
* the relay posts the object's receive buffers (vring 0) itself; a buffer the peer fills
  is copied into the next receive buffer the host posted in the mirror, with its used
  length, and posted to the peer again.  While the host has none posted, the peer's
  buffers wait in the object.

The object's layout is OpenAMP's own (its pool at ``0x10000``: the receive buffers, then
the send buffers, 512 bytes each).  The relay brings the peer up when the host's driver
sets ``DRIVER_OK`` in the mirror (it copies the accepted features, zeroes the object's
rings, posts the receive buffers and sets ``DRIVER_OK`` there).  Both virtqueue halves
check what the other side writes, so a peer that breaks its rings ends the relay with
an error report, not a wrong copy.  Kicks: an eventfd each way with the host, the
peer's socket with the peer.  Every kick is taken (the relay asks for all of them), so
it blocks in ``poll`` between messages and spins never.

Run by :class:`RelayProcess` as ``python -m amplink.transport.openamp_relay``; it exits
when its standard input closes (the host stopped it, or is gone), when the peer closes
its socket (exit :data:`EXIT_PEER_GONE`), or when the peer broke the rings
(:data:`EXIT_BROKEN`); the reason is one JSON line on its report pipe.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys

from amplink.errors import AmplinkError
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import SharedRegion
from amplink.transport.openamp_linux import TABLE_MAX, KickSocket, map_shm
from amplink.virtio.constants import (
    VIRTIO_CONFIG_S_ACKNOWLEDGE,
    VIRTIO_CONFIG_S_DRIVER,
    VIRTIO_CONFIG_S_DRIVER_OK,
)
from amplink.virtio.rings import VirtqueueDevice, VirtqueueDriver
from amplink.virtio.vdev import VdevConfig
from amplink.wire import openamp_linux as ol
from amplink.wire import rsc_table as rt
from amplink.wire.vring import VringLayout

EXIT_LEFT = 0  # the host stopped the relay (or reset its driver)
EXIT_PEER_GONE = 3  # the peer closed its socket
EXIT_BROKEN = 4  # the peer broke its rings, or the relay failed otherwise
STOP_TIMEOUT = 5.0  # s the relay gets to exit when its standard input closes
_BUF = ol.RPMSG_BUFFER_SIZE
_UP = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK


class Relay:
    """Moves buffers between the host's ``mirror`` and the peer's object ``shm``, whose
    tables both hold ``entry`` (the vdev parsed from the mirror, at the same offset in
    both).  No I/O: the caller kicks whom :meth:`pump` says."""

    def __init__(self, mirror: SharedRegion, shm: SharedRegion, entry: rt.Vdev, name: str) -> None:
        self.name = name
        self._mirror = mirror
        self._shm = shm
        self._m_config = VdevConfig(mirror, ol.RSC_TABLE_PA, entry)
        self._s_config = VdevConfig(shm, ol.RSC_TABLE_PA, entry)
        amap = AddressMap.identity(mirror.size, "mirror")
        self._translate = amap.translate
        self._parts = [VringLayout(v.num, v.align).at(v.da) for v in entry.vrings]
        self._n_rx = entry.vrings[0].num
        self._tx_pool = ol.SHARED_BUF_PA + self._n_rx * _BUF
        self.up = False
        self._m_rx: VirtqueueDevice | None = None
        self._m_tx: VirtqueueDevice | None = None
        self._s_rx: VirtqueueDriver | None = None
        self._s_tx: VirtqueueDriver | None = None

    def sync_config(self) -> bool | None:
        """Follow the host's driver status: bring the peer up once the host set
        ``DRIVER_OK`` (True: just now, kick the peer); None when the host reset its
        driver afterwards (the relay's work is done)."""
        host_up = self._m_config.driver_ok
        if self.up:
            return False if host_up else None
        if not host_up:
            return False
        m, s = self._mirror, self._shm
        self._m_rx = VirtqueueDevice(m, self._parts[0], f"{self.name}.host-rx", self._translate,
                                     writable=True)  # fmt: skip
        self._m_tx = VirtqueueDevice(m, self._parts[1], f"{self.name}.host-tx", self._translate,
                                     writable=False)  # fmt: skip
        self._s_rx = VirtqueueDriver(s, self._parts[0], f"{self.name}.peer-rx")
        self._s_tx = VirtqueueDriver(s, self._parts[1], f"{self.name}.peer-tx")
        self._s_rx.reset_ring()
        self._s_tx.reset_ring()
        for i in range(self._n_rx):
            self._s_rx.add(ol.SHARED_BUF_PA + i * _BUF, _BUF, True, i)
        self._s_config.gfeatures = self._m_config.gfeatures
        self._s_config.status = _UP
        self.up = True
        return True

    def pump(self) -> tuple[bool, bool]:
        """Move everything that can move now, both ways: ``(kick the peer, kick the
        host)``.  ``VirtqueueError`` if the peer broke its rings; ``EMSGSIZE`` for a
        message that the other side's buffers cannot hold (the host's driver was given
        buffers of another size than the layout's)."""
        if not self.up:
            return False, False
        m_rx, m_tx, s_rx, s_tx = self._m_rx, self._m_tx, self._s_rx, self._s_tx
        assert m_rx is not None and m_tx is not None and s_rx is not None and s_tx is not None
        mem_m, mem_s = self._mirror.mem, self._shm.mem
        to_peer = to_host_tx = to_host_rx = False
        while (sent := m_tx.get()) is not None:  # the host sends
            head, off, length = sent
            if length > _BUF:
                raise AmplinkError(
                    errno.EMSGSIZE,
                    f"the host sent {length} bytes; the layout's buffers hold {_BUF}",
                )
            addr = self._tx_pool + head * _BUF
            mem_s[addr : addr + length] = mem_m[off : off + length]
            s_tx.add(addr, length, False, head)
            to_peer = True
        while (done := s_tx.get()) is not None:  # the peer consumed what the host sent
            m_tx.put(*done)
            to_host_tx = True
        while s_rx.has_used():  # the peer sends: into the host's next receive buffer
            posted = m_rx.get()
            if posted is None:
                break  # the host has none posted now; its next kick resumes this
            head, off, length = posted
            got = s_rx.get()
            assert got is not None
            token, written = got
            if written > length:
                raise AmplinkError(
                    errno.EMSGSIZE,
                    f"the peer sent {written} bytes; the host's receive buffers hold {length}",
                )
            addr = ol.SHARED_BUF_PA + token * _BUF
            mem_m[off : off + written] = mem_s[addr : addr + written]
            m_rx.put(head, written)
            s_rx.add(addr, _BUF, True, token)
            to_peer = to_host_rx = True
        kick_peer = to_peer and (s_tx.kick_needed() or s_rx.kick_needed())
        kick_host = (to_host_tx and m_tx.notify_needed()) or (to_host_rx and m_rx.notify_needed())
        return kick_peer, kick_host

    def notified(self, peer: bool, host: bool) -> None:
        """The kicks :meth:`pump` asked for were sent (to the peer, to the host): one
        covers both of that side's rings (see ``Virtqueue*.notified``)."""
        for vq in ((self._s_tx, self._s_rx) if peer else ()) + (
            (self._m_tx, self._m_rx) if host else ()
        ):
            if vq is not None:
                vq.notified()


def report_line(code: int, message: str) -> bytes:
    """The relay's last word to the host: an errno and what happened."""
    return (json.dumps({"errno": code, "message": message}) + "\n").encode()


def serve(relay: Relay, kicks: KickSocket, host_kick_fd: int, host_call_fd: int) -> tuple[int, str]:
    """Relay until the host stops it (standard input ends), resets its driver, or the
    peer leaves or breaks its rings: ``(exit status, what happened)``."""
    poller = select.poll()
    for fd in (0, kicks.fileno(), host_kick_fd):
        poller.register(fd, select.POLLIN)
    while True:
        ready = {fd for fd, _ev in poller.poll()}
        if 0 in ready and not os.read(0, 64):
            return EXIT_LEFT, "stopped by the host"
        alive = kicks.drain() if kicks.fileno() in ready else True
        if host_kick_fd in ready:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(host_kick_fd)
        brought_up = relay.sync_config()
        if brought_up is None:
            return EXIT_LEFT, "the host reset its driver"
        kick_peer, kick_host = relay.pump()  # also after the end: what the peer sent before
        if kick_peer or brought_up:
            kicks.kick()
        if kick_host:
            os.eventfd_write(host_call_fd, 1)
        relay.notified(kick_peer, kick_host)
        if not alive:
            return EXIT_PEER_GONE, "the OpenAMP peer closed its socket (it exited or was killed)"


class RelayProcess:
    """The host's handle on one relay process: started over the object open at
    ``shm_fd`` (for an object already checked), the peer's connection ``kicks`` and the
    ``mirror``, all of which the relay inherits (the host closes its copies of the
    object and the connection: the relay holds the peer's end alone).

    :meth:`kick` tells the relay the host changed its rings; :attr:`call_fd` becomes
    readable when the relay changed them; :attr:`pidfd` when it ended, and then
    :meth:`outcome` says why."""

    def __init__(self, name: str, shm_fd: int, kicks: KickSocket, mirror: SharedRegion) -> None:
        self.name = name
        self.kick_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.call_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        self._report_fd = report_r
        sock_fd = kicks.fileno()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "amplink.transport.openamp_relay", "--name", name,
                 "--shm-fd", str(shm_fd), "--sock-fd", str(sock_fd),
                 "--mirror-fd", str(mirror.fd), "--kick-fd", str(self.kick_fd),
                 "--call-fd", str(self.call_fd), "--report-fd", str(report_w)],
                stdin=subprocess.PIPE,
                pass_fds=(shm_fd, sock_fd, mirror.fd, self.kick_fd, self.call_fd, report_w),
            )  # fmt: skip
        except BaseException:
            for fd in (self.kick_fd, self.call_fd, report_r):
                os.close(fd)
            raise
        finally:
            os.close(report_w)
        self.pidfd = os.pidfd_open(self.proc.pid)

    def kick(self) -> None:
        """The host changed its rings (never blocks)."""
        os.eventfd_write(self.kick_fd, 1)

    def outcome(self) -> OSError:
        """Why the relay ended (once :attr:`pidfd` is readable): ``EPIPE`` for a peer that
        left, ``EFAULT`` for one that shrank its shared memory (the relay died of
        SIGBUS), the relay's report otherwise."""
        status = self.proc.wait()
        with contextlib.suppress(OSError):
            os.set_blocking(self._report_fd, False)
        report: dict[str, object] = {}
        with contextlib.suppress(OSError, ValueError, IndexError):  # none: it was killed
            report = json.loads(os.read(self._report_fd, 65536).decode().splitlines()[-1])
        if status == -signal.SIGBUS:
            return AmplinkError(
                errno.EFAULT,
                f"{self.name}: the OpenAMP peer made its shared memory shorter than the "
                "layout (its relay process died of SIGBUS); the link is dropped",
            )
        code, message = report.get("errno"), report.get("message")
        if isinstance(code, int) and isinstance(message, str):
            return AmplinkError(code, f"{self.name}: {message}")
        return AmplinkError(errno.EIO, f"{self.name}: the relay process ended ({_status(status)})")

    def close(self) -> None:
        """Stop the relay (its standard input closes; SIGKILL after a while) and close
        the descriptors. Idempotent."""
        proc = self.proc
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for attr in ("kick_fd", "call_fd", "_report_fd", "pidfd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)


def _status(returncode: int) -> str:
    if returncode >= 0:
        return f"exit status {returncode}"
    return f"signal {signal.Signals(-returncode).name}"


def main(argv: list[str] | None = None) -> int:
    """The relay process's entry point; returns its exit status."""
    p = argparse.ArgumentParser(prog="python -m amplink.transport.openamp_relay")
    for fd_arg in ("--shm-fd", "--sock-fd", "--mirror-fd", "--kick-fd", "--call-fd",
                   "--report-fd"):  # fmt: skip
        p.add_argument(fd_arg, type=int, required=True)
    p.add_argument("--name", required=True)
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host stops it (a Ctrl-C is the host's)
    mirror = SharedRegion.attach(args.mirror_fd, "mirror")
    shm = map_shm(args.shm_fd, args.name)
    kicks = KickSocket(socket.socket(fileno=args.sock_fd))
    try:
        entry = rt.parse(bytes(mirror.mem[:TABLE_MAX])).vdevs()[0]
        status, why = serve(Relay(mirror, shm, entry, args.name), kicks, args.kick_fd,
                            args.call_fd)  # fmt: skip
        code = errno.EPIPE if status == EXIT_PEER_GONE else errno.ESHUTDOWN
    except OSError as exc:
        status, code, why = EXIT_BROKEN, exc.errno or errno.EIO, exc.strerror or str(exc)
    os.write(args.report_fd, report_line(code, why))
    kicks.close()  # the peer sees the end at once
    return status


if __name__ == "__main__":
    sys.exit(main())
