"""Multi-head attention (batch-first), matching torch.nn.MultiheadAttention.

q[B,T,E] attends to kv[B,S,Ekv] (kv zero-size -> self-attention on q). Projections are one
GEMM each over all B*T (or B*S) rows; per (batch, head) the score and context products are
small GEMMs on a contiguous [B, H, L, E/H] head layout, written into reused buffers. The
softmax is three passes over all heads at once: masked, max-shifted scores; one vectorised
exp (``vmath.vexp``); row normalisation.

Masking (causal: key s > query t; key_padding_mask[b, s] > 0.5) *replaces* the scaled score
with a large finite negative instead of adding -inf, so a fully masked row softmaxes to a
uniform distribution rather than NaN; a masked score is a constant, so its gradient is zero.

Saved for the backward: Q, K, V in head layout, the attention probabilities P[B,H,T,S] and
the concatenated per-head context [B*T, E] (input of the output projection).
"""

import math

import numba
import numpy as np

from graphc.kernels.vmath import vexp

_MASKED = -1.0e30  # finite in float32 and float64; exp(_MASKED - max) underflows to 0


@numba.njit(cache=True)
def _proj(x2, w, b, has_bias):
    return _proj_into(x2, w, b, has_bias, np.empty((x2.shape[0], w.shape[0]), dtype=x2.dtype))


@numba.njit(cache=True)
def _proj_into(x2, w, b, has_bias, y):
    """y[:] = x2 @ w.T (+ b); returns y."""
    np.dot(x2, w.T, y)
    if has_bias and b.size > 0:
        bf = b.reshape(-1)
        for r in range(y.shape[0]):
            for j in range(y.shape[1]):
                y[r, j] += bf[j]
    return y


@numba.njit(cache=True)
def _col_sum_into(g, gb, has_bias):
    if has_bias and gb.size > 0:
        gbf = gb.reshape(-1)
        for r in range(g.shape[0]):
            for j in range(g.shape[1]):
                gbf[j] += g[r, j]


@numba.njit(cache=True)
def _split_heads(x2, b_n, length, heads):
    """[B*L, E] -> contiguous [B, H, L, E/H]."""
    dh = x2.shape[1] // heads
    out = np.empty((b_n, heads, length, dh), dtype=x2.dtype)
    for b in range(b_n):
        for h in range(heads):
            for t in range(length):
                out[b, h, t, :] = x2[b * length + t, h * dh : (h + 1) * dh]
    return out


@numba.njit(cache=True)
def _merge_heads(x4):
    """[B, H, L, E/H] -> [B*L, E] with heads concatenated along features."""
    b_n, heads, length, dh = x4.shape
    out = np.empty((b_n * length, heads * dh), dtype=x4.dtype)
    for b in range(b_n):
        for h in range(heads):
            for t in range(length):
                out[b * length + t, h * dh : (h + 1) * dh] = x4[b, h, t]
    return out


