"""The mailbox framework: controllers, channels and clients, with Linux's contract.

A *controller* driver (a subclass of :class:`MboxController`) drives a mailbox unit;
a *client* (:class:`MboxClient`) binds one of its channels exclusively and sends
opaque messages through it.  Each channel has a queue of :data:`MBOX_TX_QUEUE_LEN`
messages; one at a time is handed to the hardware (``send_data``), and the next goes
when the hardware reports the previous one done: by interrupt (the controller calls
:meth:`MboxChan.txdone`), by polling (``last_tx_done`` every ``txpoll_period`` ms) or by
the client's acknowledgement (:func:`client_txdone`, for clients that ``knows_txdone``).
Received data is not buffered: the controller's :meth:`MboxChan.received_data` calls
the client's ``rx_callback`` in the controller's context.

Errors are :class:`~amplink.errors.MailboxError` with Linux's errno where the kernel
returns a negative code; controller operations keep the kernel's convention of
returning ``0`` or ``-errno`` because the framework passes those codes through.

**Blocking sends, two fixes.** Linux has one completion per channel, so with two
threads sending in blocking mode on one channel a thread can be woken by the *other*
thread's message, and a blocking send reports success even when the controller
reported a TX error (reference §1.8).  Here every blocking send waits on its own slot:
it is woken only when *its* message is done, and it raises the result the controller
reported for it.  A sender that times out while its message is still queued cancels
it, so it is never sent afterwards; one that times out while its message is on the
hardware ticks the channel with ``-ETIME`` as Linux does.  (Mainline instead declared
concurrent blocking senders unsupported; see docs/differences.md.)

**TX-done on demand.** A client that neither blocks nor has a ``tx_done`` callback
learns nothing from a TX-done interrupt; all it needs is that its next message waits
until the hardware took the last one.  On an IRQ-ticked channel whose controller can
tell that from its registers (:meth:`MboxController.txdone_on_demand`), such a
client's messages go out without arming the TX-done interrupt: the framework reads
the hardware (``last_tx_done``) when the next message is submitted, and arms the
interrupt (``arm_txdone``) only when a message has to wait.  Linux arms it for every
message; here a vring kick then costs one interrupt, not two (docs/differences.md).
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from amplink.errors import MailboxError
from amplink.tracing import TRACER

log = logging.getLogger(__name__)

MBOX_TX_QUEUE_LEN = 20
TXDONE_BY_IRQ = 1 << 0
TXDONE_BY_POLL = 1 << 1
TXDONE_BY_ACK = 1 << 2
EPROBE_DEFER = 517  # kernel-internal: "the provider is not registered yet, try later"
FOREVER_MS = 3_600_000  # tx_tout == 0 means "forever", which Linux makes one hour


class _NoMsg:
    def __repr__(self) -> str:
        return "MBOX_NO_MSG"


MBOX_NO_MSG: Any = _NoMsg()
"""Sentinel that is never a valid message (``None`` is: doorbell-style clients)."""

RxCallback = Callable[["MboxClient", Any], None]
TxPrepare = Callable[["MboxClient", Any], None]
TxDone = Callable[["MboxClient", Any, int], None]


@dataclass(eq=False)
class MboxClient:
    """A mailbox user (Linux's ``struct mbox_client`` plus its device's DT properties).

    ``mboxes`` lists the channels this client may request, each as
    ``(controller_name, *specifier)``; ``mbox_names`` names them in the same order.
    ``tx_tout`` is in milliseconds, 0 meaning "forever".
    """

    dev: str = "client"
    mboxes: Sequence[tuple[Any, ...]] = ()
    mbox_names: Sequence[str] = ()
    rx_callback: RxCallback | None = None
    tx_prepare: TxPrepare | None = None
    tx_done: TxDone | None = None
    tx_block: bool = False
    tx_tout: int = 0
    knows_txdone: bool = False


@dataclass(eq=False, slots=True)
class _Slot:
    """One queued message; ``event`` is set for a blocking sender, who waits on it."""

    data: Any
    event: threading.Event | None = None
    status: int = 0
    done: bool = False


@dataclass(eq=False)
class MboxChan:
    """One channel of a controller."""

    mbox: MboxController
    index: int
    txdone_method: int = 0
    cl: MboxClient | None = None
    con_priv: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    slots: list[_Slot | None] = field(default_factory=lambda: [None] * MBOX_TX_QUEUE_LEN)
    msg_free: int = 0
    msg_count: int = 0
    active: _Slot | None = None
    acked_from_poll: bool = False
    on_demand: bool = False  # TX-done read from the hardware when needed (see above)

    def __repr__(self) -> str:
        return f"<MboxChan {self.trace_name}>"

    @property
    def trace_name(self) -> str:
        """``controller[index]``: how the trace names the channel."""
        return f"{self.mbox.dev}[{self.index}]"

    # -- called by controller drivers ------------------------------------------------
    def received_data(self, msg: Any) -> None:
        """Deliver received data to the client (``mbox_chan_received_data``)."""
        if TRACER.enabled:
            TRACER.event("mailbox", "rx", chan=self.trace_name, msg=msg)
        cl = self.cl
        if cl is not None and cl.rx_callback is not None:
            cl.rx_callback(cl, msg)

    def txdone(self, r: int) -> None:
        """The hardware finished the active message with result ``r`` (IRQ method)."""
        if not self.txdone_method & TXDONE_BY_IRQ:
            log.error("%r: the controller reported txdone but the channel is not IRQ-ticked", self)
            return
        if self.on_demand:
            self._submit()  # the interrupt it armed: the hardware says whether it is done
            return
        self._tick(r)

    # -- the TX state machine --------------------------------------------------------
    def _submit(self) -> None:
        """Hand the oldest queued message to the hardware if it is idle."""
        with self.lock:
            poll = self._submit_locked()
        if poll:
            self.mbox._poll_arm()

    def _submit_locked(self) -> bool:
        """:meth:`_submit` with the lock held; True if the TX poller must run."""
        cl = self.cl
        if cl is None:
            return False
        if self.on_demand and self.active is not None:
            self._reap_locked()
        poll = False
        while self.msg_count and self.active is None:
            idx = (self.msg_free - self.msg_count) % MBOX_TX_QUEUE_LEN
            slot = self.slots[idx]
            self.slots[idx] = None
            self.msg_count -= 1
            if slot is None or slot.data is MBOX_NO_MSG:  # cancelled by a timed-out sender
                continue
            poll = self._start_locked(cl, slot, idx)
            if self.active is None:
                break  # not taken (put back at the head): retried by the poller or a txdone
        if self.on_demand and self.msg_count and self.active is not None:
            self.mbox.arm_txdone(self)  # a message waits: let the hardware say when
        return poll

    def _reap_locked(self) -> None:
        """TX-done on demand: end the active message if the hardware says it is done."""
        if self.mbox.last_tx_done(self):
            ended, self.active = self.active, None
            if TRACER.enabled and ended is not None:
                TRACER.event("mailbox", "txdone", chan=repr(self), msg=ended.data, r=0)

    def _start_locked(self, cl: MboxClient, slot: _Slot, idx: int) -> bool:
        """Hand ``slot`` (taken off the head of the queue, at ``idx``) to the hardware;
        if the controller refuses it, it goes back to the head.  True if the TX poller
        must run.  (If the client's or controller's code raises, the message is back
        at the head too, as if it had never left the queue.)"""
        taken = False
        try:
            if cl.tx_prepare is not None:
                cl.tx_prepare(cl, slot.data)
            taken = self.mbox.send_data(self, slot.data) == 0
        finally:
            if taken:
                self.active = slot
            else:
                self.slots[idx] = slot
                self.msg_count += 1
        return bool(self.txdone_method & TXDONE_BY_POLL)

    def _tick(self, r: int, expected: _Slot | None = None) -> bool:
        """End the active message with result ``r``; with ``expected``, only if that
        slot is the active one.  Returns whether a message was ended."""
        with self.lock:
            slot = self.active
            if expected is not None and slot is not expected:
                return False
            self.active = None
        self._submit()
        if slot is None:
            return False
        if TRACER.enabled:
            TRACER.event("mailbox", "txdone", chan=self.trace_name, msg=slot.data, r=r)
        cl = self.cl
        if cl is not None and cl.tx_done is not None:
            cl.tx_done(cl, slot.data, r)
        if slot.event is not None and r != -errno.ETIME:
            slot.status = r
            slot.done = True
            slot.event.set()
        return True

    def _drop_all(self, status: int) -> None:
        """Forget queued and active messages; blocked senders get ``status``."""
        with self.lock:
            slots = [s for s in self.slots if s is not None]
            if self.active is not None:
                slots.append(self.active)
            self.slots = [None] * MBOX_TX_QUEUE_LEN
            self.msg_free = self.msg_count = 0
            self.active = None
        for slot in slots:
            if slot.event is not None and not slot.done:
                slot.status = status
                slot.done = True
                slot.event.set()


class MboxController:
    """Base class of controller drivers; override the operations the unit supports.

    ``send_data`` is required and runs with the channel lock held: it must not block,
    and must not call :meth:`MboxChan.txdone` itself.  A POLL controller must implement
    ``last_tx_done``.  ``txpoll_period`` is in milliseconds.
    """

    def __init__(
        self,
        dev: str,
        num_chans: int,
        *,
        txdone_irq: bool = False,
        txdone_poll: bool = False,
        txpoll_period: int = 1,
    ) -> None:
        self.dev = dev
        self.num_chans = num_chans
        self.txdone_irq = txdone_irq
        self.txdone_poll = txdone_poll
        self.txpoll_period = txpoll_period
        self.chans = [MboxChan(self, i) for i in range(num_chans)]
        self._registered = False
        self._poll_cond = threading.Condition()
        self._poll_armed = False
        self._poll_stop = False
        self._poll_thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.dev}>"

    # -- operations ------------------------------------------------------------------
    def send_data(self, chan: MboxChan, data: Any) -> int:
        """Start transmitting ``data``: 0, or ``-EBUSY`` (not ready: retried later)."""
        raise NotImplementedError

    def startup(self, chan: MboxChan) -> int:
        """A client bound ``chan``: enable reception. 0 or ``-errno`` (bind fails)."""
        return 0

    def shutdown(self, chan: MboxChan) -> None:
        """The client freed ``chan``: stop delivering to it."""

    def last_tx_done(self, chan: MboxChan) -> bool:
        """POLL method, and TX-done on demand: has the peer consumed the last message?"""
        raise NotImplementedError

    def txdone_on_demand(self, chan: MboxChan) -> bool:
        """Whether ``chan`` (IRQ-ticked) can send without arming its TX-done interrupt,
        because :meth:`last_tx_done` reads completion from the hardware and
        :meth:`arm_txdone` arms the interrupt later (see the module docstring)."""
        return False

    def arm_txdone(self, chan: MboxChan) -> None:
        """TX-done on demand: raise the TX-done interrupt when the message on the
        hardware is done (at once if it is); the channel lock is held."""
        raise NotImplementedError

    def peek_data(self, chan: MboxChan) -> bool:
        """Deliver pending RX now, if any; True if there was some."""
        return False

    def flush(self, chan: MboxChan, timeout_ms: int) -> int:
        """Busy-wait for the active message to finish (then call ``txdone``)."""
        return -errno.ENOTSUP

    def of_xlate(self, spec: tuple[Any, ...]) -> MboxChan:
        """Turn a client's specifier into a channel; default: the first cell is the index."""
        if not spec or not isinstance(spec[0], int) or not 0 <= spec[0] < self.num_chans:
            raise MailboxError(errno.EINVAL, f"{self.dev}: no channel for specifier {spec!r}")
        return self.chans[spec[0]]

    def _overrides(self, op: str) -> bool:
        return getattr(type(self), op) is not getattr(MboxController, op)

    # -- registration ----------------------------------------------------------------
    def register(self) -> None:
        """Make the controller's channels requestable (``mbox_controller_register``)."""
        if not self.dev or self.num_chans <= 0 or not self._overrides("send_data"):
            raise MailboxError(errno.EINVAL, f"{self!r}: needs a name, channels and send_data")
        if self.txdone_irq and self.txdone_poll:
            raise MailboxError(
                errno.EINVAL, f"{self!r}: txdone by IRQ and by poll exclude each other"
            )
        if self.txdone_poll and not self._overrides("last_tx_done"):
            raise MailboxError(errno.EINVAL, f"{self!r}: a polled controller needs last_tx_done")
        method = (
            TXDONE_BY_IRQ
            if self.txdone_irq
            else TXDONE_BY_POLL
            if self.txdone_poll
            else TXDONE_BY_ACK
        )
        for chan in self.chans:
            chan.txdone_method = method
        with _registry_lock:
            if self.dev in _registry:
                raise MailboxError(errno.EEXIST, f"a mailbox controller {self.dev!r} exists")
            _registry[self.dev] = self
        self._registered = True
        if self.txdone_poll:
            self._poll_stop = False
            self._poll_thread = threading.Thread(
                target=self._poll_loop, name=f"mbox-poll-{self.dev}", daemon=True
            )
            self._poll_thread.start()

    def unregister(self) -> None:
        """Free every channel and stop polling. Idempotent."""
        if not self._registered:
            return
        with _registry_lock:
            _registry.pop(self.dev, None)
        for chan in self.chans:
            free_channel(chan)
        self._registered = False
        if self._poll_thread is not None:
            with self._poll_cond:
                self._poll_stop = True
                self._poll_cond.notify_all()
            self._poll_thread.join(5)
            self._poll_thread = None

    # -- the TX poller ---------------------------------------------------------------
    def _poll_arm(self) -> None:
        with self._poll_cond:
            self._poll_armed = True
            self._poll_cond.notify_all()

    def _poll_loop(self) -> None:
        cond = self._poll_cond
        period = self.txpoll_period / 1000
        while True:
            with cond:
                cond.wait_for(lambda: self._poll_armed or self._poll_stop)
                if self._poll_stop:
                    return
                self._poll_armed = False
            busy = True
            while busy:
                busy = False
                for chan in self.chans:
                    if chan.cl is None or not chan.txdone_method & TXDONE_BY_POLL:
                        continue
                    if chan.active is not None:
                        if self.last_tx_done(chan):
                            chan._tick(0)
                        else:
                            busy = True
                    elif chan.msg_count:  # the hardware refused it earlier: try again
                        chan._submit()
                        busy = busy or chan.active is not None or chan.msg_count > 0
                if busy:
                    with cond:
                        if cond.wait_for(lambda: self._poll_stop, period):
                            return


