"""Where firmware images are found by name, as Linux's ``request_firmware`` looks in
``/lib/firmware`` and the folders of ``firmware_class.path``.

A firmware given as a bare file name ending in ``.elf`` that is not a file in the
current folder is searched in, in order: the folders of ``AMPLINK_FIRMWARE_PATH``
(separated by ``:``), then the Cortex-M images ``make firmware`` built (the newest
complete build in ``AMPLINK_FIRMWARE_CACHE``, by default
``~/.cache/amplink-firmware``).  Anything else is used as it is given.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from amplink import cache
from amplink.remoteproc.elf import FirmwareError

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


def find_on_search_path(name: str, folders: list[Path] | None = None) -> Path | None:
    """The file ``name`` (a bare file name) in the first of ``folders`` (by default
    :func:`search_path`) that has it, or None."""
    for folder in search_path() if folders is None else folders:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def locate_firmware(spec: str) -> str:
    """The file a firmware name stands for: ``spec`` itself unless it is a bare
    ``*.elf`` name that is not in the current folder; ``ENOENT`` (a
    :class:`FirmwareError`) naming where it looked if it is nowhere."""
    if os.sep in spec or not spec.endswith(".elf") or os.path.exists(spec):
        return spec
    folders = search_path()
    found = find_on_search_path(spec, folders)
    if found is not None:
        return str(found)
    where = ", ".join(str(f) for f in folders) or "no folder (AMPLINK_FIRMWARE_PATH is empty)"
    raise FirmwareError(
        "missing",
        f"firmware {spec!r} is not in the current folder nor on the firmware search path "
        f"({where}); the Cortex-M images are built by `make firmware`",
        errno.ENOENT,
    )
