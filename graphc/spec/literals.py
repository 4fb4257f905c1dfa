"""Numbers written in `in:`: `{op: sub, in: [x, 6]}`, `{op: mul, in: [h, alpha]}` with `alpha` a
constant or block argument, `{op: mul, in: [s, "1 / sqrt(d)"]}`, `{op: add, in: [x, [1, 2, 3]]}`.

Each becomes a `constant` node (float32, no gradient) feeding that port; NumPy broadcasting in
`add`/`sub`/`mul` does the rest. A name that is a node (or an input) is always a reference: a
literal is a number, a nested list of numbers, a constant/argument name that no node shadows,
or an expression string over constants."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sympy

from graphc.spec.expr import ExprError, evaluate

_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
MAX_ELEMENTS = 4096  # a literal is written by hand; anything bigger belongs in data


@dataclass(frozen=True)
class Literal:
    values: tuple[float, ...]  # row-major
    shape: tuple[int, ...]
    text: str  # as written, for labels and messages


class LiteralError(ValueError):
    pass


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _nested(raw: list) -> tuple[list[float], tuple[int, ...]]:
    if not raw:
        raise LiteralError("an empty list is not a value")
    if all(_number(v) for v in raw):
        return [float(v) for v in raw], (len(raw),)
    if not all(isinstance(v, list) for v in raw):
        raise LiteralError("a list literal holds numbers, or lists of numbers of equal length")
    parts = [_nested(v) for v in raw]
    if len({p[1] for p in parts}) != 1:
        raise LiteralError("the rows of a list literal differ in length")
    return [x for p in parts for x in p[0]], (len(raw),) + parts[0][1]


def literal(raw: Any, names: Mapping[str, Any], values: Mapping[str, Any]) -> Literal | None:
    """The literal `raw` stands for, or None when it is (or may be) a reference. `names` are the
    scope's node and input names, `values` its constants, dims and block arguments. Raises
    LiteralError for something that is clearly meant as a value but is not one."""
    if isinstance(raw, bool):
        raise LiteralError(f"`{str(raw).lower()}` is a boolean; inputs take tensors or numbers")
    if _number(raw):
        return Literal((float(raw),), (), repr(raw))
    if isinstance(raw, list):
        flat, shape = _nested(raw)
        if len(flat) > MAX_ELEMENTS:
            raise LiteralError(f"a list literal of {len(flat)} numbers is too long (at most "
                               f"{MAX_ELEMENTS}); feed large constants as an input")
        return Literal(tuple(flat), shape, str(raw))
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    head = text.split(".", 1)[0]
    if _REF.match(text) and (head in names or head not in values):
        return None  # a reference (resolved, or reported as undefined, with the others)
    try:
        v = evaluate(text, values)
    except ExprError as exc:
        if _REF.match(text):
            return None
        raise LiteralError(f"`{text}` is neither a node name nor a number: {exc}") from None
    if isinstance(v, sympy.Basic):
        v = sympy.nsimplify(v)
        if not v.is_number:
            raise LiteralError(f"`{text}` is `{v}`, which depends on a symbolic dimension; a "
                               "literal must be a number")
        v = float(v)
    if isinstance(v, bool) or not _number(v):
        raise LiteralError(f"`{text}` is not a number")
    return Literal((float(v),), (), text)
