"""Which implementation of the split virtqueue's two halves runs.

:mod:`amplink.virtio.virtqueue` is the reference, in pure Python.  ``_vring.c`` is the
same two state machines compiled (built by ``pip install`` from source, with the
package): the same methods with the same answers, errors and checks of everything the
peer writes, a C call per ring operation instead of several interpreter frames, and a
real ``mfence`` where the suppression handshake needs one.  The compiled halves are
used when they were built, unless ``AMPLINK_PURE_PYTHON=1`` is set (CI runs the suite
both ways).  :data:`COMPILED` says which runs; ``amplink bench`` reports it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from amplink.virtio.virtqueue import SEND_NO_BUFFER, SEND_TOO_SMALL, rpmsg_header, rpmsg_payload

PURE_PYTHON_ENV = "AMPLINK_PURE_PYTHON"

if TYPE_CHECKING:
    from amplink.virtio.virtqueue import VirtqueueDevice, VirtqueueDriver

    COMPILED: bool
else:
    from amplink.virtio import virtqueue as _python

    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        _compiled = None
    else:
        try:
            from amplink.virtio import _vring as _compiled
        except ImportError:  # not built (no compiler when it was installed)
            _compiled = None
    COMPILED = _compiled is not None
    VirtqueueDriver = (_compiled or _python).VirtqueueDriver
    VirtqueueDevice = (_compiled or _python).VirtqueueDevice

__all__ = [
    "COMPILED",
    "SEND_NO_BUFFER",
    "SEND_TOO_SMALL",
    "VirtqueueDevice",
    "VirtqueueDriver",
    "rpmsg_header",
    "rpmsg_payload",
]
