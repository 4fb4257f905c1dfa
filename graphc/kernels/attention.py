"""Multi-head attention (batch-first), matching torch.nn.MultiheadAttention.

q[B,T,E] attends to kv[B,S,Ekv], or to itself when kv is the driver's stand-in for an absent
input (a 1-D zero-size array). That test is on kv's rank, known when Numba types the call, so
a self-attention kernel compiles without the cross-attention path and the other way round.

Projections. Row-blocked GEMMs on graphc's thread pool, as `graphc.kernels.parallel`'s (one
block of B*T or B*S rows per thread, each a single-threaded BLAS call), with the weights
stacked so that one GEMM makes several: self-attention projects [Q | K | V] = q [Wq; Wk; Wv]ᵀ
as one [B*T, 3E] product, cross attention Q and [K | V]. Each projection is one parallel
region, forward (product and bias) and backward (the input's gradient and the blocks' parts
of the weight's): on a busy machine every region waits for its slowest thread, and measured
with other processes running, 2 threads ran a step 20-25% faster in 6 regions than in 11.
The q/k/v biases are added by the projection's blocks (as a linear layer's), and their
gradients are the column sums of the projections' gradients.

Heads. The (batch item, head) pairs are independent, so they are the parallel loop (a block
of consecutive pairs per thread, `run_blocks`). A head's Q, K and V are its column bands of
the projections, read in place: its products go through the register-tiled GEMM
(`tile_gemm.mm`), not BLAS, which reads operands with any row stride and writes into them
(BLAS wants contiguous ones: copying each head's bands out, and its gradients' back, was ~7%
of the d=128 step), and the products are small ([64, 32] x [32, 32] at d=128), where a BLAS
call pays more in packing and dispatch than it computes (Q Kᵀ ran at 90 GFLOP/s through
np.dot, 180 through mm). The context goes straight into the head's columns of the [B*T, E]
context that the output projection reads; the backward reads its band of the context's
gradient there and writes dQ, dK and dV into the bands of the projections' gradients. The
scores' 1/sqrt(E/H) is applied in the softmax's subtraction of the maximum, and its
gradient's in the softmax's backward.

Transposed tiles. A tile's scores are made keys by queries, Sᵀ = K Qᵀ, and the softmax runs
down the columns: every step (mask, max, exp, sum, scale, and the backward's p (g - p·g)) is
elementwise over a row of queries, in whole vectors, with no per-query row reduction and
none of the scalar remainders a row cut at each query's causal limit leaves (row by row, the
softmax was half of the forward's per-head time at d=128). The products read the transposed
tiles as they are: C = P V is mm(Pᵀ viewed transposed, V), dV = Pᵀ dC, dPᵀ = V dCᵀ (the
context's gradient band copied transposed per pair), dQ = dS K, dK = dSᵀ Q.

Causal tiling. With `causal`, queries go in tiles of `_ROW_BLOCK`; a tile of queries ending
at r1 only sees keys < r1, so its score, context and gradient products stop there: about
half of the T x S work of a long sequence is skipped (5/8 of it remains at T = 4 tiles).

Masking (causal: key s > query t; key_padding_mask[b, s] > 0.5): a masked key's score is
_MASKED, so it gets probability exactly 0 and no gradient, as if its score were -inf, except
that a query whose keys are all masked attends *uniformly to all S keys* (finite, where -inf
gives NaN: all its scores are _MASKED, so they are equal); its scores are constants, so it
passes no gradient to Q or K. A tile holding such a query uses all S keys.

Saved for the backward: the projections with their biases, [Q | K | V] [B*T, 3E] (or Q
[B*T, E] for cross attention, saved0) and [K | V] [B*S, 2E] (no rows for self-attention,
saved1); the probabilities (saved2, [B, H, T, S], in tiles: the tile of queries [r0, r1) that
sees keys < kend is a contiguous [kend, r1 - r0] block, keys by queries, at the start of its
queries' span, the rest of the span zero); the concatenated per-head context [B*T, E]
(saved3, input of the output projection).
"""

import math

import numba
import numpy as np

from graphc.kernels.parallel import (
    block_bounds,
    col_sums,
    linear_rows,
    linear_rows_bwd,
    row_blocks,
    run_blocks,
)
from graphc.kernels.tile_gemm import mm
from graphc.kernels.vmath import vexp

_MASKED = -1.0e30  # finite in float32 and float64; exp(_MASKED - max) underflows to 0
# Query rows per causal tile: smaller tiles skip more of the masked triangle ((n+1)/2n of
# the square is computed with n tiles) but make smaller, less efficient GEMMs.
_ROW_BLOCK = 32


