"""Virtqueue halves: normal flow, notification suppression, and hostile peers."""

import os
import struct
import traceback

import pytest

from amplink.errors import VirtqueueError
from amplink.memory import SharedRegion
from amplink.virtio import rings
from amplink.virtio.constants import VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT
from amplink.wire.rpmsg import RPMSG_HDR
from amplink.wire.vring import VringLayout
from build_helpers import can_compile
from vq_helpers import BUF, HALVES, make_pair


@pytest.fixture(params=sorted(HALVES))
def halves(request):
    """Every test here runs on each implementation of the halves."""
    return HALVES[request.param]


@pytest.fixture
def pair(halves):
    p = make_pair(halves=halves)
    yield p
    p.region.close()


def test_buffer_goes_round(pair):
    drv, dev = pair.driver, pair.device
    assert dev.get() is None
    drv.add(pair.buf_addr(3), BUF, True, token=33)
    head, off, length = dev.get()
    assert (off, length) == (pair.buf_addr(3), BUF)  # identity map
    pair.region.mem[off : off + 5] = b"hello"
    assert drv.get() is None
    dev.put(head, 5)
    assert drv.get() == (33, 5)
    assert drv.get() is None
    assert drv.num_free == 8


@pytest.mark.parametrize("writable", [False, True], ids=["read", "written"])
def test_whole_used_len_gives_read_buffers_back_whole(writable, halves):
    """A device that says ``whole_used_len`` (OpenAMP's linux-machine transport) returns
    a buffer it only read with its whole length, as OpenAMP's device does; what it
    wrote into is still returned with the bytes written."""
    p = make_pair(writable=writable, whole_used_len=True, halves=halves)
    try:
        p.driver.add(p.buf_addr(0), 48, writable, token=7)
        head, _, _ = p.device.get()
        p.device.put(head, 0 if not writable else 5)
        assert p.driver.get() == (7, 5 if writable else 48)
    finally:
        p.region.close()


def test_indices_are_free_running_past_65535(pair):
    drv, dev = pair.driver, pair.device
    for i in range(70000):
        drv.add(pair.buf_addr(i % 8), BUF, True, token=i)
        head, _, _ = dev.get()
        dev.put(head, 1)
        assert drv.get() == (i, 1)
    assert drv._avail[1] == 70000 & 0xFFFF


def test_suppression_flags(pair):
    drv, dev = pair.driver, pair.device
    assert drv.kick_needed() and dev.notify_needed()
    drv.notified()
    dev.notified()
    dev.disable_notify()
    drv.disable_cb()
    assert not drv.kick_needed() and not dev.notify_needed()
    assert dev.enable_notify() is False
    drv.add(pair.buf_addr(0), BUF, True, 0)
    dev.disable_notify()
    assert dev.enable_notify() is True  # a buffer slipped in while suppressed
    head, _, _ = dev.get()
    dev.put(head, 0)
    assert drv.enable_cb() is True


def test_ring_full(pair):
    for i in range(8):
        pair.driver.add(pair.buf_addr(i), BUF, True, i)
    with pytest.raises(VirtqueueError, match="ring full"):
        pair.driver.add(pair.buf_addr(0), BUF, True, 9)


# -- hostile device: the driver validates the used ring --------------------------------
def used_elem(pair, slot):
    return pair.region.cast(pair.layout.used + 4 + 8 * slot, 8, "I")


def used_idx(pair):
    return pair.region.cast(pair.layout.used, 4, "H")


def assert_broken(fn, match):
    with pytest.raises(VirtqueueError, match=match) as exc:
        fn()
    assert exc.value.errno == 5
    with pytest.raises(VirtqueueError, match=match):
        fn()  # stays broken
    return exc.value


def test_used_index_jump(pair):
    pair.driver.add(pair.buf_addr(0), BUF, True, 0)
    used_idx(pair)[1] = 5
    assert_broken(pair.driver.get, "only 1 buffers are outstanding")


def test_used_id_out_of_range(pair):
    pair.driver.add(pair.buf_addr(0), BUF, True, 0)
    used_elem(pair, 0)[0] = 1000
    used_idx(pair)[1] = 1
    assert_broken(pair.driver.get, "out of range")


