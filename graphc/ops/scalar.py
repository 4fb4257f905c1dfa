"""Scalar expressions: the pointwise rules of elementwise ops, as a tiny expression tree.

An elementwise op's record carries its forward and one VJP per differentiable input as short
Python expressions over its port names, the output `y`, the cotangent `g` and its attributes
(`Pointwise("tanh(x)", x="g * (1 - y*y)")` in graphc/ops/elementwise.py). They are parsed
here once into frozen trees (numbers, names, + - * /, comparisons, `a if c else b` and the
functions of `FUNCTIONS`), checked against the op's ports and attributes, and substituted
and printed by the fused-kernel generator (graphc.compiler.kernelgen). These rules are the
only derivative definitions of those ops: the single-op kernels and every fused group are
generated from them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache

# name → arity. Each is a stub in graphc.kernels.pointwise that Numba dispatches on dtype
# (float32: the SIMD-friendly forms of graphc.kernels.vmath; float64: libm).
FUNCTIONS = {
    "exp": 1, "log": 1, "tanh": 1, "sigmoid": 1, "sqrt": 1, "rsqrt": 1, "abs": 1,
    "cdf": 1,  # the standard normal CDF Φ(x) (the exact GELU's gate)
    "pdf": 1,  # the standard normal density φ(x) = Φ'(x)
    "max": 2, "min": 2,  # NaN-propagating in the first argument, like `a if a > b else b`
}
RESERVED = {"y", "g"}  # the op's output and the cotangent of the output
# functions worth not evaluating twice: a backward that would recompute one reads a saved
# Jacobian entry instead (graphc.compiler.kernelgen.wants_jacobian)
EXPENSIVE = frozenset({"exp", "log", "tanh", "sigmoid", "cdf", "pdf"})


class RuleError(ValueError):
    """A pointwise rule that does not parse or names something the op does not have."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Bin:
    op: str  # + - * /
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Neg:
    a: Expr


@dataclass(frozen=True)
class Cmp:
    op: str  # < <= > >=
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Where:
    cond: Expr
    a: Expr  # where cond holds (a NaN condition is false: the `b` branch)
    b: Expr


@dataclass(frozen=True)
class Fn:
    name: str
    args: tuple[Expr, ...]


Expr = Num | Name | Bin | Neg | Cmp | Where | Fn

_BIN = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_CMP = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


