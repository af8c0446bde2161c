"""The two halves of a split virtqueue, as state machines over shared memory.

:class:`VirtqueueDriver` is the side that owns the buffers (Linux's virtio driver, the
host in remoteproc); :class:`VirtqueueDevice` is the side that consumes them (the
remote firmware).  Neither knows what the buffers carry, how the memory was mapped, or
how a notification travels: the driver gets buffer addresses from its caller, the device
gets a ``translate(addr, len) -> offset`` function, and both only *answer* whether the
peer wants a notification; sending it is the caller's business, who says when it has
(``notified()``: until then the notification is owed, and the next answer is yes).

The peer is not trusted.  Every index and descriptor it writes is checked before use:
a value that cannot be right breaks the queue with a :class:`VirtqueueError` naming the
value, and the queue stays broken.  Each half keeps private copies of what it needs
(buffer lengths, which descriptors are outstanding) so that a peer rewriting shared
memory after the fact changes nothing.

Indices are free-running u16 values; the ring slot is ``idx & (num - 1)``.  Chained and
indirect descriptors are not supported: rpmsg in Linux and OpenAMP uses one descriptor
per buffer, and a device seeing a chain reports it as an error rather than guessing.
"""

from __future__ import annotations

import mmap
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol

from amplink.errors import AddressError, VirtqueueError
from amplink.memory.barrier import full_fence
from amplink.tracing import TRACER
from amplink.virtio.constants import (
    VRING_AVAIL_F_NO_INTERRUPT,
    VRING_DESC_F_INDIRECT,
    VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE,
    VRING_USED_F_NO_NOTIFY,
)
from amplink.wire.rpmsg import RPMSG_HDR, RPMSG_HDR_SIZE
from amplink.wire.vring import VringParts

_pack_hdr = RPMSG_HDR.pack
_unpack_hdr = RPMSG_HDR.unpack_from
_HDR = RPMSG_HDR_SIZE
_FREE = -1
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1
_I64 = (1 << 63) - 1

SEND_NO_BUFFER = -1
"""``send_copy``'s answer when no buffer is free (the peer has not given one back)."""
SEND_TOO_SMALL = -2
"""``VirtqueueDevice.send_copy``'s answer when the next buffer cannot hold the message
(it stays on the ring, untaken)."""


def rpmsg_header(src: int, dst: int, data: bytes | memoryview) -> bytes:
    """The rpmsg header ``send_copy`` writes before ``data`` (``struct rpmsg_hdr``:
    ``src``, ``dst``, reserved 0, the payload's length, flags 0): ``OverflowError`` for
    an address that is not 32 bits, ``ValueError`` for a payload longer than its 16-bit
    length field says (``TypeError`` for an address that is no integer)."""
    try:
        return _pack_hdr(src, dst, 0, len(data), 0)
    except struct.error:
        pass
    if not (isinstance(src, int) and isinstance(dst, int)):
        raise TypeError("an rpmsg address is an integer")
    if not (0 <= src <= _U32 and 0 <= dst <= _U32):
        raise OverflowError("an rpmsg address is 32 bits")
    raise ValueError(f"a payload of {len(data)} bytes is longer than an rpmsg header can say")


def rpmsg_payload(data: object) -> memoryview:
    """``data``'s bytes as one contiguous run, for a send: the payload's length is its
    size in bytes (``nbytes``), whatever its item size.  ``TypeError`` for an object
    that is no bytes-like object, ``BufferError`` for one whose bytes are not one
    contiguous run (a strided view: the compiled halves cannot take it, and a copy
    would hide a cost the caller can pay once)."""
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"a payload is a bytes-like object, not {type(data).__name__!r}") from None
    if not view.c_contiguous:
        raise BufferError("a payload is one contiguous run of bytes, not a strided view: copy it")
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class Window(Protocol):
    """Memory a vring lives in: typed views at byte offsets (e.g. a SharedRegion)."""

    def view(self, offset: int, length: int) -> memoryview:
        """Bytes ``[offset, offset + length)`` of the window."""

    def cast(self, offset: int, length: int, fmt: Literal["H", "I", "Q"]) -> memoryview:
        """The same bytes as 16-, 32- or 64-bit words."""


def _out_of_range(addr: int, length: int, token: int) -> ValueError:
    """What of an ``add``'s arguments is out of range (checked before anything moves)."""
    for value, top, what in (
        (addr, _U64, "address"),
        (length, _U32, "length"),
        (token, _I64, "token"),
    ):
        if not 0 <= value <= top:
            return ValueError(f"{what} {value!r} is out of range [0, {top}]")
    return ValueError("in range")  # (not reached: called when one is out)


