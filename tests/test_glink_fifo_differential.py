"""The compiled GLINK FIFO ends against the pure-Python ones: the same calls on the same
FIFO memory, with a hostile peer scribbling its indices, its kick words and the bytes
in between, give the same answers, the same errors, the same commands handed to the
protocol and the same bytes in shared memory, step by step."""

import os
import random
from collections import deque

import pytest

from amplink.errors import FifoError
from amplink.memory import SharedRegion
from amplink.rpmsg import glink_ends
from amplink.rpmsg.glink_fifo import EdgeFifos
from amplink.rpmsg.glink_protocol import GlinkProtocol, MessageReceived
from amplink.virtio.rings import PURE_PYTHON_ENV
from amplink.wire import glink as g
from amplink.wire.glink_edge import EDGE_HEADER_SIZE
from build_helpers import can_compile
from glink_ends_helpers import ENDS

pytestmark = pytest.mark.skipif("compiled" not in ENDS, reason="the compiled ends were not built")

FIFO = 256  # small: writes wrap often


class Recorder:
    """A protocol that notes what the reader hands it (and fails when told to)."""

    def __init__(self) -> None:
        self.got: list[tuple] = []
        self.fail_on: int | None = None  # an iid whose data raises

    def receive_data(self, cid, iid, chunk, left, cont):
        self.got.append(("data", cid, iid, bytes(chunk), left, cont))
        if iid == self.fail_on:
            raise RuntimeError("the protocol failed")

    def receive_rx_done(self, cid, iid, reuse):
        self.got.append(("rx_done", cid, iid, reuse))

    def receive(self, cmd):
        self.got.append(("other", cmd))


class Side:
    """One implementation's host writer and remote reader of the host→remote FIFO (and
    the remote's writer and the host's reader of the other), over a region of its own."""

    def __init__(self, impl: str, fifo: int = FIFO) -> None:
        self.size = EDGE_HEADER_SIZE + 2 * fifo
        self.region = SharedRegion.create(self.size)
        self.host = EdgeFifos("h", self.region, 0, fifo, "host", ENDS[impl])
        self.remote = EdgeFifos("r", self.region, 0, fifo, "remote", ENDS[impl])
        self.proto = Recorder()

    def memory(self) -> bytes:
        return bytes(self.region.map[: self.size])

    def state(self) -> tuple:
        writers = (self.host.tx, self.remote.tx)
        readers = (self.remote.rx, self.host.rx)
        return tuple((w._pos, w.total, w._kicked) for w in writers) + tuple(
            (r._pos, r.total, r._seen, r.polling) for r in readers
        )


def _outcome(call):
    try:
        return ("ok", call())
    except FifoError as exc:
        return ("FifoError", str(exc))
    except (ValueError, RuntimeError) as exc:
        return (type(exc).__name__, str(exc))


def _message(rnd: random.Random) -> bytes:
    """A command a writer could put: mostly a message's, sometimes another (or junk)."""
    kind = rnd.randrange(10)
    if kind < 5:
        size = rnd.randrange(40)
        left = rnd.choice((0, 0, 0, rnd.randrange(100)))
        cmd = rnd.choice((g.TX_DATA, g.TX_DATA, g.TX_DATA_CONT))
        return g.data_header(cmd, rnd.randrange(3), rnd.randrange(6), size, left) + bytes(
            rnd.randrange(256) for _ in range(size)
        )
    if kind < 7:
        return g.command(rnd.choice((g.RX_DONE, g.RX_DONE_W_REUSE)), 1, rnd.randrange(6))
    if kind == 7:
        return g.intent_command(1, [(64, rnd.randrange(9)) for _ in range(rnd.randrange(1, 3))])
    if kind == 8:
        return rnd.choice(
            (
                g.open_command(2, "svc"),
                g.command(g.CLOSE, 2),
                g.command(g.VERSION, 1, 0),
            )
        )
    return bytes(rnd.randrange(256) for _ in range(8 * rnd.randrange(1, 3)))  # junk


