"""Multi-head attention (batch-first), matching torch.nn.MultiheadAttention.

q[B,T,E] attends to kv[B,S,Ekv] (kv zero-size -> self-attention on q).

Projections. Row-blocked GEMMs on graphc's thread pool, as `graphc.kernels.parallel`'s (one
block of B*T or B*S rows per thread, each a single-threaded BLAS call), with the weights
stacked so that one GEMM makes several: self-attention projects [Q | K | V] = q [Wq; Wk; Wv]ᵀ
as one [B*T, 3E] product, cross attention Q and [K | V]. Each projection is one parallel
region, forward (product and bias) and backward (the input's gradient and the blocks' parts
of the weight's): on a busy machine every region waits for its slowest thread, and measured
with other processes running, 2 threads ran a step 20-25% faster in 6 regions than in 11.
The q/k/v biases are added, and their gradients summed, in the per-head loop below, which
touches those values anyway.

Heads. The (batch item, head) pairs are independent, so they are the parallel loop (a block
of consecutive pairs per thread, `run_blocks`). Each pair copies its head's column band of
Q, K and V into the head layout [B, H, L, E/H], saved for the backward; Q is stored
pre-scaled by 1/sqrt(E/H) so the scores need no scaling pass. Its products go through the
register-tiled GEMM (`tile_gemm.mm`), not BLAS: they are small ([32, 32] x [32, 64] at
d=128), where a BLAS call pays more in packing and dispatch than it computes (Q Kᵀ ran at
90 GFLOP/s through np.dot, 180 through mm), and mm reads its operands in place with any row
stride: the context goes straight into the head's columns of the [B*T, E] context that the
output projection reads, and the backward reads its band of the context's gradient there.

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

Saved for the backward: Q (scaled), K and V in head layout [B, H, L, E/H] (saved0-2); the
probabilities (saved3, [B, H, T, S], in tiles: the tile of queries [r0, r1) that sees keys
< kend is a contiguous [kend, r1 - r0] block, keys by queries, at the start of its queries'
span, the rest of the span zero); the concatenated per-head context [B*T, E] (saved4, input
of the output projection).
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
def _project(x2, w):
    """x2 @ w.T for stacked weights (the biases are added as the heads are copied out)."""
    no_bias = np.empty(0, dtype=x2.dtype)
    return linear_rows(x2, w, no_bias, np.empty((x2.shape[0], w.shape[0]), dtype=x2.dtype))


@numba.njit(cache=True)
def _stacked_bias(b0, b1, b2, has_bias, width):
    """[b0, b1, b2] flat (b1, b2 may be empty), or zeros(width) without biases."""
    out = np.zeros(width, dtype=b0.dtype)
    if has_bias and b0.size > 0:
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
    if kv.size == 0:
        return q.reshape(b_n * t_len, e)
    return kv.reshape(kv.size // ekv, ekv)


@numba.njit(cache=True, inline="always")
def _kv_columns(qp, kvp, e):
    """Where K and V are: (array, first column) of each, in [Q | K | V] (kvp has no rows:
    self-attention) or in [K | V]. Also for the biases and gradients laid out alike."""
    if kvp.shape[0] == 0:
        return qp, e, qp, 2 * e
    return kvp, 0, kvp, e


# --------------------------------------------------------------------------- copies
@numba.njit(cache=True)
def _get_band(x, r0, c0, bias, band, factor):
    """band[:] = factor * (x[r0 : r0 + rows, c0 : c0 + width] + bias[c0 : c0 + width]): a
    head's columns of some rows."""
    # a row slice per row: LLVM vectorises the copy (2-D indexing x[r0 + r, c0 + c] it
    # does not, for the negative-index checks; measured 3.6x slower)
    w = band.shape[1]
    b = bias[c0 : c0 + w]
    for r in range(band.shape[0]):
        src, dst = x[r0 + r, c0 : c0 + w], band[r]
        for c in range(w):
            dst[c] = (src[c] + b[c]) * factor