def test_used_id_not_outstanding(pair):
    pair.driver.add(pair.buf_addr(0), BUF, True, 0)  # descriptor 0
    used_elem(pair, 0)[0] = 5
    used_idx(pair)[1] = 1
    assert_broken(pair.driver.get, "not outstanding")


def test_used_double_return(pair):
    drv, dev = pair.driver, pair.device
    drv.add(pair.buf_addr(0), BUF, True, 0)
    drv.add(pair.buf_addr(1), BUF, True, 1)
    head, _, _ = dev.get()
    dev.put(head, 1)
    assert drv.get() == (0, 1)
    used_elem(pair, 1)[0] = head  # returns the same descriptor again
    used_idx(pair)[1] = 2
    assert_broken(drv.get, "not outstanding")


def test_used_len_larger_than_buffer(pair):
    pair.driver.add(pair.buf_addr(0), BUF, True, 0)
    used_elem(pair, 0)[1] = BUF + 1
    used_idx(pair)[1] = 1
    assert_broken(pair.driver.get, "wrote 65 bytes")


# -- hostile driver: the device validates the avail ring and descriptors ---------------
def avail(pair):
    return pair.region.cast(pair.layout.avail, 2 * (3 + 8), "H")


def desc(pair, i, addr, length, flags):
    struct.pack_into("=QIHH", pair.region.mem, 16 * i, addr, length, flags, 0)


def test_avail_index_jump(pair):
    avail(pair)[1] = 100
    assert_broken(pair.device.get, "can only have 8")


def test_avail_head_out_of_range(pair):
    avail(pair)[2] = 8
    avail(pair)[1] = 1
    assert_broken(pair.device.get, "out of range")


def test_avail_same_descriptor_twice(pair):
    desc(pair, 2, pair.buf_addr(0), BUF, 2)
    av = avail(pair)
    av[2] = 2
    av[3] = 2
    av[1] = 2
    pair.device.get()
    assert_broken(pair.device.get, "again while the device holds it")


@pytest.mark.parametrize("flags", [VRING_DESC_F_NEXT | 2, VRING_DESC_F_INDIRECT | 2])
def test_chained_and_indirect_refused(pair, flags):
    desc(pair, 0, pair.buf_addr(0), BUF, flags)
    avail(pair)[1] = 1
    assert_broken(pair.device.get, "not supported")


def test_wrong_direction_refused(pair):
    desc(pair, 0, pair.buf_addr(0), BUF, 0)  # device-readable on a device-writable queue
    avail(pair)[1] = 1
    assert_broken(pair.device.get, "device-readable but this queue carries device-writable")


@pytest.mark.parametrize(("addr", "length"), [(1 << 40, 16), (0, 1 << 31), ("end", 1)])
def test_descriptor_outside_window(pair, addr, length):
    if addr == "end":
        addr = pair.region.size
    desc(pair, 0, addr, length, 2)
    avail(pair)[1] = 1
    err = assert_broken(pair.device.get, "not inside any mapped memory")
    assert "test-dev" in str(err)


def test_descriptor_rewritten_after_get_changes_nothing(pair):
    drv, dev = pair.driver, pair.device
    drv.add(pair.buf_addr(0), 16, True, 0)
    head, off, length = dev.get()
    desc(pair, head, 1 << 40, 1 << 30, 2)  # the driver scribbles over the descriptor
    dev.put(head, 16)
    assert (off, length) == (pair.buf_addr(0), 16)
    assert drv.get() == (0, 16)


def test_device_put_checks_its_own_arguments(pair):
    pair.driver.add(pair.buf_addr(0), 16, True, 0)
    head, _, _ = pair.device.get()
    with pytest.raises(ValueError):
        pair.device.put(head, 17)
    with pytest.raises(ValueError):
        pair.device.put(head + 1, 1)


def test_a_batch_put_with_a_wrong_head_gives_nothing_back(pair):
    """put_many checks every head first: one not held, or one named twice, raises
    ValueError and leaves every buffer held and the used ring as it was."""
    drv, dev = pair.driver, pair.device
    for i in range(3):
        drv.add(pair.buf_addr(i), BUF, True, i)
    heads = [h for h, _, _ in dev.get_many()]
    for bad in ([heads[0], heads[1], 7], [heads[0], heads[1], heads[0]]):
        with pytest.raises(ValueError, match="not held"):
            dev.put_many(bad, 1)
        assert drv.get() is None  # nothing published
    dev.put_many(heads, 1)  # all three still held: they go back now
    assert drv.get_many() == [(0, 1), (1, 1), (2, 1)]


