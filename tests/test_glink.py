"""The GLINK edge in one process, both sides over one real shared region, pumped by
hand: the wire format, chunking through a small FIFO, intents, and hostile peers."""

import errno
import logging
import math
import os
import struct
import threading
from contextlib import contextmanager

import pytest

from amplink.errors import FifoError, RpmsgError
from amplink.memory import SharedRegion
from amplink.rpmsg import RpmsgBus
from amplink.rpmsg.glink_link import GlinkChannels, GlinkLink
from amplink.wait import AdaptiveSpin
from amplink.wire import glink as g
from amplink.wire.glink_edge import GlinkEdgeSpec
from glink_ends_helpers import ENDS, use_ends
from resources import snapshot

NAME = "svc"


@pytest.fixture(autouse=True, params=sorted(ENDS))
def fifo_ends(request, monkeypatch):
    """Every test here runs on each implementation of the FIFO ends."""
    return use_ends(request, monkeypatch)


class Edge:
    def __init__(self, fifo_size=1024, max_message=65536):
        self.spec = GlinkEdgeSpec(fifo_size=fifo_size, max_message=max_message)
        self.region = SharedRegion.create(self.spec.size + 4096)
        self.kicks = {"host": 0, "remote": 0}
        self.kicked = {"host": threading.Event(), "remote": threading.Event()}
        self.host = self._side("host")
        self.remote = self._side("remote")
        self.bus = RpmsgBus()
        GlinkChannels(self.bus, self.host)

    def _side(self, role):
        peer = "remote" if role == "host" else "host"

        def kick():
            self.kicks[peer] += 1
            self.kicked[peer].set()

        return GlinkLink(
            role,
            self.region,
            0,
            self.spec,
            role,
            kick,
            send_timeout=0.2,
            spin=AdaptiveSpin(enabled=False),
        )

    def pump(self):
        total = 0
        while True:
            n = self.remote.poll_rx() + self.host.poll_rx()
            total += n
            if not n and not (self.remote.rx_pending() or self.host.rx_pending()):
                return total

    def channel(self):
        """A channel the remote opens and echoes on, and the host's endpoint on it."""
        self.remote.endpoints.create(lambda e, d, s: e.trysend(d), name=NAME)
        self.pump()
        (dev,) = self.bus.devices(NAME)
        ept = dev.create_ept()
        self.pump()
        return ept

    def close(self):
        """Take both sides down as the bindings do when a core stops (fail, quiesce),
        then unmap."""
        for link in (self.host, self.remote):
            link.fail(RpmsgError(errno.ESHUTDOWN, "the test edge is closed"))
            assert link.quiesce()
        self.region.close()


@contextmanager
def remote_running(edge):
    """The remote side in its own thread, reading only when kicked (as a core does)."""
    stop = threading.Event()

    def remote_side():
        while not stop.is_set():
            if edge.kicked["remote"].wait(0.05):
                edge.kicked["remote"].clear()
                edge.remote.handle_notify()

    t = threading.Thread(target=remote_side)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


@pytest.fixture
def edge():
    before = snapshot()
    e = Edge()
    yield e
    e.close()
    assert snapshot() == before  # no fd (a sender's or receiver's wakeup), no thread


def test_version_open_intents_and_echo(edge):
    ept = edge.channel()
    assert edge.host.peer_version == edge.remote.peer_version == g.GLINK_VERSION
    assert edge.host.channels() == edge.remote.channels() == {NAME: (True, True)}
    ept.send(b"hello")
    edge.pump()
    msg = ept.recv(0)
    assert msg.data == b"hello" and msg.src == 0xFFFFFFFF  # GLINK has no addresses
    assert edge.kicks["host"] and edge.kicks["remote"]