_registry: dict[str, MboxController] = {}
_registry_lock = threading.Lock()


# -- the client API -------------------------------------------------------------------
def bind_client(chan: MboxChan, cl: MboxClient) -> None:
    """Bind ``cl`` to ``chan`` (``mbox_bind_client``): ``EBUSY`` if taken."""
    with chan.lock:
        if chan.cl is not None:
            raise MailboxError(
                errno.EBUSY, f"{chan!r} is held by client {chan.cl.dev!r}; channels are exclusive"
            )
        chan.slots = [None] * MBOX_TX_QUEUE_LEN
        chan.msg_free = chan.msg_count = 0
        chan.active = None
        chan.cl = cl
        if chan.txdone_method == TXDONE_BY_POLL and cl.knows_txdone:
            chan.txdone_method = TXDONE_BY_ACK
            chan.acked_from_poll = True
        chan.on_demand = (
            chan.txdone_method == TXDONE_BY_IRQ
            and not cl.tx_block
            and cl.tx_done is None
            and chan.mbox.txdone_on_demand(chan)
        )
    ret = chan.mbox.startup(chan)
    if ret:
        free_channel(chan)
        raise MailboxError(-ret, f"{chan.mbox.dev}: startup of channel {chan.index} failed")


def request_channel(cl: MboxClient, index: int) -> MboxChan:
    """The channel ``cl.mboxes[index]``, bound to ``cl`` (``mbox_request_channel``)."""
    if not cl.mboxes:
        raise MailboxError(errno.ENODEV, f"client {cl.dev!r} has no mailboxes described")
    if not 0 <= index < len(cl.mboxes):
        raise MailboxError(
            errno.EINVAL, f"client {cl.dev!r} has {len(cl.mboxes)} mailboxes, no index {index}"
        )
    name, *spec = cl.mboxes[index]
    with _registry_lock:
        ctrl = _registry.get(name)
    if ctrl is None:
        raise MailboxError(
            EPROBE_DEFER, f"mailbox controller {name!r} is not registered (yet): try again later"
        )
    chan = ctrl.of_xlate(tuple(spec))
    bind_client(chan, cl)
    return chan


