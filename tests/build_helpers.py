"""What the install compiles amplink's C fast paths with (``_vring.c``, ``_glink.c``)."""

import shutil
import sysconfig
from pathlib import Path


def can_compile() -> bool:
    """Whether this machine has a C compiler and the Python headers (a fresh Debian
    machine has both): where it does, the install must have built the extensions."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return shutil.which(cc) is not None and headers.exists()
