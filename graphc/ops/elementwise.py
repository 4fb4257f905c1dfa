"""Elementwise arithmetic with broadcasting, activations, softmax, dropout, reductions.

The elementwise ops carry a `Pointwise` rule: the forward as a scalar expression over the
ports and attributes, and one VJP per differentiable port over the ports, the output `y` and
its cotangent `g`. The rules are the ops' only derivative definitions: their kernels
(`Kernel("pointwise")`, graphc.kernels.pointwise) and every fused group they join
(graphc.compiler.fuse) are generated from them. Functions a rule may call: graphc.ops.scalar.
"""

from __future__ import annotations

from graphc.ops.registry import OPS, Attr, Kernel, axis, defop
from graphc.ops.scalar import Pointwise
from graphc.shapes import dims_equal, fmt_dim, fmt_shape


def broadcast_shapes(c, a: tuple, b: tuple) -> tuple:
    """NumPy broadcasting over symbolic dims: equal, or one of them is 1."""
    import sympy

    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else sympy.Integer(1)
        y = b[-i] if i <= len(b) else sympy.Integer(1)
        if dims_equal(x, y) or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            c.fail(f"shapes {fmt_shape(a)} and {fmt_shape(b)} do not broadcast: "
                   f"axis {-i} is {fmt_dim(x)} vs {fmt_dim(y)}", port="b",
                   hint="broadcasting needs equal sizes or a size of 1 on each axis")
    return tuple(reversed(out))


def _binary(name: str, doc: str, pointwise: Pointwise):
    def rule(c):
        a, b = c.input("a"), c.input("b")
        return a.with_shape(broadcast_shapes(c, a.shape, b.shape))

    rule.__doc__ = doc
    defop(name, family="arith", inputs=("a", "b"), flops=lambda c: c.outputs["out"].numel(),
          kernel=Kernel("pointwise"), tags=("skip",) if name == "add" else (), pointwise=pointwise)(rule)


# The VJPs of a broadcast port are summed back to its shape by the generated kernels.
_binary("add", "Elementwise a + b with NumPy broadcasting (a residual connection is an add).",
        Pointwise("a + b", a="g", b="g"))
_binary("sub", "Elementwise a - b with NumPy broadcasting.", Pointwise("a - b", a="g", b="-g"))
_binary("mul", "Elementwise a * b with NumPy broadcasting (gating).",
        Pointwise("a * b", a="g * b", b="g * a"))


# name: (doc, pointwise rule, tags). A NaN input gives relu 0, as the former kernel did.
_ACTIVATIONS = {
    "relu": ("max(0, x).", Pointwise("x if x > 0 else 0", x="g if x > 0 else 0"), ()),
    "gelu": ("x·Φ(x), the exact (erf) GELU as in PyTorch's default.",
             Pointwise("x * cdf(x)", x="g * (cdf(x) + x * pdf(x))"), ()),
    "tanh": ("Hyperbolic tangent; tanh' = 1 - tanh².", Pointwise("tanh(x)", x="g * (1 - y * y)"),
             ("saturating",)),
    "sigmoid": ("σ(x) = 1 / (1 + e^{-x}); σ' = σ(1 - σ).", Pointwise("sigmoid(x)", x="g * y * (1 - y)"),
                ("saturating",)),
    "rsqrt": ("1 / √x (a layer norm written from primitives divides by √(var + eps)).",
              Pointwise("rsqrt(x)", x="-0.5 * g * y * y * y"), ()),
}


def _activation(name: str, doc: str, pointwise: Pointwise, tags: tuple[str, ...]):
    def rule(c):
        return c.input("x")

    rule.__doc__ = doc
    family = "arith" if name == "rsqrt" else "activation"
    defop(name, family=family, flops=lambda c: c.inputs["x"].numel(), tags=tags,
          kernel=Kernel("pointwise"), pointwise=pointwise)(rule)


for _name, (_doc, _rule, _tags) in _ACTIVATIONS.items():
    _activation(_name, _doc, _rule, _tags)


