"""Signals held in a main thread's sections (amplink.irq.held_signals), in pytest's
own main thread: real signals (raise_signal), real handlers, restored after each test."""

import _signal
import asyncio
import signal
import threading
import traceback

import pytest

from amplink.irq import held_signals
from amplink.irq.held_signals import HELD_SIGNALS, HeldHandler
from waiting import entered_in_another_thread

USED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


@pytest.fixture(autouse=True)
def handlers_back():
    assert threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in USED}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def recorder(got: list[int], exc: type[BaseException] | None = None):
    def handler(signum: int, frame: object) -> None:
        got.append(signum)
        if exc is not None:
            raise exc

    return handler


def test_a_ctrl_c_in_a_section_is_raised_as_it_ends():
    done = []
    with pytest.raises(KeyboardInterrupt), HELD_SIGNALS:
        signal.raise_signal(signal.SIGINT)
        done.append("the rest of the section")
    assert done == ["the rest of the section"]
    with pytest.raises(KeyboardInterrupt):  # outside a section: at once, as always
        signal.raise_signal(signal.SIGINT)


def frames(exc: BaseException) -> list[str]:
    """The functions a traceback goes through, outermost first."""
    return [f.name for f in traceback.extract_tb(exc.__traceback__)]


def section_then_ctrl_c() -> None:
    with HELD_SIGNALS:
        signal.raise_signal(signal.SIGINT)


def let_through_after_ctrl_c() -> None:
    with HELD_SIGNALS:
        signal.raise_signal(signal.SIGINT)
        with HELD_SIGNALS.let_through:
            pass


def ctrl_c_outside() -> None:
    signal.raise_signal(signal.SIGINT)


def user_handler(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("program", "handler", "ends_in"),
    [
        (section_then_ctrl_c, None, "section_then_ctrl_c"),
        (let_through_after_ctrl_c, None, "let_through_after_ctrl_c"),
        (ctrl_c_outside, None, "ctrl_c_outside"),
        (section_then_ctrl_c, user_handler, "user_handler"),
        (ctrl_c_outside, user_handler, "user_handler"),
    ],
)
def test_a_ctrl_c_traceback_ends_in_the_program_not_in_the_delivery(program, handler, ends_in):
    """What a held (or wrapped) handler raises shows from the section's end, or where
    the signal came, on to the handler's own frames: never amplink's delivery, which
    would look like amplink failed."""
    if handler is not None:
        signal.signal(signal.SIGINT, handler)
    with HELD_SIGNALS:  # every handler wrapped from now on
        pass
    with pytest.raises(KeyboardInterrupt) as exc:
        program()
    names = frames(exc.value)
    assert names[-1] == ends_in, names
    files = {f.filename for f in traceback.extract_tb(exc.value.__traceback__)}
    assert held_signals.__file__ not in files, names


def test_nested_sections_deliver_at_the_outermost_end_and_a_signal_twice_once():
    got: list[int] = []
    signal.signal(signal.SIGUSR1, recorder(got))
    with HELD_SIGNALS:
        with HELD_SIGNALS:
            signal.raise_signal(signal.SIGUSR1)
            signal.raise_signal(signal.SIGUSR1)
        assert got == []
    assert got == [signal.SIGUSR1]


def test_a_handler_installed_later_is_held_too_and_the_program_sees_its_own():
    with HELD_SIGNALS:
        pass  # the wrappers are in place
    got: list[int] = []
    mine = recorder(got, SystemExit)
    old = signal.signal(signal.SIGUSR1, mine)  # after the first section
    assert not isinstance(old, HeldHandler)
    with pytest.raises(SystemExit), HELD_SIGNALS:
        signal.raise_signal(signal.SIGUSR1)
        assert got == []
    assert got == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) is mine
    installed = _signal.getsignal(signal.SIGUSR1)
    assert isinstance(installed, HeldHandler) and installed.wrapped is mine
    assert signal.signal(signal.SIGUSR1, old) is mine
    assert signal.getsignal(signal.SIGUSR1) is old