# -- batches and fused calls (the message path's) ----------------------------------------
def test_get_many_takes_what_is_there_in_ring_order_up_to_a_limit(pair):
    drv, dev = pair.driver, pair.device
    for i in range(5):
        drv.add(pair.buf_addr(i), BUF, True, token=10 + i)
    assert [h for h, _, _ in dev.get_many(2)] == [0, 1]
    taken = dev.get_many()
    assert [(off, n) for _, off, n in taken] == [(pair.buf_addr(i), BUF) for i in (2, 3, 4)]
    assert dev.get_many() == []
    kick = dev.put_many([0, 1, 2, 3, 4], 3)
    assert kick is False  # not asked
    assert used_idx(pair)[1] == 5  # one store published all five
    assert drv.get_many(3) == [(10, 3), (11, 3), (12, 3)]
    assert drv.get_many() == [(13, 3), (14, 3)]
    assert drv.get_many() == []


def test_fused_calls_answer_as_the_separate_ones(pair):
    drv, dev = pair.driver, pair.device
    assert drv.add(pair.buf_addr(0), BUF, True, 0, kick_needed=True) is True
    drv.notified()
    dev.disable_notify()
    assert drv.add(pair.buf_addr(1), BUF, True, 1, kick_needed=True) is False
    assert drv.add(pair.buf_addr(2), BUF, True, 2) is False  # not asked
    (h0, _, _), (h1, _, _), (h2, _, _) = dev.get_many()
    assert dev.put(h0, 1, notify_needed=True) is True
    dev.notified()
    drv.disable_cb()
    assert dev.put(h1, 1, notify_needed=True) is False
    assert dev.put_many((h2,), 1, notify_needed=True) is False


def test_a_kick_not_said_to_be_sent_is_owed_by_the_next_update(pair):
    """A kick that was asked for but not sent (an exception between the ring update
    and the kick) is owed: the next update asks for it whatever the peer's
    suppression says, until the caller says it sent one."""
    drv, dev = pair.driver, pair.device
    assert drv.add(pair.buf_addr(0), BUF, True, 0, kick_needed=True) is True
    dev.disable_notify()  # the device polls now: it would not ask for the next one
    assert drv.add(pair.buf_addr(1), BUF, True, 1, kick_needed=True) is True  # owed
    assert drv.kick_needed() is True
    drv.notified()
    assert drv.add(pair.buf_addr(2), BUF, True, 2, kick_needed=True) is False
    assert drv.kick_needed() is False
    heads = [h for h, _, _ in dev.get_many()]
    assert dev.put(heads[0], 1, notify_needed=True) is True
    drv.disable_cb()
    assert dev.put(heads[1], 1, notify_needed=True) is True  # owed
    assert dev.notify_needed() is True
    dev.notified()
    assert dev.put(heads[2], 1, notify_needed=True) is False
    assert dev.notify_needed() is False


def test_a_bad_used_entry_after_good_ones_breaks_on_the_next_call(pair):
    """A batch stops before an entry that cannot be right: the good ones before it are
    taken (as one get() at a time would have), the next call breaks the queue."""
    drv, dev = pair.driver, pair.device
    drv.add(pair.buf_addr(0), BUF, True, 0)
    drv.add(pair.buf_addr(1), BUF, True, 1)
    dev.get_many()
    dev.put(0, 1)
    used_elem(pair, 1)[0] = 7  # not outstanding
    used_elem(pair, 1)[1] = 1
    used_idx(pair)[1] = 2
    assert drv.get_many() == [(0, 1)]
    assert_broken(drv.get_many, "not outstanding")


def test_a_duplicate_used_entry_breaks_the_queue_even_if_the_buffer_went_back(pair):
    """The device returns one head twice in a batch: the first is taken, and the next
    call breaks the queue, even though the driver has posted that buffer again
    meanwhile (as a drain does), which makes the duplicate look outstanding again."""
    drv, dev = pair.driver, pair.device
    drv.add(pair.buf_addr(0), BUF, True, 0)
    drv.add(pair.buf_addr(1), BUF, True, 1)
    dev.get_many()
    dev.put(0, 1)
    used_elem(pair, 1)[0] = 0  # the same head again
    used_elem(pair, 1)[1] = 1
    used_idx(pair)[1] = 2
    assert drv.get_many() == [(0, 1)]
    drv.add(pair.buf_addr(0), BUF, True, 0)  # posted again: descriptor 0 is in use
    assert_broken(drv.get_many, "not outstanding")


