"""The LSTM's cores (torch gate order i, f, g, o): one direction of the forward and of the
backward (BPTT), each one `run_blocks` region over blocks of batch rows (see `recurrent_base`).

The g gate's weights and bias are doubled (exact) so that tanh(g) = 2 sigmoid(2g) - 1 and one
``vsigmoid`` covers all four gates of a step. Saved, per direction (time-major, indexed
by time, not step): hs, cs [T, B, H] and the activated gates [T, B, 4H], each step's [B, 4H]
stored gate-major, as [4, B, H].

Why gate-major: the gate loops then run flat over a block's rows x H (4096 elements at h128
B32), and LLVM checks their dozen arrays for overlap once per step before the vector loop.
Run row by row (128 elements), those checks cost as much as the arithmetic and the
backward's loop took the scalar fallback: 0.41 ms of the h128 backward, 0.15 ms flat.

The forward makes each step's x side (x_t @ W_ih^T + bias) in the step loop, not all steps
in one product before it (`recurrent_base.input_products`): that [B, T, 4H] array (26 MB at
h256 T100 B64) no longer fits in cache and each step read its slice back from memory.
"""

import numba
import numpy as np

from graphc.kernels.parallel import block_bounds, row_blocks, run_blocks
from graphc.kernels.recurrent_base import (
    GATE_LOOP,
    MIN_ROWS,
    add_blocks,
    bias_vector,
    block_grads,
    grad_shares,
    start_states,
)
from graphc.kernels.tile_gemm import mm, mm_bias
from graphc.kernels.vmath import vsigmoid, vtanh


@numba.njit(cache=True)
def _transposed(w, g_lo, g_hi):
    """w.T [K, 4H] (so the products read contiguous rows) with columns g_lo:g_hi, the g
    gate's, doubled (`bias_vector` doubles the bias alike). Copied in 16 x 16 tiles that
    stay in L1: ``np.ascontiguousarray(w.T)`` took 0.15 ms at h128."""
    g, n = w.shape
    wt = np.empty((n, g), dtype=w.dtype)
    one, two = w.dtype.type(1.0), w.dtype.type(2.0)
    for r0 in range(0, g, 16):
        for i0 in range(0, n, 16):  # a 16 x 16 tile: 16 lines read, 16 written
            for r in range(r0, min(r0 + 16, g)):
                scale = two if g_lo <= r < g_hi else one
                src = w[r]
                for i in range(i0, min(i0 + 16, n)):
                    wt[i, r] = src[i] * scale
    return wt