@numba.njit(cache=True, inline="always")
def _put_band(x, r0, c0, band, factor):
    """x[r0 : r0 + rows, c0 : c0 + width] = factor * band."""
    w = band.shape[1]
    for r in range(band.shape[0]):
        src, dst = band[r], x[r0 + r, c0 : c0 + w]
        for c in range(w):
            dst[c] = src[c] * factor


@numba.njit(cache=True)
def _put_band_sums(x, r0, c0, band, factor, sums):
    """_put_band, and sums[c0 : c0 + width] = the band's column sums (for a bias gradient)."""
    _put_band(x, r0, c0, band, factor)
    w = band.shape[1]
    acc = sums[c0 : c0 + w]
    acc[:] = 0.0
    for r in range(band.shape[0]):
        src = band[r]
        for c in range(w):
            acc[c] += src[c]
    for c in range(w):
        acc[c] *= factor


@numba.njit(cache=True, inline="always")
def _transpose(x, xt):
    """xt[:] = x.T ([L, E/H] -> [E/H, L]): the register-tiled GEMM reads its right operand
    by rows."""
    for r in range(x.shape[0]):
        src = x[r]
        for c in range(x.shape[1]):
            xt[c, r] = src[c]


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
def _softmax_cols(s_t, p_t, mrow, r0, causal, mx, tot):
    """p_t[:, j] = the softmax of the scores s_t[:, j] of query r0 + j over its visible keys
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
    for s in range(kend):
        row = s_t[s]
        for j in range(n):
            row[j] -= m[j]
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
def _softmax_cols_vjp(g_t, p_t, r0, causal, first, dot):
    """g_t <- the gradient of the (transposed, as _softmax_cols) scores from the gradient g_t
    of the probabilities p_t: p (g - p·g) per query, 0 at its hidden keys (p is 0 at padded
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
            g[j] = p[j] * (g[j] - d[j]) if j >= lo else 0.0
    for j in range(n):  # a query sees no key if every key up to its limit is padded
        if first >= (min(r0 + j + 1, kend) if causal else kend):
            g_t[:, j] = 0.0


# --------------------------------------------------------------------------- the kernels
@numba.njit(cache=True)
def _pairs_fwd(blk, n_blocks, qp, qb, kvp, kvb, mf, causal, qh, kh, vh, probs, ctx):
    """Block blk of the (batch item b, head h) pairs, a thread's share. Per pair: its Q, K, V
    bands (with their biases) into qh[b, h], kh[b, h], vh[b, h]; then, per tile of query rows,
    its probabilities (probs[b, h] flat, in transposed tiles) = softmax(mask(Q Kᵀ)) and their product with
    V into the pair's band of ctx. (One function, not a block calling a per-pair one calling a
    per-tile one: every njit function costs a compile of its own and re-emits the machine code
    of everything it calls, ~0.2-0.5 s of a cold start per level.)"""
    heads, t_len, dh = qh.shape[1], qh.shape[2], qh.shape[3]
    s_len = kh.shape[2]
    ks, kc, vs, vc = _kv_columns(qp, kvp, heads * dh)
    kb, _, vb, _ = _kv_columns(qb, kvb, heads * dh)
    # scratch for the block's pairs, allocated once: allocations per pair from both threads
    # at once slowed the region by a third
    rows = _tile_rows(t_len, causal)
    sc = np.empty(rows * s_len, dtype=qh.dtype)
    qt = np.empty((dh, t_len), dtype=qh.dtype)
    mx = np.empty(rows, dtype=qh.dtype)
    tot = np.empty(rows, dtype=qh.dtype)
    zero = np.empty((0, 0), dtype=qh.dtype)
    p0, p1 = block_bounds(blk, n_blocks, qh.shape[0] * heads)
    for i in range(p0, p1):
        b, h = i // heads, i % heads
        c0 = h * dh
        q, k, v = qh[b, h], kh[b, h], vh[b, h]
        _get_band(qp, b * t_len, c0, qb, q, 1.0 / math.sqrt(dh))
        _get_band(ks, b * s_len, kc + c0, kb, k, 1.0)
        _get_band(vs, b * s_len, vc + c0, vb, v, 1.0)
        _transpose(q, qt)
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
            _softmax_cols(s_t, p_t, mrow, r0, causal, mx, tot)
            mm(p_t.T, v[:kend], ctx[b * t_len + r0 : b * t_len + r1, c0 : c0 + dh], zero)


@numba.njit(cache=True)
def attention_fwd(q, kv, key_padding_mask, wq, bq, wk, bk, wv, bv, wo, bo, heads, causal, has_bias, out=None):
    b_n, t_len, e = q.shape
    src = _source(q, kv, wk.shape[1])
    s_len = src.shape[0] // b_n
    dh = e // heads
    q2 = q.reshape(b_n * t_len, e)
    no_w, no_b = wq[:0], bq.reshape(-1)[:0]
    if kv.size == 0:
        qp = _project(q2, _stacked(wq, wk, wv))
        qb = _stacked_bias(bq, bk, bv, has_bias, 3 * e)
        kvp = np.empty((0, 2 * e), dtype=q.dtype)
        kvb = np.empty(0, dtype=q.dtype)
    else:
        qp = _project(q2, _stacked(wq, no_w, no_w))
        qb = _stacked_bias(bq, no_b, no_b, has_bias, e)
        kvp = _project(src, _stacked(wk, wv, no_w))
        kvb = _stacked_bias(bk, bv, no_b, has_bias, 2 * e)
    qh = np.empty((b_n, heads, t_len, dh), dtype=q.dtype)
    kh = np.empty((b_n, heads, s_len, dh), dtype=q.dtype)
    vh = np.empty_like(kh)
    probs = np.empty((b_n, heads, t_len, s_len), dtype=q.dtype)
    ctx = np.empty((b_n * t_len, e), dtype=q.dtype)
    n_blocks = row_blocks(b_n * heads, 1)
    mf = key_padding_mask.reshape(-1)
    run_blocks(_pairs_fwd, n_blocks, (n_blocks, qp, qb, kvp, kvb, mf, causal, qh, kh, vh, probs, ctx))
    if out is None:
        out = np.empty((b_n, t_len, e), dtype=q.dtype)
    out2 = out.reshape(b_n * t_len, e)
    linear_rows(ctx, wo, bo.reshape(-1) if has_bias else bo.reshape(-1)[:0], out2)
    return out, qh, kh, vh, probs, ctx


@numba.njit(cache=True)
def _pairs_bwd(blk, n_blocks, qh, kh, vh, probs, mf, causal, gctx, gqp, gkvp, sq, skv):
    """Block blk of the (batch item b, head h) pairs, a thread's share. Per pair, tile by tile
    as the forward: from its band of the context's gradient, the gradients of its (scaled) Q,
    K and V into gqp, gkvp (laid out as the forward's projections), their column sums into
    sq[b], skv[b] (one function, as _pairs_fwd)."""
    heads, t_len, dh = qh.shape[1], qh.shape[2], qh.shape[3]
    s_len = kh.shape[2]
    gks, kc, gvs, vc = _kv_columns(gqp, gkvp, heads * dh)
    sk, _, sv, _ = _kv_columns(sq, skv, heads * dh)
    # the block's buffers, allocated once (see _pairs_fwd)
    rows = _tile_rows(t_len, causal)
    gqh = np.empty((t_len, dh), dtype=qh.dtype)
    gkh = np.empty((s_len, dh), dtype=qh.dtype)
    gvh = np.empty((s_len, dh), dtype=qh.dtype)
    gb = np.empty(rows * s_len, dtype=qh.dtype)
    gct = np.empty((dh, t_len), dtype=qh.dtype)
    dot = np.empty(rows, dtype=qh.dtype)
    zero = np.empty((0, 0), dtype=qh.dtype)
    gk_flat, gv_flat = gkh.reshape(-1), gvh.reshape(-1)
    p0, p1 = block_bounds(blk, n_blocks, qh.shape[0] * heads)
    for i in range(p0, p1):
        b, h = i // heads, i % heads
        c0 = h * dh
        q, k, v = qh[b, h], kh[b, h], vh[b, h]
        gc = gctx[b * t_len : (b + 1) * t_len, c0 : c0 + dh]  # the pair's band, read in place
        _transpose(gc, gct)
        mrow = mf[b * s_len : (b + 1) * s_len] if mf.size > 0 else mf
        for j in range(gk_flat.size):  # they accumulate over the tiles
            gk_flat[j] = 0.0
            gv_flat[j] = 0.0
        p_flat = probs[b, h].reshape(-1)
        first = _first_visible(mrow)
        for r0 in range(0, t_len, rows):
            r1 = min(r0 + rows, t_len)
            n = r1 - r0
            kend = _key_end(r0, r1, s_len, causal, first)
            p_t = p_flat[r0 * s_len : r0 * s_len + kend * n].reshape(kend, n)
            g_t = gb[: kend * n].reshape(kend, n)
            # dV[:kend] += Pᵀ dC; dPᵀ = V dCᵀ
            mm(p_t, gc[r0:r1], gvh[:kend], gvh[:kend])
            mm(v[:kend], gct[:, r0:r1], g_t, zero)
            _softmax_cols_vjp(g_t, p_t, r0, causal, first, dot)
            # dQ = dS K; dK[:kend] += dSᵀ Q
            mm(g_t.T, k[:kend], gqh[r0:r1], zero)
            mm(g_t, q[r0:r1], gkh[:kend], gkh[:kend])
        _put_band_sums(gqp, b * t_len, c0, gqh, 1.0 / math.sqrt(dh), sq[b])  # Q was scaled
        _put_band_sums(gks, b * s_len, kc + c0, gkh, 1.0, sk[b])
        _put_band_sums(gvs, b * s_len, vc + c0, gvh, 1.0, sv[b])


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

    # output projection
    g2 = g_out.reshape(b_n * t_len, e)
    gctx = np.empty((b_n * t_len, e), dtype=q.dtype)
    gwo = linear_rows_bwd(g2, ctx, wo, gctx)
    gbo = _bias_grad(bo, _col_sums(g2), 0, has_bias)

    # per head: the gradients of the projections, laid out as the forward made them
    if kv.size == 0:
        gqp = np.empty((b_n * t_len, 3 * e), dtype=q.dtype)
        gkvp = np.empty((0, 2 * e), dtype=q.dtype)
    else:
        gqp = np.empty((b_n * t_len, e), dtype=q.dtype)
        gkvp = np.empty((b_n * s_len, 2 * e), dtype=q.dtype)
    sq = np.empty((b_n, gqp.shape[1]), dtype=q.dtype)
    skv = np.empty((b_n if kv.size > 0 else 0, 2 * e), dtype=q.dtype)
    n_blocks = row_blocks(b_n * heads, 1)
    mf = key_padding_mask.reshape(-1)
    run_blocks(_pairs_bwd, n_blocks, (n_blocks, qh, kh, vh, probs, mf, causal, gctx, gqp, gkvp, sq, skv))

    # input projections: per stacked weight, its gradient and its input's in one region
    if into_q is None:
        into_q = np.empty_like(q)
    if into_kv is None:
        into_kv = np.empty_like(kv)  # zero-size for self-attention, like kv
    gq2 = into_q.reshape(b_n * t_len, e)
    sums_q = _col_sums(sq)
    if kv.size == 0:
        # q fed Q, K and V: its gradient is [dQ | dK | dV] [Wq; Wk; Wv]
        gw_q = linear_rows_bwd(gqp, q2, _stacked(wq, wk, wv), gq2)
        gw_kv = gw_q[e:]
        sums_kv = sums_q[e:]
    else:
        gw_q = linear_rows_bwd(gqp, q2, wq, gq2)
        gw_kv = linear_rows_bwd(gkvp, src, _stacked(wk, wv, wq[:0]), into_kv.reshape(src.shape))
        sums_kv = _col_sums(skv)
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
