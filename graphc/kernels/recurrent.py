"""Recurrent kernels: rnn (tanh or relu), lstm, gru — batch-first, one layer, optional
reverse direction, zero initial state, torch gate orders (LSTM i,f,g,o; GRU r,z,n).

``rnn_fwd``/``lstm_fwd``/``gru_fwd`` and their ``_bwd`` are thin plain-Python wrappers over
the njit cores of one direction (`recurrent_rnn`, `recurrent_lstm`, `recurrent_gru`; what
they share and how they split the work, in `recurrent_base`): they pick the directions, and
the ``last`` attr changes the output's rank ([B, D*H] instead of [B, T, D*H]), which one
numba specialisation cannot return. The reverse-direction params arrive zero-size when not
bidirectional and never reach numba.

Saved tensors (stacked over directions, time-major, indexed by *time* not step):
rnn: hs[D,T,B,H]; lstm: hs, cs[D,T,B,H], gates[D,T,B,4H] (after activation);
gru: hs, gates[D,T,B,3H] (r, z, n after activation), hn[D,T,B,H] (= W_hn h + b_hn).
"""

import numpy as np

from graphc.kernels import recurrent_gru, recurrent_lstm, recurrent_rnn


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


def _run_bwd(core, x, dirs, ghs, saved, into_x, p1, *flags):
    """Runs each direction's backward core (the second adds its input gradient to the
    first's) and returns (gx, the first direction's param grads, the second's or zeros). A
    zero-size `into_x` (`Kernel.skips`: nobody needs the input's gradient) is returned as it
    is, and the cores skip that product."""
    x = np.ascontiguousarray(x)  # the cores read [B, T, I] as [B*T, I] rows
    in_place = into_x is not None and into_x.flags.c_contiguous
    gx = into_x if in_place else np.empty_like(x)
    grads = [
        core(ghs[d], x, *p, *(s[d] for s in saved), rev, *flags, gx, d > 0) for d, (p, rev) in enumerate(dirs)
    ]
    if into_x is not None and not in_place:
        into_x[...] = gx
        gx = into_x
    g1 = grads[1] if len(grads) == 2 else tuple(np.zeros_like(p) for p in p1)
    return (gx, *grads[0], *g1)


def rnn_fwd(
    x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, nonlinearity_tanh, out=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    x = np.ascontiguousarray(x)  # the cores read [B, T, I] as [B*T, I] rows
    b_n, t_len, hd = x.shape[0], x.shape[1], w_hh_0.shape[1]
    hs = np.empty((len(dirs), t_len, b_n, hd), dtype=x.dtype)
    for d, (p, rev) in enumerate(dirs):
        recurrent_rnn.dir_fwd(x, *p, rev, bool(nonlinearity_tanh), hs[d])
    return _assemble_output(hs, last, out), hs


def rnn_bwd(
    g_out, x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, nonlinearity_tanh, saved0, out=None, into_x=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    ghs = _split_grad(g_out, len(dirs), x.shape[1], w_hh_0.shape[1], last)
    return _run_bwd(recurrent_rnn.dir_bwd, x, dirs, ghs, (saved0,), into_x, p1, bool(nonlinearity_tanh))


def lstm_fwd(
    x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, out=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    x = np.ascontiguousarray(x)  # the cores read [B, T, I] as [B*T, I] rows
    b_n, t_len, hd = x.shape[0], x.shape[1], w_hh_0.shape[1]
    hs = np.empty((len(dirs), t_len, b_n, hd), dtype=x.dtype)
    cs = np.empty_like(hs)
    gates = np.empty((len(dirs), t_len, b_n, 4 * hd), dtype=x.dtype)
    for d, (p, rev) in enumerate(dirs):
        recurrent_lstm.dir_fwd(x, *p, rev, hs[d], cs[d], gates[d])
    return _assemble_output(hs, last, out), hs, cs, gates


def lstm_bwd(
    g_out, x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, saved0, saved1, saved2, out=None, into_x=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    ghs = _split_grad(g_out, len(dirs), x.shape[1], w_hh_0.shape[1], last)
    return _run_bwd(recurrent_lstm.dir_bwd, x, dirs, ghs, (saved0, saved1, saved2), into_x, p1)


def gru_fwd(
    x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, out=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    x = np.ascontiguousarray(x)  # the cores read [B, T, I] as [B*T, I] rows
    b_n, t_len, hd = x.shape[0], x.shape[1], w_hh_0.shape[1]
    hs = np.empty((len(dirs), t_len, b_n, hd), dtype=x.dtype)
    gates = np.empty((len(dirs), t_len, b_n, 3 * hd), dtype=x.dtype)
    hns = np.empty_like(hs)
    for d, (p, rev) in enumerate(dirs):
        recurrent_gru.dir_fwd(x, *p, rev, hs[d], gates[d], hns[d])
    return _assemble_output(hs, last, out), hs, gates, hns


def gru_bwd(
    g_out, x, w_ih_0, w_hh_0, b_ih_0, b_hh_0, w_ih_1, w_hh_1, b_ih_1, b_hh_1,
    bidirectional, last, saved0, saved1, saved2, out=None, into_x=None,
):  # fmt: skip
    p0, p1 = (w_ih_0, w_hh_0, b_ih_0, b_hh_0), (w_ih_1, w_hh_1, b_ih_1, b_hh_1)
    dirs = _directions(bidirectional, p0, p1)
    ghs = _split_grad(g_out, len(dirs), x.shape[1], w_hh_0.shape[1], last)
    return _run_bwd(recurrent_gru.dir_bwd, x, dirs, ghs, (saved0, saved1, saved2), into_x, p1)


# ---- what graphc.compiler.warm compiles ahead ------------------------------------------------
def _core_calls(kind: str, core_module):
    """The njit calls a wrapper pair makes, as `wrapper.njit_calls(float_type)` -> [(dispatcher,
    argument types)]: every direction calls the same specialisation of its core, with
    C-contiguous arrays of the model's float type (a view hs[d] of the stacked states is one),
    Python bools for the direction and flags."""
    from numba.core import types

    saved = 1 if kind == "rnn" else 3
    flags = 1 if kind == "rnn" else 0  # rnn: nonlinearity_tanh

    def fwd(f):
        a1, a2, a3 = (types.Array(f, n, "C") for n in (1, 2, 3))
        return [
            (
                core_module.dir_fwd,
                (a3, a2, a2, a1, a1, types.boolean, *(types.boolean,) * flags, *(a3,) * saved),
            )
        ]

    def bwd(f):
        a1, a2, a3 = (types.Array(f, n, "C") for n in (1, 2, 3))
        args = (
            a3,
            a3,
            a2,
            a2,
            a1,
            a1,
            *(a3,) * saved,
            types.boolean,
            *(types.boolean,) * flags,
            a3,
            types.boolean,
        )
        return [(core_module.dir_bwd, args)]

    return fwd, bwd


rnn_fwd.njit_calls, rnn_bwd.njit_calls = _core_calls("rnn", recurrent_rnn)
lstm_fwd.njit_calls, lstm_bwd.njit_calls = _core_calls("lstm", recurrent_lstm)
gru_fwd.njit_calls, gru_bwd.njit_calls = _core_calls("gru", recurrent_gru)