@cache
def parse(text: str) -> Expr:
    """`text` (a Python expression in the rule subset) as a tree; RuleError when it is not."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise RuleError(f"`{text}` is not an expression: {exc.msg}") from None
    return _convert(tree, text)


def _convert(n: ast.AST, text: str) -> Expr:
    match n:
        case ast.Constant(value=bool()):
            pass
        case ast.Constant(value=int() | float() as v):
            return Num(float(v))
        case ast.Name(id=name):
            return Name(name)
        case ast.BinOp(op=op, left=a, right=b) if type(op) in _BIN:
            return Bin(_BIN[type(op)], _convert(a, text), _convert(b, text))
        case ast.BinOp(op=ast.Pow(), left=a, right=ast.Constant(value=int() as k)) if 1 <= k <= 4:
            base = _convert(a, text)  # a small integer power is repeated multiplication
            out = base
            for _ in range(k - 1):
                out = Bin("*", out, base)
            return out
        case ast.UnaryOp(op=ast.USub(), operand=a):
            inner = _convert(a, text)
            return Num(-inner.value) if isinstance(inner, Num) else Neg(inner)
        case ast.UnaryOp(op=ast.UAdd(), operand=a):
            return _convert(a, text)
        case ast.Compare(left=a, ops=[op], comparators=[b]) if type(op) in _CMP:
            return Cmp(_CMP[type(op)], _convert(a, text), _convert(b, text))
        case ast.IfExp(test=c, body=a, orelse=b):
            return Where(_convert(c, text), _convert(a, text), _convert(b, text))
        case ast.Call(func=ast.Name(id=name), args=args, keywords=[]) if name in FUNCTIONS:
            if len(args) != FUNCTIONS[name]:
                raise RuleError(f"`{name}` takes {FUNCTIONS[name]} argument(s) in `{text}`")
            return Fn(name, tuple(_convert(a, text) for a in args))
    raise RuleError(f"`{ast.unparse(n)}` is not allowed in a pointwise rule (`{text}`): use numbers, "
                    f"names, + - * /, comparisons, `a if c else b` and {', '.join(FUNCTIONS)}")


def names(e: Expr) -> set[str]:
    """The names an expression mentions."""
    match e:
        case Name(id=n):
            return {n}
        case Num():
            return set()
        case Neg(a=a):
            return names(a)
        case Bin(a=a, b=b) | Cmp(a=a, b=b):
            return names(a) | names(b)
        case Where(cond=c, a=a, b=b):
            return names(c) | names(a) | names(b)
        case Fn(args=args):
            return set().union(*(names(a) for a in args))
    raise TypeError(e)


def nodes(e: Expr) -> list[Expr]:
    """Every subexpression of `e` (repeats included), each after its own subexpressions."""
    match e:
        case Fn(args=args):
            return [n for a in args for n in nodes(a)] + [e]
        case Neg(a=a):
            return [*nodes(a), e]
        case Bin(a=a, b=b) | Cmp(a=a, b=b):
            return [*nodes(a), *nodes(b), e]
        case Where(cond=c, a=a, b=b):
            return [*nodes(c), *nodes(a), *nodes(b), e]
    return [e]


def calls(e: Expr) -> set[str]:
    """The functions an expression calls."""
    match e:
        case Fn(name=name, args=args):
            return {name}.union(*(calls(a) for a in args))
        case Neg(a=a):
            return calls(a)
        case Bin(a=a, b=b) | Cmp(a=a, b=b):
            return calls(a) | calls(b)
        case Where(cond=c, a=a, b=b):
            return calls(c) | calls(a) | calls(b)
    return set()


def substitute(e: Expr, env: dict[str, Expr]) -> Expr:
    """`e` with each name replaced by its expression in `env` (names not in `env` stay)."""
    match e:
        case Name(id=n):
            return env.get(n, e)
        case Num():
            return e
        case Neg(a=a):
            return neg(substitute(a, env))
        case Bin(op=op, a=a, b=b):
            return binary(op, substitute(a, env), substitute(b, env))
        case Cmp(op=op, a=a, b=b):
            return Cmp(op, substitute(a, env), substitute(b, env))
        case Where(cond=c, a=a, b=b):
            return Where(substitute(c, env), substitute(a, env), substitute(b, env))
        case Fn(name=name, args=args):
            return Fn(name, tuple(substitute(a, env) for a in args))
    raise TypeError(e)


def neg(a: Expr) -> Expr:
    if isinstance(a, Num):
        return Num(-a.value)
    return a.a if isinstance(a, Neg) else Neg(a)


def binary(op: str, a: Expr, b: Expr) -> Expr:
    """a op b, with the identities that make VJPs read naturally (g * 1, 0 + g, …) folded.
    Only exact identities: x * 0 is not folded (it is NaN for an infinite x)."""
    if isinstance(a, Num) and isinstance(b, Num):
        if op == "/" and b.value == 0:
            return Bin(op, a, b)
        return Num({"+": a.value + b.value, "-": a.value - b.value, "*": a.value * b.value,
                    "/": a.value / (b.value or 1.0)}[op])
    if op == "*" and a == Num(1.0):
        return b
    if op in ("*", "/") and b == Num(1.0):
        return a
    if op == "*" and a == Num(-1.0):
        return neg(b)
    if op == "+" and a == Num(0.0):
        return b
    if op in ("+", "-") and b == Num(0.0):
        return a
    if op == "-" and a == Num(0.0):
        return neg(b)
    if op == "+" and isinstance(b, Neg):
        return binary("-", a, b.a)
    return Bin(op, a, b)


def add(a: Expr | None, b: Expr) -> Expr:
    """a + b where a may be nothing yet (an accumulation's first term)."""
    return b if a is None else binary("+", a, b)


@dataclass(frozen=True)
class Pointwise:
    """An elementwise op as scalar math. `out`: the forward over the op's port names and
    attributes; `grads`: port → its VJP, over the ports, attributes, the output `y` and the
    output's cotangent `g`. A port without an entry is not differentiable."""

    out: str
    grads: tuple[tuple[str, str], ...] = ()

    def __init__(self, out: str, **grads: str):
        object.__setattr__(self, "out", out)
        object.__setattr__(self, "grads", tuple(grads.items()))

    @property
    def forward(self) -> Expr:
        return parse(self.out)

    def vjp(self, port: str) -> Expr | None:
        text = dict(self.grads).get(port)
        return parse(text) if text is not None else None

    def saved(self) -> int:
        """How many tensors the op's own kernel saves for its backward: its Jacobian entries
        ∂y/∂port (the VJP with g = 1) when a VJP, with `y` read back, would call an expensive
        function (the exact GELU's CDF), else none (tanh's VJP needs only `y`)."""
        vjps = [parse(text) for _, text in self.grads]
        if not any(calls(e) & EXPENSIVE for e in vjps):
            return 0
        return sum(not isinstance(substitute(e, {"g": Num(1.0)}), Num) for e in vjps)

    def check(self, op: str, ports: tuple[str, ...], attrs: tuple[str, ...],
              differentiable: tuple[str, ...]) -> None:
        """Parse every rule, check the names it uses and that every differentiable port has a
        VJP; RuleError naming `op` otherwise."""
        known = set(ports) | set(attrs)
        try:
            missing = [p for p in differentiable if p not in dict(self.grads)]
            if missing:
                raise RuleError(f"no VJP for the differentiable port(s) {', '.join(missing)}")
            unknown = names(self.forward) - known
            if unknown:
                raise RuleError(f"forward `{self.out}` names {', '.join(sorted(unknown))}")
            for port, text in self.grads:
                if port not in ports:
                    raise RuleError(f"a VJP for `{port}`, which is not a port ({', '.join(ports)})")
                unknown = names(parse(text)) - known - RESERVED
                if unknown:
                    raise RuleError(f"VJP of `{port}` (`{text}`) names {', '.join(sorted(unknown))}")
        except RuleError as exc:
            raise RuleError(f"op `{op}`'s pointwise rule: {exc}") from None
