"""A virtio-rpmsg device served over vhost-user: the transport that lets a real Linux
kernel (User-Mode Linux's ``virtio_uml``, or QEMU) be the host of amplink's firmware.

The native transport places the vrings in a shared region and kicks through a mailbox;
here the front end owns the memory and the notifiers and hands them over a UNIX socket:

* ``SET_MEM_TABLE`` brings the guest memory as file descriptors, mapped here
  (:class:`GuestMemory`) after a check of each file's size, and sealed against
  shrinking where the file allows it (a memfd made with ``MFD_ALLOW_SEALING``); a file
  that cannot be sealed (UML's memory is a plain tmpfs file) could still be shrunk by
  the front end later, and the next access would raise SIGBUS: that is why
  :mod:`amplink.remote.vhost` serves each connection in a process of its own.
  Guest-physical addresses (descriptors) and the front end's user addresses (ring
  parts) are translated with bounds checks, so a descriptor that points outside the
  table breaks its queue (logged), never the process;
* ``SET_VRING_NUM/ADDR/BASE`` place each ring, ``SET_VRING_KICK`` gives the eventfd the
  guest writes when it posts buffers, ``SET_VRING_CALL`` the descriptor this side writes
  8 bytes to when it returns buffers (an eventfd for QEMU, a socketpair for UML);
* the device never sees the driver's status register: the first kick of vring 0 (right
  after the guest's ``virtio_device_ready``) says the driver is up, and is when the
  firmware may announce its channels.

Above this, nothing changes: a session gives a :class:`VhostUserDevice`, a
:class:`~amplink.virtio.device.VirtioDevice` like the native transport's, to the same
virtio driver the native transport binds (rpmsg's device side), so the same firmware
program runs on either.  The request loop runs in its own thread per connection.

What a front end sends is checked as hostile input: a malformed request closes its
connection with a logged error; a request that is well formed but cannot be honoured
(a slave channel that is not a socket, a config window past the protocol's 256 bytes)
is refused with an error reply, and every descriptor that came with it is closed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from amplink.errors import AddressError, WireError
from amplink.memory.region import SharedRegion
from amplink.transport.unix import UnixListener
from amplink.virtio.constants import VIRTIO_F_VERSION_1, VIRTIO_ID_RPMSG, VIRTIO_RPMSG_F_NS
from amplink.virtio.device import DEVICE, VirtioDevice
from amplink.wire import vhost_user as vu
from amplink.wire.vring import VringParts

log = logging.getLogger(__name__)

NUM_QUEUES = 2  # vring 0: device -> driver (the guest receives), vring 1: driver -> device
DEVICE_FEATURES = (
    (1 << VIRTIO_RPMSG_F_NS) | (1 << VIRTIO_F_VERSION_1) | (1 << vu.F_PROTOCOL_FEATURES)
)
# SLAVE_REQ must be offered: without it UML 6.1 asks for the vring interrupts on irq 0.
PROTOCOL_FEATURES = (
    (1 << vu.PROTOCOL_F_REPLY_ACK) | (1 << vu.PROTOCOL_F_SLAVE_REQ) | (1 << vu.PROTOCOL_F_CONFIG)
)
_CALL = (1).to_bytes(8, "little")


def seal_against_shrinking(fd: int) -> bool:
    """Add ``F_SEAL_SHRINK`` to a memory file handed over by a peer, so that it can
    never be made shorter than what is mapped: True if the file is sealed now; False
    if it cannot be (not a memfd, or one made without ``MFD_ALLOW_SEALING``)."""
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    except OSError:
        return False
    return True


def _file_size(fd: int, what: str) -> int:
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise WireError("region", f"{what}: fstat failed: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise WireError("region", f"{what} is not a memory file (mode {st.st_mode:#o})")
    return st.st_size


class GuestMemory:
    """The front end's memory table, each region mapped from its descriptor, after the
    descriptor was sealed against shrinking where it allows it (:attr:`sealed`) and
    its size checked (``fstat``) to cover the region."""

    def __init__(self, regions: list[vu.MemRegion], fds: list[int]) -> None:
        """Takes ownership of ``fds`` (closed by :meth:`close`, or here on failure)."""
        if len(fds) != len(regions):
            for fd in fds:
                os.close(fd)
            raise WireError(
                "fds", f"memory table of {len(regions)} regions came with {len(fds)} fds"
            )
        self.regions = regions
        self.maps: list[SharedRegion] = []
        self.sealed: list[bool] = []
        try:
            for i, (r, fd) in enumerate(zip(regions, fds, strict=True)):
                what = f"guest memory region {i} ({r})"
                self.sealed.append(seal_against_shrinking(fd))
                size = _file_size(fd, what)
                if r.mmap_offset + r.size > size:
                    raise WireError(
                        "region", f"{what} ends past the end of its file ({size:#x} bytes)"
                    )
                try:
                    self.maps.append(
                        SharedRegion(fd, r.size, f"guest-mem{i}", offset=r.mmap_offset)
                    )
                except (OSError, ValueError, OverflowError) as exc:
                    raise WireError("region", f"cannot map {what}: {exc}") from None
                fds[i] = -1
        except BaseException:
            self.close()
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
            raise

    def _find(self, addr: int, length: int, user: bool) -> tuple[int, int]:
        for i, r in enumerate(self.regions):
            base = r.user_addr if user else r.guest_addr
            if base <= addr and addr + length <= base + r.size:
                return i, addr - base
        kind = "user" if user else "guest-physical"
        raise AddressError(
            f"{kind} range [{addr:#x}, {addr + length:#x}) is outside the guest memory table"
        )

    def user_to_offset(self, region: int, addr: int, length: int) -> int:
        """Offset in region ``region`` of a front-end user address (ring parts)."""
        i, off = self._find(addr, length, user=True)
        if i != region:
            raise AddressError(
                f"ring part at {addr:#x} is in guest memory region {i}, not {region}"
            )
        return off

    def guest_to_offset(self, region: int, addr: int, length: int) -> int:
        """Offset in region ``region`` of a guest-physical range (descriptor buffers).

        The rings and every buffer of a device must lie in one region (one window for
        the virtqueues); UML has exactly one.
        """
        i, off = self._find(addr, length, user=False)
        if i != region:
            raise AddressError(
                f"buffer at {addr:#x} is in guest memory region {i}, but the rings are in "
                f"region {region}; amplink serves a device from one region"
            )
        return off

    def region_of_user(self, addr: int, length: int) -> int:
        """Which region holds this front-end user range."""
        return self._find(addr, length, user=True)[0]

    def close(self) -> None:
        """Unmap every region and close its descriptor. Idempotent."""
        for m in self.maps:
            m.close()
        self.maps.clear()


@dataclass
class _Queue:
    """What the front end told about one vring."""

    num: int = 0
    base: int = 0
    addr: vu.VringAddr | None = None
    kick_fd: int = -1
    call_fd: int = -1
    enabled: bool = False

    def close(self) -> None:
        for fd in (self.kick_fd, self.call_fd):
            if fd >= 0:
                os.close(fd)
        self.kick_fd = self.call_fd = -1


class VhostUserDevice(VirtioDevice):
    """The virtio-rpmsg device a front end set up, on the device side: its rings lie in
    one region of the guest memory table, descriptors name guest-physical addresses,
    and the call descriptors are the notify path.  :meth:`peer_reset` is True once the
    front end disconnected or set the rings up again (a new driver), or broke them (it
    is then dropped: the device serves the next one)."""

    def __init__(
        self,
        name: str,
        memory: GuestMemory,
        region: int,
        parts: list[VringParts],
        calls: list[int],
        features: int,
        gone: Callable[[], bool],
        *,
        spin: bool,
    ) -> None:
        super().__init__(name, VIRTIO_ID_RPMSG, DEVICE, memory.maps[region], spin=spin)
        self._memory = memory
        self._region = region
        self._parts = parts
        self._calls = calls
        self._features = features
        self._gone = gone
        self._broken = False

    @property
    def num_vrings(self) -> int:
        return len(self._parts)

    def vring(self, index: int) -> VringParts:
        return self._parts[index]

    def translate(self, addr: int, length: int) -> int:
        return self._memory.guest_to_offset(self._region, addr, length)

    def notify(self, index: int) -> None:  # on the message path: no context manager
        fd = self._calls[index]
        if fd >= 0:
            try:
                os.write(fd, _CALL)
            except (BlockingIOError, ConnectionError):  # full, or the guest is gone
                return

    def features(self) -> int:
        return self._features

    def peer_reset(self) -> bool:
        return self._broken or self._gone()

    def broken(self, error: OSError) -> None:
        self._broken = True  # the session's owner logs it and drops the guest


class VhostUserSession:
    """One front end's connection: its requests, served in a thread, and the device
    state they build.  :meth:`wait_ready` waits until the guest's driver is up;
    :meth:`device` then gives the device it set up."""

    def __init__(self, conn: socket.socket, name: str) -> None:
        self.name = name
        self._conn = conn
        self._lock = threading.Condition()
        self._queues = [_Queue() for _ in range(NUM_QUEUES)]
        self._memory: GuestMemory | None = None
        self._retired: list[GuestMemory] = []  # replaced while a link may still read it
        self._slave: socket.socket | None = None
        self.features = 0
        self.protocol_features = 0
        self.closed = False
        self.error: str | None = None  # why this side closed the connection
        self.generation = 0  # bumped when the guest disables its rings (driver reset)
        # Readable once the driver went away (rings disabled, connection closed), so a
        # device waiting for kicks wakes up and sees it.
        self._gone_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread = threading.Thread(target=self._serve, name=f"vhost-user-{name}", daemon=True)
        self._thread.start()

    # -- the request loop ---------------------------------------------------------
    def _serve(self) -> None:
        try:
            while True:
                got = self._receive()
                if got is None:
                    log.info("%s: the front end closed the connection", self.name)
                    return
                header, payload, fds = got
                try:
                    answer = self._handle(header, payload, fds)
                except (WireError, AddressError) as exc:
                    self.error = f"bad {_request_name(header.request)} request: {exc.strerror}"
                    log.error("%s: %s; closing the connection", self.name, self.error)
                    return
                if answer is not None:
                    self._conn.sendall(vu.reply(header.request, answer))
                elif header.need_reply:
                    self._conn.sendall(vu.reply(header.request, vu.U64.pack(0)))
        except OSError as exc:
            if not self.closed:
                log.warning("%s: connection failed: %s", self.name, exc)
        finally:
            with self._lock:
                self.closed = True
                self._went_away()

    def _receive(self) -> tuple[vu.Header, bytes, list[int]] | None:
        data, fds, _flags, _addr = socket.recv_fds(self._conn, vu.HEADER_SIZE, vu.MAX_FDS)
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        try:
            while len(data) < vu.HEADER_SIZE:
                more = self._conn.recv(vu.HEADER_SIZE - len(data))
                if not more:
                    raise WireError("truncated", "connection closed inside a header")
                data += more
            header = vu.Header.unpack(data)
            payload = b""
            while len(payload) < header.size:
                more = self._conn.recv(header.size - len(payload))
                if not more:
                    raise WireError("truncated", "connection closed inside a payload")
                payload += more
        except WireError as exc:
            for fd in fds:
                os.close(fd)
            self.error = str(exc.strerror)
            log.error("%s: %s; closing the connection", self.name, self.error)
            return None
        return header, payload, list(fds)

    def _handle(self, header: vu.Header, payload: bytes, fds: list[int]) -> bytes | None:
        """Act on one request; the reply payload, or None (then an ACK if asked for).
        Every fd a request does not keep is closed here."""
        req = header.request
        R = vu.Request
        if req == R.SET_MEM_TABLE:
            self._set_memory(vu.unpack_mem_table(payload), fds)
            return None
        kept: set[int] = set()
        try:
            if req == R.GET_FEATURES:
                return vu.U64.pack(DEVICE_FEATURES)
            if req == R.SET_FEATURES:
                self.features = vu.u64(payload, "features") & DEVICE_FEATURES
            elif req == R.GET_PROTOCOL_FEATURES:
                return vu.U64.pack(PROTOCOL_FEATURES)
            elif req == R.SET_PROTOCOL_FEATURES:
                self.protocol_features = vu.u64(payload, "protocol features") & PROTOCOL_FEATURES
            elif req == R.GET_QUEUE_NUM:
                return vu.U64.pack(NUM_QUEUES)
            elif req in (R.SET_OWNER, R.RESET_OWNER, R.SET_VRING_ERR, R.SET_VRING_ENDIAN):
                pass  # nothing to own or reset beyond the queues; errors are logged here
            elif req == R.SET_SLAVE_REQ_FD:
                fd = _one_fd(fds, "SET_SLAVE_REQ_FD")
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    return self._refuse(header, "SET_SLAVE_REQ_FD came with a non-socket fd")
                if self._slave is not None:
                    self._slave.close()
                self._slave = socket.socket(fileno=fd)
                kept.add(fd)
            elif req in (R.SET_VRING_NUM, R.SET_VRING_BASE, R.SET_VRING_ENABLE):
                self._vring_state(req, vu.VringState.unpack(payload))
            elif req == R.GET_VRING_BASE:
                state = vu.VringState.unpack(payload)
                q = self._queue(state.index)
                with self._lock:
                    q.enabled = False
                    self._went_away()
                return vu.VringState(state.index, q.base).pack()
            elif req == R.SET_VRING_ADDR:
                addr = vu.VringAddr.unpack(payload)
                self._queue(addr.index).addr = addr
            elif req in (R.SET_VRING_KICK, R.SET_VRING_CALL):
                value = vu.u64(payload, _request_name(req))
                q = self._queue(value & vu.VRING_INDEX_MASK)
                fd = -1 if value & vu.VRING_NOFD else _one_fd(fds, _request_name(req))
                kept.add(fd)
                if fd >= 0:
                    os.set_blocking(fd, False)  # kicks are drained, never waited on by read
                with self._lock:
                    which = "kick_fd" if req == R.SET_VRING_KICK else "call_fd"
                    old = getattr(q, which)
                    setattr(q, which, fd)
                    if old >= 0:
                        os.close(old)
                    self._lock.notify_all()
            elif req in (R.GET_CONFIG, R.SET_CONFIG):
                cfg = vu.ConfigRequest.unpack(payload)
                if not cfg.in_bounds:
                    error = self._refuse(header, f"a window of {cfg}")
                    return b"" if req == R.GET_CONFIG else error  # empty: GET_CONFIG's error
                if req == R.GET_CONFIG:
                    return vu.CONFIG_HEAD.pack(cfg.offset, cfg.size, cfg.flags) + bytes(cfg.size)
                # no config space: writes are ignored, as a device with none does
            else:
                return self._refuse(header, "request not supported")
            return None
        finally:
            for fd in fds:
                if fd not in kept:
                    os.close(fd)

    def _refuse(self, header: vu.Header, why: str) -> bytes | None:
        """Log a request this device does not honour; the error reply, if asked for."""
        log.warning("%s: %s refused: %s", self.name, _request_name(header.request), why)
        return vu.U64.pack(1) if header.need_reply else None

    def _went_away(self) -> None:
        """The driver stopped (lock held): a new generation of rings, waiters woken."""
        self.generation += 1
        os.eventfd_write(self._gone_fd, 1)
        self._lock.notify_all()

    def _queue(self, index: int) -> _Queue:
        if not 0 <= index < NUM_QUEUES:
            raise WireError("vring-index", f"vring index {index} (virtio-rpmsg has 2)")
        return self._queues[index]

    def _vring_state(self, req: int, state: vu.VringState) -> None:
        q = self._queue(state.index)
        with self._lock:
            if req == vu.Request.SET_VRING_NUM:
                VringParts(state.num, 0, 0, 0)  # a power of two in range, or WireError
                q.num = state.num
            elif req == vu.Request.SET_VRING_BASE:
                if state.num != 0:
                    raise WireError(
                        "vring-base", f"vring {state.index} base {state.num}: only 0 is served"
                    )
                q.base = state.num
            else:
                q.enabled = bool(state.num)
                if not q.enabled:
                    self._went_away()
            self._lock.notify_all()

    def _set_memory(self, regions: list[vu.MemRegion], fds: list[int]) -> None:
        memory = GuestMemory(regions, fds)
        with self._lock:
            if self._memory is not None:
                self._retired.append(self._memory)
            self._memory = memory
        log.info(
            "%s: guest memory %s",
            self.name,
            ", ".join(
                f"[{r.guest_addr:#x}+{r.size:#x}] ({'sealed' if sealed else 'cannot be sealed'})"
                for r, sealed in zip(regions, memory.sealed, strict=True)
            ),
        )

    # -- what the firmware side uses ------------------------------------------------
    def _ready(self) -> bool:
        return self._memory is not None and all(
            q.enabled and q.addr is not None and q.num and q.kick_fd >= 0 for q in self._queues
        )

    def wait_ready(self, stop_fd: int, timeout: float | None = None) -> bool:
        """Wait until both rings are set up and enabled and the guest has kicked vring
        0 once (its driver is up).  False if the connection closed, ``stop_fd`` became
        readable, or ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._ready():
                if self.closed:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(0.05 if left is None else min(left, 0.05))
                if _readable(stop_fd, 0):
                    return False
            kick = self._queues[0].kick_fd
        while True:  # the driver's first kick of vring 0
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            ready = _poll([kick, stop_fd], 50 if left is None else min(int(left * 1000), 50))
            if stop_fd in ready or self.closed:
                return False
            if kick in ready:
                return True

    def device(self, name: str, *, spin: bool) -> VhostUserDevice:
        """The device the front end set up (call after :meth:`wait_ready`).  Ring parts
        outside the memory table raise :class:`AddressError`."""
        with self._lock:
            memory = self._memory
            assert memory is not None
            qs = self._queues
            assert qs[0].addr is not None
            region = memory.region_of_user(qs[0].addr.desc, 16 * qs[0].num)
            generation = self.generation
            parts = []
            for q in qs:
                assert q.addr is not None
                probe = VringParts(q.num, 0, 0, 0)
                parts.append(
                    VringParts(
                        q.num,
                        memory.user_to_offset(region, q.addr.desc, probe.desc_size),
                        memory.user_to_offset(region, q.addr.avail, probe.avail_size),
                        memory.user_to_offset(region, q.addr.used, probe.used_size),
                    )
                )
            calls = [q.call_fd for q in qs]
        return VhostUserDevice(
            name,
            memory,
            region,
            parts,
            calls,
            self.features,
            lambda: self.closed or self.generation != generation,
            spin=spin,
        )

    @property
    def wake_fds(self) -> list[int]:
        """What a device waits on: the eventfds the guest writes when it posts buffers,
        and one this session writes when the driver goes away (drain them all)."""
        return [*(q.kick_fd for q in self._queues if q.kick_fd >= 0), self._gone_fd]

    def close(self) -> None:
        """Close the connection, wait for the request thread, release every fd and
        mapping.  Call only when no link over this session is in use."""
        with self._lock:
            self.closed = True
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self._conn.close()
        if self._slave is not None:
            self._slave.close()
            self._slave = None
        for q in self._queues:
            q.close()
        for m in [*self._retired, self._memory]:
            if m is not None:
                m.close()
        self._retired.clear()
        self._memory = None
        if self._gone_fd >= 0:
            os.close(self._gone_fd)
            self._gone_fd = -1


