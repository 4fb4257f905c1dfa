"""Activations beyond relu/gelu/tanh/sigmoid: clamp, relu6 (MobileNetV2), hardswish
(MobileNetV3) and silu (swish; Llama's gated FFN)."""

from __future__ import annotations

import math

from graphc.ops.registry import Attr, Kernel, defop

_ACTIVATIONS = {  # name: (doc, tensors the forward saves for the backward)
    "relu6": ("min(max(0, x), 6), MobileNetV2's activation (PyTorch's ReLU6: the gradient "
              "passes where 0 < x < 6).", 0),
    "hardswish": ("x · relu6(x + 3) / 6, MobileNetV3's activation (PyTorch's Hardswish).", 0),
    "silu": ("SiLU, also called swish: x · σ(x). Gated units are written from it: SwiGLU "
             "(Llama's FFN) is `{op: mul, in: [gate_act, up]}` with `gate_act: {op: silu, in: "
             "gate}` and gate, up two linear maps of the same input (a fused op would save one "
             "pass over the hidden activations and add two kernels to compile).", 1),
}


def _activation(name: str, doc: str, saved: int):
    def rule(c):
        return c.input("x")

    rule.__doc__ = doc
    defop(name, family="activation", flops=lambda c: c.inputs["x"].numel(),
          kernel=Kernel("activations", saved=saved))(rule)


for _name, (_doc, _saved) in _ACTIVATIONS.items():
    _activation(_name, _doc, _saved)


def _lower_clamp(a: dict, rank: int) -> dict:
    return {"lo": -math.inf if a["min"] is None else a["min"],
            "hi": math.inf if a["max"] is None else a["max"]}


@defop("clamp", family="activation", kernel=Kernel("activations", attrs=("lo", "hi")),
       lower=_lower_clamp, flops=lambda c: c.inputs["x"].numel(),
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
