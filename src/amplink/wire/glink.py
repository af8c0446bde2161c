"""GLINK on the wire: the commands of Qualcomm's GLINK transport, encoded and decoded.

Where they travel (amplink's edge: its resource entry and FIFO layout) is
:mod:`amplink.wire.glink_edge`.

**Commands** (the facts of ``qcom_glink_native``): every command starts with an 8-byte
header ``{cmd le16, param1 le16, param2 le32}`` and is padded to 8 bytes in the FIFO.
A command about a channel carries the *sender's* channel id, except the two acks
(``OPEN_ACK``, ``CLOSE_ACK``), which carry the id they acknowledge.

=================== ============== ============================================
command             param1         param2, then body
=================== ============== ============================================
VERSION, _ACK       version        features
OPEN                lcid           name length incl. NUL; the name
OPEN_ACK, CLOSE_ACK acked id       0
CLOSE               lcid           0
INTENT              lcid           count; count x {size le32, iid le32}
RX_DONE(_W_REUSE)   lcid           iid
RX_INTENT_REQ       lcid           size
RX_INTENT_REQ_ACK   lcid           1 granted, 0 denied
TX_DATA, _CONT      lcid           iid; chunk_size le32, left_size le32; data
READ_NOTIF          0              0 (kick me once you have read)
SIGNALS             lcid           signal bits (DTR/DSR bit 31, RTS/CTS bit 30)
=================== ============== ============================================
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from amplink.errors import WireError

VERSION = 0
VERSION_ACK = 1
OPEN = 2
CLOSE = 3
OPEN_ACK = 4
INTENT = 5
RX_DONE = 6
RX_INTENT_REQ = 7
RX_INTENT_REQ_ACK = 8
TX_DATA = 9
CLOSE_ACK = 11
TX_DATA_CONT = 12
READ_NOTIF = 13
RX_DONE_W_REUSE = 14
SIGNALS = 15

COMMAND_NAMES = {
    VERSION: "VERSION",
    VERSION_ACK: "VERSION_ACK",
    OPEN: "OPEN",
    CLOSE: "CLOSE",
    OPEN_ACK: "OPEN_ACK",
    INTENT: "INTENT",
    RX_DONE: "RX_DONE",
    RX_INTENT_REQ: "RX_INTENT_REQ",
    RX_INTENT_REQ_ACK: "RX_INTENT_REQ_ACK",
    TX_DATA: "TX_DATA",
    CLOSE_ACK: "CLOSE_ACK",
    TX_DATA_CONT: "TX_DATA_CONT",
    READ_NOTIF: "READ_NOTIF",
    RX_DONE_W_REUSE: "RX_DONE_W_REUSE",
    SIGNALS: "SIGNALS",
}

GLINK_VERSION = 1
FEATURE_INTENTLESS = 1 << 1
SIG_DTR_DSR = 1 << 31
SIG_RTS_CTS = 1 << 30
MAX_CHUNK = 8192  # a blocking send fragments into chunks of at most this many bytes
MAX_CID = 0xFFFF
MAX_INTENTS = 256  # amplink's bound: intents per channel, and per INTENT command

HDR = struct.Struct("<HHI")
DATA_HDR = struct.Struct("<HHIII")  # HDR + chunk_size + left_size
INTENT_PAIR = struct.Struct("<II")
NAME_MAX = 32  # with its NUL, as rpmsg channel names


def pad8(n: int) -> int:
    """``n`` rounded up to a multiple of 8 (GLINK pads every command)."""
    return (n + 7) & ~7


def command(cmd: int, param1: int = 0, param2: int = 0, body: bytes = b"") -> bytes:
    """One command, header and body, padded to 8 bytes."""
    raw = HDR.pack(cmd, param1, param2) + body
    return raw + bytes(pad8(len(raw)) - len(raw))


def open_command(lcid: int, name: str) -> bytes:
    """An OPEN command for channel ``lcid`` named ``name`` (padded)."""
    encoded = name.encode() + b"\0"
    if len(encoded) > NAME_MAX:
        raise ValueError(f"GLINK channel name {name!r} is longer than {NAME_MAX - 1} bytes")
    return command(OPEN, lcid, len(encoded), encoded)


def intent_command(lcid: int, intents: list[tuple[int, int]]) -> bytes:
    """INTENT advertising ``(size, iid)`` pairs."""
    body = b"".join(INTENT_PAIR.pack(size, iid) for size, iid in intents)
    return command(INTENT, lcid, len(intents), body)


def data_header(cmd: int, lcid: int, iid: int, chunk: int, left: int) -> bytes:
    """The 16-byte header of a TX_DATA or TX_DATA_CONT command."""
    return DATA_HDR.pack(cmd, lcid, iid, chunk, left)


# -- decoding ----------------------------------------------------------------------------
# A decoded command says whose channel id it carries: ``cid`` is the sender's (the
# receiver's "rcid"), except in OpenAck and CloseAck, where it is the acknowledged id (the
# receiver's own "lcid").  Commands are NamedTuples (cheap to make, one per message):
# tell them apart by type, as two of them with equal fields compare equal.


class Version(NamedTuple):
    """VERSION (``ack`` False) or VERSION_ACK."""

    version: int
    features: int
    ack: bool


class Open(NamedTuple):
    """OPEN: the sender opened channel ``name`` as ``cid``."""

    cid: int
    name: str


class Close(NamedTuple):
    """CLOSE: the sender closed its channel ``cid``."""

    cid: int


class OpenAck(NamedTuple):
    """OPEN_ACK of the receiver's channel ``cid``."""

    cid: int


