"""Position kernels: rotary embeddings (RoPE) and the causal mask of attention scores.

rotary rotates pairs of features of every head by an angle t·θ_j that grows with the position
t (axis -2 of the input), θ_j = base^(-2j/d) for j < d/2, d the head width. Pairs are
(j, j + d/2) — GPT-NeoX and Hugging Face Llama's `rotate_half` — or, with `interleaved`,
(2j, 2j + 1) as in Meta's original Llama and torchtune. The last axis holds `heads` heads of
width d side by side ([B, T, H·d]); a [B, H, T, d] input has heads=1. A rotation's transpose
is the rotation by -t·θ_j, so the backward is the forward with the sine negated. Angles are
computed in float64 for both dtypes.

causal_mask fills score [..., t, s] with -inf where the key s lies after the query t (s > t,
PyTorch's `is_causal` / `torch.triu(..., 1)` alignment); those entries get no gradient. No row
is ever fully masked (s = 0 is always allowed), so a following softmax stays finite.
"""

import math

import numba
import numpy as np


# --------------------------------------------------------------------------- rotary
@numba.njit(cache=True)
def _rotate(x, heads, base, interleaved, sign, y):
    t_n = x.shape[-2]
    width = x.shape[-1]
    d = width // heads
    half = d // 2
    x4 = x.reshape(-1, t_n, heads, d)
    y4 = y.reshape(-1, t_n, heads, d)
    cos = np.empty((t_n, half), dtype=np.float64)
    sin = np.empty((t_n, half), dtype=np.float64)
    for t in range(t_n):
        for j in range(half):
            a = t * base ** (-2.0 * j / d)
            cos[t, j] = math.cos(a)
            sin[t, j] = sign * math.sin(a)
    for n in range(x4.shape[0]):
        for t in range(t_n):
            for h in range(heads):
                for j in range(half):
                    if interleaved:
                        i0, i1 = 2 * j, 2 * j + 1
                    else:
                        i0, i1 = j, j + half
                    a, b = x4[n, t, h, i0], x4[n, t, h, i1]
                    y4[n, t, h, i0] = a * cos[t, j] - b * sin[t, j]
                    y4[n, t, h, i1] = b * cos[t, j] + a * sin[t, j]
    return y


@numba.njit(cache=True)
def rotary_fwd(x, heads, base, interleaved, out=None):
    if out is None:
        out = np.empty_like(x)
    return (_rotate(x, heads, base, interleaved, 1.0, out),)


@numba.njit(cache=True)
def rotary_bwd(g_out, x, heads, base, interleaved, out, into_x=None):
    if into_x is None:
        into_x = np.empty_like(x)
    return (_rotate(g_out, heads, base, interleaved, -1.0, into_x),)


# --------------------------------------------------------------------------- causal_mask
@numba.njit(cache=True)
def causal_mask_fwd(x, out=None):
    if out is None:
        out = np.empty_like(x)
    t_n, s_n = x.shape[-2], x.shape[-1]
    x3 = x.reshape(-1, t_n, s_n)
    o3 = out.reshape(-1, t_n, s_n)
    for n in range(x3.shape[0]):
        for t in range(t_n):
            for s in range(s_n):
                o3[n, t, s] = x3[n, t, s] if s <= t else -np.inf
    return (out,)


@numba.njit(cache=True)
def causal_mask_bwd(g_out, x, out, into_x=None):
    if into_x is None:
        into_x = np.empty_like(x)
    t_n, s_n = x.shape[-2], x.shape[-1]
    g3 = g_out.reshape(-1, t_n, s_n)
    gx3 = into_x.reshape(-1, t_n, s_n)
    for n in range(g3.shape[0]):
        for t in range(t_n):
            for s in range(s_n):
                gx3[n, t, s] = g3[n, t, s] if s <= t else 0
    return (into_x,)
