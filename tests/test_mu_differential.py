"""The compiled MU accessors (``_mu.c``) against their pure-Python twin
(:class:`amplink.hw.imx_mu.ImxMuSide`): the same registers, state words, answers and
pulses, and the same interrupt primaries (``event_handler``: what they answer and
whether they call the driver's handler), step by step, with a peer that scribbles the
shared words between the steps."""

from __future__ import annotations

import importlib
import os
import random

import pytest

from amplink.hw import imx_mu as mu
from amplink.hw.imx_mu import (
    GIP_ALL,
    GIR_ALL,
    MU_CR,
    MU_RR0,
    MU_SR,
    MU_TR0,
    PURE_PYTHON_ENV,
    SIDE_WORDS,
    ImxMu,
    ImxMuSide,
)
from amplink.irq.line import IrqWire, new_line_fd
from amplink.memory.region import SharedRegion
from build_helpers import can_compile

COMPILED = mu.compiled_side()
needs_compiled = pytest.mark.skipif(COMPILED is None, reason="_mu was not built")


class _Unit:
    """One unit over its own shared words, both wires eventfds whose count is the
    number of pulses."""

    def __init__(self, side_type: type[ImxMuSide], tag: str) -> None:
        self.region = SharedRegion.create(mu.SIZE, f"mu-diff-{tag}-{os.getpid()}")
        self.words = self.region.cast(0, mu.SIZE, "I")
        self.fds = (new_line_fd(), new_line_fd())
        self.unit = ImxMu(
            "mu",
            self.words,
            wire_a=IrqWire(self.fds[0]),
            wire_b=IrqWire(self.fds[1]),
            side_type=side_type,
        )

        self.calls: list[tuple[int, object]] = []
        self.ret = 0
        # every event's interrupt primary (ImxMuSide.event_handler), on both sides
        self.primaries = {
            (which, bit): self.unit.side(which).event_handler(bit, self._handler)
            for which in "ab"
            for bit in _EVENT_BITS
        }

    def _handler(self, irq: int, dev_id: object) -> int:
        self.calls.append((irq, dev_id))
        return self.ret

    def pulses(self) -> tuple[int, int]:
        got = []
        for fd in self.fds:
            try:
                got.append(os.eventfd_read(fd))
            except BlockingIOError:
                got.append(0)
        return got[0], got[1]

    def close(self) -> None:
        self.words.release()
        self.region.close()
        for fd in self.fds:
            os.close(fd)


_EVENT_BITS = tuple(bit for n in range(4) for bit in (mu.GIP(n), mu.RF(n), mu.TE(n)))
_KINDS = (
    "primary",
    "write_tr",
    "read_rr",
    "cr_update",
    "cr_update",
    "irq_active",
    "readl",
    "writel",
    "scribble",
)


def _step(rng: random.Random) -> tuple[str, str, tuple[int, ...]]:
    side = rng.choice("ab")
    kind = rng.choice(_KINDS)
    if kind == "write_tr":
        return side, kind, (rng.randrange(4), rng.choice((0, 1, 0xFFFF_FFFF, rng.getrandbits(40))))
    if kind == "read_rr":
        return side, kind, (rng.randrange(4),)
    if kind == "cr_update":
        bits = (mu.CR_ENABLES | GIR_ALL, mu.CR_ENABLES, GIR_ALL, 0xFFFF_FFFF)
        return side, kind, (rng.getrandbits(32) & rng.choice(bits), rng.getrandbits(32))
    if kind == "readl":
        return side, kind, (rng.choice((MU_SR, MU_CR, MU_RR0 + 4 * rng.randrange(4), MU_TR0)),)
    if kind == "writel":
        offset = rng.choice((MU_SR, MU_CR, MU_TR0 + 4 * rng.randrange(4)))
        return side, kind, (offset, rng.getrandbits(32) & rng.choice((GIP_ALL, 0xFFFF_FFFF)))
    if kind == "primary":  # an event's interrupt primary, and what its handler returns
        return side, kind, (rng.choice(_EVENT_BITS), rng.choice((0, 1, 2, 7)))
    if kind == "scribble":  # the peer writes any word, its own or ours
        return side, kind, (rng.randrange(2 * SIDE_WORDS), rng.choice((0, 1, rng.getrandbits(32))))
    return side, kind, ()


def _apply(u: _Unit, side: str, kind: str, args: tuple[int, ...]) -> object:
    s = u.unit.side("a" if side == "a" else "b")
    if kind == "scribble":
        u.words[args[0]] = args[1]
        return None
    if kind == "primary":
        u.ret = args[1]
        got = u.primaries[(side, args[0])](32, ("dev", args[0]))
        calls, u.calls = u.calls, []
        return got, calls
    if kind == "cr_update":
        if args[1] & 1:  # both calling conventions
            return s.cr_update(set_bits=args[0], clear_bits=args[1])
        return s.cr_update(args[0], args[1])
    return getattr(s, kind)(*args)


