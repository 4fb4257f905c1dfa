"""Positions inside attention written from primitives: rotary embeddings and the causal mask.

The fused `attention` op (graphc.ops.attention) projects, masks and attends in one kernel; a
Llama-style layer, whose rotary positions act between the projections and the dot product, is
written from `linear`, `reshape`, `permute`, `rotary`, `matmul`, `causal_mask` and `softmax`
(examples/zoo/llama.yaml)."""

from __future__ import annotations

from graphc.ops.registry import Attr, Kernel, defop
from graphc.shapes import fmt_dim


@defop("rotary", family="position", tags=("position",),
       kernel=Kernel("position", attrs=("heads", "base", "interleaved")),
       attrs={"heads": Attr("int", 1, "heads side by side in the last axis of a [B, T, H·d] input "
                            "(a [B, H, T, d] input: 1)", min=1),
              "base": Attr("float", 10000.0, "θ_j = base^(-2j/d)"),
              "interleaved": Attr("bool", False, "rotate pairs (2j, 2j+1) as Meta's Llama; default "
                                  "(j, j+d/2) as Hugging Face Llama and GPT-NeoX")},
       flops=lambda c: 3 * c.inputs["x"].numel())
def rotary(c):
    """Rotary position embedding (RoPE, Su et al. 2021) with Llama's semantics: each pair of
    features of each head is rotated by t·θ_j, t the position (axis -2), θ_j = base^(-2j/d),
    d the head width; `out = x·cos + rotate_half(x)·sin`. Takes queries or keys as [B, H, T, d]
    or [B, T, H·d] (say `heads`). No parameters; apply it to q and k, not v."""
    x = c.input("x", ranks=(3, 4))
    heads, width = c.attrs["heads"], x.shape[-1]
    if x.rank == 4 and heads != 1:
        c.fail(f"a [B, H, T, d] input {x} has its heads on axis 1; `heads` is for [B, T, H·d] "
               "inputs", attr="heads", hint="drop `heads`")
    if width.is_Integer:
        if int(width) % heads:
            c.fail(f"heads={heads} does not divide the last axis {fmt_dim(width)} of {x}", attr="heads")
        if (int(width) // heads) % 2:
            c.fail(f"the head width {int(width) // heads} must be even: rotary rotates pairs of "
                   "features", port="x")
    if c.attrs["base"] <= 1:
        c.fail(f"base must be greater than 1, found {c.attrs['base']:g}", attr="base")
    return x


@defop("causal_mask", family="position", kernel=Kernel("position"),
       flops=lambda c: c.inputs["x"].numel())
def causal_mask(c):
    """Attention scores [..., T, S] with the future masked: entries where the key s comes after
    the query t (s > t) become -inf (PyTorch's `is_causal`), so a following `softmax` gives them
    weight 0 and no gradient flows there. Row t always keeps keys 0..t, so no row is empty."""
    return c.input("x", min_rank=2)