def test_commands_on_the_wire():
    assert g.command(g.RX_DONE, 3, 9) == struct.pack("<HHI", 6, 3, 9)
    opened = g.open_command(2, "abc")
    assert opened[:8] == struct.pack("<HHI", 2, 2, 4) and opened[8:12] == b"abc\0"
    assert len(opened) == 16  # padded to 8 bytes
    assert len(g.intent_command(1, [(1024, 1), (512, 2)])) == 8 + 16
    assert g.data_header(g.TX_DATA, 1, 7, 100, 50) == struct.pack("<HHIII", 9, 1, 7, 100, 50)
    with pytest.raises(ValueError):
        g.open_command(1, "x" * 32)


def test_a_message_many_times_the_fifo_is_chunked_through_it():
    """A 1 KiB FIFO carries a 20 KB message in 496-byte chunks (TX_DATA, then
    TX_DATA_CONT), with READ_NOTIF when it fills; the receiver grants a bigger intent.
    The remote only reads when kicked, so a kick the sender forgets hangs the test."""
    before = snapshot()
    edge = Edge(fifo_size=1024)
    try:
        got = []
        edge.remote.endpoints.create(lambda e, d, s: got.append(d), name=NAME)
        edge.pump()
        ept = edge.bus.devices(NAME)[0].create_ept()
        edge.pump()
        big = bytes(range(256)) * 80
        with pytest.raises(RpmsgError) as exc:
            ept.trysend(big)  # no intent that large, and trysend does not ask
        assert exc.value.errno == errno.EBUSY
        with remote_running(edge):
            for _ in range(3):  # many laps of the ring
                ept.send(big, timeout=10)  # asks for an intent, then chunks
        edge.pump()
        assert got == [big] * 3
    finally:
        edge.close()
    assert snapshot() == before  # the sender waited: its wakeup is closed too


def test_a_failed_link_closes_what_its_senders_slept_on(edge):
    """fail() alone, as a core's link when the host resets the vdev (no quiesce()):
    the wakeup a sender slept on is closed then, not when the link is collected."""
    ept = edge.channel()
    fds = sorted(os.listdir("/proc/self/fd"))
    with remote_running(edge):
        ept.send(bytes(2000), timeout=10)  # no intent that large: it waits for one
    assert sorted(os.listdir("/proc/self/fd")) != fds  # what it slept on
    edge.host.fail(RpmsgError(errno.ESHUTDOWN, "the host reset the vdev"))
    assert sorted(os.listdir("/proc/self/fd")) == fds


def test_trysend_of_a_message_that_cannot_fit_the_fifo_is_einval():
    """1024 bytes fit an intent, but their three chunks (1072 bytes with headers) can
    never be in a 1 KiB FIFO at once: without blocking that is EINVAL, not EAGAIN."""
    edge = Edge(fifo_size=1024)
    try:
        ept = edge.channel()
        with pytest.raises(RpmsgError) as exc:
            ept.trysend(bytes(1024))
        assert exc.value.errno == errno.EINVAL and "use send()" in exc.value.strerror
        ept.trysend(bytes(400))  # what fits still goes, and the intent was given back
        edge.pump()
        assert len(ept.recv(0).data) == 400
        assert len(edge.host.protocol.channel(NAME).free_intents) == 5
    finally:
        edge.close()


def test_intents_beyond_the_limit_are_refused(edge):
    """The remote already gave 256 intents on the channel: it refuses the request, and
    the sender, with no intent of that size in use, gets EAGAIN (not its timeout)."""
    ept = edge.channel()
    ch = edge.remote.protocol.channel(NAME)
    for i in range(g.MAX_INTENTS - len(ch.local_intents)):
        ch.local_intents[10_000 + i] = 1
    with remote_running(edge), pytest.raises(RpmsgError) as exc:
        ept.send(bytes(2000), timeout=30)
    assert exc.value.errno in (errno.EAGAIN, errno.ETIMEDOUT)
    assert exc.value.errno == errno.EAGAIN and "refused" in exc.value.strerror