# --------------------------------------------------------------------------- projections
@numba.njit(cache=True, inline="always")
def _col_sums(g):
    return col_sums(g, np.empty(g.shape[1], dtype=g.dtype))


@numba.njit(cache=True)
def _stacked(a, b, c):
    """[a; b; c] by rows (b and c may have no rows): weights stacked so that one GEMM makes
    several projections. A fixed arity, so self- and cross-attention compile it once."""
    out = np.empty((a.shape[0] + b.shape[0] + c.shape[0], a.shape[1]), dtype=a.dtype)
    r = 0
    for w in (a, b, c):
        for i in range(w.shape[0]):
            src, dst = w[i], out[r + i]
            for j in range(src.size):
                dst[j] = src[j]
        r += w.shape[0]
    return out


@numba.njit(cache=True, inline="always")
def _project(x2, w, bias):
    """x2 @ w.T + bias for stacked weights and biases (bias zero-size: none)."""
    return linear_rows(x2, w, bias, np.empty((x2.shape[0], w.shape[0]), dtype=x2.dtype))


@numba.njit(cache=True)
def _stacked_bias(b0, b1, b2, has_bias):
    """[b0, b1, b2] flat (b1, b2 may be empty), or zero-size without biases."""
    if not (has_bias and b0.size > 0):
        return np.empty(0, dtype=b0.dtype)
    out = np.empty(b0.size + b1.size + b2.size, dtype=b0.dtype)
    r = 0
    for b in (b0, b1, b2):
        flat = b.reshape(-1)
        for j in range(flat.size):
            out[r + j] = flat[j]
        r += flat.size
    return out


@numba.njit(cache=True, inline="always")  # a few lines: no function (and compile) of its own
def _bias_grad(b, sums, start, has_bias):
    """The gradient of bias `b`: its band [start, start + b.size) of the column sums, or zeros
    shaped like b (zero-size when absent)."""
    gb = np.zeros_like(b)
    if has_bias and b.size > 0:
        gf = gb.reshape(-1)
        for j in range(gf.size):
            gf[j] = sums[start + j]
    return gb


