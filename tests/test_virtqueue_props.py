"""Property test: random interleavings of both halves; every buffer comes back once."""

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vq_helpers import BUF, HALVES, make_pair


class VirtqueueMachine(RuleBasedStateMachine):
    """Both halves of one implementation (``halves``: a key of ``HALVES``)."""

    halves = "python"

    def __init__(self) -> None:
        super().__init__()
        self.pair = make_pair(num=8, halves=HALVES[self.halves])
        self.next_token = 0
        self.posted: dict[int, int] = {}  # token -> buffer length
        self.held: list[tuple[int, int]] = []  # (head, length) held by the device
        self.returned: list[int] = []
        self.free_bufs = list(range(8))
        self.buf_of: dict[int, int] = {}
        self.in_avail = 0  # added by the driver, not yet taken by the device

    def teardown(self) -> None:
        try:
            self.drain_all()
        finally:
            self.pair.region.close()

    @precondition(lambda self: self.free_bufs)
    @rule(length=st.integers(0, BUF))
    def driver_add(self, length):
        buf = self.free_bufs.pop()
        token = self.next_token
        self.next_token += 1
        self.pair.driver.add(self.pair.buf_addr(buf), length, True, token)
        self.posted[token] = length
        self.buf_of[token] = buf
        self.in_avail += 1

    @rule()
    def device_get(self):
        got = self.pair.device.get()
        if got is None:
            assert self.in_avail == 0, "device saw no buffer although some were available"
            return
        head, _off, length = got
        assert self.in_avail > 0, "device got a buffer that was never made available"
        self.in_avail -= 1
        self.held.append((head, length))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def device_put(self, data):
        i = data.draw(st.integers(0, len(self.held) - 1))
        head, length = self.held.pop(i)
        written = data.draw(st.integers(0, length))
        self.pair.device.put(head, written)

    @rule()
    def driver_get(self):
        got = self.pair.driver.get()
        if got is None:
            return
        token, written = got
        assert token in self.posted, f"token {token} returned twice or never posted"
        assert written <= self.posted.pop(token)
        self.returned.append(token)
        self.free_bufs.append(self.buf_of.pop(token))

    @invariant()
    def conservation(self):
        assert self.pair.driver.num_free == 8 - len(self.posted)
        assert len(set(self.returned)) == len(self.returned)

    def drain_all(self):
        while (got := self.pair.device.get()) is not None:
            self.held.append((got[0], got[2]))
            self.in_avail -= 1
        assert self.in_avail == 0
        for head, _ in self.held:
            self.pair.device.put(head, 0)
        self.held.clear()
        while (got := self.pair.driver.get()) is not None:
            self.posted.pop(got[0])
            self.returned.append(got[0])
        assert not self.posted, "buffers lost"
        assert sorted(self.returned) == list(range(self.next_token))


class CompiledMachine(VirtqueueMachine):
    halves = "compiled"


class TestVirtqueue(VirtqueueMachine.TestCase):
    settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


@pytest.mark.skipif("compiled" not in HALVES, reason="the compiled halves were not built")
class TestCompiledVirtqueue(CompiledMachine.TestCase):
    settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


@pytest.mark.parametrize("halves", sorted(HALVES))
def test_everything_returns_after_random_prefix(halves):
    """Drive a fixed-seed random run, then drain: every buffer exactly once."""
    rnd = random.Random(1234)
    machine = CompiledMachine if halves == "compiled" else VirtqueueMachine
    m = machine()
    try:
        for _ in range(5000):
            op = rnd.randrange(4)
            if op == 0 and m.free_bufs:
                m.driver_add(rnd.randint(0, BUF))
            elif op == 1:
                m.device_get()
            elif op == 2 and m.held:
                head, length = m.held.pop(rnd.randrange(len(m.held)))
                m.pair.device.put(head, rnd.randint(0, length))
            else:
                m.driver_get()
    finally:
        m.teardown()