class Recipient(Protocol):
    """What :meth:`VirtqueueDriver.recv_copies` and :meth:`VirtqueueDevice.recv_copies`
    deliver to (an rpmsg endpoint)."""

    @property
    def zero_copy(self) -> bool:
        """True: it takes messages in place (``dispatch`` lends them), not copies."""

    @property
    def callback(self) -> object:
        """None unless it has a receive callback (which a taker's step does not run)."""

    def deliver(self, data: bytes, src: int) -> None:
        """Take one message's payload (a copy) from ``src``."""


def _outside(off: int, length: int, size: int) -> ValueError:
    """A buffer that does not lie inside the caller's mapping (the caller's bug: its
    offsets come from its own tokens or the queue's checked translations)."""
    return ValueError(
        f"a buffer at offset {off} of {length} bytes lies outside the window of {size} bytes"
    )


class _Vring:
    """Typed views over one vring's parts; shared by both halves."""

    def __init__(self, window: Window, parts: VringParts, name: str) -> None:
        n = parts.num
        self.name = name
        self.num = n
        self.mask = n - 1
        self.parts = parts
        table = parts.desc_size
        self._desc_q = window.cast(parts.desc, table, "Q")  # addr = [2*i]
        self._desc_i = window.cast(parts.desc, table, "I")  # len = [4*i + 2]
        self._desc_h = window.cast(parts.desc, table, "H")  # flags = [8*i + 6], next = [8*i + 7]
        # avail: flags [0], idx [1], ring[i] [2 + i], used_event [2 + num]
        self._avail = window.cast(parts.avail, parts.avail_size, "H")
        # used: flags [0], idx [1]; elements: id [2*i], len [2*i + 1]; avail_event apart
        self._used_h = window.cast(parts.used, 4, "H")
        self._used_e = window.cast(parts.used + 4, parts.used_size - 6, "I")
        self.broken: VirtqueueError | None = None
        # What is wrong with the entry a batch stopped at, after good ones: the next
        # take breaks the queue on it, whatever that slot holds by then (the good
        # buffers may have been posted again meanwhile, which would make a duplicate of
        # one of them look right).
        self._break_next: str | None = None
        # What the producer side fences on (kick_needed, notify_needed): the caller
        # serialises a queue's producer side, so nobody else ever holds it.
        self._fence = threading.Lock()
        # A notification this side was told to send and has not said it sent (see
        # notified()): the next answer is yes whatever the peer's suppression says.
        self._owed = False

    def _break(self, message: str) -> VirtqueueError:
        self.broken = VirtqueueError(self.name, message)
        return self.broken

    def _raise_broken(self) -> VirtqueueError:
        """The queue's error, to raise again with a traceback of that raise only (each
        raise would otherwise add to the last one's, without bound)."""
        assert self.broken is not None
        return self.broken.with_traceback(None)

    def notified(self) -> None:
        """The caller sent the notification the last answer asked for.  Until then it
        is *owed*: every answer (``kick_needed``, ``notify_needed``, and the fused forms
        of ``add``, ``put``, ``put_many``) is yes, so a notification lost between a ring
        update and its kick (an exception in between) goes with the next update, even
        if the peer's suppression would skip that one."""
        self._owed = False

    def _check_take(self) -> None:
        """Before a take: a broken queue, or the bad entry the last batch stopped at."""
        if self.broken is not None:
            raise self._raise_broken()
        if self._break_next is not None:
            raise self._break(self._break_next)


