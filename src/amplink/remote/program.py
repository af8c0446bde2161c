"""Turning a firmware program's source into the ``main(core)`` a core runs.

Shared by the core process (which reads the source from its device memory) and the
vhost-user device (``amplink serve-linux``, which gets it from the command line).
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from types import ModuleType

from amplink.errors import AmplinkError
from amplink.remote.runtime import Core

FIRMWARE_MODULE = "amplink_firmware"


class ProgramExit(AmplinkError):
    """The firmware program called ``sys.exit()`` (raised ``SystemExit``) while it was
    imported, before its ``main(core)`` could run (``ENOEXEC``)."""

    def __init__(self, filename: str, code: object) -> None:
        super().__init__(
            errno.ENOEXEC,
            f"firmware {filename!r} called sys.exit({'' if code is None else repr(code)}) "
            "while it was imported, before its main(core) could run",
        )
        self.code = code


def load_program(source: str, filename: str) -> Callable[[Core], object]:
    """Execute the firmware program's source as a module; return its ``main``.
    ``ENOEXEC`` if it defines none, :class:`ProgramExit` if it exits while imported;
    what it raises then goes through (as the ``main`` it runs would raise it)."""
    module = ModuleType(FIRMWARE_MODULE)
    module.__file__ = filename
    sys.modules[FIRMWARE_MODULE] = module  # dataclasses and pickling look modules up
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
    except SystemExit as exc:  # not the core process's exit: the firmware's failure
        raise ProgramExit(filename, exc.code) from exc
    main = getattr(module, "main", None)
    if not callable(main):
        raise AmplinkError(errno.ENOEXEC, f"firmware {filename!r} has no main(core) function")
    return main  # type: ignore[no-any-return]