@numba.njit(cache=True, inline="always")
def _source(q, kv, ekv):
    """The key/value source rows [B*S, Ekv]: kv, or q itself for self-attention."""
    b_n, t_len, e = q.shape
    if kv.ndim == 1:  # a constant where Numba types the call: the other branch is not compiled
        return q.reshape(b_n * t_len, e)
    return kv.reshape(kv.size // ekv, ekv)


@numba.njit(cache=True, inline="always")
def _kv_columns(qp, kvp, e):
    """Where K and V are: (array, first column) of each, in [Q | K | V] (kvp has no rows:
    self-attention) or in [K | V]. Also for the gradients, laid out alike."""
    if kvp.shape[0] == 0:
        return qp, e, qp, 2 * e
    return kvp, 0, kvp, e


# --------------------------------------------------------------------------- copies
@numba.njit(cache=True, inline="always")
def _transpose(x, xt):
    """xt[:] = x.T ([L, E/H] -> [E/H, L]): the register-tiled GEMM reads its right operand
    by rows."""
    for r in range(x.shape[0]):
        src = x[r]
        for c in range(x.shape[1]):
            xt[c, r] = src[c]


@numba.njit(cache=True, inline="always")
def _zero_rows(x):
    """x[:] = 0 for a band of columns, row by row (a row slice vectorises)."""
    for r in range(x.shape[0]):
        row = x[r]
        for c in range(row.size):
            row[c] = 0.0


# --------------------------------------------------------------------------- one head
@numba.njit(cache=True, inline="always")
def _first_visible(mrow):
    """The first key the padding mask row leaves visible (len(mrow) if none; 0 without a mask)."""
    for s in range(mrow.size):
        if mrow[s] <= 0.5:
            return s
    return mrow.size


@numba.njit(cache=True, inline="always")
def _tile_rows(t_len, causal):
    """Query rows per tile: causal attention tiles the rows, otherwise one tile holds all."""
    return max(1, min(_ROW_BLOCK, t_len)) if causal else max(1, t_len)


@numba.njit(cache=True, inline="always")
def _key_end(r0, r1, s_len, causal, first):
    """Keys the rows [r0, r1) see: < r1 when causal, unless a row there sees none (t < first,
    every key up to t padded): that row attends uniformly to all s_len keys."""
    if causal and r0 >= first:
        return min(r1, s_len)
    return s_len


@numba.njit(cache=True)
def _softmax_cols(s_t, p_t, mrow, r0, causal, scale, mx, tot):
    """p_t[:, j] = the softmax of the scores scale * s_t[:, j] of query r0 + j over its visible keys
    (rows: keys < r0 + j + 1 when causal, not padded), 0 at the others; uniform over the
    tile's keys if it sees none. The tile is transposed, keys by queries, so that every step
    is elementwise over a row of queries, in whole vectors: the maxima and sums per query
    are vertical, no row reduction (per query row, the forward's head work ran 2x slower).
    s_t is overwritten (scratch); mx and tot are scratch of at least n values."""
    kend, n = s_t.shape
    if mrow.size > 0:
        for s in range(kend):
            if mrow[s] > 0.5:
                s_t[s, :] = _MASKED
    if causal:
        for s in range(r0 + 1, kend):  # key s is hidden from the queries before it
            row, lo = s_t[s], s - r0
            for j in range(n):
                row[j] = row[j] if j >= lo else _MASKED
    # a masked score's exp(_MASKED - max) is exactly 0; a query that sees no key has
    # _MASKED everywhere, so exp(0) = 1 at every key: uniform (kend == S then, _key_end)
    m = mx[:n]
    for j in range(n):  # a loop: an array-to-array slice assignment compiles Numba's
        m[j] = s_t[0, j]  # shape-mismatch message formatting (~1 s of a cold start)
    for s in range(1, kend):
        row = s_t[s]
        for j in range(n):
            m[j] = row[j] if row[j] > m[j] else m[j]
    for s in range(kend):  # scale > 0: the scaled scores' maximum is scale * m
        row = s_t[s]
        for j in range(n):
            row[j] = (row[j] - m[j]) * scale
    vexp(s_t.reshape(-1), p_t.reshape(-1))
    t = tot[:n]
    t[:] = 0.0
    for s in range(kend):
        row = p_t[s]
        for j in range(n):
            t[j] += row[j]
    for j in range(n):
        t[j] = 1.0 / t[j]
    for s in range(kend):
        row = p_t[s]
        for j in range(n):
            row[j] *= t[j]


@numba.njit(cache=True)
def _softmax_cols_vjp(g_t, p_t, r0, causal, first, scale, dot):
    """g_t <- the gradient of the (transposed, as _softmax_cols, unscaled) scores from the
    gradient g_t of the probabilities p_t: scale p (g - p·g) per query, 0 at its hidden keys (p is 0 at padded
    ones) and for a query that sees no key (its scores were constants). `first` is the first
    key the padding leaves visible; dot is scratch of at least n values."""
    kend, n = g_t.shape
    d = dot[:n]
    d[:] = 0.0
    for s in range(kend):
        g, p = g_t[s], p_t[s]
        for j in range(n):
            d[j] += g[j] * p[j]
    for s in range(kend):
        g, p, lo = g_t[s], p_t[s], s - r0 if causal else 0
        for j in range(n):
            g[j] = scale * p[j] * (g[j] - d[j]) if j >= lo else 0.0
    for j in range(n):  # a query sees no key if every key up to its limit is padded
        if first >= (min(r0 + j + 1, kend) if causal else kend):
            g_t[:, j] = 0.0


# --------------------------------------------------------------------------- the kernels
@numba.njit(cache=True)
def _pairs_fwd(blk, n_blocks, heads, qp, kvp, mf, causal, probs, ctx):
    """Block blk of the (batch item b, head h) pairs, a thread's share. Per pair, per tile of
    queries: its probabilities (probs[b, h] flat, in transposed tiles) = softmax(mask(Q Kᵀ)
    / sqrt(E/H)) and their product with V into the pair's band of ctx, reading Q, K and V in
    place in the projections. (One function, not a block calling a per-pair one calling a
    per-tile one: every njit function costs a compile of its own and re-emits the machine code
    of everything it calls, ~0.2-0.5 s of a cold start per level.)"""
    t_len, s_len = probs.shape[2], probs.shape[3]
    dh = ctx.shape[1] // heads
    ks, kc, vs, vc = _kv_columns(qp, kvp, heads * dh)
    scale = qp.dtype.type(1.0 / math.sqrt(dh))
    # scratch for the block's pairs, allocated once: allocations per pair from both threads
    # at once slowed the region by a third
    rows = _tile_rows(t_len, causal)
    sc = np.empty(rows * s_len, dtype=qp.dtype)
    qt = np.empty((dh, t_len), dtype=qp.dtype)
    mx = np.empty(rows, dtype=qp.dtype)
    tot = np.empty(rows, dtype=qp.dtype)
    zero = np.empty((0, 0), dtype=qp.dtype)
    p0, p1 = block_bounds(blk, n_blocks, probs.shape[0] * heads)
    for i in range(p0, p1):
        b, h = i // heads, i % heads
        c0 = h * dh
        k = ks[b * s_len : (b + 1) * s_len, kc + c0 : kc + c0 + dh]
        v = vs[b * s_len : (b + 1) * s_len, vc + c0 : vc + c0 + dh]
        _transpose(qp[b * t_len : (b + 1) * t_len, c0 : c0 + dh], qt)
        mrow = mf[b * s_len : (b + 1) * s_len] if mf.size > 0 else mf
        p_flat = probs[b, h].reshape(-1)
        first = _first_visible(mrow)
        for r0 in range(0, t_len, rows):
            r1 = min(r0 + rows, t_len)
            n = r1 - r0
            kend = _key_end(r0, r1, s_len, causal, first)
            s_t = sc[: kend * n].reshape(kend, n)
            p_t = p_flat[r0 * s_len : r0 * s_len + kend * n].reshape(kend, n)
            p_flat[r0 * s_len + kend * n : r1 * s_len] = 0.0
            # Sᵀ = K Qᵀ, Pᵀ = softmax by columns, C = P V (into the pair's band of ctx)
            mm(k[:kend], qt[:, r0:r1], s_t, zero)
            _softmax_cols(s_t, p_t, mrow, r0, causal, scale, mx, tot)
            mm(p_t.T, v[:kend], ctx[b * t_len + r0 : b * t_len + r1, c0 : c0 + dh], zero)


@numba.njit(cache=True)
def attention_fwd(q, kv, key_padding_mask, wq, bq, wk, bk, wv, bv, wo, bo, heads, causal, has_bias, out=None):
    b_n, t_len, e = q.shape
    src = _source(q, kv, wk.shape[1])
    s_len = src.shape[0] // b_n
    q2 = q.reshape(b_n * t_len, e)
    no_w, no_b = wq[:0], bq.reshape(-1)[:0]
    if kv.ndim == 1:  # self-attention (see the module's doc)
        qp = _project(q2, _stacked(wq, wk, wv), _stacked_bias(bq, bk, bv, has_bias))
        kvp = np.empty((0, 2 * e), dtype=q.dtype)
    else:
        qp = _project(q2, _stacked(wq, no_w, no_w), _stacked_bias(bq, no_b, no_b, has_bias))
        kvp = _project(src, _stacked(wk, wv, no_w), _stacked_bias(bk, bv, no_b, has_bias))
    probs = np.empty((b_n, heads, t_len, s_len), dtype=q.dtype)
    ctx = np.empty((b_n * t_len, e), dtype=q.dtype)
    n_blocks = row_blocks(b_n * heads, 1)
    mf = key_padding_mask.reshape(-1)
    run_blocks(_pairs_fwd, n_blocks, (n_blocks, heads, qp, kvp, mf, causal, probs, ctx))
    if out is None:
        out = np.empty((b_n, t_len, e), dtype=q.dtype)
    out2 = out.reshape(b_n * t_len, e)
    linear_rows(ctx, wo, bo.reshape(-1) if has_bias else bo.reshape(-1)[:0], out2)
    return out, qp, kvp, probs, ctx


@numba.njit(cache=True)
def _pairs_bwd(blk, n_blocks, heads, qp, kvp, probs, mf, causal, gctx, gqp, gkvp):
    """Block blk of the (batch item b, head h) pairs, a thread's share. Per pair, tile by tile
    as the forward: from its band of the context's gradient, the gradients of its Q, K and V
    straight into their bands of gqp, gkvp (laid out as the forward's projections), the dK and
    dV bands accumulated over the tiles (one function, as _pairs_fwd)."""
    t_len, s_len = probs.shape[2], probs.shape[3]
    dh = gctx.shape[1] // heads
    ks, kc, vs, vc = _kv_columns(qp, kvp, heads * dh)
    gks, _, gvs, _ = _kv_columns(gqp, gkvp, heads * dh)
    scale = qp.dtype.type(1.0 / math.sqrt(dh))
    # the block's buffers, allocated once (see _pairs_fwd)
    rows = _tile_rows(t_len, causal)
    gb = np.empty(rows * s_len, dtype=qp.dtype)
    gct = np.empty((dh, t_len), dtype=qp.dtype)
    dot = np.empty(rows, dtype=qp.dtype)
    zero = np.empty((0, 0), dtype=qp.dtype)
    p0, p1 = block_bounds(blk, n_blocks, probs.shape[0] * heads)
    for i in range(p0, p1):
        b, h = i // heads, i % heads
        c0 = h * dh
        qr, kr = slice(b * t_len, (b + 1) * t_len), slice(b * s_len, (b + 1) * s_len)
        q, gq = qp[qr, c0 : c0 + dh], gqp[qr, c0 : c0 + dh]
        k, gk = ks[kr, kc + c0 : kc + c0 + dh], gks[kr, kc + c0 : kc + c0 + dh]
        v, gv = vs[kr, vc + c0 : vc + c0 + dh], gvs[kr, vc + c0 : vc + c0 + dh]
        gc = gctx[qr, c0 : c0 + dh]
        _transpose(gc, gct)
        _zero_rows(gk)  # they accumulate over the tiles
        _zero_rows(gv)
        mrow = mf[b * s_len : (b + 1) * s_len] if mf.size > 0 else mf
        p_flat = probs[b, h].reshape(-1)
        first = _first_visible(mrow)
        for r0 in range(0, t_len, rows):
            r1 = min(r0 + rows, t_len)
            n = r1 - r0
            kend = _key_end(r0, r1, s_len, causal, first)
            p_t = p_flat[r0 * s_len : r0 * s_len + kend * n].reshape(kend, n)
            g_t = gb[: kend * n].reshape(kend, n)
            # dV[:kend] += Pᵀ dC; dPᵀ = V dCᵀ; dSᵀ (with the 1/sqrt(E/H) of the scores)
            mm(p_t, gc[r0:r1], gv[:kend], gv[:kend])
            mm(v[:kend], gct[:, r0:r1], g_t, zero)
            _softmax_cols_vjp(g_t, p_t, r0, causal, first, scale, dot)
            # dQ = dS K; dK[:kend] += dSᵀ Q
            mm(g_t.T, k[:kend], gq[r0:r1], zero)
            mm(g_t, q[r0:r1], gk[:kend], gk[:kend])


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
    out,
    into_q=None,
    into_kv=None,
):
    qp, kvp, probs, ctx = saved0, saved1, saved2, saved3
    b_n, t_len, e = q.shape
    q2 = q.reshape(b_n * t_len, e)
    src = _source(q, kv, wk.shape[1])

    # output projection
    g2 = g_out.reshape(b_n * t_len, e)
    gctx = np.empty((b_n * t_len, e), dtype=q.dtype)
    gwo = linear_rows_bwd(g2, ctx, wo, gctx)
    gbo = _bias_grad(bo, _col_sums(g2), 0, has_bias)

    # per head: the gradients of the projections, laid out as the forward made them
    gqp = np.empty_like(qp)
    gkvp = np.empty_like(kvp)
    n_blocks = row_blocks(b_n * heads, 1)
    mf = key_padding_mask.reshape(-1)
    run_blocks(_pairs_bwd, n_blocks, (n_blocks, heads, qp, kvp, probs, mf, causal, gctx, gqp, gkvp))

    # input projections: per stacked weight, its gradient and its input's in one region
    if into_q is None:
        into_q = np.empty_like(q)
    if into_kv is None:
        into_kv = np.empty_like(kv)  # the 1-D zero-size stand-in for self-attention, like kv
    gq2 = into_q.reshape(b_n * t_len, e)
    sums_q = _col_sums(gqp)
    if kv.ndim == 1:  # self-attention (see the module's doc)
        # q fed Q, K and V: its gradient is [dQ | dK | dV] [Wq; Wk; Wv]
        gw_q = linear_rows_bwd(gqp, q2, _stacked(wq, wk, wv), gq2)
        gw_kv = gw_q[e:]
        sums_kv = sums_q[e:]
    else:
        gw_q = linear_rows_bwd(gqp, q2, wq, gq2)
        gw_kv = linear_rows_bwd(gkvp, src, _stacked(wk, wv, wq[:0]), into_kv.reshape(src.shape))
        sums_kv = _col_sums(gkvp)
    return (
        into_q,
        into_kv,
        np.zeros(0, q.dtype),
        gw_q[:e],
        _bias_grad(bq, sums_q, 0, has_bias),
        gw_kv[:e],
        _bias_grad(bk, sums_kv, 0, has_bias),
        gw_kv[e:],
        _bias_grad(bv, sums_kv, e, has_bias),
        gwo,
        gbo,
    )
