"""rpmsg over virtio, on both sides of a virtio device.

* :class:`VirtioRpmsgHost` is the virtio **driver** side (Linux's ``virtio_rpmsg_bus``):
  it allocates its buffer pool from the device's buffer memory, posts the first half as
  receive buffers on vring 0 and sends from the second half on vring 1.
* :class:`VirtioRpmsgRemote` is the virtio **device** side (the firmware, as OpenAMP's
  ``rpmsg_virtio`` in device role): it sends by filling the host's receive buffers from
  vring 0 and receives from vring 1.

Both are made over a :class:`~amplink.virtio.device.VirtioDevice`, whatever its
transport, by the rpmsg virtio driver (:mod:`amplink.rpmsg.virtio_driver`), and share
:class:`VirtioRpmsgLink`: the send path (blocking with a timeout, or not), receive
dispatch under one lock, and busy-polling.  A notification to the peer is
``vdev.notify(index)`` with the index (0 or 1) of the vring that changed; one from the
peer reaches :meth:`VirtioRpmsgLink.handle_notify` through the device's transport.

Busy-polling follows virtio's suppression protocol: a thread that polls the receive ring
first tells the peer not to notify (``disable_cb``/``disable_notify``), and before it
stops polling it re-enables notifications, fences, and drains once more, so no message
can slip between the two.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import time
from abc import abstractmethod
from collections.abc import Callable
from typing import TypeVar

from amplink.errors import RpmsgError, VirtqueueError
from amplink.irq.held_signals import HELD_SIGNALS
from amplink.memory.region import SharedRegion
from amplink.ratelimit import log_ratelimited
from amplink.rpmsg.config import DEFAULT_BUFFERS, RPMSG_BUF_SIZE, RpmsgBuffers
from amplink.rpmsg.core import RPMSG_ADDR_ANY, Endpoint, LentMessage, message_args
from amplink.rpmsg.ns import bind_name_service
from amplink.rpmsg.polled import PolledLink
from amplink.tracing import TRACER
from amplink.virtio.constants import (
    VIRTIO_CONFIG_S_ACKNOWLEDGE,
    VIRTIO_CONFIG_S_DRIVER,
    VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_RPMSG_F_NS,
)
from amplink.virtio.device import VirtioDevice
from amplink.virtio.rings import SEND_NO_BUFFER, SEND_TOO_SMALL, rpmsg_header, rpmsg_payload
from amplink.wait import AdaptiveSpin
from amplink.wire.rpmsg import RPMSG_HDR, RPMSG_HDR_SIZE

log = logging.getLogger(__name__)

DEFAULT_SEND_TIMEOUT = 15.0  # Linux waits 15 s for a TX buffer
SUPPORTED_FEATURES = 1 << VIRTIO_RPMSG_F_NS
_HDR = RPMSG_HDR
_HDR_SIZE = RPMSG_HDR_SIZE


_T = TypeVar("_T")


class TxBuffer:
    """A send buffer lent for zero-copy sending: write the payload into :attr:`data`
    (a view of shared memory), then :meth:`send`; or :meth:`discard` it."""

    __slots__ = ("_done", "_link", "data", "dst", "off", "src", "token")

    def __init__(
        self, link: VirtioRpmsgLink, token: int, off: int, data: memoryview, src: int, dst: int
    ) -> None:
        self._link = link
        self.token = token
        self.off = off
        self.data = data
        self.src = src
        self.dst = dst
        self._done = False

    def send(self, length: int) -> None:
        """Send the first ``length`` bytes of :attr:`data` as one message."""
        if self._done:
            raise RpmsgError(errno.EINVAL, "this send buffer was already sent or discarded")
        if not 0 <= length <= len(self.data):
            raise RpmsgError(errno.EMSGSIZE, f"{length} bytes do not fit in {len(self.data)}")
        if TRACER.enabled:
            t0 = time.perf_counter_ns()
            self._link._lent_tx_done(self, length)
            TRACER.span(
                "rpmsg", "send", t0, flow_out=TRACER.take("flow_out"),
                **message_args(self._link, self.src, self.dst, length),
            )  # fmt: skip
        else:
            self._link._lent_tx_done(self, length)
        self._link.messages_out += 1

    def discard(self) -> None:
        """Give the buffer back unsent. Idempotent."""
        if not self._done:
            self._link._lent_tx_done(self, None)


class RxBuffer(LentMessage):
    """A received message in place (zero-copy endpoints): :attr:`data` is a view of
    shared memory, given back to the peer as :class:`~amplink.rpmsg.core.LentMessage`
    says."""

    __slots__ = ("_link", "token")

    def __init__(self, link: VirtioRpmsgLink, token: int, data: memoryview, src: int) -> None:
        super().__init__(data, src)
        self._link = link
        self.token = token

    def _give_back(self) -> None:
        self._link._lent_rx_done(self)


class VirtioRpmsgLink(PolledLink):
    """What both roles share; the roles supply the ring-specific hooks."""

    # (see PolledLink's)
    __slots__ = (
        "_by_addr",
        "_kick_rx",
        "_lookup",
        "_map",
        "_mem",
        "_mtu",
        "_notify",
        "_region",
        "_rx_index",
        "_rx_notified",
        "_space_waiters",
        "_tx_index",
        "_tx_notified",
        "_tx_spin",
        "send_timeout",
    )

    def __init__(
        self,
        name: str,
        region: SharedRegion,
        notify: Callable[[int], None],
        *,
        tx_index: int,
        ns_supported: bool,
        mtu: int,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        spin: AdaptiveSpin | None = None,
    ) -> None:
        super().__init__(name, ns_supported=ns_supported, spin=spin)
        self._region = region
        self.trace_key = f"{name}@{os.fstat(region.fd).st_ino}"  # this boot's memory
        self._mem = region.mem
        self._map = region.map  # slices of the mapping are bytes: a copy in one step
        self._notify = notify
        self._tx_index = tx_index
        self._rx_index = 1 - tx_index
        self._kick_rx = functools.partial(notify, self._rx_index)  # receive buffers back
        self._mtu = mtu
        self.send_timeout = send_timeout
        self._tx_spin = AdaptiveSpin(self.spin.max_spin_ns, enabled=self.spin.enabled)
        self._space_waiters: list[Callable[[], None]] = []  # see when_can_send()
        self.fail_listeners.append(self._wake_space_waiters)
        self._lookup = self.endpoints.lookup  # the dict's own get: no frame per message
        self._by_addr = self.endpoints.by_addr  # what the receive step looks up
        # The rings' notified() (a role's queue to send on, and to receive from): said
        # after each kick their answers asked for (see Virtqueue*.notified).
        self._tx_notified: Callable[[], None]
        self._rx_notified: Callable[[], None]

    @property
    def mtu(self) -> int:
        return self._mtu

    def watch_channels(self, callback: Callable[[str, int, bool], None]) -> None:
        """Name-service announcements (binds the ``rpmsg_ns`` endpoint)."""
        bind_name_service(self, lambda msg: callback(msg.name, msg.addr, not msg.destroy))

    # -- role hooks ------------------------------------------------------------------
    @abstractmethod
    def _take_tx(self) -> tuple[int, int, int] | None:
        """A free send buffer as ``(token, offset, capacity)``; tx lock held."""

    @abstractmethod
    def _commit_tx(self, token: int, off: int, nbytes: int) -> bool:
        """Hand a filled send buffer to the peer (``token`` and ``off`` as :meth:`_take_tx`
        gave them); True if the peer wants a notification."""

    @abstractmethod
    def _tx_returning(self) -> bool:
        """Whether a send buffer may have come back (cheap, lock-free peek)."""

    @abstractmethod
    def _tx_notifications(self, enable: bool) -> bool:
        """Ask (or stop asking) to be notified when send buffers come back."""

    # -- sending ---------------------------------------------------------------------
    def send(self, src: int, dst: int, data: bytes, *, block: bool, timeout: float | None) -> None:
        if type(data) is not bytes:  # (its length in bytes, whatever its item size)
            data = rpmsg_payload(data)  # type: ignore[assignment]
        n = len(data)
        if n > self._mtu or RPMSG_ADDR_ANY in (src, dst) or self.failure is not None:
            raise self._refusal(src, dst, n)
        # A send is one section: a Ctrl-C waits until the ring update and its kick
        # are both done (amplink.irq.held_signals); only a wait for a buffer lets it
        # through (it ends the wait, and the send).  A send in a section already (a
        # reply from a receive callback, in its drain's) enters none for the ring update
        # (one inside would only be counted), but does for a wait, so that the wait lets
        # no signal through inside the callback.  (The section's methods are called, not
        # `with`: no frame for a body of its own; its exit runs last, as a `with`'s would.)
        held = HELD_SIGNALS
        entered = held.depth <= held.floor
        try:
            if entered:
                held.__enter__()
            try:
                lock = self._tx_lock
                lock.acquire()  # (then try: safe in a section; `with` makes two methods)
                try:
                    kick = self._try_send(src, dst, data, n)
                finally:
                    lock.release()
                if kick is None:
                    kick = self._send_blocked(src, dst, data, n, block, timeout, entered)
                if kick:
                    self._notify(self._tx_index)
                    self._tx_notified()
            finally:
                if entered:
                    held.__exit__(None, None, None)
        except VirtqueueError as exc:
            self.fail(exc)  # not under the TX lock (its listeners take it), nor held
            raise

    def _send_blocked(
        self, src: int, dst: int, data: bytes, n: int, block: bool, timeout: float | None,
        entered: bool,
    ) -> bool:  # fmt: skip
        """:meth:`send` found no free buffer: ``ENOMEM`` unless ``block``, else wait for
        one (in a section of its own unless the send ``entered`` one)."""
        if not block:
            raise RpmsgError(
                errno.ENOMEM, f"no free TX buffer on {self.name} (the remote is behind)"
            )

        def attempt() -> bool | None:
            return self._try_send(src, dst, data, n)

        if entered:
            return self._send_waiting(attempt, timeout)
        with HELD_SIGNALS:
            return self._send_waiting(attempt, timeout)

    def _refusal(self, src: int, dst: int, n: int) -> OSError:
        """Why a send of ``n`` bytes from ``src`` to ``dst`` cannot go at all."""
        if n > self._mtu:
            return RpmsgError(
                errno.EMSGSIZE,
                f"message of {n} bytes exceeds the MTU of {self._mtu} bytes on {self.name}",
            )
        if self.failure is not None:
            return self.dead_error()
        return RpmsgError(
            errno.EINVAL,
            "rpmsg send needs a source and a destination address (no broadcast): "
            "use sendto() or wait for the remote to announce its channel",
        )

    @abstractmethod
    def _try_send(self, src: int, dst: int, data: bytes, n: int) -> bool | None:
        """Put one message of ``n`` bytes on the ring (TX lock held): whether the peer
        wants a notification, or None when no send buffer is free.  ``EPIPE`` once the
        link failed (its memory may be gone); a ring the peer broke raises
        ``VirtqueueError``, which the caller turns into :meth:`fail` once the lock is
        free."""

    def _send_waiting(self, attempt: Callable[[], _T | None], timeout: float | None) -> _T:
        """Retry ``attempt`` (under the TX lock) until it gets a buffer, or time out; in
        the caller's section (:mod:`amplink.irq.held_signals`: only the sleeps let
        signals through, so the count and the notifications are undone whatever comes)."""
        timeout = self.send_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:  # a spinning sender reads the ring without a lock: counted meanwhile
            if self._enter_memory():
                self._tx_spin.spin(lambda: self.failure is not None or self._tx_returning())
        finally:
            self._leave_memory()
        with self._tx_lock:
            try:
                return self._send_wait(
                    attempt,
                    deadline,
                    lambda: self._tx_notifications(True),  # buffers came back meanwhile
                    lambda: RpmsgError(
                        errno.ETIMEDOUT,
                        f"no TX buffer became free on {self.name} within {timeout}s: "
                        "the remote is not consuming messages",
                    ),
                )
            finally:
                if self._tx_waiters == 0 and not self._space_waiters and self.failure is None:
                    self._tx_notifications(False)

    # -- zero copy -------------------------------------------------------------------
    def get_tx_buffer(
        self, src: int, dst: int, *, block: bool = True, timeout: float | None = None
    ) -> TxBuffer:
        """Lend a send buffer to fill in place (:class:`TxBuffer`); waits like send."""
        if RPMSG_ADDR_ANY in (src, dst):
            raise RpmsgError(errno.EINVAL, "a send buffer needs a source and a destination")
        buf = None
        try:
            with HELD_SIGNALS:  # one section, as send's
                with self._tx_lock:
                    if self.failure is not None:
                        raise self.dead_error()
                    got = self._take_tx()
                if got is None:
                    if not block:
                        raise RpmsgError(errno.ENOMEM, f"no free TX buffer on {self.name}")
                    got = self._send_waiting(self._take_tx_alive, timeout)
                token, off, cap = got
                view = self._region.view(off + _HDR_SIZE, cap - _HDR_SIZE)
                buf = TxBuffer(self, token, off, view, src, dst)
        except VirtqueueError as exc:
            self.fail(exc)
            raise
        except BaseException:
            if buf is not None:  # a Ctrl-C held until the section's end: not lent after all
                buf.discard()
            raise
        return buf

    def _take_tx_alive(self) -> tuple[int, int, int] | None:
        """:meth:`_take_tx` (TX lock held), ``EPIPE`` once the link failed (its memory
        may be gone); a ring the peer broke raises ``VirtqueueError``, which the caller
        turns into :meth:`fail` once the lock is free."""
        if self.failure is not None:
            raise self.dead_error()
        return self._take_tx()

    def _lent_tx_done(self, buf: TxBuffer, length: int | None) -> None:
        """A lent send buffer comes back: sent with ``length`` payload bytes, or unused
        (marked done in the same section: cut short before it, it can be sent again)."""
        kick = False
        with HELD_SIGNALS:  # the buffer's return, the ring update and its kick
            buf._done = True
            cap = _HDR_SIZE + len(buf.data)
            self._region.forget(buf.data)
            buf.data.release()
            with self._tx_lock:
                if self.failure is not None:
                    if length is not None:
                        raise self.dead_error()
                    return
                if length is None:
                    self._return_tx(buf.token, buf.off, cap)
                else:
                    _HDR.pack_into(self._mem, buf.off, buf.src, buf.dst, 0, length, 0)
                    kick = self._commit_tx(buf.token, buf.off, _HDR_SIZE + length)
                    if TRACER.enabled:
                        TRACER.sent(self)
            if kick:
                self._notify(self._tx_index)
                self._tx_notified()

    def _lent_rx_done(self, buf: RxBuffer) -> None:
        """A held receive buffer is released: give it back to the peer."""
        with HELD_SIGNALS:  # the buffer's return, the ring update and its kick
            self._region.forget(buf.data)
            buf.data.release()
            with self._rx_lock:
                if self.failure is None and self._return_rx(buf.token):
                    self._notify(self._rx_index)
                    self._rx_notified()

    @abstractmethod
    def _return_tx(self, token: int, off: int, cap: int) -> None:
        """Keep a send buffer that was taken but not sent (``off`` and ``cap`` as
        :meth:`_take_tx` gave them) for the next send; tx lock held."""

    def _fill_tx(
        self, token: int, off: int, cap: int, src: int, dst: int, data: bytes, n: int
    ) -> None:
        """Write the header and payload of a message into the send buffer taken at
        ``off``; if they cannot be written (an address past 32 bits, a payload that is
        not bytes-like or not contiguous: the error raised), the buffer is kept for
        the next send instead of being lost (hostile review: 256 refused sends left a
        core with none).  TX lock held."""
        try:  # (the errors of send_copy's: rpmsg_header's)
            self._map[off : off + _HDR_SIZE] = rpmsg_header(src, dst, data)
            self._map[off + _HDR_SIZE : off + _HDR_SIZE + n] = data
        except BaseException:
            self._return_tx(token, off, cap)
            raise

    @abstractmethod
    def _return_rx(self, token: int) -> bool:
        """Give a receive buffer back to the peer; True if the peer wants a kick."""

    # -- receiving -------------------------------------------------------------------
    def handle_notify(self) -> None:
        """The peer notified us: wake blocked senders and dispatch received messages."""
        if self._tx_waiters or self._space_waiters:
            callbacks: list[Callable[[], None]] = []
            with self._tx_lock:
                self._wake_senders()
                if self._space_waiters and self.failure is None and self._peek_tx():
                    callbacks, self._space_waiters = self._space_waiters, []
                    if not self._tx_waiters:
                        self._tx_notifications(False)
            for cb in callbacks:
                cb()
        self._drain(blocking=True, unless_owed=True)

    def when_can_send(self, src: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once a send would not wait (now, if it would not now).

        It runs in whatever thread notices: the caller's, or the receive context when
        the peer returns a buffer; also when the link fails, so a waiter finds out."""
        with self._tx_lock:
            if self.failure is None and not self._peek_tx():
                self._space_waiters.append(callback)
                if not self._tx_notifications(True):
                    return
                self._space_waiters.remove(callback)  # buffers came back meanwhile
        callback()

    def _wake_space_waiters(self, error: OSError) -> None:
        with self._tx_lock:
            callbacks, self._space_waiters = self._space_waiters, []
        for cb in callbacks:
            cb()

    def _dispatch_buffer(self, off: int, length: int, token: int) -> bool:
        """Decode the message in ``length`` valid bytes at ``off`` and dispatch it;
        True if a zero-copy receiver holds the buffer (it is given back later).

        The header comes from the peer: a payload length that does not fit in what the
        peer said it wrote drops that message (logged), never more.
        """
        if TRACER.enabled:  # every buffer the peer filled, in ring order, as it counts
            TRACER.received(self)
        if length >= _HDR_SIZE:
            src, dst, _res, ln, _flags = _HDR.unpack_from(self._mem, off)
            if ln <= length - _HDR_SIZE:
                ept = self._lookup(dst)
                if ept is None:
                    self.endpoints.no_recipient(src, dst)
                    return False
                # Lent in place only to a callback (the buffer is valid during it, or
                # until released): a message queued for recv() is a copy, as GLINK's.
                if not ept.zero_copy or ept.callback is None:
                    start = off + _HDR_SIZE
                    ept.deliver(self._map[start : start + ln], src)
                    return False
                return self._lend_rx(ept, off, ln, token, src)
        else:
            ln = -1
        log_ratelimited(
            log,
            logging.ERROR,
            self.name,
            "%s: dropped a received buffer: header announces %d payload bytes but the peer "
            "wrote %d bytes in all (a buggy or hostile remote)",
            self.name,
            ln,
            length,
        )
        return False

    def _lend_rx(self, ept: Endpoint, off: int, ln: int, token: int, src: int) -> bool:
        """Deliver a message in place to a zero-copy endpoint; True if it holds it."""
        buf = RxBuffer(self, token, self._region.view(off + _HDR_SIZE, ln), src)
        ept.deliver(buf, src)  # type: ignore[arg-type]
        if buf.held:
            return True
        self._region.forget(buf.data)
        buf.data.release()
        return False

    def can_send(self, src: int) -> bool:
        with self._tx_lock:
            return self.failure is None and self._peek_tx()

    @abstractmethod
    def _peek_tx(self) -> bool:
        """Whether a send buffer is free, without taking it; tx lock held."""


