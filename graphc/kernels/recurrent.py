"""Recurrent kernels: rnn (tanh or relu), lstm, gru — batch-first, one layer, optional
reverse direction, zero initial state, torch gate orders (LSTM i,f,g,o; GRU r,z,n).

Each direction is an njit core working in time-major layout: the input projection for all
steps is one GEMM (``xt @ w_ih.T``), then each step does one [B,H] x [H,G*H] GEMM. The
backward (BPTT) collects the pre-activation gate gradients of every step into a [T*B, G*H]
matrix so the weight gradients are again single GEMMs after the time loop. Gate
nonlinearities go through ``vmath`` over whole [B, G*H] blocks (LSTM's tanh gate as
2*sigmoid(2x) - 1, so one sigmoid call covers all four gates), and the hidden bias is folded
into the input projection once (except GRU's b_hn, which r multiplies).

``rnn_fwd``/``lstm_fwd``/``gru_fwd`` and their ``_bwd`` are thin plain-Python wrappers over
these cores: they pick the directions, and the ``last`` attr changes the output's rank
([B, D*H] instead of [B, T, D*H]), which one numba specialisation cannot return. The
reverse-direction params arrive zero-size when not bidirectional and never reach numba.

Saved tensors (stacked over directions, time-major, indexed by *time* not step):
rnn: hs[D,T,B,H]; lstm: hs, cs[D,T,B,H], gates[D,T,B,4H] (after activation);
gru: hs, gates[D,T,B,3H] (r, z, n after activation), hn[D,T,B,H] (= W_hn h + b_hn).
"""

import numba
import numpy as np

from graphc.kernels.vmath import vsigmoid, vtanh


@numba.njit(cache=True)
def _input_proj(xt, w_ih, b_ih, b_hh, n_fold):
    """xt @ w_ih.T + b_ih, plus the first ``n_fold`` entries of b_hh: the hidden bias is
    folded in once here instead of once per step (GRU's b_hn cannot be: r multiplies it)."""
    y = np.dot(xt, w_ih.T)
    n = y.shape[1]
    bias = np.zeros(n, dtype=np.float64)
    if b_ih.size > 0:
        for j in range(n):
            bias[j] += b_ih[j]
    if b_hh.size > 0:
        for j in range(n_fold):
            bias[j] += b_hh[j]
    for r in range(y.shape[0]):
        for j in range(n):
            y[r, j] += bias[j]
    return y


@numba.njit(cache=True)
def _col_sums(g2, like):
    gb = np.zeros_like(like)
    if like.size > 0:
        for r in range(g2.shape[0]):
            gb += g2[r]
    return gb


@numba.njit(cache=True)
def _shift_prev(seq, reverse):
    """State fed *into* each time step: the neighbour in processing order, zero first."""
    prev = np.zeros_like(seq)
    t_len = seq.shape[0]
    if reverse:
        prev[: t_len - 1] = seq[1:]
    else:
        prev[1:] = seq[: t_len - 1]
    return prev


# --------------------------------------------------------------------------- rnn
@numba.njit(cache=True)
def _rnn_dir_fwd(xt, b_n, w_ih, w_hh, b_ih, b_hh, reverse, use_tanh, hs):
    """Fills hs[T, B, H] (the hidden state at each time)."""
    t_len, _, hd = hs.shape
    xw = _input_proj(xt, w_ih, b_ih, b_hh, hd).reshape(t_len, b_n, hd)
    pre = np.empty((b_n, hd), dtype=xt.dtype)
    h = np.zeros((b_n, hd), dtype=xt.dtype)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        np.dot(h, w_hh.T, pre)
        pre += xw[t]
        if use_tanh:
            vtanh(pre.reshape(-1), hs[t].reshape(-1))
        else:
            hs[t] = np.maximum(pre, 0.0)
        h = hs[t]


@numba.njit(cache=True)
def _rnn_dir_bwd(gh, xt, w_ih, w_hh, b_ih, b_hh, hs, reverse, use_tanh):
    t_len, b_n, hd = hs.shape
    dg = np.empty((t_len, b_n, hd), dtype=xt.dtype)
    dh = np.zeros((b_n, hd), dtype=xt.dtype)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        for b in range(b_n):
            for j in range(hd):
                d = gh[t, b, j] + dh[b, j]
                y = hs[t, b, j]
                dg[t, b, j] = d * (1.0 - y * y) if use_tanh else (d if y > 0 else 0.0)
        dh = np.dot(dg[t], w_hh)
    dg2 = dg.reshape(t_len * b_n, hd)
    hp2 = _shift_prev(hs, reverse).reshape(t_len * b_n, hd)
    gxt = np.dot(dg2, w_ih)
    return gxt, np.dot(dg2.T, xt), np.dot(dg2.T, hp2), _col_sums(dg2, b_ih), _col_sums(dg2, b_hh)


