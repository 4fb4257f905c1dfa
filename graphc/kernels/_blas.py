"""Thread count of the OpenBLAS builds loaded in this process (numpy's and scipy's; numba's
``np.dot`` calls scipy's through ``scipy.linalg.cython_blas``).

Why the runtime may want this: the kernels' GEMMs are small (a 64x64 by 64x256 step of an
LSTM, 16x16 attention heads), where a second BLAS thread buys little, and on a busy 2-core
machine OpenBLAS's threads wait for each other: measured here with other processes running,
the transformer spec's step took a median 150-500 ms with OpenBLAS's default 2 threads and
21 ms with 1 thread. ``OPENBLAS_NUM_THREADS`` only works if set before numpy loads; this
works at any time. Linux only (it finds the libraries in ``/proc/self/maps``).
"""

from __future__ import annotations

import ctypes

_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_")  # fmt: skip
_GETTERS = ("openblas_get_num_threads", "scipy_openblas_get_num_threads",
            "scipy_openblas_get_num_threads64_")  # fmt: skip


def _openblas_libs() -> list[ctypes.CDLL]:
    import numpy  # noqa: F401  (load both BLAS builds numba may use)
    import scipy.linalg.cython_blas  # noqa: F401

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower()})
    except OSError:
        return []
    libs = []
    for p in paths:
        try:
            libs.append(ctypes.CDLL(p))
        except OSError:
            continue
    return libs


def set_blas_threads(n: int) -> int:
    """Set every loaded OpenBLAS to ``n`` threads; returns how many libraries took it."""
    done = 0
    for lib in _openblas_libs():
        for name in _SETTERS:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn(int(n))
                done += 1
                break
    return done


def get_blas_threads() -> list[int]:
    """Thread counts of the loaded OpenBLAS libraries (empty if none found)."""
    counts = []
    for lib in _openblas_libs():
        for name in _GETTERS:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_int
                counts.append(int(fn()))
                break
    return counts


_CORENAMES = ("openblas_get_corename", "scipy_openblas_get_corename", "scipy_openblas_get_corename64_")


def blas_cores() -> list[str]:
    """The kernel family each loaded OpenBLAS chose ("Haswell", "SkylakeX", …)."""
    names = []
    for lib in _openblas_libs():
        for name in _CORENAMES:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                names.append(fn().decode(errors="replace").strip())
                break
    return names