def test_a_bad_avail_entry_after_good_ones_breaks_on_the_next_call(pair):
    dev = pair.device
    desc(pair, 0, pair.buf_addr(0), BUF, 2)
    desc(pair, 1, pair.buf_addr(1), BUF, VRING_DESC_F_NEXT | 2)
    av = avail(pair)
    av[2] = 0
    av[3] = 1
    av[1] = 2
    assert [h for h, _, _ in dev.get_many()] == [0]
    assert_broken(dev.get_many, "not supported")


def test_unknown_descriptor_flags_are_tolerated(pair):
    """Only chained, indirect and wrong-way descriptors break the queue; other bits
    (none is defined for split rings) are ignored, as before batching."""
    desc(pair, 0, pair.buf_addr(0), BUF, 2 | 0x8)
    avail(pair)[1] = 1
    assert [h for h, _, _ in pair.device.get_many()] == [0]


def hdr(src: int, dst: int, n: int) -> bytes:
    return RPMSG_HDR.pack(src, dst, 0, n, 0)


def test_send_copy_writes_the_message_and_posts_the_buffer_again(halves):
    """The driver's fused send: the buffer the device gave back first is filled with
    an rpmsg header and the payload and posted again, device-readable, with their
    length; the answer is the kick answer of a separate add."""
    pair = make_pair(writable=False, halves=halves)
    drv, dev, mem = pair.driver, pair.device, pair.region.mem
    assert drv.send_copy(mem, 1, 2, b"", pair.pool, BUF, 0) == rings.SEND_NO_BUFFER
    drv.add(pair.buf_addr(2), BUF, False, 2)
    head, _, _ = dev.get()
    dev.put(head, 0)
    dev.disable_notify()
    assert drv.send_copy(mem, 0x400, 0xFFFFFFFE, b"payload", pair.pool, BUF, 0) == 0
    got_head, off, length = dev.get()
    assert (off, length) == (pair.buf_addr(2), 23)
    assert bytes(mem[off : off + 23]) == hdr(0x400, 0xFFFFFFFE, 7) + b"payload"
    dev.put(got_head, 0)
    dev.enable_notify()
    assert drv.send_copy(mem, 5, 6, bytearray(b"xy"), pair.pool, BUF, 0) == 1
    pair.region.close()


def test_send_copy_on_the_device_side_fits_the_message_or_leaves_the_buffer(pair):
    """The device's fused send: the next buffer takes an rpmsg header and the payload
    and goes back with their length; one too small stays on the ring for a smaller
    message; none at all is said so."""
    drv, dev, mem = pair.driver, pair.device, pair.region.mem
    assert dev.send_copy(mem, 1, 2, b"x") == rings.SEND_NO_BUFFER
    drv.add(pair.buf_addr(0), 20, True, 70)
    assert dev.send_copy(mem, 1, 2, b"12345") == rings.SEND_TOO_SMALL
    assert dev.peek_len() == 20  # untaken
    drv.disable_cb()
    assert dev.send_copy(mem, 3, 4, b"1234") == 0
    assert drv.get() == (70, 20)
    assert bytes(mem[pair.buf_addr(0) : pair.buf_addr(0) + 20]) == hdr(3, 4, 4) + b"1234"


