"""What a firmware served to foreign hosts does, whatever the transport (Linux guests over
vhost-user, OpenAMP hosts over the linux-machine layout): run the program over the
first host's link, relinking for the hosts after it, until stopped or SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType

from amplink.remote.runtime import Core, CoreHardware, Relinked

log = logging.getLogger(__name__)


def run_firmware(
    name: str,
    next_link: Callable[[], Relinked | None],
    main: Callable[[Core], object],
    on_core: Callable[[Core], None],
) -> int:
    """Wait for the first link (``next_link``, which the core calls again to relink),
    then run ``main`` on a :class:`Core` over it (``on_core`` gets the core first, so
    that a stop can reach it): 0, or 1 if the firmware raised (logged)."""
    first = next_link()
    if first is None:
        return 0
    link, wake_fds = first
    core = Core(name, link, wake_fds, CoreHardware(next_link))
    on_core(core)
    try:
        main(core)
    except Exception:
        log.exception("firmware crashed")
        return 1
    finally:
        core.close()
    return 0


def until_signal(stop: Callable[[], None], run: Callable[[], int]) -> int:
    """``run()``, with SIGINT and SIGTERM calling ``stop()`` meanwhile (main thread)."""

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return run()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
