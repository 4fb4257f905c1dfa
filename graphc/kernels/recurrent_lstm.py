"""The LSTM's cores (torch gate order i, f, g, o): one direction of the forward and of the
backward (BPTT), each one `run_blocks` region over blocks of batch rows (see `recurrent_base`).

The g gate's weights and bias are doubled (exact) so that tanh(g) = 2 sigmoid(2g) - 1 and one
``vsigmoid`` call covers all four gates of a step. Saved, per direction (time-major, indexed
by time, not step): hs, cs [T, B, H] and the activated gates [T, B, 4H].
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
    input_products,
    start_states,
)
from graphc.kernels.tile_gemm import mm
from graphc.kernels.vmath import vsigmoid, vtanh


@numba.njit(cache=True)
def _weights(w_ih, w_hh):
    """w_ih.T [I, 4H], w_hh.T [H, 4H] (so the products read contiguous rows) with the g gate's
    columns doubled (`bias_vector` doubles the bias alike)."""
    hd = w_hh.shape[1]
    wt_ih = np.ascontiguousarray(w_ih.T)
    wt_hh = np.ascontiguousarray(w_hh.T)
    for j in range(2 * hd, 3 * hd):
        for i in range(wt_ih.shape[0]):
            wt_ih[i, j] *= 2.0
        for i in range(hd):
            wt_hh[i, j] *= 2.0
    return wt_ih, wt_hh


@numba.njit(**GATE_LOOP)
def _block_fwd(i, n_blocks, x, wt_ih, wt_hh, bias, reverse, hs, cs, gates):
    """Block i: the recurrence of its batch rows r0:r1; fills their hs, cs [T, B, H] and gates
    [T, B, 4H]."""
    t_len, b_n, hd = hs.shape
    r0, r1 = block_bounds(i, n_blocks, b_n)
    nb = r1 - r0
    one, two = hs.dtype.type(1.0), hs.dtype.type(2.0)
    xw = input_products(x, wt_ih, bias, r0, r1)
    pre = np.empty((nb, 4 * hd), dtype=hs.dtype)
    tc = np.empty((nb, hd), dtype=hs.dtype)
    zero_state = np.zeros((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        tp = t + 1 if reverse else t - 1  # the step before, in processing order
        c_prev = zero_state
        if k > 0:
            mm(hs[tp, r0:r1], wt_hh, pre, xw[:, t])
            c_prev = cs[tp, r0:r1]
        else:
            pre[:] = xw[:, t]
        act = gates[t, r0:r1]
        vsigmoid(pre.reshape(-1), act.reshape(-1))
        cn = cs[t, r0:r1]
        for b in range(nb):
            ab, cb, cpb = act[b], cn[b], c_prev[b]
            for j in range(hd):
                g = two * ab[2 * hd + j] - one
                ab[2 * hd + j] = g
                cb[j] = ab[hd + j] * cpb[j] + ab[j] * g
        vtanh(cn.reshape(-1), tc.reshape(-1))
        hn = hs[t, r0:r1]
        for b in range(nb):
            ab, hb, tb = act[b], hn[b], tc[b]
            for j in range(hd):
                hb[j] = ab[3 * hd + j] * tb[j]


@numba.njit(cache=True)
def dir_fwd(x, w_ih, w_hh, b_ih, b_hh, reverse, hs, cs, gates):
    """x [B, T, I] C-contiguous; fills hs, cs [T, B, H] and the activated gates [T, B, 4H]."""
    wt_ih, wt_hh = _weights(w_ih, w_hh)
    hd = hs.shape[2]
    bias = bias_vector(b_ih, b_hh, 4 * hd, 4 * hd, 2 * hd, 3 * hd)
    n_blocks = row_blocks(hs.shape[1], MIN_ROWS)
    run_blocks(_block_fwd, n_blocks, (n_blocks, x, wt_ih, wt_hh, bias, reverse, hs, cs, gates))


@numba.njit(**GATE_LOOP)
def _rows_bwd(gh, w_hh, hs, cs, gates, reverse, r0, r1):
    """BPTT through batch rows r0:r1: returns their pre-activation gate gradients of every
    step, d [rows, T, 4H] (the rest is products over all steps, `block_grads`)."""
    t_len, _, hd = hs.shape
    nb = r1 - r0
    one = hs.dtype.type(1.0)
    none = np.empty((0, 0), dtype=hs.dtype)
    d = np.empty((nb, t_len, 4 * hd), dtype=hs.dtype)
    dh = np.zeros((nb, hd), dtype=hs.dtype)
    dc = np.zeros((nb, hd), dtype=hs.dtype)
    tc = np.empty((nb, hd), dtype=hs.dtype)
    zero_state = np.zeros((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        tp = t + 1 if reverse else t - 1
        first = k == t_len - 1  # the forward's first step: zero previous state
        c_prev = zero_state if first else cs[tp, r0:r1]
        vtanh(cs[t, r0:r1].reshape(-1), tc.reshape(-1))
        act, g_h = gates[t, r0:r1], gh[t, r0:r1]
        for b in range(nb):
            # one view per gate (not offsets into one row): LLVM then vectorises the loop
            ab, db, cpb, tb, dhb, dcb, ghb = act[b], d[b, t], c_prev[b], tc[b], dh[b], dc[b], g_h[b]
            a_i, a_f, a_g, a_o = ab[:hd], ab[hd : 2 * hd], ab[2 * hd : 3 * hd], ab[3 * hd :]
            d_i, d_f, d_g, d_o = db[:hd], db[hd : 2 * hd], db[2 * hd : 3 * hd], db[3 * hd :]
            for j in range(hd):
                ig, fg, gg, og = a_i[j], a_f[j], a_g[j], a_o[j]
                tcv = tb[j]
                dhv = ghb[j] + dhb[j]
                dcv = dcb[j] + dhv * og * (one - tcv * tcv)
                dcb[j] = dcv * fg  # flows to the previous cell state
                d_i[j] = dcv * gg * ig * (one - ig)
                d_f[j] = dcv * cpb[j] * fg * (one - fg)
                d_g[j] = dcv * ig * (one - gg * gg)
                d_o[j] = dhv * tcv * og * (one - og)
        if not first:
            mm(d[:, t], w_hh, dh, none)
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
