"""Which implementation of the GLINK FIFO ends runs.

:mod:`amplink.rpmsg.glink_fifo` is the reference, in pure Python.  ``_glink.c`` compiles
the methods every message goes through (:meth:`~amplink.rpmsg.glink_fifo.FifoWriter.put`,
``kick_needed``, ``free``; :meth:`~amplink.rpmsg.glink_fifo.FifoReader.feed`, ``settle``,
``set_polling``, ``pending``) with the same answers, errors, checks of the peer's index
and bytes in shared memory, and a real ``mfence`` where the kick handshakes need one.
Its types are bases: each compiled end below is its pure-Python class with the compiled
methods put first, so everything else (``__init__``, ``write``, ``peek``...) is the
reference's own code, on fields the C type stores.  The compiled ends are used when they
were built (``pip install`` builds them from source with the package), unless
``AMPLINK_PURE_PYTHON=1`` is set (CI runs the suite both ways); :data:`COMPILED` says
which runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from amplink.rpmsg import glink_fifo as _python
from amplink.virtio.rings import PURE_PYTHON_ENV

if TYPE_CHECKING:
    from amplink.rpmsg.glink_fifo import FifoReader, FifoWriter

    COMPILED: bool
else:
    _compiled = None
    if os.environ.get(PURE_PYTHON_ENV, "") in ("", "0"):
        try:
            from amplink.rpmsg import _glink as _compiled
        except ImportError:  # not built (no compiler when it was installed)
            pass
    COMPILED = _compiled is not None
    if _compiled is None:
        FifoWriter, FifoReader = _python.FifoWriter, _python.FifoReader
    else:

        class FifoWriter(_compiled.FifoWriter, _python.FifoWriter):
            __doc__ = _python.FifoWriter.__doc__

        class FifoReader(_compiled.FifoReader, _python.FifoReader):
            __doc__ = _python.FifoReader.__doc__


__all__ = ["COMPILED", "FifoReader", "FifoWriter"]
