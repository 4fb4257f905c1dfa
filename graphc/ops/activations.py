"""Activations beyond relu/gelu/tanh/sigmoid: clamp, relu6 (MobileNetV2), hardswish
(MobileNetV3) and silu (swish; Llama's gated FFN).

Each has a `Pointwise` rule (graphc.ops.scalar): its kernels and the fused groups it joins are
generated from it. Gradients at the bounds follow PyTorch: clamp passes the gradient where
lo <= x <= hi (inclusive), relu6 (hardtanh) only where 0 < x < 6, hardswish uses (2x + 3) / 6
on [-3, 3]; a NaN input stays NaN.
"""

from __future__ import annotations

import math

from graphc.ops.registry import Attr, Kernel, defop
from graphc.ops.scalar import Pointwise

_ACTIVATIONS = {  # name: (doc, pointwise rule)
    "relu6": ("min(max(0, x), 6), MobileNetV2's activation (PyTorch's ReLU6: the gradient "
              "passes where 0 < x < 6).",
              Pointwise("0 if x < 0 else (6 if x > 6 else x)", x="(g if x < 6 else 0) if x > 0 else 0")),
    "hardswish": ("x · relu6(x + 3) / 6, MobileNetV3's activation (PyTorch's Hardswish).",
                  Pointwise("0 if x <= -3 else (x if x >= 3 else x * (x + 3) / 6)",
                            x="0 if x < -3 else (g * (2 * x + 3) / 6 if x <= 3 else g)")),
    "silu": ("SiLU, also called swish: x · σ(x). Gated units are written from it: SwiGLU "
             "(Llama's FFN) is `{op: mul, in: [gate_act, up]}` with `gate_act: {op: silu, in: "
             "gate}` and gate, up two linear maps of the same input (the `fuse` pass makes the "
             "silu and the product one generated kernel).",
             Pointwise("x * sigmoid(x)", x="g * sigmoid(x) * (1 + x * (1 - sigmoid(x)))")),
}


def _activation(name: str, doc: str, pointwise: Pointwise):
    def rule(c):
        return c.input("x")

    rule.__doc__ = doc
    defop(name, family="activation", flops=lambda c: c.inputs["x"].numel(),
          kernel=Kernel("pointwise"), pointwise=pointwise)(rule)


for _name, (_doc, _rule) in _ACTIVATIONS.items():
    _activation(_name, _doc, _rule)


def _lower_clamp(a: dict, rank: int) -> dict:
    return {"lo": -math.inf if a["min"] is None else a["min"],
            "hi": math.inf if a["max"] is None else a["max"]}


@defop("clamp", family="activation", kernel=Kernel("pointwise", attrs=("lo", "hi")),
       lower=_lower_clamp, flops=lambda c: c.inputs["x"].numel(),
       pointwise=Pointwise("lo if x < lo else (hi if x > hi else x)", x="(g if x <= hi else 0) if x >= lo else 0"),
       attrs={"min": Attr("float", None, "lower bound (null: none)"),
              "max": Attr("float", None, "upper bound (null: none)")})
def clamp(c):
    """min(max(x, min), max), PyTorch's clamp: the gradient passes where min ≤ x ≤ max."""
    lo, hi = c.attrs["min"], c.attrs["max"]
    if lo is None and hi is None:
        c.fail("clamp needs `min`, `max` or both", attr="min",
               hint="e.g. {op: clamp, in: x, min: 0, max: 6}")
    if lo is not None and hi is not None and lo > hi:
        c.fail(f"min {lo:g} is greater than max {hi:g}", attr="max")
    return c.input("x")
