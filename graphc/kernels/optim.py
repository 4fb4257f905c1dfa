"""The optimizers' elementwise updates, one pass over each parameter on graphc's thread pool.

NumPy spells an Adam step as ten whole-array passes with temporaries (15-40 ms a step for a
3M-parameter model here); this is one pass. The arithmetic is runtime.optim's, operation for
operation in float32 (no fastmath: no reassociation, no FMA), so both give the same bits.
"""

import numba
import numpy as np

from graphc.kernels.parallel import block_bounds, row_blocks, run_blocks


@numba.njit(cache=True, error_model="numpy")
def adam_update(w, g, m, v, lr, b1, b2, eps, wd, decoupled, correction1, correction2):
    """One Adam(W) step on flat float32 arrays, in place: w, m, v.

    decoupled (AdamW): w *= 1 - lr*wd first; else wd is L2, added to the gradient.
    correction1/2 = 1 - b1**t, 1 - b2**t."""
    f = np.float32
    c = (f(lr), f(b1), f(b2), f(1.0 - b1), f(1.0 - b2), f(correction1), f(correction2), f(eps))
    shrink, l2 = f(1.0 - lr * wd), f(wd)
    mode = 0 if wd == 0.0 else (1 if decoupled else 2)
    n_blocks = row_blocks(w.size, 16384)
    run_blocks(_adam_block, n_blocks, (n_blocks, w, g, m, v, c, shrink, l2, mode))


@numba.njit(cache=True, error_model="numpy")
def _adam_block(blk, n_blocks, w, g, m, v, c, shrink, l2, mode):
    lo, hi = block_bounds(blk, n_blocks, w.size)
    # unsigned bounds: with signed ones Numba's negative-index check stays in the loop and LLVM
    # does not vectorise it; and one loop per mode, for the same reason
    i0, i1 = np.uint64(lo), np.uint64(hi)
    if mode == 0:
        for i in range(i0, i1):
            _adam_element(w, g[i], m, v, i, c)
    elif mode == 1:
        for i in range(i0, i1):
            w[i] *= shrink
            _adam_element(w, g[i], m, v, i, c)
    else:
        for i in range(i0, i1):
            _adam_element(w, g[i] + l2 * w[i], m, v, i, c)


@numba.njit(inline="always", error_model="numpy")
def _adam_element(w, gi, m, v, i, c):
    lr, b1, b2, c1, c2, k1, k2, eps = c
    m[i] = m[i] * b1 + c1 * gi
    v[i] = v[i] * b2 + c2 * gi * gi
    m_hat = m[i] / k1
    v_hat = v[i] / k2
    w[i] -= lr * m_hat / (np.sqrt(v_hat) + eps)


@numba.njit(cache=True, error_model="numpy")
def sum_of_squares(x):
    """sum(x**2) of a flat float32 array, accumulated in float64 (a block per thread)."""
    n_blocks = row_blocks(x.size, 16384)
    partial = np.zeros(n_blocks)
    run_blocks(_sum_sq_block, n_blocks, (n_blocks, x, partial))
    total = 0.0
    for blk in range(n_blocks):
        total += partial[blk]
    return total


@numba.njit(cache=True, error_model="numpy")
def _sum_sq_block(blk, n_blocks, x, partial):
    i0, i1 = block_bounds(blk, n_blocks, x.size)
    tot = 0.0
    for i in range(i0, i1):
        tot += np.float64(x[i]) * np.float64(x[i])
    partial[blk] = tot