class VirtioRpmsgHost(VirtioRpmsgLink):
    """The virtio driver side: what Linux's ``virtio_rpmsg_bus`` does on the host."""

    __slots__ = (
        "_da_to_off",
        "_n_rx",
        "_n_tx",
        "_next_unused_tx",
        "_pool_da",
        "_pool_off",
        "_rx_size",
        "_rx_vq",
        "_spare_tx",
        "_tx_base",
        "_tx_off0",
        "_tx_size",
        "_tx_vq",
        "buffers",
        "vdev",
    )

    def __init__(
        self,
        name: str,
        vdev: VirtioDevice,
        *,
        buffers: RpmsgBuffers = DEFAULT_BUFFERS,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
    ) -> None:
        """Bring ``vdev`` up as its driver: reset, negotiate, allocate the buffer pool
        (``buffers``: the receive buffers, then the send buffers), init the rings, post
        the receive buffers, ``DRIVER_OK`` (``EINVAL`` unless it has two vrings;
        ``ENOMEM`` if its buffer memory is too small)."""
        if vdev.num_vrings != 2:
            raise RpmsgError(
                errno.EINVAL, f"{vdev.name}: an rpmsg device has two vrings, not {vdev.num_vrings}"
            )
        vdev.status = 0
        vdev.status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER
        features = vdev.negotiate(SUPPORTED_FEATURES)
        super().__init__(
            name,
            vdev.window,
            vdev.notify,
            tx_index=1,
            ns_supported=bool(features & SUPPORTED_FEATURES),
            mtu=buffers.tx_size - _HDR_SIZE,
            send_timeout=send_timeout,
            spin=AdaptiveSpin(enabled=vdev.spin, peer=vdev.spin_peer),
        )
        self.vdev = vdev
        self.buffers = buffers
        self._rx_vq = vdev.driver_vq(0, f"{name}.rx")
        self._tx_vq = vdev.driver_vq(1, f"{name}.tx")
        self._rx_size = rx_size = buffers.rx_size
        self._tx_size = buffers.tx_size
        self._n_rx, self._n_tx = buffers.counts(self._rx_vq.num, self._tx_vq.num)
        pool_da, self._pool_off = vdev.dma_alloc(
            buffers.pool_bytes(self._rx_vq.num, self._tx_vq.num)
        )
        self._pool_da = pool_da
        # send buffers follow the receive buffers; token t >= n_rx is send buffer t - n_rx
        self._tx_base = self._n_rx * rx_size - self._n_rx * self._tx_size
        self._tx_off0 = self._pool_off + self._tx_base  # send buffer t at _tx_off0 + t * size
        self._da_to_off = self._pool_off - pool_da  # a buffer's offset minus its address
        self._next_unused_tx = 0
        self._spare_tx: list[int] = []  # taken for zero copy, then not sent
        self._rx_peek = self._rx_vq.has_used  # (see PolledLink.__init__)
        self._tx_notified = self._tx_vq.notified
        self._rx_notified = self._rx_vq.notified
        self._suppress = self._rx_vq.disable_cb
        self._unsuppress = self._rx_vq.enable_cb
        self._rx_vq.reset_ring()
        self._tx_vq.reset_ring()
        for i in range(self._n_rx):
            self._rx_vq.add(pool_da + i * rx_size, rx_size, True, i)
        self._tx_vq.disable_cb()  # TX-complete callbacks only while a sender waits
        vdev.status = (
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK
        )
        vdev.notify(0)  # the receive buffers are posted

    def unconsumed(self) -> dict[int, int]:
        """Per source address, how many sent messages the device never consumed.

        Meant for a dead peer: used buffers are reclaimed first (a broken used ring
        stops that), and whatever is still outstanding was never taken."""
        with self._tx_lock:
            try:
                while self._tx_vq.get() is not None:
                    pass
            except VirtqueueError:
                pass
            counts: dict[int, int] = {}
            for token in self._tx_vq.outstanding_tokens():
                src = _HDR.unpack_from(self._mem, self._pool_off + self._tx_offset(token))[0]
                counts[src] = counts.get(src, 0) + 1
            return counts

    def _take_tx(self) -> tuple[int, int, int] | None:
        """A free send buffer: one given back unsent, one never used yet, or one the
        device has returned; TX lock held."""
        if self._spare_tx:
            token = self._spare_tx.pop()
        elif self._next_unused_tx < self._n_tx:
            token = self._n_rx + self._next_unused_tx
            self._next_unused_tx += 1
        else:
            got = self._tx_vq.get()
            if got is None:
                return None
            token = got[0]
        size = self._tx_size
        return token, self._tx_off0 + token * size, size

    def _try_send(self, src: int, dst: int, data: bytes, n: int) -> bool | None:
        if self.failure is not None:
            raise self.dead_error()
        if self._spare_tx or self._next_unused_tx < self._n_tx:
            got = self._take_tx()
            assert got is not None
            token, off, cap = got  # n <= mtu: the buffer holds it
            self._fill_tx(token, off, cap, src, dst, data, n)
            kick = self._commit_tx(token, off, _HDR_SIZE + n)
        else:  # the common case: the buffer the device returned first, in one call
            sent = self._tx_vq.send_copy(
                self._mem, src, dst, data, self._tx_off0, self._tx_size, self._da_to_off
            )
            if sent == SEND_NO_BUFFER:
                return None
            kick = sent > 0
        if TRACER.enabled:  # in ring order: several senders pair their flows right
            TRACER.sent(self)
        return kick

    def _tx_offset(self, token: int) -> int:
        """Offset in the pool of send buffer ``token`` (tokens follow the receive ones)."""
        return self._tx_base + token * self._tx_size

    def _return_tx(self, token: int, off: int, cap: int) -> None:
        self._spare_tx.append(token)

    def _return_rx(self, token: int) -> bool:
        bs = self._rx_size
        return self._rx_vq.add(self._pool_da + token * bs, bs, True, token, kick_needed=True)

    def _commit_tx(self, token: int, off: int, nbytes: int) -> bool:
        return self._tx_vq.add(off - self._da_to_off, nbytes, False, token, kick_needed=True)

    def _peek_tx(self) -> bool:
        return bool(self._spare_tx) or self._next_unused_tx < self._n_tx or self._tx_vq.has_used()

    def _tx_returning(self) -> bool:
        return self._tx_vq.has_used()

    def _tx_notifications(self, enable: bool) -> bool:
        if enable:
            return self._tx_vq.enable_cb()
        self._tx_vq.disable_cb()
        return False

    def rx_pending(self) -> bool:
        # Failed: nothing will be dispatched any more, and the memory may be unmapped.
        return self.failure is None and self._rx_vq.has_used()

    def suppress_rx(self) -> None:
        self._rx_vq.disable_cb()

    def unsuppress_rx(self) -> bool:
        return self._rx_vq.enable_cb()

    def _drain_rx(self) -> int:
        self._rx_owed = False  # (before the index is read: it takes in what was skipped)
        # One call for the whole batch (Virtqueue*.recv_copies): a taker's drain stops
        # before a message for an endpoint with a callback (see _drain_as_taker)
        return self._rx_vq.recv_copies(
            self._map, self._pool_off, self._pool_da, self._rx_size, self._by_addr,
            self._dispatch_buffer, self._kick_rx, self._rx_more if self._rx_taker else None,
        )  # fmt: skip