class VirtqueueDriver(_Vring):
    """The driver half: posts buffers on the avail ring, reclaims them from the used ring.

    It remembers what it last wrote into each descriptor and writes only what changes
    (a buffer usually goes back into the descriptor it came out of): the device reads
    the table, nobody else writes it, and a device that scribbles over it only
    confuses itself."""

    def __init__(self, window: Window, parts: VringParts, name: str) -> None:
        super().__init__(window, parts, name)
        self._free: list[int] = list(range(self.num - 1, -1, -1))
        self._tokens: list[int] = [_FREE] * self.num
        self._lens: list[int] = [0] * self.num
        self._addrs: list[int] = [-1] * self.num  # what each descriptor holds now
        self._flags: list[int] = [-1] * self.num
        self._avail_idx = 0
        self._last_used = 0

    def reset_ring(self) -> None:
        """Zero the whole vring; the driver does this before DRIVER_OK (fresh indices)."""
        for view in (self._desc_q, self._avail, self._used_h, self._used_e):
            with view.cast("B") as raw:
                raw[:] = bytes(raw.nbytes)
        self._addrs = [0] * self.num
        self._flags = [0] * self.num

    @property
    def num_free(self) -> int:
        """Descriptors not in use."""
        return len(self._free)

    def add(
        self, addr: int, length: int, writable: bool, token: int, *, kick_needed: bool = False
    ) -> bool:
        """Post one buffer; ``token`` (>= 0) comes back from :meth:`get` with it.

        With ``kick_needed``, also answer :meth:`kick_needed` in the same call (a
        sender's common case: one call per message instead of two); else False."""
        if self.broken is not None:
            raise self._raise_broken()
        if not (0 <= addr <= _U64 and 0 <= length <= _U32 and 0 <= token <= _I64):
            raise _out_of_range(addr, length, token)
        if not self._free:
            raise VirtqueueError(self.name, "no free descriptor (ring full)")
        self._post(addr, length, VRING_DESC_F_WRITE if writable else 0, token)
        if kick_needed:
            fence = self._fence
            with fence:  # (not acquire(); release(): a Ctrl-C between would leave it held)
                pass
            kick = self._owed or not self._used_h[0] & VRING_USED_F_NO_NOTIFY
            self._owed = kick
            return kick
        return False

    def _post(self, addr: int, length: int, flags: int, token: int) -> None:
        """:meth:`add`'s update, its arguments checked and a descriptor free: the
        descriptor (only what changed), then the avail entry and index."""
        d = self._free.pop()
        if self._addrs[d] != addr:
            self._desc_q[2 * d] = addr
            self._addrs[d] = addr
        if self._flags[d] != flags:
            self._desc_h[8 * d + 6] = flags  # next [8*d + 7] stays 0 (no chains)
            self._flags[d] = flags
        self._desc_i[4 * d + 2] = length
        self._tokens[d] = token
        self._lens[d] = length
        ai = self._avail_idx
        avail = self._avail
        avail[2 + (ai & self.mask)] = d
        ai = (ai + 1) & 0xFFFF
        self._avail_idx = ai
        avail[1] = ai  # publish: the entry above is written first (x86 TSO)
        if TRACER.enabled:
            TRACER.event("virtio", "add", vq=self.name, desc=d, len=length)

    def send_copy(
        self,
        mem: memoryview,
        src: int,
        dst: int,
        data: bytes | memoryview,
        off0: int,
        stride: int,
        da_to_off: int,
    ) -> int:
        """A sender's whole step in one call: reclaim the next used buffer (as
        :meth:`get`), write an rpmsg header (``struct rpmsg_hdr``: ``src``, ``dst``, the
        payload's length) then ``data`` into it at ``off0 + token * stride`` of ``mem``
        (the window's bytes), and post it again, device-readable, at address
        ``offset - da_to_off`` (as :meth:`add` with ``kick_needed``).

        Returns :data:`SEND_NO_BUFFER` if the device has given no buffer back, else
        whether it wants a kick (1 or 0); errors as :meth:`get` and :meth:`add`, and
        those of :func:`rpmsg_payload` and :func:`rpmsg_header` before anything is
        taken."""
        if type(data) is not bytes:
            data = rpmsg_payload(data)
        try:  # (the common case inline: a frame less per send)
            head = _pack_hdr(src, dst, 0, len(data), 0)
        except struct.error:
            head = rpmsg_header(src, dst, data)  # raises what this cannot say
        got = self.get()
        if got is None:
            return SEND_NO_BUFFER
        token = got[0]
        off = off0 + token * stride
        mid = off + len(head)
        end = mid + len(data)
        mem[off:mid] = head
        mem[mid:end] = data
        addr = off - da_to_off
        if not 0 <= addr <= _U64:
            raise _out_of_range(addr, end - off, token)
        self._post(addr, end - off, 0, token)  # (a descriptor is free: get() freed one)
        return int(self.kick_needed())

    def kick_needed(self) -> bool:
        """Whether the device asked to be notified (``VRING_USED_F_NO_NOTIFY`` clear),
        or a kick is owed (:meth:`notified`); the caller serialises it with :meth:`add`."""
        fence = self._fence
        with fence:  # (not acquire(); release(): a Ctrl-C between would leave it held)
            pass
        kick = self._owed or not self._used_h[0] & VRING_USED_F_NO_NOTIFY
        self._owed = kick
        return kick

    def has_used(self) -> bool:
        """True if the device returned a buffer not yet taken."""
        return self._used_h[1] != self._last_used

    def get(self) -> tuple[int, int] | None:
        """Reclaim the next used buffer as ``(token, written_len)``, or None if none.

        The one-buffer case of :meth:`get_many` (a sender's), without a batch's list."""
        if self.broken is not None or self._break_next is not None:
            self._check_take()
        lu = self._last_used
        ui = self._used_h[1]
        if ui == lu:
            return None
        free = self._free
        if (ui - lu) & 0xFFFF > self.num - len(free):
            raise self._used_jump(lu, ui)
        slot = 2 * (lu & self.mask)
        d = self._used_e[slot]
        written = self._used_e[slot + 1]
        if d >= self.num or (token := self._tokens[d]) == _FREE or written > self._lens[d]:
            raise self._break(self._used_error(d, written))
        self._tokens[d] = _FREE
        free.append(d)
        self._last_used = (lu + 1) & 0xFFFF
        if TRACER.enabled:
            TRACER.event("virtio", "get", vq=self.name, desc=d, len=written)
        return token, written

    def get_many(self, limit: int = 0xFFFF) -> list[tuple[int, int]]:
        """Reclaim the used buffers the device has returned, up to ``limit``, as
        ``(token, written_len)`` in ring order, reading the used index once.

        Every entry is checked: one that cannot be right breaks the queue
        (:class:`VirtqueueError`) when it is the first to take; after good ones, those
        are returned and the next call breaks the queue on it."""
        if self.broken is not None or self._break_next is not None:
            self._check_take()
        lu = self._last_used
        ui = self._used_h[1]
        if ui == lu:
            return []
        free = self._free
        count = (ui - lu) & 0xFFFF
        if count > self.num - len(free):
            raise self._used_jump(lu, ui)
        elems = self._used_e
        tokens = self._tokens
        lens = self._lens
        mask = self.mask
        num = self.num
        got: list[tuple[int, int]] = []
        try:
            for _ in range(count if count < limit else limit):
                slot = 2 * (lu & mask)
                d = elems[slot]
                written = elems[slot + 1]
                if d >= num or tokens[d] == _FREE or written > lens[d]:
                    if got:
                        self._break_next = self._used_error(d, written)
                        break  # returned first; the next call breaks on it
                    raise self._break(self._used_error(d, written))
                got.append((tokens[d], written))
                tokens[d] = _FREE
                free.append(d)
                lu = (lu + 1) & 0xFFFF
                if TRACER.enabled:
                    TRACER.event("virtio", "get", vq=self.name, desc=d, len=written)
        except BaseException:  # (a tracer's, or a released view's): nothing was taken
            for token, _ in reversed(got):
                tokens[free.pop()] = token
            raise
        self._last_used = lu
        return got

    def recv_copies(
        self,
        cmap: mmap.mmap,
        base: int,
        da: int,
        size: int,
        endpoints: Mapping[int, Recipient],
        dispatch: Callable[[int, int, int], bool],
        kick: Callable[[], object],
        more: Callable[[], object] | None,
    ) -> int:
        """A receiver's whole step over its receive buffers (``size`` bytes each; buffer
        ``token`` at offset ``base + token * size`` of ``cmap``, the window's bytes, and
        at address ``da + token * size``), the used index read once: for each buffer
        the device returned, in ring order, its rpmsg header (``struct rpmsg_hdr``) is
        read and

        * a well-formed message for an endpoint of ``endpoints`` (by ``dst``) that
          takes copies (not ``zero_copy``) is copied out, its buffer posted again (as
          :meth:`add`, device-writable) and the copy delivered
          (``endpoint.deliver(payload, src)``), as ``rpmsg_recv_single`` does;
        * a buffer with nothing written is posted again;
        * anything else (no such endpoint, a header whose length does not fit in what
          the device wrote, a zero-copy endpoint, or every buffer while the tracer is
          on) goes to ``dispatch(offset, written, token)``, and its buffer is posted
          again unless that returns True (a zero-copy receiver holds it).

        With ``more`` (a receiver that must run no callback), it stops before a buffer
        whose endpoint has a callback, leaves it and the rest on the ring and calls
        ``more()``.  After a batch that took anything, ``kick()`` if the device asked
        to be notified or a notification is owed (as :meth:`kick_needed`, then
        :meth:`notified`).  Returns how many buffers it took.

        Errors: as :meth:`get_many` (a bad entry after good ones ends the batch, and
        the next call breaks the queue on it), ``ValueError`` for a buffer outside
        ``cmap``; an exception from ``deliver``, ``dispatch`` or a tracer ends the
        batch with the buffers it took handled (a delivered copy's buffer was posted
        again first; a dispatched one is not) and the notification for what was
        posted owed (:meth:`notified`).  Linux: ``rpmsg_recv_done``."""
        if self.broken is not None or self._break_next is not None:
            self._check_take()
        lu = self._last_used
        ui = self._used_h[1]
        if ui == lu:
            return 0
        count = (ui - lu) & 0xFFFF
        if count > self.num - len(self._free):
            raise self._used_jump(lu, ui)
        plain = not TRACER.enabled
        elems = self._used_e
        taken = 0
        posted = False
        try:
            while taken < count:
                slot = 2 * (lu & self.mask)
                d = elems[slot]
                written = elems[slot + 1]
                if d >= self.num or self._tokens[d] == _FREE or written > self._lens[d]:
                    if taken:
                        self._break_next = self._used_error(d, written)
                        break  # the next call breaks on it
                    raise self._break(self._used_error(d, written))
                token = self._tokens[d]
                off = base + token * size
                if off < 0 or off + written > len(cmap):
                    raise _outside(off, written, len(cmap))
                ept = None
                if written >= _HDR:
                    src, dst, _res, ln, _flags = _unpack_hdr(cmap, off)
                    ept = endpoints.get(dst)
                    if more is not None and ept is not None and ept.callback is not None:
                        more()
                        break  # left on the ring, untaken
                self._tokens[d] = _FREE
                self._free.append(d)
                lu = self._last_used = (lu + 1) & 0xFFFF
                taken += 1
                if not plain:
                    TRACER.event("virtio", "get", vq=self.name, desc=d, len=written)
                if not written:
                    posted = True
                    self.add(da + token * size, size, True, token)
                elif plain and ept is not None and ln <= written - _HDR and not ept.zero_copy:
                    payload = bytes(cmap[off + _HDR : off + _HDR + ln])
                    posted = True
                    addr = da + token * size
                    if not (0 <= addr <= _U64 and 0 <= size <= _U32):
                        raise _out_of_range(addr, size, token)
                    self._post(addr, size, VRING_DESC_F_WRITE, token)
                    ept.deliver(payload, src)
                elif not dispatch(off, written, token):
                    posted = True
                    self.add(da + token * size, size, True, token)
        except BaseException:
            if posted:
                self._owed = True
            raise
        if taken and self.kick_needed():
            kick()
            self._owed = False
        return taken

    def _used_jump(self, lu: int, ui: int) -> VirtqueueError:
        """Break the queue: the used index moved past what is outstanding."""
        return self._break(
            f"used index moved from {lu} to {ui} ({(ui - lu) & 0xFFFF} entries) but only "
            f"{self.num - len(self._free)} buffers are outstanding"
        )

    def _used_error(self, d: int, written: int) -> str:
        """What is wrong with used element ``(d, written)``."""
        if d >= self.num:
            return f"used id {d} is out of range (num {self.num})"
        if self._tokens[d] == _FREE:
            return f"device returned descriptor {d}, which was not outstanding"
        return f"device wrote {written} bytes into descriptor {d} of {self._lens[d]} bytes"

    def outstanding_tokens(self) -> list[int]:
        """Tokens of buffers the device has not returned (reclaim used ones first)."""
        return [t for t in self._tokens if t != _FREE]

    def disable_cb(self) -> None:
        """Ask the device not to interrupt us (``VRING_AVAIL_F_NO_INTERRUPT``)."""
        self._avail[0] = VRING_AVAIL_F_NO_INTERRUPT

    def enable_cb(self) -> bool:
        """Ask for interrupts again; True if used buffers arrived meanwhile (check them)."""
        self._avail[0] = 0
        full_fence()
        return self._used_h[1] != self._last_used


