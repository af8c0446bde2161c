"""The GLINK protocol without I/O: two state machines, each one's output parsed and fed
to the other; commands framed and decoded as the FIFO reader does."""

import errno
import logging
import struct

import pytest

from amplink.errors import RpmsgError, WireError
from amplink.rpmsg.glink_protocol import (
    INTENTS_WANTED,
    FlowChanged,
    GlinkProtocol,
    IntentsAvailable,
    MessageReceived,
    RemoteClosed,
    RemoteOpened,
)
from amplink.wire import glink as g


def deliver(src: GlinkProtocol, dst: GlinkProtocol) -> int:
    """Everything ``src`` wants to write, framed and parsed into ``dst``."""
    n = 0
    while src.output:
        raw = src.output.popleft()
        assert g.frame_length(raw[: g.DATA_HDR.size]) == len(raw)
        dst.receive(g.parse_command(raw))
        n += 1
    return n


def events(side: GlinkProtocol) -> list:
    """The events since the last look, with their types (NamedTuples with equal fields
    compare equal whatever their type)."""
    out = [(type(e), e) for e in side.events]
    side.events.clear()
    return out


def typed(*items) -> list:
    return [(type(e), e) for e in items]


def settle(a: GlinkProtocol, b: GlinkProtocol) -> None:
    while deliver(a, b) + deliver(b, a):
        pass


def data(lcid, iid, payload, left=0, cont=False):
    cmd = g.TX_DATA_CONT if cont else g.TX_DATA
    raw = g.data_header(cmd, lcid, iid, len(payload), left) + payload
    return raw + bytes(g.pad8(len(raw)) - len(raw))


@pytest.fixture
def pair():
    host = GlinkProtocol("host", max_message=4096)
    remote = GlinkProtocol("remote", max_message=4096)
    host.watch_intents = remote.watch_intents = True
    settle(host, remote)
    return host, remote


def test_intents_are_reported_only_while_watched():
    host = GlinkProtocol("host", max_message=4096)
    remote = GlinkProtocol("remote", max_message=4096)
    remote.open("svc")
    settle(host, remote)
    assert events(host) == typed(RemoteOpened("svc", False))
    host.watch_intents = True
    host.receive(g.parse_command(g.intent_command(remote.lcid("svc"), [(64, 99)])))
    assert events(host) == typed(IntentsAvailable("svc"))


def test_versions_are_exchanged(pair):
    host, remote = pair
    assert host.peer_version == remote.peer_version == g.GLINK_VERSION
    assert events(host) == events(remote) == []


def test_a_channel_opens_from_both_sides_with_intents(pair):
    host, remote = pair
    remote.open("svc")
    settle(host, remote)
    assert events(host) == typed(RemoteOpened("svc", False), IntentsAvailable("svc"))
    host.open("svc")
    settle(host, remote)
    assert events(remote) == typed(RemoteOpened("svc", True), IntentsAvailable("svc"))
    assert host.channels() == remote.channels() == {"svc": (True, True)}
    assert len(host.channel("svc").free_intents) == 5  # the remote's 5 x 1 KiB


def test_a_message_uses_the_smallest_intent_and_comes_back_for_reuse_once_consumed(pair, caplog):
    host, remote = pair
    for side in (remote, host):
        side.open("svc")
    settle(host, remote)
    events(host), events(remote)
    iid = host.take_intent("svc", 100)
    assert iid is not None and host.take_intent("svc", 5000) is None
    remote.receive(g.parse_command(data(host.lcid("svc"), iid, b"hello")))
    assert events(remote) == typed(MessageReceived("svc", b"hello", iid))
    settle(host, remote)  # not consumed yet: the intent stays lent
    assert events(host) == [] and iid in host.channel("svc").used_intents
    remote.receive(g.parse_command(data(host.lcid("svc"), iid, b"again")))  # not free
    assert events(remote) == [] and "still holds an unconsumed message" in caplog.text
    remote.rx_done([("svc", iid)])
    remote.rx_done([("svc", iid)])  # once only
    settle(host, remote)  # RX_DONE_W_REUSE
    assert events(host) == typed(IntentsAvailable("svc"))
    assert iid in host.channel("svc").free_intents


