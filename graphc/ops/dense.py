"""Dense ops: linear, embedding, positional encodings, matmul."""

from __future__ import annotations

from graphc.ops.init import uniform_fan_in
from graphc.ops.registry import Attr, Kernel, ParamDef, Port, defop, register
from graphc.shapes import dims_equal, fmt_dim, fmt_shape, tensor


def _linear_params(c):
    fan_in = c.concrete(c.inputs["x"].shape[-1], "the last axis of `x`", port="x")
    out = c.attrs["out"]
    params = {"weight": ParamDef((out, fan_in), uniform_fan_in(fan_in))}
    if c.attrs["bias"]:
        params["bias"] = ParamDef((out,), uniform_fan_in(fan_in), decay=False)
    return params


@defop("linear", family="dense",
       kernel=Kernel("linalg", params=("weight", "bias"), attrs=("has_bias",)),
       lower=lambda a, rank: {"has_bias": a["bias"]},
       attrs={"out": Attr("int", doc="output features", min=1),
              "bias": Attr("bool", True, "add a learned bias")},
       params=_linear_params,
       flops=lambda c: 2 * c.inputs["x"].numel() * c.attrs["out"])
def linear(c):
    """Affine map over the last axis: y = x Wᵀ + b (weight [out, in], PyTorch's layout)."""
    x = c.input("x", min_rank=1)
    return x.with_shape(x.shape[:-1] + (c.attrs["out"],))


@defop("embedding", family="dense", inputs=(Port("ids", dtype="int"),),
       kernel=Kernel("linalg", params=("weight",), attrs=("padding_idx",)),
       attrs={"num": Attr("int", doc="vocabulary size (number of rows)", min=1),
              "dim": Attr("int", doc="vector size", min=1),
              "padding_idx": Attr("int", -1, "row whose gradient stays zero (-1: none)")},
       params=lambda c: {"weight": ParamDef((c.attrs["num"], c.attrs["dim"]), "normal(1.0)",
                                            decay=False)})
def embedding(c):
    """Token → vector lookup: out[..., :] = W[ids[...]]."""
    ids = c.input("ids")
    if not -1 <= c.attrs["padding_idx"] < c.attrs["num"]:
        c.fail(f"padding_idx {c.attrs['padding_idx']} is outside the vocabulary 0..{c.attrs['num'] - 1}",
               attr="padding_idx")
    return tensor(ids.shape + (c.attrs["dim"],), "float32")


def _pe_params(c):
    if c.attrs["kind"] != "learned":
        return {}
    d = c.concrete(c.inputs["x"].shape[-1], "the model width (last axis of `x`)", port="x")
    return {"weight": ParamDef((c.attrs["max_len"], d), "normal(0.02)", decay=False)}


@defop("positional_encoding", family="dense", tags=("position",),
       kernel=Kernel("linalg", params=("weight",), attrs=("learned",)),
       lower=lambda a, rank: {"learned": a["kind"] == "learned"},
       attrs={"kind": Attr("str", "sinusoidal", "sinusoidal (fixed) or learned",
                           choices=("sinusoidal", "learned")),
              "max_len": Attr("int", 512, "longest sequence supported", min=1)},
       params=_pe_params, flops=lambda c: c.inputs["x"].numel())
def positional_encoding(c):
    """Adds position information to [B, T, D]: PE(i,2j)=sin(i/10000^(2j/D)), PE(i,2j+1)=cos(...)."""
    x = c.input("x", ranks=(3,))
    t, d = x.shape[1], x.shape[2]
    if t.is_Integer and int(t) > c.attrs["max_len"]:
        c.fail(f"sequence length {t} exceeds max_len {c.attrs['max_len']}", attr="max_len")
    if c.attrs["kind"] == "sinusoidal" and d.is_Integer and int(d) % 2:
        c.fail(f"sinusoidal encoding needs an even model width, found {d}", port="x")
    return x


@register("positional_encoding", "guards")
def _positional_encoding_guards(attrs: dict, inputs: dict) -> list:
    """A symbolic sequence axis must fit max_len when a batch binds it (graphc.compiler.guards):
    the kernel would refuse it with a bare ValueError."""
    t, max_len = inputs["x"].shape[1], attrs["max_len"]
    return [(max_len - t, f"max_len {max_len} is shorter than the sequence (axis 1 of its input, "
             f"{fmt_dim(t)})")]


def _matmul_flops(c):
    a, b = c.inputs["a"], c.inputs["b"]
    return 2 * c.outputs["out"].numel() * a.shape[-1] if c.outputs else 2 * a.numel() * b.shape[-1]


@defop("matmul", family="dense", inputs=("a", "b"), flops=_matmul_flops, kernel=Kernel("linalg"))
def matmul(c):
    """Matrix product a @ b over the last two axes; leading (batch) axes broadcast."""
    a, b = c.input("a", min_rank=2), c.input("b", min_rank=2)
    if not dims_equal(a.shape[-1], b.shape[-2]):
        c.fail(f"inner dimensions differ: a is {fmt_shape(a.shape)}, b is {fmt_shape(b.shape)}",
               port="b")
    from graphc.ops.elementwise import broadcast_shapes

    batch = broadcast_shapes(c, a.shape[:-2], b.shape[:-2])
    return a.with_shape(batch + (a.shape[-2], b.shape[-1]))