@numba.njit(**GATE_LOOP)
def _block_fwd(i, n_blocks, x, wt_ih, wt_hh, bias, reverse, hs, cs, gates):
    """Block i: the recurrence of its batch rows r0:r1; fills their hs, cs [T, B, H] and gates
    (each step's [B, 4H] stored gate-major, [4, B, H], see the module doc)."""
    t_len, b_n, hd = hs.shape
    r0, r1 = block_bounds(i, n_blocks, b_n)
    nb, n = r1 - r0, (r1 - r0) * hd
    one, two = hs.dtype.type(1.0), hs.dtype.type(2.0)
    pre = np.empty((4, nb, hd), dtype=hs.dtype)  # gate-major, like the saved gates
    tc = np.empty(n, dtype=hs.dtype)
    zero_state = np.zeros((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        tp = t + 1 if reverse else t - 1  # the step before, in processing order
        c_prev = zero_state if k == 0 else cs[tp, r0:r1]
        act = gates[t].reshape(4, b_n, hd)
        # pre = bias + x_t @ wt_ih + h_prev @ wt_hh, one gate's columns at a time; the x side
        # step by step too (not all steps at once before the loop), so it stays in cache
        for q in range(4):
            cols = slice(q * hd, (q + 1) * hd)
            mm_bias(x[r0:r1, t], wt_ih[:, cols], pre[q], bias[cols])
            if k > 0:
                mm(hs[tp, r0:r1], wt_hh[:, cols], pre[q], pre[q])
            vsigmoid(pre[q].reshape(-1), act[q, r0:r1].reshape(-1))
        # flat loops over the block's rows: one alias check per step, not one per row
        a_i, a_f = act[0, r0:r1].reshape(-1), act[1, r0:r1].reshape(-1)
        a_g, a_o = act[2, r0:r1].reshape(-1), act[3, r0:r1].reshape(-1)
        cn, cp = cs[t, r0:r1].reshape(-1), c_prev.reshape(-1)
        for j in range(n):
            g = two * a_g[j] - one
            a_g[j] = g
            cn[j] = a_f[j] * cp[j] + a_i[j] * g
        vtanh(cn, tc)
        hn = hs[t, r0:r1].reshape(-1)
        for j in range(n):
            hn[j] = a_o[j] * tc[j]


@numba.njit(cache=True)
def dir_fwd(x, w_ih, w_hh, b_ih, b_hh, reverse, hs, cs, gates):
    """x [B, T, I] C-contiguous; fills hs, cs [T, B, H] and the activated gates [T, B, 4H]
    (gate-major steps)."""
    hd = hs.shape[2]
    wt_ih, wt_hh = _transposed(w_ih, 2 * hd, 3 * hd), _transposed(w_hh, 2 * hd, 3 * hd)
    bias = bias_vector(b_ih, b_hh, 4 * hd, 4 * hd, 2 * hd, 3 * hd)
    n_blocks = row_blocks(hs.shape[1], MIN_ROWS)
    run_blocks(_block_fwd, n_blocks, (n_blocks, x, wt_ih, wt_hh, bias, reverse, hs, cs, gates))


@numba.njit(**GATE_LOOP)
def _rows_bwd(gh, w_hh, hs, cs, gates, reverse, r0, r1):
    """BPTT through batch rows r0:r1: returns their pre-activation gate gradients of every
    step, d [rows, T, 4H] (the rest is products over all steps, `block_grads`)."""
    t_len, b_n, hd = hs.shape
    nb, n = r1 - r0, (r1 - r0) * hd
    one = hs.dtype.type(1.0)
    d = np.empty((nb, t_len, 4 * hd), dtype=hs.dtype)
    ds = np.empty((4, nb, hd), dtype=hs.dtype)  # this step's d, gate-major like the gates
    dh = np.zeros((nb, hd), dtype=hs.dtype)
    dc = np.zeros(n, dtype=hs.dtype)
    tc = np.empty(n, dtype=hs.dtype)
    zero_state = np.zeros((nb, hd), dtype=hs.dtype)
    dh_f = dh.reshape(-1)
    d_i, d_f, d_g, d_o = ds[0].reshape(-1), ds[1].reshape(-1), ds[2].reshape(-1), ds[3].reshape(-1)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        tp = t + 1 if reverse else t - 1
        first = k == t_len - 1  # the forward's first step: zero previous state
        cp = (zero_state if first else cs[tp, r0:r1]).reshape(-1)
        vtanh(cs[t, r0:r1].reshape(-1), tc)
        act = gates[t].reshape(4, b_n, hd)
        a_i, a_f = act[0, r0:r1].reshape(-1), act[1, r0:r1].reshape(-1)
        a_g, a_o = act[2, r0:r1].reshape(-1), act[3, r0:r1].reshape(-1)
        ghf = gh[t, r0:r1].reshape(-1)
        # one flat loop over the block's rows (one alias check per step, not one per row)
        for j in range(n):
            ig, fg, gg, og = a_i[j], a_f[j], a_g[j], a_o[j]
            tcv = tc[j]
            dhv = ghf[j] + dh_f[j]
            dcv = dc[j] + dhv * og * (one - tcv * tcv)
            dc[j] = dcv * fg  # flows to the previous cell state
            d_i[j] = dcv * gg * ig * (one - ig)
            d_f[j] = dcv * cp[j] * fg * (one - fg)
            d_g[j] = dcv * ig * (one - gg * gg)
            d_o[j] = dhv * tcv * og * (one - og)
        if not first:  # dh = d @ w_hh, one gate's K-slice at a time
            for q in range(4):
                mm(ds[q], w_hh[q * hd : (q + 1) * hd], dh, dh if q > 0 else zero_state[:0])
        for b in range(nb):  # batch-major rows for the products after the recurrence
            for q in range(4):
                src, dst = ds[q, b], d[b, t, q * hd : (q + 1) * hd]
                for j in range(hd):
                    dst[j] = src[j]
    return d


@numba.njit(cache=True)
def _block_bwd(
    i, n_blocks, gh, x, w_ih, w_hh, hs, cs, gates, reverse, gx, accumulate, gw_ih, gw_hh, gb_ih, gb_hh
):
    """Block i of the batch rows: BPTT, then its input gradient and its shares [i] of the
    weight and bias gradients."""
    r0, r1 = block_bounds(i, n_blocks, hs.shape[1])
    d = _rows_bwd(gh, w_hh, hs, cs, gates, reverse, r0, r1)
    hp = start_states(hs, r0, r1, reverse)
    block_grads(d, d, x, w_ih, hp, r0, r1, gx, accumulate, gw_ih[i], gw_hh[i], gb_ih[i], gb_hh[i])


@numba.njit(cache=True)
def dir_bwd(gh, x, w_ih, w_hh, b_ih, b_hh, hs, cs, gates, reverse, gx, accumulate):
    """gh [T, B, H]: the cotangent of hs. Writes (or adds to) gx [B, T, I] (both
    C-contiguous); returns the weight and bias gradients."""
    n_blocks = row_blocks(hs.shape[1], MIN_ROWS)
    gw_ih, gw_hh, gb_ih, gb_hh = grad_shares(n_blocks, w_ih, w_hh)
    args = (n_blocks, gh, x, w_ih, w_hh, hs, cs, gates, reverse, gx, accumulate, gw_ih, gw_hh, gb_ih, gb_hh)
    run_blocks(_block_bwd, n_blocks, args)
    return add_blocks(gw_ih, gw_hh, gb_ih, gb_hh, b_ih, b_hh)
