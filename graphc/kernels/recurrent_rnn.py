"""The plain RNN's cores (h = tanh or relu of x W_ih^T + b_ih + h W_hh^T + b_hh): one
direction of the forward and of the backward, each one `run_blocks` region over blocks of
batch rows (see `recurrent_base`). Saved, per direction: hs [T, B, H] (time-major, by time)."""

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
from graphc.kernels.vmath import vtanh


@numba.njit(**GATE_LOOP)
def _block_fwd(i, n_blocks, x, wt_ih, wt_hh, bias, reverse, use_tanh, hs):
    """Block i: the recurrence of its batch rows r0:r1; fills their hs [T, B, H]."""
    t_len, b_n, hd = hs.shape
    r0, r1 = block_bounds(i, n_blocks, b_n)
    nb = r1 - r0
    zero = hs.dtype.type(0.0)
    xw = input_products(x, wt_ih, bias, r0, r1)
    pre = np.empty((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        if k > 0:
            mm(hs[t + 1 if reverse else t - 1, r0:r1], wt_hh, pre, xw[:, t])
        else:
            pre[:] = xw[:, t]
        hn = hs[t, r0:r1]
        if use_tanh:
            vtanh(pre.reshape(-1), hn.reshape(-1))
        else:
            for b in range(nb):
                pb, hb = pre[b], hn[b]
                for j in range(hd):
                    hb[j] = max(pb[j], zero)


@numba.njit(cache=True)
def dir_fwd(x, w_ih, w_hh, b_ih, b_hh, reverse, use_tanh, hs):
    """x [B, T, I] C-contiguous; fills hs [T, B, H]."""
    wt_ih, wt_hh = np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T)
    hd = hs.shape[2]
    bias = bias_vector(b_ih, b_hh, hd, hd, 0, 0)
    n_blocks = row_blocks(hs.shape[1], MIN_ROWS)
    run_blocks(_block_fwd, n_blocks, (n_blocks, x, wt_ih, wt_hh, bias, reverse, use_tanh, hs))


@numba.njit(**GATE_LOOP)
def _rows_bwd(gh, w_hh, hs, reverse, use_tanh, r0, r1):
    """BPTT through batch rows r0:r1: returns their pre-activation gradients of every step,
    d [rows, T, H]."""
    t_len, _, hd = hs.shape
    nb = r1 - r0
    one, zero = hs.dtype.type(1.0), hs.dtype.type(0.0)
    none = np.empty((0, 0), dtype=hs.dtype)
    d = np.empty((nb, t_len, hd), dtype=hs.dtype)
    dh = np.zeros((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        hn, g_h = hs[t, r0:r1], gh[t, r0:r1]
        for b in range(nb):
            db, yb, dhb, ghb = d[b, t], hn[b], dh[b], g_h[b]
            for j in range(hd):
                y = yb[j]
                dv = ghb[j] + dhb[j]
                if use_tanh:
                    db[j] = dv * (one - y * y)
                else:
                    db[j] = dv if y > zero else zero
        if k < t_len - 1:
            mm(d[:, t], w_hh, dh, none)
    return d


@numba.njit(cache=True)
def _block_bwd(
    i, n_blocks, gh, x, w_ih, w_hh, hs, reverse, use_tanh, gx, accumulate, gw_ih, gw_hh, gb_ih, gb_hh
):
    """Block i of the batch rows: BPTT, then its input gradient and its shares [i] of the
    weight and bias gradients."""
    r0, r1 = block_bounds(i, n_blocks, hs.shape[1])
    d = _rows_bwd(gh, w_hh, hs, reverse, use_tanh, r0, r1)
    hp = start_states(hs, r0, r1, reverse)
    block_grads(d, d, x, w_ih, hp, r0, r1, gx, accumulate, gw_ih[i], gw_hh[i], gb_ih[i], gb_hh[i])


@numba.njit(cache=True)
def dir_bwd(gh, x, w_ih, w_hh, b_ih, b_hh, hs, reverse, use_tanh, gx, accumulate):
    """gh [T, B, H]: the cotangent of hs. Writes (or adds to) gx [B, T, I] (both
    C-contiguous); returns the weight and bias gradients."""
    n_blocks = row_blocks(hs.shape[1], MIN_ROWS)
    gw_ih, gw_hh, gb_ih, gb_hh = grad_shares(n_blocks, w_ih, w_hh)
    args = (n_blocks, gh, x, w_ih, w_hh, hs, reverse, use_tanh, gx, accumulate, gw_ih, gw_hh, gb_ih, gb_hh)
    run_blocks(_block_bwd, n_blocks, args)
    return add_blocks(gw_ih, gw_hh, gb_ih, gb_hh, b_ih, b_hh)
