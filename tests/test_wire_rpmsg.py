"""rpmsg header and name-service message: byte-exact against the reference layout."""

import struct

import pytest

from amplink.errors import WireError
from amplink.wire.rpmsg import (
    RPMSG_HDR_SIZE,
    RPMSG_NS_DESTROY,
    RPMSG_NS_MSG_SIZE,
    NsMessage,
    RpmsgHeader,
)


def test_header_layout_is_src_dst_reserved_len_flags():
    raw = RpmsgHeader(src=0x400, dst=0x35, length=40).pack()
    assert RPMSG_HDR_SIZE == 16
    assert raw == bytes.fromhex("00040000350000000000000028000000")


def test_header_roundtrip_with_payload():
    raw = RpmsgHeader(1024, 1025, 3, flags=7, reserved=9).pack() + b"abc"
    hdr = RpmsgHeader.unpack(raw)
    assert (hdr.src, hdr.dst, hdr.length, hdr.flags, hdr.reserved) == (1024, 1025, 3, 7, 9)


def test_header_truncated():
    with pytest.raises(WireError) as exc:
        RpmsgHeader.unpack(bytes(15))
    assert exc.value.rule == "truncated"


def test_header_length_beyond_buffer():
    raw = RpmsgHeader(1, 2, 10).pack() + b"short"
    with pytest.raises(WireError) as exc:
        RpmsgHeader.unpack(raw)
    assert exc.value.rule == "length"


def test_ns_message_is_40_bytes_name_addr_flags():
    raw = NsMessage("rpmsg-openamp-demo-channel", 0x400, RPMSG_NS_DESTROY).pack()
    assert len(raw) == RPMSG_NS_MSG_SIZE == 40
    assert raw[:26] == b"rpmsg-openamp-demo-channel"
    assert raw[26:32] == bytes(6)
    assert struct.unpack("<II", raw[32:]) == (0x400, 1)


def test_ns_name_compared_only_up_to_nul():
    # OpenAMP leaves stack garbage after the NUL.
    raw = b"rpmsg-tty\0" + b"\xaa" * 22 + struct.pack("<II", 1025, 0)
    msg = NsMessage.unpack(raw)
    assert msg.name == "rpmsg-tty"
    assert msg.addr == 1025
    assert not msg.destroy


def test_ns_name_forced_terminated_at_31():
    raw = b"x" * 32 + struct.pack("<II", 1, 0)
    assert NsMessage.unpack(raw).name == "x" * 31


@pytest.mark.parametrize("size", [0, 39, 41])
def test_ns_message_wrong_size_rejected(size):
    with pytest.raises(WireError) as exc:
        NsMessage.unpack(bytes(size))
    assert exc.value.rule == "length"


@pytest.mark.parametrize("name", ["", "n" * 32, "a\0b"])
def test_ns_bad_names_rejected(name):
    with pytest.raises(WireError):
        NsMessage(name, 1).pack()