def test_both_halves_refuse_a_send_with_the_same_error_and_text():
    """Review rvx4: the pure halves took a strided view the compiled ones refused, and a
    negative address raised with another text in each.  Every refusal is now the same
    exception with the same text in both, in the same order (the payload, then the
    addresses, then the length), and a view of wider items counts its bytes."""
    cases = [
        (memoryview(bytes(12))[::2], 1, 2),
        ("text", 1, 2),
        (b"x", -1, 2),
        (b"x", 1, -5),
        (b"x", -1, "a"),
        (b"x", 1 << 32, 2),
        (bytes(0x10000), 1, 2),
        (bytes(0x10000), -1, 2),
        (memoryview(bytes(12))[::2], -1, 2),
        (memoryview(bytes(8)).cast("I"), 1, 2),
    ]
    answers = {}
    for name, halves in HALVES.items():
        got = []
        for data, src, dst in cases:
            pair = make_pair(writable=False, halves=halves)
            drv, dev, mem = pair.driver, pair.device, pair.region.mem
            drv.add(pair.buf_addr(0), BUF, False, 0)
            dev.put(dev.get()[0], 0)
            drv.add(pair.buf_addr(1), BUF, False, 1)
            for half, more in ((drv, (pair.pool, BUF, 0)), (dev, ())):
                try:
                    got.append(("sent", half.send_copy(mem, src, dst, data, *more)))
                except (TypeError, BufferError, OverflowError, ValueError) as exc:
                    got.append((type(exc).__name__, str(exc)))
            got.append(RPMSG_HDR.unpack_from(mem, pair.buf_addr(1))[3])  # the length said
            pair.region.close()
        answers[name] = got
    first = answers["python"]
    strided = "a payload is one contiguous run of bytes, not a strided view: copy it"
    assert first[0] == first[1] == ("BufferError", strided)
    assert first[3] == first[4] == ("TypeError", "a payload is a bytes-like object, not 'str'")
    assert first[6] == first[9] == first[10] == ("OverflowError", "an rpmsg address is 32 bits")
    assert first[24] == ("BufferError", first[0][1])  # the payload before the address
    assert first[-3:] == [("sent", 1), ("sent", 1), 8]  # two 4-byte items: 8 bytes
    assert all(got == first for got in answers.values())


def test_send_copy_refuses_what_an_rpmsg_header_cannot_say_before_taking_a_buffer(halves):
    """An address past 32 bits or a payload past the header's 16-bit length is refused
    before any buffer is taken, on both sides."""
    pair = make_pair(writable=False, halves=halves)
    drv, dev, mem = pair.driver, pair.device, pair.region.mem
    drv.add(pair.buf_addr(0), BUF, False, 0)
    head, _, _ = dev.get()
    dev.put(head, 0)
    with pytest.raises(OverflowError):
        drv.send_copy(mem, 1 << 32, 2, b"x", pair.pool, BUF, 0)
    with pytest.raises(OverflowError):
        drv.send_copy(mem, 1, -1, b"x", pair.pool, BUF, 0)
    with pytest.raises(ValueError, match="longer than an rpmsg header"):
        drv.send_copy(mem, 1, 2, bytes(0x10000), pair.pool, BUF, 0)
    assert drv.has_used()  # still there to take
    drv.add(pair.buf_addr(1), BUF, False, 1)
    with pytest.raises(OverflowError):
        dev.send_copy(mem, 1, 1 << 32, b"x")
    with pytest.raises(ValueError, match="longer than an rpmsg header"):
        dev.send_copy(mem, 1, 2, bytes(0x10000))
    assert dev.peek_len() == BUF  # untaken
    pair.region.close()


def test_send_copy_checks_the_ring_as_a_get_does(pair):
    """A fused send takes a buffer with every check a get makes: a broken ring says
    so, and stays broken, on both sides."""
    drv, dev, mem = pair.driver, pair.device, pair.region.mem
    used_idx(pair)[1] = 3  # nothing outstanding
    assert_broken(lambda: drv.send_copy(mem, 1, 2, b"x", pair.pool, BUF, 0), "only 0")
    avail(pair)[1] = 100
    assert_broken(lambda: dev.send_copy(mem, 1, 2, b"x"), "can only have 8")


def test_the_compiled_halves_run_when_they_were_built():
    """amplink runs the compiled halves when the build made them, unless the
    environment asks for the pure-Python ones; where a C compiler and the Python
    headers are (a fresh Debian machine has both), `make` must have built them."""
    pure = os.environ.get(rings.PURE_PYTHON_ENV, "") not in ("", "0")
    if "compiled" not in HALVES:
        assert not can_compile(), "a compiler is here, but the install did not build _vring"
        pytest.skip("no C compiler or Python headers: the pure-Python halves run")
    assert rings.COMPILED is not pure
    expected = HALVES["python" if pure else "compiled"]
    assert rings.VirtqueueDriver is expected.VirtqueueDriver
    assert rings.VirtqueueDevice is expected.VirtqueueDevice


