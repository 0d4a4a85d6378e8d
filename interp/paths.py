"""Where the toolkit keeps what it builds: model caches, feature caches, image sets.

Everything lives under one root, ``$INTERP_CACHE`` or ``~/.cache/interp`` by default,
so that a user can move it to a bigger disk with one variable.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The root folder of every cache of the toolkit (created on demand)."""
    root = Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    """A sub-folder of :func:`cache_root`, created on demand."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
