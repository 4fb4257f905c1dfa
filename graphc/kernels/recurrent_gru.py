"""The GRU's cores (torch gate order r, z, n; n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn))):
one direction of the forward and of the backward, each one `run_blocks` region over blocks of
batch rows (see `recurrent_base`). b_hn is not folded into the input's products (r multiplies
it), so the h side's gradients differ from the x side's in the n block and both are kept.
Saved, per direction (time-major, by time): hs [T, B, H], the activated gates [T, B, 3H] and
hns = W_hn h + b_hn [T, B, H].
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


@numba.njit(**GATE_LOOP)
def _block_fwd(i, n_blocks, x, wt_ih, wt_hh, bias, b_hh, reverse, hs, gates, hns):
    """Block i: the recurrence of its batch rows r0:r1; fills their hs [T, B, H], activated
    gates [T, B, 3H] and hns [T, B, H]."""
    t_len, b_n, hd = hs.shape
    r0, r1 = block_bounds(i, n_blocks, b_n)
    nb = r1 - r0
    one = hs.dtype.type(1.0)
    none = np.empty((0, 0), dtype=hs.dtype)
    xw = input_products(x, wt_ih, bias, r0, r1)  # x side, with the folded biases
    b_hn = np.zeros(hd, dtype=hs.dtype)
    if b_hh.size > 0:
        b_hn[:] = b_hh[2 * hd :]
    ah = np.zeros((nb, 3 * hd), dtype=hs.dtype)  # h side (zero into the first step)
    pre_rz = np.empty((nb, 2 * hd), dtype=hs.dtype)
    rz = np.empty((nb, 2 * hd), dtype=hs.dtype)
    pre_n = np.empty((nb, hd), dtype=hs.dtype)
    n = np.empty((nb, hd), dtype=hs.dtype)
    zero_state = np.zeros((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        tp = t + 1 if reverse else t - 1
        ax = xw[:, t]
        h_prev = zero_state
        if k > 0:
            h_prev = hs[tp, r0:r1]
            mm(h_prev, wt_hh, ah, none)
        for b in range(nb):
            for j in range(2 * hd):
                pre_rz[b, j] = ax[b, j] + ah[b, j]
        vsigmoid(pre_rz.reshape(-1), rz.reshape(-1))
        hn_t = hns[t, r0:r1]
        for b in range(nb):
            rb, axb, ahb, hnb, pnb = rz[b], ax[b], ah[b], hn_t[b], pre_n[b]
            for j in range(hd):
                hn = ahb[2 * hd + j] + b_hn[j]  # r gates W_hn h + b_hn, after the bias (torch)
                hnb[j] = hn
                pnb[j] = axb[2 * hd + j] + rb[j] * hn
        vtanh(pre_n.reshape(-1), n.reshape(-1))
        h_t, act = hs[t, r0:r1], gates[t, r0:r1]
        for b in range(nb):
            rb, nb_, hb, hpb, ab = rz[b], n[b], h_t[b], h_prev[b], act[b]
            for j in range(hd):
                z = rb[hd + j]
                hb[j] = (one - z) * nb_[j] + z * hpb[j]
                ab[j] = rb[j]
                ab[hd + j] = z
                ab[2 * hd + j] = nb_[j]


@numba.njit(cache=True)
def dir_fwd(x, w_ih, w_hh, b_ih, b_hh, reverse, hs, gates, hns):
    """x [B, T, I] C-contiguous; fills hs, gates and hns."""
    wt_ih, wt_hh = np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T)
    hd = hs.shape[2]
    bias = bias_vector(b_ih, b_hh, 3 * hd, 2 * hd, 0, 0)
    n_blocks = row_blocks(hs.shape[1], MIN_ROWS)
    run_blocks(_block_fwd, n_blocks, (n_blocks, x, wt_ih, wt_hh, bias, b_hh, reverse, hs, gates, hns))


@numba.njit(**GATE_LOOP)
def _rows_bwd(gh, w_hh, hs, gates, hns, reverse, r0, r1):
    """BPTT through batch rows r0:r1: returns the gradients of their x-side and h-side
    pre-activations of every step, dgi and dgh [rows, T, 3H]."""
    t_len, _, hd = hs.shape
    nb = r1 - r0
    one = hs.dtype.type(1.0)
    dgi = np.empty((nb, t_len, 3 * hd), dtype=hs.dtype)
    dgh = np.empty((nb, t_len, 3 * hd), dtype=hs.dtype)
    direct = np.empty((nb, hd), dtype=hs.dtype)  # dh through h = ... + z h_prev
    dh = np.zeros((nb, hd), dtype=hs.dtype)
    zero_state = np.zeros((nb, hd), dtype=hs.dtype)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        tp = t + 1 if reverse else t - 1
        first = k == t_len - 1
        h_prev = zero_state if first else hs[tp, r0:r1]
        act, hn_t, g_h = gates[t, r0:r1], hns[t, r0:r1], gh[t, r0:r1]
        for b in range(nb):
            ab, hnb, hpb, ghb, dhb = act[b], hn_t[b], h_prev[b], g_h[b], dh[b]
            dib, dhhb, drb = dgi[b, t], dgh[b, t], direct[b]
            for j in range(hd):
                r, z, n = ab[j], ab[hd + j], ab[2 * hd + j]
                dhv = ghb[j] + dhb[j]
                dnp = dhv * (one - z) * (one - n * n)
                drp = dnp * hnb[j] * r * (one - r)
                dzp = dhv * (hpb[j] - n) * z * (one - z)
                dib[j] = drp
                dib[hd + j] = dzp
                dib[2 * hd + j] = dnp
                dhhb[j] = drp
                dhhb[hd + j] = dzp
                dhhb[2 * hd + j] = dnp * r
                drb[j] = dhv * z
        if not first:
            mm(dgh[:, t], w_hh, dh, direct)
    return dgi, dgh


@numba.njit(cache=True)
def _block_bwd(
    i, n_blocks, gh, x, w_ih, w_hh, hs, gates, hns, reverse, gx, accumulate, gw_ih, gw_hh, gb_ih, gb_hh
):
    """Block i of the batch rows: BPTT, then its input gradient and its shares [i] of the
    weight and bias gradients."""
    r0, r1 = block_bounds(i, n_blocks, hs.shape[1])
    dgi, dgh = _rows_bwd(gh, w_hh, hs, gates, hns, reverse, r0, r1)
    hp = start_states(hs, r0, r1, reverse)
    block_grads(dgi, dgh, x, w_ih, hp, r0, r1, gx, accumulate, gw_ih[i], gw_hh[i], gb_ih[i], gb_hh[i])


@numba.njit(cache=True)
def dir_bwd(gh, x, w_ih, w_hh, b_ih, b_hh, hs, gates, hns, reverse, gx, accumulate):
    """gh [T, B, H]: the cotangent of hs. Writes (or adds to) gx [B, T, I] (both
    C-contiguous); returns the weight and bias gradients."""
    n_blocks = row_blocks(hs.shape[1], MIN_ROWS)
    gw_ih, gw_hh, gb_ih, gb_hh = grad_shares(n_blocks, w_ih, w_hh)
    args = (n_blocks, gh, x, w_ih, w_hh, hs, gates, hns, reverse, gx, accumulate, gw_ih, gw_hh, gb_ih, gb_hh)
    run_blocks(_block_bwd, n_blocks, args)
    return add_blocks(gw_ih, gw_hh, gb_ih, gb_hh, b_ih, b_hh)
