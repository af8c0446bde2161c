"""Which implementation of the GLINK FIFO ends runs.

:mod:`amplink.rpmsg.glink_fifo` is the reference, in pure Python.  ``_glink.c`` compiles
the methods every message goes through (:meth:`~amplink.rpmsg.glink_fifo.FifoWriter.put`,
``put_data``, ``kick_needed``, ``free``; :meth:`~amplink.rpmsg.glink_fifo.FifoReader.feed`,
``settle``, ``set_polling``, ``pending``) with the same answers, errors, checks of the
peer's index and bytes in shared memory, and a real ``mfence`` where the kick handshakes
need one; for a :class:`~amplink.rpmsg.glink_protocol.GlinkProtocol` its ``feed`` does
the protocol's common cases of a message and of an intent given back itself, on the
protocol's own state.
Its types are bases: a compiled end is its pure-Python class with the compiled methods
put first (:func:`compiled_ends`), so everything else (``__init__``, ``write``,
``peek``...) is the reference's own code, on fields the C type stores.  The compiled
ends are used when they were built (``pip install`` builds them from source with the
package), unless ``AMPLINK_PURE_PYTHON=1`` is set (CI runs the suite both ways);
:data:`COMPILED` says which runs.
"""

from __future__ import annotations

import importlib
import os

from amplink.rpmsg import glink_fifo as _python
from amplink.virtio.rings import PURE_PYTHON_ENV

Ends = tuple[type[_python.FifoWriter], type[_python.FifoReader]]
PYTHON_ENDS: Ends = (_python.FifoWriter, _python.FifoReader)


def compiled_ends() -> Ends | None:
    """The compiled writer and reader classes (None: ``_glink`` was not built)."""
    try:
        _glink = importlib.import_module("amplink.rpmsg._glink")
    except ImportError:  # not built (no compiler when it was installed)
        return None

    class FifoWriter(_glink.FifoWriter, _python.FifoWriter):  # type: ignore[name-defined,misc]
        __doc__ = _python.FifoWriter.__doc__

    class FifoReader(_glink.FifoReader, _python.FifoReader):  # type: ignore[name-defined,misc]
        __doc__ = _python.FifoReader.__doc__

    return FifoWriter, FifoReader


_compiled = None if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0") else compiled_ends()
COMPILED = _compiled is not None
ENDS: Ends = _compiled or PYTHON_ENDS  # what GlinkLink uses

__all__ = ["COMPILED", "ENDS", "PYTHON_ENDS", "compiled_ends"]
