"""Keep numba's on-disk kernel cache consistent with the kernel sources.

numba keys each cached function on the timestamp and size of *its own* source file, but a
kernel compiles in the njit helpers it calls from sibling modules (``vmath``, ``_sum4``, …).
Editing or upgrading ``vmath.py`` alone would leave every caller's cached machine code with
the old helper inlined. So at import we hash all of this package's sources and, when the hash
differs from the one recorded next to the cache files, delete this package's cache files
(the next call recompiles them; cold compile of everything is ~1-2 minutes).
"""

import hashlib
import re
from pathlib import Path

_STAMP = "graphc-kernels.sources-sha256"
# Whether this process found no cached kernel of the library (first run, or the sources changed
# and drop_stale_cache emptied it): `graphc train` then starts its compile helpers at once.
cold = False
_NJIT_DECORATOR = re.compile(rb"^@numba\.njit", re.MULTILINE)


def _jit_sources() -> list[Path]:
    """The modules that define njit code (bench.py, views.py and friends do not matter)."""
    paths = sorted(Path(__file__).parent.glob("*.py"))
    return [p for p in paths if _NJIT_DECORATOR.search(p.read_bytes())]


def sources_digest() -> str:
    h = hashlib.sha256()
    for path in _jit_sources():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def drop_stale_cache(dispatcher) -> bool:
    """Delete this package's numba cache files if the sources changed; True if it deleted.

    ``dispatcher`` is any ``cache=True`` kernel of this package: its cache locator tells where
    numba keeps the files (next to the sources, or under NUMBA_CACHE_DIR).
    """
    cache = getattr(dispatcher, "_cache", None)
    cache_path = getattr(cache, "_cache_path", None)
    if cache_path is None:
        return False
    cache_dir = Path(cache_path)
    stamp = cache_dir / _STAMP
    digest = sources_digest()
    global cold
    try:
        if stamp.exists() and stamp.read_text() == digest:
            cold = not any(cache_dir.glob("*.nbi"))
            return False
        cold = True
        modules = {p.stem for p in _jit_sources()}
        dropped = False
        if cache_dir.is_dir():
            for f in cache_dir.iterdir():
                if f.suffix in (".nbi", ".nbc") and f.name.split(".", 1)[0] in modules:
                    f.unlink(missing_ok=True)
                    dropped = True
        cache_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest)
        return dropped
    except OSError:  # read-only install: numba falls back to its own cache handling
        return False