# --------------------------------------------------------------------------- lstm
@numba.njit(cache=True)
def _lstm_dir_fwd(xt, b_n, w_ih, w_hh, b_ih, b_hh, reverse, hs, cs, gates):
    """Fills hs, cs [T, B, H] and the activated gates [T, B, 4H]."""
    t_len, _, hd = hs.shape
    xw = _input_proj(xt, w_ih, b_ih, b_hh, 4 * hd).reshape(t_len, b_n, 4 * hd)
    pre = np.empty((b_n, 4 * hd), dtype=xt.dtype)
    tc = np.empty((b_n, hd), dtype=xt.dtype)
    h = np.zeros((b_n, hd), dtype=xt.dtype)
    c = np.zeros((b_n, hd), dtype=xt.dtype)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        np.dot(h, w_hh.T, pre)
        pre += xw[t]
        # One vectorised sigmoid over all four gates: tanh(g) = 2 sigmoid(2g) - 1.
        for b in range(b_n):
            for j in range(2 * hd, 3 * hd):
                pre[b, j] *= 2.0
        act = gates[t]
        vsigmoid(pre.reshape(-1), act.reshape(-1))
        cn = cs[t]
        for b in range(b_n):
            for j in range(hd):
                g = 2.0 * act[b, 2 * hd + j] - 1.0
                act[b, 2 * hd + j] = g
                cn[b, j] = act[b, hd + j] * c[b, j] + act[b, j] * g
        vtanh(cn.reshape(-1), tc.reshape(-1))
        hn = hs[t]
        for b in range(b_n):
            for j in range(hd):
                hn[b, j] = act[b, 3 * hd + j] * tc[b, j]
        h = hn
        c = cn


@numba.njit(cache=True)
def _lstm_dir_bwd(gh, xt, w_ih, w_hh, b_ih, b_hh, hs, cs, gates, reverse):
    t_len, b_n, hd = hs.shape
    cp = _shift_prev(cs, reverse)
    tcs = np.empty_like(cs)
    vtanh(cs.reshape(-1), tcs.reshape(-1))
    dg = np.empty((t_len, b_n, 4 * hd), dtype=xt.dtype)
    dh = np.zeros((b_n, hd), dtype=xt.dtype)
    dc = np.zeros((b_n, hd), dtype=np.float64)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        for b in range(b_n):
            for j in range(hd):
                ig = gates[t, b, j]
                fg = gates[t, b, hd + j]
                gg = gates[t, b, 2 * hd + j]
                og = gates[t, b, 3 * hd + j]
                tc = tcs[t, b, j]
                dhv = gh[t, b, j] + dh[b, j]
                dcv = dc[b, j] + dhv * og * (1.0 - tc * tc)
                dc[b, j] = dcv * fg  # flows to the previous cell state
                dg[t, b, j] = dcv * gg * ig * (1.0 - ig)
                dg[t, b, hd + j] = dcv * cp[t, b, j] * fg * (1.0 - fg)
                dg[t, b, 2 * hd + j] = dcv * ig * (1.0 - gg * gg)
                dg[t, b, 3 * hd + j] = dhv * tc * og * (1.0 - og)
        dh = np.dot(dg[t], w_hh)
    dg2 = dg.reshape(t_len * b_n, 4 * hd)
    hp2 = _shift_prev(hs, reverse).reshape(t_len * b_n, hd)
    gxt = np.dot(dg2, w_ih)
    return gxt, np.dot(dg2.T, xt), np.dot(dg2.T, hp2), _col_sums(dg2, b_ih), _col_sums(dg2, b_hh)