def test_trysend_asks_for_an_intent_and_gives_emsgsize_once_refused(edge):
    """Without waiting, a message no free intent fits is EBUSY and asks the remote for
    one; readiness waits for that size meanwhile.  Once the remote refused, the next try
    is EMSGSIZE and readiness no longer waits for it (a select loop would wait forever)."""
    ept = edge.channel()
    ch = edge.remote.protocol.channel(NAME)
    for i in range(g.MAX_INTENTS - len(ch.local_intents)):
        ch.local_intents[10_000 + i] = 1
    with pytest.raises(RpmsgError) as exc:
        ept.trysend(bytes(2000))
    assert exc.value.errno == errno.EBUSY and not edge.host.can_send(ept.addr)
    edge.pump()  # the remote refuses
    with pytest.raises(RpmsgError) as exc:
        ept.trysend(bytes(2000))
    assert exc.value.errno == errno.EMSGSIZE and "refused" in exc.value.strerror
    assert edge.host.can_send(ept.addr)
    ept.trysend(b"small")  # a 1 KiB intent still fits it
    edge.pump()


def test_after_a_full_fifo_readiness_waits_for_room_for_that_message(edge):
    """EAGAIN from a full FIFO: the link says it can send only once that message fits,
    not as soon as the smallest one would."""
    ept = edge.channel()
    ept.trysend(bytes(600))  # the remote does not read yet
    with pytest.raises(RpmsgError) as exc:
        ept.trysend(bytes(600))
    assert exc.value.errno == errno.EAGAIN
    assert not edge.host.can_send(ept.addr)  # though a smaller message would fit
    edge.pump()
    assert edge.host.can_send(ept.addr)
    ept.trysend(bytes(600))


def test_data_for_an_intent_never_given_is_dropped_and_the_link_survives(edge, caplog):
    ept = edge.channel()
    lcid = edge.host.protocol.channel(NAME).lcid
    with edge.host._tx_lock:
        edge.host._tx.write(g.data_header(g.TX_DATA, lcid, 999, 8, 0), b"intruder")
    edge.pump()
    assert "never given" in caplog.text
    ept.send(b"still fine")
    edge.pump()
    assert ept.recv(0).data == b"still fine"


def test_a_message_overflowing_its_intent_is_dropped(edge, caplog):
    ept = edge.channel()
    host = edge.host
    ch = host.protocol.channel(NAME)
    iid, size = next(iter(ch.free_intents.items()))
    with host._tx_lock:
        host._tx.write(g.data_header(g.TX_DATA, ch.lcid, iid, 8, size), b"too long")
    edge.pump()
    assert "overflows" in caplog.text
    ept.send(b"after")
    edge.pump()
    assert ept.recv(0).data == b"after"


@pytest.mark.parametrize(
    "garbage",
    [
        g.command(77),  # an unknown command: the stream cannot be framed any more
        g.command(g.OPEN, 5, 200) + bytes(200),  # a name longer than any channel name
    ],
)
def test_an_unframeable_stream_fails_the_link_not_the_process(edge, garbage, caplog):
    ept = edge.channel()
    with edge.host._tx_lock:
        edge.host._tx.write(garbage)
    caplog.set_level(logging.WARNING)
    edge.pump()
    assert isinstance(edge.remote.failure, FifoError) and edge.remote.failure.errno == errno.EPROTO
    assert "is down" in caplog.text
    assert edge.host.failure is None  # the other side is untouched
    assert ept.released is None


def test_a_head_index_outside_the_fifo_fails_the_link(edge):
    ept = edge.channel()
    struct.pack_into("<I", edge.region.mem, 0, edge.spec.fifo_size + 8)  # host->remote head
    edge.remote.handle_notify()
    assert isinstance(edge.remote.failure, FifoError)
    assert "outside" in str(edge.remote.failure)
    with pytest.raises(RpmsgError) as exc:
        edge.remote.endpoints.create(None, name="late")
    assert exc.value.errno == errno.EPIPE
    assert ept.released is None  # the host side is another link


def test_closing_from_the_host_keeps_the_remote_endpoint(edge):
    ept = edge.channel()
    ept.destroy()
    edge.pump()
    assert edge.remote.channels() == {NAME: (True, False)}  # open here, closed there
    assert edge.host.channels() == {NAME: (False, True)}  # the mirror image
    (dev,) = edge.bus.devices(NAME)
    again = dev.create_ept()  # the device stays; opening again works
    edge.pump()
    again.send(b"back")
    edge.pump()
    assert again.recv(0).data == b"back"