def test_an_intent_lent_when_the_channel_closes_here_is_not_given_back(pair):
    host, remote = pair
    for side in (remote, host):
        side.open("svc")
    settle(host, remote)
    iid = host.take_intent("svc", 100)
    remote.receive(g.parse_command(data(host.lcid("svc"), iid, b"hello")))
    remote.close("svc", tell=True)
    remote.rx_done([("svc", iid)])
    assert not any(isinstance(g.parse_command(raw), g.RxDone) for raw in remote.output)


def test_chunks_are_reassembled_and_an_overflow_is_dropped(pair, caplog):
    host, remote = pair
    for side in (remote, host):
        side.open("svc")
    settle(host, remote)
    events(remote)
    lcid, iid = host.lcid("svc"), host.take_intent("svc", 1024)
    for raw in (data(lcid, iid, b"a" * 600, left=400), data(lcid, iid, b"b" * 400, cont=True)):
        remote.receive(g.parse_command(raw))
    assert events(remote) == typed(MessageReceived("svc", b"a" * 600 + b"b" * 400, iid))
    remote.rx_done([("svc", iid)])
    settle(host, remote)
    iid = host.take_intent("svc", 1024)
    remote.receive(g.parse_command(data(lcid, iid, b"x" * 600, left=600)))  # 1200 > 1024
    assert events(remote) == typed() and "overflows" in caplog.text
    settle(host, remote)
    assert iid in host.channel("svc").free_intents  # given back all the same


def test_intent_requests_are_granted_rounded_up_or_refused(pair, caplog):
    host, remote = pair
    for side in (remote, host):
        side.open("svc")
    settle(host, remote)
    assert host.intent_or_request("svc", 3000) is None  # asks the remote
    settle(host, remote)
    granted = host.channel("svc").free_intents
    # 3000 rounded up to a power of two, as many as the channel had (5): doubled
    assert list(granted.values()).count(4096) == 5
    assert host.intent_or_request("svc", 3000) is not None
    caplog.set_level(logging.WARNING)
    assert host.intent_or_request("svc", 5000) is None  # more than max_message
    settle(host, remote)
    assert "an intent of 5000 bytes on 'svc': larger than the largest message" in caplog.text
    with pytest.raises(RpmsgError) as exc:
        host.intent_or_request("svc", 5000)
    assert exc.value.errno == errno.EAGAIN


def test_a_sender_in_a_callback_asks_for_intents_beyond_the_pipeline(pair):
    """With INTENTS_WANTED in use, a sender waits for one to come back; one inside its
    receive callback asks for another (the peer may hold them until it is done)."""
    host, remote = pair
    for side in (remote, host):
        side.open("svc")
    settle(host, remote)
    while len(host.channel("svc").used_intents) < INTENTS_WANTED:
        if host.intent_or_request("svc", 10) is None:
            settle(host, remote)  # granted
    while host.take_intent("svc", 10) is not None:
        pass  # the grants overshoot: they double the channel's intents
    assert host.intent_or_request("svc", 10) is None and not host.output  # waits
    assert host.intent_or_request("svc", 10, in_callback=True) is None
    settle(host, remote)
    assert host.intent_or_request("svc", 10, in_callback=True) is not None


def test_grants_double_a_streaming_senders_intents_up_to_the_limit(pair, caplog):
    """A sender that runs dry asks for one intent at a time; each grant doubles what
    the channel has, so a deep pipeline takes a few requests, and stops at MAX_INTENTS."""
    host, remote = pair
    for side in (remote, host):
        side.open("svc")
    settle(host, remote)
    local = remote.channel("svc").local_intents
    sizes = []

    def run_dry_and_ask(in_callback: bool) -> bool:
        while host.take_intent("svc", 10) is not None:
            pass
        sizes.append(len(local))
        assert host.intent_or_request("svc", 10, in_callback=in_callback) is None
        asked = bool(host.output)
        settle(host, remote)
        return asked

    while run_dry_and_ask(in_callback=False):
        pass
    assert sizes == [5, 10, 20, 40, 80, 160]  # then INTENTS_WANTED (128) are in flight
    assert set(local.values()) == {1024}  # a 10-byte request gets MIN_GRANT bytes
    assert run_dry_and_ask(in_callback=True)  # in a callback it asks all the same...
    assert len(local) == g.MAX_INTENTS  # ...granted up to the limit, not 320
    caplog.set_level(logging.WARNING)
    assert run_dry_and_ask(in_callback=True)  # refused, saying why
    assert len(local) == g.MAX_INTENTS
    assert f"'svc', but the channel's {g.MAX_INTENTS} intents (the most" in caplog.text
    refusals = 0
    for _ in range(50):  # a message no intent in use fits: each send asks, and is refused
        try:
            assert host.intent_or_request("svc", 2000) is None
        except RpmsgError as exc:
            assert exc.errno == errno.EAGAIN
            refusals += 1
        settle(host, remote)
    assert refusals == 25  # every other call: asked, then told it was refused...
    assert caplog.text.count("the most a channel may have") == 1, caplog.text  # ...said once