# --------------------------------------------------------------------------- gru
@numba.njit(cache=True)
def _gru_dir_fwd(xt, b_n, w_ih, w_hh, b_ih, b_hh, reverse, hs, gates, hns):
    """Fills hs [T, B, H], the activated gates [T, B, 3H] and hns = W_hn h + b_hn [T, B, H]."""
    t_len, _, hd = hs.shape
    xw = _input_proj(xt, w_ih, b_ih, b_hh, 2 * hd).reshape(t_len, b_n, 3 * hd)
    b_hn = np.zeros(hd, dtype=xt.dtype)
    if b_hh.size > 0:
        b_hn[:] = b_hh[2 * hd :]
    a = np.empty((b_n, 3 * hd), dtype=xt.dtype)
    pre_rz = np.empty((b_n, 2 * hd), dtype=xt.dtype)
    rz = np.empty((b_n, 2 * hd), dtype=xt.dtype)
    pre_n = np.empty((b_n, hd), dtype=xt.dtype)
    n = np.empty((b_n, hd), dtype=xt.dtype)
    h = np.zeros((b_n, hd), dtype=xt.dtype)
    for k in range(t_len):
        t = t_len - 1 - k if reverse else k
        np.dot(h, w_hh.T, a)
        for b in range(b_n):
            for j in range(2 * hd):
                pre_rz[b, j] = xw[t, b, j] + a[b, j]
        vsigmoid(pre_rz.reshape(-1), rz.reshape(-1))
        for b in range(b_n):
            for j in range(hd):
                # r gates W_hn h + b_hn, i.e. *after* the hidden bias (torch)
                hn = a[b, 2 * hd + j] + b_hn[j]
                hns[t, b, j] = hn
                pre_n[b, j] = xw[t, b, 2 * hd + j] + rz[b, j] * hn
        vtanh(pre_n.reshape(-1), n.reshape(-1))
        for b in range(b_n):
            for j in range(hd):
                z = rz[b, hd + j]
                hs[t, b, j] = (1.0 - z) * n[b, j] + z * h[b, j]
                gates[t, b, j] = rz[b, j]
                gates[t, b, hd + j] = z
                gates[t, b, 2 * hd + j] = n[b, j]
        h = hs[t]


@numba.njit(cache=True)
def _gru_dir_bwd(gh, xt, w_ih, w_hh, b_ih, b_hh, hs, gates, hns, reverse):
    t_len, b_n, hd = hs.shape
    hp = _shift_prev(hs, reverse)
    dgi = np.empty((t_len, b_n, 3 * hd), dtype=xt.dtype)  # grads of the x-side pre-activations
    dgh = np.empty((t_len, b_n, 3 * hd), dtype=xt.dtype)  # grads of the h-side pre-activations
    dh = np.zeros((b_n, hd), dtype=xt.dtype)
    direct = np.empty((b_n, hd), dtype=xt.dtype)
    for k in range(t_len):
        t = k if reverse else t_len - 1 - k
        for b in range(b_n):
            for j in range(hd):
                r = gates[t, b, j]
                z = gates[t, b, hd + j]
                n = gates[t, b, 2 * hd + j]
                dhv = gh[t, b, j] + dh[b, j]
                dnp = dhv * (1.0 - z) * (1.0 - n * n)
                drp = dnp * hns[t, b, j] * r * (1.0 - r)
                dzp = dhv * (hp[t, b, j] - n) * z * (1.0 - z)
                dgi[t, b, j] = drp
                dgi[t, b, hd + j] = dzp
                dgi[t, b, 2 * hd + j] = dnp
                dgh[t, b, j] = drp
                dgh[t, b, hd + j] = dzp
                dgh[t, b, 2 * hd + j] = dnp * r
                direct[b, j] = dhv * z
        dh = np.dot(dgh[t], w_hh) + direct
    dgi2 = dgi.reshape(t_len * b_n, 3 * hd)
    dgh2 = dgh.reshape(t_len * b_n, 3 * hd)
    hp2 = hp.reshape(t_len * b_n, hd)
    gxt = np.dot(dgi2, w_ih)
    return gxt, np.dot(dgi2.T, xt), np.dot(dgh2.T, hp2), _col_sums(dgi2, b_ih), _col_sums(dgh2, b_hh)


# --------------------------------------------------------------------------- python wrappers
def _time_major(x: np.ndarray) -> np.ndarray:
    b_n, t_len, n_in = x.shape
    return np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(t_len * b_n, n_in)


def _directions(bidirectional, p0, p1):
    return [(p0, False), (p1, True)] if bidirectional else [(p0, False)]


def _assemble_output(hs: np.ndarray, last: bool, out: np.ndarray | None) -> np.ndarray:
    """Stacked states hs[D,T,B,H] -> out[B,T,D*H], or h_n-style out[B,D*H] when ``last``
    (one strided copy; ``out`` allocated when None)."""
    n_dir, t_len, b_n, hd = hs.shape
    if out is None:
        out = np.empty((b_n, n_dir * hd) if last else (b_n, t_len, n_dir * hd), dtype=hs.dtype)
    if last:
        # forward direction ends at t=T-1, the reverse one at t=0 (torch's h_n)
        out3 = out.reshape(b_n, n_dir, hd)
        for d in range(n_dir):
            out3[:, d] = hs[d, t_len - 1 if d == 0 else 0]
    else:
        out.reshape(b_n, t_len, n_dir, hd).transpose(2, 1, 0, 3)[...] = hs
    return out


