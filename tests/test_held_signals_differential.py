"""The compiled section entry and exit and a taker's sleep (``_held.c``) against their
pure-Python twin (:class:`amplink.irq.held_signals.HeldSignals`): the same answers,
the same fields after each step and the same calls of ``_wrap``, ``_deliver`` and the
poller (with what ``_interruptible`` said during the sleep), from random states
(nesting, floor, a look at the handlers due or not, SIGINT's and SIGTERM's handlers
known or changed, signals held or not, the main thread or another), on instances of
their own whose ``_wrap`` and ``_deliver`` record instead of touching the process's
handlers."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import os
import random
import signal
import threading

import pytest

from amplink.irq import held_signals as hs
from amplink.irq.held_signals import PURE_PYTHON_ENV, HeldSignals
from build_helpers import can_compile

COMPILED = hs.compiled_sections()
needs_compiled = pytest.mark.skipif(COMPILED is None, reason="_held was not built")
FIELDS = ("_main", "depth", "floor", "_looks_in", "_sigint", "_sigterm", "_interruptible")


class _Poller:
    """A ``select.poll`` stand-in: records each sleep's timeout and whether the sleep
    was interruptible then, and answers, or raises (as a held signal's handler does)."""

    def __init__(self, s: HeldSignals, calls: list[str]) -> None:
        self.s = s
        self.calls = calls
        self.raise_held = False

    def poll(self, timeout_ms: int) -> list[tuple[int, int]]:
        self.calls.append(f"poll {timeout_ms} interruptible={self.s._interruptible}")
        if self.raise_held:
            self.s._interruptible = False  # (as _came does before it raises)
            raise hs.Held
        return [(timeout_ms, 1)]


class _Recorded:
    """An instance of ``kind`` whose ``_wrap`` and ``_deliver`` only record (and update
    the fields as the real ones do), and may be told to raise."""

    def __init__(self, kind: type[HeldSignals], calls: list[str]) -> None:
        self.s = s = kind()
        self.raise_in: str | None = None

        def wrap() -> None:
            calls.append("wrap")
            if self.raise_in == "wrap":
                raise KeyboardInterrupt
            s._sigint, s._sigterm = _handlers()
            s._looks_in = hs.LOOK_EVERY

        def deliver() -> None:
            calls.append(f"deliver {sorted(s._pending)} at {s.depth}/{s.floor}")
            s._pending.clear()
            if self.raise_in == "deliver":
                raise KeyboardInterrupt

        s._wrap = wrap  # type: ignore[method-assign]
        s._deliver = deliver  # type: ignore[method-assign]


def _handlers() -> tuple[object, object]:
    return _signal.getsignal(signal.SIGINT), _signal.getsignal(signal.SIGTERM)


def _state(rng: random.Random) -> dict[str, object]:
    sigint, sigterm = _handlers()
    other = object()
    return {
        "_main": threading.get_ident() if rng.random() < 0.85 else threading.get_ident() ^ 1,
        "depth": rng.choice((0, 0, 0, 1, 2, 3)),
        "floor": rng.choice((0, 0, 0, 1)),
        "_looks_in": rng.choice((-1, 0, 1, 2, 4096)),
        "_sigint": sigint if rng.random() < 0.8 else rng.choice((None, other)),
        "_sigterm": sigterm if rng.random() < 0.8 else rng.choice((None, other)),
        "_pending": {} if rng.random() < 0.6 else {int(signal.SIGUSR1): None},
    }


def _step(r: _Recorded, calls: list[str], op: str) -> tuple[object, ...]:
    s = r.s
    try:
        if op == "enter":
            got: object = "self" if s.__enter__() is s else "other"
        elif op == "poll":
            poller = _Poller(s, calls)
            poller.raise_held = r.raise_in == "poll"
            got = s.poll(poller, len(calls) % 5 - 1)  # type: ignore[arg-type]
        else:
            got = s.__exit__(None, None, None)
    except KeyboardInterrupt:
        got = "KeyboardInterrupt"
    except hs.Held:
        got = "Held"
    return (got, *(getattr(s, f) for f in FIELDS), dict(s._pending), tuple(calls))


@needs_compiled
@pytest.mark.parametrize("seed", range(6))
def test_compiled_entry_and_exit_match_the_pure_ones_step_by_step(seed: int) -> None:
    assert COMPILED is not None
    rng = random.Random(seed)
    pure_calls: list[str] = []
    c_calls: list[str] = []
    pure, comp = _Recorded(HeldSignals, pure_calls), _Recorded(COMPILED, c_calls)
    for i in range(3000):
        if i % 7 == 0:  # a fresh state now and then, else what the steps left
            state = _state(rng)
            for r in (pure, comp):
                for k, v in state.items():
                    setattr(r.s, k, dict(v) if isinstance(v, dict) else v)
        raise_in = rng.choice((None, None, None, "wrap", "deliver", "poll"))
        pure.raise_in = comp.raise_in = raise_in
        op = rng.choice(("enter", "exit", "poll"))
        a = _step(pure, pure_calls, op)
        b = _step(comp, c_calls, op)
        assert a == b, (seed, i, op, raise_in)


@needs_compiled
def test_a_compiled_exit_takes_exactly_three_arguments() -> None:
    assert COMPILED is not None
    s = COMPILED()
    with pytest.raises(TypeError):
        s.__exit__(None, None)  # type: ignore[call-arg]


def test_the_chosen_entry_and_exit_are_the_compiled_ones_unless_pure_python() -> None:
    pure = os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")
    if COMPILED is None:
        assert not can_compile(), "a compiler is here, but the install did not build _held"
        pytest.skip("no C compiler or Python headers: the pure-Python sections run")
    assert hs.COMPILED is not pure
    assert (type(hs.HELD_SIGNALS) is HeldSignals) is pure