def _step(rnd: random.Random):
    """A random operation as a function of a Side, the same for both implementations."""
    op = rnd.randrange(14)
    if op < 4:
        msg = _message(rnd)
        split = rnd.randrange(len(msg) + 1)
        total = g.pad8(len(msg)) + 8 * rnd.randrange(2)
        keep = rnd.choice((0, 8, 8, 64))
        rx_done_only = rnd.random() < 0.3
        writer = rnd.choice(("host", "remote"))
        return lambda s: getattr(s, writer).tx.put(
            msg[:split], memoryview(msg[split:]), total, keep, rx_done_only
        )
    if op == 4 and rnd.random() < 0.5:  # a send: queued replies, then a TX_DATA
        queued = [
            g.command(g.RX_DONE_W_REUSE, 1, rnd.randrange(6)) for _ in range(rnd.randrange(3))
        ]
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(60)))
        lcid, iid, keep = rnd.randrange(3), rnd.randrange(6), rnd.choice((0, 8))
        writer = rnd.choice(("host", "remote"))

        def send(s):
            out = deque(queued)
            kick = getattr(s, writer).tx.put_data(out, lcid, iid, memoryview(data), keep)
            return kick, list(out)

        return send
    if op == 4:
        only = rnd.random() < 0.3
        return lambda s: (
            s.host.tx.kick_needed(only),
            s.remote.tx.kick_needed(rx_done_only=only),
        )
    if op == 5:
        return lambda s: (s.host.tx.free(), s.remote.tx.free())
    if op in (6, 7):
        fail_on = rnd.choice((None, None, None, rnd.randrange(6)))
        reader = rnd.choice(("host", "remote"))

        def feed(s):
            s.proto.fail_on = fail_on
            return getattr(s, reader).rx.feed(s.proto)

        return feed
    if op == 8:
        quiet = rnd.random() < 0.5
        return lambda s: (s.remote.rx.settle(quiet), s.host.rx.settle(not quiet))
    if op == 9:
        on = rnd.random() < 0.5
        return lambda s: (s.remote.rx.set_polling(on), s.host.rx.set_polling(not on))
    if op == 10:
        return lambda s: (
            s.remote.rx.pending(),
            s.host.rx.pending(),
            s.remote.rx.pending_data(),
            s.host.rx.pending_data(),
        )
    if op == 11:
        awaiting = rnd.random() < 0.5
        side = rnd.choice(("host", "remote"))
        return lambda s: getattr(s, side).set_awaiting_intents(awaiting)
    if rnd.random() < 0.5:
        return lambda s: None
    # the hostile peer: a word of the header (indices, polling and awaiting words),
    # mostly small values, or bytes anywhere in the FIFOs
    if rnd.random() < 0.5:
        where = rnd.choice((0, 1, 2, 3, 16, 17, 18, 19)) * 4
        value = rnd.choice((rnd.randrange(FIFO), rnd.randrange(FIFO), rnd.randrange(1 << 32)))
        data = value.to_bytes(4, "little")
    else:
        where = EDGE_HEADER_SIZE + rnd.randrange(2 * FIFO - 16)
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 16)))

    def scribble(s):
        s.region.map[where : where + len(data)] = data

    return scribble


@pytest.mark.parametrize("seed", range(8))
def test_both_implementations_agree_step_by_step_under_scribbling(seed):
    rnd = random.Random(seed)
    sides = [Side(impl) for impl in ("python", "compiled")]
    kinds: dict[str, int] = {}
    try:
        for step in range(3000):
            op = _step(rnd)
            outcomes = [_outcome(lambda s=s, op=op: op(s)) for s in sides]
            assert outcomes[0] == outcomes[1], f"seed {seed} step {step}"
            assert sides[0].proto.got == sides[1].proto.got, f"seed {seed} step {step}: fed"
            assert sides[0].memory() == sides[1].memory(), f"seed {seed} step {step}: memory"
            assert sides[0].state() == sides[1].state(), f"seed {seed} step {step}: state"
            kinds[outcomes[0][0]] = kinds.get(outcomes[0][0], 0) + 1
            if outcomes[0][0] == "FifoError" and rnd.random() < 0.2:  # start again now and then
                for s in sides:
                    s.region.close()
                sides = [Side(impl) for impl in ("python", "compiled")]
    finally:
        for s in sides:
            s.region.close()
    # the run went well past the checks, and into them
    assert kinds["ok"] > 1500 and kinds.get("FifoError", 0) > 20, kinds


