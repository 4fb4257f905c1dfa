"""graphc's one thread pool: Numba's threading layer runs every parallel kernel; BLAS stays on
one thread inside it.

Why one pool: numpy and Numba (through scipy) each load an OpenBLAS with its own spinning
threads, and Numba's parallel loops bring a third pool. On a 2-core machine two pools steal the
cores from each other; measured with another CPU-bound process running, OpenBLAS at 2 threads
made the transformer's step up to 28x slower than at 1. So the kernels split their own work
(`prange` over row blocks, batch items or heads; each block's GEMM is a single-threaded BLAS
call on contiguous rows) and only Numba's pool has threads. Its workers spin briefly after a
region (GNU OpenMP's default), which keeps their core when a neighbour is busy: measured here,
a 2-thread region kept its 2x with a CPU-bound neighbour; a short spin (GOMP_SPINCOUNT=10000)
lost it (0.5x).

    GRAPHC_THREADS=N   threads for the kernels (default: the cores this process may use;
                       under MPI, those cores shared among the ranks on the host)

`set_threads(n)` changes it at run time (`graphc train --threads`, benchmarks).
"""

from __future__ import annotations

import os

import numba

from graphc.kernels._blas import set_blas_threads


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def set_threads(n: int) -> int:
    """Use `n` threads for the kernels (clamped to 1..NUMBA_NUM_THREADS); returns the count."""
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def get_threads() -> int:
    return numba.get_num_threads()


def default_threads(local_ranks: int = 1) -> int:
    """GRAPHC_THREADS if set (a positive integer), else the usable cores shared among
    `local_ranks` processes on this host."""
    value = os.environ.get("GRAPHC_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, usable_cores() // max(1, local_ranks))


def configure(local_ranks: int = 1) -> int:
    """BLAS on one thread, the kernels on `default_threads(local_ranks)`; returns that count."""
    set_blas_threads(1)
    return set_threads(default_threads(local_ranks))
