"""Row-blocked GEMMs on graphc's thread pool (see `graphc.kernels.threads`).

Each product is split into one block of rows per thread; each block is a single-threaded BLAS
call on contiguous rows (BLAS itself stays on one thread), so the only threads are Numba's.
A block smaller than `_MIN_ROWS` rows costs more in hand-off than it saves: small products
stay one call. Every parallel function here and in the kernels takes a serial path when its
work is one block: a parallel region of one iteration still wakes every thread and waits for
all of them (measured with the other core busy: 2.4 µs median but 1.4 ms mean for an empty
one-iteration region, against 0.2 µs serial).

    gemm_nt(a, b, out)   out[:] = a @ b.T      (a [M, K], b [N, K]: a linear layer)
    gemm_nn(a, b, out)   out[:] = a @ b        (a [M, K], b [K, N])
    gemm_tn(a, b, out)   out[:] = a.T @ b      (a [M, N], b [M, K]: a weight gradient; the
                                                 sum over M is split, partial sums added)
"""

import numba
import numpy as np
from numba.np.ufunc import parallel as _numba_parallel

_MIN_ROWS = 32

# `numba.get_num_threads()` inside njit code calls the threading layer through a ctypes
# pointer, which makes every caller uncacheable; this intrinsic calls the same C function by
# its symbol name, which a cached kernel resolves when it loads. The symbol exists once the
# threading layer is launched, so launch it before any cached kernel can load.
_numba_parallel._launch_threads()
_thread_count = _numba_parallel._iget_num_threads


@numba.njit(cache=True)
def row_blocks(rows, min_rows=_MIN_ROWS):
    """How many blocks to split `rows` rows into: one per thread, none under `min_rows`."""
    return max(1, min(_thread_count(), rows // min_rows))


@numba.njit(cache=True)
def block_bounds(i, n_blocks, rows):
    return i * rows // n_blocks, (i + 1) * rows // n_blocks


@numba.njit(cache=True, parallel=True)
def gemm_nt(a, b, out):
    n_blocks = row_blocks(a.shape[0])
    if n_blocks == 1:
        np.dot(a, b.T, out)
        return out
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, a.shape[0])
        np.dot(a[r0:r1], b.T, out[r0:r1])
    return out


@numba.njit(cache=True, parallel=True)
def gemm_nn(a, b, out):
    n_blocks = row_blocks(a.shape[0])
    if n_blocks == 1:
        np.dot(a, b, out)
        return out
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, a.shape[0])
        np.dot(a[r0:r1], b, out[r0:r1])
    return out


@numba.njit(cache=True, parallel=True)
def gemm_tn(a, b, out):
    n_blocks = row_blocks(a.shape[0], 4 * _MIN_ROWS)  # each block adds a partial product
    if n_blocks == 1:
        np.dot(a.T, b, out)
        return out
    partial = np.empty((n_blocks, out.shape[0], out.shape[1]), dtype=out.dtype)
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, a.shape[0])
        np.dot(a[r0:r1].T, b[r0:r1], partial[i])
    _sum_partials(partial, out)
    return out


@numba.njit(cache=True, parallel=True)
def _sum_partials(partial, out):
    """out = partial.sum(0), a band of rows per thread. Scalar loops, not array expressions:
    Numba turns each array expression in a parallel function into a parallel loop of its
    own, and compiling those cost seconds."""
    n_blocks, n, m = partial.shape
    for j in numba.prange(n_blocks):
        o0, o1 = block_bounds(j, n_blocks, n)
        for r in range(o0, o1):
            for c in range(m):
                tot = partial[0, r, c]
                for p in range(1, n_blocks):
                    tot += partial[p, r, c]
                out[r, c] = tot
