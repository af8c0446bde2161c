"""Split-virtqueue layout: the reference size and the offsets for any num and align."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amplink.errors import WireError
from amplink.wire.vring import VringLayout


def test_reference_size_256_4096():
    lay = VringLayout(256, 4096)
    assert lay.size == 10246
    assert hex(lay.size) == "0x2806"
    assert (lay.desc, lay.avail, lay.used) == (0, 0x1000, 0x2000)
    assert lay.used_event == 0x1000 + 4 + 512
    assert lay.avail_event == 0x2000 + 4 + 8 * 256


def test_small_ring_align_16():
    lay = VringLayout(4, 16)
    assert lay.avail == 64
    assert lay.used == 80  # 64 + 2*(3+4) = 78, up to 80
    assert lay.size == 80 + 6 + 32


@given(st.integers(0, 15), st.integers(1, 8192))
def test_layout_formula(exp, align):
    num = 1 << exp
    lay = VringLayout(num, align)
    avail_end = 16 * num + 2 * (3 + num)
    assert lay.used % align == 0
    assert avail_end <= lay.used < avail_end + align
    assert lay.size == lay.used + 6 + 8 * num


@pytest.mark.parametrize(("num", "align"), [(0, 16), (3, 16), (65536, 16), (4, 0)])
def test_bad_parameters(num, align):
    with pytest.raises(WireError):
        VringLayout(num, align)
