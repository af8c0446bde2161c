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


def load_program(source: str, filename: str) -> Callable[[Core], object]:
    """Execute the firmware program's source as a module; return its ``main``."""
    module = ModuleType(FIRMWARE_MODULE)
    module.__file__ = filename
    sys.modules[FIRMWARE_MODULE] = module  # dataclasses and pickling look modules up
    exec(compile(source, filename, "exec"), module.__dict__)
    main = getattr(module, "main", None)
    if not callable(main):
        raise AmplinkError(errno.ENOEXEC, f"firmware {filename!r} has no main(core) function")
    return main  # type: ignore[no-any-return]
