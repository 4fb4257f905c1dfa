"""Arithmetic expressions in specs: `4 * d_model`, `d_model // heads`, `max(1, T // 2)`.

Expressions are parsed with Python's `ast` and evaluated by walking a whitelist of node types;
nothing is ever passed to `eval`. Names resolve to constants (numbers) or to symbolic
dimensions (sympy symbols), so the same evaluator serves attributes and shapes.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping

import sympy

MAX_LENGTH = 400
MAX_POWER = 64

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_FUNCS = {
    "min": min,
    "max": max,
    "int": int,
    "float": float,
    "round": round,
    "abs": abs,
    "sqrt": math.sqrt,
    "ceil": math.ceil,
    "floor": math.floor,
}


class ExprError(ValueError):
    """A bad expression; `hint` may suggest a fix (did you mean ...)."""

    def __init__(self, message: str, hint: str | None = None, name: str | None = None):
        super().__init__(message)
        self.hint = hint
        self.name = name  # an unknown identifier, if that was the problem


def _symbolic_floordiv(a, b):
    if isinstance(a, sympy.Basic) or isinstance(b, sympy.Basic):
        q = sympy.sympify(a) / b
        return q if (sympy.sympify(a) % b) == 0 else sympy.floor(q)
    return a // b


def evaluate(text: str, scope: Mapping[str, object]):
    """Evaluate `text` with names from `scope`; returns int, float, bool or a sympy expression."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"cannot parse expression `{text}`: {exc.msg}") from None
    return _eval(tree.body, scope, text)


def _eval(node, scope, text):
    match node:
        case ast.Constant(value=v) if isinstance(v, int | float | bool):
            return v
        case ast.Name(id=name):
            if name in scope:
                return scope[name]
            from graphc.diagnostics import did_you_mean

            raise ExprError(
                f"unknown name `{name}` in `{text}`",
                hint=did_you_mean(name, scope) or "define it under `constants:` (or pass --set)",
                name=name,
            )
        case ast.UnaryOp(op=ast.USub(), operand=x):
            return -_eval(x, scope, text)
        case ast.UnaryOp(op=ast.UAdd(), operand=x):
            return _eval(x, scope, text)
        case ast.BinOp(left=l, op=op, right=r) if type(op) in _BINOPS:
            a, b = _eval(l, scope, text), _eval(r, scope, text)
            if isinstance(op, ast.Pow) and isinstance(b, int | float) and abs(b) > MAX_POWER:
                raise ExprError(f"exponent {b} too large in `{text}`")
            if isinstance(op, ast.Div | ast.FloorDiv | ast.Mod) and not isinstance(b, sympy.Basic) and b == 0:
                raise ExprError(f"division by zero in `{text}`")
            if isinstance(op, ast.FloorDiv):
                return _symbolic_floordiv(a, b)
            if isinstance(op, ast.Div) and isinstance(a, int) and isinstance(b, int) and a % b == 0:
                return a // b  # keep exact integers integral: 128 / 4 is the int 32
            return _BINOPS[type(op)](a, b)
        case ast.Call(func=ast.Name(id=fname), args=args, keywords=[]) if fname in _FUNCS:
            values = [_eval(a, scope, text) for a in args]
            if any(isinstance(v, sympy.Basic) for v in values):
                if fname in ("min", "max"):
                    return (sympy.Min if fname == "min" else sympy.Max)(*values)
                raise ExprError(f"`{fname}` needs concrete numbers in `{text}`")
            return _FUNCS[fname](*values)
    raise ExprError(
        f"unsupported syntax in expression `{text}`",
        hint="expressions may use numbers, names, + - * / // % **, and min/max/int/float/ceil/floor/sqrt",
    )


def is_expression(value) -> bool:
    return isinstance(value, str)