@pytest.mark.parametrize("impl", sorted(ENDS))
def test_a_closed_region_raises_value_error_not_a_crash(impl):
    side = Side(impl)
    side.host.tx.put(g.command(g.RX_DONE, 1, 1), b"", 8, 8, False)
    tx, rx = side.host.tx, side.remote.rx
    side.region.close()
    for call in (
        lambda: tx.put(b"12345678", b"", 8, 8, False),
        lambda: tx.put_data(deque([b"12345678"]), 1, 1, b"x", 8),
        tx.kick_needed,
        tx.free,
        lambda: rx.feed(Recorder()),
        lambda: rx.settle(True),
        lambda: rx.set_polling(True),
        rx.pending,
        rx.pending_data,
    ):
        with pytest.raises(ValueError):
            call()


def test_a_region_closed_while_the_protocol_runs_stops_the_compiled_feed():
    """The compiled reader lets the mapping go while the protocol runs (Python, where
    another thread may unmap): it takes it again after, and finds it closed."""
    side = Side("compiled")
    for iid in (1, 2):
        data = g.data_header(g.TX_DATA, 1, iid, 8, 0) + bytes(8)
        assert side.host.tx.put(data, b"", len(data), 8, False) is not None

    class Closing(Recorder):
        def receive_data(self, *args):
            super().receive_data(*args)
            side.region.close()

    proto = Closing()
    with pytest.raises(ValueError):
        side.remote.rx.feed(proto)
    assert len(proto.got) == 1


class ProtocolSide:
    """One implementation's reader feeding a real GlinkProtocol (the compiled reader
    does its common cases itself), with the peer's channel open and its intents given."""

    def __init__(self, impl: str) -> None:
        self.region = SharedRegion.create(EDGE_HEADER_SIZE + 2 * 1024)
        self.peer = EdgeFifos("p", self.region, 0, 1024, "remote", ENDS[impl])
        self.me = EdgeFifos("m", self.region, 0, 1024, "host", ENDS[impl])
        self.proto = GlinkProtocol("m", max_message=4096, intents=((64, 5),))
        self.proto.open(NAME)
        self.proto.output.clear()
        for cmd in (
            g.open_command(7, NAME),
            g.intent_command(7, [(64, i) for i in range(1, 7)]),
        ):
            self.peer.tx.write(cmd)
        self.me.rx.feed(self.proto)
        self.proto.output.clear()
        self.proto.events.clear()

    def state(self) -> tuple:
        ch = self.proto.channel(NAME)
        assert ch is not None
        return (
            list(ch.free_intents.items()),
            list(ch.used_intents.items()),
            list(ch.local_intents.items()),
            sorted(ch.lent),
            {k: bytes(v) for k, v in ch.rx.items()},
            list(self.proto.output),
            self.proto.rx_done_run,
        )


NAME = "svc"


def _protocol_write(command: bytes):
    """The peer writes ``command`` (padded) if it fits."""

    def write(s):
        if s.peer.tx.free() >= g.pad8(len(command)):
            s.peer.tx.write(command, pad=g.pad8(len(command)) - len(command))

    return write