def _split_grad(g_out: np.ndarray, n_dir: int, t_len: int, hd: int, last: bool):
    """Output cotangent -> per-direction cotangent of the hidden states, [T,B,H] each."""
    b_n = g_out.shape[0]
    res = []
    for d in range(n_dir):
        gh = np.zeros((t_len, b_n, hd), dtype=g_out.dtype)
        if last:
            gh[t_len - 1 if d == 0 else 0] = g_out[:, d * hd : (d + 1) * hd]
        else:
            gh[:] = g_out[:, :, d * hd : (d + 1) * hd].transpose(1, 0, 2)
        res.append(gh)
    return res


def _finish_bwd(x, gxts, grads_dirs, p1, into_x):
    """Sums the directions' time-major input gradients into gx[B,T,I] (``into_x`` or a new
    array) in one strided pass."""
    b_n, t_len, n_in = x.shape
    if into_x is None:
        into_x = np.empty_like(x)
    gx_tm = into_x.transpose(1, 0, 2)  # [T,B,I] view
    g0 = gxts[0].reshape(t_len, b_n, n_in)
    if len(gxts) == 1:
        gx_tm[...] = g0
    else:
        np.add(g0, gxts[1].reshape(t_len, b_n, n_in), out=gx_tm)
    g1 = grads_dirs[1] if len(grads_dirs) == 2 else tuple(np.zeros_like(p) for p in p1)
    return (into_x, *grads_dirs[0], *g1)


def rnn_fwd(
    x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, nonlinearity_tanh, out=None,
):  # fmt: skip
    xt = _time_major(x)
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    b_n, t_len, hd = x.shape[0], x.shape[1], w_hh_0.shape[1]
    hs = np.empty((len(dirs), t_len, b_n, hd), dtype=x.dtype)
    for d, (p, rev) in enumerate(dirs):
        _rnn_dir_fwd(xt, b_n, *p, rev, bool(nonlinearity_tanh), hs[d])
    return _assemble_output(hs, last, out), hs


def rnn_bwd(
    g_out, x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, nonlinearity_tanh, saved0, out=None, into_x=None,
):  # fmt: skip
    xt = _time_major(x)
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    ghs = _split_grad(g_out, len(dirs), x.shape[1], w_hh_0.shape[1], last)
    res = [
        _rnn_dir_bwd(ghs[d], xt, *p, saved0[d], rev, bool(nonlinearity_tanh))
        for d, (p, rev) in enumerate(dirs)
    ]
    return _finish_bwd(x, [r[0] for r in res], [r[1:] for r in res], p1, into_x)


def lstm_fwd(
    x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, out=None,
):  # fmt: skip
    xt = _time_major(x)
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    b_n, t_len, hd = x.shape[0], x.shape[1], w_hh_0.shape[1]
    hs = np.empty((len(dirs), t_len, b_n, hd), dtype=x.dtype)
    cs = np.empty_like(hs)
    gates = np.empty((len(dirs), t_len, b_n, 4 * hd), dtype=x.dtype)
    for d, (p, rev) in enumerate(dirs):
        _lstm_dir_fwd(xt, b_n, *p, rev, hs[d], cs[d], gates[d])
    return _assemble_output(hs, last, out), hs, cs, gates


def lstm_bwd(
    g_out, x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, saved0, saved1, saved2, out=None, into_x=None,
):  # fmt: skip
    xt = _time_major(x)
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    ghs = _split_grad(g_out, len(dirs), x.shape[1], w_hh_0.shape[1], last)
    res = [
        _lstm_dir_bwd(ghs[d], xt, *p, saved0[d], saved1[d], saved2[d], rev) for d, (p, rev) in enumerate(dirs)
    ]
    return _finish_bwd(x, [r[0] for r in res], [r[1:] for r in res], p1, into_x)


def gru_fwd(
    x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, out=None,
):  # fmt: skip
    xt = _time_major(x)
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    b_n, t_len, hd = x.shape[0], x.shape[1], w_hh_0.shape[1]
    hs = np.empty((len(dirs), t_len, b_n, hd), dtype=x.dtype)
    gates = np.empty((len(dirs), t_len, b_n, 3 * hd), dtype=x.dtype)
    hns = np.empty_like(hs)
    for d, (p, rev) in enumerate(dirs):
        _gru_dir_fwd(xt, b_n, *p, rev, hs[d], gates[d], hns[d])
    return _assemble_output(hs, last, out), hs, gates, hns


def gru_bwd(
    g_out, x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, saved0, saved1, saved2, out=None, into_x=None,
):  # fmt: skip
    xt = _time_major(x)
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    ghs = _split_grad(g_out, len(dirs), x.shape[1], w_hh_0.shape[1], last)
    res = [
        _gru_dir_bwd(ghs[d], xt, *p, saved0[d], saved1[d], saved2[d], rev) for d, (p, rev) in enumerate(dirs)
    ]
    return _finish_bwd(x, [r[0] for r in res], [r[1:] for r in res], p1, into_x)
