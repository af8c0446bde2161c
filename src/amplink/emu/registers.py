"""Fast access to the emulated core's registers and to ``uc_emu_start``.

unicorn's Python binding spends several microseconds per register access (it looks up
a register class per call), and exception entry and return touch a dozen registers:
that was most of an emulated core's time per message.  This goes through the same
C library the binding loaded, one ``uc_reg_read_batch``/``uc_reg_write_batch`` call
per group of registers (about 15 times faster), and calls ``uc_emu_start`` directly.
It relies on the binding's module-level ``uclib`` and the engine handle ``_uch``
(unicorn 2.1, pinned in ``pyproject.toml``); every callback the core installs
catches its own exceptions, which is what the binding's wrapper around
``emu_start`` would otherwise re-raise.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from unicorn import Uc, UcError
from unicorn.unicorn_py3.unicorn import uclib


class Batch:
    """One fixed group of 32-bit registers, read or written in one C call."""

    def __init__(self, uc: Uc, ids: Sequence[int]) -> None:
        n = len(ids)
        self._handle: Any = uc._uch
        self._n = n
        self._ids = (ctypes.c_int * n)(*ids)
        self._vals = (ctypes.c_uint32 * n)()
        base = ctypes.addressof(self._vals)
        self._ptrs = (ctypes.c_void_p * n)(*[base + 4 * i for i in range(n)])

    def read(self) -> list[int]:
        """The registers' values, in the order of ``ids``."""
        status = uclib.uc_reg_read_batch(self._handle, self._ids, self._ptrs, self._n)
        if status:
            raise UcError(status)
        return list(self._vals)

    def write(self, values: Sequence[int]) -> None:
        """Set the registers to ``values`` (in the order of ``ids``)."""
        vals = self._vals
        for i, v in enumerate(values):
            vals[i] = v & 0xFFFF_FFFF
        status = uclib.uc_reg_write_batch(self._handle, self._ids, self._ptrs, self._n)
        if status:
            raise UcError(status)


def emu_start(uc: Uc, begin: int, until: int, count: int) -> None:
    """``uc_emu_start`` without the binding's wrapper; ``UcError`` on failure, and an
    exception a callback raised (the binding keeps it) is raised here too."""
    uc._hook_exception = None
    status = uclib.uc_emu_start(uc._uch, begin, until, 0, count)
    if uc._hook_exception is not None:
        raise uc._hook_exception
    if status:
        raise UcError(status)
