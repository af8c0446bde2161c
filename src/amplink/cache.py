"""Where amplink keeps what its tools build outside the repository."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(env_var: str, name: str) -> Path:
    """``$env_var`` if set, else ``name`` under ``$XDG_CACHE_HOME`` (``~/.cache``)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / name