def _protocol_step(rnd: random.Random, peer: dict[str, int]):
    """A random operation; ``peer["cid"]``: the id the peer has the channel open as
    now (7 or 9, see op 12; 8 is never open), which most commands use."""
    op = rnd.randrange(13)
    cids = (peer["cid"],) * 4 + (7, 9, 8)
    if op < 4:
        size = rnd.choice((rnd.randrange(70), rnd.randrange(200)))
        left = rnd.choice((0, 0, 0, rnd.randrange(80)))
        cmd = rnd.choice((g.TX_DATA, g.TX_DATA, g.TX_DATA, g.TX_DATA_CONT))
        cid = rnd.choice(cids)
        iid = rnd.randrange(8)
        body = bytes(rnd.randrange(256) for _ in range(size))
        return _protocol_write(g.data_header(cmd, cid, iid, size, left) + body)
    if op < 6:
        cmd = rnd.choice((g.RX_DONE, g.RX_DONE_W_REUSE, g.RX_DONE_W_REUSE))
        cid, iid = rnd.choice(cids), rnd.randrange(8)
        if rnd.random() < 0.1:  # the peer offers intents again
            return _protocol_write(
                g.intent_command(rnd.choice(cids), [(64, i) for i in range(1, 7)])
            )
        return _protocol_write(g.command(cmd, cid, iid))
    if (
        op == 12 and rnd.random() < 0.3
    ):  # the peer closes the channel and opens it again under the other id,
        # between commands for both ids (the compiled reader's cache of the channel
        # must not outlive it)
        old = peer["cid"]
        new = peer["cid"] = 16 - old
        return _protocol_write(
            g.command(g.CLOSE, old)
            + g.open_command(new, NAME)
            + g.intent_command(new, [(64, i) for i in range(1, 7)])
        )
    if op in (6, 7):
        n = rnd.randrange(80)
        return lambda s: s.proto.take_intent(NAME, n)
    if op in (8, 9):
        k = rnd.randrange(5)

        def consumed(s):
            lent = sorted(s.proto.channel(NAME).lent)[:k]
            s.proto.rx_done([(NAME, iid) for iid in lent])

        return consumed
    if op == 10:
        watch = rnd.random() < 0.5
        return lambda s: setattr(s.proto, "watch_intents", watch)

    def feed(s):
        got = s.me.rx.feed(s.proto)
        events = list(s.proto.events)
        s.proto.events.clear()
        return got, events

    return feed


@pytest.mark.parametrize("seed", range(6))
def test_the_protocols_common_cases_agree_with_its_methods(seed):
    """What the compiled reader does itself (a whole message in an intent, an intent
    given back) leaves the protocol as its own methods do, events and all."""
    rnd = random.Random(seed)
    sides = [ProtocolSide(impl) for impl in ("python", "compiled")]
    kinds: dict[str, int] = {}
    peer = {"cid": 7}
    try:
        for step in range(2000):
            op = _protocol_step(rnd, peer)
            outcomes = [_outcome(lambda s=s, op=op: op(s)) for s in sides]
            assert outcomes[0] == outcomes[1], f"seed {seed} step {step}"
            assert sides[0].state() == sides[1].state(), f"seed {seed} step {step}: state"
            if outcomes[0][0] == "ok" and isinstance(outcomes[0][1], tuple):
                for event in outcomes[0][1][1]:
                    kinds[type(event).__name__] = kinds.get(type(event).__name__, 0) + 1
    finally:
        for s in sides:
            s.region.close()
    assert kinds.get("MessageReceived", 0) > 50 and kinds.get("IntentsAvailable", 0) > 10, kinds
    assert kinds.get("RemoteOpened", 0) > 5, kinds