def test_unconsumed_counts_messages_the_peer_never_read(edge):
    ept = edge.channel()
    for _ in range(3):
        ept.trysend(b"lost")
    assert edge.host.unconsumed() == {ept.addr: 3}


def test_rx_done_alone_kicks_no_one_and_the_host_sends_its_own_with_its_next_message(edge):
    """One notification per message each way: the remote's RX_DONE after its echo and
    the host's for the echo wake no one (no sender waits), and the host's goes out
    with its next message."""
    ept = edge.channel()
    for data in (b"one", b"two"):
        host_kicks, remote_kicks = edge.kicks["host"], edge.kicks["remote"]
        ept.send(data)
        edge.remote.poll_rx()  # echoes, then gives the intent back
        edge.host.poll_rx()
        assert ept.recv(0).data == data
        assert edge.kicks["remote"] == remote_kicks + 1  # the message, not an RX_DONE
        assert edge.kicks["host"] == host_kicks + 1  # the echo, not the RX_DONE
        assert not edge.host.protocol.channel(NAME).used_intents
        assert not edge.remote.rx_pending()  # the host holds its RX_DONE back...
        # ...until its next message: the intent of the echo before this one is back
        assert len(edge.remote.protocol.channel(NAME).used_intents) == 1


def test_the_host_gives_its_held_rx_dones_back_when_the_remote_waits(edge):
    """A remote that ran out of the host's intents says it waits and kicks the host,
    which then writes the RX_DONEs it held back and kicks the remote."""
    rept = edge.remote.endpoints.create(lambda e, d, s: None, name="up")
    edge.pump()
    (dev,) = edge.bus.devices("up")
    ept = dev.create_ept()
    edge.pump()
    for _ in range(5):  # every intent the host offered
        rept.trysend(b"up")
    edge.host.poll_rx()
    assert [ept.recv(0).data for _ in range(5)] == [b"up"] * 5
    assert not edge.remote.rx_pending()  # the host holds its RX_DONEs back
    host_kicks, remote_kicks = edge.kicks["host"], edge.kicks["remote"]
    ready = threading.Event()
    edge.remote.when_can_send(rept.addr, ready.set)
    assert edge.kicks["host"] > host_kicks and not ready.is_set()
    edge.host.handle_notify()  # that kick: the RX_DONEs go, with a kick to a waiter
    assert edge.remote.rx_pending() and edge.kicks["remote"] > remote_kicks
    edge.remote.handle_notify()
    assert ready.is_set()
    rept.trysend(b"again")


def sink_channel(edge, callback):
    """A channel named "sink" the remote receives on with ``callback``, and the host's
    endpoint on it."""
    edge.remote.endpoints.create(callback, name="sink")
    edge.pump()
    (dev,) = edge.bus.devices("sink")
    ept = dev.create_ept()
    edge.pump()
    return ept


def test_a_reader_is_kicked_once_until_it_has_read_what_the_kick_was_for(edge):
    """A kicked reader reads until its FIFO is empty, then looks once more: what is
    written before it has read that far needs no kick of its own."""
    ept = edge.channel()
    to_remote, to_host = edge.kicks["remote"], edge.kicks["host"]
    for data in (b"a", b"b", b"c"):
        ept.send(data)
    assert edge.kicks["remote"] == to_remote + 1
    assert edge.remote.poll_rx() == 3  # three echoes: one kick of the host
    assert edge.kicks["host"] == to_host + 1
    ept.send(b"d")  # the remote has read what the first kick was for
    assert edge.kicks["remote"] == to_remote + 2
    edge.pump()
    assert [ept.recv(0).data for _ in range(4)] == [b"a", b"b", b"c", b"d"]


