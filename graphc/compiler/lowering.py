"""Lowering: how one IR node calls its kernels.

Op definitions speak the spec's language (`kernel: [3, 3]`, `bias: true`, `output: last`);
kernels take flat scalar arguments (`stride_h`, `has_bias`, `last`). The translation is one
rule table here, so neither side has to know the other's naming.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphc.ir import Node
from graphc.kernels import KERNELS, views


@dataclass(frozen=True)
class Kernel:
    """A forward/backward pair with the names of its arguments, in gradient-slot order."""

    name: str
    fwd: Callable
    bwd: Callable
    inputs: tuple[str, ...]
    params: tuple[str, ...] = ()
    attrs: tuple[str, ...] = ()
    n_saved: int = 0
    nondiff: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()
    variadic: bool = False  # the single input takes a list (concat)


def _view(name: str, inputs=("x",), attrs=(), variadic=False) -> Kernel:
    return Kernel(name, getattr(views, f"{name}_fwd"), getattr(views, f"{name}_bwd"), inputs,
                  attrs=attrs, variadic=variadic)


def _from_table(name: str) -> Kernel:
    k = KERNELS[name]
    return Kernel(name, k.fwd, k.bwd, k.inputs, k.params, k.attrs, k.n_saved, k.nondiff_inputs,
                  k.buffers)


KERNEL_TABLE: dict[str, Kernel] = {
    **{name: _from_table(name) for name in KERNELS if name != "concat2"},
    # data movement and reductions run over NumPy (graphc.kernels.views)
    "flatten": _view("flatten", attrs=("start",)),
    "reshape": _view("reshape", attrs=("shape",)),
    "transpose": _view("transpose", attrs=("dim0", "dim1")),
    "permute": _view("permute", attrs=("dims",)),
    "slice": _view("slice", attrs=("axis", "start", "stop")),
    "split": _view("split", attrs=("axis", "sizes")),
    "concat": _view("concat", inputs=("xs",), attrs=("axis",), variadic=True),
    "sum": _view("sum", attrs=("axis", "keepdims")),
    "mean": _view("mean", attrs=("axis", "keepdims")),
    # softmax along any axis: the last-axis Numba kernel, with the axis moved when needed
    "softmax": _view("softmax", attrs=("axis",)),
    "log_softmax": _view("log_softmax", attrs=("axis",)),
}

def takes(fn: Callable, keyword: str) -> bool:
    """Whether a kernel accepts `keyword` (its signature is the one source of truth for which
    destinations, `out=`/`into_<port>=`, it can write into)."""
    return keyword in inspect.signature(getattr(fn, "py_func", fn)).parameters


# Kernel arguments filled at run time rather than from attributes.
RUNTIME_ATTRS = {"training": "training"}
NOISE_INPUTS = {"dropout": "u"}  # uniform noise the driver draws (so fwd and bwd agree)
# (op, attribute) pairs that are shapes whose dims may be symbolic: passed as a tuple the
# driver evaluates per batch (reshape's target, affine_grid's output size).
SHAPE_ATTRS = {("reshape", "shape"), ("affine_grid", "size")}


@dataclass
class Lowered:
    kernel: Kernel
    attrs: dict[str, Any] = field(default_factory=dict)  # constant kernel arguments
    dynamic: dict[str, Any] = field(default_factory=dict)  # arguments computed at run time


def _split_pairs(a: dict) -> dict:
    out = {}
    for spec_name, short in (("kernel", "k"), ("stride", "stride"), ("padding", "pad"),
                             ("dilation", "dil"), ("output_padding", "out_pad")):
        v = a.get(spec_name)
        if isinstance(v, tuple) and len(v) == 2:
            out[f"{short}_h"], out[f"{short}_w"] = v
    if "k_h" in out:
        out["kh"], out["kw"] = out.pop("k_h"), out.pop("k_w")
    return out


def lower(node: Node, rank: int) -> Lowered:
    """Kernel and arguments for `node`; `rank` is the rank of its first input."""
    kernel = KERNEL_TABLE.get(node.op)
    if kernel is None:
        raise LookupError(f"op `{node.op}` is registered but has no kernel: add it to KERNEL_TABLE in "
                          "graphc/compiler/lowering.py")
    a = dict(node.attrs)
    if a.get("stride", ()) is None:  # pooling: the stride defaults to the window
        a["stride"] = a["kernel"]
    spec = {**a, **_split_pairs(a)}
    spec["has_bias"] = a.get("bias", True)
    spec["learned"] = a.get("kind") == "learned"
    spec["last"] = a.get("output") == "last"
    spec["nonlinearity_tanh"] = a.get("nonlinearity", "tanh") == "tanh"
    for name in ("axis", "start", "dim0", "dim1"):  # negative axes count from the end
        v = spec.get(name)
        if node.op == "slice" and name == "start":
            continue  # an index, not an axis
        if isinstance(v, int) and not isinstance(v, bool):
            spec[name] = v % rank if rank else v
        elif isinstance(v, tuple) and name == "axis":
            spec[name] = tuple(x % rank for x in v)
    if node.op == "permute" and rank:  # the backward inverts the order with argsort
        spec["dims"] = tuple(d % rank for d in a["dims"])
    if node.op in ("sum", "mean") and isinstance(spec.get("axis"), int):
        spec["axis"] = (spec["axis"],)
    out = Lowered(kernel)
    for name in kernel.attrs:
        if name in RUNTIME_ATTRS:
            out.dynamic[name] = RUNTIME_ATTRS[name]
        elif (node.op, name) in SHAPE_ATTRS:
            out.dynamic[name] = tuple(a[name])  # symbolic dims, bound when the batch arrives
        elif name in spec:
            out.attrs[name] = spec[name]
        else:
            raise KeyError(f"kernel `{kernel.name}` needs `{name}`, which op `{node.op}` does not give")
    return out
