"""The ONNX exporter of any op with a `Pointwise` rule (graphc.ops.scalar): its scalar forward
expression, translated node by node (+ - * / → Add Sub Mul Div, comparisons, `a if c else b`
→ Where, exp/log/tanh/sigmoid/sqrt/abs natively, rsqrt → Reciprocal(Sqrt), the normal CDF
Φ(x) → 0.5·(1 + erf(x/√2)), its density φ(x) → exp(-x²/2)/√(2π)).

Registered for every pointwise op that has no hand-written exporter, so an elementwise op
added with only its rule exports too.
"""

from __future__ import annotations

import math

from graphc.export.builder import Emit

_BIN = {"+": "Add", "-": "Sub", "*": "Mul", "/": "Div"}
_CMP = {"<": "Less", "<=": "LessOrEqual", ">": "Greater", ">=": "GreaterOrEqual"}
_UNARY = {"exp": "Exp", "log": "Log", "tanh": "Tanh", "sigmoid": "Sigmoid", "sqrt": "Sqrt", "abs": "Abs"}


def export_pointwise(e: Emit) -> str:
    from graphc.ops import OPS

    rule = OPS[e.node.op].pointwise
    env = {p.name: e.input(p.name) for p in OPS[e.node.op].inputs if e.input(p.name) is not None}
    return _expr(e, rule.forward, env)


def _expr(e: Emit, x, env: dict[str, str]) -> str:
    kind = type(x).__name__
    if kind == "Num":
        return e.const(float(x.value))
    if kind == "Name":
        if x.id in env:
            return env[x.id]
        # a numeric attribute, as the kernel gets it (clamp's rule reads its lowered lo/hi)
        return e.const(float(e.lowered[x.id] if x.id in e.lowered else e.attrs[x.id]))
    if kind == "Bin":
        return e.op(_BIN[x.op], _expr(e, x.a, env), _expr(e, x.b, env))
    if kind == "Neg":
        return e.op("Neg", _expr(e, x.a, env))
    if kind == "Cmp":
        return e.op(_CMP[x.op], _expr(e, x.a, env), _expr(e, x.b, env))
    if kind == "Where":  # a NaN condition is false, as ONNX's comparisons make it
        return e.op("Where", _expr(e, x.cond, env), _expr(e, x.a, env), _expr(e, x.b, env))
    if kind == "Fn":
        args = [_expr(e, a, env) for a in x.args]
        return _function(e, x.name, args)
    e.fail(f"cannot export the scalar expression {x!r}")


def _function(e: Emit, name: str, args: list[str]) -> str:
    if name in _UNARY:
        return e.op(_UNARY[name], args[0])
    if name == "rsqrt":
        return e.op("Reciprocal", e.op("Sqrt", args[0]))
    if name == "cdf":  # Φ(x) = ½(1 + erf(x/√2))
        erf = e.op("Erf", e.op("Mul", args[0], e.const(1.0 / math.sqrt(2.0))))
        return e.op("Mul", e.op("Add", erf, e.const(1.0)), e.const(0.5))
    if name == "pdf":  # φ(x) = exp(-x²/2) / √(2π)
        sq = e.op("Mul", args[0], args[0])
        return e.op("Mul", e.op("Exp", e.op("Mul", sq, e.const(-0.5))), e.const(1.0 / math.sqrt(2 * math.pi)))
    if name in ("max", "min"):  # the first argument unless the second is strictly beyond it
        a, b = args
        beyond = e.op("Greater" if name == "max" else "Less", b, a)
        return e.op("Where", beyond, b, a)
    e.fail(f"the scalar function `{name}` has no ONNX form")