class CloseAck(NamedTuple):
    """CLOSE_ACK of the receiver's channel ``cid``."""

    cid: int


class Intents(NamedTuple):
    """INTENT: receive buffers the sender offers on its channel ``cid``, as
    ``(size, iid)`` pairs."""

    cid: int
    intents: tuple[tuple[int, int], ...]


class RxDone(NamedTuple):
    """RX_DONE (``reuse`` False) or RX_DONE_W_REUSE: the sender is done with intent
    ``iid`` it gave on channel ``cid``."""

    cid: int
    iid: int
    reuse: bool


class IntentRequest(NamedTuple):
    """RX_INTENT_REQ: the sender asks for an intent of ``size`` bytes."""

    cid: int
    size: int


class IntentRequestAck(NamedTuple):
    """RX_INTENT_REQ_ACK: the sender granted (it sent the INTENT first) or refused."""

    cid: int
    granted: bool


class Data(NamedTuple):
    """TX_DATA (``cont`` False) or TX_DATA_CONT: ``chunk`` of a message for the
    receiver's intent ``iid``, with ``left`` bytes still to come."""

    cid: int
    iid: int
    chunk: bytes
    left: int
    cont: bool


class ReadNotif(NamedTuple):
    """READ_NOTIF: kick the sender once you have read (its FIFO was full)."""


class Signals(NamedTuple):
    """SIGNALS on the sender's channel ``cid`` (DTR/DSR, RTS/CTS bits)."""

    cid: int
    sigs: int


Command = (
    Version
    | Open
    | Close
    | OpenAck
    | CloseAck
    | Intents
    | RxDone
    | IntentRequest
    | IntentRequestAck
    | Data
    | ReadNotif
    | Signals
)
_READ_NOTIF = ReadNotif()


def frame_length(head: bytes) -> int:
    """The padded length of the command that starts with ``head`` (its 8-byte header,
    and for TX_DATA/TX_DATA_CONT the 16-byte one when that much is there).  A command
    that cannot be framed (unknown, an OPEN name longer than a channel name, an INTENT
    of more than :data:`MAX_INTENTS`) is a :class:`WireError`: nothing after it can be
    read."""
    cmd: int
    p2: int
    cmd, _p1, p2 = HDR.unpack_from(head)
    if cmd in (TX_DATA, TX_DATA_CONT):
        if len(head) < DATA_HDR.size:
            return DATA_HDR.size
        chunk: int = DATA_HDR.unpack_from(head)[3]
        return pad8(DATA_HDR.size + chunk)
    if cmd == OPEN:
        if not 1 < p2 <= NAME_MAX:
            raise WireError("name", f"OPEN with a {p2}-byte name")
        return pad8(HDR.size + p2)
    if cmd == INTENT:
        if p2 > MAX_INTENTS:
            raise WireError("intents", f"INTENT advertising {p2} intents at once")
        return HDR.size + p2 * INTENT_PAIR.size
    if cmd in COMMAND_NAMES:
        return HDR.size
    raise WireError("command", f"unknown GLINK command {cmd}")


def parse_command(raw: bytes) -> Command:
    """Decode one whole command, as :func:`frame_length` framed it."""
    cmd, p1, p2 = HDR.unpack_from(raw)
    if cmd in (TX_DATA, TX_DATA_CONT):
        _c, cid, iid, chunk, left = DATA_HDR.unpack_from(raw)
        start = DATA_HDR.size
        return Data(cid, iid, raw[start : start + chunk], left, cmd == TX_DATA_CONT)
    if cmd in (RX_DONE, RX_DONE_W_REUSE):
        return RxDone(p1, p2, cmd == RX_DONE_W_REUSE)
    if cmd == INTENT:
        return Intents(
            p1,
            tuple(INTENT_PAIR.unpack_from(raw, HDR.size + i * INTENT_PAIR.size) for i in range(p2)),
        )
    if cmd == OPEN:
        return Open(p1, raw[HDR.size : HDR.size + p2].rstrip(b"\0").decode(errors="replace"))
    if cmd == CLOSE:
        return Close(p1)
    if cmd == OPEN_ACK:
        return OpenAck(p1)
    if cmd == CLOSE_ACK:
        return CloseAck(p1)
    if cmd == RX_INTENT_REQ:
        return IntentRequest(p1, p2)
    if cmd == RX_INTENT_REQ_ACK:
        return IntentRequestAck(p1, bool(p2))
    if cmd == READ_NOTIF:
        return _READ_NOTIF
    if cmd == SIGNALS:
        return Signals(p1, p2)
    if cmd in (VERSION, VERSION_ACK):
        return Version(p1, p2, cmd == VERSION_ACK)
    raise WireError("command", f"unknown GLINK command {cmd}")
