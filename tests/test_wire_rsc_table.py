"""Resource table parse/build: the reference bytes, round trips, and every rule."""

import logging
import struct

import pytest

from amplink.errors import ResourceTableError
from amplink.virtio.constants import VIRTIO_ID_RPMSG
from amplink.wire import rsc_table as rt

OPENAMP_HEX = """
01000000 01000000 00000000 00000000 14000000 03000000 07000000 00000000
01000000 00000000 00000000 00020000 00400000 00100000 00010000 01000000
00000000 00800000 00100000 00010000 02000000 00000000
"""
OPENAMP = bytes.fromhex("".join(OPENAMP_HEX.split()))


def openamp_table() -> rt.ResourceTable:
    return rt.ResourceTable(
        [
            rt.Vdev(
                VIRTIO_ID_RPMSG,
                notifyid=0,
                dfeatures=1,
                vrings=[rt.Vring(0x4000, 0x1000, 256, 1), rt.Vring(0x8000, 0x1000, 256, 2)],
            )
        ]
    )


def test_openamp_table_parses_to_reference_values():
    assert len(OPENAMP) == 88
    table = rt.parse(OPENAMP)
    (vdev,) = table.entries
    assert isinstance(vdev, rt.Vdev)
    assert vdev.offset == 0x14
    assert (vdev.id, vdev.notifyid, vdev.dfeatures, vdev.gfeatures) == (7, 0, 1, 0)
    assert (vdev.status, vdev.config) == (0, b"")
    assert [(v.da, v.align, v.num, v.notifyid) for v in vdev.vrings] == [
        (0x4000, 0x1000, 256, 1),
        (0x8000, 0x1000, 256, 2),
    ]


def test_openamp_table_built_byte_exact():
    assert openamp_table().build() == OPENAMP


def full_table() -> rt.ResourceTable:
    return rt.ResourceTable(
        [
            rt.Carveout(0x1000_0000, 0x9000_0000, 0x10_0000, 0, "text"),
            rt.Devmem(0x2000_0000, 0x4000_0000, 0x1000, 3, "uart"),
            rt.Trace(0x1010_0000, 0x1000, "trace0"),
            rt.Vdev(
                VIRTIO_ID_RPMSG,
                dfeatures=1,
                vrings=[rt.Vring(rt.FW_RSC_ADDR_ANY, 16, 64), rt.Vring(rt.FW_RSC_ADDR_ANY, 16, 64)],
                config=b"\x01\x02\x03\x04",
            ),
            rt.OpaqueEntry(128, b"vendor-bytes"),
            rt.OpaqueEntry(512, b""),
        ]
    )


def test_build_then_parse_is_identical():
    table = full_table()
    raw = table.build()
    again = rt.parse(raw)
    assert again == table
    assert again.build() == raw
    assert [type(e) for e in again.carveouts()] == [rt.Carveout]  # a devmem is not one


def test_parsed_offsets_point_at_type_words():
    raw = full_table().build()
    for entry in rt.parse(raw).entries:
        rtype = struct.unpack_from("<I", raw, entry.offset)[0]
        expected = entry.type if isinstance(entry, rt.OpaqueEntry) else entry.TYPE
        assert rtype == expected


def test_vendor_entries_kept_opaque():
    entries = rt.parse(full_table().build()).entries
    vendor = [e for e in entries if isinstance(e, rt.OpaqueEntry)]
    assert [(e.type, e.data, e.vendor) for e in vendor] == [
        (128, b"vendor-bytes", True),
        (512, b"", True),
    ]


def test_unknown_type_warned_and_kept(caplog):
    raw = rt.ResourceTable([rt.OpaqueEntry(77, b"xyz")]).build()
    with caplog.at_level(logging.WARNING):
        (entry,) = rt.parse(raw).entries
    assert isinstance(entry, rt.OpaqueEntry) and not entry.vendor
    assert "unsupported type 77" in caplog.text


def patch(raw: bytes, off: int, value: int, fmt: str = "<I") -> bytes:
    out = bytearray(raw)
    struct.pack_into(fmt, out, off, value)
    return bytes(out)


def rule_of(raw: bytes) -> str:
    with pytest.raises(ResourceTableError) as exc:
        rt.parse(raw)
    assert exc.value.errno == 22  # EINVAL, as the kernel returns
    assert "resource table" in str(exc.value)
    return exc.value.rule


VDEV = 0x14  # offset of the vdev entry's type word in the OpenAMP table


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (OPENAMP[:15], "truncated"),
        (patch(OPENAMP, 0, 2), "version"),
        (patch(OPENAMP, 8, 1), "reserved"),
        (patch(OPENAMP, 12, 1), "reserved"),
        (patch(OPENAMP, 4, 100), "truncated"),
        (patch(OPENAMP, 16, 0x8), "offset"),
        (patch(OPENAMP, 16, 86), "offset"),
        (patch(OPENAMP, 16, 0x1000), "offset"),
        (OPENAMP[:60], "truncated"),
        (patch(OPENAMP, VDEV + 4 + 21, 3, "<B"), "vrings"),
        (patch(OPENAMP, VDEV + 4 + 22, 1, "<B"), "reserved"),
        (patch(OPENAMP, VDEV + 4 + 24 + 8, 0), "vring-num"),
        (patch(OPENAMP, VDEV + 4 + 24 + 8, 100), "vring-num"),
        (patch(OPENAMP, VDEV + 4 + 24 + 4, 0), "vring-align"),
        (patch(OPENAMP, VDEV + 4 + 16, 8), "truncated"),
    ],
)
def test_rule_violations_are_specific(raw, rule):
    assert rule_of(raw) == rule


@pytest.mark.parametrize(
    ("entry", "reserved_at"),
    [
        (rt.Carveout(0, 0, 0x1000, 0, "c"), 16),
        (rt.Devmem(0, 0, 0x1000, 0, "d"), 16),
        (rt.Trace(0, 0x100, "t"), 8),
    ],
)
def test_reserved_words_in_memory_entries(entry, reserved_at):
    raw = rt.ResourceTable([entry]).build()
    assert rule_of(patch(raw, 20 + 4 + reserved_at, 1)) == "reserved"


@pytest.mark.parametrize("entry", [rt.Carveout(0, 0, 1, 0, "c"), rt.Trace(0, 1, "t")])
def test_truncated_memory_entries(entry):
    raw = rt.ResourceTable([entry]).build()
    assert rule_of(raw[:-1]) == "truncated"


def test_names_decoded_up_to_nul():
    raw = bytearray(rt.ResourceTable([rt.Trace(0x100, 0x40, "log")]).build())
    raw[20 + 4 + 12 + 4] = 0
    raw[20 + 4 + 12 + 5 : 20 + 4 + 12 + 32] = b"\xee" * 27
    (trace,) = rt.parse(bytes(raw)).entries
    assert trace.name == "log"


def test_building_more_than_two_vrings_refused():
    vdev = rt.Vdev(7, vrings=[rt.Vring(0, 16, 4)] * 3)
    with pytest.raises(ResourceTableError) as exc:
        rt.ResourceTable([vdev]).build()
    assert exc.value.rule == "vrings"


def test_huge_entry_count_does_not_allocate():
    assert rule_of(patch(OPENAMP, 4, 0xFFFFFFFF)) == "truncated"
