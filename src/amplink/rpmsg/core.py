"""The rpmsg core: endpoints, devices (channels), drivers and the bus that matches them.

This module knows nothing about virtio or GLINK.  A backend ("link") implements
:class:`RpmsgLink` (how to send a message, how long a message may be) and hands every
message it receives to the endpoint bound at its destination (``link.endpoints.get(dst)``,
then :meth:`Endpoint.deliver`; :meth:`EndpointTable.no_recipient` when nobody is bound
there).  Everything else (address allocation, driver matching, the name service, release
notification, queue-mode receive) lives here and works over any backend, as Linux's
``rpmsg_core`` does over virtio, SMD and GLINK.

Callbacks run in the backend's receive context (a notification thread, the link's
worker that takes over a drain its budget or a waiter left, or a thread that is
busy-polling in :meth:`Endpoint.recv`; never in one that sleeps on the peer's
notification in ``recv()``); they may send, but must not block waiting for another
received message.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar

from amplink.errors import RpmsgError
from amplink.irq.held_signals import HELD_SIGNALS
from amplink.ratelimit import log_ratelimited
from amplink.rpmsg.config import UNLIMITED
from amplink.tracing import TRACER
from amplink.wait import TakeNotifications, Wakeup
from amplink.wire.rpmsg import RPMSG_NAME_SIZE, NsMessage, encode_name

log = logging.getLogger(__name__)

RPMSG_ADDR_ANY = 0xFFFFFFFF
RPMSG_NS_ADDR = 53
RPMSG_RESERVED_ADDRESSES = 1024

EndpointCallback = Callable[["Endpoint", bytes, int], object]
_P = ParamSpec("_P")
_T = TypeVar("_T")
ASK_WAIT = 0.001
"""s: the longest an asking :meth:`Endpoint.send` waits for the answer before it
returns (the ``recv()`` that follows waits on, and asking ends until a ``recv()`` sleeps
after a send again): short against the timeouts users give ``recv()``, long against a
blocking round trip (60-200 us at the median on a 2-CPU VM, idle or beside two CPU
hogs); what a stream's first send waits once after a question's answer."""


class _NoBufferNow(Exception):
    """An asking send's message could not go out at once (see ``Endpoint._ask``)."""


class Message(NamedTuple):
    """A received message: its payload and the sender's address."""

    data: bytes
    src: int


# Message(data, src) without the Python frame of a NamedTuple's __new__ (once per
# message queued)
_new_message: Callable[[tuple[bytes, int]], Message] = partial(tuple.__new__, Message)


class LentMessage(ABC):
    """A received message lent to a ``zero_copy`` endpoint's callback in the backend
    buffer it came in (rpmsg-lite's ``rpmsg_lite_hold_rx_buffer``): :attr:`data` is
    valid during the callback, or until :meth:`release` if the callback called
    :meth:`hold`; the peer cannot reuse the buffer meanwhile."""

    __slots__ = ("data", "held", "src")

    def __init__(self, data: memoryview, src: int) -> None:
        self.data = data
        self.src = src
        self.held = False

    def __bytes__(self) -> bytes:
        return bytes(self.data)

    def hold(self) -> LentMessage:
        """Keep the message (and its buffer) past the callback."""
        self.held = True
        return self

    def release(self) -> None:
        """Give a held buffer back to the peer. Idempotent."""
        if self.held:
            self.held = False
            self._give_back()

    @abstractmethod
    def _give_back(self) -> None:
        """Return the buffer to the peer (the backend's business)."""


