"""ONNX exporter of multi-head attention, spelled out in opset-17 ops (MatMul, Softmax, …).

Masking follows the kernel: a masked score (causal: key s > query t; padding:
key_padding_mask[b, s] > 0.5) is *replaced* by -1e30, so a fully masked row is uniform.
"""

from __future__ import annotations

import math

from graphc.export.builder import Emit
from graphc.ops import register

MASKED = -1.0e30


def _heads(e: Emit, x: str, heads: int, dh: int, perm: list[int]) -> str:
    """[B, L, E] → [B, H, L, dh] (perm [0, 2, 1, 3]) or [B, H, dh, L] (perm [0, 2, 3, 1])."""
    return e.op("Transpose", e.op("Reshape", x, e.ints([0, 0, heads, dh])), perm=perm)


@register("attention", "onnx")
def attention(e: Emit) -> str:
    q, qt = e.input("q"), e.type("q")
    kv = e.input("kv") or q
    kvt = e.type("kv") or qt
    heads = e.attrs["heads"]
    width = qt.shape[2]
    if not width.is_Integer:
        e.fail(f"the query width must be concrete to split heads, found `{width}`")
    width = int(width)
    dh = width // heads
    bias = e.has_param("bq")

    def proj(x: str, w: str, b: str) -> str:
        return e.linear(x, e.param(w), e.param(b) if bias else None, 3)

    qh = _heads(e, proj(q, "wq", "bq"), heads, dh, [0, 2, 1, 3])
    kh = _heads(e, proj(kv, "wk", "bk"), heads, dh, [0, 2, 3, 1])
    vh = _heads(e, proj(kv, "wv", "bv"), heads, dh, [0, 2, 1, 3])
    scores = e.op("Mul", e.op("MatMul", qh, kh), e.const(1.0 / math.sqrt(dh)))  # [B, H, T, S]
    masks = []
    if e.attrs["causal"]:
        t = e.op("Unsqueeze", e.op("Range", e.const(0, "int64"), e.scalar_dim(qt.shape[1]),
                                   e.const(1, "int64")), e.ints([1]))
        s = e.op("Range", e.const(0, "int64"), e.scalar_dim(kvt.shape[1]), e.const(1, "int64"))
        masks.append(e.op("Greater", s, t))  # [T, S]: key after query
    pad = e.input("key_padding_mask")
    if pad is not None:
        masks.append(e.op("Unsqueeze", e.op("Greater", pad, e.const(0.5)), e.ints([1, 2])))  # [B,1,1,S]
    if masks:
        mask = masks[0] if len(masks) == 1 else e.op("Or", *masks)
        scores = e.op("Where", mask, e.const(MASKED), scores)
    ctx = e.op("MatMul", e.op("Softmax", scores, axis=-1), vh)  # [B, H, T, dh]
    ctx = e.op("Reshape", e.op("Transpose", ctx, perm=[0, 2, 1, 3]), e.ints([0, 0, width]))
    return e.linear(ctx, e.param("wo"), e.param("bo") if bias else None, 3)
