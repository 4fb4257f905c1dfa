"""Dense linear algebra kernels: linear, matmul, embedding, positional_encoding.

Leading ``...`` dims are folded into one row axis so each product is a single 2-D GEMM
through BLAS (``np.dot`` on contiguous operands; a transposed operand is F-contiguous, which
numba hands to BLAS as a transpose flag rather than copying).

Optional params arrive as zero-size arrays. Where a param may be absent, it is read through
a flat view and its gradient is allocated as ``np.zeros_like(param)``, so both branches of
the ``has_bias``/``learned`` test type-check in numba whatever rank the absent array has.
"""

import math

import numba
import numpy as np

from graphc.kernels.elementwise import unbroadcast
from graphc.kernels.parallel import col_sums, linear_rows, linear_rows_bwd


# --------------------------------------------------------------------------- linear
@numba.njit(cache=True)
def linear_fwd(x, weight, bias, has_bias, out=None):
    n_in = x.shape[-1]
    n_out = weight.shape[0]
    x2 = x.reshape(-1, n_in)
    if out is None:
        out = np.empty(x.shape[:-1] + (n_out,), dtype=x.dtype)
    bf = bias.reshape(-1)
    linear_rows(x2, weight, bf if has_bias else bf[:0], out.reshape(-1, n_out))
    return (out,)


@numba.njit(cache=True)
def linear_bwd(g_out, x, weight, bias, has_bias, out, into_x=None):
    n_in = x.shape[-1]
    n_out = weight.shape[0]
    x2 = x.reshape(-1, n_in)
    g2 = g_out.reshape(-1, n_out)
    if into_x is None:
        into_x = np.empty_like(x)
    gx = into_x
    gw = linear_rows_bwd(g2, x2, weight, gx.reshape(-1, n_in))
    gb = np.zeros_like(bias)
    if has_bias and bias.size > 0:
        col_sums(g2, gb.reshape(-1))
    return gx, gw, gb


# --------------------------------------------------------------------------- matmul
# Plain NumPy: np.matmul already broadcasts batch dims and calls BLAS per matrix; an njit
# version would need a specialisation per pair of operand ranks for no speed gain.
def matmul_fwd(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray]:
    if out is None:
        return (np.ascontiguousarray(np.matmul(a, b)),)
    np.matmul(a, b, out=out)
    return (out,)


def _matmul_unbroadcast(x, y, shape, into):
    """``unbroadcast(x @ y, shape, into)``, the product written straight into ``into`` when it
    already has ``shape`` (nothing to sum over batch dims)."""
    if into is not None and np.broadcast_shapes(x.shape[:-2], y.shape[:-2]) == tuple(shape[:-2]):
        np.matmul(x, y, out=into)
        return into
    return unbroadcast(np.matmul(x, y), shape, into)


def matmul_bwd(g_out: np.ndarray, a: np.ndarray, b: np.ndarray, out=None, into_a=None, into_b=None):
    # Operands are at least 2-D ([..., M, K] @ [..., K, N]).
    if b.ndim == 2:
        # Shared right operand: fold every batch row into one GEMM instead of a batched
        # product followed by a sum over the batch.
        k, n = b.shape
        if into_a is None:
            ga = np.ascontiguousarray(np.matmul(g_out, b.T))
        else:
            ga = np.matmul(g_out, b.T, out=into_a)
        a2, g2 = a.reshape(-1, k).T, g_out.reshape(-1, n)
        gb = np.ascontiguousarray(np.dot(a2, g2)) if into_b is None else np.dot(a2, g2, out=into_b)
        return ga, gb
    ga = _matmul_unbroadcast(g_out, np.swapaxes(b, -1, -2), a.shape, into_a)
    gb = _matmul_unbroadcast(np.swapaxes(a, -1, -2), g_out, b.shape, into_b)
    return ga, gb


# --------------------------------------------------------------------------- embedding
@numba.njit(cache=True)
def embedding_fwd(ids, weight, padding_idx, out=None):
    n, d = weight.shape
    idf = ids.reshape(-1)
    if out is None:
        out = np.empty(ids.shape + (d,), dtype=weight.dtype)
    out2 = out.reshape(idf.size, d)
    for r in range(idf.size):
        i = idf[r]
        if i < 0 or i >= n:
            raise IndexError("embedding: id out of range")
        src, dst = weight[i], out2[r]
        for j in range(d):  # an element loop: slice assignment compiles ~1 s of error formatting
            dst[j] = src[j]
    return (out,)


@numba.njit(cache=True)
def embedding_bwd(g_out, ids, weight, padding_idx, out):
    n, d = weight.shape
    idf = ids.reshape(-1)
    g2 = g_out.reshape(-1, d)
    gw = np.zeros_like(weight)
    for r in range(idf.size):
        i = idf[r]
        if i == padding_idx:
            continue  # torch keeps the padding row's gradient at zero
        for j in range(d):
            gw[i, j] += g2[r, j]
    return np.zeros(0, weight.dtype), gw


# --------------------------------------------------------------------------- positional
@numba.njit(cache=True)
def _sinusoid(t_len, d, dtype_like):
    pe = np.empty((t_len, d), dtype=dtype_like.dtype)
    for i in range(t_len):
        for j in range(0, d, 2):
            # 10000^(2j'/D) with 2j' = j (the even column index)
            ang = i / math.pow(10000.0, j / d)
            pe[i, j] = math.sin(ang)
            if j + 1 < d:
                pe[i, j + 1] = math.cos(ang)
    return pe


@numba.njit(cache=True)
def positional_encoding_fwd(x, weight, learned, out=None):
    b_n, t_len, d = x.shape
    if out is None:
        out = np.empty_like(x)
    if learned:
        wf = weight.reshape(-1)
        if wf.size < t_len * d:
            raise ValueError("positional_encoding: sequence longer than max_len")
        for b in range(b_n):
            for t in range(t_len):
                for j in range(d):
                    out[b, t, j] = x[b, t, j] + wf[t * d + j]
    else:
        pe = _sinusoid(t_len, d, x)
        for b in range(b_n):
            for t in range(t_len):
                for j in range(d):
                    out[b, t, j] = x[b, t, j] + pe[t, j]
    return (out,)


@numba.njit(cache=True)
def positional_encoding_bwd(g_out, x, weight, learned, out, into_x=None):
    b_n, t_len, d = x.shape
    gx = np.empty_like(x) if into_x is None else into_x
    for b in range(b_n):
        for t in range(t_len):
            for j in range(d):
                gx[b, t, j] = g_out[b, t, j]
    gw = np.zeros_like(weight)
    if learned:
        gwf = gw.reshape(-1)
        for b in range(b_n):
            for t in range(t_len):
                for j in range(d):
                    gwf[t * d + j] += g_out[b, t, j]
    return gx, gw
