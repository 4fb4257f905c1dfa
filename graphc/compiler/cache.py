"""On-disk cache of generated drivers and kernels, keyed by a hash of the source and the toolchain.

Numba caches the library kernels itself (`cache=True`, next to the kernel modules); this cache
keeps the per-spec driver, so `graphc compile --emit` and tracebacks point at a real file, and
the generated pointwise kernels (graphc.compiler.kernelgen), imported from here so that Numba's
`cache=True` keeps their machine code next to them.
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


_KERNEL_DEPS: str | None = None


def _kernel_deps() -> str:
    """What a generated kernel's machine code depends on besides its own source: the kernel
    library's njit sources (vmath's float32 forms are inlined into it) and the scalar stubs.
    Numba's `cache=True` tracks only the generated file itself, so these go into its name."""
    global _KERNEL_DEPS
    if _KERNEL_DEPS is None:
        from graphc.kernels import _cache, pointwise

        h = hashlib.sha256(_cache.sources_digest().encode())
        h.update(Path(pointwise.__file__).read_bytes())
        _KERNEL_DEPS = h.hexdigest()
    return _KERNEL_DEPS


def store_kernel(source: str) -> tuple[Path | None, str]:
    """Write a generated kernel module once (atomically) under the cache dir; return its path
    (None when the cache is not writable) and its key. Specs that produce the same group share
    the file, and so Numba's on-disk cache of its compiled code."""
    key = source_key(source + "\0" + _kernel_deps())
    path = cache_dir() / "kernels" / f"fused_{key}.py"
    if path.exists():
        return path, key
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    except OSError:
        return None, key
    return path, key