def test_a_draining_reader_is_not_kicked_and_gives_intents_back_as_it_goes(edge):
    """While the remote reads a stream the host keeps writing, the host does not kick
    it, and the remote gives the intents of each batch back before the stream pauses
    (a streaming sender finds them without waiting); after it, the host kicks again."""
    got = []
    intents_back = []

    def sink(_ept, data, _src):
        got.append(data)
        intents_back.append(edge.host.rx_pending())
        if len(got) < 10:
            ept.send(b"%d" % len(got))  # the host sends on meanwhile

    ept = sink_channel(edge, sink)
    kicks = edge.kicks["remote"]
    ept.send(b"0")
    assert edge.kicks["remote"] == kicks + 1
    # One drain reads them all (one without a time slice: a loaded machine could
    # otherwise stretch ten callbacks past poll_rx()'s 2 ms and leave some to the next)...
    assert edge.remote._drain(blocking=True, rx_slice=math.inf) == 10
    assert edge.kicks["remote"] == kicks + 1  # ...without a kick for any of them
    assert not intents_back[0] and all(intents_back[1:])  # back after each batch
    edge.host.poll_rx()
    assert len(edge.host.protocol.channel("sink").used_intents) == 0
    ept.send(b"after")
    assert edge.kicks["remote"] == kicks + 2


def test_a_blocking_send_takes_the_intents_given_back_without_waiting(edge):
    """The remote gives intents back without kicking a host that does not wait; a
    blocking send that finds none free reads them itself before it would wait (and
    ask to be kicked)."""
    ept = sink_channel(edge, lambda *_: None)
    told = []
    fifos = edge.host._fifos
    publish = fifos.set_awaiting_intents
    fifos.set_awaiting_intents = lambda awaiting: (told.append(awaiting), publish(awaiting))
    ch = edge.host.protocol.channel("sink")
    while ch.free_intents:
        ept.send(b"x")
    kicks = edge.kicks["host"]
    edge.remote.poll_rx()  # consumed: RX_DONEs written, no kick
    assert edge.kicks["host"] == kicks and edge.host.rx_pending()
    ept.send(b"y", timeout=0)
    assert told == [] and edge.kicks["host"] == kicks


def test_a_command_the_peer_never_completes_does_not_keep_a_drain_reading(edge):
    """A hostile remote publishes the header of a message whose bytes never come: the
    host's drain returns (it reads on only while the head moves), the link stays up."""
    ept = edge.channel()
    with edge.remote._tx_lock:
        edge.remote._tx.write(g.data_header(g.TX_DATA, 1, 1, 100, 0))
    drain = threading.Thread(target=edge.host.poll_rx, daemon=True)
    drain.start()
    drain.join(5)
    assert not drain.is_alive() and edge.host.failure is None
    assert edge.host.rx_pending()  # still there, for when (if) it is completed
    assert ept.released is None


@pytest.mark.parametrize("rewrite", ["command", "count"])
def test_a_command_the_peer_rewrites_while_it_is_read_fails_the_link(edge, rewrite, caplog):
    """The reader frames a command, then copies it: a peer that rewrites the bytes in
    between (an unknown command number, or an INTENT count that no longer fits the
    frame) fails the link with FifoError, never lets a WireError or struct.error out
    of the drain (found by a hostile review: they came out of the IRQ thread)."""
    edge.channel()
    intent = g.intent_command(1, [(64, 7)])  # framed as 16 bytes
    reader = edge.remote._rx
    mem = edge.region.map
    at = reader._base + reader._pos  # where the host's next command will lie
    real_peek = reader.peek
    peeks = []

    def peek_then_rewrite(n, off=0):
        got = real_peek(n, off)
        peeks.append(n)
        if len(peeks) == 1:  # the peer writes between the framing read and the copy
            new = (0x3378, 1, 1) if rewrite == "command" else (g.INTENT, 1, 0xFFFF)
            mem[at : at + g.HDR.size] = g.HDR.pack(*new)
        return got

    reader.peek = peek_then_rewrite
    with edge.host._tx_lock:
        edge.host._tx.write(intent)
    caplog.set_level(logging.WARNING)
    edge.pump()
    assert isinstance(edge.remote.failure, FifoError), edge.remote.failure
    assert "rewrote a command" in str(edge.remote.failure)
