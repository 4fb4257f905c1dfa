"""Multi-head attention: self, causal (masked) and cross attention, with a key padding mask."""

from __future__ import annotations

import math

from graphc.ops.init import ZEROS, uniform_fan_in, xavier_uniform
from graphc.ops.registry import Attr, Kernel, ParamDef, Port, defop
from graphc.shapes import fmt_dim


def _params(c):
    q = c.inputs["q"]
    kv = c.inputs.get("kv") or q
    e = c.concrete(q.shape[-1], "the query width (last axis of `q`)", port="q")
    ekv = c.concrete(kv.shape[-1], "the key/value width (last axis of `kv`)", port="kv")
    w_in = xavier_uniform(e, 3 * e)  # PyTorch's init of in_proj_weight [3E, E]
    p = {"wq": ParamDef((e, e), w_in), "wk": ParamDef((e, ekv), w_in), "wv": ParamDef((e, ekv), w_in)}
    if c.attrs["bias"]:
        p |= {n: ParamDef((e,), ZEROS, decay=False) for n in ("bq", "bk", "bv")}
    p["wo"] = ParamDef((e, e), uniform_fan_in(e))
    if c.attrs["bias"]:
        p["bo"] = ParamDef((e,), ZEROS, decay=False)
    return p


def _flops(c):
    q = c.inputs["q"]
    kv = c.inputs.get("kv") or q
    b, t, e = q.shape
    s, ekv = kv.shape[1], kv.shape[2]
    proj = 2 * b * (t * e * e + 2 * s * e * ekv + t * e * e)
    return proj + 4 * b * t * s * e


@defop("attention", family="attention",
       inputs=(Port("q"), Port("kv", optional=True), Port("key_padding_mask", optional=True, grad=False)),
       kernel=Kernel("attention", params=("wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"),
                     attrs=("heads", "causal", "has_bias"), saved=4, saved_ranks=(2, 2, 4, 2)),
       lower=lambda a, rank: {"heads": a["heads"], "causal": a["causal"], "has_bias": a["bias"]},
       attrs={"heads": Attr("int", doc="number of heads; must divide the width", min=1),
              "causal": Attr("bool", False, "position t attends only to positions ≤ t"),
              "bias": Attr("bool", True, "biases on the q/k/v/out projections")},
       params=_params, flops=_flops)
def attention(c):
    """softmax(Q Kᵀ / √d_head + mask) V per head, heads concatenated, then an output projection.
    `q` [B, T, E]; `kv` [B, S, E_kv] for cross attention (default: q); `key_padding_mask` [B, S]
    with 1 where a key is padding.
    A query whose keys are all masked (a fully padded row of `key_padding_mask`) attends
    uniformly to all of them: its output is the output projection of the mean of V, finite,
    with finite gradients. PyTorch's nn.MultiheadAttention gives NaN there and
    F.scaled_dot_product_attention 0 (2.x); mask such rows out of the loss (cross_entropy's
    `mask`, `ignore_index`) rather than rely on either value."""
    q = c.input("q", ranks=(3,))
    kv = c.input("kv", ranks=(3,)) or q
    heads, e = c.attrs["heads"], q.shape[-1]
    if e.is_Integer and int(e) % heads:
        c.fail(f"heads={heads} does not divide the query width {e} (from `q` {q}): "
               f"{e}/{heads} = {int(e) / heads:g}", attr="heads",
               hint=f"use a head count that divides {e}, e.g. {_divisor_near(int(e), heads)}")
    c.same(kv.shape[0], q.shape[0], "batch axis of `kv`", port="kv")
    if c.attrs["causal"] and c.has("kv"):
        tq, tk = q.shape[1], kv.shape[1]
        if not (tq - tk).is_zero and tq.is_Integer and tk.is_Integer:
            c.fail(f"causal cross attention needs equal query and key lengths, found {fmt_dim(tq)} "
                   f"and {fmt_dim(tk)}", attr="causal")
    m = c.input("key_padding_mask", ranks=(2,))
    if m is not None:
        c.same(m.shape[0], q.shape[0], "batch axis of `key_padding_mask`", port="key_padding_mask")
        c.same(m.shape[1], kv.shape[1], "key axis of `key_padding_mask`", port="key_padding_mask")
    return q


def _divisor_near(n: int, k: int) -> int:
    """The divisor of n closest to k (for a hint): divisors come in pairs (d, n/d), so trying d
    up to √n finds them all — bounded, so a width of 2**40 does not take hours."""
    divisors = {1, n}
    for d in range(1, min(math.isqrt(n), 1 << 16) + 1):
        if n % d == 0:
            divisors |= {d, n // d}
    return min(divisors, key=lambda d: (abs(d - k), -d)) if n > 0 else 1

