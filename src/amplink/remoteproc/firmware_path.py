"""Where firmware images are found by name, as Linux's ``request_firmware`` looks in
``/lib/firmware`` and the folders of ``firmware_class.path``.

A firmware given as a bare file name ending in ``.elf`` that is not a file in the
folder it is relative to (:func:`amplink.remoteproc.fwref.resolve`) is searched in, in
order: the folders of ``AMPLINK_FIRMWARE_PATH``
(separated by ``:``), then the Cortex-M images ``make firmware`` built (the newest
complete build in ``AMPLINK_FIRMWARE_CACHE``, by default
``~/.cache/amplink-firmware``).  Anything else is used as it is given.
"""

from __future__ import annotations

import os
from pathlib import Path

from amplink import cache

COMPLETE = ".complete"  # the stamp tools/firmware/build.sh writes last


def cache_dir() -> Path:
    """Where ``tools/firmware/build.sh`` keeps its builds (``AMPLINK_FIRMWARE_CACHE``)."""
    return cache.cache_dir("AMPLINK_FIRMWARE_CACHE", "amplink-firmware")


def built_firmware_dir() -> Path | None:
    """The newest complete build of the Cortex-M images, or None (run ``make firmware``)."""
    try:
        builds = [p.parent for p in cache_dir().glob(f"*/{COMPLETE}")]
    except OSError:
        return None
    return max(builds, key=lambda p: (p / COMPLETE).stat().st_mtime, default=None)


def search_path() -> list[Path]:
    """The folders a firmware name is looked up in, in order."""
    folders = [Path(p) for p in os.environ.get("AMPLINK_FIRMWARE_PATH", "").split(":") if p]
    built = built_firmware_dir()
    if built is not None:
        folders.append(built)
    return folders


def lookup(name: str) -> str | None:
    """The file a bare firmware name (``echo.elf``) stands for on the search path, or
    None."""
    for folder in search_path():
        candidate = folder / name
        if candidate.is_file():
            return str(candidate)
    return None


def describe() -> str:
    """The search path in words, for an error that says where a name was looked for."""
    where = ", ".join(str(f) for f in search_path()) or "no folder (AMPLINK_FIRMWARE_PATH is empty)"
    return f"the firmware search path ({where}; the Cortex-M images are built by `make firmware`)"