class VirtqueueDevice(_Vring):
    """The device half: takes buffers from the avail ring, returns them on the used ring."""

    def __init__(
        self,
        window: Window,
        parts: VringParts,
        name: str,
        translate: Callable[[int, int], int],
        *,
        writable: bool,
        whole_used_len: bool = False,
    ) -> None:
        """``writable``: the device writes into this queue's buffers (else it reads
        them); ``whole_used_len``: a read buffer goes back with its whole length as the
        used length instead of the bytes written (0), for drivers that size their next
        buffer from it (OpenAMP's)."""
        super().__init__(window, parts, name)
        self._translate = translate
        self._want_write = VRING_DESC_F_WRITE if writable else 0
        self._whole_used = whole_used_len and not writable
        self._held = bytearray(self.num)
        self._held_len = [0] * self.num
        self._held_count = 0
        self._last_avail = 0
        self._used_idx = 0
        # Per descriptor: the last (address, length) translated and where it lies; the
        # driver posts the same buffers again and again (a pure cache: the translation
        # depends on nothing else).
        self._xlated: list[tuple[int, int, int]] = [(-1, -1, 0)] * self.num

    def has_avail(self) -> bool:
        """True if the driver made a buffer available not yet taken."""
        return self._avail[1] != self._last_avail

    def get(self) -> tuple[int, int, int] | None:
        """Take the next buffer as ``(head, offset, length)``, or None: the one-buffer
        case of :meth:`get_many` (a sender's), without a batch's list."""
        if self.broken is not None or self._break_next is not None:
            self._check_take()
        la = self._last_avail
        ai = self._avail[1]
        if ai == la:
            return None
        if (ai - la) & 0xFFFF > self.num - self._held_count:
            raise self._avail_jump(la, ai)
        head = self._avail[2 + (la & self.mask)]
        if head >= self.num or self._held[head]:
            raise self._break(self._bad_head(head))
        flags = self._desc_h[8 * head + 6]  # read once: the driver may flip it meanwhile
        if flags != self._want_write and (error := self._flags_error(head, flags)):
            raise self._break(error)
        addr = self._desc_q[2 * head]
        length = self._desc_i[4 * head + 2]
        xaddr, xlen, offset = self._xlated[head]
        if xaddr != addr or xlen != length:
            if error := self._translate_desc(head, addr, length):
                raise self._break(error)
            offset = self._xlated[head][2]
        self._held[head] = 1
        self._held_len[head] = length
        self._held_count += 1
        self._last_avail = (la + 1) & 0xFFFF
        if TRACER.enabled:
            TRACER.event("virtio", "get", vq=self.name, desc=head, len=length)
        return head, offset, length

    def get_many(self, limit: int = 0xFFFF) -> list[tuple[int, int, int]]:
        """Take the buffers the driver made available, up to ``limit``, each as
        ``(head, offset, length)``, in ring order, reading the avail index once.

        ``offset`` is where the buffer lies in the window (already bounds-checked);
        ``length`` is a private copy, immune to later rewrites of the descriptor.  Every
        buffer of a queue goes one way (``writable`` at construction); a descriptor with
        the other direction breaks the queue.  An entry that cannot be right breaks the
        queue (:class:`VirtqueueError`) when it is the first to take; after good ones,
        those are returned and the next call breaks the queue on it.
        """
        if self.broken is not None or self._break_next is not None:
            self._check_take()
        la = self._last_avail
        avail = self._avail
        ai = avail[1]
        if ai == la:
            return []
        count = (ai - la) & 0xFFFF
        if count > self.num - self._held_count:
            raise self._avail_jump(la, ai)
        got: list[tuple[int, int, int]] = []
        held = self._held  # (few locals: most calls take one buffer)
        try:
            for _ in range(count if count < limit else limit):
                head = avail[2 + (la & self.mask)]
                if head >= self.num or held[head]:
                    if got:
                        self._break_next = self._bad_head(head)
                        break  # returned first; the next call breaks on it
                    raise self._break(self._bad_head(head))
                flags = self._desc_h[8 * head + 6]  # read once: the driver may flip it meanwhile
                if flags != self._want_write and (error := self._flags_error(head, flags)):
                    if got:
                        self._break_next = error
                        break
                    raise self._break(error)
                addr = self._desc_q[2 * head]
                length = self._desc_i[4 * head + 2]
                xaddr, xlen, offset = self._xlated[head]
                if xaddr != addr or xlen != length:
                    if error := self._translate_desc(head, addr, length):
                        if got:
                            self._break_next = error
                            break
                        raise self._break(error)
                    offset = self._xlated[head][2]
                held[head] = 1
                self._held_len[head] = length
                got.append((head, offset, length))
                la = (la + 1) & 0xFFFF
                if TRACER.enabled:
                    TRACER.event("virtio", "get", vq=self.name, desc=head, len=length)
        except BaseException:  # (a translation's, a tracer's): nothing was taken
            for head, _, _ in got:
                held[head] = 0
            raise
        self._held_count += len(got)
        self._last_avail = la
        return got

    def recv_copies(
        self,
        cmap: mmap.mmap,
        endpoints: Mapping[int, Recipient],
        dispatch: Callable[[int, int, int], bool],
        kick: Callable[[], object],
        more: Callable[[], object] | None,
    ) -> int:
        """A receiver's whole step (the device side of
        :meth:`VirtqueueDriver.recv_copies`, over the buffers the driver made available,
        ``cmap`` the window's bytes): each buffer is taken (as :meth:`get_many`, the
        avail index read once), its rpmsg header read, a well-formed message for a
        copying endpoint copied out and delivered, anything else given to
        ``dispatch(offset, length, head)``; the buffers not held by a zero-copy
        receiver (``dispatch`` returned True) go back together with a used length of 0
        (as :meth:`put_many`), then ``kick()`` if the driver wants an interrupt or one
        is owed.  ``more``, the return value and the errors as the driver's; after an
        exception, the buffers taken (but not a dispatched one) are given back.
        OpenAMP: ``rpmsg_virtio_rx_callback``."""
        if self.broken is not None or self._break_next is not None:
            self._check_take()
        la = self._last_avail
        ai = self._avail[1]
        if ai == la:
            return 0
        count = (ai - la) & 0xFFFF
        if count > self.num - self._held_count:
            raise self._avail_jump(la, ai)
        plain = not TRACER.enabled
        done: list[int] = []
        taken = 0
        avail, desc_h, held, xlated = self._avail, self._desc_h, self._held, self._xlated
        mask, num, want = self.mask, self.num, self._want_write
        size = len(cmap)
        try:
            while taken < count:
                head = avail[2 + (la & mask)]
                if head >= num or held[head]:
                    error: str | None = self._bad_head(head)
                else:
                    flags = desc_h[8 * head + 6]  # read once
                    error = self._flags_error(head, flags) if flags != want else None
                    if error is None:
                        addr = self._desc_q[2 * head]
                        length = self._desc_i[4 * head + 2]
                        xaddr, xlen, off = xlated[head]
                        if xaddr != addr or xlen != length:
                            error = self._translate_desc(head, addr, length)
                            off = xlated[head][2]
                if error is not None:
                    if taken:
                        self._break_next = error
                        break  # the next call breaks on it
                    raise self._break(error)
                if off + length > size:
                    raise _outside(off, length, size)
                ept = None
                if length >= _HDR:
                    src, dst, _res, ln, _flags = _unpack_hdr(cmap, off)
                    ept = endpoints.get(dst)
                    if more is not None and ept is not None and ept.callback is not None:
                        more()
                        break  # left on the ring, untaken
                held[head] = 1
                self._held_len[head] = length
                self._held_count += 1
                la = self._last_avail = (la + 1) & 0xFFFF
                taken += 1
                if not plain:
                    TRACER.event("virtio", "get", vq=self.name, desc=head, len=length)
                if plain and ept is not None and ln <= length - _HDR and not ept.zero_copy:
                    payload = bytes(cmap[off + _HDR : off + _HDR + ln])
                    done.append(head)
                    ept.deliver(payload, src)
                elif not dispatch(off, length, head):
                    done.append(head)
        except BaseException:
            if done:
                self._put_held(done, 0)
                self._owed = True
            raise
        if done:
            self._put_held(done, 0)
            if self.notify_needed():
                kick()
                self._owed = False
        return taken

    def _translate_desc(self, head: int, addr: int, length: int) -> str | None:
        """Find where descriptor ``head``'s buffer lies in the window and remember it
        in ``_xlated`` (for the next time it comes with the same address and length);
        what is wrong if it does not lie inside."""
        try:
            self._xlated[head] = (addr, length, self._translate(addr, length))
        except AddressError as exc:
            return f"descriptor {head}: {exc.strerror}"
        return None

    def _avail_jump(self, la: int, ai: int) -> VirtqueueError:
        """Break the queue: the avail index moved past what the driver can have."""
        return self._break(
            f"avail index moved from {la} to {ai} ({(ai - la) & 0xFFFF} entries) but the "
            f"driver can only have {self.num - self._held_count} buffers available"
        )

    def _bad_head(self, head: int) -> str:
        """What is wrong with avail entry ``head`` (out of range, or held already)."""
        if head >= self.num:
            return f"avail ring names descriptor {head}, out of range (num {self.num})"
        return f"descriptor {head} made available again while the device holds it"

    def _flags_error(self, head: int, flags: int) -> str | None:
        """What is wrong with descriptor ``head``'s ``flags`` (chained, indirect or
        the wrong way), if anything."""
        if flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT):
            return (
                f"descriptor {head} has flags {flags:#x}: chained and indirect descriptors "
                "are not supported"
            )
        if flags & VRING_DESC_F_WRITE == self._want_write:
            return None
        got, want = ("writable", "readable") if self._want_write == 0 else ("readable", "writable")
        return f"descriptor {head} is device-{got} but this queue carries device-{want} buffers"

    def send_copy(self, mem: memoryview, src: int, dst: int, data: bytes | memoryview) -> int:
        """A sender's whole step in one call: take the next buffer (as :meth:`get`) if
        an rpmsg header (``struct rpmsg_hdr``: ``src``, ``dst``, the payload's length)
        and ``data`` fit in it, write them at its start in ``mem`` (the window's bytes)
        and return it with their length (as :meth:`put` with ``notify_needed``).

        Returns :data:`SEND_NO_BUFFER` if none is available, :data:`SEND_TOO_SMALL` if
        the next one cannot hold them (it stays on the ring, untaken: a smaller
        message fits), else whether the driver wants a notification (1 or 0); errors as
        :meth:`get`, and those of :func:`rpmsg_payload` and :func:`rpmsg_header` before
        anything is taken."""
        if type(data) is not bytes:
            data = rpmsg_payload(data)
        try:  # (as the driver's)
            head = _pack_hdr(src, dst, 0, len(data), 0)
        except struct.error:
            head = rpmsg_header(src, dst, data)
        la = self._last_avail
        got = self.get()
        if got is None:
            return SEND_NO_BUFFER
        desc, off, length = got
        n = len(head) + len(data)
        if length < n or off + n > len(mem):  # not taken after all
            self._held[desc] = 0
            self._held_count -= 1
            self._last_avail = la
            if length < n:
                return SEND_TOO_SMALL
            raise ValueError(
                f"a buffer at offset {off} of {n} bytes lies outside the window of {len(mem)} bytes"
            )
        mid = off + len(head)
        mem[off:mid] = head
        mem[mid : mid + len(data)] = data
        return int(self.put_many((desc,), n, notify_needed=True))

    def put(self, head: int, written: int, *, notify_needed: bool = False) -> bool:
        """Return buffer ``head`` to the driver, saying ``written`` bytes were written
        (the buffer's whole length instead, on a ``whole_used_len`` queue).

        With ``notify_needed``, also answer :meth:`notify_needed` in the same call (a
        sender's common case); else False."""
        return self.put_many((head,), written, notify_needed=notify_needed)

    def put_many(self, heads: Sequence[int], written: int, *, notify_needed: bool = False) -> bool:
        """Return buffers ``heads`` (in that order), each with ``written`` bytes, and
        publish the used index once; ``notify_needed`` as :meth:`put`."""
        if self.broken is not None:
            raise self._raise_broken()
        held = self._held
        seen: set[int] | None = set() if len(heads) > 1 else None  # (a head twice: not held)
        for head in heads:  # all checked first: a wrong one changes nothing
            if not 0 <= head < self.num or not held[head] or (seen is not None and head in seen):
                raise ValueError(f"descriptor {head} is not held by the device")
            n = self._held_len[head] if self._whole_used else written
            if not 0 <= n <= self._held_len[head]:
                raise ValueError(f"written length {n} exceeds buffer {self._held_len[head]}")
            if seen is not None:
                seen.add(head)
        self._put_held(heads, written)
        if notify_needed:
            fence = self._fence
            with fence:  # (not acquire(); release(): a Ctrl-C between would leave it held)
                pass
            notify = self._owed or not self._avail[0] & VRING_AVAIL_F_NO_INTERRUPT
            self._owed = notify
            return notify
        return False

    def _put_held(self, heads: Sequence[int], written: int) -> None:
        """:meth:`put_many`'s update, for ``heads`` known to be held (checked, or taken
        by the caller's own step): the used elements, then the index published once."""
        held, held_len, whole = self._held, self._held_len, self._whole_used
        elems = self._used_e
        mask = self.mask
        ui = self._used_idx
        traced = TRACER.enabled
        for head in heads:
            n = held_len[head] if whole else written
            slot = 2 * (ui & mask)
            elems[slot] = head
            elems[slot + 1] = n
            held[head] = 0
            ui = (ui + 1) & 0xFFFF
            if traced:
                TRACER.event("virtio", "put", vq=self.name, desc=head, len=n)
        self._held_count -= len(heads)
        self._used_idx = ui
        self._used_h[1] = ui  # publish after the elements (x86 TSO)

    def notify_needed(self) -> bool:
        """Whether the driver wants an interrupt (``VRING_AVAIL_F_NO_INTERRUPT`` clear),
        or one is owed (:meth:`notified`); the caller serialises it with :meth:`put`."""
        fence = self._fence
        with fence:  # (not acquire(); release(): a Ctrl-C between would leave it held)
            pass
        notify = self._owed or not self._avail[0] & VRING_AVAIL_F_NO_INTERRUPT
        self._owed = notify
        return notify

    def disable_notify(self) -> None:
        """Ask the driver not to kick us (``VRING_USED_F_NO_NOTIFY``)."""
        self._used_h[0] = VRING_USED_F_NO_NOTIFY

    def enable_notify(self) -> bool:
        """Ask for kicks again; True if buffers became available meanwhile (check them)."""
        self._used_h[0] = 0
        full_fence()
        return self._avail[1] != self._last_avail

    def peek_len(self) -> int | None:
        """Length of the next available descriptor without taking it (None if none/invalid)."""
        la = self._last_avail
        if self._avail[1] == la:
            return None
        head = self._avail[2 + (la & self.mask)]
        if head >= self.num:
            return None
        return int(self._desc_i[4 * head + 2])
