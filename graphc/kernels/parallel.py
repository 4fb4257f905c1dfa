"""Row-blocked linear-layer products on graphc's thread pool (see `graphc.kernels.threads`).

Each product is split into one block of rows per thread; each block is a single-threaded BLAS
call on contiguous rows (BLAS itself stays on one thread), so the only threads are Numba's.
A block smaller than `_MIN_ROWS` rows costs more in hand-off than it saves: small products
stay one call. Every parallel function here and in the kernels takes a serial path when its
work is one block: a parallel region of one iteration still wakes every thread and waits for
all of them (measured with the other core busy: 2.4 µs median but 1.4 ms mean for an empty
one-iteration region, against 0.2 µs serial).

    linear_rows(x, w, bias, y)       y[:] = x @ w.T + bias     (linear, attention projections)
    linear_rows_bwd(g, x, w, gx)     gx[:] = g @ w; returns g.T @ x
    col_sums(g, out)                 out[:] = g.sum(0), in float64 (a bias gradient)
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


@numba.njit(cache=True)
def add_into(acc, x):
    """acc[:len(x)] += x for 2-D arrays (numba's `acc[:n] += x` takes its generic ufunc path,
    ~8x slower; in a parallel function an array expression also becomes a region of its own)."""
    w = x.shape[1]
    for r in range(x.shape[0]):
        src, dst = x[r], acc[r]
        for c in range(w):
            dst[c] += src[c]


@numba.njit(cache=True)
def _linear_block(x, w, bias, y, r0, r1):
    np.dot(x[r0:r1], w.T, y[r0:r1])
    if bias.size > 0:
        for r in range(r0, r1):
            row = y[r]
            for j in range(y.shape[1]):
                row[j] += bias[j]


@numba.njit(cache=True, parallel=True)
def linear_rows(x, w, bias, y):
    """y[:] = x @ w.T (+ bias, unless zero-size); returns y. One parallel region: each block
    of rows is one BLAS call with its bias added."""
    n_blocks = row_blocks(x.shape[0])
    if n_blocks == 1:
        _linear_block(x, w, bias, y, 0, x.shape[0])
        return y
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, x.shape[0])
        _linear_block(x, w, bias, y, r0, r1)
    return y


@numba.njit(cache=True, parallel=True)
def linear_rows_bwd(g, x, w, gx):
    """gx[:] = g @ w and returns g.T @ x (the weight's gradient), both in one parallel region
    of row blocks; the blocks' parts of the weight gradient are added after it."""
    n_blocks = row_blocks(g.shape[0])
    gw = np.empty((w.shape[0], x.shape[1]), dtype=x.dtype)
    if n_blocks == 1:
        np.dot(g, w, gx)
        np.dot(g.T, x, gw)
        return gw
    part = np.empty((n_blocks - 1, w.shape[0], x.shape[1]), dtype=x.dtype)
    for i in numba.prange(n_blocks):
        r0, r1 = block_bounds(i, n_blocks, g.shape[0])
        np.dot(g[r0:r1], w, gx[r0:r1])
        if i == 0:
            np.dot(g[r0:r1].T, x[r0:r1], gw)
        else:
            np.dot(g[r0:r1].T, x[r0:r1], part[i - 1])
    for p in range(n_blocks - 1):
        add_into(gw, part[p])
    return gw


@numba.njit(cache=True, parallel=True)
def col_sums(g, out):
    """out[o] = sum of g[:, o] (a bias gradient), in float64: a block of rows per thread, then
    the blocks' partial sums in order."""
    n_blocks = row_blocks(g.shape[0], 256)
    partial = np.zeros((n_blocks, g.shape[1]))
    if n_blocks == 1:
        _col_sums_block(g, partial[0], 0, g.shape[0])
    else:
        for i in numba.prange(n_blocks):
            r0, r1 = block_bounds(i, n_blocks, g.shape[0])
            _col_sums_block(g, partial[i], r0, r1)
    for o in range(g.shape[1]):
        tot = 0.0
        for i in range(n_blocks):
            tot += partial[i, o]
        out[o] = tot
    return out


@numba.njit(cache=True)
def _col_sums_block(g, acc, r0, r1):
    for r in range(r0, r1):
        for o in range(g.shape[1]):
            acc[o] += g[r, o]