def request_channel_byname(cl: MboxClient, name: str) -> MboxChan:
    """The channel named ``name`` in ``cl.mbox_names``: ``EINVAL`` if there is none."""
    try:
        index = list(cl.mbox_names).index(name)
    except ValueError:
        raise MailboxError(
            errno.EINVAL, f"client {cl.dev!r} has no mailbox named {name!r}"
        ) from None
    return request_channel(cl, index)


def free_channel(chan: MboxChan | None) -> None:
    """Release a channel; queued messages are dropped.  Unlike Linux, a sender blocked
    on one of them is woken with ``ESHUTDOWN`` instead of waiting for its timeout."""
    if chan is None or chan.cl is None:
        return
    chan.mbox.shutdown(chan)
    chan._drop_all(-errno.ESHUTDOWN)
    with chan.lock:
        chan.cl = None
        if chan.acked_from_poll:
            chan.txdone_method = TXDONE_BY_POLL
            chan.acked_from_poll = False


def send_message(chan: MboxChan, msg: Any) -> int:
    """Queue ``msg`` for transmission (``mbox_send_message``).

    Non-blocking clients get the queue slot used (0..19) at once; ``tx_done`` reports
    the result later.  Blocking clients (``tx_block``) return when *their* message is
    done, with its slot, or get the controller's error as a :class:`MailboxError`;
    ``ETIME`` after ``tx_tout`` ms.  A full queue is ``ENOBUFS`` and queues nothing.
    """
    cl = chan.cl if chan is not None else None
    if cl is None:
        raise MailboxError(errno.EINVAL, "send on a channel that no client holds")
    if msg is MBOX_NO_MSG:
        raise MailboxError(errno.EINVAL, "MBOX_NO_MSG is not a message")
    if TRACER.enabled:
        TRACER.event("mailbox", "send", chan=chan.trace_name, msg=msg)
    slot = _Slot(msg, threading.Event() if cl.tx_block else None)
    with chan.lock:
        if chan.msg_count >= MBOX_TX_QUEUE_LEN:
            log.error(
                "%r: TX queue full (%d messages); try increasing MBOX_TX_QUEUE_LEN",
                chan,
                MBOX_TX_QUEUE_LEN,
            )
            raise MailboxError(errno.ENOBUFS, f"{chan!r}: TX queue of {MBOX_TX_QUEUE_LEN} is full")
        idx = chan.msg_free
        chan.msg_free = (idx + 1) % MBOX_TX_QUEUE_LEN
        active = chan.active
        if active is not None and chan.on_demand and chan.mbox.last_tx_done(chan):
            chan.active = None  # (_reap_locked, without its frame)
            if TRACER.enabled:
                TRACER.event("mailbox", "txdone", chan=repr(chan), msg=active.data, r=0)
            active = None
        if chan.msg_count or active is not None:  # it waits its turn in the queue
            chan.slots[idx] = slot
            chan.msg_count += 1
            poll = chan._submit_locked()
        else:  # nothing before it: straight to the hardware (the queue's head is idx)
            poll = chan._start_locked(cl, slot, idx)
    if poll:
        chan.mbox._poll_arm()
    if slot.event is None:
        return idx
    tout = cl.tx_tout or FOREVER_MS
    if not slot.event.wait(tout / 1000):
        _give_up(chan, slot)
    if slot.status < 0:
        raise MailboxError(-slot.status, f"{chan!r}: transmission failed")
    return idx