def test_a_channel_reopened_within_one_read_is_not_mistaken_for_the_old_one():
    """One read holds a message on the peer's channel 7, its CLOSE and an OPEN of the
    same name as 9, then messages on 7 (closed: dropped) and on 9: the compiled
    reader, which keeps the channel it looked up for the rest of a read, delivers only
    what the protocol's own methods deliver."""
    sides = [ProtocolSide(impl) for impl in ("python", "compiled")]
    try:
        for s in sides:
            for cmd in (
                g.data_header(g.TX_DATA, 7, 1, 4, 0) + b"old1",
                g.command(g.CLOSE, 7),
                g.open_command(9, NAME),
                g.intent_command(9, [(64, i) for i in range(1, 7)]),
                g.data_header(g.TX_DATA, 7, 2, 4, 0) + b"old2",
                g.data_header(g.TX_DATA, 9, 3, 4, 0) + b"new3",
            ):
                _protocol_write(cmd)(s)
            s.me.rx.feed(s.proto)
        got = [[e for e in s.proto.events if isinstance(e, MessageReceived)] for s in sides]
        assert got[0] == got[1]
        assert [(e.data, e.iid) for e in got[0]] == [(b"old1", 1), (b"new3", 3)]
        assert sides[0].state() == sides[1].state()
    finally:
        for s in sides:
            s.region.close()


def test_a_send_after_many_held_replies_writes_them_all_first():
    """A host that held back a hundred RX_DONEs writes them ahead of its next message."""
    sides = [Side(impl, fifo=4096) for impl in ("python", "compiled")]
    try:
        held = [g.command(g.RX_DONE_W_REUSE, 1, i) for i in range(100)]
        for s in sides:
            out = deque(held)
            assert s.host.tx.put_data(out, 1, 2, b"hello", 8) is not None
            assert not out
            s.remote.rx.feed(s.proto)
        assert sides[0].memory() == sides[1].memory()
        assert sides[0].proto.got == sides[1].proto.got
        assert sides[0].proto.got[-1] == ("data", 1, 2, b"hello", 0, False)
        assert len(sides[0].proto.got) == 101
    finally:
        for s in sides:
            s.region.close()


def test_the_compiled_ends_run_when_they_were_built():
    """amplink runs the compiled GLINK FIFO ends when the build made them, unless the
    environment asks for the pure-Python ones; where a C compiler and the Python
    headers are, `make` must have built them (as the virtqueue's)."""
    pure = os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")
    if "compiled" not in ENDS:
        assert not can_compile(), "a compiler is here, but the install did not build _glink"
        pytest.skip("no C compiler or Python headers: the pure-Python ends run")
    assert glink_ends.COMPILED is not pure
    assert (glink_ends.ENDS == glink_ends.PYTHON_ENDS) is pure


@pytest.mark.parametrize("impl", sorted(ENDS))
def test_a_reader_leaves_intents_given_back_unless_it_waits_for_one(impl):
    """What came after the last read counts as more (settle, pending_data) unless it is
    only RX_DONEs (8 at most) and our awaiting word is clear; pending() counts all."""
    side = Side(impl, fifo=1024)
    try:
        tx, rx = side.remote.tx, side.host.rx
        rx_done = g.command(g.RX_DONE_W_REUSE, 1, 3)
        assert tx.put(rx_done * 2, b"", 16, 8, True) is not None
        assert rx.pending() and not rx.pending_data() and not rx.settle(True)
        side.host.set_awaiting_intents(True)  # a sender here waits: they count
        assert rx.pending_data() and rx.settle(False)
        side.host.set_awaiting_intents(False)
        assert tx.put(g.command(g.RX_DONE, 1, 4) * 7, b"", 56, 8, True) is not None
        assert rx.pending_data() and rx.settle(False)  # 9 of them: more than may be left
        assert rx.feed(side.proto) == 72 and not rx.pending()
        assert tx.put(rx_done, b"", 8, 8, True) is not None
        assert not rx.settle(False) and not rx.pending_data()
        assert tx.put(g.command(g.CLOSE, 2), b"", 8, 8, False) is not None
        assert rx.settle(False) and rx.pending_data()  # anything else: read on
        assert rx.feed(side.proto) == 16
        assert [cmd[0] for cmd in side.proto.got[-2:]] == ["rx_done", "other"]
    finally:
        side.region.close()