def test_sigterms_handler_installed_past_the_signal_module_is_held_from_the_next_section():
    with HELD_SIGNALS:
        pass
    got: list[int] = []
    _signal.signal(signal.SIGTERM, recorder(got, SystemExit))  # not through signal.signal
    with pytest.raises(SystemExit), HELD_SIGNALS:
        signal.raise_signal(signal.SIGTERM)
        assert got == []
    assert got == [signal.SIGTERM]


def test_asyncio_run_still_installs_and_removes_its_own_ctrl_c_handler():
    with HELD_SIGNALS:
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seen = []

    async def main() -> None:
        seen.append(signal.getsignal(signal.SIGINT))

    asyncio.run(main())
    assert seen[0] is not signal.default_int_handler  # asyncio's own, while it ran
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_held_signal_runs_the_handler_installed_when_the_section_ends():
    first: list[int] = []
    second: list[int] = []
    signal.signal(signal.SIGUSR1, recorder(first))
    signal.signal(signal.SIGUSR2, recorder(first))
    with HELD_SIGNALS:
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGUSR2)
        signal.signal(signal.SIGUSR1, recorder(second))  # e.g. by a receive callback
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    assert first == [] and second == [signal.SIGUSR1]  # SIGUSR2 was ignored


def test_signals_are_delivered_in_order_and_one_that_raises_leaves_the_rest_for_later():
    got: list[int] = []
    signal.signal(signal.SIGUSR1, recorder(got, KeyboardInterrupt))
    signal.signal(signal.SIGUSR2, recorder(got))
    with pytest.raises(KeyboardInterrupt), HELD_SIGNALS:
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGUSR2)
    assert got == [signal.SIGUSR1]
    with HELD_SIGNALS:
        pass
    assert got == [signal.SIGUSR1, signal.SIGUSR2]


def test_let_through_lets_a_wait_be_interrupted_and_holds_the_clean_up():
    got: list[int] = []
    signal.signal(signal.SIGUSR2, recorder(got))
    steps = []
    with pytest.raises(KeyboardInterrupt), HELD_SIGNALS:
        try:
            with HELD_SIGNALS.let_through:
                signal.raise_signal(signal.SIGINT)
                steps.append("not reached")
        finally:
            signal.raise_signal(signal.SIGUSR2)  # held: the clean-up goes on
            steps.append("clean-up")
            assert got == []
    assert steps == ["clean-up"] and got == [signal.SIGUSR2]


def test_let_through_delivers_what_was_held_before_it_and_does_nothing_when_nested():
    got: list[int] = []
    signal.signal(signal.SIGUSR1, recorder(got))
    with HELD_SIGNALS:
        signal.raise_signal(signal.SIGUSR1)
        with HELD_SIGNALS.let_through:
            assert got == [signal.SIGUSR1]
        with HELD_SIGNALS, HELD_SIGNALS.let_through:  # a send in a receive callback: its
            signal.raise_signal(signal.SIGUSR1)  # wait lets nothing through
            assert got == [signal.SIGUSR1]
        assert got == [signal.SIGUSR1]
    assert got == [signal.SIGUSR1, signal.SIGUSR1]


def test_a_section_in_another_thread_holds_nothing():
    got: list[int] = []
    signal.signal(signal.SIGUSR1, recorder(got))
    with entered_in_another_thread(lambda: HELD_SIGNALS):
        signal.raise_signal(signal.SIGUSR1)
        assert got == [signal.SIGUSR1]


def test_a_signal_that_comes_while_held_ones_are_delivered_waits_for_its_turn():
    """One that comes while a held handler runs is delivered after it returns, by the
    same delivery: a nested delivery would pop what the outer one is about to pop
    (a KeyError out of a send() under a signal rain, found by a hostile review)."""
    order: list[str] = []

    def first(signum: int, frame: object) -> None:
        order.append("first begins")
        signal.raise_signal(signal.SIGUSR2)
        order.append("first ends")

    signal.signal(signal.SIGUSR1, first)
    signal.signal(signal.SIGUSR2, lambda s, f: order.append("second"))
    with HELD_SIGNALS:
        signal.raise_signal(signal.SIGUSR1)
        assert order == []
    assert order == ["first begins", "first ends", "second"]