def _give_up(chan: MboxChan, slot: _Slot) -> None:
    """A blocking send timed out: cancel its message, or tick it with ``-ETIME``."""
    with chan.lock:
        if slot.done:  # finished while we were timing out: its result stands
            return
        if any(s is slot for s in chan.slots):
            slot.data = MBOX_NO_MSG  # still queued: it will never be sent
            slot.status = -errno.ETIME
            slot.done = True
            return
        on_hardware = chan.active is slot
    if on_hardware and chan._tick(-errno.ETIME, expected=slot):
        slot.status = -errno.ETIME
        return
    # A tick is ending this message right now; its result is on the way.
    if not slot.event or not slot.event.wait(1.0):
        slot.status = -errno.ETIME


def client_txdone(chan: MboxChan, r: int) -> None:
    """The client saw its message consumed (ACK method only)."""
    if not chan.txdone_method & TXDONE_BY_ACK:
        log.error("%r: client_txdone on a channel that is not client-acknowledged", chan)
        return
    chan._tick(r)


def client_peek_data(chan: MboxChan) -> bool:
    """Ask the controller to deliver pending RX now (``mbox_client_peek_data``)."""
    return chan.mbox.peek_data(chan)


def flush(chan: MboxChan, timeout_ms: int) -> None:
    """Busy-wait until the active message is done (``mbox_flush``)."""
    ret = chan.mbox.flush(chan, timeout_ms)
    if ret < 0:
        chan._tick(ret)
        raise MailboxError(-ret, f"{chan!r}: flush failed")


def tx_slots_available(chan: MboxChan) -> int:
    """Free slots in the channel's TX queue (``mbox_chan_tx_slots_available``)."""
    with chan.lock:
        return MBOX_TX_QUEUE_LEN - chan.msg_count
