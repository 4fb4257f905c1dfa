"""The op registry: each op is one record, with everything graphc needs to know about it.

An op definition keeps together (in the style of JAX's `lax` primitives):
  attribute schema · input ports (each saying whether it is differentiable) · shape rule ·
  parameter shapes and initializers · FLOP count · tags (groups that lint and render ask
  about) · kernel binding · attribute lowering · further registrations (e.g. an exporter).
The shape rule is the decorated function; its docstring is the op's documentation. The
kernels (forward and VJP) live in `graphc.kernels.<module>` and are named here, imported only
when first called for, so `check`, `lint` and `render` never import Numba. An elementwise op
also carries its `Pointwise` rule (scalar forward and VJPs, graphc.ops.scalar): its kernels
and every fused group it joins are generated from that rule.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from graphc.ops.scalar import Pointwise
from graphc.shapes import Dim, TensorType, dims_equal, fmt_dim

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()

ATTR_TYPES = ("int", "float", "bool", "str", "ints", "int2", "axis", "axes", "shape")


@dataclass(frozen=True)
class Attr:
    type: str
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple = ()
    min: float | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Port:
    name: str
    optional: bool = False
    dtype: str = "float"  # "float" | "int" | "any"
    variadic: bool = False  # takes any number of tensors (concat)
    grad: bool = True  # False: a float input no gradient flows into (targets, masks)
    logits: bool = False  # expects unnormalized scores: the op applies softmax/sigmoid itself

    @property
    def differentiable(self) -> bool:
        """The one place that says whether a gradient flows into this input."""
        return self.grad and self.dtype != "int"


@dataclass(frozen=True)
class ParamDef:
    shape: tuple[int, ...]
    init: str  # "zeros" | "ones" | "normal(0.02)" | "uniform_fan_in(k)" | ...
    decay: bool = True  # weight decay applies (False for biases, norm gains, buffers)
    trainable: bool = True  # False for buffers such as running statistics

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class ShapeError(Exception):
    """Raised by a shape rule; `attr` or `port` says which part of the node to point at."""

    def __init__(self, message: str, *, attr: str | None = None, port: str | None = None,
                 hint: str | None = None):
        super().__init__(message)
        self.attr, self.port, self.hint = attr, port, hint


@dataclass
class Ctx:
    """What a shape/param/flop rule sees of one node."""

    node: str
    op: str
    attrs: dict[str, Any]
    inputs: dict[str, TensorType | list[TensorType] | None]
    outputs: dict[str, TensorType] = field(default_factory=dict)

    def fail(self, message: str, **kw) -> None:
        raise ShapeError(message, **kw)

    def has(self, port: str) -> bool:
        return self.inputs.get(port) is not None

    def input(self, port: str, *, ranks: tuple[int, ...] | None = None, min_rank: int = 0):
        t = self.inputs.get(port)
        if t is None:
            return None
        if ranks is not None and t.rank not in ranks:
            want = " or ".join(str(r) for r in ranks)
            self.fail(f"input `{port}` must have rank {want}, found rank {t.rank} {t}", port=port)
        if t.rank < min_rank:
            self.fail(f"input `{port}` must have rank ≥ {min_rank}, found {t}", port=port)
        return t

    def same(self, a: Dim, b: Dim, what: str, *, port: str | None = None, attr: str | None = None):
        if not dims_equal(a, b):
            self.fail(f"{what}: expected {fmt_dim(b)}, found {fmt_dim(a)}", port=port, attr=attr)

    def concrete(self, d: Dim, what: str, *, port: str | None = None) -> int:
        if not d.is_Integer:
            self.fail(f"{what} must be a concrete size to size the parameters, found `{fmt_dim(d)}`",
                      port=port, hint="give that axis a number in the input shape or a constant")
        return int(d)

    def whole(self, d: Dim, what: str, *, attr: str | None = None) -> Dim:
        """A size computed by division must be a whole number; never floor silently."""
        import sympy

        d = sympy.nsimplify(d) if d.is_number else d
        if d.is_number and not d.is_Integer:
            self.fail(f"{what} is {d} = {float(d):g}, not a whole number", attr=attr,
                      hint="adjust padding, kernel or stride so the size divides evenly")
        if d.is_number and d < 1:
            self.fail(f"{what} is {d}: the output would be empty", attr=attr)
        return d

    def param_shape(self, *dims: Dim, what: str = "parameter size") -> tuple[int, ...]:
        return tuple(self.concrete(d, what) for d in dims)


@dataclass(frozen=True)
class RuntimeShape:
    """A lowered attribute that is a shape whose dims may be symbolic (reshape's target):
    the driver evaluates it when a batch binds the dims."""

    dims: tuple


class Choice(int):
    """A string attribute lowered to its index among the kernel's choices (Numba kernels
    compare ints, not strings). It is that int to everything else; the generated driver prints
    its name (`reduction=REDUCTION_MEAN`, with `REDUCTION_MEAN = 0` at the driver's top)."""

    name: str

    def __new__(cls, index: int, name: str) -> Choice:
        self = super().__new__(cls, index)
        self.name = name
        return self

    def __getnewargs__(self) -> tuple:
        return int(self), self.name

    @classmethod
    def of(cls, choices: tuple[str, ...], name: str) -> Choice:
        return cls(choices.index(name), name)


@dataclass(frozen=True)
class Kernel:
    """How an op runs: `<name>_fwd` and `<name>_bwd` in `graphc.kernels.<module>`.

    The calling convention is in `graphc.kernels`' docstring. The kernel takes the op's ports
    (in order), then `noise` (uniform noise the driver draws, so forward and backward agree),
    `params` and `buffers` (parameters without a gradient, updated in place), the lowered
    `attrs`, `training` when `mode` is set, and returns its outputs then `saved` tensors.
    `skips` names the input ports whose gradient the backward leaves uncomputed when handed a
    zero-size `into_<port>`; a gradient nobody needs then costs nothing (else it goes to a
    scratch buffer). `saved_ranks`, when given, are the ranks of the saved tensors (arrays of
    the model's float dtype, C order): a cold start then compiles the backward without waiting
    for the forward's compile to learn them (graphc.compiler.predict; its test checks them).
    `defop` fills `name`, `inputs`, `nondiff` and `variadic` from the op."""

    module: str
    params: tuple[str, ...] = ()
    attrs: tuple[str, ...] = ()
    saved: int = 0
    buffers: tuple[str, ...] = ()
    noise: str | None = None
    mode: bool = False
    skips: tuple[str, ...] = ()
    saved_ranks: tuple[int, ...] = ()
    name: str = ""
    inputs: tuple[str, ...] = ()
    nondiff: tuple[str, ...] = ()
    variadic: bool = False

    @cached_property
    def fwd(self) -> Callable:
        return getattr(importlib.import_module(f"graphc.kernels.{self.module}"), f"{self.name}_fwd")

    @cached_property
    def bwd(self) -> Callable:
        return getattr(importlib.import_module(f"graphc.kernels.{self.module}"), f"{self.name}_bwd")


def _default_lowering(kernel: Kernel) -> Callable[[dict, int], dict]:
    def lower(attrs: dict, rank: int) -> dict:
        return {name: attrs[name] for name in kernel.attrs}

    return lower


@dataclass
class OpDef:
    name: str
    family: str
    doc: str
    inputs: tuple[Port, ...]
    attrs: dict[str, Attr]
    shape: Callable[[Ctx], TensorType | dict[str, TensorType]]
    params: Callable[[Ctx], dict[str, ParamDef]] | None = None
    flops: Callable[[Ctx], Dim] | None = None
    outputs: tuple[str, ...] | Callable[[dict], tuple[str, ...]] = ("out",)
    loss: bool = False
    stochastic: bool = False  # behaves differently in training (dropout, batchnorm)
    kernel: Kernel | None = None
    # spec attributes → the kernel's flat arguments (`kernel: [3, 3]` → kh, kw), given the rank
    # of the first input (negative axes count from the end)
    lowering: Callable[[dict, int], dict] | None = None
    tags: frozenset[str] = frozenset()  # groups lint rules and render styles ask about
    rules: dict[str, Any] = field(default_factory=dict)  # further registrations by kind
    # scalar forward and VJPs of an elementwise op: its kernels are generated from them, and
    # the `fuse` pass joins chains of such ops into one generated kernel (graphc.compiler.fuse)
    pointwise: Pointwise | None = None

    def lower(self, attrs: dict, rank: int) -> dict:
        """The kernel's attribute arguments for a node with these (spec) attributes."""
        return self.lowering(attrs, rank)

    def output_names(self, attrs: dict) -> tuple[str, ...]:
        return self.outputs(attrs) if callable(self.outputs) else self.outputs

    def port(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)


OPS: dict[str, OpDef] = {}


def defop(name: str, *, family: str, kernel: Kernel, inputs=("x",),
          attrs: dict[str, Attr] | None = None, params=None, flops=None, outputs=("out",),
          loss: bool = False, stochastic: bool = False, lower=None, tags=(),
          pointwise: Pointwise | None = None):
    """Register an op; decorates its shape rule. Ports are names or `Port`s."""

    ports = tuple(p if isinstance(p, Port) else Port(p) for p in inputs)
    kernel = replace(kernel, name=kernel.name or name,
                     inputs=tuple(p.name for p in ports) + ((kernel.noise,) if kernel.noise else ()),
                     nondiff=tuple(p.name for p in ports if not p.differentiable)
                     + ((kernel.noise,) if kernel.noise else ()),
                     variadic=any(p.variadic for p in ports))
    if pointwise is not None:  # a rule that does not parse fails at import, naming the op
        pointwise.check(name, tuple(p.name for p in ports), (*(attrs or {}), *kernel.attrs),
                        tuple(p.name for p in ports if p.differentiable))
        kernel = replace(kernel, saved=pointwise.saved())  # its generated kernel's saved tensors

    def register(shape_rule):
        if name in OPS:
            raise RuntimeError(f"op `{name}` is defined twice")
        doc = (shape_rule.__doc__ or "").strip()
        if not doc:
            raise RuntimeError(f"op `{name}` has no docstring")
        OPS[name] = OpDef(name, family, doc, ports, dict(attrs or {}), shape_rule, params, flops,
                          outputs, loss, stochastic, kernel, lower or _default_lowering(kernel),
                          frozenset(tags), pointwise=pointwise)
        return shape_rule

    return register


def register(op: str, kind: str):
    """Add a further registration to an op (`@register("linear", "onnx")`), kept on its record."""

    def add(fn: Callable) -> Callable:
        if kind in OPS[op].rules:
            raise RuntimeError(f"op `{op}` has two `{kind}` registrations")
        OPS[op].rules[kind] = fn
        return fn

    return add


def tagged(tag: str) -> frozenset[str]:
    """The names of the ops that carry `tag`."""
    return frozenset(name for name, op in OPS.items() if tag in op.tags)


def axis(value: int, rank: int) -> int:
    """A possibly negative axis as a non-negative one (lowerings pass kernels the latter)."""
    return value % rank if rank else value


