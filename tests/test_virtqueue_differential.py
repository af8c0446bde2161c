"""The compiled halves against the pure-Python ones: the same calls on the same ring
memory, with a hostile peer scribbling over it in between, give the same answers, the
same errors and the same bytes in shared memory, step by step."""

import random

import pytest

from amplink.errors import VirtqueueError
from vq_helpers import BUF, HALVES, make_pair

pytestmark = pytest.mark.skipif(
    "compiled" not in HALVES, reason="the compiled halves were not built"
)

NUM = 8


def _outcome(call):
    try:
        return ("ok", call())
    except VirtqueueError as exc:
        return ("VirtqueueError", str(exc))
    except ValueError as exc:
        return ("ValueError", str(exc))


class Side:
    """One implementation's pair of halves."""

    def __init__(self, halves: str, writable: bool) -> None:
        self.pair = make_pair(num=NUM, writable=writable, halves=HALVES[halves])

    def ring(self) -> bytes:
        return bytes(self.pair.region.mem[: self.pair.pool + NUM * BUF])


def _step(rnd: random.Random, tokens: list[int], writable: bool):
    """A random operation as (name, function of a Pair), the same for both sides."""
    op = rnd.randrange(16)
    if op == 0:
        slot = rnd.randrange(NUM)
        length = rnd.randrange(BUF + 1)
        token = tokens[0]
        tokens[0] += 1
        return lambda p: p.driver.add(p.buf_addr(slot), length, writable, token)
    if op == 1:
        return lambda p: p.driver.get()
    if op == 2:
        limit = rnd.randrange(NUM + 2)
        return lambda p: p.driver.get_many(limit)
    if op == 3:
        return lambda p: (p.driver.kick_needed(), p.driver.notified())
    if op == 4:
        on = rnd.random() < 0.5
        return lambda p: p.driver.enable_cb() if on else p.driver.disable_cb()
    if op == 5:
        return lambda p: p.device.get()
    if op == 6:
        limit = rnd.randrange(NUM + 2)
        return lambda p: p.device.get_many(limit)
    if op == 7:
        heads = [rnd.randrange(NUM + 1) for _ in range(rnd.randrange(3))]
        written = rnd.randrange(BUF + 2)
        return lambda p: p.device.put_many(heads, written, notify_needed=True)
    if op == 8:
        return lambda p: (p.device.notify_needed(), p.device.notified())
    if op == 9:
        on = rnd.random() < 0.5
        return lambda p: p.device.enable_notify() if on else p.device.disable_notify()
    if op == 10:
        return lambda p: p.device.peek_len()
    if op == 11:
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(BUF)))
        src, dst = rnd.randrange(1 << 32), rnd.randrange(1 << 32)
        return lambda p: p.device.send_copy(p.region.mem, src, dst, data)
    if op == 12:
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(BUF - 16)))
        src, dst = rnd.randrange(1 << 32), rnd.randrange(1 << 32)
        return lambda p: p.driver.send_copy(p.region.mem, src, dst, data, p.pool, 0, 0)
    if rnd.random() < 0.7:  # (the peer scribbles now and then; else nothing happens)
        return lambda p: None
    # the hostile peer: a random word anywhere in the ring (indices, flags, entries,
    # descriptors), mostly small values so that the halves get past the first checks
    width = rnd.choice((2, 4, 8))
    value = rnd.choice((rnd.randrange(NUM + 2), rnd.randrange(1 << (8 * width))))
    where = rnd.randrange(0, 4096 // width) * width

    def scribble(p):
        if where + width <= p.layout.size:
            p.region.mem[where : where + width] = value.to_bytes(width, "little")

    return scribble


@pytest.mark.parametrize("writable", [True, False], ids=["written", "read"])
@pytest.mark.parametrize("seed", range(6))
def test_both_implementations_agree_step_by_step_under_scribbling(seed, writable):
    rnd = random.Random(seed)
    sides = [Side(name, writable) for name in ("python", "compiled")]
    tokens = [0]
    kinds: dict[str, int] = {}
    try:
        for step in range(3000):
            op = _step(rnd, tokens, writable)
            outcomes = [_outcome(lambda s=s, op=op: op(s.pair)) for s in sides]
            assert outcomes[0] == outcomes[1], f"seed {seed} step {step}"
            assert sides[0].ring() == sides[1].ring(), f"seed {seed} step {step}: memory"
            kinds[outcomes[0][0]] = kinds.get(outcomes[0][0], 0) + 1
            broken = [(s.pair.driver.broken is None, s.pair.device.broken is None) for s in sides]
            assert broken[0] == broken[1], f"seed {seed} step {step}: which half broke"
            if broken[0] != (True, True):  # both broke alike: start again
                for s in sides:
                    s.pair.region.close()
                sides = [Side(name, writable) for name in ("python", "compiled")]
    finally:
        for s in sides:
            s.pair.region.close()
    # the run went well past the checks, and into them
    assert kinds["ok"] > 1500 and kinds.get("VirtqueueError", 0) > 20, kinds