class VhostUserServer:
    """The listening UNIX socket front ends connect to (UML's
    ``virtio_uml.device=PATH:7``): one server per path, a second one refused
    (``EADDRINUSE``, naming the first one's pid); a stale socket file is replaced, any
    other file at ``path`` refused (``EEXIST``): :class:`amplink.transport.unix.UnixListener`."""

    def __init__(self, path: str, name: str = "vhost-user", backlog: int = 16) -> None:
        self.path = path
        self.name = name
        self._listener = UnixListener(path, backlog=backlog)
        self.stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def fileno(self) -> int:
        """The listening socket: readable when a front end is waiting to be accepted."""
        return self._listener.fileno()

    def stop(self) -> None:
        """Make waits on :attr:`stop_fd` return (safe from signal handlers and other
        threads)."""
        with contextlib.suppress(OSError):
            os.eventfd_write(self.stop_fd, 1)

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return _readable(self.stop_fd, 0)

    def accept(self) -> socket.socket | None:
        """The next front end's connection (blocking mode, close-on-exec), or None if
        it went away before it was accepted."""
        return self._listener.accept()

    def close(self) -> None:
        """Stop listening, remove the socket file and release the path. Idempotent."""
        if self.stop_fd < 0:
            return
        self._listener.close()
        os.close(self.stop_fd)
        self.stop_fd = -1


def _one_fd(fds: list[int], what: str) -> int:
    if len(fds) != 1:
        raise WireError("fds", f"{what} came with {len(fds)} file descriptors, expected 1")
    return fds[0]


def _request_name(req: int) -> str:
    try:
        return vu.Request(req).name
    except ValueError:
        return f"request {req}"


def _poll(fds: list[int], timeout_ms: int) -> set[int]:
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN)
    return {fd for fd, _ev in p.poll(timeout_ms)}


def _readable(fd: int, timeout_ms: int) -> bool:
    return bool(_poll([fd], timeout_ms))
