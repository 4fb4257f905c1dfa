"""On-disk cache of generated drivers, keyed by a hash of the source and the toolchain.

Numba caches the kernels themselves (`cache=True`, next to the kernel modules); this cache
keeps the per-spec driver, so `graphc compile --emit` and tracebacks point at a real file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import llvmlite
import numba

from graphc import __version__


def cache_dir() -> Path:
    root = os.environ.get("GRAPHC_CACHE_DIR") or Path.home() / ".cache" / "graphc"
    return Path(root)


def source_key(source: str) -> str:
    h = hashlib.sha256()
    for part in (source, __version__, numba.__version__, llvmlite.__version__):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def store(source: str, name: str) -> Path:
    """Write the driver once (atomically) and return its path; an existing entry is reused."""
    key = source_key(source)
    path = cache_dir() / "drivers" / f"{name}-{key}.py"
    if path.exists():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    except OSError:  # a read-only home still compiles; it just does not cache
        return Path(f"<graphc:{name}-{key}>")
    return path