def _axis_attr():
    return {"axis": Attr("axis", -1, "axis that sums to one")}


# softmax along any axis: the last-axis Numba kernel, with the axis moved when needed
_SOFTMAX_KERNEL = Kernel("views", attrs=("axis",))


def _lower_axis(a: dict, rank: int) -> dict:
    return {"axis": axis(a["axis"], rank)}


def _check_axis(c, x, axis_attr="axis"):
    axis = c.attrs[axis_attr]
    if not -x.rank <= axis < x.rank:
        c.fail(f"axis {axis} is out of range for a rank-{x.rank} input {x}", attr=axis_attr)
    return axis % x.rank


@defop("softmax", family="activation", attrs=_axis_attr(), flops=lambda c: 5 * c.inputs["x"].numel(),
       kernel=_SOFTMAX_KERNEL, lower=_lower_axis)
def softmax(c):
    """e^{z_i} / Σ_j e^{z_j} along `axis`, computed stably (the row max is subtracted first)."""
    x = c.input("x", min_rank=1)
    _check_axis(c, x)
    return x


@defop("log_softmax", family="activation", attrs=_axis_attr(),
       flops=lambda c: 5 * c.inputs["x"].numel(), kernel=_SOFTMAX_KERNEL, lower=_lower_axis)
def log_softmax(c):
    """z_i - log Σ_j e^{z_j} along `axis`, computed stably."""
    x = c.input("x", min_rank=1)
    _check_axis(c, x)
    return x


@defop("dropout", family="regularization", stochastic=True,
       kernel=Kernel("elementwise", attrs=("p",), noise="u", mode=True),
       attrs={"p": Attr("float", 0.1, "probability of zeroing an element (training only)")},
       flops=lambda c: 2 * c.inputs["x"].numel())
def dropout(c):
    """Zeroes elements with probability p in training and rescales by 1/(1-p); identity in eval."""
    if not 0.0 <= c.attrs["p"] < 1.0:
        c.fail(f"p must be in [0, 1), found {c.attrs['p']}", attr="p")
    return c.input("x")


def _lower_axes(a: dict, rank: int) -> dict:
    axes = a["axis"]
    if isinstance(axes, int):
        axes = (axes,)
    return {"axis": None if axes is None else tuple(axis(x, rank) for x in axes),
            "keepdims": a["keepdims"]}


def _reduce(name: str, doc: str):
    def rule(c):
        x = c.input("x")
        axes = c.attrs["axis"]
        axes = list(range(x.rank)) if axes is None else ([axes] if isinstance(axes, int) else axes)
        norm = set()
        for a in axes:
            if not -x.rank <= a < x.rank:
                c.fail(f"axis {a} is out of range for a rank-{x.rank} input {x}", attr="axis")
            if a % x.rank in norm:  # NumPy's and PyTorch's sums refuse it too: it was a crash at run time
                c.fail(f"axis {a} repeats axis {a % x.rank} in {list(axes)} (a rank-{x.rank} input {x})",
                       attr="axis")
            norm.add(a % x.rank)
        keep = c.attrs["keepdims"]
        shape = [1 if i in norm else d for i, d in enumerate(x.shape) if keep or i not in norm]
        return x.with_shape(shape)

    rule.__doc__ = doc
    defop(name, family="arith", kernel=Kernel("views", attrs=("axis", "keepdims")), lower=_lower_axes,
          attrs={"axis": Attr("axes", None, "axis or list of axes (null: all)"),
                 "keepdims": Attr("bool", False, "keep reduced axes with size 1")},
          flops=lambda c: c.inputs["x"].numel())(rule)


_reduce("sum", "Sum over the given axes.")
_reduce("mean", "Mean over the given axes.")
# Over the trailing axes with keepdims, a sum or mean may join a fused pointwise group (a layer
# norm from primitives: graphc.compiler.kernelgen_rows); its VJP broadcasts the cotangent back.
OPS["sum"].rules["reduce"] = "sum"
OPS["mean"].rules["reduce"] = "mean"