class VirtioRpmsgRemote(VirtioRpmsgLink):
    """The virtio device side: the firmware side of rpmsg-over-virtio.

    Made once the driver is up (``DRIVER_OK`` on a remoteproc vdev, the first kick of a
    vhost-user front end).  Vring 0 (``tx``) holds the host's receive buffers
    (device-writable), vring 1 (``rx``) what the host sends.  The MTU follows the size
    of the receive buffers the host posted, as in OpenAMP.  :meth:`peer_reset` says
    when the driver has gone (the vdev was reset, the front end disconnected).
    """

    __slots__ = ("_peer_reset", "_rx_vq", "_spare_tx", "_tx_vq")

    def __init__(
        self, name: str, vdev: VirtioDevice, *, send_timeout: float = DEFAULT_SEND_TIMEOUT
    ) -> None:
        if vdev.num_vrings != 2:
            raise RpmsgError(
                errno.EINVAL, f"{vdev.name}: an rpmsg device has two vrings, not {vdev.num_vrings}"
            )
        tx = vdev.device_vq(0, f"{name}.tx", writable=True)
        rx = vdev.device_vq(1, f"{name}.rx", writable=False)
        first = tx.peek_len()  # the host's receive buffers tell how big a message can be
        mtu = (first if first is not None else RPMSG_BUF_SIZE) - _HDR_SIZE
        super().__init__(
            name,
            vdev.window,
            vdev.notify,
            tx_index=0,
            ns_supported=bool(vdev.features() & SUPPORTED_FEATURES),
            mtu=max(mtu, 0),
            send_timeout=send_timeout,
            spin=AdaptiveSpin(enabled=vdev.spin),
        )
        self._peer_reset = vdev.peer_reset
        self._tx_vq = tx
        self._rx_vq = rx
        self._rx_peek = rx.has_avail  # (see PolledLink.__init__)
        self._tx_notified = tx.notified
        self._rx_notified = rx.notified
        self._suppress = rx.disable_notify
        self._unsuppress = rx.enable_notify
        self._spare_tx: list[tuple[int, int, int]] = []  # taken, then not sent: kept
        tx.disable_notify()  # no kick when the host returns RX buffers, unless we wait

    def _take_tx(self) -> tuple[int, int, int] | None:
        if self._spare_tx:
            return self._spare_tx.pop()
        return self._tx_vq.get()

    def _try_send(self, src: int, dst: int, data: bytes, n: int) -> bool | None:
        if self.failure is not None:
            raise self.dead_error()
        if self._spare_tx:  # taken for zero copy, then not sent
            desc, off, cap = self._spare_tx.pop()
            if _HDR_SIZE + n > cap:
                self._return_tx(desc, off, cap)
                raise self._too_big(cap, n)
            self._fill_tx(desc, off, cap, src, dst, data, n)
            kick = self._commit_tx(desc, off, _HDR_SIZE + n)
        else:  # the common case: the next buffer the host posted, in one call
            sent = self._tx_vq.send_copy(self._mem, src, dst, data)
            if sent == SEND_NO_BUFFER:
                return None
            if sent == SEND_TOO_SMALL:
                raise self._too_big(self._tx_vq.peek_len(), n)
            kick = sent > 0
        if TRACER.enabled:  # in ring order: several senders pair their flows right
            TRACER.sent(self)
        return kick

    def _commit_tx(self, token: int, off: int, nbytes: int) -> bool:
        return self._tx_vq.put(token, nbytes, notify_needed=True)

    @staticmethod
    def _too_big(cap: int | None, n: int) -> RpmsgError:
        """``EMSGSIZE``: the host's next buffer (``cap`` bytes) cannot hold ``n`` bytes."""
        holds = "fewer" if cap is None else str(max(cap - _HDR_SIZE, 0))
        return RpmsgError(errno.EMSGSIZE, f"the peer's buffer holds {holds} payload bytes, not {n}")

    def _return_tx(self, token: int, off: int, cap: int) -> None:
        # Kept for the next send, not given back unused: a host takes the header of a
        # used buffer as a message whatever its used length (OpenAMP's reads it as it
        # is; Linux's length check wraps around at 0), so the stale one of an earlier
        # message would be delivered again.
        self._spare_tx.append((token, off, cap))

    def _return_rx(self, token: int) -> bool:
        return self._rx_vq.put(token, 0, notify_needed=True)

    def _peek_tx(self) -> bool:
        return bool(self._spare_tx) or self._tx_vq.has_avail()

    def _tx_returning(self) -> bool:
        return self._tx_vq.has_avail()

    def _tx_notifications(self, enable: bool) -> bool:
        if enable:
            return self._tx_vq.enable_notify()
        self._tx_vq.disable_notify()
        return False

    def peer_reset(self) -> bool:
        return self._peer_reset()

    def rx_pending(self) -> bool:
        return self.failure is None and self._rx_vq.has_avail()  # as the host's

    def suppress_rx(self) -> None:
        self._rx_vq.disable_notify()

    def unsuppress_rx(self) -> bool:
        return self._rx_vq.enable_notify()

    def _drain_rx(self) -> int:
        return self._rx_vq.recv_copies(
            self._map, self._by_addr, self._dispatch_buffer, self._kick_rx,
            self._rx_more if self._rx_taker else None,
        )  # fmt: skip