def test_a_queue_whose_memory_is_unmapped_refuses_every_call(halves):
    """Once the region is closed (a stop unmaps it while another thread still holds
    the queue), every call that would touch the ring raises ValueError, never reads
    or writes the unmapped memory."""
    pair = make_pair(halves=halves)
    drv, dev = pair.driver, pair.device
    drv.add(pair.buf_addr(0), BUF, True, 0)
    mem = bytearray(4096)
    pair.region.close()
    for call in (
        lambda: drv.add(pair.buf_addr(1), BUF, True, 1),
        drv.get,
        drv.get_many,
        drv.has_used,
        drv.kick_needed,
        drv.enable_cb,
        lambda: drv.send_copy(mem, 1, 2, b"x", 0, BUF, 0),
        dev.get,
        dev.get_many,
        dev.has_avail,
        dev.enable_notify,
        dev.peek_len,
        lambda: dev.send_copy(mem, 1, 2, b"x"),
    ):
        with pytest.raises(ValueError, match="released"):
            call()


def test_a_broken_queue_raises_with_a_fresh_traceback_each_time(pair):
    """Raising the stored error again must not pile up tracebacks (memory without
    bound for a caller that polls a broken queue)."""
    used_idx(pair)[1] = 3  # nothing outstanding: broken
    depths = set()
    for _ in range(200):
        with pytest.raises(VirtqueueError) as exc:
            pair.driver.get()
        depths.add(len(traceback.extract_tb(exc.value.__traceback__)))
    assert max(depths) <= 3, depths


def test_an_exception_inside_a_batch_takes_nothing(halves):
    """A translation that raises something else than AddressError half-way through a
    batch (or Ctrl-C there) leaves the queue as before the batch: the next call takes
    every buffer, and nobody blames the peer."""
    calls = []

    def translate(addr, length):
        calls.append(addr)
        if len(calls) == 2:
            raise RuntimeError("translate failed")
        return addr

    layout = VringLayout(8, 16)
    region = SharedRegion.create(4096)
    try:
        drv = halves.VirtqueueDriver(region, layout.at(0), "drv")
        drv.reset_ring()
        dev = halves.VirtqueueDevice(region, layout.at(0), "dev", translate, writable=True)
        for i in range(3):
            drv.add(2048 + 64 * i, 64, True, i)
        with pytest.raises(RuntimeError):
            dev.get_many()
        assert [h for h, _, _ in dev.get_many()] == [0, 1, 2]
        assert dev.broken is None
    finally:
        region.close()


def test_bad_caller_arguments_are_refused_before_anything_moves(pair):
    """An add whose address, length or token does not fit the ring's fields raises
    ValueError and uses no descriptor; a batch put given a head that is no index
    raises ValueError without running the object's code."""
    drv = pair.driver
    for args in ((-1, 8, 0), (1 << 64, 8, 0), (0, 1 << 32, 0), (0, -1, 0), (0, 8, -1)):
        addr, length, token = args
        with pytest.raises(ValueError, match="out of range"):
            drv.add(addr, length, True, token)
    assert drv.num_free == 8
    drv.add(pair.buf_addr(0), BUF, True, 0)
    head, _, _ = pair.device.get()
    heads = [head]

    class Evil:
        def __index__(self):
            heads.clear()
            return 0

    heads.append(Evil())
    with pytest.raises((ValueError, TypeError)):
        pair.device.put_many(heads, 1)


@pytest.mark.skipif("compiled" not in HALVES, reason="the compiled halves were not built")
def test_a_compiled_queue_never_initialised_or_initialised_twice_refuses():
    """Made by __new__ alone, every call raises ValueError (no arrays to read); a
    second __init__ raises TypeError and leaves the queue as it was."""
    compiled = HALVES["compiled"]
    for cls in (compiled.VirtqueueDriver, compiled.VirtqueueDevice):
        bare = cls.__new__(cls)
        assert bare.broken is None
        for call in (
            "get",
            "get_many",
            "peek_len" if cls is compiled.VirtqueueDevice else "has_used",
        ):
            with pytest.raises(ValueError, match="not initialised"):
                getattr(bare, call)()
    pair = make_pair(halves=compiled)
    try:
        with pytest.raises(TypeError, match="initialised once"):
            pair.driver.__init__(pair.region, pair.layout.at(0), "again")
        pair.driver.add(pair.buf_addr(0), BUF, True, 5)
        assert pair.driver.num_free == 7
    finally:
        pair.region.close()