class RpmsgLink(ABC):
    """What a backend provides to the core (Linux's device ops + endpoint ops).

    A link is one rpmsg "parent": a virtio-rpmsg device, a GLINK edge...  It owns an
    :class:`EndpointTable` (addresses are per link) and reports its death to
    ``fail_listeners`` so that the bus can remove its devices.
    """

    def __init__(self, name: str, *, ns_supported: bool) -> None:
        self.name = name
        self.ns_supported = ns_supported
        self.endpoints = EndpointTable(self)
        self.failure: OSError | None = None
        self.fail_listeners: list[Callable[[OSError], None]] = []
        # Messages delivered to and sent from this link's endpoints (a status view's
        # counters: not locked, so concurrent senders may very rarely lose a count).
        self.messages_in = 0
        self.messages_out = 0
        self.trace_key = name  # the backends add what tells this link from a later one
        self.trace_seq = [0, 0]  # messages sent, received while tracing (flow ids)
        self.limits = UNLIMITED  # what the remote may make this side allocate (a host's
        # drivers set theirs)
        self.refused: dict[str, int] = {}  # what went beyond them, by limit
        self.take_notifications: TakeNotifications | None = None  # from the transport:
        # a blocked recv() sleeps on the peer's notification itself (see amplink.wait)
        self.takers: list[int] = []  # threads doing so now (a list: append and remove
        # are atomic); the receive path they run calls no callback (see rpmsg.polled)

    def take_as_taker(
        self,
        fds: Sequence[int],
        timeout: float | None,
        ready: Callable[[], bool] | None,
        start: Callable[[], object] | None = None,
    ) -> bool | None:
        """:attr:`take_notifications` (there must be one), counted in :attr:`takers`
        meanwhile: the receive path this thread runs then calls no receive callback
        (a backend leaves those to another thread), so that none can keep the caller
        past its timeout.  ``start``: see :class:`~amplink.wait.TakeNotifications`."""
        take = self.take_notifications
        assert take is not None
        takers = self.takers
        me = threading.get_ident()
        try:
            takers.append(me)
            return take(fds, timeout, ready, start)
        finally:
            try:  # noqa: SIM105 (a Ctrl-C before the append leaves nothing to remove)
                takers.remove(me)
            except ValueError:
                pass

    def over_limit(self, limit: str, what: str) -> RpmsgError:
        """Count a refusal of ``what`` by limit ``limit`` (a field of
        :class:`~amplink.rpmsg.config.RpmsgLimits`) and return the ``ENOSPC`` error
        that says so; the caller raises or logs it (rate-limited)."""
        self.refused[limit] = self.refused.get(limit, 0) + 1
        return RpmsgError(
            errno.ENOSPC,
            f"{self.name}: {what} refused: the remote reached its limit of "
            f"{getattr(self.limits, limit)} {limit} (RpmsgLimits.{limit}; in a board file, "
            f"the core's limits = {{ {limit} = N }})",
        )

    @property
    @abstractmethod
    def mtu(self) -> int:
        """Largest payload of one message."""

    @abstractmethod
    def send(self, src: int, dst: int, data: bytes, *, block: bool, timeout: float | None) -> None:
        """Send one message; block for a send buffer up to ``timeout`` if ``block``."""

    def can_send(self, src: int) -> bool:
        """Whether a send from ``src`` would find a buffer now (``rpmsg_poll``'s EPOLLOUT)."""
        return self.failure is None

    def when_can_send(self, src: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once a send from ``src`` would not wait.  Backends without
        buffer accounting call it at once."""
        callback()

    def bind(self, ept: Endpoint) -> None:  # noqa: B027 (a hook)
        """A new endpoint was bound (Linux's ``create_ept`` op).  Backends whose
        endpoints are channels opened by name (GLINK) open the channel here."""

    def unbind(self, ept: Endpoint) -> None:  # noqa: B027
        """An endpoint was unbound (``destroy_ept``): close what :meth:`bind` opened."""

    def watch_channels(self, callback: Callable[[str, int, bool], None]) -> None:
        """Call ``callback(name, addr, created)`` when the peer creates or withdraws a
        channel (how the firmware side hears of the host's; ``addr``: the peer's
        endpoint, ``RPMSG_ADDR_ANY`` where the backend has no addresses).
        ``EOPNOTSUPP`` on backends that cannot tell."""
        raise RpmsgError(errno.EOPNOTSUPP, f"{type(self).__name__} {self.name} announces nothing")

    def sleeps(self) -> bool:
        """Whether a waiter sleeps at once, without busy-polling first (spinning is
        off)."""
        return True

    def busy_poll(self, ready: Callable[[], bool]) -> bool:
        """Poll the receive path in the calling thread until ``ready()`` (optional)."""
        return False

    def in_rx_context(self) -> bool:
        """True when called from inside this link's receive dispatch."""
        return False

    def set_flow_control(self, src: int, pause: bool, dst: int) -> None:
        """Ask the remote to pause (or resume) sending to ``src`` (``EOPNOTSUPP`` for
        backends without flow control, as virtio in Linux)."""
        raise RpmsgError(errno.EOPNOTSUPP, f"{type(self).__name__} {self.name} has no flow control")

    def unconsumed(self) -> dict[int, int]:
        """For a peer that died: per source address, how many sent messages it never
        consumed (backends that cannot tell return nothing)."""
        return {}

    def fail(self, error: OSError) -> None:
        """Declare the link dead: release every endpoint and tell the listeners. Idempotent."""
        if self.failure is not None:
            return
        self.failure = error
        level = logging.INFO if error.errno == errno.ESHUTDOWN else logging.WARNING
        log.log(level, "rpmsg link %s is down: %s", self.name, error.strerror or error)
        for listener in list(self.fail_listeners):
            try:
                listener(error)
            except Exception:
                log.exception("rpmsg link %s: failure listener raised", self.name)
        for ept in self.endpoints.all():
            ept.release(error)

    def dead_error(self) -> RpmsgError:
        """The ``EPIPE`` error a send on a dead link raises."""
        reason = self.failure.strerror if self.failure is not None else "link closed"
        return RpmsgError(errno.EPIPE, f"rpmsg link {self.name} is down ({reason})")


class Endpoint:
    """An rpmsg endpoint: a local address, a receive callback or queue, and send calls.

    Without a callback the endpoint queues what it receives for :meth:`recv` (like
    ``/dev/rpmsgN``).  ``learn_dst`` makes an endpoint without a destination adopt the
    source of the first message it receives, as OpenAMP endpoints do.  A ``zero_copy``
    endpoint's callback gets each message in place (a :class:`LentMessage`) instead of a
    copy, on backends that lend buffers (both of amplink's).
    """

    def __init__(
        self,
        link: RpmsgLink,
        addr: int,
        callback: EndpointCallback | None,
        *,
        name: str = "",
        dst: int = RPMSG_ADDR_ANY,
        learn_dst: bool = False,
        device: RpmsgDevice | None = None,
        zero_copy: bool = False,
    ) -> None:
        self.link = link
        self.zero_copy = zero_copy  # the callback gets buffers in place, not bytes
        self.addr = addr
        self.callback = callback
        self.name = name
        self.dst = dst
        self.learn_dst = learn_dst
        self.device = device
        self.released: OSError | None = None
        self._queue: deque[Message] = deque()
        self._lock = threading.Lock()
        self._waiters = 0  # threads sleeping in recv()
        self._wakeup: Wakeup | None = None  # what they sleep on (made by the first)
        self._taker = 0  # the thread that takes the notifications in recv() now, if any
        # Asking (see _ask): a send() came since the last recv(); sends from _asker are
        # questions whose answer that thread's next recv() waits for.
        self._sent = False
        self._asks = False
        self._asker = 0
        self._release_callbacks: list[Callable[[Endpoint, OSError], object]] = []
        self.remote_paused = False  # the remote asked us to stop sending (flow control)
        self._flow_callbacks: list[Callable[[Endpoint, bool], object]] = []

    def __repr__(self) -> str:
        return f"<Endpoint {self.name or '?'} addr={self.addr} dst={_fmt_addr(self.dst)}>"

    # -- sending ---------------------------------------------------------------------
    def _check_alive(self) -> None:
        if self.released is not None:
            raise RpmsgError(
                errno.EPIPE, f"endpoint {self.addr} was released ({self.released.strerror})"
            )

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Send to the endpoint's destination; wait up to ``timeout`` s for a buffer.
        Once a ``recv()`` right after a send slept, sends ask: they may wait here for
        the answer, up to :data:`ASK_WAIT` (see :meth:`_ask`)."""
        if self.released is not None or TRACER.enabled:
            self.sendto(data, self.dst, timeout)
            return
        if self._asks:
            self._ask(data, timeout)
            return
        link = self.link  # sendto's common case, one call less per message
        link.send(self.addr, self.dst, data, block=True, timeout=timeout)
        link.messages_out += 1
        self._sent = True

    def _ask(self, data: bytes, timeout: float | None) -> None:
        """:meth:`send` once a ``recv()`` right after a send by the same thread found
        nothing and slept (see :meth:`recv`): the sends are questions.  Where the link
        sleeps for messages (spinning off) and its waiters take the peer's notifications
        themselves, the message goes out from inside such a take, which then waits up to
        :data:`ASK_WAIT` s (a send given a shorter ``timeout`` does not ask) for a message
        to this endpoint (prepare to wait, then ask), so that the answer cannot reach the
        transport's interrupt dispatcher and thread before the ``recv()`` that wants it
        (when the peer runs on this CPU or answers fast: three wake-ups instead of one).
        The answer stays queued for that ``recv()``.  A second send before a ``recv()``
        (a stream), or no answer within the wait, ends asking; another thread's send, or one from a
        receive callback, is a plain one.  A Ctrl-C while it waits raises here, after
        the message went out (as if it came just after ``send()`` returned).  Inside the
        take the message goes out only if it can at once: a send that would wait for a
        buffer (or an intent) hands the line back first and waits as a plain one, so that
        a Ctrl-C ends that wait and the peer's other notifications (another endpoint's
        messages, a crash report) reach the dispatcher meanwhile."""
        link = self.link
        if self._sent:
            self._asks = False
        took = None
        if (
            self._asks
            and self._asker == threading.get_ident()
            and (timeout is None or timeout >= ASK_WAIT)
            and link.take_notifications is not None
            and not link.in_rx_context()
        ):
            addr, dst = self.addr, self.dst

            def ask() -> None:
                try:
                    link.send(addr, dst, data, block=False, timeout=0)
                except RpmsgError as exc:
                    if exc.errno not in (errno.ENOMEM, errno.EBUSY, errno.EAGAIN):
                        raise
                    raise _NoBufferNow from None

            try:  # noqa: SIM105 (contextlib.suppress: three Python calls per question)
                took = self._as_waiter(self._take_asking, ask, ASK_WAIT)
            except _NoBufferNow:
                pass  # took is None: sent below
            if took is False:
                self._asks = False  # no answer in time: the recv() that comes waits
        if took is None:  # not asking, the line was another thread's, or no buffer
            link.send(self.addr, self.dst, data, block=True, timeout=timeout)
        link.messages_out += 1
        self._sent = True

    def _take_asking(self, wakeup: Wakeup, ask: Callable[[], object], wait: float) -> bool | None:
        """:meth:`_ask`'s take (counted as a waiter): ``ask()`` once the notifications
        are taken, then up to ``wait`` s for a message."""
        self._taker = self._asker
        try:
            took = self.link.take_as_taker((wakeup.fileno(),), wait, self._has_message, ask)
        finally:
            self._taker = 0
        if took is not None:
            wakeup.clear()
        return took

    def _as_waiter(
        self, body: Callable[Concatenate[Wakeup, _P], _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """``body(wakeup, ...)`` counted in :attr:`_waiters` (whom a delivery in another
        thread wakes through ``wakeup``); the last waiter after a release closes it."""
        counted = False  # set with the count: a Ctrl-C as the lock is let go finds it
        try:
            with self._lock, HELD_SIGNALS:  # (a Wakeup made half-way would leak its fds)
                if self._wakeup is None:
                    self._wakeup = Wakeup()
                wakeup = self._wakeup
                self._waiters += 1
                counted = True
            return body(wakeup, *args, **kwargs)
        finally:
            if counted:
                with self._lock:
                    self._waiters -= 1
                    if not self._waiters and self.released is not None:
                        wakeup.close()
                        self._wakeup = None

    def sendto(self, data: bytes, dst: int, timeout: float | None = None) -> None:
        """Send to ``dst``; wait up to ``timeout`` s (backend default if None) for a buffer."""
        if self.released is not None:
            self._check_alive()
        link = self.link
        if TRACER.enabled:
            t0 = time.perf_counter_ns()
            link.send(self.addr, dst, data, block=True, timeout=timeout)
            TRACER.span(
                "rpmsg", "send", t0, flow_out=TRACER.take("flow_out"), **self._trace(dst, data)
            )
        else:
            link.send(self.addr, dst, data, block=True, timeout=timeout)
        link.messages_out += 1

    def trysend(self, data: bytes) -> None:
        """Send without waiting; ``ENOMEM`` (virtio) if no buffer is free."""
        self.trysendto(data, self.dst)

    def trysendto(self, data: bytes, dst: int) -> None:
        """Send to ``dst`` without waiting (see :meth:`trysend`)."""
        if self.released is not None:
            self._check_alive()
        link = self.link
        if TRACER.enabled:
            t0 = time.perf_counter_ns()
            link.send(self.addr, dst, data, block=False, timeout=0)
            TRACER.span(
                "rpmsg", "send", t0, flow_out=TRACER.take("flow_out"), **self._trace(dst, data)
            )
        else:
            link.send(self.addr, dst, data, block=False, timeout=0)
        link.messages_out += 1

    def poll(self) -> bool:
        """True if a send would not have to wait (the EPOLLOUT bit of ``rpmsg_poll``)."""
        return self.released is None and self.link.can_send(self.addr)

    def get_mtu(self) -> int:
        """The largest payload one message can carry (``rpmsg_get_mtu``)."""
        self._check_alive()
        return self.link.mtu

    def get_tx_buffer(self, timeout: float | None = None, *, block: bool = True) -> Any:
        """Borrow a send buffer to fill in place (zero copy): write ``buf.data``, then
        ``buf.send(length)``.  ``EOPNOTSUPP`` on backends that do not lend buffers."""
        self._check_alive()
        lend = getattr(self.link, "get_tx_buffer", None)
        if lend is None:
            raise RpmsgError(errno.EOPNOTSUPP, f"{self.link.name} does not lend send buffers")
        return lend(self.addr, self.dst, block=block, timeout=timeout)

    def set_flow_control(self, pause: bool, dst: int = RPMSG_ADDR_ANY) -> None:
        """``rpmsg_set_flow_control``: ask the remote to pause or resume sending here."""
        self._check_alive()
        self.link.set_flow_control(self.addr, pause, self.dst if dst == RPMSG_ADDR_ANY else dst)

    def on_flow(self, fn: Callable[[Endpoint, bool], object]) -> None:
        """Call ``fn(ept, paused)`` when the remote asks us to pause or resume (the
        ``flow_cb`` of an rpmsg driver; only backends with flow control call it)."""
        self._flow_callbacks.append(fn)

    def flow_changed(self, paused: bool) -> None:
        """Called by the backend when the remote's flow-control signals change."""
        self.remote_paused = paused
        for fn in list(self._flow_callbacks):
            try:
                fn(self, paused)
            except Exception:
                log.exception("rpmsg endpoint %d: flow callback raised", self.addr)

    # -- receiving -------------------------------------------------------------------
    def deliver(self, data: bytes, src: int) -> None:
        """Called by the backend's dispatch for each message addressed to this endpoint."""
        self.link.messages_in += 1
        if self.learn_dst and self.dst == RPMSG_ADDR_ANY:
            self.dst = src
        cb = self.callback
        if cb is not None:
            t0 = time.perf_counter_ns() if TRACER.enabled else 0
            try:
                cb(self, data, src)
            except Exception:
                log_ratelimited(
                    log,
                    logging.ERROR,
                    self.link.name,
                    "%s: rpmsg endpoint %d: receive callback raised",
                    self.link.name,
                    self.addr,
                    exc_info=True,
                )
            if t0:
                args = self._trace(src, data)
                TRACER.span("rpmsg", "callback", t0, flow_in=TRACER.take("flow_in"), **args)
            return
        if TRACER.enabled:
            TRACER.span(
                "rpmsg", "queued", time.perf_counter_ns(), flow_in=TRACER.take("flow_in"),
                **self._trace(src, data),
            )  # fmt: skip
        self._queue.append(_new_message((data, src)))
        waiters = self._waiters
        # The only waiter delivering to itself (it took the notification) finds the
        # message as it returns: no wake-up to write and read back.
        if waiters and (waiters > 1 or self._taker != threading.get_ident()):
            wakeup = self._wakeup
            if wakeup is not None:
                wakeup.set()

    def _trace(self, peer: int, data: Any) -> dict[str, Any]:
        size = len(data.data) if hasattr(data, "data") else len(data)
        return message_args(self.link, self.addr, peer, size)

    def _has_message(self) -> bool:
        return bool(self._queue) or self.released is not None

    def pending(self) -> int:
        """Number of queued, unread messages."""
        return len(self._queue)

    def recv(self, timeout: float | None = None) -> Message:
        """Next queued message; wait up to ``timeout`` s (forever if None).

        Raises ``ETIMEDOUT`` on timeout, ``EPIPE`` once the endpoint is released and
        its queue is empty, ``EINVAL`` for a negative ``timeout``.  While it waits, the
        calling thread may poll the receive ring itself for a short adaptive time (see
        ``AdaptiveSpin``) before it sleeps, and, where the transport allows it, it
        sleeps on the peer's notification and handles it itself
        (``RpmsgLink.take_notifications``), running the receive path in this thread,
        except other endpoints' callbacks, which it leaves to another thread
        (:meth:`RpmsgLink.take_as_taker`), so that none keeps it past ``timeout``.
        """
        q = self._queue
        sent, self._sent = self._sent, False
        if q:  # (a failed popleft raises: slow, and the spin path's common case)
            try:
                return pop_held(q)
            except IndexError:
                pass
        if timeout is not None and timeout < 0:
            _check_timeout(timeout)
        if self.callback is not None:
            raise RpmsgError(errno.EINVAL, "endpoint has a callback: messages are delivered there")
        if self.released is not None:
            self._check_alive()
        link = self.link
        if link.in_rx_context():
            raise RpmsgError(
                errno.EDEADLK,
                "recv() inside a receive callback would deadlock: reply from the callback "
                "or receive on another thread",
            )
        if link.busy_poll(self._has_message) and q:
            try:  # another recv() may have taken it (no contextlib: 3 calls)
                return pop_held(q)
            except IndexError:
                pass
        if timeout is not None and timeout <= 0:
            raise self._timed_out(timeout)  # a poll: nothing to sleep on, so no wakeup
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.get_ident()
        if sent and not self._asks and link.take_notifications is not None and link.sleeps():
            self._asks = True  # a question's answer: the next send asks (see _ask)
            self._asker = me
        while True:  # the wait ends (its count let go) before the message is taken:
            # a Ctrl-C in that ending then takes nothing with it
            self._as_waiter(self._wait_for_message, me, deadline, timeout)
            try:
                return pop_held(q)
            except IndexError:  # another thread took it first: wait on, to the deadline
                pass

    def _wait_for_message(
        self, wakeup: Wakeup, me: int, deadline: float | None, timeout: float | None
    ) -> None:
        """:meth:`recv`'s sleep (counted as a waiter), until a message is queued."""
        q = self._queue
        link = self.link
        has_message = self._has_message
        while True:
            if q:  # no lock: several threads may sleep here and race for a message
                return
            if self.released is not None:
                self._check_alive()
            if deadline is None:
                remaining = None
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timed_out(timeout)
            if link.take_notifications is None:
                wakeup.wait(remaining)
                continue
            self._taker = me
            try:
                took = link.take_as_taker((wakeup.fileno(),), remaining, has_message)
            finally:
                self._taker = 0
            if took is None:
                wakeup.wait(remaining)
            else:
                wakeup.clear()

    def _timed_out(self, timeout: float | None) -> RpmsgError:
        return RpmsgError(errno.ETIMEDOUT, f"no message for endpoint {self.addr} within {timeout}s")

    def __iter__(self) -> Iterator[Message]:
        """Iterate over received messages until the endpoint is released."""
        while True:
            try:
                yield self.recv()
            except RpmsgError as exc:
                if exc.errno == errno.EPIPE:
                    return
                raise

    # -- lifetime --------------------------------------------------------------------
    def on_release(self, fn: Callable[[Endpoint, OSError], object]) -> None:
        """Call ``fn(ept, reason)`` when the endpoint is released (at once if it was)."""
        if self.released is not None:
            fn(self, self.released)
        else:
            self._release_callbacks.append(fn)

    def release(self, reason: OSError) -> None:
        """Unbind the address, wake waiters and notify release callbacks. Idempotent."""
        if self.released is not None:
            return
        self.released = reason
        self.link.endpoints.remove(self)
        if self.device is not None:
            self.device.forget(self)
        with self._lock:
            if self._wakeup is not None:
                if self._waiters:
                    self._wakeup.set()  # they see the release and go
                else:
                    self._wakeup.close()
                    self._wakeup = None
        for fn in self._release_callbacks:
            try:
                fn(self, reason)
            except Exception:
                log.exception("rpmsg endpoint %d: release callback raised", self.addr)
        self._release_callbacks.clear()

    def destroy(self) -> None:
        """Destroy the endpoint (``rpmsg_destroy_ept``)."""
        self.release(RpmsgError(errno.ESHUTDOWN, "endpoint destroyed by its owner"))

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def pop_held(q: deque[_T]) -> _T:
    """``q.popleft()`` that a signal cannot lose: Python runs a signal handler right
    after a C call returns, before its value is stored, so a ``KeyboardInterrupt``
    there would drop the item.  The pop runs with handlers held; one that comes
    meanwhile raises as the section ends, with the item back at the head of ``q``.
    (Only the few bytecodes between this return and the caller's use stay open, as
    for any Python function that returns a value.)  ``IndexError`` if ``q`` is empty."""
    item: _T | None = None
    held = HELD_SIGNALS  # (its methods called: `with` would make two bound methods)
    try:
        held.__enter__()
        try:
            item = q.popleft()
        finally:
            held.__exit__(None, None, None)
    except BaseException:
        if item is not None:
            q.appendleft(item)
        raise
    return item


def _check_timeout(timeout: float | None) -> None:
    """``EINVAL`` for a negative timeout (as ``queue.Queue.get`` refuses one)."""
    if timeout is not None and timeout < 0:
        raise RpmsgError(errno.EINVAL, f"timeout must be >= 0 s (or None: no limit), not {timeout}")


def _fmt_addr(addr: int) -> str:
    return "ANY" if addr == RPMSG_ADDR_ANY else str(addr)


class EndpointTable:
    """The endpoints of one link by address; allocates addresses like the kernel's IDR.

    Addresses below 1024 are reserved for fixed services (53 = name service) and are
    only given when asked for explicitly; ``RPMSG_ADDR_ANY`` takes the lowest free
    address from 1024 up.
    """

    def __init__(self, link: RpmsgLink) -> None:
        self._link = link
        self._by_addr: dict[int, Endpoint] = {}
        self.by_addr = self._by_addr  # read only: the receive steps look endpoints up in it
        self.lookup = self._by_addr.get  # the receive path's ``get``: no Python frame
        self._lock = threading.Lock()
        self._hint = RPMSG_RESERVED_ADDRESSES
        self._unknown_dst_logged = 0

    def create(
        self,
        callback: EndpointCallback | None,
        addr: int = RPMSG_ADDR_ANY,
        **kwargs: object,
    ) -> Endpoint:
        """Bind a new endpoint at ``addr`` (ANY: allocate); ``EADDRINUSE`` if taken,
        ``ENOSPC`` beyond ``link.limits.endpoints``."""
        link = self._link
        if link.failure is not None:
            raise link.dead_error()
        with self._lock:
            if addr == RPMSG_ADDR_ANY:
                addr = self._hint
                while addr in self._by_addr:
                    addr += 1
                self._hint = addr + 1
            elif not 0 <= addr < RPMSG_ADDR_ANY:
                raise RpmsgError(errno.EINVAL, f"invalid rpmsg address {addr}")
            elif addr in self._by_addr:
                raise RpmsgError(errno.EADDRINUSE, f"rpmsg address {addr} is already bound")
            if len(self._by_addr) >= link.limits.endpoints:
                raise link.over_limit("endpoints", f"endpoint {addr}")
            ept = Endpoint(link, addr, callback, **kwargs)  # type: ignore[arg-type]
            self._by_addr[addr] = ept
        try:
            link.bind(ept)
        except BaseException:
            self._unlist(ept)
            raise
        return ept

    def remove(self, ept: Endpoint) -> None:
        """Unbind ``ept`` and free its address."""
        if self._unlist(ept):
            self._link.unbind(ept)

    def _unlist(self, ept: Endpoint) -> bool:
        with self._lock:
            if self._by_addr.get(ept.addr) is not ept:
                return False
            del self._by_addr[ept.addr]
            if RPMSG_RESERVED_ADDRESSES <= ept.addr < self._hint:
                self._hint = ept.addr
            return True

    def get(self, addr: int) -> Endpoint | None:
        """The endpoint bound at ``addr``, if any."""
        return self._by_addr.get(addr)

    def all(self) -> list[Endpoint]:
        """Every bound endpoint."""
        with self._lock:
            return list(self._by_addr.values())

    def no_recipient(self, src: int, dst: int) -> None:
        """A message for an address nobody is bound to: dropped, and logged (rate-limited)."""
        if dst == RPMSG_NS_ADDR:  # OpenAMP hosts announce their endpoints; Linux's do not
            log.debug("rpmsg link %s: name-service message from %d ignored", self._link.name, src)
            return
        self._unknown_dst_logged += 1
        log_ratelimited(
            log,
            logging.WARNING,
            self._link.name,
            "rpmsg link %s: message from %d to %d has no recipient (dropped; %d so far)",
            self._link.name,
            src,
            dst,
            self._unknown_dst_logged,
        )


class RpmsgDevice:
    """An rpmsg channel: a service name, local and remote addresses, a link.

    Devices appear on a bus when the remote announces a service (or when created
    locally) and are matched to drivers by name.  Endpoints created through a device
    are released when the device is removed, so their users see ``EPIPE``.
    """

    def __init__(
        self,
        link: RpmsgLink,
        name: str,
        src: int = RPMSG_ADDR_ANY,
        dst: int = RPMSG_ADDR_ANY,
        *,
        announce: bool = False,
    ) -> None:
        encode_name(name)
        self.link = link
        self.name = name
        self.src = src
        self.dst = dst
        self.announce = announce
        self.ept: Endpoint | None = None
        self.driver: RpmsgDriver | None = None
        self.removed = False
        self._endpoints: list[Endpoint] = []

    @property
    def id(self) -> str:
        """``<link>.<name>.<src>.<dst>`` with signed decimals, as Linux names devices."""
        return f"{self.link.name}.{self.name}.{_signed(self.src)}.{_signed(self.dst)}"

    def __repr__(self) -> str:
        return f"<RpmsgDevice {self.id}>"

    def create_ept(
        self,
        callback: EndpointCallback | None = None,
        src: int = RPMSG_ADDR_ANY,
        *,
        zero_copy: bool = False,
    ) -> Endpoint:
        """A new endpoint that sends to this channel's remote address by default."""
        if self.removed:
            raise RpmsgError(errno.ENODEV, f"rpmsg device {self.id} was removed")
        ept = self.link.endpoints.create(
            callback, src, name=self.name, dst=self.dst, device=self, zero_copy=zero_copy
        )
        self._endpoints.append(ept)
        return ept

    def forget(self, ept: Endpoint) -> None:
        """Stop tracking ``ept`` (it was destroyed)."""
        if ept in self._endpoints:
            self._endpoints.remove(ept)

    def endpoints(self) -> list[Endpoint]:
        """The endpoints created through this channel and not destroyed."""
        return list(self._endpoints)


def _signed(addr: int) -> int:
    return addr - (1 << 32) if addr & 0x80000000 else addr


DriverCallback = Callable[[RpmsgDevice, bytes, int], object]


class RpmsgDriver:
    """A driver bound to devices by service name.

    Give functions to the constructor or override the methods.  If ``callback`` is set,
    the bus creates the device's default endpoint (``rpdev.ept``) before ``probe`` and
    routes its messages to ``callback(rpdev, data, src)``.
    """

    def __init__(
        self,
        name: str,
        id_table: tuple[str, ...] = (),
        *,
        probe: Callable[[RpmsgDevice], object] | None = None,
        remove: Callable[[RpmsgDevice], object] | None = None,
        callback: DriverCallback | None = None,
    ) -> None:
        self.name = name
        self.id_table = id_table or (name,)
        self._probe = probe
        self._remove = remove
        self.callback = callback

    def matches(self, rpdev: RpmsgDevice) -> bool:
        """True if the channel's name is in the driver's id table."""
        return rpdev.name[:RPMSG_NAME_SIZE] in self.id_table

    def probe(self, rpdev: RpmsgDevice) -> None:
        """Bind the driver to a matching channel."""
        if self._probe is not None:
            self._probe(rpdev)

    def remove(self, rpdev: RpmsgDevice) -> None:
        """Unbind the driver from a channel that goes away."""
        if self._remove is not None:
            self._remove(rpdev)


class RpmsgBus:
    """Devices and drivers of one system, matched by service name."""

    def __init__(self) -> None:
        self._devices: list[RpmsgDevice] = []
        self._drivers: list[RpmsgDriver] = []
        self._cond = threading.Condition(threading.RLock())

    def devices(self, name: str | None = None) -> list[RpmsgDevice]:
        """The channels on the bus (those named ``name`` if given)."""
        with self._cond:
            return [d for d in self._devices if name is None or d.name == name]

    def register_driver(self, drv: RpmsgDriver) -> None:
        """Add a driver and probe it on every matching channel."""
        with self._cond:
            self._drivers.append(drv)
            for rpdev in self._devices:
                if rpdev.driver is None and drv.matches(rpdev):
                    self._probe(drv, rpdev)

    def unregister_driver(self, drv: RpmsgDriver) -> None:
        """Remove a driver, unbinding it from its channels."""
        with self._cond:
            if drv in self._drivers:
                self._drivers.remove(drv)
            for rpdev in self._devices:
                if rpdev.driver is drv:
                    self._unbind(rpdev, RpmsgError(errno.ESHUTDOWN, "driver unregistered"))

    def add_device(self, rpdev: RpmsgDevice) -> RpmsgDevice:
        """Add a channel and probe a matching driver; ``EEXIST`` for a duplicate,
        ``ENOSPC`` for one its remote created beyond ``link.limits.channels``."""
        with self._cond:
            for other in self._devices:
                if (
                    other.link is rpdev.link
                    and other.name == rpdev.name
                    and _addr_match(other.src, rpdev.src)
                    and _addr_match(other.dst, rpdev.dst)
                ):
                    raise RpmsgError(errno.EEXIST, f"channel {rpdev.id} already exists")
            link = rpdev.link
            if not rpdev.announce and link.limits.channels <= sum(
                1 for d in self._devices if d.link is link and not d.announce
            ):
                raise link.over_limit("channels", f"channel {rpdev.name!r}")
            self._devices.append(rpdev)
            for drv in self._drivers:
                if drv.matches(rpdev):
                    self._probe(drv, rpdev)
                    break
            self._cond.notify_all()
        return rpdev

    def remove_device(self, rpdev: RpmsgDevice, reason: OSError | None = None) -> None:
        """Remove a channel: announce its end, unbind the driver, release its endpoints."""
        reason = reason or RpmsgError(errno.EPIPE, f"channel {rpdev.id} was removed")
        with self._cond:
            if rpdev not in self._devices:
                return
            self._devices.remove(rpdev)
            rpdev.removed = True
            self._unbind(rpdev, reason)
            for ept in rpdev.endpoints():
                ept.release(reason)
            self._cond.notify_all()

    def remove_link(self, link: RpmsgLink, reason: OSError) -> None:
        """Remove every channel of ``link`` (its remote went away)."""
        for rpdev in self.devices():
            if rpdev.link is link:
                self.remove_device(rpdev, reason)
        with self._cond:
            self._cond.notify_all()  # wake wait_for_device() on this link

    def wait_for_device(
        self, name: str | None, timeout: float | None = None, *, link: RpmsgLink | None = None
    ) -> RpmsgDevice:
        """Wait until a channel called ``name`` (None: any) exists; ``ETIMEDOUT`` after
        ``timeout`` s.

        With ``link``, only that link's channels count, and ``EPIPE`` comes at once if
        the link goes down while waiting.  ``EINVAL`` for a negative ``timeout``.
        """
        _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                for d in self._devices:
                    if name in (None, d.name) and (link is None or d.link is link):
                        return d
                if link is not None and link.failure is not None:
                    raise link.dead_error()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RpmsgError(
                        errno.ETIMEDOUT,
                        f"no rpmsg channel {'' if name is None else repr(name) + ' '}"
                        f"was announced within {timeout}s "
                        "(is the firmware running and announcing it?)",
                    )
                self._cond.wait(remaining)

    def _probe(self, drv: RpmsgDriver, rpdev: RpmsgDevice) -> None:
        cb = drv.callback
        if cb is not None:
            ept = rpdev.create_ept(lambda _e, data, src: cb(rpdev, data, src), rpdev.src)
            rpdev.ept = ept
            rpdev.src = ept.addr
        try:
            drv.probe(rpdev)
        except Exception as exc:
            if isinstance(exc, RpmsgError) and exc.errno == errno.ENOSPC:
                log_ratelimited(
                    log, logging.ERROR, rpdev.link.name, "%s: %s", rpdev.id, exc.strerror
                )
            else:
                log.exception("rpmsg driver %s failed to probe %s", drv.name, rpdev.id)
            if rpdev.ept is not None:
                rpdev.ept.destroy()
                rpdev.ept = None
            return
        rpdev.driver = drv
        if rpdev.announce and rpdev.ept is not None:
            announce(rpdev.link, rpdev.name, rpdev.ept.addr, destroy=False)

    def _unbind(self, rpdev: RpmsgDevice, reason: OSError) -> None:
        drv = rpdev.driver
        if drv is None:
            return
        if rpdev.announce and rpdev.ept is not None and rpdev.link.failure is None:
            try:
                announce(rpdev.link, rpdev.name, rpdev.ept.addr, destroy=True)
            except OSError as exc:
                log.warning("could not announce the end of %s: %s", rpdev.id, exc)
        rpdev.driver = None
        try:
            drv.remove(rpdev)
        except Exception:
            log.exception("rpmsg driver %s failed to remove %s", drv.name, rpdev.id)
        if rpdev.ept is not None:
            rpdev.ept.release(reason)
            rpdev.ept = None


class RpmsgLinks:
    """The rpmsg links one remote processor brought up on a host, and the bus their
    channels join.  A backend's driver adds a link when it binds (and makes its remote
    channels devices on :attr:`bus`) and removes it when it is taken down; a failed
    link's channels leave the bus at once."""

    def __init__(self, bus: RpmsgBus) -> None:
        self.bus = bus
        self._links: list[RpmsgLink] = []
        self._lock = threading.Lock()

    def add(self, link: RpmsgLink) -> None:
        """A backend brought ``link`` up."""
        link.fail_listeners.append(lambda err: self.bus.remove_link(link, err))
        with self._lock:
            self._links.append(link)

    def remove(self, link: RpmsgLink) -> None:
        """``link`` was taken down (after it failed)."""
        with self._lock:
            if link in self._links:
                self._links.remove(link)

    def all(self) -> list[RpmsgLink]:
        """The links up now, in the order they came up."""
        with self._lock:
            return list(self._links)


def _addr_match(a: int, b: int) -> bool:
    return a == b or RPMSG_ADDR_ANY in (a, b)


def message_args(link: RpmsgLink, ept: int, peer: int, length: int) -> dict[str, Any]:
    """The readable arguments of a traced message: link name, our endpoint's address,
    the peer's, the payload's length in bytes."""
    return {"link": link.name, "ept": ept, "peer": peer, "len": length}


def announce(link: RpmsgLink, name: str, addr: int, *, destroy: bool) -> None:
    """Send a name-service create/destroy for ``name`` at ``addr`` (if NS is negotiated)."""
    if not link.ns_supported:
        return
    msg = NsMessage(name, addr, 1 if destroy else 0).pack()
    if not TRACER.enabled:
        link.send(addr, RPMSG_NS_ADDR, msg, block=True, timeout=None)
        return
    t0 = time.perf_counter_ns()
    link.send(addr, RPMSG_NS_ADDR, msg, block=True, timeout=None)
    args = message_args(link, addr, RPMSG_NS_ADDR, len(msg))
    TRACER.span(
        "rpmsg", "announce", t0, flow_out=TRACER.take("flow_out"), name=name,
        destroy=int(destroy), **args,
    )  # fmt: skip