@numba.njit(cache=True)
def _source(q, kv, ekv):
    """The key/value source rows [B*S, Ekv]: kv, or q itself for self-attention."""
    b_n, t_len, e = q.shape
    if kv.size == 0:
        return q.reshape(b_n * t_len, e)
    return kv.reshape(kv.size // ekv, ekv)


@numba.njit(cache=True)
def _is_masked(mf, b, s, s_len, t, causal):
    if causal and s > t:
        return True
    return mf.size > 0 and mf[b * s_len + s] > 0.5


@numba.njit(cache=True)
def attention_fwd(q, kv, key_padding_mask, wq, bq, wk, bk, wv, bv, wo, bo, heads, causal, has_bias, out=None):
    b_n, t_len, e = q.shape
    src = _source(q, kv, wk.shape[1])
    s_len = src.shape[0] // b_n
    scale = 1.0 / math.sqrt(e // heads)
    mf = key_padding_mask.reshape(-1)

    qh = _split_heads(_proj(q.reshape(b_n * t_len, e), wq, bq, has_bias), b_n, t_len, heads)
    kh = _split_heads(_proj(src, wk, bk, has_bias), b_n, s_len, heads)
    vh = _split_heads(_proj(src, wv, bv, has_bias), b_n, s_len, heads)
    # Pass 1: scaled, masked scores minus their row max. Pass 2: one vectorised exp over all
    # of them. Pass 3: normalise rows and multiply by V.
    shifted = np.empty((b_n, heads, t_len, s_len), dtype=q.dtype)
    sc = np.empty((t_len, s_len), dtype=q.dtype)
    for b in range(b_n):
        for h in range(heads):
            # np.dot with an out array: these products are tiny and the per-call result
            # allocation would cost as much as the math (explicit loops measured slower)
            np.dot(qh[b, h], kh[b, h].T, sc)
            sh = shifted[b, h]
            for t in range(t_len):
                m = -np.inf
                for s in range(s_len):
                    v = _MASKED if _is_masked(mf, b, s, s_len, t, causal) else sc[t, s] * scale
                    sh[t, s] = v
                    # max of the *stored* (possibly float32-rounded) value, so a fully
                    # masked row gives exp(0) = 1 everywhere, never 0/0
                    m = max(m, sh[t, s])
                for s in range(s_len):
                    sh[t, s] -= m
    probs = np.empty_like(shifted)
    vexp(shifted.reshape(-1), probs.reshape(-1))
    ctx_h = np.empty_like(qh)
    for b in range(b_n):
        for h in range(heads):
            p = probs[b, h]
            for t in range(t_len):
                tot = 0.0
                for s in range(s_len):
                    tot += p[t, s]
                inv = 1.0 / tot
                for s in range(s_len):
                    p[t, s] *= inv
            np.dot(p, vh[b, h], ctx_h[b, h])
    ctx = _merge_heads(ctx_h)
    if out is None:
        out = np.empty((b_n, t_len, e), dtype=q.dtype)
    _proj_into(ctx, wo, bo, has_bias, out.reshape(b_n * t_len, e))
    return out, qh, kh, vh, probs, ctx


@numba.njit(cache=True)
def attention_bwd(
    g_out,
    q,
    kv,
    key_padding_mask,
    wq,
    bq,
    wk,
    bk,
    wv,
    bv,
    wo,
    bo,
    heads,
    causal,
    has_bias,
    saved0,
    saved1,
    saved2,
    saved3,
    saved4,
    out,
    into_q=None,
    into_kv=None,
):
    qh, kh, vh, probs, ctx = saved0, saved1, saved2, saved3, saved4
    b_n, t_len, e = q.shape
    q2 = q.reshape(b_n * t_len, e)
    src = _source(q, kv, wk.shape[1])
    s_len = src.shape[0] // b_n
    scale = 1.0 / math.sqrt(e // heads)
    mf = key_padding_mask.reshape(-1)

    g2 = g_out.reshape(b_n * t_len, e)
    gwo = np.dot(g2.T, ctx)
    gbo = np.zeros_like(bo)
    _col_sum_into(g2, gbo, has_bias)
    gctx_h = _split_heads(np.dot(g2, wo), b_n, t_len, heads)

    gqh = np.empty_like(qh)
    gkh = np.empty_like(kh)
    gvh = np.empty_like(vh)
    gp = np.empty((t_len, s_len), dtype=q.dtype)
    for b in range(b_n):
        for h in range(heads):
            p = probs[b, h]
            gc = gctx_h[b, h]
            np.dot(gc, vh[b, h].T, gp)
            np.dot(p.T, gc, gvh[b, h])
            # softmax VJP, then zero where the score was replaced by the mask constant
            for t in range(t_len):
                dot = 0.0
                for s in range(s_len):
                    dot += gp[t, s] * p[t, s]
                for s in range(s_len):
                    if _is_masked(mf, b, s, s_len, t, causal):
                        gp[t, s] = 0.0
                    else:
                        gp[t, s] = p[t, s] * (gp[t, s] - dot) * scale
            np.dot(gp, kh[b, h], gqh[b, h])
            np.dot(gp.T, qh[b, h], gkh[b, h])

    gq_p = _merge_heads(gqh)
    gk_p = _merge_heads(gkh)
    gv_p = _merge_heads(gvh)
    gwq = np.dot(gq_p.T, q2)
    gwk = np.dot(gk_p.T, src)
    gwv = np.dot(gv_p.T, src)
    gbq = np.zeros_like(bq)
    gbk = np.zeros_like(bk)
    gbv = np.zeros_like(bv)
    _col_sum_into(gq_p, gbq, has_bias)
    _col_sum_into(gk_p, gbk, has_bias)
    _col_sum_into(gv_p, gbv, has_bias)
    if into_q is None:
        into_q = np.empty_like(q)
    if into_kv is None:
        into_kv = np.empty_like(kv)  # zero-size for self-attention, like kv
    gq2 = into_q.reshape(b_n * t_len, e)
    np.dot(gq_p, wq, gq2)
    # gradient of the key/value source rows: into kv's destination, or (self-attention) a
    # temporary added to q's, since q also fed the keys and values
    gsrc = np.empty_like(src) if kv.size == 0 else into_kv.reshape(src.shape)
    np.dot(gk_p, wk, gsrc)
    gsrc += np.dot(gv_p, wv)
    if kv.size == 0:
        gq2 += gsrc
    return (
        into_q,
        into_kv,
        np.zeros(0, q.dtype),
        gwq,
        gbq,
        gwk,
        gbk,
        gwv,
        gbv,
        gwo,
        gbo,
    )