@needs_compiled
@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_accessors_agree_with_the_pure_ones_step_by_step(seed: int) -> None:
    """3,000 random register accesses from both sides, with the peer scribbling any
    state word between them: after every step the words, the answer and the pulses
    on both wires are the pure twin's."""
    assert COMPILED is not None
    rng = random.Random(seed)
    pure, comp = _Unit(ImxMuSide, f"p{seed}"), _Unit(COMPILED, f"c{seed}")
    try:
        assert type(comp.unit.a) is COMPILED and type(pure.unit.a) is ImxMuSide
        for i in range(3000):
            side, kind, args = _step(rng)
            got = [_apply(u, side, kind, args) for u in (pure, comp)]
            assert got[0] == got[1], (i, side, kind, args)
            assert list(pure.words) == list(comp.words), (i, side, kind, args)
            assert pure.pulses() == comp.pulses(), (i, side, kind, args)
            for which in "ab":
                assert pure.unit.side(which).irq_active() == comp.unit.side(which).irq_active()
    finally:
        pure.close()
        comp.close()


@needs_compiled
def test_a_released_or_short_state_buffer_raises_instead_of_reaching_memory() -> None:
    """The buffer is taken again at every call: a released view is a ValueError (as
    the pure code's indexing), and a side whose words lie outside the buffer (a
    misplaced offset) is refused before any word is read."""
    assert COMPILED is not None
    u = _Unit(COMPILED, "closed")
    a = u.unit.a
    try:
        a.write_tr(1, 5)
        assert u.unit.b.read_rr(1) == 5
        a._me = 2 * SIDE_WORDS  # past the end: nothing may be read or written
        for call in (a.irq_active, lambda: a.read_rr(0), lambda: a.write_tr(0, 1), a.cr_update):
            with pytest.raises(ValueError, match="outside"):
                call()
        a._me = 0
        with pytest.raises(ValueError, match="does not exist"):
            a.read_rr(4)
        with pytest.raises(ValueError, match="does not exist"):
            a.write_tr(-1, 0)
        with pytest.raises(TypeError):
            a.write_tr(0, "x")
    finally:
        u.close()
    for call in (a.irq_active, lambda: a.read_rr(0), lambda: a.write_tr(0, 1), a.cr_update):
        with pytest.raises(ValueError):
            call()


@needs_compiled
def test_an_event_primary_refuses_what_is_not_an_event_and_checks_its_words() -> None:
    """``event_handler`` takes one SR event bit (both twins); the compiled primary
    takes the words again at every call (a released view or a misplaced side raises
    before any word is read), takes only a compiled side, and passes on what its
    handler raises."""
    assert COMPILED is not None
    u, p = _Unit(COMPILED, "ev"), _Unit(ImxMuSide, "evp")
    a = u.unit.a
    try:
        for side in (a, p.unit.a):
            for bad in (0, mu.GIR(0), mu.RF(0) | mu.TE(0), 1 << 40):
                with pytest.raises(ValueError, match="not one SR event bit"):
                    side.event_handler(bad, u._handler)
        with pytest.raises(TypeError):
            importlib.import_module("amplink.hw._mu").MuEvent(p.unit.a, mu.RF(0), u._handler)

        def boom(irq: int, dev_id: object) -> int:
            raise RuntimeError("handler")

        primary = a.event_handler(mu.RF(0), boom)
        assert primary(32, None) == 0  # nothing pending
        a.cr_update(mu.RIE(0))
        u.unit.b.write_tr(0, 9)
        with pytest.raises(RuntimeError, match="handler"):
            primary(32, None)
        with pytest.raises(TypeError):
            primary(32)  # type: ignore[call-arg]
        a._me = 2 * SIDE_WORDS
        with pytest.raises(ValueError, match="outside"):
            primary(32, None)
        a._me = 0
    finally:
        u.close()
        p.close()
    with pytest.raises(ValueError):
        primary(32, None)


@needs_compiled
def test_a_wire_of_another_kind_is_pulsed_through_its_own_pulse() -> None:
    """Only an :class:`IrqWire` is written to directly; another wire's ``pulse()`` runs."""
    assert COMPILED is not None

    class Counting:
        def __init__(self) -> None:
            self.count = 0

        def pulse(self) -> None:
            self.count += 1

    region = SharedRegion.create(mu.SIZE, f"mu-diff-wire-{os.getpid()}")
    words = region.cast(0, mu.SIZE, "I")
    wa, wb = Counting(), Counting()
    unit = ImxMu("mu", words, side_type=COMPILED)
    unit.a.wire, unit.a.peer_wire = wa, wb
    unit.b.wire, unit.b.peer_wire = wb, wa
    try:
        unit.b.cr_update(mu.RIE(0))
        unit.a.write_tr(0, 7)
        assert wb.count == 1
        unit.a.cr_update(mu.TIE(0))
        assert wa.count == 0  # TE0 is clear: the word waits for the peer
        assert unit.b.read_rr(0) == 7
        assert wa.count == 1  # read: TE0 set, and enabled
    finally:
        words.release()
        region.close()


def test_the_compiled_accessors_run_when_they_were_built() -> None:
    """amplink makes compiled MU sides when the build made them, unless the
    environment asks for the pure-Python ones; where a C compiler and the Python
    headers are, `make` must have built them."""
    pure = os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")
    if COMPILED is None:
        assert not can_compile(), "a compiler is here, but the install did not build _mu"
        pytest.skip("no C compiler or Python headers: the pure-Python accessors run")
    assert mu.COMPILED is not pure
    assert (mu.SIDE is ImxMuSide) is pure