def test_signals_become_flow_events(pair):
    host, remote = pair
    for side in (remote, host):
        side.open("svc")
    settle(host, remote)
    events(remote)
    host.signals("svc", pause=True)
    host.signals("svc", pause=False)
    settle(host, remote)
    assert events(remote) == typed(FlowChanged("svc", True), FlowChanged("svc", False))


def test_close_is_acknowledged_and_a_closed_channel_refuses_sends(pair):
    host, remote = pair
    for side in (remote, host):
        side.open("svc")
    settle(host, remote)
    events(host)
    remote.close("svc", tell=True)
    settle(host, remote)
    assert events(host) == typed(RemoteClosed("svc", True))
    assert host.channels() == {"svc": (True, False)}
    with pytest.raises(RpmsgError) as exc:
        host.check_open("svc")
    assert exc.value.errno == errno.EPIPE
    host.close("svc", tell=True)
    settle(host, remote)
    assert host.channels() == remote.channels() == {}  # both ids acknowledged, forgotten


def test_commands_for_unknown_channels_and_intents_are_dropped(pair, caplog):
    _host, remote = pair
    caplog.set_level(logging.WARNING)
    for cmd in (
        g.command(g.CLOSE, 77),
        g.command(g.RX_DONE_W_REUSE, 77, 1),
        g.intent_command(77, [(64, 1)]),
        data(77, 1, b"stray"),
    ):
        remote.receive(g.parse_command(cmd))
    assert events(remote) == typed()
    assert caplog.text.count("which is not open") == 4
    assert remote.output  # the CLOSE is acknowledged all the same


def test_parse_and_frame_every_command():
    cases = {
        g.command(g.VERSION, 1, 0): g.Version(1, 0, False),
        g.command(g.VERSION_ACK, 1, 2): g.Version(1, 2, True),
        g.open_command(3, "abc"): g.Open(3, "abc"),
        g.command(g.CLOSE, 3): g.Close(3),
        g.command(g.OPEN_ACK, 4): g.OpenAck(4),
        g.command(g.CLOSE_ACK, 4): g.CloseAck(4),
        g.intent_command(3, [(64, 1), (128, 2)]): g.Intents(3, ((64, 1), (128, 2))),
        g.command(g.RX_DONE, 3, 9): g.RxDone(3, 9, False),
        g.command(g.RX_DONE_W_REUSE, 3, 9): g.RxDone(3, 9, True),
        g.command(g.RX_INTENT_REQ, 3, 500): g.IntentRequest(3, 500),
        g.command(g.RX_INTENT_REQ_ACK, 3, 0): g.IntentRequestAck(3, False),
        data(3, 9, b"xyz", left=5): g.Data(3, 9, b"xyz", 5, False),
        data(3, 9, b"z", cont=True): g.Data(3, 9, b"z", 0, True),
        g.command(g.READ_NOTIF): g.ReadNotif(),
        g.command(g.SIGNALS, 3, g.SIG_DTR_DSR): g.Signals(3, g.SIG_DTR_DSR),
    }
    for raw, want in cases.items():
        assert g.frame_length(raw[: g.DATA_HDR.size]) == len(raw)
        got = g.parse_command(raw)
        assert type(got) is type(want) and got == want


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (g.command(77), "command"),
        (struct.pack("<HHI", g.OPEN, 1, 200), "name"),
        (struct.pack("<HHI", g.OPEN, 1, 1), "name"),
        (struct.pack("<HHI", g.INTENT, 1, g.MAX_INTENTS + 1), "intents"),
    ],
)
def test_what_cannot_be_framed_is_a_wire_error(raw, rule):
    with pytest.raises(WireError) as exc:
        g.frame_length(raw)
    assert exc.value.rule == rule
