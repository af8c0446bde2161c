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


class Recipient:
    """An endpoint for ``recv_copies``: records what it is given in the side's log."""

    def __init__(self, log: list, dst: int, zero_copy: bool, callback: bool) -> None:
        self.log, self.dst, self.zero_copy = log, dst, zero_copy
        self.callback = print if callback else None

    def deliver(self, data: bytes, src: int) -> None:
        self.log.append(("deliver", self.dst, data, src))
        if src % 3 == 1:  # (now and then a receiver raises: the batch ends there)
            raise RuntimeError("a receiver failed")


def _recv_copies(rnd: random.Random, device: bool):
    """A receive step with random endpoints (a few addresses, some zero-copy or with a
    callback), a dispatch that holds or not, as a taker or not; the answer is the count
    and everything that was called, in order."""
    spec = {dst: (rnd.random() < 0.3, rnd.random() < 0.3) for dst in range(4) if rnd.random() < 0.7}
    holds = rnd.random() < 0.3
    taker = rnd.random() < 0.3

    def run(p):
        log: list = []
        endpoints = {dst: Recipient(log, dst, *flags) for dst, flags in spec.items()}

        def dispatch(off: int, length: int, token: int) -> bool:
            log.append(("dispatch", off, length, token))
            return holds

        args = (endpoints, dispatch, lambda: log.append("kick"))
        more = (lambda: log.append("more")) if taker else None
        try:
            if device:
                n = p.device.recv_copies(p.region.map, *args, more)
            else:
                n = p.driver.recv_copies(p.region.map, p.pool, p.pool, BUF, *args, more)
        except RuntimeError:
            n = -1
        return n, log, p.driver._owed, p.device._owed

    return run


def _addr(rnd: random.Random) -> int:
    """An rpmsg address: mostly one of the few the receive steps have endpoints for."""
    return rnd.randrange(4) if rnd.random() < 0.7 else rnd.randrange(1 << 32)


def _step(rnd: random.Random, tokens: list[int], writable: bool):
    """A random operation as (name, function of a Pair), the same for both sides."""
    op = rnd.randrange(18)
    if op == 16:
        return _recv_copies(rnd, device=False)
    if op == 17:
        return _recv_copies(rnd, device=True)
    if op == 0:
        slot = rnd.randrange(NUM)
        length = rnd.randrange(BUF + 1)
        token = tokens[0] if rnd.random() < 0.5 else slot  # (a receive step's: in the pool)
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
        src, dst = rnd.randrange(1 << 32), _addr(rnd)
        return lambda p: p.device.send_copy(p.region.mem, src, dst, data)
    if op == 12:
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(BUF - 16)))
        src, dst = rnd.randrange(1 << 32), _addr(rnd)
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


def _run(seed: int, writable: bool) -> tuple[dict[str, int], dict[str, int]]:
    """Both implementations step by step (see the test below): what the steps answered,
    and what the receive steps called."""
    rnd = random.Random(seed)
    sides = [Side(name, writable) for name in ("python", "compiled")]
    tokens = [0]
    kinds: dict[str, int] = {}
    calls: dict[str, int] = {}
    try:
        for step in range(3000):
            op = _step(rnd, tokens, writable)
            outcomes = [_outcome(lambda s=s, op=op: op(s.pair)) for s in sides]
            assert outcomes[0] == outcomes[1], f"seed {seed} step {step}"
            assert sides[0].ring() == sides[1].ring(), f"seed {seed} step {step}: memory"
            kind, answer = outcomes[0]
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "ok" and isinstance(answer, tuple) and len(answer) == 4:  # a receive step
                if answer[0] == -1:
                    kinds["raised"] = kinds.get("raised", 0) + 1
                for call in answer[1]:
                    what = call if isinstance(call, str) else call[0]
                    calls[what] = calls.get(what, 0) + 1
            broken = [(s.pair.driver.broken is None, s.pair.device.broken is None) for s in sides]
            assert broken[0] == broken[1], f"seed {seed} step {step}: which half broke"
            if broken[0] != (True, True):  # both broke alike: start again
                for s in sides:
                    s.pair.region.close()
                sides = [Side(name, writable) for name in ("python", "compiled")]
    finally:
        for s in sides:
            s.pair.region.close()
    return kinds, calls


@pytest.mark.parametrize("writable", [True, False], ids=["written", "read"])
@pytest.mark.parametrize("seed", range(6))
def test_both_implementations_agree_step_by_step_under_scribbling(seed, writable):
    kinds, calls = _run(seed, writable)
    # the run went well past the checks, and into them
    assert kinds["ok"] > 1500 and kinds.get("VirtqueueError", 0) > 20, kinds
    # the receive steps delivered, dispatched and kicked
    assert all(calls.get(what, 0) > 0 for what in ("deliver", "dispatch", "kick")), calls


def test_receive_steps_agree_when_a_receiver_raises_or_a_taker_stops():
    """The rarer ends of a receive step, over several runs: a ``deliver`` that raises,
    and a taker that stops before an endpoint with a callback."""
    kinds: dict[str, int] = {}
    calls: dict[str, int] = {}
    for seed in range(100, 106):
        k, c = _run(seed, seed % 2 == 0)
        for total, part in ((kinds, k), (calls, c)):
            for key, n in part.items():
                total[key] = total.get(key, 0) + n
    assert kinds.get("raised", 0) > 0 and calls.get("more", 0) > 0, (kinds, calls)
