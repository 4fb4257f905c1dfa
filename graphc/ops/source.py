"""Ops that make tensors: `param` (a standalone learned tensor), `constant` (a literal) and
`expand` (repeat size-1 axes, e.g. a class token over the batch).

A number written in `in:` (`{op: sub, in: [x, 6]}`) becomes a `constant` node named after the
port it feeds (`shift.b`); see docs/spec.md."""

from __future__ import annotations

import re

from graphc.ops.registry import Attr, Kernel, ParamDef, Port, RuntimeShape, defop
from graphc.shapes import dims_equal, fmt_dim, fmt_shape, tensor

_INIT = re.compile(r"^(zeros|ones|(uniform|normal)\(\s*[0-9.eE+-]+\s*\))$")


def _shape(c, what: str = "shape") -> tuple[int, ...]:
    shape = tuple(c.attrs["shape"])
    for i, d in enumerate(shape):
        if d < 1:
            c.fail(f"axis {i} of `{what}` is {d}; sizes must be ≥ 1", attr=what)
    return shape


def _param_params(c):
    shape = _shape(c)
    return {"weight": ParamDef(shape, c.attrs["init"].replace(" ", ""), decay=c.attrs["decay"])}


@defop("param", family="source", inputs=(), kernel=Kernel("source", params=("weight",)),
       attrs={"shape": Attr("ints", doc="its shape, e.g. [1, 1, d]"),
              "init": Attr("str", "normal(0.02)", "zeros, ones, normal(STD) or uniform(BOUND)"),
              "decay": Attr("bool", False, "weight decay applies (off by default: class tokens, "
                            "position tables and scales are usually kept out of it)")},
       params=_param_params)
def param(c):
    """A learned tensor of a given shape with no inputs: a ViT class token [1, 1, d], a
    layer-scale vector (one gain per channel), a learned query. Its parameter is `NODE.weight`;
    broadcast it with arithmetic or `expand` it to the batch."""
    shape = _shape(c)
    if not _INIT.match(c.attrs["init"].strip()):
        c.fail(f"unknown initializer `{c.attrs['init']}`", attr="init",
               hint="zeros, ones, normal(0.02) or uniform(0.1)")
    return tensor(shape, "float32")


def _lower_constant(a: dict, rank: int) -> dict:
    v = a["value"]
    return {"value": tuple(float(x) for x in v) if isinstance(v, tuple) else (float(v),)}


@defop("constant", family="source", inputs=(), kernel=Kernel("source", attrs=("value",)),
       lower=_lower_constant,
       attrs={"value": Attr("float", doc="the value of every element"),
              "shape": Attr("ints", (), "its shape (default: a scalar, which broadcasts)")})
def constant(c):
    """A constant tensor filled with `value` (no gradient). Numbers written in `in:` make these
    for you: `{op: mul, in: [x, 0.5]}`, `{op: add, in: [x, [1.0, 2.0, 3.0]]}`."""
    import sympy

    shape = _shape(c)
    v = c.attrs["value"]
    if isinstance(v, tuple):  # a list literal: as many values as elements
        n = int(sympy.Mul(*shape)) if shape else 1
        if len(v) != n:
            c.fail(f"{len(v)} values for shape {list(shape)} ({n} elements)", attr="value")
    return tensor(shape, "float32")


@defop("expand", family="shape", inputs=(Port("x", dtype="any"),), tags=("shape_only",),
       kernel=Kernel("source", attrs=("shape",)),
       lower=lambda a, rank: {"shape": RuntimeShape(tuple(a["shape"]))},
       attrs={"shape": Attr("shape", doc="the output shape; dims may be symbolic (`[B, 1, d]`)")})
def expand(c):
    """Repeat the size-1 axes (and missing leading axes) of `x` to `shape`, PyTorch's
    `Tensor.expand` (a copy, not a view); the backward sums over the repeats. A learned class
    token [1, 1, d] becomes one per image with `{op: expand, in: cls, shape: [B, 1, d]}`."""
    x = c.input("x")
    target = tuple(c.attrs["shape"])
    if len(target) < x.rank:
        c.fail(f"`shape` [{fmt_shape(target)}] has fewer axes than the input {x}", attr="shape")
    for i, d in enumerate(target):
        if d == -1 or (d.is_number and d < 1):
            c.fail(f"axis {i} of `shape` is {fmt_dim(d)}; write every size (symbolic dims such as B "
                   "are fine)", attr="shape")
    lead = len(target) - x.rank
    for i, d in enumerate(x.shape):
        if d != 1 and not dims_equal(d, target[lead + i]):
            c.fail(f"axis {i} of {x} is {fmt_dim(d)}: only size-1 axes can be expanded, not to "
                   f"{fmt_dim(target[lead + i])}", attr="shape")
    return x.with_shape(target)
